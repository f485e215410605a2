// The node's packet pipeline. Every port (pod TAPs, the host TUN) and the underlay
// socket read batches into the one arena; each batch is decided frame by frame and
// written out before the next read. Decisions read the current ForwardingTable,
// swapped whole by the control side between batches.
//
// Where a frame goes (IPv4; the pod network is IPv4 in this release):
//   from a pod:   ARP -> answered here | to a local pod's MAC -> switched as is |
//                 to the gateway MAC -> routed: local pod, remote node (VXLAN), or host
//   from host:    local pod | remote node (VXLAN)
//   from underlay (VXLAN): local pod (TCP coalesced into TSO frames) | host
// Frames keep their virtio-net header end to end on the node (TSO and partial checksums
// pass through untouched); only frames leaving on the underlay get segmented and
// checksummed in software.
import {
  ArpOp, DropReason, EtherType, LinkType, PacketInfo, VirtioNetFlags, VirtioNetGso,
  decodeFrame, emitIcmpv4FragNeeded, get16, get32, set16, set48, updateChecksum16, icmpErrorAllowed,
  VXLAN_FLAG_I, Icmpv4Type, IpProtocol,
} from '../wire/index.ts';
import type { FrameDevice } from '../device/types.ts';
import { arpReplyInPlace, echoReplyInPlace } from './answers.ts';
import { Arena, RX_BATCH, SLOT_SIZE, HEADROOM } from './arena.ts';
import { DatapathDrop, PortCounters } from './counters.ts';
import type { ForwardingTable } from './forwarding.ts';
import { TcpCoalescer, type FrameSink } from './offload.ts';
import { OverlayTx, type UnderlaySocket } from './overlay.ts';
import { DatapathPort, PortKind, type PortKindCode } from './port.ts';
import type { PortCapture } from './capture.ts';
import { EntryPoint, Verdict } from '../services/nat-codes.ts';
import type { ServiceNat } from '../services/nat.ts';

/** The virtio-net header every port of the datapath uses (struct virtio_net_hdr). */
export const VNET = 10;
const ETH = 14;
const NO_PORT = -1;
/** Batches read per readiness callback before yielding to the event loop (fairness). */
const BATCHES_PER_WAKEUP = 4;

export type { UnderlaySocket };

export class Datapath implements FrameSink {
  readonly arena = new Arena();
  #table: ForwardingTable;
  #ports: (DatapathPort | undefined)[] = [];
  #hostPort = NO_PORT;
  readonly #underlay: UnderlaySocket | null;
  readonly #overlay: OverlayTx;
  readonly #info = new PacketInfo();
  readonly #coalescer: TcpCoalescer;
  // Ports with frames queued in this batch.
  readonly #dirty = new Int32Array(1024);
  #dirtyCount = 0;
  #dirtyMark = new Uint8Array(1024);
  /** The service proxy, once services are programmed; null = no service NAT at all. */
  #nat: ServiceNat | null = null;
  /** Monotonic whole seconds, read once per batch (conntrack and affinity expiry). */
  #now = 0;

  constructor(table: ForwardingTable, underlay: UnderlaySocket | null) {
    this.#table = table;
    this.#underlay = underlay;
    this.#overlay = new OverlayTx(this.arena, underlay, () => this.#flush());
    this.#overlay.localIP[0] = table.underlayIP;
    this.#coalescer = new TcpCoalescer(this.arena, this, VNET);
    if (underlay !== null) underlay.onReadable(() => this.#readUnderlay());
  }

  get table(): ForwardingTable {
    return this.#table;
  }

  /** Swaps in a new table. Batches run to completion, so this lands between two of them. */
  setTable(table: ForwardingTable): void {
    this.#table = table;
    this.#overlay.localIP[0] = table.underlayIP;
  }

  /** Installs the service proxy; its tables are swapped through `nat.setTable` between batches. */
  setServiceNat(nat: ServiceNat | null): void {
    this.#nat = nat;
  }

  get serviceNat(): ServiceNat | null {
    return this.#nat;
  }

  /** Counters of the underlay socket (received datagrams and drops, sent datagrams). */
  get underlayCounters(): PortCounters {
    return this.#overlay.counters;
  }

  /** A capture of the underlay (`tapir capture ... underlay`), or null. */
  get underlayCapture(): PortCapture | null {
    return this.#overlay.capture;
  }

  set underlayCapture(c: PortCapture | null) {
    this.#overlay.capture = c;
  }

  get ports(): readonly (DatapathPort | undefined)[] {
    return this.#ports;
  }

  get coalescedSegments(): number {
    return this.#coalescer.coalesced;
  }

  /** Adds a port and starts reading it; returns its index (reused after removal). */
  addPort(kind: PortKindCode, name: string, device: FrameDevice, vnetSize: number): number {
    if (vnetSize !== VNET) throw new Error(`port ${name}: the datapath needs a ${VNET}-byte virtio-net header, the device has ${vnetSize}`);
    let index = this.#ports.indexOf(undefined);
    if (index < 0) index = this.#ports.length;
    if (index >= this.#dirty.length) throw new RangeError(`port ${name}: the datapath holds at most ${this.#dirty.length} ports`);
    const port = new DatapathPort(index, kind, name, device, vnetSize);
    this.#ports[index] = port;
    if (kind === PortKind.HOST) this.#hostPort = index;
    device.onReadable(() => this.#readPort(port));
    return index;
  }

  /** Stops reading a port and forgets it; the caller closes the device. */
  removePort(index: number): void {
    const port = this.#ports[index];
    if (port === undefined) return;
    port.device.pause();
    port.capture?.close();
    this.#ports[index] = undefined;
    if (this.#hostPort === index) this.#hostPort = NO_PORT;
  }

  close(): void {
    for (const p of this.#ports) if (p !== undefined) this.removePort(p.index);
    this.underlayCapture?.close();
    this.#underlay?.pause();
  }

  // ---- receive ---------------------------------------------------------------------

  #readPort(port: DatapathPort): void {
    const a = this.arena;
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      if (this.#ports[port.index] !== port) return;
      const n = port.device.readBatch(a.buf, SLOT_SIZE, HEADROOM, a.rxLengths, RX_BATCH);
      if (n === 0) return;
      this.#now = (performance.now() / 1000) | 0;
      if (port.capture !== null) port.capture.stamp(Date.now());
      for (let i = 0; i < n; i++) {
        const off = a.rxOffset(i);
        const len = a.rxLengths[i]!;
        port.counters.rxFrames++;
        port.counters.rxBytes += len;
        if (port.capture !== null && len > VNET) port.capture.frame(a.buf, off + VNET, len - VNET);
        if (port.kind === PortKind.POD) this.#fromPod(port, off, len);
        else this.#fromHost(port, off, len);
      }
      this.#flush();
      if (n < RX_BATCH) return;
    }
  }

  #readUnderlay(): void {
    const a = this.arena;
    const u = this.#underlay!;
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      const n = u.recvBatch(a.buf, SLOT_SIZE, HEADROOM, a.rxLengths, a.rxSrcAddrs, a.rxSrcPorts, a.rxSegSizes, RX_BATCH);
      if (n === 0) return;
      this.#now = (performance.now() / 1000) | 0;
      const cap = this.underlayCapture;
      if (cap !== null) cap.stamp(Date.now());
      for (let i = 0; i < n; i++) {
        const off = a.rxOffset(i);
        const len = a.rxLengths[i]!;
        const seg = a.rxSegSizes[i]!;
        cap?.datagrams(a.buf, off, len, seg, a.rxSrcAddrs[i]!, this.#table.underlayIP);
        if (this.#table.nodeByUnderlay(a.rxSrcAddrs[i]!) < 0) {
          this.underlayCounters.drops[DatapathDrop.UNKNOWN_PEER]!++;
          continue;
        }
        if (seg <= 0 || seg >= len) {
          this.#fromUnderlay(off, len, true);
        } else {
          for (let at = off, k = 0; at < off + len; at += seg, k++) this.#fromUnderlay(at, Math.min(seg, off + len - at), k === 0);
        }
      }
      this.#flush();
      if (n < RX_BATCH) return;
    }
  }

  // ---- decisions -------------------------------------------------------------------

  #drop(counters: PortCounters, reason: number): void {
    counters.drops[reason]!++;
  }

  #fromPod(port: DatapathPort, off: number, len: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    if (len <= VNET) return this.#drop(c, DropReason.TRUNCATED_VIRTIO_NET_HEADER);
    const e = off + VNET;
    const reason = decodeFrame(info, b, e, len - VNET, LinkType.ETHERNET);
    if (reason !== DropReason.OK) return this.#drop(c, reason);
    const mac = t.portMacs[port.index]!;
    // 0 (or past the end): the table has no pod on this port, so nothing it sends is its own.
    if (!(mac > 0) || info.ethSrc !== mac) return this.#drop(c, DatapathDrop.SPOOFED_MAC);
    if (info.vlan !== -1) return this.#drop(c, DatapathDrop.VLAN_UNSUPPORTED);
    const podIp = this.#podIp(port.index);
    if (info.ethertype === EtherType.ARP) {
      if (info.arpSenderIp !== podIp) return this.#drop(c, DatapathDrop.SPOOFED_IP);
      if (info.arpOp !== ArpOp.REQUEST) return this.#drop(c, DatapathDrop.ARP_IGNORED);
      return this.#answerArp(port, off, len);
    }
    if (info.ethertype !== EtherType.IPV4) return this.#drop(c, info.ethertype === EtherType.IPV6 ? DatapathDrop.IPV6_UNSUPPORTED : DropReason.UNSUPPORTED_ETHERTYPE);
    if (info.src4 !== podIp) return this.#drop(c, DatapathDrop.SPOOFED_IP);
    const nat = this.#nat;
    if (nat !== null) {
      const v = nat.process(info, b, EntryPoint.POD, (b[off]! & VirtioNetFlags.NEEDS_CSUM) !== 0, this.#now);
      if (v > Verdict.NATED) return this.#serviceRefused(v, c, port.index);
    }

    const dstMac = info.ethDst;
    if (dstMac !== t.gatewayMac) {
      // Layer 2 between pods of this node: a frame addressed to a local pod's MAC.
      const to = t.podPorts.get(info.dst4);
      if (to < 0 || t.portMacs[to] !== dstMac) return this.#drop(c, DatapathDrop.NOT_FOR_US);
      return this.enqueue(to, off, len);
    }
    this.#route(port, off, len, e);
  }

  /** A pod's IPv4 packet sent to the gateway MAC: the agent is its router. */
  #route(port: DatapathPort, off: number, len: number, e: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const t = this.#table;
    const c = port.counters;
    const dst = info.dst4;
    if (dst === t.gateway) return this.#answerGateway(port, off, len);
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    const to = t.podPorts.get(dst);
    if (to >= 0) {
      this.#decrementTtl(e + ETH);
      set48(b, e, t.portMacs[to]!);
      set48(b, e + 6, t.gatewayMac);
      return this.enqueue(to, off, len);
    }
    if (t.podCIDR.contains(dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
    const node = t.remoteNode(dst);
    if (node >= 0) {
      if (!this.#fitsOverlay(port, off)) return;
      this.#decrementTtl(e + ETH);
      return this.#encapsulate(c, off, e, len - VNET, node);
    }
    // Everything else is for the node's own stack (its addresses, or beyond it).
    const host = this.#hostPort;
    if (host === NO_PORT) return this.#drop(c, DatapathDrop.NO_ROUTE);
    this.#decrementTtl(e + ETH);
    // Strip Ethernet: the virtio-net header moves up to sit in front of the IP header.
    this.#moveVnet(off, e + ETH - VNET, -ETH);
    this.enqueue(host, e + ETH - VNET, len - ETH);
  }

  #fromHost(port: DatapathPort, off: number, len: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    if (len <= VNET) return this.#drop(c, DropReason.TRUNCATED_VIRTIO_NET_HEADER);
    const ip = off + VNET;
    const reason = decodeFrame(info, b, ip, len - VNET, LinkType.RAW_IP);
    if (reason !== DropReason.OK) return this.#drop(c, reason);
    if (info.ipVersion !== 4) return this.#drop(c, DatapathDrop.IPV6_UNSUPPORTED);
    const nat = this.#nat;
    if (nat !== null) {
      // The node's own stack sends from its underlay address; anything else on the host
      // port was steered in from outside (node ports, load-balancer and external IPs).
      const ingress = info.src4 === t.underlayIP ? EntryPoint.HOST : EntryPoint.EXTERNAL;
      const v = nat.process(info, b, ingress, (b[off]! & VirtioNetFlags.NEEDS_CSUM) !== 0, this.#now);
      if (v > Verdict.NATED) return this.#serviceRefused(v, c, port.index);
    }
    const dst = info.dst4;
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    const to = t.podPorts.get(dst);
    let node = -1;
    if (to < 0) {
      if (t.podCIDR.contains(dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
      node = t.remoteNode(dst);
      if (node < 0) return this.#drop(c, DatapathDrop.NO_ROUTE);
      if (!this.#fitsOverlay(port, off)) return;
    }
    this.#decrementTtl(ip);
    // Prepend Ethernet: the virtio-net header moves down 14 bytes into the headroom.
    const e = ip - ETH;
    this.#moveVnet(off, e - VNET, ETH);
    set48(b, e, to >= 0 ? t.portMacs[to]! : t.gatewayMac);
    set48(b, e + 6, t.gatewayMac);
    set16(b, e + 12, EtherType.IPV4);
    if (to >= 0) return this.enqueue(to, e - VNET, len + ETH);
    this.#encapsulate(c, e - VNET, e, len - VNET + ETH, node);
  }

  /** One VXLAN datagram (or one GRO segment of it); `inPlace` false: copy before writing in front. */
  #fromUnderlay(d: number, n: number, inPlace: boolean): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = this.underlayCounters;
    const t = this.#table;
    c.rxFrames++;
    c.rxBytes += n;
    if (n < 8) return this.#drop(c, DropReason.TRUNCATED_VXLAN);
    if ((b[d]! & VXLAN_FLAG_I) === 0) return this.#drop(c, DropReason.BAD_VXLAN_FLAGS);
    if (get32(b, d + 4) >>> 8 !== t.vni) return this.#drop(c, DatapathDrop.WRONG_VNI);
    const e = d + 8;
    const len = n - 8;
    const reason = decodeFrame(info, b, e, len, LinkType.ETHERNET);
    if (reason !== DropReason.OK) return this.#drop(c, reason);
    if (info.ethertype !== EtherType.IPV4) return this.#drop(c, info.ethertype === EtherType.IPV6 ? DatapathDrop.IPV6_UNSUPPORTED : DropReason.UNSUPPORTED_ETHERTYPE);
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    // From the underlay come remote pods' packets, and replies of flows NATed here
    // (an endpoint on another node answering a client of this node's service).
    let nated = false;
    const nat = this.#nat;
    if (nat !== null) {
      const v = nat.process(info, b, EntryPoint.POD, false, this.#now);
      if (v > Verdict.NATED) return this.#drop(c, v === Verdict.DROP ? DatapathDrop.SERVICE_DROPPED : DatapathDrop.SERVICE_REJECTED);
      nated = v === Verdict.NATED;
    }
    const dst = info.dst4;
    const to = t.podPorts.get(dst);
    if (to >= 0) {
      this.#decrementTtl(e + ETH);
      set48(b, e, t.portMacs[to]!);
      set48(b, e + 6, t.gatewayMac);
      if (this.#coalescer.offer(to, info, b, e)) return;
      this.#coalescer.finish(to);
      if (inPlace) {
        b.fill(0, e - VNET, e);
        return this.enqueue(to, e - VNET, len + VNET);
      }
      const at = this.arena.allocScratch(VNET + len);
      if (at < 0) return this.#drop(c, DatapathDrop.NO_SCRATCH);
      b.fill(0, at, at + VNET);
      b.copy(b, at + VNET, e, e + len);
      return this.enqueue(to, at, VNET + len);
    }
    // Reverse NATed for a client on another node (one of its pods, or the node itself,
    // e.g. reaching a node port on this node's address): back over the overlay to it.
    const back = nated ? t.remoteNode(dst) : -1;
    if (back >= 0) {
      this.#decrementTtl(e + ETH);
      if (inPlace) {
        b.fill(0, e - VNET, e);
        return this.#encapsulate(c, e - VNET, e, len, back);
      }
      const at = this.arena.allocScratch(VNET + len);
      if (at < 0) return this.#drop(c, DatapathDrop.NO_SCRATCH);
      b.fill(0, at, at + VNET);
      b.copy(b, at + VNET, e, e + len);
      return this.#encapsulate(c, at, at + VNET, len, back);
    }
    // For the node itself, or (reverse NATed) for a client beyond it.
    if ((dst === t.underlayIP || (nated && !t.podCIDR.contains(dst))) && this.#hostPort !== NO_PORT) {
      this.#decrementTtl(e + ETH);
      // Strip Ethernet; the zeroed virtio-net header takes the Ethernet header's place.
      b.fill(0, e + ETH - VNET, e + ETH);
      return this.enqueue(this.#hostPort, e + ETH - VNET, len - ETH + VNET);
    }
    this.#drop(c, t.podCIDR.contains(dst) ? DatapathDrop.NO_SUCH_POD : DatapathDrop.NO_ROUTE);
  }

  // ---- actions ---------------------------------------------------------------------

  /**
   * A packet the service proxy refused: REJECT verdicts are answered (TCP RST or ICMP
   * port unreachable, built in scratch) on the port it came from; DROP is counted.
   */
  #serviceRefused(verdict: number, c: PortCounters, port: number): void {
    if (verdict === Verdict.DROP) return this.#drop(c, DatapathDrop.SERVICE_DROPPED);
    this.#drop(c, DatapathDrop.SERVICE_REJECTED);
    const b = this.arena.buf;
    const at = this.arena.allocScratch(VNET + ETH + 600);
    if (at < 0) return;
    b.fill(0, at, at + VNET);
    const n = this.#nat!.buildReject(b, at + VNET, this.#info, b);
    if (n > 0) this.enqueue(port, at, VNET + n);
  }

  /** A pod's ARP request for the gateway or a local pod is answered in place. */
  #answerArp(port: DatapathPort, off: number, len: number): void {
    const info = this.#info;
    const t = this.#table;
    const target = info.arpTargetIp;
    let mac = -1;
    if (target === t.gateway) mac = t.gatewayMac;
    else {
      const p = t.podPorts.get(target);
      if (p >= 0) mac = t.portMacs[p]!;
    }
    if (mac < 0) return this.#drop(port.counters, DatapathDrop.ARP_UNKNOWN_TARGET);
    arpReplyInPlace(this.arena.buf, info, off, VNET, target, mac);
    this.enqueue(port.index, off, len);
  }

  /** Echo requests to the gateway address get their reply (pods can ping their router). */
  #answerGateway(port: DatapathPort, off: number, len: number): void {
    const info = this.#info;
    if (info.protocol !== IpProtocol.ICMP || info.icmpType !== Icmpv4Type.ECHO_REQUEST || info.icmpCode !== 0) {
      return this.#drop(port.counters, DatapathDrop.FOR_GATEWAY);
    }
    echoReplyInPlace(this.arena.buf, info, off, VNET, this.#table.gatewayMac);
    this.enqueue(port.index, off, len);
  }

  /**
   * True when the packet fits the overlay's MTU (each segment, for a TSO frame); else
   * answers DF packets with ICMP fragmentation needed (RFC 1191) and drops the rest.
   */
  #fitsOverlay(port: DatapathPort, vh: number): boolean {
    const b = this.arena.buf;
    const info = this.#info;
    const mtu = this.#table.mtu;
    const gso = b[vh + 1]! & ~VirtioNetGso.ECN;
    const ipLen = gso === VirtioNetGso.NONE
      ? info.ipLength
      : info.payloadOffset - info.l3Offset + (b[vh + 4]! | (b[vh + 5]! << 8));
    if (ipLen <= mtu) return true;
    const df = (get16(b, info.l3Offset + 6) & 0x4000) !== 0;
    if (!df || !icmpErrorAllowed(info, b)) {
      this.#drop(port.counters, DatapathDrop.TOO_BIG);
      return false;
    }
    this.#drop(port.counters, DatapathDrop.FRAG_NEEDED);
    const at = this.arena.allocScratch(VNET + ETH + 576);
    if (at < 0) return false;
    b.fill(0, at, at + VNET);
    const n = emitIcmpv4FragNeeded(b, at + VNET, info, b, mtu, this.#table.gateway);
    this.enqueue(port.index, at, VNET + n);
    return false;
  }

  /** Hands the Ethernet frame at `e` to the overlay for remote node `node`. */
  #encapsulate(c: PortCounters, vh: number, e: number, frameLen: number, node: number): void {
    const t = this.#table;
    const reason = this.#overlay.send(vh, e, frameLen, t.nodeUnderlay, node, t.vni);
    if (reason !== 0) this.#drop(c, reason);
  }

  #decrementTtl(ip: number): void {
    const b = this.arena.buf;
    const old = get16(b, ip + 8);
    b[ip + 8] = b[ip + 8]! - 1;
    set16(b, ip + 10, updateChecksum16(get16(b, ip + 10), old, get16(b, ip + 8)));
  }

  /**
   * Moves a virtio-net header from `from` to `to` when the link header in front of the
   * packet changes by `shift` bytes: csum_start and hdr_len count from the frame start.
   */
  #moveVnet(from: number, to: number, shift: number): void {
    const b = this.arena.buf;
    b.copy(b, to, from, from + VNET);
    if ((b[to]! & VirtioNetFlags.NEEDS_CSUM) !== 0) {
      const cs = (b[to + 6]! | (b[to + 7]! << 8)) + shift;
      b[to + 6] = cs & 0xff;
      b[to + 7] = cs >>> 8;
    }
    if (b[to + 1] !== VirtioNetGso.NONE) {
      const hl = (b[to + 2]! | (b[to + 3]! << 8)) + shift;
      b[to + 2] = hl & 0xff;
      b[to + 3] = hl >>> 8;
    }
  }

  #podIp(index: number): number {
    // MACs are 0a:58 + the pod's IPv4 address (forwarding.ts macForIpv4).
    return this.#table.portMacs[index]! % 0x1_0000_0000;
  }

  // ---- transmit --------------------------------------------------------------------

  /** Queues a frame (virtio-net header first) for a port; FrameSink for the coalescer. */
  enqueue(index: number, offset: number, length: number): void {
    const port = this.#ports[index];
    if (port === undefined) return;
    if (port.queue.full) this.#flushPort(port);
    port.queue.push(offset, length);
    if (this.#dirtyMark[index] === 0) {
      this.#dirtyMark[index] = 1;
      this.#dirty[this.#dirtyCount++] = index;
    }
  }

  #flush(): void {
    this.#coalescer.finishAll();
    for (let i = 0; i < this.#dirtyCount; i++) {
      const index = this.#dirty[i]!;
      this.#dirtyMark[index] = 0;
      const port = this.#ports[index];
      if (port !== undefined) this.#flushPort(port);
    }
    this.#dirtyCount = 0;
    this.#overlay.flush();
    this.arena.resetScratch();
  }

  #flushPort(port: DatapathPort): void {
    const q = port.queue;
    if (q.count === 0) return;
    const b = this.arena.buf;
    const cap = port.capture;
    let bytes = 0;
    for (let i = 0; i < q.count; i++) {
      bytes += q.lengths[i]!;
      if (cap !== null) cap.frame(b, q.offsets[i]! + VNET, q.lengths[i]! - VNET);
    }
    const sent = port.device.writeBatch(b, q.offsets, q.lengths, q.count);
    port.counters.txFrames += sent;
    port.counters.txBytes += bytes;
    if (sent < q.count) port.counters.drops[DatapathDrop.TX_FAILED]! += q.count - sent;
    q.count = 0;
  }
}

// The node's packet pipeline. Every port (pod TAPs, the host TUN) and the underlay
// socket read batches into the one arena; each batch is decided frame by frame and
// written out before the next read. Decisions read the current ForwardingTable,
// swapped whole by the control side between batches.
//
// Where a frame goes (IPv4; the pod network is IPv4 in this release):
//   from a pod:   ARP -> answered here | to a local pod's MAC -> switched as is |
//                 to the gateway MAC -> routed: local pod, remote node (VXLAN), or host
//   from host:    local pod | remote node (VXLAN)
//   from underlay (VXLAN): underlay.ts
// Frames keep their virtio-net header end to end on the node (TSO and partial checksums
// pass through untouched); only frames leaving on the underlay get segmented and
// checksummed in software.
import {
  ArpOp, DropReason, EtherType, EthernetFrame, Icmpv4Type, Icmpv6Type, IpProtocol, Ipv4Packet, Ipv6Packet, LinkType, PacketInfo,
  VirtioNetGso, VirtioNetHeader, decodeFrame, emitIcmpv4FragNeeded, isUnspecifiedIpv6, emitIcmpv6PacketTooBig, icmpErrorAllowed, loadIpv6Words,
  ETHERNET_HEADER_LENGTH as ETH, VIRTIO_NET_HEADER_LENGTH,
} from '../wire/index.ts';
import type { FrameDevice } from '../device/types.ts';
import { EntryPoint, Verdict } from '../services/nat-codes.ts';
import type { ServiceNat } from '../services/nat.ts';
import type { ServiceNat6 } from '../services/nat6.ts';
import { arpReplyInPlace, echo6ReplyInPlace, echoReplyInPlace, isValidNeighborSolicit, neighborAdvertInPlace, udp6ReplyInPlace, udpReplyInPlace } from './answers.ts';
import { Arena, BATCHES_PER_WAKEUP, RX_BATCH, SLOT_SIZE, HEADROOM } from './arena.ts';
import type { PortCapture } from './capture.ts';
import { DatapathDrop, PortCounters } from './counters.ts';
import type { ForwardingTable } from './forwarding.ts';
import type { FrameSink } from './offload.ts';
import { DatapathPort, PortKind, type PortKindCode } from './port.ts';
import { ServiceStage } from './service-stage.ts';
import type { TunnelEgress } from './tunnel-offload.ts';
import { Underlay, type UnderlayRoutes, type UnderlaySocket } from './underlay.ts';

const NO_PORT = -1;
/** Room for an ICMP "fragmentation needed" behind its Ethernet header (RFC 1812 §4.3.2.3: at most 576 bytes). */
const FRAG_NEEDED_BYTES = ETH + 576;
/** Room for an ICMPv6 Packet Too Big behind its Ethernet header (RFC 4443 §2.4(c): at most the minimum MTU, 1280). */
const PACKET_TOO_BIG_BYTES = ETH + 1280;

export type { UnderlaySocket };


/**
 * A UDP service the node answers itself, in the data path: the cluster DNS server's
 * answers from its compiled zone. Whatever it does not answer goes on to the node's
 * stack, where the same server listens on a socket.
 */
export interface LocalUdpAnswerer {
  /**
   * The datagram's payload is `b[off, off + len)`, from `src`; writes the reply payload
   * into `out` from 0 and returns its length, or 0 to pass the datagram on. Synchronous,
   * and must not keep `b`.
   */
  answer(b: Buffer, off: number, len: number, out: Buffer, src: number): number;
}

/** LocalUdpAnswerer's IPv6 counterpart: the datagram's source address is the 16 bytes at `b[srcOffset]`. */
export interface LocalUdpAnswerer6 {
  answer(b: Buffer, off: number, len: number, out: Buffer, srcOffset: number): number;
}

/** Rounds of reading the ports a wakeup wrote to (#chase): a request, its answer, the next. */
const CHASE_ROUNDS = 2;
/** A wakeup that read more frames than this is bulk traffic: no chase. */
const CHASE_MAX_FRAMES = 16;

/** Room for a reply payload: the largest UDP payload over IPv4. */
const LOCAL_REPLY_BYTES = 65507;
/** An IPv4 header without options, the only kind answered in the data path. */
const PLAIN_IPV4_HEADER = 20;
/** An IPv6 header without extension headers, likewise. */
const PLAIN_IPV6_HEADER = 40;

export class Datapath implements FrameSink, UnderlayRoutes {
  readonly arena = new Arena();
  #table: ForwardingTable;
  #ports: (DatapathPort | undefined)[] = [];
  #hostPort = NO_PORT;
  readonly #underlay: Underlay;
  readonly #services: ServiceStage;
  readonly #info = new PacketInfo();
  // Ports with frames queued in this batch.
  readonly #dirty = new Int32Array(1024);
  #dirtyCount = 0;
  #dirtyMark = new Uint8Array(1024);
  // Ports written since the wakeup began, whose answers may already be waiting (#chase).
  readonly #written = new Int32Array(1024);
  #writtenCount = 0;
  readonly #writtenMark = new Uint8Array(1024);
  readonly #chaseList = new Int32Array(1024);
  /** Frames read since the wakeup began: a wakeup of bulk traffic chases nothing. */
  #wakeupFrames = 0;
  /** Reads of ports just written that found their answer waiting (#chase), and that found nothing. */
  chaseHits = 0;
  chaseMisses = 0;
  /** Ports removed because their device failed (the pod's namespace or eth0 went away). */
  portFailures = 0;
  /**
   * Whether the service tables are complete, so that steered traffic no service claims
   * can go back to the node's stack. An agent restarting sets it false until its first
   * sync: a node-port connection opened meanwhile is dropped (its client sends again)
   * rather than reset by a stack that has no listener.
   */
  servicesSynced = true;
  #localUdpAddresses: number[] = [];
  #localUdpPort = -1;
  #localUdp: LocalUdpAnswerer | null = null;
  #localReply: Buffer | null = null;
  /** The IPv6 local UDP service: its addresses back to back, 16 bytes each (compared in place, allocation-free). */
  #localUdpAddresses6 = new Uint8Array(0);
  #localUdpPort6 = -1;
  #localUdp6: LocalUdpAnswerer6 | null = null;
  /** Datagrams answered by the LocalUdpAnswerer, and passed on by it. */
  localUdpAnswered = 0;
  localUdpPassed = 0;
  /**
   * Told when a port's device fails for good (a read errno such as EBADFD once the TAP
   * is gone with the pod's namespace): the port is already out of the datapath, every
   * other port keeps running. The agent forgets the pod's route and keeps its record
   * until CNI DEL.
   */
  onPortFailed: ((port: DatapathPort, err: Error) => void) | null = null;

  constructor(table: ForwardingTable, underlay: UnderlaySocket | null) {
    this.#table = table;
    this.#services = new ServiceStage(this.arena, this);
    this.#underlay = new Underlay(this.arena, underlay, this, this.#services, () => this.#flush(), (datagrams) => {
      this.#wakeupFrames = datagrams;
      this.#chase();
    });
    this.#setUnderlayAddress(table);
  }

  #setUnderlayAddress(table: ForwardingTable): void {
    this.#underlay.localIP[0] = table.underlayIP;
    const words = new Int32Array(4);
    loadIpv6Words(words, 0, table.underlayIP6, 0);
    this.#underlay.localIP6.set(words); // int32 words stored as uint32: the same bits
  }

  get table(): ForwardingTable {
    return this.#table;
  }

  /** Swaps in a new table. Batches run to completion, so this lands between two of them. */
  setTable(table: ForwardingTable): void {
    // The underlay's family is the socket's, chosen once (one family per cluster).
    if (table.underlayFamily !== this.#table.underlayFamily) throw new RangeError(`a table for an IPv${table.underlayFamily} underlay on an IPv${this.#table.underlayFamily} one`);
    this.#table = table;
    this.#setUnderlayAddress(table);
  }

  /** Installs the service proxy; its tables are swapped through `nat.setTable` between batches. */
  setServiceNat(nat: ServiceNat | null): void {
    this.#services.nat = nat;
  }

  /** Expired service flows removed, a slice of `maxScan` entries (call it on a timer). */
  expireServiceFlows(maxScan: number): number {
    return this.#services.expire(maxScan);
  }

  get serviceNat(): ServiceNat | null {
    return this.#services.nat;
  }

  /** The IPv6 service proxy (NAT66); null = IPv6 is routed as addressed. */
  setServiceNat6(nat: ServiceNat6 | null): void {
    this.#services.nat6 = nat;
  }

  get serviceNat6(): ServiceNat6 | null {
    return this.#services.nat6;
  }

  /** The host port's index, or -1 while there is none. */
  get hostPort(): number {
    return this.#hostPort;
  }

  /** Counters of the underlay socket (received datagrams and drops, sent datagrams). */
  get underlayCounters(): PortCounters {
    return this.#underlay.counters;
  }

  /** A capture of the underlay (`tapir capture ... underlay`), or null. */
  get underlayCapture(): PortCapture | null {
    return this.#underlay.capture;
  }

  set underlayCapture(c: PortCapture | null) {
    this.#underlay.capture = c;
  }

  get ports(): readonly (DatapathPort | undefined)[] {
    return this.#ports;
  }

  get underlayRecvErrors(): number {
    return this.#underlay.recvErrors;
  }

  get coalescedSegments(): number {
    return this.#underlay.coalescer.coalesced;
  }

  /**
   * TSO frames for remote nodes go to the kernel whole through `egress` (the node's
   * egress TAP; tunnel-offload.ts) instead of being cut here; null cuts them again. The
   * datapath does not own the device: the caller closes it.
   */
  set tunnelEgress(egress: TunnelEgress | null) {
    this.#underlay.flush();
    this.#underlay.egress = egress;
  }

  get tunnelEgress(): TunnelEgress | null {
    return this.#underlay.egress;
  }

  /** UDP-tunnel super-frames handed to the kernel whole (0 with the offload off), and received whole. */
  get superFrames(): { sent: number; received: number } {
    return { sent: this.#underlay.egress?.sent ?? 0, received: this.#underlay.superFramesReceived };
  }

  /** Adds a port and starts reading it; returns its index (reused after removal). */
  addPort(kind: PortKindCode, name: string, device: FrameDevice, vnetSize: number): number {
    if (vnetSize !== VIRTIO_NET_HEADER_LENGTH) throw new Error(`port ${name}: the datapath needs a ${VIRTIO_NET_HEADER_LENGTH}-byte virtio-net header, the device has ${vnetSize}`);
    let index = this.#ports.indexOf(undefined);
    if (index < 0) index = this.#ports.length;
    if (index >= this.#dirty.length) throw new RangeError(`port ${name}: the datapath holds at most ${this.#dirty.length} ports`);
    const port = new DatapathPort(index, kind, name, device, vnetSize);
    this.#ports[index] = port;
    if (kind === PortKind.HOST) this.#hostPort = index;
    device.onReadable(() => {
      this.#wakeupFrames = 0;
      this.#readPort(port);
      this.#chase();
    });
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
    this.#underlay.pause();
  }

  /**
   * Pods' datagrams to `addresses`:`port` are offered to `answerer` first (null: none).
   * Only pods': the node's own processes reach the same server through its socket.
   */
  setLocalUdpService(addresses: readonly number[], port: number, answerer: LocalUdpAnswerer | null): void {
    this.#localUdpAddresses = answerer === null ? [] : [...addresses];
    this.#localUdpPort = answerer === null ? -1 : port;
    this.#localUdp = answerer;
    if (answerer !== null) this.#localReply ??= Buffer.alloc(LOCAL_REPLY_BYTES);
  }

  /** setLocalUdpService for IPv6: pods' datagrams to `addresses` (16 bytes each):`port` go to `answerer` first. */
  setLocalUdpService6(addresses: readonly Uint8Array[], port: number, answerer: LocalUdpAnswerer6 | null): void {
    const flat = new Uint8Array(answerer === null ? 0 : 16 * addresses.length);
    if (answerer !== null) addresses.forEach((a, i) => flat.set(a.subarray(0, 16), 16 * i));
    this.#localUdpAddresses6 = flat;
    this.#localUdpPort6 = answerer === null ? -1 : port;
    this.#localUdp6 = answerer;
    if (answerer !== null) this.#localReply ??= Buffer.alloc(LOCAL_REPLY_BYTES);
  }

  /** Whether pods' UDP datagrams to `address`:`port` are offered to a local answerer (for `tapir trace`). */
  answersLocally(address: number, port: number): boolean {
    return this.#localUdp !== null && port === this.#localUdpPort && this.#localUdpAddresses.includes(address);
  }

  // ---- receive ---------------------------------------------------------------------

  #readPort(port: DatapathPort): void {
    const a = this.arena;
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      if (this.#ports[port.index] !== port) return;
      let n: number;
      try {
        n = port.device.readBatch(a.buf, SLOT_SIZE, HEADROOM, a.rxLengths, RX_BATCH);
      } catch (err) {
        // A device error belongs to this port alone: it must not reach the event loop,
        // where it would end the agent and every other pod's data plane with it.
        this.#portFailed(port, err as Error);
        return;
      }
      if (n === 0) return;
      this.#wakeupFrames += n;
      port.counters.countBatch(n);
      this.#services.tick();
      if (port.capture !== null) port.capture.stamp(Date.now());
      for (let i = 0; i < n; i++) {
        const off = a.rxOffset(i);
        const len = a.rxLengths[i]!;
        port.counters.rxFrames++;
        port.counters.rxBytes += len;
        if (port.capture !== null && len > VIRTIO_NET_HEADER_LENGTH) port.capture.frame(a.buf, off + VIRTIO_NET_HEADER_LENGTH, len - VIRTIO_NET_HEADER_LENGTH);
        if (port.kind === PortKind.POD) this.#fromPod(port, off, len);
        else this.#fromHost(port, off, len);
      }
      this.#flush();
      if (n < RX_BATCH) return;
    }
  }

  #portFailed(port: DatapathPort, err: Error): void {
    this.removePort(port.index);
    this.portFailures++;
    this.onPortFailed?.(port, err);
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
    if (len <= VIRTIO_NET_HEADER_LENGTH) return this.#drop(c, DropReason.TRUNCATED_VIRTIO_NET_HEADER);
    const e = off + VIRTIO_NET_HEADER_LENGTH;
    const reason = decodeFrame(info, b, e, len - VIRTIO_NET_HEADER_LENGTH, LinkType.ETHERNET);
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
    if (info.ethertype !== EtherType.IPV4) {
      if (info.ethertype === EtherType.IPV6) return this.#fromPod6(port, off, len, e);
      return this.#drop(c, DropReason.UNSUPPORTED_ETHERTYPE);
    }
    if (info.src4 !== podIp || podIp === 0) return this.#drop(c, DatapathDrop.SPOOFED_IP);
    if (!Ipv4Packet.headerChecksumOk(b, info.l3Offset)) return this.#drop(c, DatapathDrop.BAD_IPV4_CHECKSUM);
    const v = this.#services.process(info, EntryPoint.POD, VirtioNetHeader.needsCsum(b, off), c, port.index);
    if (v > Verdict.NATED) return;
    // Reverse NAT of a flow of the node's own, localhost node ports: those alone may go to 127.0.0.0/8.
    if (info.dst4 >>> 24 === 127 && v !== Verdict.NATED) return this.#drop(c, DatapathDrop.LOOPBACK_DESTINATION);

    const dstMac = info.ethDst;
    if (dstMac !== t.gatewayMac) {
      // Layer 2 between pods of this node: a frame addressed to a local pod's MAC.
      const to = t.podPorts.get(info.dst4);
      if (to < 0 || t.portMacs[to] !== dstMac) return this.#drop(c, DatapathDrop.NOT_FOR_US);
      if (!this.#fitsPodMtu(port, off)) return;
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
    const ip = e + ETH;
    const to = t.podPorts.get(dst);
    if (to >= 0) {
      // A frame larger than the pod MTU with no TSO metadata would be truncated or
      // refused by the receiving pod: ICMP fragmentation needed (DF) or a drop, as for
      // the overlay.
      if (!this.#fitsPodMtu(port, off)) return;
      Ipv4Packet.decrementTtl(b, ip);
      EthernetFrame.setDst(b, e, t.portMacs[to]!);
      EthernetFrame.setSrc(b, e, t.gatewayMac);
      return this.enqueue(to, off, len);
    }
    if (t.podCIDR.contains(dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
    const node = t.remoteNode(dst);
    if (node >= 0) {
      if (!this.#fitsPodMtu(port, off)) return;
      Ipv4Packet.decrementTtl(b, ip);
      return this.#underlay.send(c, off, e, len - VIRTIO_NET_HEADER_LENGTH, node);
    }
    if (info.protocol === IpProtocol.UDP && info.dstPort === this.#localUdpPort && this.#answerLocalUdp(port, off)) return;
    // Everything else is for the node's own stack (its addresses, or beyond it).
    const host = this.#hostPort;
    if (host === NO_PORT) return this.#drop(c, DatapathDrop.NO_ROUTE);
    Ipv4Packet.decrementTtl(b, ip);
    // Strip Ethernet: the virtio-net header moves up to sit in front of the IP header.
    VirtioNetHeader.move(b, off, ip - VIRTIO_NET_HEADER_LENGTH, -ETH);
    this.enqueue(host, ip - VIRTIO_NET_HEADER_LENGTH, len - ETH);
  }

  /**
   * A pod's IPv6 frame. The same decisions as IPv4's: neighbour solicitations for the
   * gateway and local pods answered here (the ARP of IPv6), frames to a local pod's MAC
   * switched, frames to the gateway MAC routed to a local pod, a remote node or the
   * node's stack. Sources are the pod's address or its link-local address. Service NAT
   * (NAT66) runs first, as IPv4's does.
   */
  #fromPod6(port: DatapathPort, off: number, len: number, e: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    if (!t.hasIpv6) return this.#drop(c, DatapathDrop.IPV6_UNSUPPORTED);
    const src = info.src6Offset;
    const dst = info.dst6Offset;
    if (!t.isPodSource6(port.index, b, src)) {
      // The unspecified source is duplicate address detection's and MLD's: link control.
      return this.#drop(c, isUnspecifiedIpv6(b, src) && info.protocol === IpProtocol.ICMPV6 ? DatapathDrop.NDP_IGNORED : DatapathDrop.SPOOFED_IP);
    }
    if (info.protocol === IpProtocol.ICMPV6 && info.icmpType >= Icmpv6Type.ROUTER_SOLICIT && info.icmpType <= Icmpv6Type.REDIRECT) {
      if (info.icmpType === Icmpv6Type.NEIGHBOR_SOLICIT) return this.#answerNeighborSolicit(port, off);
      return this.#drop(c, DatapathDrop.NDP_IGNORED);
    }
    if (b[dst] === 0xff) {
      // Multicast: MLD reports and queries are link control; nothing else is forwarded (as IPv4 broadcast).
      return this.#drop(c, info.protocol === IpProtocol.ICMPV6 ? DatapathDrop.NDP_IGNORED : DatapathDrop.NOT_FOR_US);
    }
    if (this.#services.process6(info, EntryPoint.POD, VirtioNetHeader.needsCsum(b, off), c, port.index) > Verdict.NATED) return;
    const dstMac = info.ethDst;
    if (dstMac !== t.gatewayMac) {
      const to = t.podPorts6.getAt(b, dst);
      if (to < 0 || t.portMacs[to] !== dstMac) return this.#drop(c, DatapathDrop.NOT_FOR_US);
      if (!this.#fitsPodMtu6(port, off)) return;
      return this.enqueue(to, off, len);
    }
    this.#route6(port, off, len, e);
  }

  /** A pod's IPv6 packet sent to the gateway MAC: the agent is its router (#route's counterpart). */
  #route6(port: DatapathPort, off: number, len: number, e: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    const dst = info.dst6Offset;
    if (t.isGateway6(b, dst) && info.protocol === IpProtocol.ICMPV6 && info.icmpType === Icmpv6Type.ECHO_REQUEST && info.icmpCode === 0) {
      echo6ReplyInPlace(this.arena.buf, info, off, VIRTIO_NET_HEADER_LENGTH, t.gatewayMac);
      return this.enqueue(port.index, off, len);
    }
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    const ip = e + ETH;
    const to = t.podPorts6.getAt(b, dst);
    if (to >= 0) {
      if (!this.#fitsPodMtu6(port, off)) return;
      Ipv6Packet.decrementHopLimit(b, ip);
      this.#macsToPod(e, to);
      return this.enqueue(to, off, len);
    }
    // The gateway address is the node's own on the host TUN (its IPv6 source towards pods).
    if (!t.isGateway6(b, dst)) {
      if (t.podCIDR6!.containsAt(b, dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
      const node = t.remoteNode6(b, dst);
      if (node >= 0) {
        if (!this.#fitsPodMtu6(port, off)) return;
        Ipv6Packet.decrementHopLimit(b, ip);
        return this.#underlay.send(c, off, e, len - VIRTIO_NET_HEADER_LENGTH, node);
      }
    }
    if (info.protocol === IpProtocol.UDP && info.dstPort === this.#localUdpPort6 && this.#answerLocalUdp6(port, off)) return;
    const host = this.#hostPort;
    if (host === NO_PORT) return this.#drop(c, DatapathDrop.NO_ROUTE);
    Ipv6Packet.decrementHopLimit(b, ip);
    VirtioNetHeader.move(b, off, ip - VIRTIO_NET_HEADER_LENGTH, -ETH);
    this.enqueue(host, ip - VIRTIO_NET_HEADER_LENGTH, len - ETH);
  }

  /** The node's stack's IPv6 packet (from the host TUN) for a pod here or on another node. */
  #fromHost6(port: DatapathPort, off: number, len: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    if (!t.hasIpv6) return this.#drop(c, DatapathDrop.IPV6_UNSUPPORTED);
    // The node's own stack sends from its IPv6 addresses (the gateway's, the underlay's
    // or ::1 to a localhost node port); anything else was steered in from outside.
    const entryPoint = t.isNodeAddress6(b, info.src6Offset) ? EntryPoint.HOST : EntryPoint.EXTERNAL;
    const v = this.#services.process6(info, entryPoint, VirtioNetHeader.needsCsum(b, off), c, port.index);
    if (v > Verdict.NATED) return;
    const dst = info.dst6Offset;
    const to = t.podPorts6.getAt(b, dst);
    let node = -1;
    if (to < 0) {
      if (t.podCIDR6!.containsAt(b, dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
      node = t.remoteNode6(b, dst);
      if (node < 0) {
        // Steered here and none of ours: back to the node's stack (#fromHost's rule).
        if (v === Verdict.PASS && this.servicesSynced && t.isNodeAddress6(b, dst)) return this.enqueue(port.index, off, len);
        return this.#drop(c, DatapathDrop.NO_ROUTE);
      }
    }
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    if (to < 0 && !this.#fitsPodMtu6(port, off)) return;
    const ip = off + VIRTIO_NET_HEADER_LENGTH;
    Ipv6Packet.decrementHopLimit(b, ip);
    const e = ip - ETH;
    VirtioNetHeader.move(b, off, e - VIRTIO_NET_HEADER_LENGTH, ETH);
    if (to >= 0) this.#macsToPod(e, to);
    else this.#macsToOverlay(e);
    EthernetFrame.setEthertype(b, e, EtherType.IPV6);
    if (to >= 0) return this.enqueue(to, e - VIRTIO_NET_HEADER_LENGTH, len + ETH);
    this.#underlay.send(c, e - VIRTIO_NET_HEADER_LENGTH, e, len - VIRTIO_NET_HEADER_LENGTH + ETH, node);
  }

  #fromHost(port: DatapathPort, off: number, len: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const c = port.counters;
    const t = this.#table;
    if (len <= VIRTIO_NET_HEADER_LENGTH) return this.#drop(c, DropReason.TRUNCATED_VIRTIO_NET_HEADER);
    const ip = off + VIRTIO_NET_HEADER_LENGTH;
    const reason = decodeFrame(info, b, ip, len - VIRTIO_NET_HEADER_LENGTH, LinkType.RAW_IP);
    if (reason !== DropReason.OK) return this.#drop(c, reason);
    if (info.ipVersion !== 4) return this.#fromHost6(port, off, len);
    // Steered traffic comes from tc ingress, before the kernel's own IPv4 checks.
    if (!Ipv4Packet.headerChecksumOk(b, ip)) return this.#drop(c, DatapathDrop.BAD_IPV4_CHECKSUM);
    // The node's own stack sends from its underlay address, or from 127.0.0.1 to a
    // localhost node port (steered by policy routing; from the wire a loopback source is
    // never steered); anything else on the host port was steered in from outside (node
    // ports, load-balancer and external IPs).
    const src = info.src4;
    const entryPoint = src === t.underlayIP || src >>> 24 === 127 ? EntryPoint.HOST : EntryPoint.EXTERNAL;
    const v = this.#services.process(info, entryPoint, VirtioNetHeader.needsCsum(b, off), c, port.index);
    if (v > Verdict.NATED) return;
    const dst = info.dst4;
    const to = t.podPorts.get(dst);
    let node = -1;
    if (to < 0) {
      if (t.podCIDR.contains(dst)) return this.#drop(c, DatapathDrop.NO_SUCH_POD);
      node = t.remoteNode(dst);
      if (node < 0) {
        // Steered here (a node port no service has, from outside or from the node itself)
        // and none of ours: back to the node's stack, which delivers it to a listener or
        // resets it, as it would without the agent. Only for the node's own addresses,
        // which the stack delivers and never routes back into the TUN.
        if (v === Verdict.PASS && this.servicesSynced && (dst === t.underlayIP || dst >>> 24 === 127)) return this.enqueue(port.index, off, len);
        return this.#drop(c, DatapathDrop.NO_ROUTE);
      }
    }
    if (info.ttl <= 1) return this.#drop(c, DatapathDrop.TTL_EXPIRED);
    if (to < 0 && !this.#fitsPodMtu(port, off)) return;
    Ipv4Packet.decrementTtl(b, ip);
    // Prepend Ethernet: the virtio-net header moves down 14 bytes into the headroom.
    const e = ip - ETH;
    VirtioNetHeader.move(b, off, e - VIRTIO_NET_HEADER_LENGTH, ETH);
    if (to >= 0) this.#macsToPod(e, to);
    else this.#macsToOverlay(e);
    EthernetFrame.setEthertype(b, e, EtherType.IPV4);
    if (to >= 0) return this.enqueue(to, e - VIRTIO_NET_HEADER_LENGTH, len + ETH);
    this.#underlay.send(c, e - VIRTIO_NET_HEADER_LENGTH, e, len - VIRTIO_NET_HEADER_LENGTH + ETH, node);
  }

  // ---- actions ---------------------------------------------------------------------

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
    arpReplyInPlace(this.arena.buf, info, off, VIRTIO_NET_HEADER_LENGTH, target, mac);
    this.enqueue(port.index, off, len);
  }

  /** A pod's neighbour solicitation for the gateway or a local pod is answered in place (RFC 4861 §7.2.4). */
  #answerNeighborSolicit(port: DatapathPort, off: number): void {
    const b = this.arena.buf;
    const info = this.#info;
    const t = this.#table;
    if (!isValidNeighborSolicit(b, info)) return this.#drop(port.counters, DatapathDrop.NDP_INVALID);
    const target = info.l4Offset + 8;
    let mac = -1;
    const router = t.isGateway6(b, target);
    if (router) mac = t.gatewayMac;
    else {
      const p = t.podPorts6.getAt(b, target);
      if (p >= 0) mac = t.portMacs[p]!;
    }
    if (mac < 0) return this.#drop(port.counters, DatapathDrop.NDP_UNKNOWN_TARGET);
    const n = neighborAdvertInPlace(b, info, off, VIRTIO_NET_HEADER_LENGTH, mac, router);
    this.enqueue(port.index, off, n);
  }

  /** Echo requests to the gateway address get their reply (pods can ping their router). */
  #answerGateway(port: DatapathPort, off: number, len: number): void {
    const info = this.#info;
    if (info.protocol !== IpProtocol.ICMP || info.icmpType !== Icmpv4Type.ECHO_REQUEST || info.icmpCode !== 0) {
      return this.#drop(port.counters, DatapathDrop.FOR_GATEWAY);
    }
    echoReplyInPlace(this.arena.buf, info, off, VIRTIO_NET_HEADER_LENGTH, this.#table.gatewayMac);
    this.enqueue(port.index, off, len);
  }

  /** A pod's datagram to the node's local UDP service, answered in place if the answerer takes it. */
  #answerLocalUdp(port: DatapathPort, off: number): boolean {
    const info = this.#info;
    const answerer = this.#localUdp;
    if (answerer === null || info.isFragment || info.ipHeaderLength !== PLAIN_IPV4_HEADER || !this.#localUdpAddresses.includes(info.dst4)) return false;
    const out = this.#localReply!;
    const n = answerer.answer(this.arena.buf, info.payloadOffset, info.payloadLength, out, info.src4);
    if (n <= 0) {
      this.localUdpPassed++;
      return false;
    }
    // The reply stays in the request's slot: 64 KiB from the frame's start hold any datagram.
    const b = this.arena.buf;
    out.copy(b, info.payloadOffset, 0, n);
    const len = udpReplyInPlace(b, info, off, VIRTIO_NET_HEADER_LENGTH, this.#table.gatewayMac, n);
    this.localUdpAnswered++;
    this.enqueue(port.index, off, len);
    return true;
  }

  /** #answerLocalUdp for IPv6 (a pod's datagram to an IPv6 cluster DNS address): answered in place if the answerer takes it. */
  #answerLocalUdp6(port: DatapathPort, off: number): boolean {
    const info = this.#info;
    const answerer = this.#localUdp6;
    if (answerer === null || info.isFragment || info.ipHeaderLength !== PLAIN_IPV6_HEADER || !this.#isLocalUdpAddress6(info.dst6Offset)) return false;
    const out = this.#localReply!;
    const n = answerer.answer(this.arena.buf, info.payloadOffset, info.payloadLength, out, info.src6Offset);
    if (n <= 0) {
      this.localUdpPassed++;
      return false;
    }
    const b = this.arena.buf;
    out.copy(b, info.payloadOffset, 0, n);
    const len = udp6ReplyInPlace(b, info, off, VIRTIO_NET_HEADER_LENGTH, this.#table.gatewayMac, n);
    this.localUdpAnswered++;
    this.enqueue(port.index, off, len);
    return true;
  }

  /** Whether the 16 bytes at `b[at]` are one of the IPv6 local UDP service's addresses. */
  #isLocalUdpAddress6(at: number): boolean {
    const b = this.arena.buf;
    const list = this.#localUdpAddresses6;
    for (let base = 0; base < list.length; base += 16) {
      let i = 0;
      while (i < 16 && list[base + i] === b[at + i]) i++;
      if (i === 16) return true;
    }
    return false;
  }

  /**
   * True when the packet fits the pod MTU, which is also the overlay's (each segment,
   * for a TSO frame); else answers DF packets with ICMP fragmentation needed (RFC 1191)
   * and drops the rest.
   */
  #fitsPodMtu(port: DatapathPort, vh: number): boolean {
    const b = this.arena.buf;
    const info = this.#info;
    const mtu = this.#table.mtu;
    if (this.#largestPacket(vh) <= mtu) return true;
    if (!Ipv4Packet.dontFragment(b, info.l3Offset) || !icmpErrorAllowed(info, b)) {
      this.#drop(port.counters, DatapathDrop.TOO_BIG);
      return false;
    }
    this.#drop(port.counters, DatapathDrop.FRAG_NEEDED);
    const at = this.arena.allocFrame(FRAG_NEEDED_BYTES);
    if (at < 0) return false;
    const n = emitIcmpv4FragNeeded(b, at + VIRTIO_NET_HEADER_LENGTH, info, b, mtu, this.#table.gateway);
    this.enqueue(port.index, at, VIRTIO_NET_HEADER_LENGTH + n);
    return false;
  }

  /**
   * IPv6's #fitsPodMtu: IPv6 is never fragmented on the way (RFC 8200 §5), so a packet
   * over the MTU is answered with ICMPv6 Packet Too Big (RFC 4443 §3.2) from the gateway.
   */
  #fitsPodMtu6(port: DatapathPort, vh: number): boolean {
    const b = this.arena.buf;
    const info = this.#info;
    const t = this.#table;
    const mtu = t.mtu;
    if (this.#largestPacket(vh) <= mtu) return true;
    this.#drop(port.counters, DatapathDrop.PACKET_TOO_BIG);
    if (!icmpErrorAllowed(info, b)) return false;
    const at = this.arena.allocFrame(PACKET_TOO_BIG_BYTES);
    if (at < 0) return false;
    // Over Ethernet back to a pod; to the host TUN as a raw IP packet (replyLink).
    const n = emitIcmpv6PacketTooBig(b, at + VIRTIO_NET_HEADER_LENGTH, info, b, mtu, t.gateway6);
    this.enqueue(port.index, at, VIRTIO_NET_HEADER_LENGTH + n);
    return false;
  }

  /**
   * The Ethernet addresses of a frame routed to local pod port `to`: its MAC, from the
   * gateway's. The MACs are doubles (48 bits) and are read here, in a small method of
   * their own, never passed in or merged: in a big caller a MAC given to setDst as an
   * argument left non-inlined (#route6), or chosen by a conditional (#fromHost's "pod
   * MAC or gateway MAC"), was boxed into a heap number on every packet.
   */
  #macsToPod(e: number, to: number): void {
    const b = this.arena.buf;
    const t = this.#table;
    EthernetFrame.setDst(b, e, t.portMacs[to]!);
    EthernetFrame.setSrc(b, e, t.gatewayMac);
  }

  /** The Ethernet addresses of a frame for the overlay: the gateway's both ways (the receiving node sets its own). */
  #macsToOverlay(e: number): void {
    const b = this.arena.buf;
    const mac = this.#table.gatewayMac;
    EthernetFrame.setDst(b, e, mac);
    EthernetFrame.setSrc(b, e, mac);
  }

  /** The largest IP packet the frame at `vh` puts on a link: the packet, or each segment of a TSO frame. */
  #largestPacket(vh: number): number {
    const b = this.arena.buf;
    const info = this.#info;
    return VirtioNetHeader.gsoProtocol(b, vh) === VirtioNetGso.NONE
      ? info.ipLength
      : info.payloadOffset - info.l3Offset + VirtioNetHeader.gsoSize(b, vh);
  }

  #podIp(index: number): number {
    return this.#table.portIp4[index] ?? 0;
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
    this.#underlay.coalescer.finishAll();
    for (let i = 0; i < this.#dirtyCount; i++) {
      const index = this.#dirty[i]!;
      this.#dirtyMark[index] = 0;
      const port = this.#ports[index];
      if (port !== undefined) this.#flushPort(port);
    }
    this.#dirtyCount = 0;
    this.#underlay.flush();
    this.arena.resetScratch();
  }

  /**
   * After a wakeup of request/response traffic: reads the ports it wrote to, at most
   * CHASE_ROUNDS times over. A TAP write runs the pod's stack in the writing thread, so a
   * SYN-ACK, an ACK or a kernel's answer is often in the port's queue when the write
   * returns; read now, it skips a turn of the event loop (epoll, libuv, the callback) per
   * hop. A wakeup that read more than CHASE_MAX_FRAMES is bulk traffic, whose answers
   * come with the next wakeup anyway: it chases nothing.
   */
  #chase(): void {
    for (let round = 0; round < CHASE_ROUNDS && this.#writtenCount > 0; round++) {
      const n = this.#writtenCount;
      const list = this.#chaseList;
      for (let i = 0; i < n; i++) {
        const index = this.#written[i]!;
        list[i] = index;
        this.#writtenMark[index] = 0;
      }
      this.#writtenCount = 0;
      if (this.#wakeupFrames > CHASE_MAX_FRAMES) return;
      for (let i = 0; i < n; i++) {
        const port = this.#ports[list[i]!];
        if (port === undefined) continue;
        const before = this.#wakeupFrames;
        this.#readPort(port);
        if (this.#wakeupFrames > before) this.chaseHits++;
        else this.chaseMisses++;
      }
    }
    for (let i = 0; i < this.#writtenCount; i++) this.#writtenMark[this.#written[i]!] = 0;
    this.#writtenCount = 0;
  }

  #flushPort(port: DatapathPort): void {
    const q = port.queue;
    if (q.count === 0) return;
    const b = this.arena.buf;
    const cap = port.capture;
    let bytes = 0;
    for (let i = 0; i < q.count; i++) {
      bytes += q.lengths[i]!;
      if (cap !== null) cap.frame(b, q.offsets[i]! + VIRTIO_NET_HEADER_LENGTH, q.lengths[i]! - VIRTIO_NET_HEADER_LENGTH);
    }
    const sent = port.device.writeBatch(b, q.offsets, q.lengths, q.count);
    const index = port.index;
    if (this.#writtenMark[index] === 0) {
      this.#writtenMark[index] = 1;
      this.#written[this.#writtenCount++] = index;
    }
    port.counters.txFrames += sent;
    port.counters.txBytes += bytes;
    if (sent < q.count) port.counters.drops[DatapathDrop.TX_FAILED]! += q.count - sent;
    q.count = 0;
  }
}

// The VXLAN underlay, both directions (RFC 7348, UDP 4789). Receive: a datagram from a
// known node with the cluster's VNI is decapsulated and its inner packet delivered to a
// local pod (TCP segments coalesced into TSO frames), to the host port, or, reverse
// NATed for a client elsewhere, back over the overlay. Transmit: frames for other
// nodes are wrapped in place (or cut into segments in scratch) and queued for the
// socket, which sends the whole queue with one sendmmsg per batch.
//
// The underlay is IPv4 or IPv6 (the table's underlayFamily, fixed for the node's life:
// one family per cluster). Over IPv6 a peer's address is four words (the socket's form,
// arena.rxSrcAddrs6, queue.dstAddrs6, table.nodeUnderlay6) and the sender is identified
// by its whole address, as over IPv4; the inner frames are the same either way.
import type { UdpBatchSocket } from '../device/udp.ts';
import {
  DropReason, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, Ipv6Packet, LinkType, PacketInfo, VirtioNetGso, VirtioNetHeader, VxlanHeader,
  decodeFrame, get32, ETHERNET_HEADER_LENGTH as ETH, VIRTIO_NET_HEADER_LENGTH, VXLAN_FLAG_I, VXLAN_HEADER_LENGTH, VXLAN_PORT,
} from '../wire/index.ts';
import { EntryPoint, Verdict } from '../services/nat-codes.ts';
import { BATCHES_PER_WAKEUP, HEADROOM, RX_BATCH, SLOT_SIZE, UnderlayTxQueue, type Arena } from './arena.ts';
import type { PortCapture } from './capture.ts';
import { DatapathDrop, PortCounters } from './counters.ts';
import type { ForwardingTable } from './forwarding.ts';
import { TcpCoalescer, completeChecksum, segmentTcpToVxlan, type FrameSink } from './offload.ts';
import { NO_REPLY, type ServiceStage } from './service-stage.ts';
import { TUNNEL_PREFIX, setTsoHeader, tunnelSuperFrame, type TunnelEgress } from './tunnel-offload.ts';

/** What the datapath needs of the underlay socket (UdpBatchSocket, or a fake in tests). */
export type UnderlaySocket = Pick<UdpBatchSocket, 'gsoSupported' | 'recvBatch' | 'sendBatch' | 'onReadable' | 'pause' | 'close'>;

/** What the underlay needs of the rest of the datapath: its table, the host port, the port queues. */
export interface UnderlayRoutes extends FrameSink {
  /** The forwarding table of the current batch. */
  readonly table: ForwardingTable;
  /** The host port's index, or -1 while there is none. */
  readonly hostPort: number;
}

const NO_PORT = -1;

export class Underlay {
  readonly counters = new PortCounters();
  capture: PortCapture | null = null;
  /** This node's underlay address (the source of captured datagrams). */
  readonly localIP = new Uint32Array(1);
  /** Over an IPv6 underlay, this node's IPv6 underlay address as four words (the source of captured datagrams). */
  readonly localIP6 = new Uint32Array(4);
  /** The underlay is IPv6 (decided at construction from the table; the socket must match). */
  readonly #six: boolean;
  /** Runs of TCP segments for local pods; closed by the datapath's flush. */
  readonly coalescer: TcpCoalescer;
  readonly #arena: Arena;
  readonly #socket: UnderlaySocket | null;
  readonly #routes: UnderlayRoutes;
  readonly #services: ServiceStage;
  readonly #info = new PacketInfo();
  readonly #queue = new UnderlayTxQueue(512);
  /** The kernel's UDP tunnel segmentation, where the node has it (tunnel-offload.ts); null segments in software. */
  egress: TunnelEgress | null = null;
  /** Flushes every queue of the datapath and frees scratch (segments live in scratch). */
  readonly #flushAll: () => void;

  /** recvmmsg calls that failed (counted, never thrown). */
  recvErrors = 0;
  /** UDP-tunnel super-frames received whole (tunnel-offload.ts). */
  superFramesReceived = 0;

  /** Run after each wakeup's reads with the datagrams read (the datapath's chase of answers: datapath.ts #chase). */
  readonly #afterWakeup: (datagrams: number) => void;

  constructor(arena: Arena, socket: UnderlaySocket | null, routes: UnderlayRoutes, services: ServiceStage, flushAll: () => void,
    afterWakeup: (datagrams: number) => void) {
    this.#arena = arena;
    this.#socket = socket;
    this.#routes = routes;
    this.#services = services;
    this.#flushAll = flushAll;
    this.coalescer = new TcpCoalescer(arena, routes, VIRTIO_NET_HEADER_LENGTH);
    this.#six = routes.table.underlayFamily === 6;
    const family = (socket as { family?: number } | null)?.family;
    if (family !== undefined && family !== routes.table.underlayFamily) {
      throw new RangeError(`the underlay socket is IPv${family} but the forwarding table's underlay is IPv${routes.table.underlayFamily}`);
    }
    this.#afterWakeup = afterWakeup;
    if (socket !== null) socket.onReadable(() => this.#afterWakeup(this.#read()));
  }

  pause(): void {
    this.#socket?.pause();
  }

  // ---- receive ---------------------------------------------------------------------

  /** Reads and handles what the socket holds, a few batches at most; returns the datagrams read. */
  #read(): number {
    const a = this.#arena;
    const u = this.#socket!;
    const six = this.#six;
    const srcAddrs = six ? a.rxSrcAddrs6 : a.rxSrcAddrs;
    let total = 0;
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      let n: number;
      try {
        n = u.recvBatch(a.buf, SLOT_SIZE, HEADROOM, a.rxLengths, srcAddrs, a.rxSrcPorts, a.rxSegSizes, RX_BATCH);
      } catch {
        // A socket error (a queued ICMP error reported by recvmmsg, say) is counted and
        // the socket read again at its next wakeup; it must not end the agent.
        this.recvErrors++;
        return total;
      }
      if (n === 0) return total;
      total += n;
      this.counters.countBatch(n);
      this.#services.tick();
      const t = this.#routes.table;
      const cap = this.capture;
      if (cap !== null) cap.stamp(Date.now());
      for (let i = 0; i < n; i++) {
        const off = a.rxOffset(i);
        const len = a.rxLengths[i]!;
        const seg = a.rxSegSizes[i]!;
        // A UDP-tunnel super-frame: one datagram larger than any packet of the overlay.
        const superFrame = len > VXLAN_HEADER_LENGTH + ETH + t.mtu && tunnelSuperFrame(a.buf, off, len);
        let node: number;
        if (six) {
          cap?.datagrams6(a.buf, off, len, seg, srcAddrs, 4 * i, this.localIP6, 0);
          node = t.nodeByUnderlay6(srcAddrs, 4 * i);
        } else {
          cap?.datagrams(a.buf, off, len, seg, srcAddrs[i]!, t.underlayIP);
          node = t.nodeByUnderlay(srcAddrs[i]!);
        }
        if (node < 0) {
          this.counters.drops[DatapathDrop.UNKNOWN_PEER]!++;
          continue;
        }
        if (superFrame) {
          this.superFramesReceived++;
          this.#receive(off, len, true, node, true);
        } else if (seg <= 0 || seg >= len) {
          this.#receive(off, len, true, node, false);
        } else {
          for (let at = off, k = 0; at < off + len; at += seg, k++) this.#receive(at, Math.min(seg, off + len - at), k === 0, node, false);
        }
      }
      this.#flushAll();
      if (n < RX_BATCH) return total;
    }
    return total;
  }

  #drop(reason: number): void {
    this.counters.drops[reason]!++;
  }

  /**
   * One VXLAN datagram (or one GRO segment of it) at `d`, `n` bytes. `inPlace` false:
   * the bytes in front belong to the previous segment, so the frame is copied before
   * anything is written in front of it. `superFrame`: a UDP-tunnel super-frame, a TCP
   * super-packet with a partial checksum, passed on as a TSO frame whose segments fill
   * the overlay MTU (the kernel does not say the sender's MSS: its UDP_GRO report is for
   * UDP GRO only).
   */
  #receive(d: number, n: number, inPlace: boolean, node: number, superFrame: boolean): void {
    const b = this.#arena.buf;
    const info = this.#info;
    const c = this.counters;
    const t = this.#routes.table;
    c.rxFrames++;
    c.rxBytes += n;
    if (n < VXLAN_HEADER_LENGTH) return this.#drop(DropReason.TRUNCATED_VXLAN);
    if ((VxlanHeader.flags(b, d) & VXLAN_FLAG_I) === 0) return this.#drop(DropReason.BAD_VXLAN_FLAGS);
    if (VxlanHeader.vni(b, d) !== t.vni) return this.#drop(DatapathDrop.WRONG_VNI);
    const e = d + VXLAN_HEADER_LENGTH;
    const len = n - VXLAN_HEADER_LENGTH;
    const reason = decodeFrame(info, b, e, len, LinkType.ETHERNET);
    if (reason !== DropReason.OK) return this.#drop(reason);
    if (superFrame && info.protocol !== IpProtocol.TCP) return this.#drop(DatapathDrop.UNSUPPORTED_GSO);
    const mss = superFrame ? t.mtu - (info.payloadOffset - info.l3Offset) : 0;
    if (info.ethertype !== EtherType.IPV4) {
      if (info.ethertype === EtherType.IPV6) return this.#receive6(e, len, inPlace, node, mss);
      return this.#drop(DropReason.UNSUPPORTED_ETHERTYPE);
    }
    if (info.ttl <= 1) return this.#drop(DatapathDrop.TTL_EXPIRED);
    if (!Ipv4Packet.headerChecksumOk(b, info.l3Offset)) return this.#drop(DatapathDrop.BAD_IPV4_CHECKSUM);
    // A node sends what it can own: its pods' packets, its own (its host TUN, replies
    // it reverse-NATed to its address), and replies of flows NATed here. Anything else
    // in a datagram from its address is spoofed (VXLAN authenticates nothing).
    if (t.remoteNode(info.src4) !== node && !this.#services.tracks(info)) return this.#drop(DatapathDrop.UNDERLAY_SPOOFED);
    // From the underlay come remote pods' packets, and replies of flows NATed here
    // (an endpoint on another node answering a client of this node's service).
    const v = this.#services.process(info, EntryPoint.POD, mss > 0, c, NO_REPLY);
    if (v > Verdict.NATED) return;
    this.#deliver(e, len, inPlace, v === Verdict.NATED, mss);
  }

  /**
   * Where the inner frame at `e` (decoded in #info, NATed when `nated`) goes. A method
   * of its own so that it has TurboFan's inlining budget to itself: as one function
   * with #receive, the TTL decrement was left a call (--trace-turbo-inlining).
   */
  #deliver(e: number, len: number, inPlace: boolean, nated: boolean, mss: number): void {
    const a = this.#arena;
    const b = a.buf;
    const info = this.#info;
    const t = this.#routes.table;
    const ip = e + ETH;
    const dst = info.dst4;
    const to = t.podPorts.get(dst);
    if (to >= 0) {
      Ipv4Packet.decrementTtl(b, ip);
      return this.#toPod(to, e, len, inPlace, mss);
    }
    // Reverse NATed for a client on another node (one of its pods, or the node itself,
    // e.g. reaching a node port on this node's address): back over the overlay to it.
    const back = nated ? t.remoteNode(dst) : -1;
    if (back >= 0) {
      Ipv4Packet.decrementTtl(b, ip);
      return this.#sendBack(e, len, inPlace, mss, back);
    }
    // For the node itself, or (reverse NATed) for a client beyond it.
    const host = this.#routes.hostPort;
    if ((dst === t.underlayIP || (nated && !t.podCIDR.contains(dst))) && host !== NO_PORT) {
      Ipv4Packet.decrementTtl(b, ip);
      return this.#toHost(host, ip, len - ETH, mss);
    }
    this.#drop(t.podCIDR.contains(dst) ? DatapathDrop.NO_SUCH_POD : DatapathDrop.NO_ROUTE);
  }

  /**
   * An inner IPv6 frame from remote node `node`: from one of its pods (or its node's
   * stack, whose IPv6 source is its gateway address, inside its range) to a pod here, or
   * to this node's own IPv6 address (the gateway's, on the host TUN); or a reply of a
   * flow NATed here (NAT66), reverse-NATed and delivered as #deliver does IPv4's.
   */
  #receive6(e: number, len: number, inPlace: boolean, node: number, mss: number): void {
    const a = this.#arena;
    const b = a.buf;
    const info = this.#info;
    const t = this.#routes.table;
    if (!t.hasIpv6) return this.#drop(DatapathDrop.IPV6_UNSUPPORTED);
    if (info.ttl <= 1) return this.#drop(DatapathDrop.TTL_EXPIRED);
    if (t.remoteNode6(b, info.src6Offset) !== node && !this.#services.tracks6(info)) return this.#drop(DatapathDrop.UNDERLAY_SPOOFED);
    const v = this.#services.process6(info, EntryPoint.POD, mss > 0, this.counters, NO_REPLY);
    if (v > Verdict.NATED) return;
    const ip = e + ETH;
    const dst = info.dst6Offset;
    const to = t.podPorts6.getAt(b, dst);
    if (to >= 0) {
      Ipv6Packet.decrementHopLimit(b, ip);
      return this.#toPod(to, e, len, inPlace, mss);
    }
    const back = v === Verdict.NATED ? t.remoteNode6(b, dst) : -1;
    if (back >= 0) {
      Ipv6Packet.decrementHopLimit(b, ip);
      return this.#sendBack(e, len, inPlace, mss, back);
    }
    const host = this.#routes.hostPort;
    if ((t.isGateway6(b, dst) || (v === Verdict.NATED && !t.podCIDR6!.containsAt(b, dst))) && host !== NO_PORT) {
      Ipv6Packet.decrementHopLimit(b, ip);
      return this.#toHost(host, ip, len - ETH, mss);
    }
    this.#drop(t.podCIDR6!.containsAt(b, dst) ? DatapathDrop.NO_SUCH_POD : DatapathDrop.NO_ROUTE);
  }

  /**
   * The inner frame at `e` (decoded in #info, its hop count already lowered) to local
   * pod port `to`: MACs rewritten, then into the coalescer's run for the port, or on
   * its own behind a virtio-net header.
   */
  #toPod(to: number, e: number, len: number, inPlace: boolean, mss: number): void {
    const a = this.#arena;
    const b = a.buf;
    const t = this.#routes.table;
    EthernetFrame.setDst(b, e, t.portMacs[to]!);
    EthernetFrame.setSrc(b, e, t.gatewayMac);
    if (mss === 0 && this.coalescer.offer(to, this.#info, b, e)) return;
    this.coalescer.finish(to);
    const vh = a.frameWithHeader(e, len, inPlace);
    if (vh < 0) return this.#drop(DatapathDrop.NO_SCRATCH);
    if (mss > 0) setTsoHeader(b, vh, this.#info, e, mss);
    this.#routes.enqueue(to, vh, VIRTIO_NET_HEADER_LENGTH + len);
  }

  /** A reverse-NATed frame at `e` back over the overlay to node `back` (a super-frame as the TSO frame it is). */
  #sendBack(e: number, len: number, inPlace: boolean, mss: number, back: number): void {
    const a = this.#arena;
    const vh = a.frameWithHeader(e, len, inPlace);
    if (vh < 0) return this.#drop(DatapathDrop.NO_SCRATCH);
    if (mss > 0) setTsoHeader(a.buf, vh, this.#info, e, mss);
    this.send(this.counters, vh, vh + VIRTIO_NET_HEADER_LENGTH, len, back);
  }

  /** The IP packet at `ip` to the host port: Ethernet stripped, the virtio-net header in its place. */
  #toHost(host: number, ip: number, len: number, mss: number): void {
    const vh = this.#arena.frameWithHeader(ip, len, true);
    if (mss > 0) setTsoHeader(this.#arena.buf, vh, this.#info, ip, mss);
    this.#routes.enqueue(host, vh, len + VIRTIO_NET_HEADER_LENGTH);
  }

  // ---- transmit --------------------------------------------------------------------

  /**
   * Sends the Ethernet frame at `e` (its virtio-net header at `vh`) over VXLAN to remote
   * node `node` of the current table; a drop is counted on `c`. TSO frames are cut
   * into segments and partial checksums completed in software: nothing past this node
   * would do it. (The node's underlay address is read from the table's typed array
   * here: passed as an argument, an address above 2^31 would be boxed, an allocation
   * per packet.)
   */
  send(c: PortCounters, vh: number, e: number, frameLen: number, node: number): void {
    const reason = this.#send(vh, e, frameLen, node);
    if (reason !== 0) c.drops[reason]!++;
  }

  #send(vh: number, e: number, frameLen: number, node: number): number {
    const t = this.#routes.table;
    const six = this.#six;
    // The node's address stays in the table's typed array until it is stored: a number
    // above 2^31 held across a call that is not inlined would be boxed, once per frame.
    const dsts = six ? t.nodeUnderlay6 : t.nodeUnderlay;
    const at = six ? 4 * node : node;
    const vni = t.vni;
    const a = this.#arena;
    const b = a.buf;
    const q = this.#queue;
    const gso = VirtioNetHeader.gsoProtocol(b, vh);
    if (gso !== VirtioNetGso.NONE) {
      if (gso !== VirtioNetGso.TCPV4 && gso !== VirtioNetGso.TCPV6) return DatapathDrop.UNSUPPORTED_GSO;
      const egress = this.egress;
      if (egress !== null && !six && headroomBefore(e, a.scratchStart) >= TUNNEL_PREFIX && egress.push(b, vh, e, frameLen, t, node, this.counters)) {
        return 0;
      }
      const mss = VirtioNetHeader.gsoSize(b, vh);
      const udpGso = this.#socket?.gsoSupported ?? false;
      if (segmentTcpToVxlan(a, e, frameLen, mss, vni, dsts, at, six, VXLAN_PORT, q, udpGso)) return 0;
      this.#flushAll();
      return segmentTcpToVxlan(a, e, frameLen, mss, vni, dsts, at, six, VXLAN_PORT, q, udpGso) ? 0 : DatapathDrop.NO_SCRATCH;
    }
    if (VirtioNetHeader.needsCsum(b, vh)) {
      if (!completeChecksum(b, e, frameLen, VirtioNetHeader.csumStart(b, vh), VirtioNetHeader.csumOffset(b, vh))) return DatapathDrop.BAD_VNET_HEADER;
    }
    if (q.full) this.flush();
    const d = e - VXLAN_HEADER_LENGTH;
    VxlanHeader.emit(b, d, vni);
    if (!six) q.pushDatagram(d, frameLen + VXLAN_HEADER_LENGTH, dsts, at, VXLAN_PORT, 0);
    else q.pushDatagram6(d, frameLen + VXLAN_HEADER_LENGTH, dsts, at, VXLAN_PORT, 0);
    return 0;
  }

  /** Sends everything queued. */
  flush(): void {
    if (this.egress !== null && this.egress.queue.count > 0) this.#flushEgress(this.egress);
    const q = this.#queue;
    if (q.count === 0 || this.#socket === null) {
      q.count = 0;
      return;
    }
    const b = this.#arena.buf;
    const c = this.counters;
    const cap = this.capture;
    if (cap !== null) cap.stamp(Date.now());
    const six = this.#six;
    for (let i = 0; i < q.count; i++) {
      c.txBytes += q.lengths[i]!;
      if (cap === null) continue;
      if (six) cap.datagrams6(b, q.offsets[i]!, q.lengths[i]!, q.gsoSizes[i]!, this.localIP6, 0, q.dstAddrs6, 4 * i);
      else cap.datagrams(b, q.offsets[i]!, q.lengths[i]!, q.gsoSizes[i]!, this.localIP[0]!, q.dstAddrs[i]!);
    }
    const sent = this.#socket.sendBatch(b, q.offsets, q.lengths, six ? q.dstAddrs6 : q.dstAddrs, q.dstPorts, q.gsoSizes, q.count);
    c.txFrames += sent;
    if (sent < q.count) c.drops[DatapathDrop.TX_FAILED]! += q.count - sent;
    q.count = 0;
  }

  /**
   * Super-frames to the egress TAP, counted as the underlay's (a frame each, its bytes
   * from the outer Ethernet header). A capture sees each as the one datagram it is.
   */
  #flushEgress(egress: TunnelEgress): void {
    const q = egress.queue;
    const b = this.#arena.buf;
    const cap = this.capture;
    if (cap !== null) {
      cap.stamp(Date.now());
      for (let i = 0; i < q.count; i++) {
        const d = q.offsets[i]! + TUNNEL_PREFIX - VXLAN_HEADER_LENGTH;
        const len = q.lengths[i]! - TUNNEL_PREFIX + VXLAN_HEADER_LENGTH;
        cap.datagrams(b, d, len, 0, this.localIP[0]!, get32(b, d - 12));
      }
    }
    egress.flush(b, this.counters);
  }
}

/** Free bytes in front of `e` in its receive slot (the headroom and what the frame no longer needs); 0 in scratch. */
function headroomBefore(e: number, scratchStart: number): number {
  return e < scratchStart ? e % SLOT_SIZE : 0;
}

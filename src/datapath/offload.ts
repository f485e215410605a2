// Software offloads at the edge where a frame leaves the node or enters a pod:
// - completing a CHECKSUM_PARTIAL checksum (virtio-net NEEDS_CSUM) before the underlay,
// - cutting a TSO frame into MSS-sized TCP segments, each wrapped in VXLAN, laid out so
//   that one UDP GSO send carries them all (Linux tcp_gso_segment + udp_tunnel),
// - coalescing a burst of TCP segments from the underlay into one TSO frame for a pod's
//   TAP (Linux tcp_gro_receive rules: same flow, next sequence, same ACK, window and
//   options; a short segment or PSH ends the run).
// IPv4 and IPv6 (without extension headers) alike.
import {
  checksum, set16, EtherType, EthernetFrame, Ipv4Packet, Ipv6Field, IpProtocol, TcpField, TcpFlags, TcpSegment, UdpField,
  VirtioNetFlags, VirtioNetGso, VirtioNetHeader, VxlanHeader, pseudoHeaderV4, pseudoHeaderV6,
  ETHERNET_HEADER_LENGTH as ETH, IPV4_HEADER_LENGTH, IPV6_HEADER_LENGTH, TCP_HEADER_LENGTH, VXLAN_HEADER_LENGTH,
} from '../wire/index.ts';
import type { PacketInfo } from '../wire/index.ts';
import type { Arena, UnderlayTxQueue } from './arena.ts';

/**
 * Largest UDP payload in one IPv4 datagram, the ceiling of a UDP GSO send (an IPv6 one
 * could carry 40 bytes more; one ceiling for both keeps the segment plan the same).
 */
const UDP_GSO_MAX_BYTES = 65507;
/** Linux UDP_MAX_SEGMENTS was 64 before 5.x raised it; 64 works everywhere. */
const UDP_GSO_MAX_SEGMENTS = 64;
/** An IPv4 packet's total length is 16 bits. */
const IPV4_MAX = 65535;

/**
 * Stores the checksum that a NEEDS_CSUM frame left to the device: the field at
 * csumStart + csumOffset holds the pseudo-header sum, so summing from csumStart to the
 * end yields the final value. Returns false when the header points outside the frame.
 */
export function completeChecksum(b: Uint8Array, frame: number, length: number, csumStart: number, csumOffset: number): boolean {
  if (csumStart + csumOffset + 2 > length) return false;
  let c = checksum(b, frame + csumStart, length - csumStart);
  // RFC 768: UDP (csum_offset 6) sends a computed zero as all ones.
  if (c === 0 && csumOffset === UdpField.CHECKSUM) c = 0xffff;
  set16(b, frame + csumStart + csumOffset, c);
  return true;
}

/**
 * Cuts the TCP TSO frame at `frame` (Ethernet header first, `length` bytes; IPv4, or
 * IPv6 with no extension headers) into segments of `mss` payload bytes, each behind a
 * VXLAN header, in the arena's scratch, and queues them for the node whose underlay
 * address is `dsts[at]` (over an IPv6 underlay, `six`: the four words from `dsts[at]`):
 * groups of equal-size datagrams as single UDP GSO sends when `udpGso`, else one
 * datagram per segment. Returns false (nothing queued) when the frame is not plain
 * IPv4/TCP or IPv6/TCP, or scratch or the queue would run out. (The address is read
 * where it is stored: passed as a number, one above 2^31 would be boxed per frame.)
 */
export function segmentTcpToVxlan(arena: Arena, frame: number, length: number, mss: number, vni: number, dsts: Uint32Array, at: number, six: boolean, dstPort: number, queue: UnderlayTxQueue, udpGso: boolean): boolean {
  const b = arena.buf;
  const ip = frame + ETH;
  const type = length >= ETH ? EthernetFrame.ethertype(b, frame) : 0;
  const v6 = type === EtherType.IPV6;
  if (type !== EtherType.IPV4 && !v6) return false;
  if (length < ETH + (v6 ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH) + TCP_HEADER_LENGTH || mss <= 0) return false;
  if ((v6 ? b[ip + Ipv6Field.NXT_HDR] : Ipv4Packet.protocol(b, ip)) !== IpProtocol.TCP) return false;
  const ihl = v6 ? IPV6_HEADER_LENGTH : Ipv4Packet.headerLength(b, ip);
  const tcp = ip + ihl;
  const thl = TcpSegment.headerLength(b, tcp);
  const hdrs = ETH + ihl + thl;
  const payload = length - hdrs;
  if (ihl < IPV4_HEADER_LENGTH || thl < TCP_HEADER_LENGTH || payload <= 0) return false;
  const segments = Math.ceil(payload / mss);
  const segBytes = VXLAN_HEADER_LENGTH + hdrs + mss;
  const perSend = udpGso ? Math.max(1, Math.min(UDP_GSO_MAX_SEGMENTS, Math.floor(UDP_GSO_MAX_BYTES / segBytes))) : 1;
  const sends = Math.ceil(segments / perSend);
  if (queue.capacity - queue.count < sends || arena.scratchFree < segments * segBytes + sends * 8) return false; // + 8-byte alignment per reservation

  const seq0 = TcpSegment.seq(b, tcp);
  const id0 = v6 ? 0 : Ipv4Packet.ident(b, ip);
  const flags0 = TcpSegment.flags(b, tcp);
  const src = v6 ? 0 : Ipv4Packet.src(b, ip);
  const dstIp = v6 ? 0 : Ipv4Packet.dst(b, ip);
  let k = 0;
  while (k < segments) {
    const n = Math.min(perSend, segments - k);
    const last = k + n === segments;
    const bytes = last ? (n - 1) * segBytes + VXLAN_HEADER_LENGTH + hdrs + (payload - (segments - 1) * mss) : n * segBytes;
    const start = arena.allocScratch(bytes);
    let out = start;
    for (let j = 0; j < n; j++, k++) {
      const chunk = k === segments - 1 ? payload - k * mss : mss;
      VxlanHeader.emit(b, out, vni);
      const f = out + VXLAN_HEADER_LENGTH;
      b.copy(b, f, frame, frame + hdrs);
      b.copy(b, f + hdrs, frame + hdrs + k * mss, frame + hdrs + k * mss + chunk);
      const sip = f + ETH;
      if (v6) {
        set16(b, sip + Ipv6Field.LENGTH, thl + chunk);
      } else {
        Ipv4Packet.setTotalLength(b, sip, ihl + thl + chunk);
        Ipv4Packet.setIdent(b, sip, (id0 + k) & 0xffff);
        Ipv4Packet.fillChecksum(b, sip);
      }
      const st = sip + ihl;
      TcpSegment.setSeq(b, st, (seq0 + k * mss) >>> 0);
      let flags = flags0;
      if (k !== segments - 1) flags &= ~(TcpFlags.FIN | TcpFlags.PSH);
      if (k !== 0) flags &= ~TcpFlags.CWR;
      TcpSegment.setFlags(b, st, flags);
      TcpSegment.fillChecksum(b, st, thl + chunk, v6
        ? pseudoHeaderV6(b, sip + Ipv6Field.SRC, sip + Ipv6Field.DST, IpProtocol.TCP, thl + chunk)
        : pseudoHeaderV4(src, dstIp, IpProtocol.TCP, thl + chunk));
      out = f + hdrs + chunk;
    }
    if (!six) queue.pushDatagram(start, bytes, dsts, at, dstPort, n > 1 ? segBytes : 0);
    else queue.pushDatagram6(start, bytes, dsts, at, dstPort, n > 1 ? segBytes : 0);
  }
  return true;
}

/** Where finished coalesced frames go: the datapath's per-port transmit queue. */
export interface FrameSink {
  enqueue(port: number, offset: number, length: number): void;
}

const NO_RUN = -1;

/**
 * Coalesces TCP segments arriving from the underlay for local pods, one open run per
 * destination port (the common case: one bulk flow per pod at a time). A run lives in
 * scratch as [virtio-net header][Ethernet][IPv4 or IPv6][TCP][payload...] with room to
 * grow to 64 KiB, and leaves as one TSO frame (NEEDS_CSUM, GSO_TCPV4 or GSO_TCPV6) or, when only one segment
 * came, as that segment unchanged.
 */
export class TcpCoalescer {
  readonly #arena: Arena;
  readonly #sink: FrameSink;
  readonly #vnetSize: number;
  // Per port index; grown when a higher port index shows up.
  #start = new Int32Array(64).fill(NO_RUN);
  #length = new Int32Array(64);
  #segments = new Int32Array(64);
  #gsoSize = new Int32Array(64);
  #nextSeq = new Float64Array(64);
  #hdrs = new Int32Array(64);
  #lastFull = new Uint8Array(64);
  #open = new Int32Array(1024);
  #openCount = 0;
  coalesced = 0;

  constructor(arena: Arena, sink: FrameSink, vnetSize: number) {
    this.#arena = arena;
    this.#sink = sink;
    this.#vnetSize = vnetSize;
  }

  /**
   * Takes the segment at `frame` (Ethernet first) for `port` into a run; false when it
   * cannot be coalesced (the caller forwards it as it is, after `finish(port)`).
   */
  offer(port: number, info: PacketInfo, b: Buffer, frame: number): boolean {
    const v6 = info.ipVersion === 6;
    if (info.protocol !== IpProtocol.TCP || info.ipHeaderLength !== (v6 ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH) || info.isFragment || info.vlan !== -1) return false;
    const flags = info.tcpFlags;
    if ((flags & ~(TcpFlags.ACK | TcpFlags.PSH)) !== 0 || (flags & TcpFlags.ACK) === 0 || info.payloadLength <= 0) return false;
    if (port >= this.#start.length) this.#grow(port);
    const payload = info.payloadLength;
    const hdrs = info.payloadOffset - frame;
    const start = this.#start[port]!;
    if (start !== NO_RUN) {
      if (this.#continues(port, start, b, frame, info, hdrs)) {
        const v = this.#vnetSize;
        const end = start + v + this.#length[port]!;
        b.copy(b, end, info.payloadOffset, info.payloadOffset + payload);
        this.#length[port]! += payload;
        this.#segments[port]!++;
        this.#nextSeq[port] = (info.tcpSeq + payload) >>> 0;
        const full = payload === this.#gsoSize[port];
        this.#lastFull[port] = full ? 1 : 0;
        if ((flags & TcpFlags.PSH) !== 0) b[start + v + ETH + info.ipHeaderLength + TcpField.FLAGS]! |= TcpFlags.PSH;
        if (!full || (flags & TcpFlags.PSH) !== 0) this.finish(port);
        return true;
      }
      this.finish(port);
    }
    // A PSH segment alone gains nothing from a run: forward it as it is.
    if ((flags & TcpFlags.PSH) !== 0) return false;
    const v = this.#vnetSize;
    const at = this.#arena.allocScratch(v + IPV4_MAX + ETH);
    if (at < 0) return false;
    b.fill(0, at, at + v);
    b.copy(b, at + v, frame, info.payloadOffset + payload);
    this.#start[port] = at;
    this.#length[port] = hdrs + payload;
    this.#segments[port] = 1;
    this.#gsoSize[port] = payload;
    this.#nextSeq[port] = (info.tcpSeq + payload) >>> 0;
    this.#hdrs[port] = hdrs;
    this.#lastFull[port] = 1;
    if (this.#openCount === this.#open.length) this.finishAll();
    this.#open[this.#openCount++] = port;
    return true;
  }

  #continues(port: number, start: number, b: Buffer, frame: number, info: PacketInfo, hdrs: number): boolean {
    if (hdrs !== this.#hdrs[port] || this.#lastFull[port] === 0) return false;
    if (info.tcpSeq !== this.#nextSeq[port] || info.payloadLength > this.#gsoSize[port]!) return false;
    if (this.#length[port]! + info.payloadLength > IPV4_MAX + ETH) return false;
    const run = start + this.#vnetSize;
    const rip = run + ETH;
    const ip = frame + ETH;
    // Same flow: family (the header lengths matched), addresses and ports.
    const ihl = info.ipHeaderLength;
    if (b[rip]! >>> 4 !== b[ip]! >>> 4) return false;
    if (ihl === IPV6_HEADER_LENGTH) {
      for (let i = Ipv6Field.SRC; i < Ipv6Field.DST + 16; i++) if (b[rip + i] !== b[ip + i]) return false;
    } else if (Ipv4Packet.src(b, rip) !== Ipv4Packet.src(b, ip) || Ipv4Packet.dst(b, rip) !== Ipv4Packet.dst(b, ip)) return false;
    const rt = rip + ihl;
    const t = ip + ihl;
    if (TcpSegment.srcPort(b, rt) !== TcpSegment.srcPort(b, t) || TcpSegment.dstPort(b, rt) !== TcpSegment.dstPort(b, t)) return false;
    // Same ACK, data offset, window, urgent pointer and options (tcp_gro_receive).
    if (TcpSegment.ack(b, rt) !== TcpSegment.ack(b, t) || b[rt + TcpField.DATA_OFF] !== b[t + TcpField.DATA_OFF]) return false;
    if (TcpSegment.window(b, rt) !== TcpSegment.window(b, t) || TcpSegment.urgentPointer(b, rt) !== TcpSegment.urgentPointer(b, t)) return false;
    const thl = hdrs - ETH - ihl;
    for (let i = TCP_HEADER_LENGTH; i < thl; i++) if (b[rt + i] !== b[t + i]) return false;
    return true;
  }

  /** Closes the run for `port` (if any) and hands the frame to the sink. */
  finish(port: number): void {
    if (port >= this.#start.length) return;
    const start = this.#start[port]!;
    if (start === NO_RUN) return;
    this.#start[port] = NO_RUN;
    const b = this.#arena.buf;
    const v = this.#vnetSize;
    const length = this.#length[port]!;
    const segments = this.#segments[port]!;
    if (segments > 1) {
      const ip = start + v + ETH;
      const hdrs = this.#hdrs[port]!;
      const v6 = b[ip]! >>> 4 === 6;
      const ihl = v6 ? IPV6_HEADER_LENGTH : IPV4_HEADER_LENGTH;
      const tcpLength = length - ETH - ihl;
      // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the pod's kernel takes
      // the segment as verified (the underlay's UDP checksum covered it in transit).
      if (v6) {
        set16(b, ip + Ipv6Field.LENGTH, tcpLength);
        TcpSegment.setChecksum(b, ip + ihl, pseudoHeaderV6(b, ip + Ipv6Field.SRC, ip + Ipv6Field.DST, IpProtocol.TCP, tcpLength));
      } else {
        Ipv4Packet.setTotalLength(b, ip, length - ETH);
        Ipv4Packet.fillChecksum(b, ip);
        TcpSegment.setChecksum(b, ip + ihl, pseudoHeaderV4(Ipv4Packet.src(b, ip), Ipv4Packet.dst(b, ip), IpProtocol.TCP, tcpLength));
      }
      VirtioNetHeader.setFlags(b, start, VirtioNetFlags.NEEDS_CSUM);
      VirtioNetHeader.setGsoType(b, start, v6 ? VirtioNetGso.TCPV6 : VirtioNetGso.TCPV4);
      VirtioNetHeader.setHdrLen(b, start, hdrs);
      VirtioNetHeader.setGsoSize(b, start, this.#gsoSize[port]!);
      VirtioNetHeader.setCsumStart(b, start, ETH + ihl);
      VirtioNetHeader.setCsumOffset(b, start, TcpField.CHECKSUM);
      this.coalesced += segments - 1;
    }
    // A run reserved room for 64 KiB; give back what it did not use when it is the
    // latest reservation (one-segment runs of interleaved flows would exhaust scratch).
    if (this.#arena.scratchCursor === ((start + v + IPV4_MAX + ETH + 7) & ~7)) this.#arena.trimScratch(start, v + length);
    this.#sink.enqueue(port, start, v + length);
  }

  /** Closes every open run: at the end of each underlay batch. */
  finishAll(): void {
    const open = this.#open;
    for (let i = 0; i < this.#openCount; i++) this.finish(open[i]!);
    this.#openCount = 0;
  }

  #grow(port: number): void {
    let n = this.#start.length;
    while (n <= port) n *= 2;
    const grow = <T extends Int32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => { const x = make(n); x.set(a); return x; };
    const start = new Int32Array(n).fill(NO_RUN);
    start.set(this.#start);
    this.#start = start;
    this.#length = grow(this.#length, (m) => new Int32Array(m));
    this.#segments = grow(this.#segments, (m) => new Int32Array(m));
    this.#gsoSize = grow(this.#gsoSize, (m) => new Int32Array(m));
    this.#nextSeq = grow(this.#nextSeq, (m) => new Float64Array(m));
    this.#hdrs = grow(this.#hdrs, (m) => new Int32Array(m));
    this.#lastFull = grow(this.#lastFull, (m) => new Uint8Array(m));
  }
}

// Software offloads at the edge where a frame leaves the node or enters a pod:
// - completing a CHECKSUM_PARTIAL checksum (virtio-net NEEDS_CSUM) before the underlay,
// - cutting a TSO frame into MSS-sized TCP segments, each wrapped in VXLAN, laid out so
//   that one UDP GSO send carries them all (Linux tcp_gso_segment + udp_tunnel),
// - coalescing a burst of TCP segments from the underlay into one TSO frame for a pod's
//   TAP (Linux tcp_gro_receive rules: same flow, next sequence, same ACK, window and
//   options; a short segment or PSH ends the run).
// Frames stay IPv4: the pod network is IPv4 in this release.
import { checksum, get16, get32, pseudoHeaderV4, set16, set32, VirtioNetFlags, VirtioNetGso, VxlanHeader, TcpFlags, VXLAN_HEADER_LENGTH } from '../wire/index.ts';
import type { PacketInfo } from '../wire/index.ts';
import type { Arena, UnderlayTxQueue } from './arena.ts';

const ETH = 14;
const IP_TOTAL_LENGTH = 2;
const IP_IDENT = 4;
const IP_CHECKSUM = 10;
const IP_SRC = 12;
const IP_DST = 16;
const TCP_SEQ = 4;
const TCP_ACK = 8;
const TCP_FLAGS = 13;
const TCP_CHECKSUM = 16;
const PROTO_TCP = 6;
// virtio_net_hdr field offsets (little-endian; include/uapi/linux/virtio_net.h).
const VNET_FLAGS = 0;
const VNET_GSO_TYPE = 1;
const VNET_HDR_LEN = 2;
const VNET_GSO_SIZE = 4;
const VNET_CSUM_START = 6;
const VNET_CSUM_OFFSET = 8;
/** Largest UDP payload in one IPv4 datagram, the ceiling of a UDP GSO send. */
const UDP_GSO_MAX_BYTES = 65507;
/** Linux UDP_MAX_SEGMENTS was 64 before 5.x raised it; 64 works everywhere. */
const UDP_GSO_MAX_SEGMENTS = 64;
/** An IPv4 packet's total length is 16 bits. */
const IPV4_MAX = 65535;

function setLe16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = v >>> 8;
}

function fillIpv4Checksum(b: Uint8Array, ip: number, ihl: number): void {
  set16(b, ip + IP_CHECKSUM, 0);
  set16(b, ip + IP_CHECKSUM, checksum(b, ip, ihl));
}

/**
 * Stores the checksum that a NEEDS_CSUM frame left to the device: the field at
 * csumStart + csumOffset holds the pseudo-header sum, so summing from csumStart to the
 * end yields the final value. Returns false when the header points outside the frame.
 */
export function completeChecksum(b: Uint8Array, frame: number, length: number, csumStart: number, csumOffset: number): boolean {
  if (csumStart + csumOffset + 2 > length) return false;
  let c = checksum(b, frame + csumStart, length - csumStart);
  // RFC 768: UDP (csum_offset 6) sends a computed zero as all ones.
  if (c === 0 && csumOffset === 6) c = 0xffff;
  set16(b, frame + csumStart + csumOffset, c);
  return true;
}

/**
 * Cuts the TCPv4 TSO frame at `frame` (Ethernet header first, `length` bytes) into
 * segments of `mss` payload bytes, each behind a VXLAN header, in the arena's scratch,
 * and queues them for `dst`: groups of equal-size datagrams as single UDP GSO sends
 * when `udpGso`, else one datagram per segment. Returns false (nothing queued) when the
 * frame is not plain IPv4/TCP or scratch or the queue would run out.
 */
export function segmentTcp4ToVxlan(arena: Arena, frame: number, length: number, mss: number, vni: number, dst: number, dstPort: number, queue: UnderlayTxQueue, udpGso: boolean): boolean {
  const b = arena.buf;
  const ip = frame + ETH;
  if (length < ETH + 40 || get16(b, frame + 12) !== 0x0800 || b[ip + 9] !== PROTO_TCP || mss <= 0) return false;
  const ihl = (b[ip]! & 0x0f) << 2;
  const tcp = ip + ihl;
  const thl = (b[tcp + 12]! >>> 4) << 2;
  const hdrs = ETH + ihl + thl;
  const payload = length - hdrs;
  if (ihl < 20 || thl < 20 || payload <= 0) return false;
  const segments = Math.ceil(payload / mss);
  const segBytes = VXLAN_HEADER_LENGTH + hdrs + mss;
  const perSend = udpGso ? Math.max(1, Math.min(UDP_GSO_MAX_SEGMENTS, Math.floor(UDP_GSO_MAX_BYTES / segBytes))) : 1;
  const sends = Math.ceil(segments / perSend);
  if (queue.capacity - queue.count < sends || arena.scratchFree < segments * segBytes + sends * 8) return false;

  const seq0 = get32(b, tcp + TCP_SEQ);
  const id0 = get16(b, ip + IP_IDENT);
  const flags0 = b[tcp + TCP_FLAGS]!;
  const src = get32(b, ip + IP_SRC);
  const dstIp = get32(b, ip + IP_DST);
  let k = 0;
  while (k < segments) {
    const n = Math.min(perSend, segments - k);
    const last = k + n === segments;
    const bytes = last ? (n - 1) * segBytes + VXLAN_HEADER_LENGTH + hdrs + (payload - (segments - 1) * mss) : n * segBytes;
    const at = arena.allocScratch(bytes);
    let out = at;
    for (let j = 0; j < n; j++, k++) {
      const chunk = k === segments - 1 ? payload - k * mss : mss;
      VxlanHeader.emit(b, out, vni);
      const f = out + VXLAN_HEADER_LENGTH;
      b.copy(b, f, frame, frame + hdrs);
      b.copy(b, f + hdrs, frame + hdrs + k * mss, frame + hdrs + k * mss + chunk);
      const sip = f + ETH;
      set16(b, sip + IP_TOTAL_LENGTH, ihl + thl + chunk);
      set16(b, sip + IP_IDENT, (id0 + k) & 0xffff);
      fillIpv4Checksum(b, sip, ihl);
      const st = sip + ihl;
      set32(b, st + TCP_SEQ, (seq0 + k * mss) >>> 0);
      let flags = flags0;
      if (k !== segments - 1) flags &= ~(TcpFlags.FIN | TcpFlags.PSH);
      if (k !== 0) flags &= ~TcpFlags.CWR;
      b[st + TCP_FLAGS] = flags;
      set16(b, st + TCP_CHECKSUM, 0);
      set16(b, st + TCP_CHECKSUM, checksum(b, st, thl + chunk, pseudoHeaderV4(src, dstIp, PROTO_TCP, thl + chunk)));
      out = f + hdrs + chunk;
    }
    queue.pushDatagram(at, bytes, dst, dstPort, n > 1 ? segBytes : 0);
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
 * scratch as [virtio-net header][Ethernet][IPv4][TCP][payload...] with room to grow to
 * 64 KiB, and leaves as one TSO frame (NEEDS_CSUM, GSO_TCPV4) or, when only one segment
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
    if (info.ipVersion !== 4 || info.protocol !== PROTO_TCP || info.ipHeaderLength !== 20 || info.isFragment || info.vlan !== -1) return false;
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
        if ((flags & TcpFlags.PSH) !== 0) b[start + v + ETH + 20 + TCP_FLAGS]! |= TcpFlags.PSH;
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
    // Same flow: addresses and ports.
    for (let i = 12; i < 20; i++) if (b[rip + i] !== b[ip + i]) return false;
    const rt = rip + 20;
    const t = ip + 20;
    for (let i = 0; i < 4; i++) if (b[rt + i] !== b[t + i]) return false;
    // Same ACK, data offset, window, urgent pointer and options (tcp_gro_receive).
    if (get32(b, rt + TCP_ACK) !== get32(b, t + TCP_ACK) || b[rt + 12] !== b[t + 12]) return false;
    if (get16(b, rt + 14) !== get16(b, t + 14) || get16(b, rt + 18) !== get16(b, t + 18)) return false;
    const thl = hdrs - ETH - 20;
    for (let i = 20; i < thl; i++) if (b[rt + i] !== b[t + i]) return false;
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
      const tcpLength = length - ETH - 20;
      set16(b, ip + IP_TOTAL_LENGTH, length - ETH);
      fillIpv4Checksum(b, ip, 20);
      // CHECKSUM_PARTIAL: the field holds the pseudo-header sum; the pod's kernel takes
      // the segment as verified (the underlay's UDP checksum covered it in transit).
      set16(b, ip + 20 + TCP_CHECKSUM, pseudoHeaderV4(get32(b, ip + IP_SRC), get32(b, ip + IP_DST), PROTO_TCP, tcpLength));
      b[start + VNET_FLAGS] = VirtioNetFlags.NEEDS_CSUM;
      b[start + VNET_GSO_TYPE] = VirtioNetGso.TCPV4;
      setLe16(b, start + VNET_HDR_LEN, hdrs);
      setLe16(b, start + VNET_GSO_SIZE, this.#gsoSize[port]!);
      setLe16(b, start + VNET_CSUM_START, ETH + 20);
      setLe16(b, start + VNET_CSUM_OFFSET, TCP_CHECKSUM);
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

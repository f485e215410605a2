// IPv4 header view (RFC 791), smoltcp wire::ipv4 style.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, set16, set32 } from './bytes.ts';
import { checksum, sumBytes, sumData, updateChecksum32 } from './checksum.ts';

export const Ipv4Field = {
  VER_IHL: 0,
  DSCP_ECN: 1,
  LENGTH: 2,
  IDENT: 4,
  FLG_OFF: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
  OPTIONS: 20,
} as const;

export const IPV4_HEADER_LENGTH = 20;
export const IPV4_MAX_HEADER_LENGTH = 60;

export const IpProtocol = {
  HOP_BY_HOP: 0,
  ICMP: 1,
  TCP: 6,
  UDP: 17,
  IPV6_ROUTING: 43,
  IPV6_FRAGMENT: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  IPV6_NO_NEXT: 59,
  IPV6_DST_OPTIONS: 60,
} as const;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const OFFSET_MASK = 0x1fff;

// RFC 791 §3.1 options: type 0 ends the list, type 1 is a one-byte NOP, every other
// option carries a length byte (>= 2, counting type and length) that must stay inside
// the header. Linux ip_options_compile drops packets that break this; so do we.
function optionsValid(b: Uint8Array, from: number, to: number): boolean {
  let i = from;
  while (i < to) {
    const type = b[i];
    if (type === 0) return true;
    if (type === 1) { i++; continue; }
    if (i + 1 >= to) return false;
    const len = b[i + 1]!;
    if (len < 2 || i + len > to) return false;
    i += len;
  }
  return true;
}

export class Ipv4Packet {
  buf: Uint8Array = EMPTY;
  off = 0;
  // The datagram's length: the total length field after wrap (Ethernet padding
  // beyond it is not part of the packet); the captured bytes after wrapEmbedded.
  len = 0;
  reason: number = DropReason.OK;

  // check_len: version 4, IHL >= 5, header inside the buffer, IHL*4 <= total length
  // <= buffer, options well-formed. Setting `totalLength` or `headerLength` afterwards
  // voids this guarantee until the next wrap.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.wrapHeader(buf, off, len)) return false;
    const total = get16(buf, off + Ipv4Field.LENGTH);
    if (total < this.headerLength || total > len) return this.fail(DropReason.BAD_IPV4_TOTAL_LENGTH);
    this.len = total;
    return true;
  }

  // For the original datagram quoted in an ICMP error (RFC 792: header plus at least
  // 64 bits of data): the total length describes the datagram as it was sent, not
  // the quote, so it is not held against the buffer. `len` is the quoted length.
  wrapEmbedded(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.wrapHeader(buf, off, len)) return false;
    if (get16(buf, off + Ipv4Field.LENGTH) < this.headerLength) return this.fail(DropReason.BAD_IPV4_TOTAL_LENGTH);
    return true;
  }

  private wrapHeader(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    if (len < IPV4_HEADER_LENGTH || off + len > buf.length) return this.fail(DropReason.TRUNCATED_IPV4);
    const verIhl = buf[off]!;
    if (verIhl >>> 4 !== 4) return this.fail(DropReason.BAD_IP_VERSION);
    const hl = (verIhl & 0x0f) << 2;
    if (hl < IPV4_HEADER_LENGTH || hl > len) return this.fail(DropReason.BAD_IPV4_IHL);
    if (hl > IPV4_HEADER_LENGTH && !optionsValid(buf, off + IPV4_HEADER_LENGTH, off + hl)) return this.fail(DropReason.BAD_IPV4_OPTIONS);
    this.reason = DropReason.OK;
    return true;
  }

  private fail(reason: number): boolean {
    this.reason = reason;
    this.len = 0;
    return false;
  }

  get version(): number { return this.buf[this.off]! >>> 4; }
  get headerLength(): number { return (this.buf[this.off]! & 0x0f) << 2; }
  set headerLength(bytes: number) { this.buf[this.off] = 0x40 | (bytes >>> 2); }
  get dscp(): number { return this.buf[this.off + Ipv4Field.DSCP_ECN]! >>> 2; }
  get ecn(): number { return this.buf[this.off + Ipv4Field.DSCP_ECN]! & 3; }
  get totalLength(): number { return get16(this.buf, this.off + Ipv4Field.LENGTH); }
  set totalLength(v: number) { set16(this.buf, this.off + Ipv4Field.LENGTH, v); }
  get ident(): number { return get16(this.buf, this.off + Ipv4Field.IDENT); }
  set ident(v: number) { set16(this.buf, this.off + Ipv4Field.IDENT, v); }
  get dontFragment(): boolean { return (get16(this.buf, this.off + Ipv4Field.FLG_OFF) & FLAG_DF) !== 0; }
  get moreFragments(): boolean { return (get16(this.buf, this.off + Ipv4Field.FLG_OFF) & FLAG_MF) !== 0; }
  // In bytes (the field counts 8-byte units).
  get fragmentOffset(): number { return (get16(this.buf, this.off + Ipv4Field.FLG_OFF) & OFFSET_MASK) << 3; }
  // Any fragment, first included: MF set or a non-zero offset (RFC 791 §3.2).
  get isFragment(): boolean { return (get16(this.buf, this.off + Ipv4Field.FLG_OFF) & (FLAG_MF | OFFSET_MASK)) !== 0; }
  get ttl(): number { return this.buf[this.off + Ipv4Field.TTL]!; }
  set ttl(v: number) { this.buf[this.off + Ipv4Field.TTL] = v; }
  get protocol(): number { return this.buf[this.off + Ipv4Field.PROTOCOL]!; }
  set protocol(v: number) { this.buf[this.off + Ipv4Field.PROTOCOL] = v; }
  get checksum(): number { return get16(this.buf, this.off + Ipv4Field.CHECKSUM); }
  set checksum(v: number) { set16(this.buf, this.off + Ipv4Field.CHECKSUM, v); }
  get src(): number { return get32(this.buf, this.off + Ipv4Field.SRC); }
  set src(v: number) { set32(this.buf, this.off + Ipv4Field.SRC, v); }
  get dst(): number { return get32(this.buf, this.off + Ipv4Field.DST); }
  set dst(v: number) { set32(this.buf, this.off + Ipv4Field.DST, v); }

  get optionsLength(): number { return this.headerLength - IPV4_HEADER_LENGTH; }
  get payloadOffset(): number { return this.off + this.headerLength; }
  get payloadLength(): number { return this.len - this.headerLength; }

  setFlagsAndOffset(dontFragment: boolean, moreFragments: boolean, offsetBytes: number): void {
    Ipv4Packet.setFlagsAndOffset(this.buf, this.off, dontFragment, moreFragments, offsetBytes);
  }

  verifyChecksum(): boolean {
    return sumData(this.buf, this.off, this.headerLength) === 0xffff;
  }

  fillChecksum(): void {
    Ipv4Packet.fillChecksum(this.buf, this.off);
  }

  // Address rewrites that keep the header checksum right (RFC 1624). The L4 checksum
  // is the caller's (see nat.ts), since it depends on offload state.
  rewriteSrc(addr: number): void {
    this.checksum = updateChecksum32(this.checksum, this.src, addr);
    this.src = addr;
  }

  rewriteDst(addr: number): void {
    this.checksum = updateChecksum32(this.checksum, this.dst, addr);
    this.dst = addr;
  }

  // A forwarding hop (RFC 1812 §5.3.1).
  decrementTtl(): void {
    Ipv4Packet.decrementTtl(this.buf, this.off);
  }

  // The same fields without a view, for the per-packet path: `off` is where the IPv4
  // header starts and the caller knows it is whole (decodeFrame or a wrap said so).
  // Plain byte reads and writes: nothing is allocated. Addresses come back as uint32;
  // store them in a typed array, not a plain field (see bytes.ts, load32).
  static headerLength(b: Uint8Array, off: number): number { return (b[off]! & 0x0f) << 2; }
  // Writes version 4 with it.
  static setHeaderLength(b: Uint8Array, off: number, bytes: number): void { b[off] = 0x40 | (bytes >>> 2); }
  static totalLength(b: Uint8Array, off: number): number { return get16(b, off + Ipv4Field.LENGTH); }
  static setTotalLength(b: Uint8Array, off: number, v: number): void { set16(b, off + Ipv4Field.LENGTH, v); }
  static ident(b: Uint8Array, off: number): number { return get16(b, off + Ipv4Field.IDENT); }
  static setIdent(b: Uint8Array, off: number, v: number): void { set16(b, off + Ipv4Field.IDENT, v); }
  static dontFragment(b: Uint8Array, off: number): boolean { return (get16(b, off + Ipv4Field.FLG_OFF) & FLAG_DF) !== 0; }
  static setFlagsAndOffset(b: Uint8Array, off: number, dontFragment: boolean, moreFragments: boolean, offsetBytes: number): void {
    set16(b, off + Ipv4Field.FLG_OFF, (dontFragment ? FLAG_DF : 0) | (moreFragments ? FLAG_MF : 0) | ((offsetBytes >>> 3) & OFFSET_MASK));
  }
  static ttl(b: Uint8Array, off: number): number { return b[off + Ipv4Field.TTL]!; }
  static setTtl(b: Uint8Array, off: number, v: number): void { b[off + Ipv4Field.TTL] = v; }
  static protocol(b: Uint8Array, off: number): number { return b[off + Ipv4Field.PROTOCOL]!; }
  static setProtocol(b: Uint8Array, off: number, v: number): void { b[off + Ipv4Field.PROTOCOL] = v; }
  static checksum(b: Uint8Array, off: number): number { return get16(b, off + Ipv4Field.CHECKSUM); }
  static setChecksum(b: Uint8Array, off: number, v: number): void { set16(b, off + Ipv4Field.CHECKSUM, v); }
  static src(b: Uint8Array, off: number): number { return get32(b, off + Ipv4Field.SRC); }
  static setSrc(b: Uint8Array, off: number, v: number): void { set32(b, off + Ipv4Field.SRC, v); }
  static dst(b: Uint8Array, off: number): number { return get32(b, off + Ipv4Field.DST); }
  static setDst(b: Uint8Array, off: number, v: number): void { set32(b, off + Ipv4Field.DST, v); }

  /**
   * Whether the header, as long as its IHL says, sums to 0xffff (RFC 1071). A router
   * drops a packet whose header checksum fails (RFC 1812 §5.2.2), as Linux's ip_rcv
   * does. The byte-pair sum (ten adds for a plain header) is cheap enough for every
   * packet; the word loop's alignment work costs more at this length.
   */
  static headerChecksumOk(b: Uint8Array, off: number): boolean {
    return sumBytes(b, off, Ipv4Packet.headerLength(b, off)) === 0xffff;
  }

  /** The header checksum over the IHL the header states. */
  static fillChecksum(b: Uint8Array, off: number): void {
    set16(b, off + Ipv4Field.CHECKSUM, 0);
    set16(b, off + Ipv4Field.CHECKSUM, checksum(b, off, Ipv4Packet.headerLength(b, off)));
  }

  /**
   * A forwarding hop (RFC 1812 §5.3.1): the caller has checked TTL > 1 (a packet whose
   * TTL would reach 0 is not forwarded). TTL is the high byte of a 16-bit word, so the
   * word m drops by 0x100 and RFC 1624's HC' = ~(~HC + ~m + m') has ~m + m' = 0xfeff
   * whatever the protocol byte: one addition, the same value updateChecksum16 gives.
   */
  static decrementTtl(b: Uint8Array, off: number): void {
    const at = off + Ipv4Field.TTL;
    b[at] = b[at]! - 1;
    const cs = off + Ipv4Field.CHECKSUM;
    let s = (~get16(b, cs) & 0xffff) + 0xfeff;
    s = (s & 0xffff) + (s >>> 16);
    set16(b, cs, ~s & 0xffff);
  }
}

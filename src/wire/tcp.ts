// TCP segment view (RFC 9293, formerly RFC 793), smoltcp wire::tcp style.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, set16, set32 } from './bytes.ts';
import { checksum, verifyChecksum as verifySum } from './checksum.ts';

export const TcpField = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ_NUM: 4,
  ACK_NUM: 8,
  DATA_OFF: 12,
  FLAGS: 13,
  WIN_SIZE: 14,
  CHECKSUM: 16,
  URGENT: 18,
  OPTIONS: 20,
} as const;

export const TCP_HEADER_LENGTH = 20;

// The flags byte (offset 13). NS (RFC 3540, historic) is ignored.
export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export const TcpOption = { END: 0, NOP: 1, MSS: 2, WINDOW_SCALE: 3, SACK_PERMITTED: 4, SACK: 5, TIMESTAMP: 8 } as const;

// Options are kind, length (>= 2, counting both), data; END and NOP are one byte
// (RFC 9293 §3.1). A length that runs past the data offset makes the segment
// malformed. Returns the offset of `want`'s kind byte, -1 when absent, -2 when
// malformed (`want` = -1 only validates).
function scanOptions(b: Uint8Array, from: number, to: number, want: number): number {
  let i = from;
  while (i < to) {
    const kind = b[i];
    if (kind === TcpOption.END) return -1;
    if (kind === TcpOption.NOP) { i++; continue; }
    if (i + 1 >= to) return -2;
    const len = b[i + 1]!;
    if (len < 2 || i + len > to) return -2;
    if (kind === want) return i;
    i += len;
  }
  return -1;
}

export class TcpSegment {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  reason: number = DropReason.OK;

  // check_len: 20 bytes, data offset >= 5 and inside the segment, options
  // well-formed. TCP has no length field: `len` is what the IP layer says.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = 0;
    if (len < TCP_HEADER_LENGTH || off + len > buf.length) return this.fail(DropReason.TRUNCATED_TCP);
    const hl = (buf[off + TcpField.DATA_OFF]! >>> 4) << 2;
    if (hl < TCP_HEADER_LENGTH || hl > len) return this.fail(DropReason.BAD_TCP_DATA_OFFSET);
    if (hl > TCP_HEADER_LENGTH && scanOptions(buf, off + TCP_HEADER_LENGTH, off + hl, -1) === -2) return this.fail(DropReason.BAD_TCP_OPTIONS);
    this.len = len;
    this.reason = DropReason.OK;
    return true;
  }

  private fail(reason: number): boolean {
    this.reason = reason;
    return false;
  }

  get srcPort(): number { return get16(this.buf, this.off + TcpField.SRC_PORT); }
  set srcPort(v: number) { set16(this.buf, this.off + TcpField.SRC_PORT, v); }
  get dstPort(): number { return get16(this.buf, this.off + TcpField.DST_PORT); }
  set dstPort(v: number) { set16(this.buf, this.off + TcpField.DST_PORT, v); }
  get seq(): number { return get32(this.buf, this.off + TcpField.SEQ_NUM); }
  set seq(v: number) { set32(this.buf, this.off + TcpField.SEQ_NUM, v); }
  get ack(): number { return get32(this.buf, this.off + TcpField.ACK_NUM); }
  set ack(v: number) { set32(this.buf, this.off + TcpField.ACK_NUM, v); }
  // Header length in bytes (data offset * 4). Setting it voids wrap's guarantee.
  get headerLength(): number { return (this.buf[this.off + TcpField.DATA_OFF]! >>> 4) << 2; }
  set headerLength(bytes: number) { this.buf[this.off + TcpField.DATA_OFF] = (bytes >>> 2) << 4; }
  get flags(): number { return this.buf[this.off + TcpField.FLAGS]!; }
  set flags(v: number) { this.buf[this.off + TcpField.FLAGS] = v; }
  get fin(): boolean { return (this.flags & TcpFlags.FIN) !== 0; }
  get syn(): boolean { return (this.flags & TcpFlags.SYN) !== 0; }
  get rst(): boolean { return (this.flags & TcpFlags.RST) !== 0; }
  get psh(): boolean { return (this.flags & TcpFlags.PSH) !== 0; }
  get hasAck(): boolean { return (this.flags & TcpFlags.ACK) !== 0; }
  get urg(): boolean { return (this.flags & TcpFlags.URG) !== 0; }
  get window(): number { return get16(this.buf, this.off + TcpField.WIN_SIZE); }
  set window(v: number) { set16(this.buf, this.off + TcpField.WIN_SIZE, v); }
  get checksum(): number { return get16(this.buf, this.off + TcpField.CHECKSUM); }
  set checksum(v: number) { set16(this.buf, this.off + TcpField.CHECKSUM, v); }
  get urgentPointer(): number { return get16(this.buf, this.off + TcpField.URGENT); }
  set urgentPointer(v: number) { set16(this.buf, this.off + TcpField.URGENT, v); }

  get optionsOffset(): number { return this.off + TCP_HEADER_LENGTH; }
  get optionsLength(): number { return this.headerLength - TCP_HEADER_LENGTH; }
  get payloadOffset(): number { return this.off + this.headerLength; }
  get payloadLength(): number { return this.len - this.headerLength; }
  // Sequence space the segment occupies (RFC 9293 §3.4): SYN and FIN count one each.
  get segmentLength(): number { return this.payloadLength + (this.syn ? 1 : 0) + (this.fin ? 1 : 0); }

  // Absolute offset of an option's kind byte, or -1 (wrap has validated the list).
  findOption(kind: number): number {
    const at = scanOptions(this.buf, this.off + TCP_HEADER_LENGTH, this.off + this.headerLength, kind);
    return at < 0 ? -1 : at;
  }

  // The MSS option's value (RFC 9293 §3.7.1), or -1 when absent or of the wrong size.
  get mss(): number {
    const at = this.findOption(TcpOption.MSS);
    return at >= 0 && this.buf[at + 1] === 4 ? get16(this.buf, at + 2) : -1;
  }

  // `pseudo` is pseudoHeaderV4/V6 over this segment's length.
  verifyChecksum(pseudo: number): boolean {
    return verifySum(this.buf, this.off, this.len, pseudo);
  }

  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = checksum(this.buf, this.off, this.len, pseudo);
  }

  // The same fields without a view, for the per-packet path: `off` is where the TCP
  // header starts and the caller knows it is whole. Nothing is allocated; sequence
  // numbers come back as uint32 (store them in a typed array, see bytes.ts load32).
  static srcPort(b: Uint8Array, off: number): number { return get16(b, off + TcpField.SRC_PORT); }
  static dstPort(b: Uint8Array, off: number): number { return get16(b, off + TcpField.DST_PORT); }
  static seq(b: Uint8Array, off: number): number { return get32(b, off + TcpField.SEQ_NUM); }
  static setSeq(b: Uint8Array, off: number, v: number): void { set32(b, off + TcpField.SEQ_NUM, v); }
  static ack(b: Uint8Array, off: number): number { return get32(b, off + TcpField.ACK_NUM); }
  static headerLength(b: Uint8Array, off: number): number { return (b[off + TcpField.DATA_OFF]! >>> 4) << 2; }
  static flags(b: Uint8Array, off: number): number { return b[off + TcpField.FLAGS]!; }
  static setFlags(b: Uint8Array, off: number, v: number): void { b[off + TcpField.FLAGS] = v; }
  static window(b: Uint8Array, off: number): number { return get16(b, off + TcpField.WIN_SIZE); }
  static urgentPointer(b: Uint8Array, off: number): number { return get16(b, off + TcpField.URGENT); }
  static setChecksum(b: Uint8Array, off: number, v: number): void { set16(b, off + TcpField.CHECKSUM, v); }

  /** The checksum over `len` bytes of segment; `pseudo` as for the instance method. */
  static fillChecksum(b: Uint8Array, off: number, len: number, pseudo: number): void {
    set16(b, off + TcpField.CHECKSUM, 0);
    set16(b, off + TcpField.CHECKSUM, checksum(b, off, len, pseudo));
  }
}

// ICMPv4 message view (RFC 792, RFC 1191 for the next-hop MTU).
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, set16, set32 } from './bytes.ts';
import { checksum, sumData, updateChecksum16 } from './checksum.ts';
import type { Ipv4Packet } from './ipv4.ts';

export const Icmpv4Field = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  // "Rest of header", by type: echo identifier/sequence, unused + next-hop MTU (type 3
  // code 4), pointer (type 12), gateway address (type 5).
  ECHO_IDENT: 4,
  ECHO_SEQ: 6,
  POINTER: 4,
  GATEWAY: 4,
  NEXT_HOP_MTU: 6,
  // Where an error's quoted original datagram begins.
  DATA: 8,
} as const;

export const ICMPV4_HEADER_LENGTH = 8;

export const Icmpv4Type = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  SOURCE_QUENCH: 4,
  REDIRECT: 5,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
  PARAM_PROBLEM: 12,
} as const;

export const Icmpv4Unreachable = {
  NET: 0,
  HOST: 1,
  PROTOCOL: 2,
  PORT: 3,
  FRAG_NEEDED: 4,
  ADMIN_PROHIBITED: 13,
} as const;

// The types that quote an original datagram: the set Linux's icmp_is_err() uses for
// NAT of ICMP errors.
export function isIcmpv4Error(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

export class Icmpv4Packet {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  reason: number = DropReason.OK;

  // check_len: the 8-byte header. `len` is the IP payload length; the checksum
  // covers all of it.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    if (len < ICMPV4_HEADER_LENGTH || off + len > buf.length) {
      this.len = 0;
      this.reason = DropReason.TRUNCATED_ICMP;
      return false;
    }
    this.len = len;
    this.reason = DropReason.OK;
    return true;
  }

  get type(): number { return this.buf[this.off + Icmpv4Field.TYPE]!; }
  set type(v: number) { this.buf[this.off + Icmpv4Field.TYPE] = v; }
  get code(): number { return this.buf[this.off + Icmpv4Field.CODE]!; }
  set code(v: number) { this.buf[this.off + Icmpv4Field.CODE] = v; }
  get checksum(): number { return get16(this.buf, this.off + Icmpv4Field.CHECKSUM); }
  set checksum(v: number) { set16(this.buf, this.off + Icmpv4Field.CHECKSUM, v); }
  get echoIdent(): number { return get16(this.buf, this.off + Icmpv4Field.ECHO_IDENT); }
  set echoIdent(v: number) { set16(this.buf, this.off + Icmpv4Field.ECHO_IDENT, v); }
  get echoSeq(): number { return get16(this.buf, this.off + Icmpv4Field.ECHO_SEQ); }
  set echoSeq(v: number) { set16(this.buf, this.off + Icmpv4Field.ECHO_SEQ, v); }
  get nextHopMtu(): number { return get16(this.buf, this.off + Icmpv4Field.NEXT_HOP_MTU); }
  set nextHopMtu(v: number) { set16(this.buf, this.off + Icmpv4Field.NEXT_HOP_MTU, v); }
  get pointer(): number { return this.buf[this.off + Icmpv4Field.POINTER]!; }
  get gateway(): number { return get32(this.buf, this.off + Icmpv4Field.GATEWAY); }
  set restOfHeader(v: number) { set32(this.buf, this.off + Icmpv4Field.ECHO_IDENT, v); }
  get restOfHeader(): number { return get32(this.buf, this.off + Icmpv4Field.ECHO_IDENT); }

  get isEcho(): boolean { return this.type === Icmpv4Type.ECHO_REQUEST || this.type === Icmpv4Type.ECHO_REPLY; }
  get isError(): boolean { return isIcmpv4Error(this.type); }
  get dataOffset(): number { return this.off + ICMPV4_HEADER_LENGTH; }
  get dataLength(): number { return this.len - ICMPV4_HEADER_LENGTH; }

  // Point `ip` at the quoted original header of an error message. False when this is
  // not an error or the quote is not an IPv4 header (`ip.reason` says why).
  embedded(ip: Ipv4Packet): boolean {
    if (!this.isError) return false;
    return ip.wrapEmbedded(this.buf, this.off + ICMPV4_HEADER_LENGTH, this.len - ICMPV4_HEADER_LENGTH);
  }

  verifyChecksum(): boolean {
    return sumData(this.buf, this.off, this.len) === 0xffff;
  }

  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = checksum(this.buf, this.off, this.len);
  }

  // Without a view, for the per-packet path (the caller knows the header is whole).
  static type(b: Uint8Array, off: number): number { return b[off + Icmpv4Field.TYPE]!; }
  static checksum(b: Uint8Array, off: number): number { return get16(b, off + Icmpv4Field.CHECKSUM); }
  static setChecksum(b: Uint8Array, off: number, v: number): void { set16(b, off + Icmpv4Field.CHECKSUM, v); }
  static echoIdent(b: Uint8Array, off: number): number { return get16(b, off + Icmpv4Field.ECHO_IDENT); }
  static setEchoIdent(b: Uint8Array, off: number, v: number): void { set16(b, off + Icmpv4Field.ECHO_IDENT, v); }

  /** Sets the type and moves the checksum with it (RFC 1624): an echo request answered in place. */
  static setTypeUpdatingChecksum(b: Uint8Array, off: number, type: number): void {
    const old = get16(b, off + Icmpv4Field.TYPE);
    b[off + Icmpv4Field.TYPE] = type;
    Icmpv4Packet.setChecksum(b, off, updateChecksum16(Icmpv4Packet.checksum(b, off), old, get16(b, off + Icmpv4Field.TYPE)));
  }
}

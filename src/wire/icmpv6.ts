// ICMPv6 message view (RFC 4443; RFC 4861 for the neighbour discovery types).
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, set16, set32 } from './bytes.ts';
import { checksum, verifyChecksum as verifySum } from './checksum.ts';
import type { Ipv6Packet } from './ipv6.ts';

export const Icmpv6Field = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  ECHO_IDENT: 4,
  ECHO_SEQ: 6,
  // Packet Too Big: 32-bit MTU; Parameter Problem: 32-bit pointer.
  MTU: 4,
  POINTER: 4,
  // Errors: the invoking packet; NS/NA: the target address.
  DATA: 8,
} as const;

export const ICMPV6_HEADER_LENGTH = 8;

export const Icmpv6Type = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAM_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  ROUTER_SOLICIT: 133,
  ROUTER_ADVERT: 134,
  NEIGHBOR_SOLICIT: 135,
  NEIGHBOR_ADVERT: 136,
  REDIRECT: 137,
} as const;

export const Icmpv6Unreachable = {
  NO_ROUTE: 0,
  ADMIN_PROHIBITED: 1,
  ADDRESS: 3,
  PORT: 4,
} as const;

// RFC 4443 §2.1: types 0-127 are errors, and all four defined ones quote the packet.
export function isIcmpv6Error(type: number): boolean {
  return type >= 1 && type <= 4;
}

export class Icmpv6Packet {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  reason: number = DropReason.OK;

  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    if (len < ICMPV6_HEADER_LENGTH || off + len > buf.length) {
      this.len = 0;
      this.reason = DropReason.TRUNCATED_ICMP;
      return false;
    }
    this.len = len;
    this.reason = DropReason.OK;
    return true;
  }

  get type(): number { return this.buf[this.off + Icmpv6Field.TYPE]!; }
  set type(v: number) { this.buf[this.off + Icmpv6Field.TYPE] = v; }
  get code(): number { return this.buf[this.off + Icmpv6Field.CODE]!; }
  set code(v: number) { this.buf[this.off + Icmpv6Field.CODE] = v; }
  get checksum(): number { return get16(this.buf, this.off + Icmpv6Field.CHECKSUM); }
  set checksum(v: number) { set16(this.buf, this.off + Icmpv6Field.CHECKSUM, v); }
  get echoIdent(): number { return get16(this.buf, this.off + Icmpv6Field.ECHO_IDENT); }
  set echoIdent(v: number) { set16(this.buf, this.off + Icmpv6Field.ECHO_IDENT, v); }
  get echoSeq(): number { return get16(this.buf, this.off + Icmpv6Field.ECHO_SEQ); }
  set echoSeq(v: number) { set16(this.buf, this.off + Icmpv6Field.ECHO_SEQ, v); }
  get mtu(): number { return get32(this.buf, this.off + Icmpv6Field.MTU); }
  set mtu(v: number) { set32(this.buf, this.off + Icmpv6Field.MTU, v); }
  get pointer(): number { return get32(this.buf, this.off + Icmpv6Field.POINTER); }
  get restOfHeader(): number { return get32(this.buf, this.off + Icmpv6Field.ECHO_IDENT); }
  set restOfHeader(v: number) { set32(this.buf, this.off + Icmpv6Field.ECHO_IDENT, v); }

  get isEcho(): boolean { return this.type === Icmpv6Type.ECHO_REQUEST || this.type === Icmpv6Type.ECHO_REPLY; }
  get isError(): boolean { return isIcmpv6Error(this.type); }
  get dataOffset(): number { return this.off + ICMPV6_HEADER_LENGTH; }
  get dataLength(): number { return this.len - ICMPV6_HEADER_LENGTH; }
  // NS/NA (RFC 4861 §4.3, §4.4): absolute offset of the 16-byte target address, or -1.
  get ndTargetOffset(): number {
    const t = this.type;
    return (t === Icmpv6Type.NEIGHBOR_SOLICIT || t === Icmpv6Type.NEIGHBOR_ADVERT) && this.len >= 24 ? this.off + 8 : -1;
  }

  // Point `ip` at the invoking packet quoted in an error message.
  embedded(ip: Ipv6Packet): boolean {
    if (!this.isError) return false;
    return ip.wrapEmbedded(this.buf, this.off + ICMPV6_HEADER_LENGTH, this.len - ICMPV6_HEADER_LENGTH);
  }

  // `pseudo` is pseudoHeaderV6(..., 58, len): unlike ICMPv4, ICMPv6 covers it.
  verifyChecksum(pseudo: number): boolean {
    return verifySum(this.buf, this.off, this.len, pseudo);
  }

  fillChecksum(pseudo: number): void {
    this.checksum = 0;
    this.checksum = checksum(this.buf, this.off, this.len, pseudo);
  }
}

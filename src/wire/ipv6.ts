// IPv6 header view (RFC 8200) that walks the extension header chain at wrap time, so
// the upper-layer protocol and its offset are plain fields afterwards.
import { DropReason } from './drop-reason.ts';
import { EMPTY, get16, get32, set16 } from './bytes.ts';
import { IpProtocol } from './ipv4.ts';

export const Ipv6Field = {
  VER_TC_FLOW: 0,
  LENGTH: 4,
  NXT_HDR: 6,
  HOP_LIMIT: 7,
  SRC: 8,
  DST: 24,
} as const;

export const IPV6_HEADER_LENGTH = 40;

// Fragment header fields, relative to the extension header (RFC 8200 §4.5).
const FRAG_OFF_FLAGS = 2;
const FRAG_IDENT = 4;
const FRAG_HEADER_LENGTH = 8;

export class Ipv6Packet {
  buf: Uint8Array = EMPTY;
  off = 0;
  // 40 + payload length after wrap; the captured bytes after wrapEmbedded.
  len = 0;
  reason: number = DropReason.OK;
  // The first header that is not one of the extension headers we skip: TCP, UDP,
  // ICMPv6, ESP, No Next Header or anything unknown. Its absolute offset in `buf`.
  upperProtocol = 0;
  upperOffset = 0;
  // Absolute offset of the fragment header, or -1 when there is none.
  fragmentHeaderOffset = -1;

  // check_len: version 6, payload length inside the buffer, and every hop-by-hop,
  // routing, fragment, destination options and AH header inside the payload.
  // Hop-by-hop is only valid right after the fixed header (RFC 8200 §4.3). A payload
  // length of 0 with a jumbo option (RFC 2675) is not supported and fails the walk.
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.wrapFixed(buf, off, len)) return false;
    const total = IPV6_HEADER_LENGTH + get16(buf, off + Ipv6Field.LENGTH);
    if (total > len) return this.fail(DropReason.BAD_IPV6_PAYLOAD_LENGTH);
    this.len = total;
    return this.walk();
  }

  // For the original packet quoted in an ICMPv6 error (RFC 4443 §2.4(c)): the quote
  // may end anywhere, so the payload length is not held against it; the extension
  // headers must still fit in what was quoted.
  wrapEmbedded(buf: Uint8Array, off: number, len: number): boolean {
    return this.wrapFixed(buf, off, len) && this.walk();
  }

  private wrapFixed(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    this.fragmentHeaderOffset = -1;
    if (len < IPV6_HEADER_LENGTH || off + len > buf.length) return this.fail(DropReason.TRUNCATED_IPV6);
    if (buf[off]! >>> 4 !== 6) return this.fail(DropReason.BAD_IP_VERSION);
    return true;
  }

  private walk(): boolean {
    const b = this.buf;
    const end = this.off + this.len;
    let next = b[this.off + Ipv6Field.NXT_HDR]!;
    let at = this.off + IPV6_HEADER_LENGTH;
    let fragmentData = false;
    while (!fragmentData) {
      let hdrLen: number;
      if (next === IpProtocol.HOP_BY_HOP || next === IpProtocol.IPV6_ROUTING || next === IpProtocol.IPV6_DST_OPTIONS) {
        if (next === IpProtocol.HOP_BY_HOP && at !== this.off + IPV6_HEADER_LENGTH) return this.fail(DropReason.BAD_IPV6_EXTENSION_HEADER);
        if (at + 2 > end) return this.fail(DropReason.BAD_IPV6_EXTENSION_HEADER);
        hdrLen = (b[at + 1]! + 1) << 3;
      } else if (next === IpProtocol.IPV6_FRAGMENT) {
        // A second fragment header is not allowed (RFC 8200 §4.5: fragments are not
        // nested); refusing it also bounds what the decoder trusts.
        if (this.fragmentHeaderOffset >= 0) return this.fail(DropReason.BAD_IPV6_EXTENSION_HEADER);
        hdrLen = FRAG_HEADER_LENGTH;
        this.fragmentHeaderOffset = at;
        // A non-first fragment's data starts with no header of its own: stop after it.
        fragmentData = at + hdrLen <= end && (get16(b, at + FRAG_OFF_FLAGS) & 0xfff8) !== 0;
      } else if (next === IpProtocol.AH) {
        // RFC 4302 §2.2: payload length is in 4-byte units, minus 2.
        if (at + 2 > end) return this.fail(DropReason.BAD_IPV6_EXTENSION_HEADER);
        hdrLen = (b[at + 1]! + 2) << 2;
      } else {
        break;
      }
      if (at + hdrLen > end) return this.fail(DropReason.BAD_IPV6_EXTENSION_HEADER);
      next = b[at]!;
      at += hdrLen;
    }
    this.upperProtocol = next;
    this.upperOffset = at;
    this.reason = DropReason.OK;
    return true;
  }

  private fail(reason: number): boolean {
    this.reason = reason;
    this.len = 0;
    return false;
  }

  get version(): number { return this.buf[this.off]! >>> 4; }
  get trafficClass(): number { return (get16(this.buf, this.off) >>> 4) & 0xff; }
  get flowLabel(): number { return get32(this.buf, this.off) & 0xfffff; }
  get payloadLength(): number { return get16(this.buf, this.off + Ipv6Field.LENGTH); }
  set payloadLength(v: number) { set16(this.buf, this.off + Ipv6Field.LENGTH, v); }
  get nextHeader(): number { return this.buf[this.off + Ipv6Field.NXT_HDR]!; }
  set nextHeader(v: number) { this.buf[this.off + Ipv6Field.NXT_HDR] = v; }
  get hopLimit(): number { return this.buf[this.off + Ipv6Field.HOP_LIMIT]!; }
  set hopLimit(v: number) { this.buf[this.off + Ipv6Field.HOP_LIMIT] = v; }
  // Addresses stay in the buffer: absolute offsets of the 16 bytes.
  get srcOffset(): number { return this.off + Ipv6Field.SRC; }
  get dstOffset(): number { return this.off + Ipv6Field.DST; }
  // Word i (0..3) of an address, for hashing and comparisons without copies.
  srcWord(i: number): number { return get32(this.buf, this.off + Ipv6Field.SRC + 4 * i); }
  dstWord(i: number): number { return get32(this.buf, this.off + Ipv6Field.DST + 4 * i); }

  // Byte loops, not buf.set(subarray): a subarray is an allocation per call.
  copySrcFrom(from: Uint8Array, at: number): void {
    for (let i = 0; i < 16; i++) this.buf[this.off + Ipv6Field.SRC + i] = from[at + i]!;
  }
  copyDstFrom(from: Uint8Array, at: number): void {
    for (let i = 0; i < 16; i++) this.buf[this.off + Ipv6Field.DST + i] = from[at + i]!;
  }

  /** One hop less (the caller checked it is above 1); IPv6 has no header checksum to update. */
  static decrementHopLimit(b: Uint8Array, off: number): void {
    b[off + Ipv6Field.HOP_LIMIT] = b[off + Ipv6Field.HOP_LIMIT]! - 1;
  }

  get isFragment(): boolean { return this.fragmentHeaderOffset >= 0; }
  // In bytes; 0 without a fragment header.
  get fragmentOffset(): number {
    return this.fragmentHeaderOffset < 0 ? 0 : get16(this.buf, this.fragmentHeaderOffset + FRAG_OFF_FLAGS) & 0xfff8;
  }
  get moreFragments(): boolean {
    return this.fragmentHeaderOffset >= 0 && (this.buf[this.fragmentHeaderOffset + FRAG_OFF_FLAGS + 1]! & 1) !== 0;
  }
  get fragmentIdent(): number {
    return this.fragmentHeaderOffset < 0 ? 0 : get32(this.buf, this.fragmentHeaderOffset + FRAG_IDENT);
  }
  // Bytes from the upper-layer header to the end of the packet: the length that goes
  // into the upper-layer pseudo-header (RFC 8200 §8.1).
  get upperLength(): number { return this.off + this.len - this.upperOffset; }
}

/** Whether the 16 bytes at `b[off]` are the unspecified address :: (RFC 4291 §2.5.2). */
export function isUnspecifiedIpv6(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (b[off + i] !== 0) return false;
  return true;
}

/**
 * The 16 bytes at `b[off]` as four big-endian 32-bit words into out[at..at+3], int32
 * (`| 0`): the form NAT66 (nat6.ts) and the tables keep addresses in, since a uint32
 * >= 2^31 held in a plain field or returned would be a boxed heap number.
 */
export function loadIpv6Words(out: Int32Array, at: number, b: Uint8Array, off: number): void {
  for (let k = 0; k < 4; k++) {
    const o = off + 4 * k;
    out[at + k] = (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
  }
}

/** Whether the four words at a[at] and at b[bAt] are the same IPv6 address. */
export function sameIpv6Words(a: Int32Array, at: number, b: Int32Array, bAt: number): boolean {
  return a[at] === b[bAt] && a[at + 1] === b[bAt + 1] && a[at + 2] === b[bAt + 2] && a[at + 3] === b[bAt + 3];
}

// The rewrites a conntrack entry implies, in place with incremental checksums
// (src/wire/nat.ts): a packet of the flow either way, and an ICMP error about one,
// translated through its quoted header (RFC 5508 §4.2; Linux
// nf_nat_icmp_reply_translation). Addresses cross the calls as int32 (`| 0`) so V8
// never boxes one; PacketInfo's uint32 fields are then written straight from the
// conntrack words.
import { natRewriteDst4, natRewriteQuotedDst4, natRewriteQuotedSrc4, natRewriteSrc4, type PacketInfo } from '../wire/index.ts';
import { ENTRY_WORDS, EntryStatus, type Conntrack } from '../tables/conntrack.ts';

// PacketInfo.wide slots (src/wire/decode.ts) of src4, dst4, origSrc4, origDst4.
const WIDE_SRC4 = 4;
const WIDE_DST4 = 5;
const WIDE_ORIG_SRC4 = 8;
const WIDE_ORIG_DST4 = 9;

/** Rewrites a packet of entry `e` going direction `dir` (0: to the endpoint, 1: back to the client). */
export function translateFlow(ct: Conntrack, info: PacketInfo, buf: Uint8Array, e: number, dir: number, l4Partial: boolean): void {
  // Forward: destination := reply src, source := reply dst. Reply: destination :=
  // original src, source := original dst. Either way the tuple at `newDst` gives the new
  // destination in its source words and the new source in its destination words.
  const W = ct.words;
  const newDst = e * ENTRY_WORDS + (dir === 0 ? 3 : 0);
  const newSrc = newDst + 1;
  const ports = W[newDst + 2]!;
  const newDstPort = ports >>> 16;
  const newSrcPort = ports & 0xffff;
  const w = info.wide;
  if (W[newDst] !== w[WIDE_DST4] || newDstPort !== info.dstPort) {
    natRewriteDst4(info, buf, W[newDst]! | 0, newDstPort, l4Partial);
    w[WIDE_DST4] = W[newDst]!;
  }
  if (W[newSrc] !== w[WIDE_SRC4] || newSrcPort !== info.srcPort) {
    natRewriteSrc4(info, buf, W[newSrc]! | 0, newSrcPort, l4Partial);
    w[WIDE_SRC4] = W[newSrc]!;
  }
}

/**
 * Translates an ICMP error about entry `e`'s flow travelling direction `dir`: the
 * quoted header is put back the way its sender saw it, and the outer addresses get the
 * NAT of the error's direction.
 */
export function translateIcmpError(ct: Conntrack, info: PacketInfo, buf: Uint8Array, e: number, dir: number): void {
  const w = info.wide;
  const W = ct.words;
  const o = e * ENTRY_WORDS; // original tuple
  const rr = o + 3; // reply tuple
  if (dir === 0) {
    // From the client's side about a reply it got (VIP -> client): the endpoint must
    // see its own packet (endpoint -> client or SNAT address) quoted.
    natRewriteQuotedSrc4(info, buf, W[rr]! | 0, W[rr + 2]! >>> 16);
    w[WIDE_ORIG_SRC4] = W[rr]!;
    natRewriteQuotedDst4(info, buf, W[rr + 1]! | 0, W[rr + 2]! & 0xffff);
    w[WIDE_ORIG_DST4] = W[rr + 1]!;
    natRewriteDst4(info, buf, W[rr]! | 0, -1, false);
    w[WIDE_DST4] = W[rr]!;
    if ((ct.statusOf(e) & EntryStatus.SRC_NAT) !== 0) {
      natRewriteSrc4(info, buf, W[rr + 1]! | 0, -1, false);
      w[WIDE_SRC4] = W[rr + 1]!;
    }
  } else {
    // From the endpoint's side about a packet we sent it: the client must see its
    // own packet (client -> frontend) quoted, from the frontend.
    natRewriteQuotedSrc4(info, buf, W[o]! | 0, W[o + 2]! >>> 16);
    w[WIDE_ORIG_SRC4] = W[o]!;
    natRewriteQuotedDst4(info, buf, W[o + 1]! | 0, W[o + 2]! & 0xffff);
    w[WIDE_ORIG_DST4] = W[o + 1]!;
    natRewriteSrc4(info, buf, W[o + 1]! | 0, -1, false);
    w[WIDE_SRC4] = W[o + 1]!;
    natRewriteDst4(info, buf, W[o]! | 0, -1, false);
    w[WIDE_DST4] = W[o]!;
  }
}

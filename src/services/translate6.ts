// translate.ts for IPv6: the rewrites a family-6 conntrack entry implies, in place with
// incremental checksums (src/wire/nat.ts, natRewrite*6). Addresses are read from the
// conntrack's address words (Conntrack.addresses6, four big-endian int32 per address)
// and handed to the rewrites as (array, index): nothing is copied or boxed.
import { natRewriteDst6, natRewriteQuotedDst6, natRewriteQuotedSrc6, natRewriteSrc6, sameIpv6Words, type PacketInfo } from '../wire/index.ts';
import { EntryStatus, TupleWord, tupleBase, type Conntrack } from '../tables/conntrack.ts';

/**
 * Rewrites a packet of entry `e` going direction `dir` (0: to the endpoint, 1: back to
 * the client). `packet` holds the packet's source (words 0..3) and destination (4..7),
 * so that an address already right is not rewritten.
 */
export function translateFlow6(ct: Conntrack, info: PacketInfo, buf: Uint8Array, e: number, dir: number, l4Partial: boolean, packet: Int32Array): void {
  // The tuple whose source is the new destination and whose destination the new source:
  // the reply tuple going forward, the original one coming back.
  const ref = e * 2 + (dir === 0 ? 1 : 0);
  const A = ct.addresses6;
  const newDst = ct.address6At(ref, 0);
  const newSrc = ct.address6At(ref, 1);
  const ports = ct.words[tupleBase(ref) + TupleWord.PORTS]!;
  const newDstPort = ports >>> 16;
  const newSrcPort = ports & 0xffff;
  if (!sameIpv6Words(A, newDst, packet, 4) || newDstPort !== info.dstPort) natRewriteDst6(info, buf, A, newDst, newDstPort, l4Partial);
  if (!sameIpv6Words(A, newSrc, packet, 0) || newSrcPort !== info.srcPort) natRewriteSrc6(info, buf, A, newSrc, newSrcPort, l4Partial);
}

/**
 * Translates an ICMPv6 error about entry `e`'s flow travelling direction `dir`: the
 * quoted packet is put back the way its sender saw it, and the outer addresses get the
 * NAT of the error's direction (translate.ts' translateIcmpError).
 */
export function translateIcmpError6(ct: Conntrack, info: PacketInfo, buf: Uint8Array, e: number, dir: number): void {
  const A = ct.addresses6;
  const W = ct.words;
  // dir 0 (from the client's side, about a reply it got): the endpoint must see its own
  // packet quoted, so the quote becomes the reply tuple. dir 1 (from the endpoint's
  // side): the client must see its own packet, the original tuple, from the frontend.
  const quoted = e * 2 + (dir === 0 ? 1 : 0);
  const src = ct.address6At(quoted, 0);
  const dst = ct.address6At(quoted, 1);
  const ports = W[tupleBase(quoted) + TupleWord.PORTS]!;
  natRewriteQuotedSrc6(info, buf, A, src, ports >>> 16);
  natRewriteQuotedDst6(info, buf, A, dst, ports & 0xffff);
  if (dir === 0) {
    natRewriteDst6(info, buf, A, src, -1, false);
    if ((ct.statusOf(e) & EntryStatus.SRC_NAT) !== 0) natRewriteSrc6(info, buf, A, dst, -1, false);
  } else {
    natRewriteSrc6(info, buf, A, dst, -1, false);
    natRewriteDst6(info, buf, A, src, -1, false);
  }
}

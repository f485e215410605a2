// The Internet checksum: RFC 1071 (full), RFC 1624 (incremental), and the pseudo-header
// sums of RFC 768/793 (IPv4) and RFC 8200 §8.1 (IPv6).
//
// Conventions (as in smoltcp's wire::ip::checksum): a "sum" is the folded, NOT
// complemented 16-bit one's complement sum; a "checksum" is what goes in the header
// field, ~sum & 0xffff. A buffer whose checksum field is right sums to 0xffff.
//
// Checksum offload is always a parameter of the caller (see nat.ts `l4Partial`), never
// a module setting.

// The word fast path reads native-order 32-bit words through a Uint32Array over the
// buffer's ArrayBuffer. RFC 1071 §2(B): the one's complement sum is independent of
// byte order, so the folded result only needs a byte swap at the end.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// Below this many bytes the byte-pair loop wins: bench/micro.ts "checksum" rows measured
// 21 vs 46 ns at 20 B, 40 vs 55 ns at 64 B, even at 128 B, 750 vs 360 ns at 1460 B.
const WORD_PATH_MIN = 128;

// One cached word view, rebuilt only when the buffer changes; the datapath sums inside
// one slab, so this is built once.
let wordsBuffer: ArrayBufferLike | null = null;
let words: Uint32Array<ArrayBufferLike> = new Uint32Array(0);

function wordsOf(b: Uint8Array): Uint32Array<ArrayBufferLike> {
  const ab = b.buffer;
  if (ab !== wordsBuffer) {
    wordsBuffer = ab;
    words = new Uint32Array(ab, 0, ab.byteLength >>> 2);
  }
  return words;
}

// Fold any non-negative sum below 2^53 to 16 bits with end-around carry.
export function fold(s: number): number {
  if (s > 0xffffffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

// One's complement addition of two sums.
export function combine(a: number, b: number): number {
  return fold(a + b);
}

// Folded sum of `len` bytes at `off`, as big-endian 16-bit words starting at `off`
// (an odd last byte is padded with zero, RFC 1071 §4.1).
export function sumData(b: Uint8Array, off: number, len: number): number {
  return len >= WORD_PATH_MIN ? sumWords(b, off, len) : sumBytes(b, off, len);
}

// The byte-pair loop: best for short ranges (headers). Exported for the benchmark.
export function sumBytes(b: Uint8Array, off: number, len: number): number {
  const end = off + len;
  const end2 = off + (len & ~1);
  let s = 0;
  let i = off;
  for (; i < end2; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return fold(s);
}

// The 32-bit word loop: bytes up to a 4-byte boundary one by one, aligned words in
// native order, the tail one by one. Exported for the benchmark.
export function sumWords(b: Uint8Array, off: number, len: number): number {
  const end = off + len;
  let s = 0;
  let i = off;
  const lead = Math.min((4 - ((b.byteOffset + off) & 3)) & 3, len);
  for (; i < off + lead; i++) s += ((i - off) & 1) === 0 ? b[i]! << 8 : b[i]!;
  const w = wordsOf(b);
  const first = (b.byteOffset + i) >>> 2;
  const last = first + ((end - i) >>> 2);
  let ws = 0;
  for (let k = first; k < last; k++) ws += w[k]!;
  ws = fold(ws);
  // Word lanes line up with the big-endian pairing from `off` when lead is even on a
  // big-endian host, or odd on a little-endian one; otherwise swap bytes.
  if (((lead & 1) === 0) === LITTLE_ENDIAN) ws = ((ws & 0xff) << 8) | (ws >>> 8);
  s += ws;
  i += (last - first) << 2;
  for (; i < end; i++) s += ((i - off) & 1) === 0 ? b[i]! << 8 : b[i]!;
  return fold(s);
}

// The value for a checksum field covering `len` bytes at `off` plus an initial sum
// (a pseudo-header sum, or 0). The field itself must be zero while computing.
export function checksum(b: Uint8Array, off: number, len: number, initial = 0): number {
  return ~fold(sumData(b, off, len) + initial) & 0xffff;
}

// True when the bytes (checksum field included) plus `initial` sum to 0xffff.
export function verifyChecksum(b: Uint8Array, off: number, len: number, initial = 0): boolean {
  return fold(sumData(b, off, len) + initial) === 0xffff;
}

// RFC 793 §3.1 / RFC 768: source, destination, zero, protocol, L4 length.
export function pseudoHeaderV4(src: number, dst: number, protocol: number, length: number): number {
  return fold((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length);
}

// RFC 8200 §8.1: 16-byte addresses read from the packet, 32-bit upper-layer length,
// next header. Addresses are passed as offsets so nothing is copied.
export function pseudoHeaderV6(b: Uint8Array, srcOff: number, dstOff: number, nextHeader: number, length: number): number {
  let s = (length >>> 16) + (length & 0xffff) + nextHeader;
  for (let i = 0; i < 16; i += 2) s += ((b[srcOff + i]! << 8) | b[srcOff + i + 1]!) + ((b[dstOff + i]! << 8) | b[dstOff + i + 1]!);
  return fold(s);
}

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit field m -> m'. Eqn. 3 (not
// eqn. 2) so the result never becomes -0 (0xffff) where a full recompute gives 0.
export function updateChecksum16(hc: number, oldValue: number, newValue: number): number {
  return ~fold((~hc & 0xffff) + (~oldValue & 0xffff) + (newValue & 0xffff)) & 0xffff;
}

// The same for a 32-bit field (an IPv4 address): two 16-bit words at once.
export function updateChecksum32(hc: number, oldValue: number, newValue: number): number {
  const nOld = ~oldValue;
  return ~fold((~hc & 0xffff) + ((nOld >>> 16) & 0xffff) + (nOld & 0xffff) + (newValue >>> 16) + (newValue & 0xffff)) & 0xffff;
}

// CHECKSUM_PARTIAL (virtio-net NEEDS_CSUM): the L4 checksum field holds the folded,
// non-complemented pseudo-header sum and the device sums from csum_start onward. An
// address rewrite changes the pseudo-header, so the stored sum moves by +m' - m
// (Linux inet_proto_csum_replace4 with pseudohdr=true). Port rewrites need no update:
// ports lie in the range the device will sum.
export function updatePartialSum32(sum: number, oldValue: number, newValue: number): number {
  const nOld = ~oldValue;
  return fold((sum & 0xffff) + ((nOld >>> 16) & 0xffff) + (nOld & 0xffff) + (newValue >>> 16) + (newValue & 0xffff));
}

// RFC 768: a computed UDP checksum of 0 is transmitted as all ones; 0 means "none".
export function udpWireChecksum(c: number): number {
  return c === 0 ? 0xffff : c;
}

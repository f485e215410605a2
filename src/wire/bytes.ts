// Big-endian (network order) reads and writes on a Uint8Array. Plain byte arithmetic
// rather than a DataView: within noise of each other on Node 24 (bench/micro.ts,
// "read 5-tuple" rows: 5.4 vs 5.1 ns per packet), and with byte reads there is no
// per-buffer DataView to keep in step with a changing slab.
// Callers have checked bounds (a view's `wrap`); these never check.

export function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function get32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function set16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

export function set32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

// 48-bit MAC addresses as numbers: 2^48 < 2^53, so they are exact doubles and
// compare with ===, with no allocation per packet.
export function get48(b: Uint8Array, o: number): number {
  return ((b[o]! << 8) | b[o + 1]!) * 0x1_0000_0000 + get32(b, o + 2);
}

export function set48(b: Uint8Array, o: number, v: number): void {
  set16(b, o, Math.floor(v / 0x1_0000_0000));
  set32(b, o + 2, v >>> 0);
}

// Little-endian, for the virtio-net header (virtio 1.0 fields are __le16; TUN's
// header is host order, little-endian on every platform we build for).
export function get16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function set16le(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
}

// Shared empty buffer so a fresh view has a stable shape before its first wrap.
export const EMPTY = new Uint8Array(0);

// Loads straight into a Float64Array slot, for values that may not be small integers
// (uint32 >= 2^31, 48-bit MACs). V8 boxes such a number in a fresh HeapNumber when a
// call it did not inline returns it; a store into a typed array inside the callee
// never allocates. Measured: decodeFrame storing `eth.dst` into a plain field cost
// 16 bytes per frame (see test/wire-decode.test.ts, "allocates nothing"). The
// arithmetic is written out rather than calling get32 so nothing nested can box.
export function load32(out: Float64Array, i: number, b: Uint8Array, o: number): void {
  out[i] = ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function load48(out: Float64Array, i: number, b: Uint8Array, o: number): void {
  out[i] = ((b[o]! << 8) | b[o + 1]!) * 0x1_0000_0000 + (((b[o + 2]! << 24) | (b[o + 3]! << 16) | (b[o + 4]! << 8) | b[o + 5]!) >>> 0);
}

// An open-addressing hash table from IPv6 address (four big-endian 32-bit words) to a
// small non-negative integer (a port index, a node index): Ipv4Map's counterpart.
// Lookups read the address straight from a packet buffer (`getAt`) or as four words
// (`getWords`, for a prefix after masking), and allocate nothing.
//
// Built once by the control side and then only read by the datapath (immutable after
// `freeze()`); a change builds a new table that is swapped in between batches.

const EMPTY = -1;

function word(b: Uint8Array, o: number): number {
  return (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
}

/** Mixes the four words (as int32) into a table index seed (MurmurHash3-style rounds). */
function hash4(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0, 0xcc9e2d51);
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ w1;
  h = Math.imul((h << 13) | (h >>> 19), 0xcc9e2d51) ^ w2;
  h = Math.imul((h << 15) | (h >>> 17), 0x1b873593) ^ w3;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 2;
}

export class Ipv6Map {
  // Four int32 words per slot (compared as int32: no uint32 conversions on lookup).
  readonly #keys: Int32Array;
  readonly #values: Int32Array;
  readonly #mask: number;
  #size = 0;
  #frozen = false;

  /** `capacity` is the most entries it will hold; the table keeps load under 1/2. */
  constructor(capacity: number) {
    let slots = 8;
    while (slots < capacity * 2) slots *= 2;
    this.#keys = new Int32Array(slots * 4);
    this.#values = new Int32Array(slots).fill(EMPTY);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** Maps the 16 bytes at `b[off]` to `value`. */
  setAt(b: Uint8Array, off: number, value: number): void {
    this.setWords(word(b, off), word(b, off + 4), word(b, off + 8), word(b, off + 12), value);
  }

  setWords(w0: number, w1: number, w2: number, w3: number, value: number): void {
    if (this.#frozen) throw new Error('Ipv6Map is frozen');
    if (value < 0) throw new RangeError('Ipv6Map values must be >= 0');
    if ((this.#size + 1) * 2 > this.#values.length) throw new RangeError('Ipv6Map is full');
    w0 |= 0; w1 |= 0; w2 |= 0; w3 |= 0;
    const k = this.#keys;
    let i = hash4(w0, w1, w2, w3) & this.#mask;
    while (this.#values[i] !== EMPTY && !(k[4 * i] === w0 && k[4 * i + 1] === w1 && k[4 * i + 2] === w2 && k[4 * i + 3] === w3)) i = (i + 1) & this.#mask;
    if (this.#values[i] === EMPTY) this.#size++;
    k[4 * i] = w0; k[4 * i + 1] = w1; k[4 * i + 2] = w2; k[4 * i + 3] = w3;
    this.#values[i] = value;
  }

  /** The value for the 16 bytes at `b[off]`, or -1. */
  getAt(b: Uint8Array, off: number): number {
    return this.getWords(word(b, off), word(b, off + 4), word(b, off + 8), word(b, off + 12));
  }

  /** The value for the address whose words (int32 or uint32) are given, or -1. */
  getWords(w0: number, w1: number, w2: number, w3: number): number {
    w0 |= 0; w1 |= 0; w2 |= 0; w3 |= 0;
    const k = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    let i = hash4(w0, w1, w2, w3) & mask;
    for (;;) {
      const v = values[i]!;
      if (v === EMPTY) return EMPTY;
      if (k[4 * i] === w0 && k[4 * i + 1] === w1 && k[4 * i + 2] === w2 && k[4 * i + 3] === w3) return v;
      i = (i + 1) & mask;
    }
  }

  freeze(): this {
    this.#frozen = true;
    return this;
  }
}

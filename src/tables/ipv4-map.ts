// An open-addressing hash table from IPv4 address (uint32) to a small non-negative
// integer (a port index, a node index), over typed arrays: lookups allocate nothing and
// touch two cache lines at most for the table sizes a node has.
//
// Built once by the control side and then only read by the datapath (immutable after
// `freeze()`); a change builds a new table that is swapped in between batches.

const EMPTY = -1;

export class Ipv4Map {
  readonly #keys: Uint32Array;
  readonly #values: Int32Array;
  readonly #mask: number;
  #size = 0;
  #frozen = false;

  /** `capacity` is the most entries it will hold; the table keeps load under 1/2. */
  constructor(capacity: number) {
    let slots = 8;
    while (slots < capacity * 2) slots *= 2;
    this.#keys = new Uint32Array(slots);
    this.#values = new Int32Array(slots).fill(EMPTY);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  set(key: number, value: number): void {
    if (this.#frozen) throw new Error('Ipv4Map is frozen');
    if (value < 0) throw new RangeError('Ipv4Map values must be >= 0');
    if ((this.#size + 1) * 2 > this.#keys.length) throw new RangeError('Ipv4Map is full');
    let i = hash(key) & this.#mask;
    while (this.#values[i] !== EMPTY && this.#keys[i] !== key >>> 0) i = (i + 1) & this.#mask;
    if (this.#values[i] === EMPTY) this.#size++;
    this.#keys[i] = key;
    this.#values[i] = value;
  }

  /** The value for `key`, or -1. */
  get(key: number): number {
    const keys = this.#keys;
    const values = this.#values;
    const mask = this.#mask;
    let i = hash(key) & mask;
    for (;;) {
      const v = values[i]!;
      if (v === EMPTY) return EMPTY;
      if (keys[i] === key >>> 0) return v;
      i = (i + 1) & mask;
    }
  }

  freeze(): this {
    this.#frozen = true;
    return this;
  }
}

/** Fibonacci hashing: multiplies by 2^32/phi so nearby addresses spread over the table. */
function hash(key: number): number {
  return Math.imul(key, 0x9e3779b1) >>> 16;
}

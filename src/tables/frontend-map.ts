// Service frontends: (address, protocol, port) -> a value (service port index and
// frontend kind, packed by the caller), in an open-addressing table over typed arrays.
// Built once per ServiceSnapshot, then only read: a change builds a new table that is
// swapped in between batches (STYLE.md rule 3). Node ports use address 0 (0.0.0.0 is
// never a frontend), keyed by protocol and port alone.
import { pairHash } from './hash.ts';

const EMPTY = -1;
const SEED = 0x3c6ef372;

export class FrontendMap {
  readonly #addrs: Uint32Array;
  readonly #protoPorts: Int32Array;
  readonly #values: Int32Array;
  readonly #mask: number;
  #size = 0;

  /** `capacity`: the most entries it will hold; load stays under 1/2. */
  constructor(capacity: number) {
    let slots = 16;
    while (slots < capacity * 2) slots *= 2;
    this.#addrs = new Uint32Array(slots);
    this.#protoPorts = new Int32Array(slots);
    this.#values = new Int32Array(slots).fill(EMPTY);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Adds a frontend; returns the value already there (and keeps it) when the key is
   * taken, else -1. Two service ports claiming one frontend is the control side's
   * error to report; the first one keeps it, as in kube-proxy where the first rule wins.
   */
  add(addr: number, protocol: number, port: number, value: number): number {
    if (value < 0) throw new RangeError('FrontendMap values must be >= 0');
    if ((this.#size + 1) * 2 > this.#values.length) throw new RangeError('FrontendMap is full');
    const pp = (protocol << 16) | port;
    const a = addr >>> 0;
    let i = pairHash(SEED, addr | 0, pp) & this.#mask;
    for (;;) {
      const v = this.#values[i]!;
      if (v === EMPTY) break;
      if (this.#addrs[i] === a && this.#protoPorts[i] === pp) return v;
      i = (i + 1) & this.#mask;
    }
    this.#addrs[i] = a;
    this.#protoPorts[i] = pp;
    this.#values[i] = value;
    this.#size++;
    return EMPTY;
  }

  /**
   * The value for the frontend, or -1. `addr` may be int32 or uint32; the hot path
   * passes int32 (`| 0`), which V8 never boxes.
   */
  get(addr: number, protocol: number, port: number): number {
    const values = this.#values;
    const addrs = this.#addrs;
    const pps = this.#protoPorts;
    const mask = this.#mask;
    const pp = (protocol << 16) | port;
    const a = addr >>> 0;
    let i = pairHash(SEED, addr | 0, pp) & mask;
    for (;;) {
      const v = values[i]!;
      if (v === EMPTY) return EMPTY;
      if (addrs[i] === a && pps[i] === pp) return v;
      i = (i + 1) & mask;
    }
  }
}

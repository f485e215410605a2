// sessionAffinity: ClientIP state: (service port, client address) -> the endpoint the
// client was last sent to, until it expires (kube-proxy's iptables mode keeps this in
// the `recent` module per endpoint chain, refreshed by each new connection; the
// timeout is the Service's sessionAffinityConfig.clientIP.timeoutSeconds).
//
// A set-associative table over typed arrays: a key lives in one of WAYS slots from its
// home. No deletion: stale entries are overwritten. When all WAYS slots are live, the
// one expiring soonest is replaced (counted): affinity is a preference, not state a
// flow depends on (conntrack holds established flows to their endpoint either way).
//
// The arrays may live in memory handed in (a flow store, flow-store.ts) that outlives
// the process: the slots are then read as the last process left them. A slot torn by a
// process killed mid-record points at some endpoint for some client, which is harmless:
// an endpoint is only used while the service port still lists it.
//
// IPv6 (`family` 6, the NAT66 engine's): the same table keyed by the full client
// address, four words per slot, homed by a digest of it. The endpoint stays a 32-bit
// value (the NAT66 service table names its endpoints by a 32-bit id). Both families
// hash with fixed seeds: a restarted agent must find the slots where the last one put
// them, and a client that crowds one home only evicts affinity, a preference.
import { addressDigest6, pairHash } from './hash.ts';

export const AFFINITY_DEFAULT_CAPACITY = 65536;
const WAYS = 8;
const EMPTY = -1;
const SEED = 0x6a09e667;
const SEED6 = 0x3c6ef372;
/** Bytes per slot: expires (f64), service port id, client, endpoint address (32 bits each), endpoint port (16). */
export const AFFINITY_SLOT_BYTES = 22;
/** Bytes per slot of an IPv6 table: the client is 4 words. */
export const AFFINITY6_SLOT_BYTES = 34;

/** Bytes per slot for the family. */
export function affinitySlotBytes(family: 4 | 6): number {
  return family === 6 ? AFFINITY6_SLOT_BYTES : AFFINITY_SLOT_BYTES;
}

/** Slots for a table of `capacity` entries (a power of two, at least 16). */
export function affinitySlots(capacity: number): number {
  let slots = 16;
  while (slots < capacity) slots *= 2;
  return slots;
}

/** Memory for the slots: `slots` x affinitySlotBytes(family) from `byteOffset` (8-aligned). */
export interface AffinityMemory {
  buffer: ArrayBuffer;
  byteOffset: number;
  slots: number;
  /** The memory holds slots written before (else it is taken as zeros and initialised). */
  restore: boolean;
}

export class AffinityTable {
  readonly #svc: Int32Array;
  readonly #client: Int32Array;
  readonly endpointIP: Uint32Array;
  readonly endpointPort: Uint16Array;
  readonly expires: Float64Array;
  readonly #mask: number;
  /** Live entries overwritten before they expired, for lack of room. */
  evicted = 0;
  /** 4: lookup/record, clients as int32; 6: lookup6/record6, clients as 4 words. */
  readonly family: 4 | 6;

  constructor(capacity = AFFINITY_DEFAULT_CAPACITY, memory?: AffinityMemory, family: 4 | 6 = 4) {
    if (family !== 4 && family !== 6) throw new RangeError(`affinity family must be 4 or 6, got ${String(family)}`);
    this.family = family;
    const bytes = affinitySlotBytes(family);
    const clientWords = family === 6 ? 4 : 1;
    const slots = memory?.slots ?? affinitySlots(capacity);
    const buffer = memory?.buffer ?? new ArrayBuffer(slots * bytes);
    const at = memory?.byteOffset ?? 0;
    if (slots !== affinitySlots(slots) || at % 8 !== 0 || at + slots * bytes > buffer.byteLength) {
      throw new RangeError(`affinity: ${slots} slots at byte ${at} do not fit a ${buffer.byteLength}-byte buffer (a power of two >= 16, 8-aligned)`);
    }
    this.expires = new Float64Array(buffer, at, slots);
    this.#svc = new Int32Array(buffer, at + slots * 8, slots);
    this.#client = new Int32Array(buffer, at + slots * 12, slots * clientWords);
    this.endpointIP = new Uint32Array(buffer, at + slots * (12 + 4 * clientWords), slots);
    this.endpointPort = new Uint16Array(buffer, at + slots * (16 + 4 * clientWords), slots);
    if (memory?.restore !== true) this.#svc.fill(EMPTY);
    this.#mask = slots - 1;
  }

  /** Live entries at `now` (slow path: restarts, tests). */
  liveEntries(now: number): number {
    let n = 0;
    for (let i = 0; i <= this.#mask; i++) if (this.#svc[i] !== EMPTY && this.expires[i]! > now) n++;
    return n;
  }

  /** The slot holding a live entry for (service port id, client), or -1. `client` as int32. */
  lookup(svc: number, client: number, now: number): number {
    const mask = this.#mask;
    let i = pairHash(SEED, svc, client) & mask;
    for (let k = 0; k < WAYS; k++) {
      const s = this.#svc[i]!;
      if (s === EMPTY) return EMPTY;
      if (s === svc && this.#client[i] === client) return this.expires[i]! > now ? i : EMPTY;
      i = (i + 1) & mask;
    }
    return EMPTY;
  }

  /** Remembers the client's endpoint until `expires`. */
  record(svc: number, client: number, endpointIP: number, endpointPort: number, expires: number, now: number): void {
    const mask = this.#mask;
    const home = pairHash(SEED, svc, client) & mask;
    let slot = EMPTY;
    let soonest = EMPTY;
    let i = home;
    for (let k = 0; k < WAYS; k++) {
      const s = this.#svc[i]!;
      if (s === svc && this.#client[i] === client) {
        slot = i; // the key's own slot wins over any free one seen before it: one slot per key
        break;
      }
      if (slot === EMPTY && (s === EMPTY || this.expires[i]! <= now)) slot = i;
      if (s === EMPTY) break; // nothing of this key past an empty slot
      if (soonest === EMPTY || this.expires[i]! < this.expires[soonest]!) soonest = i;
      i = (i + 1) & mask;
    }
    if (slot === EMPTY) {
      slot = soonest;
      this.evicted++;
    }
    this.#svc[slot] = svc;
    this.#client[slot] = client;
    this.endpointIP[slot] = endpointIP;
    this.endpointPort[slot] = endpointPort;
    this.expires[slot] = expires;
  }

  /** lookup() for an IPv6 table: the client is the 4 words at `a[at]`. */
  lookup6(svc: number, a: Int32Array, at: number, now: number): number {
    const mask = this.#mask;
    let i = pairHash(SEED, svc, addressDigest6(SEED6, a, at)) & mask;
    for (let k = 0; k < WAYS; k++) {
      const s = this.#svc[i]!;
      if (s === EMPTY) return EMPTY;
      if (s === svc && this.#isClient6(i, a, at)) return this.expires[i]! > now ? i : EMPTY;
      i = (i + 1) & mask;
    }
    return EMPTY;
  }

  /** record() for an IPv6 table: the client is the 4 words at `a[at]`; the same replacement rules. */
  record6(svc: number, a: Int32Array, at: number, endpointIP: number, endpointPort: number, expires: number, now: number): void {
    const mask = this.#mask;
    const home = pairHash(SEED, svc, addressDigest6(SEED6, a, at)) & mask;
    let slot = EMPTY;
    let soonest = EMPTY;
    let i = home;
    for (let k = 0; k < WAYS; k++) {
      const s = this.#svc[i]!;
      if (s === svc && this.#isClient6(i, a, at)) {
        slot = i;
        break;
      }
      if (slot === EMPTY && (s === EMPTY || this.expires[i]! <= now)) slot = i;
      if (s === EMPTY) break;
      if (soonest === EMPTY || this.expires[i]! < this.expires[soonest]!) soonest = i;
      i = (i + 1) & mask;
    }
    if (slot === EMPTY) {
      slot = soonest;
      this.evicted++;
    }
    const c = this.#client;
    this.#svc[slot] = svc;
    c[slot * 4] = a[at]!;
    c[slot * 4 + 1] = a[at + 1]!;
    c[slot * 4 + 2] = a[at + 2]!;
    c[slot * 4 + 3] = a[at + 3]!;
    this.endpointIP[slot] = endpointIP;
    this.endpointPort[slot] = endpointPort;
    this.expires[slot] = expires;
  }

  #isClient6(slot: number, a: Int32Array, at: number): boolean {
    const c = this.#client;
    const x = slot * 4;
    return c[x] === a[at] && c[x + 1] === a[at + 1] && c[x + 2] === a[at + 2] && c[x + 3] === a[at + 3];
  }
}

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
import { pairHash } from './hash.ts';

export const AFFINITY_DEFAULT_CAPACITY = 65536;
const WAYS = 8;
const EMPTY = -1;
const SEED = 0x6a09e667;
/** Bytes per slot: expires (f64), service port id, client, endpoint address (32 bits each), endpoint port (16). */
export const AFFINITY_SLOT_BYTES = 22;

/** Slots for a table of `capacity` entries (a power of two, at least 16). */
export function affinitySlots(capacity: number): number {
  let slots = 16;
  while (slots < capacity) slots *= 2;
  return slots;
}

/** Memory for the slots: `slots` x AFFINITY_SLOT_BYTES from `byteOffset` (8-aligned). */
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

  constructor(capacity = AFFINITY_DEFAULT_CAPACITY, memory?: AffinityMemory) {
    const slots = memory?.slots ?? affinitySlots(capacity);
    const buffer = memory?.buffer ?? new ArrayBuffer(slots * AFFINITY_SLOT_BYTES);
    const at = memory?.byteOffset ?? 0;
    if (slots !== affinitySlots(slots) || at % 8 !== 0 || at + slots * AFFINITY_SLOT_BYTES > buffer.byteLength) {
      throw new RangeError(`affinity: ${slots} slots at byte ${at} do not fit a ${buffer.byteLength}-byte buffer (a power of two >= 16, 8-aligned)`);
    }
    this.expires = new Float64Array(buffer, at, slots);
    this.#svc = new Int32Array(buffer, at + slots * 8, slots);
    this.#client = new Int32Array(buffer, at + slots * 12, slots);
    this.endpointIP = new Uint32Array(buffer, at + slots * 16, slots);
    this.endpointPort = new Uint16Array(buffer, at + slots * 20, slots);
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
}

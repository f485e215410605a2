// The layout of the flow tables' memory: conntrack records and session-affinity slots
// in one buffer with a header, so that the buffer can be a file mapped by the agent
// (src/device/shared-memory.ts) and outlive it. A restarted agent maps the same file,
// checks the header, and carries on with every flow where the last one left it.
//
// Header (64 bytes, little-endian u32 words):
//   0 magic 'TPFL'   1 layout version   2 conntrack capacity   3 conntrack words per entry
//   4 affinity slots 5 state (0 writing, 1 ready)   6 clock (1 = CLOCK_MONOTONIC seconds)
//   8..11 the boot id (16 bytes): CLOCK_MONOTONIC restarts at boot, so a table written
//         before a reboot is never read after it (a tmpfs under /run is gone by then
//         anyway, but the file might not be on one).
// Then, each section 64-byte aligned: conntrack records (capacity x 64 bytes, the
// record layout of conntrack.ts), then the affinity slots' arrays (affinity.ts).
//
// What is trusted from an old buffer is only the records and the slots; each table
// rebuilds its index and its counts from them (see `restore` in conntrack.ts), which
// is also what makes a process killed in the middle of an update safe: the records are
// consistent at every instant, the index is derived.
//
// Any difference in the header (another build's layout, another capacity, another
// boot) means the buffer is zeroed and the tables start empty: a restart with a new
// layout loses the flows, never misreads them.
import { AFFINITY_SLOT_BYTES, affinitySlots } from './affinity.ts';
import { ENTRY_WORDS } from './conntrack.ts';

/** Bump on any change to the header, the record layout or the affinity arrays. */
export const FLOW_STORE_VERSION = 1;
const MAGIC = 0x4c465054; // 'TPFL' little-endian
const HEADER_BYTES = 64;
const CLOCK_MONOTONIC_SECONDS = 1;
const STATE_READY = 1;
const H = { MAGIC: 0, VERSION: 1, CAPACITY: 2, ENTRY_WORDS: 3, AFFINITY: 4, STATE: 5, CLOCK: 6, BOOT_ID: 8 } as const;

export interface FlowStoreLayout {
  conntrackCapacity: number;
  affinityCapacity: number;
}

/** Views of the two tables' memory inside one buffer. */
export interface FlowStore {
  readonly buffer: ArrayBuffer;
  /** Conntrack records: capacity x 64 bytes. */
  readonly conntrackOffset: number;
  readonly conntrackCapacity: number;
  /** Affinity slots' arrays. */
  readonly affinityOffset: number;
  readonly affinitySlots: number;
  /** The buffer was (re)initialised: the tables start empty. */
  readonly fresh: boolean;
  /** Why an old buffer was not trusted ('' when it was, or when there was none). */
  readonly discarded: string;
}

const align64 = (n: number): number => (n + 63) & ~63;

/** Bytes a store of this layout takes. */
export function flowStoreBytes(layout: FlowStoreLayout): number {
  const conntrack = align64(layout.conntrackCapacity * ENTRY_WORDS * 4);
  return HEADER_BYTES + conntrack + align64(affinitySlots(layout.affinityCapacity) * AFFINITY_SLOT_BYTES);
}

/**
 * Takes `buffer` (flowStoreBytes long) as the tables' memory. Trusts its contents when
 * `maybeOld` and the header matches this layout, version and boot; otherwise zeroes it
 * and writes a new header. `bootId`: /proc/sys/kernel/random/boot_id (16 bytes).
 */
export function openFlowStore(buffer: ArrayBuffer, layout: FlowStoreLayout, bootId: Uint8Array, maybeOld: boolean): FlowStore {
  const bytes = flowStoreBytes(layout);
  if (buffer.byteLength !== bytes) throw new RangeError(`flow store: buffer is ${buffer.byteLength} bytes, this layout takes ${bytes}`);
  if (bootId.length !== 16) throw new RangeError('flow store: the boot id is 16 bytes');
  const header = new Uint32Array(buffer, 0, HEADER_BYTES / 4);
  const slots = affinitySlots(layout.affinityCapacity);
  const expected = [MAGIC, FLOW_STORE_VERSION, layout.conntrackCapacity, ENTRY_WORDS, slots, STATE_READY, CLOCK_MONOTONIC_SECONDS];
  let discarded = '';
  if (maybeOld) {
    const names = ['magic', 'layout version', 'conntrack capacity', 'record size', 'affinity slots', 'state', 'clock'];
    for (let i = 0; i < expected.length && discarded === ''; i++) {
      if (header[i] !== expected[i]) discarded = i === H.STATE ? 'it was being initialised' : `its ${names[i]} is ${header[i]}, this agent's is ${expected[i]}`;
    }
    const oldBoot = new Uint8Array(buffer, H.BOOT_ID * 4, 16);
    if (discarded === '' && !oldBoot.every((b, i) => b === bootId[i])) discarded = 'it was written before the last boot';
  }
  const fresh = !maybeOld || discarded !== '';
  if (fresh) {
    header[H.STATE] = 0;
    new Uint8Array(buffer, 4 * (H.STATE + 1)).fill(0);
    new Uint8Array(buffer, H.BOOT_ID * 4, 16).set(bootId);
    header[H.MAGIC] = MAGIC;
    header[H.VERSION] = FLOW_STORE_VERSION;
    header[H.CAPACITY] = layout.conntrackCapacity;
    header[H.ENTRY_WORDS] = ENTRY_WORDS;
    header[H.AFFINITY] = slots;
    header[H.CLOCK] = CLOCK_MONOTONIC_SECONDS;
    header[H.STATE] = STATE_READY;
  }
  return {
    buffer,
    conntrackOffset: HEADER_BYTES,
    conntrackCapacity: layout.conntrackCapacity,
    affinityOffset: HEADER_BYTES + align64(layout.conntrackCapacity * ENTRY_WORDS * 4),
    affinitySlots: slots,
    fresh,
    discarded,
  };
}

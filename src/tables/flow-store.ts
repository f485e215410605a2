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
//   12 IPv6 conntrack capacity   13 IPv6 affinity slots
// Then, each section 64-byte aligned: conntrack records (capacity x 64 bytes, the
// record layout of conntrack.ts), the affinity slots' arrays (affinity.ts), and the
// same for IPv6 (the NAT66 engine's tables): conntrack records, their addresses
// (capacity x 64 bytes, conntrack.ts's `addresses6`), the affinity slots' arrays.
// IPv6 tables are sized at a quarter of the IPv4 ones (at least 1,024): a dual-stack
// cluster's IPv6 traffic is the smaller share today, and the store grows by half, not
// double (9.4 MiB -> 13.9 MiB at the defaults: 131,072 and 65,536 IPv4 entries).
//
// What is trusted from an old buffer is only the records and the slots; each table
// rebuilds its index and its counts from them (see `restore` in conntrack.ts), which
// is also what makes a process killed in the middle of an update safe: the records are
// consistent at every instant, the index is derived.
//
// Any difference in the header (another build's layout, another capacity, another
// boot) means the buffer is zeroed and the tables start empty: a restart with a new
// layout loses the flows, never misreads them.
import { AFFINITY6_SLOT_BYTES, AFFINITY_SLOT_BYTES, affinitySlots } from './affinity.ts';
import { ADDRESS6_WORDS, ENTRY_WORDS } from './conntrack.ts';

/** Bump on any change to the header, the record layout or the affinity arrays. 2: IPv6 tables. */
export const FLOW_STORE_VERSION = 2;
const MAGIC = 0x4c465054; // 'TPFL' little-endian
const HEADER_BYTES = 64;
const CLOCK_MONOTONIC_SECONDS = 1;
const STATE_READY = 1;
const H = { MAGIC: 0, VERSION: 1, CAPACITY: 2, ENTRY_WORDS: 3, AFFINITY: 4, STATE: 5, CLOCK: 6, BOOT_ID: 8, CAPACITY6: 12, AFFINITY6: 13 } as const;

export interface FlowStoreLayout {
  conntrackCapacity: number;
  affinityCapacity: number;
  /** IPv6 conntrack entries; default max(1024, conntrackCapacity / 4). */
  conntrack6Capacity?: number;
  /** IPv6 affinity entries; default max(1024, affinityCapacity / 4). */
  affinity6Capacity?: number;
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
  /** IPv6 conntrack records (capacity x 64 bytes) and their addresses (capacity x 64 bytes): ConntrackMemory.addresses6Offset. */
  readonly conntrack6Offset: number;
  readonly addresses6Offset: number;
  readonly conntrack6Capacity: number;
  /** IPv6 affinity slots' arrays (AffinityTable family 6). */
  readonly affinity6Offset: number;
  readonly affinity6Slots: number;
  /** The buffer was (re)initialised: the tables start empty. */
  readonly fresh: boolean;
  /** Why an old buffer was not trusted ('' when it was, or when there was none). */
  readonly discarded: string;
}

const align64 = (n: number): number => (n + 63) & ~63;

/** The sections' offsets and sizes (bytes) for a layout. */
function sections(layout: FlowStoreLayout) {
  const conntrack6Capacity = layout.conntrack6Capacity ?? Math.max(1024, layout.conntrackCapacity >> 2);
  const affinity6Slots = affinitySlots(layout.affinity6Capacity ?? Math.max(1024, layout.affinityCapacity >> 2));
  if (!Number.isInteger(conntrack6Capacity) || conntrack6Capacity < 1) throw new RangeError(`flow store: conntrack6Capacity must be a positive integer, got ${conntrack6Capacity}`);
  const affinitySlotCount = affinitySlots(layout.affinityCapacity);
  const conntrackOffset = HEADER_BYTES;
  const affinityOffset = conntrackOffset + align64(layout.conntrackCapacity * ENTRY_WORDS * 4);
  const conntrack6Offset = affinityOffset + align64(affinitySlotCount * AFFINITY_SLOT_BYTES);
  const addresses6Offset = conntrack6Offset + align64(conntrack6Capacity * ENTRY_WORDS * 4);
  const affinity6Offset = addresses6Offset + align64(conntrack6Capacity * ADDRESS6_WORDS * 4);
  const bytes = affinity6Offset + align64(affinity6Slots * AFFINITY6_SLOT_BYTES);
  return { conntrackOffset, affinityOffset, affinitySlots: affinitySlotCount, conntrack6Offset, addresses6Offset, conntrack6Capacity, affinity6Offset, affinity6Slots, bytes };
}

/** Bytes a store of this layout takes. */
export function flowStoreBytes(layout: FlowStoreLayout): number {
  return sections(layout).bytes;
}

/**
 * Takes `buffer` (flowStoreBytes long) as the tables' memory. Trusts its contents when
 * `maybeOld` and the header matches this layout, version and boot; otherwise zeroes it
 * and writes a new header. Without `maybeOld` the buffer is zeros already (a file just
 * made, a new ArrayBuffer) and is not written past the header: a shared file's pages
 * are then allocated as flows come to use them, not all at start (14 MB at the default
 * sizes). `bootId`: /proc/sys/kernel/random/boot_id (16 bytes).
 */
export function openFlowStore(buffer: ArrayBuffer, layout: FlowStoreLayout, bootId: Uint8Array, maybeOld: boolean): FlowStore {
  const at = sections(layout);
  const bytes = at.bytes;
  if (buffer.byteLength !== bytes) throw new RangeError(`flow store: buffer is ${buffer.byteLength} bytes, this layout takes ${bytes}`);
  if (bootId.length !== 16) throw new RangeError('flow store: the boot id is 16 bytes');
  const header = new Uint32Array(buffer, 0, HEADER_BYTES / 4);
  const slots = at.affinitySlots;
  // [header word, expected value, name]; the version first, so an older layout is named as such.
  const expected: [number, number, string][] = [
    [H.MAGIC, MAGIC, 'magic'], [H.VERSION, FLOW_STORE_VERSION, 'layout version'], [H.CAPACITY, layout.conntrackCapacity, 'conntrack capacity'],
    [H.ENTRY_WORDS, ENTRY_WORDS, 'record size'], [H.AFFINITY, slots, 'affinity slots'], [H.STATE, STATE_READY, 'state'],
    [H.CLOCK, CLOCK_MONOTONIC_SECONDS, 'clock'], [H.CAPACITY6, at.conntrack6Capacity, 'IPv6 conntrack capacity'], [H.AFFINITY6, at.affinity6Slots, 'IPv6 affinity slots'],
  ];
  let discarded = '';
  if (maybeOld) {
    for (const [i, want, name] of expected) {
      if (discarded !== '') break;
      if (header[i] !== want) discarded = i === H.STATE ? 'it was being initialised' : `its ${name} is ${header[i]}, this agent's is ${want}`;
    }
    const oldBoot = new Uint8Array(buffer, H.BOOT_ID * 4, 16);
    if (discarded === '' && !oldBoot.every((b, i) => b === bootId[i])) discarded = 'it was written before the last boot';
  }
  const fresh = !maybeOld || discarded !== '';
  if (fresh) {
    header[H.STATE] = 0;
    if (maybeOld) new Uint8Array(buffer, 4 * (H.STATE + 1)).fill(0);
    new Uint8Array(buffer, H.BOOT_ID * 4, 16).set(bootId);
    header[H.MAGIC] = MAGIC;
    header[H.VERSION] = FLOW_STORE_VERSION;
    header[H.CAPACITY] = layout.conntrackCapacity;
    header[H.ENTRY_WORDS] = ENTRY_WORDS;
    header[H.AFFINITY] = slots;
    header[H.CLOCK] = CLOCK_MONOTONIC_SECONDS;
    header[H.CAPACITY6] = at.conntrack6Capacity;
    header[H.AFFINITY6] = at.affinity6Slots;
    header[H.STATE] = STATE_READY;
  }
  return {
    buffer,
    conntrackOffset: at.conntrackOffset,
    conntrackCapacity: layout.conntrackCapacity,
    affinityOffset: at.affinityOffset,
    affinitySlots: slots,
    conntrack6Offset: at.conntrack6Offset,
    addresses6Offset: at.addresses6Offset,
    conntrack6Capacity: at.conntrack6Capacity,
    affinity6Offset: at.affinity6Offset,
    affinity6Slots: at.affinity6Slots,
    fresh,
    discarded,
  };
}

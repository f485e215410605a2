// Giving memory back after a large sync. V8's heap grows to the peak of a sync (the
// first one at 10k Services parses every manifest or lists every EndpointSlice, then
// compiles views of them), and its collections, full ones included, keep the pages
// they emptied: at 10k Services / 100k endpoints the services side held 240 MiB of
// heap for 106 MiB of live objects, 358 MiB RSS, and Node never shrinks it by itself
// (V8's memory reducer runs on idle tasks, which Node's platform does not run). A
// memory-reducing collection (V8's "last resort" flavour: full, compacting, pages
// released) brings that to 104 MiB of heap and 191 MiB RSS.
//
// It stops the thread while it runs (287 ms at that size: the data path waits too), so
// HeapTrim asks for one only when it pays and rarely: SETTLE_MS after the last sync of
// a burst, when the heap holds at least SLACK_BYTES more than it uses, and not within
// MIN_INTERVAL_MS of the previous one unless the heap in use is smaller than the slack
// (then the pause is short). A synced state shrunk to half of its peak since the last
// collection is collected at once, whatever the slack: 25,000 Services deleted left
// 238 MB of heap in use, nearly all of it garbage (V8 counts it as used until it
// collects, and an idle agent does not allocate, so it never did), and the live heap
// is small, so is the pause. Small syncs (an endpoint moved) seldom leave that much;
// the first sync at scale and a mass deletion do. In a cluster whose endpoints churn
// all the time the interval bounds the pauses to one per five minutes.
// The agent, `tapir ingress` and `tapir dns` each run one: each compiles the same views.
//
// What the sync took from malloc (V8's and Node's own allocations: parsed responses,
// buffers) glibc keeps in its arenas when it is freed; malloc_trim right after the
// collection hands those pages back too (27 MB of the agent's RSS at 25,000 Services).
// And the process may hold much more than its heap when the heap has little slack:
// after 25,000 Services were deleted, V8's own collections had shrunk the heap below
// the slack while the RSS stayed at 517 MB. So the memory outside V8's heap (RSS less
// the heap's size) is watched too: grown by SLACK_BYTES since the last trim, it is
// trimmed with malloc_trim alone (milliseconds, no pause worth bounding), or with the
// collection when that is due anyway.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { trimMalloc } from '../device/memory.ts';

export const SETTLE_MS = 2_000;
export const MIN_INTERVAL_MS = 5 * 60_000;
export const SLACK_BYTES = 64 * 1024 * 1024;

type Collect = () => void;

export interface HeapTrimOptions {
  log: (message: string) => void;
  /** Test hooks: the heap figures, the collection and the clock. */
  heap?: () => { total: number; used: number };
  /** The process's resident memory (bytes). */
  rss?: () => number;
  collect?: Collect | null;
  /** What gives the C heap's free pages back after a collection; default malloc_trim through the native addon. */
  trimNative?: () => unknown;
  now?: () => number;
  settleMs?: number;
  minIntervalMs?: number;
  slackBytes?: number;
}

let memoryReducing: Collect | null | undefined;

/**
 * V8's memory-reducing collection, or null where it cannot be had. The gc() V8 exposes
 * takes the flavour; it is reached as `--expose-gc` makes it, in a context of its own.
 */
function memoryReducingCollection(): Collect | null {
  if (memoryReducing !== undefined) return memoryReducing;
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    memoryReducing = typeof gc === 'function' ? () => (gc as (o: object) => void)({ type: 'major', execution: 'sync', flavor: 'last-resort' }) : null;
  } catch {
    memoryReducing = null;
  }
  return memoryReducing;
}

const heapNow = (): { total: number; used: number } => {
  const s = getHeapStatistics();
  return { total: s.total_heap_size, used: s.used_heap_size };
};

/** What a process that compiles large syncs calls HeapTrim through (tests put a recorder in its place). */
export interface HeapTrimmer {
  /** `held`: how many objects the synced state holds, if the caller counts them. */
  afterSync(held?: number): void;
  stop(): void;
}

export class HeapTrim implements HeapTrimmer {
  readonly #log: (message: string) => void;
  readonly #heap: () => { total: number; used: number };
  readonly #rss: () => number;
  readonly #collect: Collect | null;
  readonly #trimNative: () => unknown;
  readonly #now: () => number;
  readonly #settleMs: number;
  readonly #minIntervalMs: number;
  readonly #slack: number;
  #timer: NodeJS.Timeout | null = null;
  #last = -Infinity;
  /** What the process held outside V8's heap after the last trim (at start: when made). */
  #outside: number;
  /** The state's size as afterSync last gave it, and the largest since the last collection. */
  #held = 0;
  #heldPeak = 0;
  /** Collections done, for status and tests. */
  trims = 0;
  /** C heap trims done without a collection. */
  nativeTrims = 0;

  constructor(opts: HeapTrimOptions) {
    this.#log = opts.log;
    this.#heap = opts.heap ?? heapNow;
    this.#rss = opts.rss ?? process.memoryUsage.rss;
    this.#collect = opts.collect === undefined ? memoryReducingCollection() : opts.collect;
    this.#trimNative = opts.trimNative ?? trimMalloc;
    this.#now = opts.now ?? Date.now;
    this.#settleMs = opts.settleMs ?? SETTLE_MS;
    this.#minIntervalMs = opts.minIntervalMs ?? MIN_INTERVAL_MS;
    this.#slack = opts.slackBytes ?? SLACK_BYTES;
    this.#outside = this.#collect === null ? 0 : this.#rss() - this.#heap().total;
  }

  /** A sync was applied: look again once syncs have stopped for a while. */
  afterSync(held?: number): void {
    if (this.#collect === null) return;
    if (held !== undefined) {
      this.#held = held;
      if (held > this.#heldPeak) this.#heldPeak = held;
    }
    this.#arm(this.#settleMs);
  }

  #arm(ms: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => { this.#timer = null; this.check(); }, ms);
    this.#timer.unref();
  }

  /**
   * Collects when the heap's unused part is worth it and the last collection is long
   * enough ago; trims the C heap alone when only what lies outside V8's heap grew (the
   * timer's work; public for tests).
   */
  check(): void {
    if (this.#collect === null) return;
    const before = this.#heap();
    const rssBefore = this.#rss();
    // A state shrunk to half of its peak since the last collection (a mass deletion):
    // most of the heap in use is garbage now, which V8 counts as used until it collects.
    const shrunk = this.#held * 2 < this.#heldPeak && before.used >= this.#slack;
    const heapSlack = before.total - before.used >= this.#slack || shrunk;
    const outsideGrew = rssBefore - before.total - this.#outside >= this.#slack;
    if (!heapSlack && !outsideGrew) return;
    // The interval bounds the pauses of large heaps. A collection's pause is its live
    // heap's, so a small heap in use, or a shrunk state's, is collected in little time
    // and need not wait.
    const wait = before.used < this.#slack || shrunk ? 0 : this.#last + this.#minIntervalMs - this.#now();
    const mib = (n: number): string => (n / 1048576).toFixed(0);
    if (heapSlack && wait <= 0) {
      const t0 = performance.now();
      this.#collect();
      this.#trimNative();
      const ms = performance.now() - t0;
      this.#last = this.#now();
      this.#heldPeak = this.#held;
      this.trims++;
      const after = this.#heap();
      this.#outside = this.#rss() - after.total;
      this.#log(`memory: heap ${mib(before.total)} -> ${mib(after.total)} MiB (${mib(after.used)} MiB in use) after a memory-reducing collection of ${ms.toFixed(0)} ms`);
      return;
    }
    if (heapSlack) this.#arm(wait);
    if (!outsideGrew) return;
    const t0 = performance.now();
    this.#trimNative();
    const ms = performance.now() - t0;
    const rss = this.#rss();
    this.#outside = rss - this.#heap().total;
    this.nativeTrims++;
    this.#log(`memory: RSS ${mib(rssBefore)} -> ${mib(rss)} MiB after trimming the C heap (${ms.toFixed(0)} ms)`);
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

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
// MIN_INTERVAL_MS of the previous one. Small syncs (an endpoint moved) seldom leave
// that much; the first sync at scale and a mass deletion do. In a cluster whose
// endpoints churn all the time the interval bounds the pauses to one per five minutes.
// The agent, `tapir ingress` and `tapir dns` each run one: each compiles the same views.
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

export const SETTLE_MS = 2_000;
export const MIN_INTERVAL_MS = 5 * 60_000;
export const SLACK_BYTES = 64 * 1024 * 1024;

type Collect = () => void;

export interface HeapTrimOptions {
  log: (message: string) => void;
  /** Test hooks: the heap figures, the collection and the clock. */
  heap?: () => { total: number; used: number };
  collect?: Collect | null;
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
  afterSync(): void;
  stop(): void;
}

export class HeapTrim implements HeapTrimmer {
  readonly #log: (message: string) => void;
  readonly #heap: () => { total: number; used: number };
  readonly #collect: Collect | null;
  readonly #now: () => number;
  readonly #settleMs: number;
  readonly #minIntervalMs: number;
  readonly #slack: number;
  #timer: NodeJS.Timeout | null = null;
  #last = -Infinity;
  /** Collections done, for status and tests. */
  trims = 0;

  constructor(opts: HeapTrimOptions) {
    this.#log = opts.log;
    this.#heap = opts.heap ?? heapNow;
    this.#collect = opts.collect === undefined ? memoryReducingCollection() : opts.collect;
    this.#now = opts.now ?? Date.now;
    this.#settleMs = opts.settleMs ?? SETTLE_MS;
    this.#minIntervalMs = opts.minIntervalMs ?? MIN_INTERVAL_MS;
    this.#slack = opts.slackBytes ?? SLACK_BYTES;
  }

  /** A sync was applied: look again once syncs have stopped for a while. */
  afterSync(): void {
    if (this.#collect === null) return;
    this.#arm(this.#settleMs);
  }

  #arm(ms: number): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => { this.#timer = null; this.check(); }, ms);
    this.#timer.unref();
  }

  /** Collects when the heap's unused part is worth it and the last collection is long enough ago (the timer's work; public for tests). */
  check(): void {
    if (this.#collect === null) return;
    const before = this.#heap();
    if (before.total - before.used < this.#slack) return;
    const wait = this.#last + this.#minIntervalMs - this.#now();
    if (wait > 0) {
      this.#arm(wait);
      return;
    }
    const t0 = performance.now();
    this.#collect();
    const ms = performance.now() - t0;
    this.#last = this.#now();
    this.trims++;
    const after = this.#heap();
    const mib = (n: number): string => (n / 1048576).toFixed(0);
    this.#log(`memory: heap ${mib(before.total)} -> ${mib(after.total)} MiB (${mib(after.used)} MiB in use) after a memory-reducing collection of ${ms.toFixed(0)} ms`);
  }

  stop(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }
}

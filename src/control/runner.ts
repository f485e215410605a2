// A coalescing sync runner after kube-proxy's BoundedFrequencyRunner
// (pkg/util/async): run() asks for a sync; syncs start at most once per minInterval
// (a burst of requests becomes one sync), at least once per maxInterval (a periodic
// full pass that repairs anything a missed event left behind), and a failed sync is
// retried after retryInterval. Syncs never overlap.

export interface SyncRunnerOptions {
  /** `periodic` is true when no change asked for this sync (the maxInterval pass). */
  sync(periodic: boolean): void | Promise<void>;
  minIntervalMs: number;
  maxIntervalMs: number;
  retryIntervalMs: number;
  /** A sync threw; it will be retried. */
  onError(err: Error): void;
}

export class SyncRunner {
  readonly #opts: SyncRunnerOptions;
  #timer: NodeJS.Timeout | null = null;
  #due = Infinity;
  #lastStart = -Infinity;
  #running: Promise<void> | null = null;
  #requested = false;
  #started = false;
  #syncs = 0;

  constructor(opts: SyncRunnerOptions) {
    this.#opts = opts;
  }

  /** Number of syncs started so far. */
  get syncs(): number {
    return this.#syncs;
  }

  start(): void {
    this.#started = true;
    if (this.#requested) this.#schedule(this.#lastStart + this.#opts.minIntervalMs);
    else this.#schedule(performance.now() + this.#opts.maxIntervalMs);
  }

  stop(): void {
    this.#started = false;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#due = Infinity;
  }

  /** Asks for a sync: now if the last one started minInterval ago, else when it has. */
  run(): void {
    this.#requested = true;
    if (this.#started) this.#schedule(this.#lastStart + this.#opts.minIntervalMs);
  }

  /** Syncs now, ignoring minInterval (after any sync in progress); resolves when done. */
  async runNow(): Promise<void> {
    while (this.#running !== null) await this.#running;
    this.#requested = true;
    await this.#fire();
  }

  #schedule(at: number): void {
    if (!this.#started) return;
    const now = performance.now();
    const when = Math.max(at, now);
    if (this.#timer !== null && this.#due <= when) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#due = when;
    // A timer even for "now": requests made in the same tick share one sync.
    this.#timer = setTimeout(() => void this.#fire(), when - now);
    this.#timer.unref();
  }

  async #fire(): Promise<void> {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#due = Infinity;
    if (this.#running !== null) return; // the running sync reschedules when it ends
    const periodic = !this.#requested;
    this.#requested = false;
    this.#lastStart = performance.now();
    this.#syncs++;
    let retryAt = Infinity;
    this.#running = (async () => {
      try {
        await this.#opts.sync(periodic);
      } catch (err) {
        this.#opts.onError(err as Error);
        this.#requested = true;
        retryAt = performance.now() + this.#opts.retryIntervalMs;
      }
    })();
    await this.#running;
    this.#running = null;
    if (this.#requested) this.#schedule(retryAt !== Infinity ? retryAt : this.#lastStart + this.#opts.minIntervalMs);
    this.#schedule(this.#lastStart + this.#opts.maxIntervalMs);
  }
}

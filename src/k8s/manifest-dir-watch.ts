// When a manifest directory (manifest-dir.ts) is scanned: files are re-read on fs.watch
// events (coalesced) and on a periodic rescan, because fs.watch misses events on some
// filesystems (NFS, some bind mounts). A watch event names the one file to check again;
// the periodic fallback checks every file, but only when the directory itself changed
// or after enough quiet ticks. Scans run one at a time, and concurrent requests share
// one queued scan; the scan itself (reading the files) is the owner's.
import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';

/**
 * The periodic fallback (for watch events the kernel dropped) stats every file only
 * when the directory itself changed (a file added, removed or renamed over: how the
 * lab writes) or every this many quiet ticks; with 20,000 files a full stat pass costs
 * seconds of the agent's only thread, which forwards packets too.
 */
const FULL_RESCAN_EVERY_TICKS = 15;

export interface ManifestDirWatchOptions {
  /** Full rescan period, the fallback when fs.watch misses an event. Default 2000 ms. */
  rescanIntervalMs?: number;
  /** Watch events within this window are read together. Default 50 ms. */
  debounceMs?: number;
}

/**
 * One scan: `full` re-checks every file; otherwise only new files and those in
 * `forced`, the names a watch event gave (read even when their stat looks unchanged).
 */
export type ManifestDirScan = (full: boolean, forced: ReadonlySet<string>) => Promise<void>;

export class ManifestDirWatch {
  readonly #dir: string;
  readonly #opts: ManifestDirWatchOptions;
  readonly #scan: ManifestDirScan;
  readonly #fail: (err: Error) => void;
  readonly #forced = new Set<string>();
  #watcher: FSWatcher | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #queued: Promise<void> | null = null;
  #chain: Promise<void> = Promise.resolve();
  #stopped = false;
  /** Set by rescan(): the next scan reads every file, not only new and watched ones. */
  #wantFull = true;
  /** The directory's (inode, mtime, ctime) at the start of the last full scan. */
  #dirKey = '';
  #quietTicks = 0;

  constructor(dir: string, opts: ManifestDirWatchOptions, scan: ManifestDirScan, fail: (err: Error) => void) {
    this.#dir = dir;
    this.#opts = opts;
    this.#scan = scan;
    this.#fail = fail;
  }

  get stopped(): boolean { return this.#stopped; }

  /** Starts the periodic fallback (and re-watches the directory when its watch failed). */
  startRescans(): void {
    this.#interval = setInterval(() => {
      if (this.#watcher === null) this.watch();
      this.#dirChanged().then((changed) => {
        if (!changed && ++this.#quietTicks < FULL_RESCAN_EVERY_TICKS) return undefined;
        this.#quietTicks = 0;
        return this.rescan();
      }).catch((err: Error) => this.#fail(err));
    }, this.#opts.rescanIntervalMs ?? 2000);
    this.#interval.unref();
  }

  stop(): void {
    this.#stopped = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    if (this.#interval !== null) clearInterval(this.#interval);
    this.#debounce = this.#interval = null;
  }

  async #dirChanged(): Promise<boolean> {
    try {
      const st = await stat(this.#dir);
      return `${st.ino}:${st.mtimeMs}:${st.ctimeMs}` !== this.#dirKey;
    } catch {
      return true;
    }
  }

  /**
   * Scans the directory now; concurrent calls share one queued scan. `full` (default)
   * re-checks every file; otherwise only new files and those a watch event named.
   */
  rescan(full = true): Promise<void> {
    if (full) this.#wantFull = true;
    if (this.#queued !== null) return this.#queued;
    const scan = this.#chain.then(() => {
      this.#queued = null;
      return this.#scanOnce();
    });
    this.#queued = scan;
    this.#chain = scan.catch(() => undefined);
    return scan;
  }

  watch(): void {
    if (this.#stopped) return;
    try {
      this.#watcher = watch(this.#dir, (_event, filename) => {
        this.recheck(filename === null ? '' : filename.toString());
      });
      this.#watcher.on('error', () => {
        // The directory was removed or replaced; the periodic rescan re-watches it.
        this.#watcher?.close();
        this.#watcher = null;
      });
    } catch {
      this.#watcher = null;
    }
  }

  /** Re-reads one file after the debounce window. */
  recheck(name: string): void {
    // An event without a file name could be about any file: check them all.
    if (name === '') this.#wantFull = true;
    else this.#forced.add(name);
    if (this.#debounce !== null || this.#stopped) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.rescan(false).catch((err: Error) => this.#fail(err));
    }, this.#opts.debounceMs ?? 50);
  }

  async #scanOnce(): Promise<void> {
    if (this.#stopped) return;
    const forced = new Set(this.#forced);
    this.#forced.clear();
    const full = this.#wantFull;
    this.#wantFull = false;
    if (full) {
      try {
        const st = await stat(this.#dir);
        this.#dirKey = `${st.ino}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch { /* reported by the scan's readdir */ }
    }
    return this.#scan(full, forced);
  }
}

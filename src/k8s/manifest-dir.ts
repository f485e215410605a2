// A directory of manifest files as an ObjectSource (object-source.ts), the way an
// informer is one in kube-proxy: it lists the objects once ("synced", every kind at
// once), then reports each change as {previous, current}. Files are re-read on fs.watch events (coalesced) and on a periodic
// rescan, because fs.watch misses events on some filesystems (NFS, some bind mounts).
//
// A file that fails validation is reported and its previous objects stay in force (the
// last good state), so a half-written or mistyped file never takes services down.
// Only `.yaml`, `.yml` and `.json` files directly in the directory are read (like
// `kubectl apply -f DIR` without -R); names starting with "." (editor swap files) are not.
// Resource versions are the directory's own: a counter that moves whenever an object's
// text (or its place in its file) changes, so an unchanged object keeps its version
// and its identity across re-reads.
import { watch, type FSWatcher } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseManifest, textDigest, type ManifestMemo } from './manifest.ts';
import { TapirError } from '../errors/tapir-error.ts';
import type { ObjectHandler, ObjectSource } from './object-source.ts';
import { describeOrigin, Kind, objectKey, originText, type K8sObject } from './objects.ts';

export interface ManifestDirOptions {
  dir: string;
  /** Full rescan period, the fallback when fs.watch misses an event. Default 2000 ms. */
  rescanIntervalMs?: number;
  /** Watch events within this window are read together. Default 50 ms. */
  debounceMs?: number;
}

export class ManifestDirError extends TapirError {
  readonly code = 'TAPIR_MANIFEST_DIR';
  constructor(message: string) {
    super(message);
    this.name = 'ManifestDirError';
  }
}

interface FileState {
  /** inode, size and mtime: a change means the file must be re-read. */
  statKey: string;
  /** textDigest of the text last read ('' when none could be). */
  textDigest: string;
  /** The last good objects. */
  objects: K8sObject[];
  /** Problems of the current text (objects are then from an earlier text). */
  parseProblems: string[];
  /** Problems of duplicates across files. */
  duplicateProblems: string[];
  /** What onProblems last said for this file, joined. */
  reported: string;
  /** The file read empty once; a second empty read confirms it (see #readFile). */
  emptyOnce: boolean;
  /** Its documents' texts and objects at the last good parse: a re-read parses only the changed ones. */
  memo: ManifestMemo | undefined;
}

const MANIFEST_NAME = /^[^.].*\.(ya?ml|json)$/;
/**
 * The periodic fallback (for watch events the kernel dropped) stats every file only
 * when the directory itself changed (a file added, removed or renamed over: how the
 * lab writes) or every this many quiet ticks; with 20,000 files a full stat pass costs
 * seconds of the agent's only thread, which forwards packets too.
 */
const FULL_RESCAN_EVERY_TICKS = 15;

/** A manifest file may hold any kind Tapir reads. */
const KINDS: readonly Kind[] = Object.freeze(Object.values(Kind));

export class ManifestDir implements ObjectSource {
  readonly dir: string;
  readonly kinds = KINDS;
  readonly #opts: ManifestDirOptions;
  readonly #handlers = new Set<ObjectHandler>();
  readonly #files = new Map<string, FileState>();
  #view = new Map<string, K8sObject>();
  readonly #forced = new Set<string>();
  #watcher: FSWatcher | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #interval: NodeJS.Timeout | null = null;
  #queued: Promise<void> | null = null;
  #chain: Promise<void> = Promise.resolve();
  #synced = false;
  #stopped = false;
  #dirProblem = '';
  /** Set by rescan(): the next scan reads every file, not only new and watched ones. */
  #wantFull = true;
  /** The directory's (inode, mtime, ctime) at the start of the last full scan. */
  #dirKey = '';
  #quietTicks = 0;
  /** The last resource version handed out. */
  #version = 0;
  /** Files read again since the last publish, with their objects before (see #publishTouched). */
  #touched = new Map<string, readonly K8sObject[]>();
  /** A file appeared or went away since the last publish: the next one merges every file. */
  #structural = true;
  /** Objects ignored as defined twice, at the last whole merge. */
  #duplicates = 0;
  #started: Promise<void> | null = null;

  constructor(opts: ManifestDirOptions) {
    this.dir = opts.dir;
    this.#opts = opts;
  }

  get synced(): boolean { return this.#synced; }

  hasSynced(_kind: Kind): boolean { return this.#synced; }

  watch(handler: ObjectHandler): () => void {
    for (const current of this.#view.values()) handler.onChange({ previous: undefined, current });
    for (const [file, state] of this.#files) if (state.reported !== '') handler.onProblems(file, [...state.parseProblems, ...state.duplicateProblems]);
    if (this.#synced) for (const kind of KINDS) handler.onSynced(kind);
    this.#handlers.add(handler);
    return () => { this.#handlers.delete(handler); };
  }

  /** Reads the directory once (then reports synced) and starts watching. */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    try {
      if (!(await stat(this.dir)).isDirectory()) throw new ManifestDirError(`${this.dir}: not a directory`);
    } catch (err) {
      if (err instanceof ManifestDirError) throw err;
      throw new ManifestDirError(`${this.dir}: cannot read the manifest directory: ${(err as Error).message}`);
    }
    this.#watch();
    await this.rescan();
    if (this.#stopped) return;
    this.#synced = true;
    for (const handler of this.#handlers) for (const kind of KINDS) handler.onSynced(kind);
    this.#interval = setInterval(() => {
      if (this.#watcher === null) this.#watch();
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

  /** The current objects (last good state of every file). */
  list(): K8sObject[] {
    return [...this.#view.values()];
  }

  /** Files with problems now, and their problems. */
  problems(): Map<string, readonly string[]> {
    const out = new Map<string, readonly string[]>();
    for (const [file, state] of this.#files) {
      const list = [...state.parseProblems, ...state.duplicateProblems];
      if (list.length > 0) out.set(file, list);
    }
    if (this.#dirProblem !== '') out.set(this.dir, [this.#dirProblem]);
    return out;
  }

  async #dirChanged(): Promise<boolean> {
    try {
      const st = await stat(this.dir);
      return `${st.ino}:${st.mtimeMs}:${st.ctimeMs}` !== this.#dirKey;
    } catch {
      return true;
    }
  }

  resync(): Promise<void> {
    return this.rescan();
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

  #fail(err: Error): void {
    for (const handler of this.#handlers) handler.onError(err);
  }

  #problems(file: string, problems: readonly string[]): void {
    for (const handler of this.#handlers) handler.onProblems(file, problems);
  }

  #watch(): void {
    if (this.#stopped) return;
    try {
      this.#watcher = watch(this.dir, (_event, filename) => {
        this.#recheck(filename === null ? '' : filename.toString());
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
  #recheck(name: string): void {
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
        const st = await stat(this.dir);
        this.#dirKey = `${st.ino}:${st.mtimeMs}:${st.ctimeMs}`;
      } catch { /* reported by readdir below */ }
    }
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => MANIFEST_NAME.test(n)).sort();
    } catch (err) {
      // Keep everything: a directory that vanished is far more likely a mistake than
      // a wish to delete every service.
      const problem = `${this.dir}: cannot read the manifest directory (keeping the last state): ${(err as Error).message}`;
      if (problem !== this.#dirProblem) {
        this.#dirProblem = problem;
        this.#problems(this.dir, [problem]);
      }
      return;
    }
    if (this.#dirProblem !== '') {
      this.#dirProblem = '';
      this.#problems(this.dir, []);
    }
    const present = new Set(names);
    for (const name of [...this.#files.keys()]) {
      if (!present.has(name)) this.#dropFile(name);
    }
    for (const name of names) {
      if (full || forced.has(name) || !this.#files.has(name)) await this.#readFile(name, forced.has(name));
    }
    if (this.#stopped) return;
    this.#publish();
  }

  #dropFile(name: string): void {
    const state = this.#files.get(name);
    this.#files.delete(name);
    this.#structural = true;
    if (state !== undefined && state.reported !== '') this.#problems(name, []);
  }

  async #readFile(name: string, forced: boolean): Promise<void> {
    const path = join(this.dir, name);
    let statKey: string;
    let text: string;
    try {
      const st = await stat(path);
      if (!st.isFile()) return;
      statKey = `${st.ino}:${st.size}:${st.mtimeMs}`;
      const state = this.#files.get(name);
      if (state !== undefined && state.statKey === statKey && !forced) return;
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.#dropFile(name);
      else this.#setParsed(name, '', '', null, [`${name}: cannot read the file: ${(err as Error).message}`]);
      return;
    }
    const state = this.#files.get(name);
    const digest = textDigest(text);
    if (state !== undefined && state.textDigest === digest) {
      state.statKey = statKey;
      return;
    }
    // writeFile truncates before it writes: a read in between sees an empty file, which
    // would delete every object of it. Believe an emptied file only on a second look
    // (writers that rename a finished file into place never show this state).
    if (state !== undefined && state.objects.length > 0 && !state.emptyOnce && !/\S/.test(text)) {
      state.emptyOnce = true;
      this.#recheck(name);
      return;
    }
    if (state !== undefined) state.emptyOnce = false;
    const parsed = parseManifest(text, name, state?.memo);
    this.#setParsed(name, statKey, digest, parsed.problems.length === 0 ? parsed.objects : null, parsed.problems, parsed.memo);
  }

  /** objects null = the text was bad: keep the last good objects. */
  #setParsed(name: string, statKey: string, textDigest: string, objects: K8sObject[] | null, problems: string[], memo?: ManifestMemo): void {
    const known = this.#files.get(name);
    if (known === undefined) this.#structural = true;
    else if (!this.#touched.has(name)) this.#touched.set(name, known.objects);
    const state = known ?? { statKey, textDigest, objects: [], parseProblems: [], duplicateProblems: [], reported: '', emptyOnce: false, memo: undefined };
    state.statKey = statKey;
    state.textDigest = textDigest;
    if (objects !== null) {
      state.objects = this.#versioned(state.objects, objects);
      // The memo must hold the objects as versioned (an unchanged one is its earlier self).
      if (memo !== undefined) {
        const final = new Map(objects.map((obj, i) => [obj, state.objects[i]!]));
        memo.objects = memo.objects.map((list) => list.map((obj) => final.get(obj) ?? obj));
      }
      state.memo = memo;
    }
    state.parseProblems = problems;
    this.#files.set(name, state);
  }

  /**
   * Freshly parsed objects of a file with their resource versions: an object equal to
   * its earlier version in the file (apart from the version) is that earlier object;
   * every other one gets the next version number.
   */
  #versioned(before: readonly K8sObject[], parsed: K8sObject[]): K8sObject[] {
    const earlier = new Map(before.map((obj) => [objectKey(obj), obj]));
    return parsed.map((obj) => {
      const old = earlier.get(objectKey(obj));
      // Kept from the memo: the document's text did not change.
      if (old === obj) return old;
      if (old !== undefined) {
        obj.metadata.resourceVersion = old.metadata.resourceVersion;
        if (JSON.stringify(old) === JSON.stringify(obj)) return old;
      }
      obj.metadata.resourceVersion = String(++this.#version);
      return obj;
    });
  }

  /** Merges all files (in name order; the first definition of an object wins) and reports the differences. */
  #publish(): void {
    const touched = this.#touched;
    const structural = this.#structural;
    this.#touched = new Map();
    this.#structural = false;
    if (!structural && this.#duplicates === 0 && this.#publishTouched(touched)) return;
    this.#duplicates = 0;
    const view = new Map<string, K8sObject>();
    for (const [name, state] of [...this.#files].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      state.duplicateProblems = [];
      for (const obj of state.objects) {
        const key = objectKey(obj);
        const first = view.get(key);
        if (first !== undefined) {
          state.duplicateProblems.push(`${describeOrigin(obj)}: ignored: the same object is defined in ${originText(first.origin).replace(':', '')}`);
          this.#duplicates++;
          continue;
        }
        view.set(key, obj);
      }
      const problems = [...state.parseProblems, ...state.duplicateProblems];
      const joined = problems.join('\n');
      if (joined !== state.reported) {
        state.reported = joined;
        this.#problems(name, problems);
      }
    }
    const old = this.#view;
    this.#view = view;
    for (const [key, current] of view) {
      const previous = old.get(key);
      if (previous === current) continue;
      for (const handler of this.#handlers) handler.onChange({ previous, current });
    }
    for (const [key, previous] of old) {
      if (!view.has(key)) for (const handler of this.#handlers) handler.onChange({ previous, current: undefined });
    }
  }

  /**
   * The whole merge's outcome without merging every file (20,000 objects at 10k
   * Services, per edit): when no object is defined twice anywhere and every file read
   * again still defines the same objects in the same order, each of its objects is the
   * one in the view under its key, so only those that changed are swapped in and
   * reported. False (nothing done) when that does not hold: the caller merges whole.
   */
  #publishTouched(touched: ReadonlyMap<string, readonly K8sObject[]>): boolean {
    for (const [name, before] of touched) {
      const state = this.#files.get(name);
      if (state === undefined || state.objects.length !== before.length) return false;
      for (let i = 0; i < before.length; i++) if (state.objects[i] !== before[i] && objectKey(state.objects[i]!) !== objectKey(before[i]!)) return false;
    }
    for (const [name] of touched) {
      const state = this.#files.get(name)!;
      const problems = [...state.parseProblems, ...state.duplicateProblems];
      const joined = problems.join('\n');
      if (joined !== state.reported) {
        state.reported = joined;
        this.#problems(name, problems);
      }
      for (const current of state.objects) {
        const key = objectKey(current);
        const previous = this.#view.get(key);
        if (previous === current) continue;
        this.#view.set(key, current);
        for (const handler of this.#handlers) handler.onChange({ previous, current });
      }
    }
    return true;
  }
}


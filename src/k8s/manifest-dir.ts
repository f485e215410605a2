// A directory of manifest files as an ObjectSource (object-source.ts), the way an
// informer is one in kube-proxy: it lists the objects once ("synced", every kind at
// once), then reports each change as {previous, current}.
//
// A file that fails validation is reported and its previous objects stay in force (the
// last good state), so a half-written or mistyped file never takes services down.
// Only `.yaml`, `.yml` and `.json` files directly in the directory are read (like
// `kubectl apply -f DIR` without -R); names starting with "." (editor swap files) are not.
// This file is the scan of the directory and the merge of its files into one view of
// objects; when to scan (fs.watch, the periodic rescan) is manifest-dir-watch.ts, and
// each file's record (its last good objects, problems, resource versions) is
// manifest-files.ts.
import { readdir, stat } from 'node:fs/promises';
import { TapirError } from '../errors/tapir-error.ts';
import { ManifestDirWatch, type ManifestDirWatchOptions } from './manifest-dir-watch.ts';
import { ManifestFiles } from './manifest-files.ts';
import type { ObjectHandler, ObjectSource } from './object-source.ts';
import { describeOrigin, Kind, objectKey, originText, type K8sObject } from './objects.ts';

export interface ManifestDirOptions extends ManifestDirWatchOptions {
  dir: string;
}

export class ManifestDirError extends TapirError {
  readonly code = 'TAPIR_MANIFEST_DIR';
  constructor(message: string) {
    super(message);
    this.name = 'ManifestDirError';
  }
}

const MANIFEST_NAME = /^[^.].*\.(ya?ml|json)$/;

/** A manifest file may hold any kind Tapir reads. */
const KINDS: readonly Kind[] = Object.freeze(Object.values(Kind));

export class ManifestDir implements ObjectSource {
  readonly dir: string;
  readonly kinds = KINDS;
  readonly #handlers = new Set<ObjectHandler>();
  readonly #files: ManifestFiles;
  readonly #dirWatch: ManifestDirWatch;
  #view = new Map<string, K8sObject>();
  #synced = false;
  #dirProblem = '';
  /** Objects ignored as defined twice, at the last whole merge. */
  #duplicates = 0;
  #started: Promise<void> | null = null;

  constructor(opts: ManifestDirOptions) {
    this.dir = opts.dir;
    this.#dirWatch = new ManifestDirWatch(opts.dir, opts, (full, forced) => this.#scanOnce(full, forced), (err) => this.#fail(err));
    this.#files = new ManifestFiles(opts.dir, (file, problems) => this.#problems(file, problems), (name) => this.#dirWatch.recheck(name));
  }

  get synced(): boolean { return this.#synced; }

  hasSynced(_kind: Kind): boolean { return this.#synced; }

  watch(handler: ObjectHandler): () => void {
    for (const current of this.#view.values()) handler.onChange({ previous: undefined, current });
    for (const [file, state] of this.#files.states) if (state.reported !== '') handler.onProblems(file, [...state.parseProblems, ...state.duplicateProblems]);
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
    this.#dirWatch.watch();
    await this.rescan();
    if (this.#dirWatch.stopped) return;
    this.#synced = true;
    for (const handler of this.#handlers) for (const kind of KINDS) handler.onSynced(kind);
    this.#dirWatch.startRescans();
  }

  stop(): void {
    this.#dirWatch.stop();
  }

  /** The current objects (last good state of every file). */
  list(): K8sObject[] {
    return [...this.#view.values()];
  }

  /** Files with problems now, and their problems. */
  problems(): Map<string, readonly string[]> {
    const out = new Map<string, readonly string[]>();
    for (const [file, state] of this.#files.states) {
      const list = [...state.parseProblems, ...state.duplicateProblems];
      if (list.length > 0) out.set(file, list);
    }
    if (this.#dirProblem !== '') out.set(this.dir, [this.#dirProblem]);
    return out;
  }

  resync(): Promise<void> {
    return this.rescan();
  }

  /**
   * Scans the directory now; concurrent calls share one queued scan. `full` (default)
   * re-checks every file; otherwise only new files and those a watch event named.
   */
  rescan(full = true): Promise<void> {
    return this.#dirWatch.rescan(full);
  }

  #fail(err: Error): void {
    for (const handler of this.#handlers) handler.onError(err);
  }

  #problems(file: string, problems: readonly string[]): void {
    for (const handler of this.#handlers) handler.onProblems(file, problems);
  }

  /** One scan (ManifestDirWatch runs them one at a time): `full` or only new files and `forced`. */
  async #scanOnce(full: boolean, forced: ReadonlySet<string>): Promise<void> {
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
    for (const name of [...this.#files.states.keys()]) {
      if (!present.has(name)) this.#files.dropFile(name);
    }
    for (const name of names) {
      if (full || forced.has(name) || !this.#files.states.has(name)) await this.#files.readFile(name, forced.has(name));
    }
    if (this.#dirWatch.stopped) return;
    this.#publish();
  }

  /** Merges all files (in name order; the first definition of an object wins) and reports the differences. */
  #publish(): void {
    const touched = this.#files.touched;
    const structural = this.#files.structural;
    this.#files.touched = new Map();
    this.#files.structural = false;
    if (!structural && this.#duplicates === 0 && this.#publishTouched(touched)) return;
    this.#duplicates = 0;
    const view = new Map<string, K8sObject>();
    for (const [name, state] of [...this.#files.states].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
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
      const state = this.#files.states.get(name);
      if (state === undefined || state.objects.length !== before.length) return false;
      for (let i = 0; i < before.length; i++) if (state.objects[i] !== before[i] && objectKey(state.objects[i]!) !== objectKey(before[i]!)) return false;
    }
    for (const [name] of touched) {
      const state = this.#files.states.get(name)!;
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


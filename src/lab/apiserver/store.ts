// The lab API server's state: every object in memory, one global resourceVersion counter
// (etcd's revision), a bounded history of changes for watches to resume from, and an
// append-only journal on disk that a restarted server replays. A test double: no
// transactions beyond "one change at a time" (Node runs each request handler to its end
// between awaits, and nothing here awaits), no consistency across list pages.
//
// Journal: one JSON line per change, {"rv":N,"res":"pods","op":"put","object":{...}}
// or {"rv":N,"res":"pods","op":"delete","namespace":"default","name":"web"}; a start
// rewrites it as one put per live object and the version counter. A restart
// keeps objects and versions but not the history: a watch that resumes from before the
// restart is answered 410 Gone, as a compacted etcd would.
import { closeSync, existsSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import type { Raw } from '../../config/fields.ts';
import { ApiError, LabApiServerError } from './status.ts';

/** A stored object: a JSON mapping with metadata.name (and namespace for namespaced kinds). */
export type Obj = Raw & { metadata: Raw };

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Change {
  type: EventType;
  /** The store's resource key ("pods", "endpointslices.discovery.k8s.io"). */
  res: string;
  rv: number;
  object: Obj;
  /** The object before a MODIFIED; undefined otherwise. */
  previous: Obj | undefined;
}

/** Receives the changes of one resource; the HTTP layer turns them into watch events. */
export interface Watcher {
  res: string;
  deliver(change: Change): void;
  /** Ends the watch from the server's side (fault injection, shutdown). */
  close(): void;
  /** Stops sending anything while keeping the connection open (fault injection). */
  stall(): void;
}

/** How many changes watches can resume from; older ones are compacted, as etcd does every 5 min. */
const HISTORY_LIMIT = 10_000;

export class Store {
  /** By resource key, then "namespace/name" ('' namespace for cluster-scoped objects). */
  private readonly objects = new Map<string, Map<string, Obj>>();
  private readonly history: Change[] = [];
  /** Changes up to and including this version are gone: a watch from before it gets 410. */
  private compactedRV = 0;
  private rv = 0;
  private readonly watchers = new Set<Watcher>();
  /** The journal, opened once for appending (-1: in memory only, or closed). */
  private journalFd = -1;

  /** Replays `journal` when it exists; undefined keeps the state in memory only (unit tests). */
  constructor(journal?: string) {
    if (journal !== undefined && existsSync(journal)) {
      this.replay(journal);
      this.rewrite(journal);
    }
    if (journal !== undefined) this.journalFd = openSync(journal, 'a');
    this.compactedRV = this.rv;
  }

  /** Closes the journal; later changes stay in memory only. */
  close(): void {
    if (this.journalFd >= 0) closeSync(this.journalFd);
    this.journalFd = -1;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  get oldestResumableRV(): number {
    return this.compactedRV;
  }

  get(res: string, namespace: string, name: string): Obj | undefined {
    return this.objects.get(res)?.get(`${namespace}/${name}`);
  }

  /** Every object of `res` (in one namespace if given), sorted by namespace/name as etcd keys are. */
  list(res: string, namespace?: string): Obj[] {
    const all = this.objects.get(res);
    if (all === undefined) return [];
    const keys = [...all.keys()].sort();
    const out: Obj[] = [];
    for (const key of keys) {
      const obj = all.get(key)!;
      if (namespace === undefined || namespace === '' || obj.metadata.namespace === namespace) out.push(obj);
    }
    return out;
  }

  /** Stores `object` (created or replaced) with the next resourceVersion and tells the watches. */
  put(res: string, object: Obj): Obj {
    const rv = ++this.rv;
    const stored = { ...object, metadata: { ...object.metadata, resourceVersion: String(rv) } } as Obj;
    const key = keyOf(stored);
    const all = this.objects.get(res) ?? new Map<string, Obj>();
    this.objects.set(res, all);
    const previous = all.get(key);
    all.set(key, stored);
    this.append({ rv, res, op: 'put', object: stored });
    this.emit({ type: previous === undefined ? 'ADDED' : 'MODIFIED', res, rv, object: stored, previous });
    return stored;
  }

  /** Removes an object; the DELETED event carries it with a new resourceVersion, as the API's does. */
  remove(res: string, namespace: string, name: string): Obj {
    const all = this.objects.get(res);
    const existing = all?.get(`${namespace}/${name}`);
    if (all === undefined || existing === undefined) throw ApiError.notFound(res, name);
    const rv = ++this.rv;
    all.delete(`${namespace}/${name}`);
    const object = { ...existing, metadata: { ...existing.metadata, resourceVersion: String(rv) } } as Obj;
    this.append({ rv, res, op: 'delete', namespace, name });
    this.emit({ type: 'DELETED', res, rv, object, previous: undefined });
    return object;
  }

  /** The changes of `res` after `rv`, or undefined when some of them are compacted (410 Gone). */
  changesSince(res: string, rv: number): Change[] | undefined {
    if (rv < this.compactedRV) return undefined;
    return this.history.filter((c) => c.rv > rv && c.res === res);
  }

  addWatcher(w: Watcher): void {
    this.watchers.add(w);
  }

  removeWatcher(w: Watcher): void {
    this.watchers.delete(w);
  }

  /** Fault injection and shutdown. */
  closeWatches(): number {
    const all = [...this.watchers];
    for (const w of all) w.close();
    return all.length;
  }

  stallWatches(): number {
    for (const w of this.watchers) w.stall();
    return this.watchers.size;
  }

  /** Forgets the history: every watch that resumes from an older version gets 410 Gone. */
  compact(): void {
    this.history.length = 0;
    this.compactedRV = this.rv;
  }

  private emit(change: Change): void {
    this.history.push(change);
    if (this.history.length > HISTORY_LIMIT) {
      const dropped = this.history.splice(0, this.history.length - HISTORY_LIMIT);
      this.compactedRV = dropped[dropped.length - 1]!.rv;
    }
    for (const w of this.watchers) if (w.res === change.res) w.deliver(change);
  }

  private append(entry: Raw): void {
    // One write per change, no fsync: the journal outlives a crash of the server, not of the machine.
    if (this.journalFd >= 0) writeSync(this.journalFd, `${JSON.stringify(entry)}\n`);
  }

  /**
   * Replaces the journal with one put per live object (atomically: a new file renamed
   * over the old), so it grows with the changes of one run, not of every run before.
   */
  private rewrite(path: string): void {
    const lines: string[] = [];
    for (const [res, all] of this.objects) {
      for (const object of all.values()) lines.push(JSON.stringify({ rv: Number(object.metadata.resourceVersion), res, op: 'put', object }));
    }
    // The counter survives even when the newest change was a delete.
    lines.push(JSON.stringify({ rv: this.rv, res: '', op: 'version' }));
    writeFileSync(`${path}.tmp`, `${lines.join('\n')}\n`);
    renameSync(`${path}.tmp`, path);
  }

  private replay(path: string): void {
    const lines = readFileSync(path, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      if (line === '') continue;
      let entry: Raw;
      try {
        entry = JSON.parse(line) as Raw;
      } catch (err) {
        // A crash can cut the last line short; anything earlier is damage to report.
        if (i >= lines.length - 2) break;
        throw new LabApiServerError(`${path}: line ${i + 1}: not JSON (${(err as Error).message}); remove the file to start empty`);
      }
      this.rv = Math.max(this.rv, Number(entry.rv));
      if (entry.op === 'version') continue;
      const res = String(entry.res);
      const all = this.objects.get(res) ?? new Map<string, Obj>();
      this.objects.set(res, all);
      if (entry.op === 'put') {
        const object = entry.object as Obj;
        all.set(keyOf(object), object);
      } else {
        all.delete(`${String(entry.namespace)}/${String(entry.name)}`);
      }
    }
  }
}

function keyOf(obj: Obj): string {
  return `${typeof obj.metadata.namespace === 'string' ? obj.metadata.namespace : ''}/${String(obj.metadata.name)}`;
}

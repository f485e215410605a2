// One kind's reflector for KubernetesSource (api-source.ts): list (page by page), then
// watch from the list's resourceVersion, built to survive what the JavaScript client's
// informers do not: any error ends a watch there (client-node #1496), watches stall
// without a word (#364, #596, #958), and 2.0 aborts quiet watches after 30 s (#3020). So here:
//   - every watch has a watchdog (no byte for `watchIdleMs`, bookmarks included: it is
//     stalled, dropped and restarted) and asks the server to end it after a random
//     60-120 s, so that a healthy stream is renewed well before the watchdog bites;
//   - any failure restarts the watch from the last resourceVersion after a jittered,
//     doubling back-off (0.5 s to 30 s), counted in `restarts`;
//   - 410 Gone (a compacted version: a watch's ERROR event, or a list's continue token
//     that expired) relists; a relist reports the objects that vanished meanwhile as
//     deletes, and everything it found in one synchronous burst, so a consumer that
//     coalesces (ServiceController) never compiles half a relist;
//   - a kind is synced after its first complete list, and nothing is reported of it
//     before (kube-proxy publishes nothing before Services and EndpointSlices synced).
// An object that fails Tapir's validation is reported with onProblems and its last good
// version stays in force, as for a bad manifest file.
// What it finds goes out through an Emitter; the source fans it out to its handlers.
import { flat } from '../config/compact.ts';
import { TapirError } from '../errors/tapir-error.ts';
import { KUBE_CONFIG_ERROR, KubeApiError, type KubeApi, type WatchEvent, type WatchHandle } from './kube-api.ts';
import type { K8sObject, Kind, Origin } from './objects.ts';
import { KINDS, validateDocument } from './validate.ts';

export interface KindWatch {
  kind: Kind;
  /** A label selector for list and watch ('' = every object). */
  labelSelector?: string;
  /** A field selector, e.g. `metadata.name=node-1`. */
  fieldSelector?: string;
}

/** The source could not list a kind at all on start (unreachable, unauthorized, forbidden). */
export class KubernetesSourceError extends TapirError {
  readonly code = 'TAPIR_KUBERNETES_SOURCE';
}

/** What the reflectors did, for metrics and `tapir stats`. */
export interface ReflectorStats {
  kind: Kind;
  synced: boolean;
  objects: number;
  resourceVersion: string;
  /** Watches restarted after an error or a stall. */
  restarts: number;
  /** Full lists after the first (410 Gone, resync). */
  relists: number;
  lastError: string;
}

const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A watch that ran this long without failing resets the back-off. */
const HEALTHY_WATCH_MS = 10_000;

export interface Emitter {
  reachable(kind: Kind, ok: boolean): void;
  change(previous: K8sObject | undefined, current: K8sObject | undefined): void;
  synced(kind: Kind): void;
  problems(input: string, problems: readonly string[]): void;
  error(err: Error): void;
}

export class Reflector {
  readonly kind: Kind;
  synced = false;
  readonly #api: KubeApi;
  readonly #watchSpec: KindWatch;
  readonly #emit: Emitter;
  readonly #log: (m: string) => void;
  readonly #onRestart: (kind: Kind, reason: 'error' | 'stalled' | 'gone') => void;
  readonly #idleMs: number;
  readonly #pageSize: number;
  readonly #origin: Origin;
  /** The last good object by "namespace/name". */
  readonly #objects = new Map<string, K8sObject>();
  /** Objects whose current version fails validation, by key (their problems were reported). */
  readonly #invalid = new Set<string>();
  #rv = '';
  #watch: WatchHandle | null = null;
  #stopped = false;
  #backoffMs = FIRST_BACKOFF_MS;
  #restarts = 0;
  #relists = 0;
  #lastError = '';
  #wake: (() => void) | null = null;
  #relistWanted = false;

  constructor(api: KubeApi, spec: KindWatch, emit: Emitter, log: (m: string) => void,
    onRestart: (kind: Kind, reason: 'error' | 'stalled' | 'gone') => void, idleMs: number, pageSize: number) {
    this.#api = api;
    this.kind = spec.kind;
    this.#watchSpec = spec;
    this.#emit = emit;
    this.#log = log;
    this.#onRestart = onRestart;
    this.#idleMs = idleMs;
    this.#pageSize = pageSize;
    this.#origin = { source: 'api', server: api.server };
  }

  objects(): IterableIterator<K8sObject> {
    return this.#objects.values();
  }

  stats(): ReflectorStats {
    return { kind: this.kind, synced: this.synced, objects: this.#objects.size, resourceVersion: this.#rv, restarts: this.#restarts, relists: this.#relists, lastError: this.#lastError };
  }

  /** The first list; resolves once synced. Retries what a retry can fix; then the watch loop runs on. */
  async start(): Promise<void> {
    for (;;) {
      try {
        await this.#list();
        break;
      } catch (err) {
        if (this.#stopped) return;
        const e = err as KubeApiError;
        if (e.status === 401 || e.status === 403 || e.status === 404 || e.status === KUBE_CONFIG_ERROR) {
          throw new KubernetesSourceError(`cannot list ${KINDS[this.kind].resource} from ${this.#api.server}: ${e.message}`, { cause: err });
        }
        this.#emit.reachable(this.kind, false);
        this.#note(`listing ${KINDS[this.kind].resource} failed (${e.message}); retrying`);
        await this.#sleepBackoff();
      }
    }
    void this.#loop();
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.abort();
    this.#wake?.();
  }

  /** Lists again now (resync); the watch goes on from the new version. */
  async relist(): Promise<void> {
    this.#relistWanted = true;
    this.#watch?.abort();
    await this.#list();
  }

  async #loop(): Promise<void> {
    let needList = false;
    while (!this.#stopped) {
      try {
        if (needList || this.#relistWanted) {
          needList = false;
          await this.#list();
        }
        const began = performance.now();
        await this.#watchOnce();
        if (performance.now() - began > HEALTHY_WATCH_MS) this.#backoffMs = FIRST_BACKOFF_MS;
      } catch (err) {
        if (this.#stopped) return;
        if (err instanceof KubeApiError && err.status === 410) {
          needList = true;
          this.#onRestart(this.kind, 'gone');
          this.#note(`${KINDS[this.kind].resource}: resourceVersion ${this.#rv} is gone (410); listing again`);
          continue;
        }
        this.#restarts++;
        this.#emit.reachable(this.kind, false);
        this.#onRestart(this.kind, err instanceof KubeApiError && err.reason === 'Stalled' ? 'stalled' : 'error');
        this.#note(`${KINDS[this.kind].resource}: watch failed (${(err as Error).message}); restarting it from resourceVersion ${this.#rv}`);
        await this.#sleepBackoff();
      }
    }
  }

  #note(message: string): void {
    this.#lastError = message;
    this.#log(message);
  }

  async #sleepBackoff(): Promise<void> {
    const ms = this.#backoffMs * (0.5 + Math.random()); // jitter: agents restarted together do not come back together
    this.#backoffMs = Math.min(this.#backoffMs * 2, MAX_BACKOFF_MS);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.#wake = () => { clearTimeout(t); resolve(); };
    });
    this.#wake = null;
  }

  #path(params: Record<string, string>): string {
    const info = KINDS[this.kind];
    const base = info.apiVersion.includes('/') ? `/apis/${info.apiVersion}` : `/api/${info.apiVersion}`;
    const q = new URLSearchParams();
    if (this.#watchSpec.labelSelector) q.set('labelSelector', this.#watchSpec.labelSelector);
    if (this.#watchSpec.fieldSelector) q.set('fieldSelector', this.#watchSpec.fieldSelector);
    for (const [k, v] of Object.entries(params)) if (v !== '') q.set(k, v);
    const query = q.toString();
    return `${base}/${info.resource}${query === '' ? '' : `?${query}`}`;
  }

  /** Lists every page, then applies the whole list at once (adds, changes, deletes of what vanished). */
  async #list(): Promise<void> {
    let items: unknown[] = [];
    let rv = '';
    let cont = '';
    do {
      let page: Record<string, unknown>;
      try {
        page = await this.#api.get(this.#path({ limit: String(this.#pageSize), continue: cont }));
      } catch (err) {
        if (err instanceof KubeApiError && err.status === 410 && cont !== '') {
          // The continue token expired between pages: the list starts over, whole.
          items = [];
          cont = '';
          continue;
        }
        throw err;
      }
      const meta = (page.metadata ?? {}) as { resourceVersion?: string; continue?: string };
      items.push(...(Array.isArray(page.items) ? page.items : []));
      rv = meta.resourceVersion ?? rv;
      cont = meta.continue ?? '';
    } while (cont !== '');
    if (this.#stopped) return;
    this.#emit.reachable(this.kind, true);
    if (this.synced) this.#relists++;
    this.#relistWanted = false;
    const seen = new Set<string>();
    const info = KINDS[this.kind];
    for (const raw of items) {
      const doc = { apiVersion: info.apiVersion, kind: this.kind, ...(raw as object) };
      const key = this.#apply(doc);
      if (key !== '') seen.add(key);
    }
    for (const [key, obj] of this.#objects) {
      if (seen.has(key)) continue;
      this.#objects.delete(key);
      this.#clearProblems(key);
      this.#emit.change(obj, undefined);
    }
    this.#rv = rv;
    if (!this.synced) {
      this.synced = true;
      this.#emit.synced(this.kind);
    }
  }

  /** Validates and records one object (list item or watch event); returns its key, '' if it has none. */
  #apply(doc: Record<string, unknown>): string {
    const key = objectKeyOf(doc);
    if (key === '') return '';
    const problems: string[] = [];
    const obj = validateDocument(doc, this.#origin, problems);
    if (obj === undefined) {
      this.#invalid.add(key);
      this.#emit.problems(this.#input(key), problems);
      return key; // its last good version (if any) stays
    }
    this.#clearProblems(key);
    const previous = this.#objects.get(key);
    if (previous !== undefined && previous.metadata.resourceVersion === obj.metadata.resourceVersion && obj.metadata.resourceVersion !== '') return key;
    this.#objects.set(key, obj);
    this.#emit.change(previous, obj);
    return key;
  }

  #input(key: string): string {
    return `${this.#api.server} ${this.kind} ${key.startsWith('/') ? key.slice(1) : key}`;
  }

  #clearProblems(key: string): void {
    if (this.#invalid.delete(key)) this.#emit.problems(this.#input(key), []);
  }

  /** One watch from #rv; resolves when the server ends it, rejects on failure (status 410: list again). */
  #watchOnce(): Promise<void> {
    // The server ends a healthy watch after 60-120 s; the watchdog is for the silent ones.
    const timeoutSeconds = 60 + Math.floor(Math.random() * 60);
    const path = this.#path({ resourceVersion: this.#rv, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) });
    return new Promise<void>((resolve, reject) => {
      let failed: Error | null = null;
      this.#watch = this.#api.watch(path, this.#idleMs, (e: WatchEvent) => {
        if (failed !== null) return;
        try {
          this.#event(e);
        } catch (err) {
          failed = err as Error;
          this.#watch?.abort();
        }
      }, (err) => {
        this.#watch = null;
        const e = failed ?? err;
        if (e === null) resolve();
        else reject(e);
      }, () => this.#emit.reachable(this.kind, true));
    });
  }

  #event(e: WatchEvent): void {
    const obj = e.object ?? {};
    if (e.type === 'ERROR') {
      const status = obj as { code?: number; reason?: string; message?: string };
      // The server's history no longer has our version: the loop lists again.
      if (status.code === 410 || status.reason === 'Expired' || status.reason === 'Gone') throw new KubeApiError(`watch: ${status.message ?? 'Gone'}`, 410, 'Expired');
      throw new KubeApiError(`watch error: ${status.code ?? '?'} ${status.reason ?? ''} ${status.message ?? ''}`.trim(), status.code ?? 0, status.reason ?? '');
    }
    const rv = ((obj.metadata ?? {}) as { resourceVersion?: string }).resourceVersion;
    if (e.type === 'BOOKMARK') {
      if (rv !== undefined) this.#rv = rv;
      return;
    }
    const info = KINDS[this.kind];
    const doc = { apiVersion: info.apiVersion, kind: this.kind, ...obj };
    if (e.type === 'DELETED') {
      const key = objectKeyOf(obj);
      const previous = this.#objects.get(key);
      this.#objects.delete(key);
      this.#clearProblems(key);
      if (previous !== undefined) this.#emit.change(previous, undefined);
    } else if (e.type === 'ADDED' || e.type === 'MODIFIED') {
      this.#apply(doc);
    }
    if (rv !== undefined) this.#rv = rv;
  }
}

/** "namespace/name" of an API object as listed or watched ("/name" cluster-scoped), '' without a name. */
function objectKeyOf(obj: Record<string, unknown>): string {
  const meta = (obj.metadata ?? {}) as { name?: string; namespace?: string };
  return meta.name === undefined ? '' : flat(`${meta.namespace ?? ''}/${meta.name}`);
}

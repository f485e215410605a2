// The Kubernetes API as an ObjectSource: a reflector per kind (reflector.ts: list, then
// watch from the list's resourceVersion, with a watchdog per watch, jittered back-off
// and a relist on 410 Gone), built to survive what the JavaScript client's informers
// do not. This file fans what the reflectors find out to the handlers, replays the
// kinds already synced to a handler that comes late (nothing is reported of a kind
// before its first complete list), and says when the API server stops answering:
// unreachable while any kind's last list or watch failed, reachable again when none's did.
import { KubeApi, type KubeAuth } from './kube-api.ts';
import type { ObjectHandler, ObjectSource } from './object-source.ts';
import { Kind, type K8sObject } from './objects.ts';
import { Reflector, type Emitter, type KindWatch, type ReflectorStats } from './reflector.ts';

/** kube-proxy's selector for Services and EndpointSlices: not another proxy's, not headless. */
export const PROXY_LABEL_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

export interface KubernetesSourceOptions {
  /** How to reach the API server, or a ready client (tests). */
  api: KubeApi | KubeAuth;
  kinds: readonly KindWatch[];
  /** A watch that sends nothing for this long is stalled: dropped and restarted. Default 150 s. */
  watchIdleMs?: number;
  /** Objects per list page (limit/continue). Default 500. */
  pageSize?: number;
  /** One line per restart, relist and recovery. */
  log?(message: string): void;
  /** Every watch restart (`reason`: error, stalled, gone), for metrics. */
  onRestart?(kind: Kind, reason: 'error' | 'stalled' | 'gone'): void;
  /**
   * The API server stopped answering (false: a list or watch of some kind failed or
   * stalled) or answers again (true: every kind's last list or watch succeeded).
   */
  onReachable?(reachable: boolean): void;
}

export class KubernetesSource implements ObjectSource {
  readonly kinds: readonly Kind[];
  readonly api: KubeApi;
  readonly #reflectors: Reflector[];
  readonly #handlers = new Set<ObjectHandler>();
  #started: Promise<void> | null = null;

  constructor(opts: KubernetesSourceOptions) {
    this.api = opts.api instanceof KubeApi ? opts.api : new KubeApi(opts.api);
    this.kinds = opts.kinds.map((k) => k.kind);
    const failing = new Set<Kind>();
    const emit: Emitter = {
      reachable: (kind, ok) => {
        const before = failing.size === 0;
        if (ok) failing.delete(kind);
        else failing.add(kind);
        if (before !== (failing.size === 0)) opts.onReachable?.(failing.size === 0);
      },
      change: (previous, current) => { for (const h of this.#handlers) h.onChange({ previous, current }); },
      synced: (kind) => { for (const h of this.#handlers) h.onSynced(kind); },
      problems: (input, problems) => { for (const h of this.#handlers) h.onProblems(input, problems); },
      error: (err) => { for (const h of this.#handlers) h.onError(err); },
    };
    const log = opts.log ?? (() => {});
    const onRestart = opts.onRestart ?? (() => {});
    this.#reflectors = opts.kinds.map((k) => new Reflector(this.api, k, emit, log, onRestart, opts.watchIdleMs ?? 150_000, opts.pageSize ?? 500));
  }

  watch(handler: ObjectHandler): () => void {
    this.#handlers.add(handler);
    for (const r of this.#reflectors) {
      if (!r.synced) continue;
      for (const obj of r.objects()) handler.onChange({ previous: undefined, current: obj });
      handler.onSynced(r.kind);
    }
    return () => this.#handlers.delete(handler);
  }

  /** Lists every kind once, then keeps watching. Rejects only if a first list fails for a reason a retry cannot fix (401, 403, 404). */
  start(): Promise<void> {
    this.#started ??= Promise.all(this.#reflectors.map((r) => r.start())).then(() => undefined);
    return this.#started;
  }

  stop(): void {
    for (const r of this.#reflectors) r.stop();
  }

  list(): K8sObject[] {
    return this.#reflectors.flatMap((r) => [...r.objects()]);
  }

  hasSynced(kind: Kind): boolean {
    return this.#reflectors.find((r) => r.kind === kind)?.synced ?? false;
  }

  async resync(): Promise<void> {
    await Promise.all(this.#reflectors.map((r) => r.relist()));
  }

  stats(): ReflectorStats[] {
    return this.#reflectors.map((r) => r.stats());
  }
}

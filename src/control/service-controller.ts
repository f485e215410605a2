// The control side put together for one node, after kube-proxy: an object source
// (a manifest directory, or the Kubernetes API) whose events are only recorded, a
// coalescing runner, and a sync that compiles the complete ClusterView (every Service
// with its endpoints, and the ServiceSnapshot for this node) and hands it to every
// subscribed consumer: the data plane's service tables, a DNS server, the lab's kernel
// proxy. Nothing is compiled before the source has synced the kinds the compile reads
// (kube-proxy publishes nothing before Services and EndpointSlices have synced). A
// consumer that fails does not keep the others from the view; it fails the sync, which
// is retried as a full one and hands the view again to each consumer that does not have it.
import { ManifestError } from '../k8s/manifest.ts';
import type { ObjectChange, ObjectSource } from '../k8s/object-source.ts';
import { Kind } from '../k8s/objects.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR, type PortRange, type ServiceCidrs } from '../model/cluster-defaults.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { parseCidr, type Cidr } from '../wire/address.ts';
import { ChangeTracker, type TimedChange } from './change-tracker.ts';
import { describeServices, type ServiceDescription } from './describe.ts';
import { SyncRunner } from './runner.ts';
import { ServiceProxyState, type NodeOptions } from './service-proxy-state.ts';
import type { SyncObserver } from './sync-observer.ts';
import { TapirError } from '../errors/tapir-error.ts';

/** The kinds the compile reads: it waits until the source has synced those it serves. */
const COMPILED_KINDS: readonly Kind[] = [Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.ENDPOINTS, Kind.POD, Kind.NODE];

/**
 * Takes each new view; may be async (the sync waits for it). Throwing (or rejecting)
 * fails the sync: it is retried, and this consumer gets the view again.
 */
export type ClusterViewConsumer = (view: ClusterView) => void | Promise<void>;

export interface ServiceControllerOptions {
  /** Where the objects come from. The controller starts it and stops it with itself. */
  source: ObjectSource;
  node: NodeOptions;
  /**
   * Cluster mode: the source is the Kubernetes API, which allocated every address and
   * node port and whose controllers wrote every EndpointSlice; this side allocates
   * nothing and derives no slices (serviceCIDR and nodePortRange are then unused).
   */
  cluster?: boolean;
  /** Default DEFAULT_SERVICE_CIDR (src/model/cluster-defaults.ts). */
  serviceCIDR?: Cidr;
  /** A dual-stack or IPv6 cluster's service CIDRs, one per family, primary first; wins over serviceCIDR. */
  serviceCIDRs?: ServiceCidrs;
  /** Default DEFAULT_NODE_PORT_RANGE. */
  nodePortRange?: Readonly<PortRange>;
  /** Default 100 ms: bursts of changes within this become one sync. */
  minSyncIntervalMs?: number;
  /** Default 30 s: a full recompute at least this often. */
  maxSyncIntervalMs?: number;
  /** Default 1 s: retry after a failed sync. */
  retryIntervalMs?: number;
  /** A consumer of the snapshot alone, called when the snapshot changed (a shorthand for subscribe()). */
  onSnapshot?(snapshot: ServiceSnapshot): void;
  /** ManifestError (a bad input, its previous objects stay), ServiceRejectedError, or a failed sync. */
  onError(err: Error): void;
  /** Told of queued changes, syncs and this node's Node object (the agent's healthz and metrics). */
  observer?: SyncObserver;
}

/** kube-proxy's annotation on EndpointSlices: when the change that caused this version happened (RFC 3339). */
const TRIGGER_TIME = 'endpoints.kubernetes.io/last-change-trigger-time';

/** A Service that cannot be programmed (allocation conflict, out of range); the others are unaffected. */
export class ServiceRejectedError extends TapirError {
  readonly code = 'TAPIR_SERVICE_REJECTED';
  readonly service: string;
  readonly problems: readonly string[];
  constructor(service: string, problems: readonly string[]) {
    super(problems.join('\n'));
    this.service = service;
    this.problems = problems;
  }
}

/** A sync failed (a consumer threw, or the compile did); it is retried as a full sync. */
export class ServiceSyncError extends TapirError {
  readonly code = 'TAPIR_SERVICE_SYNC_FAILED';
  constructor(message: string) {
    super(message);
  }
}

interface Subscription {
  consume: ClusterViewConsumer;
  /** The last view this consumer took without failing. */
  delivered: ClusterView | undefined;
}

export class ServiceController {
  readonly #opts: ServiceControllerOptions;
  readonly #state: ServiceProxyState;
  readonly #tracker = new ChangeTracker();
  readonly #source: ObjectSource;
  readonly #runner: SyncRunner;
  readonly #subscriptions: Subscription[] = [];
  readonly #unsynced: Set<Kind>;
  readonly #inputProblems = new Map<string, readonly string[]>();
  #unwatch: () => void = () => undefined;
  #reportedRejections = new Map<string, string>();
  #view: ClusterView | undefined;
  #firstSync: Promise<void>;
  #firstSyncDone: () => void = () => undefined;
  #nodeSeen = false;
  /** Date.now() at start(): trigger times before it are not this agent's programming (kube-proxy's rule). */
  #startedAt = 0;
  /** Date.now() when the first view was published; changes recorded before it are the initial list. */
  #firstViewAt = Infinity;

  constructor(opts: ServiceControllerOptions) {
    this.#opts = opts;
    this.#source = opts.source;
    this.#unsynced = new Set(COMPILED_KINDS.filter((kind) => opts.source.kinds.includes(kind)));
    this.#state = new ServiceProxyState(opts.node, opts.cluster === true ? 'api'
      : {
        serviceCIDR: opts.serviceCIDR ?? opts.serviceCIDRs?.v4 ?? parseCidr(DEFAULT_SERVICE_CIDR)!,
        ...(opts.serviceCIDRs !== undefined ? { serviceCIDRs: opts.serviceCIDRs } : {}),
        nodePortRange: opts.nodePortRange ?? DEFAULT_NODE_PORT_RANGE,
      });
    this.#firstSync = new Promise((resolve) => { this.#firstSyncDone = resolve; });
    const onSnapshot = opts.onSnapshot;
    if (onSnapshot !== undefined) {
      let last: ServiceSnapshot | undefined;
      this.subscribe((view) => {
        if (view.snapshot === last) return;
        onSnapshot(view.snapshot);
        last = view.snapshot;
      });
    }
    this.#runner = new SyncRunner({
      sync: (periodic) => this.#sync(periodic),
      minIntervalMs: opts.minSyncIntervalMs ?? 100,
      maxIntervalMs: opts.maxSyncIntervalMs ?? 30_000,
      retryIntervalMs: opts.retryIntervalMs ?? 1000,
      onError: (err) => {
        this.#state.forceFull();
        opts.onError(err instanceof ServiceSyncError ? err : new ServiceSyncError(`service sync failed (retrying with a full sync): ${err.message}`));
      },
    });
  }

  /**
   * Adds a consumer of the compiled view. It gets the current view at the next sync
   * (at once if there is one), then every new one. Returns the function that removes it.
   */
  subscribe(consume: ClusterViewConsumer): () => void {
    const subscription: Subscription = { consume, delivered: undefined };
    this.#subscriptions.push(subscription);
    if (this.#view !== undefined) this.#runner.run();
    return () => {
      const i = this.#subscriptions.indexOf(subscription);
      if (i >= 0) this.#subscriptions.splice(i, 1);
    };
  }

  /**
   * Starts the source, publishes the first view (or reports why not), then follows
   * changes. Rejects if the source cannot be read at all (a manifest directory that
   * does not exist: ManifestDirError, code TAPIR_MANIFEST_DIR); bad inputs are
   * reported through onError, not thrown.
   */
  async start(): Promise<void> {
    this.#startedAt = Date.now();
    this.#runner.start();
    this.#unwatch = this.#source.watch({
      onChange: (change) => this.#onChange(change),
      onSynced: (kind) => {
        if (kind === Kind.NODE && !this.#nodeSeen) this.#opts.observer?.nodeChanged(null);
        if (this.#unsynced.delete(kind) && this.#unsynced.size === 0) this.#runner.run();
      },
      onProblems: (input, problems) => this.#onProblems(input, problems),
      onError: (err) => this.#opts.onError(err),
    });
    try {
      await this.#source.start();
    } catch (err) {
      this.#runner.stop();
      this.#unwatch();
      throw err;
    }
    if (this.#unsynced.size === 0) this.#runner.run();
    await this.#firstSync;
  }

  stop(): void {
    this.#unwatch();
    this.#source.stop();
    this.#runner.stop();
    this.#firstSyncDone();
  }

  /** Lists the source again and syncs now, without waiting for watch events or minInterval. */
  async flush(): Promise<void> {
    await this.#source.resync();
    await this.#runner.runNow();
  }

  /** The last compiled view. */
  get view(): ClusterView | undefined {
    return this.#view;
  }

  /** The last compiled snapshot. */
  get snapshot(): ServiceSnapshot | undefined {
    return this.#view?.snapshot;
  }

  /** Number of syncs run so far (for tests and stats). */
  get syncs(): number {
    return this.#runner.syncs;
  }

  /** Every Service, for `tapir lab status --json`. */
  describe(): ServiceDescription[] {
    return this.#view === undefined ? [] : describeServices(this.#view);
  }

  /** Current problems: bad inputs (their last good state is in force) and rejected services. */
  problems(): string[] {
    const out: string[] = [];
    for (const list of this.#inputProblems.values()) out.push(...list);
    for (const list of this.#state.allocation.rejected.values()) out.push(...list);
    return out;
  }

  /** Pending changes by kind, for kube-proxy's *_changes_pending gauges. */
  pendingChanges(): { services: number; endpoints: number } {
    return { services: this.#tracker.count(Kind.SERVICE), endpoints: this.#tracker.count(Kind.ENDPOINT_SLICE) + this.#tracker.count(Kind.ENDPOINTS) };
  }

  #onChange(change: ObjectChange): void {
    const obj = (change.current ?? change.previous)!;
    const observer = this.#opts.observer;
    if (observer !== undefined) {
      if (obj.kind === Kind.SERVICE || obj.kind === Kind.ENDPOINT_SLICE || obj.kind === Kind.ENDPOINTS) observer.changeQueued(obj.kind);
      else if (obj.kind === Kind.NODE && obj.metadata.name === this.#opts.node.name) {
        const node = change.current?.kind === Kind.NODE ? change.current : undefined;
        this.#nodeSeen = node !== undefined;
        observer.nodeChanged(node === undefined ? null : { deleting: node.metadata.deletionTimestamp !== '', taints: node.taints ?? [] });
      }
    }
    if (this.#tracker.record(change) && this.#unsynced.size === 0) this.#runner.run();
  }

  #onProblems(input: string, problems: readonly string[]): void {
    if (problems.length === 0) {
      this.#inputProblems.delete(input);
      return;
    }
    this.#inputProblems.set(input, problems);
    this.#opts.onError(new ManifestError(input, problems));
  }

  async #sync(periodic: boolean): Promise<void> {
    if (this.#unsynced.size > 0) return;
    const startedAt = Date.now();
    const start = performance.now();
    let changes: TimedChange[] = [];
    let view: ClusterView | undefined;
    try {
      // A periodic sync recompiles only what changed, as any other: the compiled state is
      // a function of the objects alone and nothing outside can drift it (kube-proxy's
      // periodic full sync repairs iptables rules; a recompile of everything here only
      // ever produced the same view, and blocked the data plane's thread for a second
      // every syncPeriod at 10k Services). A failed sync still forces a full one.
      changes = this.#tracker.drainTimed();
      this.#state.apply(changes.map((c) => c.change));
      view = this.#state.sync().view;
      this.#view = view;
      this.#reportRejections();
      await this.#publish(view);
    } catch (err) {
      view = undefined;
      throw err;
    } finally {
      this.#firstSyncDone();
      this.#opts.observer?.synced({
        ok: view !== undefined, startedAt, durationSeconds: (performance.now() - start) / 1000, periodic,
        programmingLatencies: view === undefined ? [] : programmingLatencies(changes, Date.now(), this.#startedAt, this.#firstViewAt),
        view,
      });
      if (view !== undefined && this.#firstViewAt === Infinity) this.#firstViewAt = Date.now();
    }
  }

  /** Hands the view to every consumer that does not have it yet; all of them, whatever one of them throws. */
  async #publish(view: ClusterView): Promise<void> {
    const behind = this.#subscriptions.filter((s) => s.delivered !== view);
    const results = await Promise.allSettled(behind.map(async (s) => {
      await s.consume(view);
      s.delivered = view;
    }));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    if (failures.length > 0) {
      throw new ServiceSyncError(`service sync failed (retrying with a full sync): ${failures.length === 1 ? failures[0] : `${failures.length} consumers failed: ${failures.join('; ')}`}`);
    }
  }

  /** Reports each rejected service once, until its problems change or go away. */
  #reportRejections(): void {
    const now = new Map<string, string>();
    for (const [service, problems] of this.#state.allocation.rejected) {
      const text = problems.join('\n');
      now.set(service, text);
      if (this.#reportedRejections.get(service) !== text) this.#opts.onError(new ServiceRejectedError(service, problems));
    }
    this.#reportedRejections = now;
  }
}

/**
 * Seconds from each programmed Service or EndpointSlice change to `now`: from the
 * EndpointSlice's trigger time when it has one (kube-proxy's network programming
 * latency, measured from the change in the cluster), else from when this agent first
 * saw it. As kube-proxy, trigger times from before the agent started are left out (an
 * object listed at start changed long ago); so are the objects of the initial list
 * that carry none (their "latency" would be the agent's start-up).
 */
function programmingLatencies(changes: readonly TimedChange[], now: number, startedAt: number, firstViewAt: number): number[] {
  const out: number[] = [];
  for (const { change, queuedAt } of changes) {
    const obj = (change.current ?? change.previous)!;
    if (obj.kind !== Kind.SERVICE && obj.kind !== Kind.ENDPOINT_SLICE && obj.kind !== Kind.ENDPOINTS) continue;
    const trigger = change.current === undefined ? NaN : Date.parse(change.current.metadata.annotations[TRIGGER_TIME] ?? '');
    if (!Number.isNaN(trigger)) {
      if (trigger >= startedAt) out.push(Math.max(0, now - trigger) / 1000);
    } else if (queuedAt >= firstViewAt) {
      out.push(Math.max(0, now - queuedAt) / 1000);
    }
  }
  return out;
}

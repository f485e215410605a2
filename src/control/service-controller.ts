// The control side put together for one node: a manifest directory as the object
// source, change tracking, a coalescing runner, and a sync that compiles the complete
// ServiceSnapshot for this node and hands it to onSnapshot (the data plane swaps its
// tables between batches). Nothing is compiled before the directory was read once
// (kube-proxy publishes nothing before Services and EndpointSlices have synced).
import { ManifestDir, type ObjectChange } from '../k8s/manifest-dir.ts';
import { ManifestError } from '../k8s/manifest.ts';
import { parseCidr, type Cidr } from '../wire/address.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { DEFAULT_NODE_PORT_RANGE, parseNodePortRange, type PortRange } from './allocator.ts';
import { ChangeTracker } from './change-tracker.ts';
import { describeServices, type ServiceDescription } from './describe.ts';
import { SyncRunner } from './runner.ts';
import { ServiceProxyState, type NodeOptions } from './service-proxy-state.ts';
import { TapirError } from '../errors/tapir-error.ts';

export interface ServiceControllerOptions {
  manifestDir: string;
  node: NodeOptions;
  /** Default 10.96.0.0/12 (kube-apiserver's default --service-cluster-ip-range). */
  serviceCIDR?: string | Cidr;
  /** "30000-32767" (default) or {min, max}. */
  nodePortRange?: string | PortRange;
  /** Default 100 ms: bursts of changes within this become one sync. */
  minSyncIntervalMs?: number;
  /** Default 30 s: a full recompute at least this often. */
  maxSyncIntervalMs?: number;
  /** Default 1 s: retry after a failed sync. */
  retryIntervalMs?: number;
  /** Passed to the manifest directory (defaults 2000 and 50 ms). */
  rescanIntervalMs?: number;
  debounceMs?: number;
  /** A new snapshot; throwing counts as a failed sync (retried, then re-published in full). */
  onSnapshot(snapshot: ServiceSnapshot): void;
  /** ManifestError (a bad file, its previous objects stay), ServiceRejectedError, or a failed sync. */
  onError(err: Error): void;
}

/** A Service that cannot be programmed (allocation conflict, out of range); the others are unaffected. */
export class ServiceRejectedError extends TapirError {
  readonly code = 'TAPIR_SERVICE_REJECTED';
  readonly service: string;
  readonly problems: readonly string[];
  constructor(service: string, problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'ServiceRejectedError';
    this.service = service;
    this.problems = problems;
  }
}

const SERVICE_CONTROLLER_CODES = {
  /** The controller's options (service CIDR, node-port range) are unusable. */
  CONFIG: 'TAPIR_SERVICE_CONFIG',
  /** A sync threw; the runner retries with a full sync. */
  SYNC_FAILED: 'TAPIR_SERVICE_SYNC_FAILED',
} as const;

export class ServiceControllerError extends TapirError {
  readonly code: (typeof SERVICE_CONTROLLER_CODES)[keyof typeof SERVICE_CONTROLLER_CODES];
  constructor(reason: keyof typeof SERVICE_CONTROLLER_CODES, message: string) {
    super(message);
    this.name = 'ServiceControllerError';
    this.code = SERVICE_CONTROLLER_CODES[reason];
  }
}

export class ServiceController {
  readonly #opts: ServiceControllerOptions;
  readonly #state: ServiceProxyState;
  readonly #tracker = new ChangeTracker();
  readonly #dir: ManifestDir;
  readonly #runner: SyncRunner;
  readonly #fileProblems = new Map<string, readonly string[]>();
  #reportedRejections = new Map<string, string>();
  #synced = false;
  #published = false;
  #snapshot: ServiceSnapshot | undefined;
  #firstSync: Promise<void>;
  #firstSyncDone: () => void = () => undefined;

  constructor(opts: ServiceControllerOptions) {
    this.#opts = opts;
    const cidr = typeof opts.serviceCIDR === 'object' ? opts.serviceCIDR : parseCidr(opts.serviceCIDR ?? '10.96.0.0/12');
    if (cidr === undefined) throw new ServiceControllerError('CONFIG', `serviceCIDR: ${JSON.stringify(opts.serviceCIDR)} is not an IPv4 CIDR such as 10.96.0.0/12`);
    const range = typeof opts.nodePortRange === 'object' ? opts.nodePortRange : opts.nodePortRange === undefined ? DEFAULT_NODE_PORT_RANGE : parseNodePortRange(opts.nodePortRange);
    if (range === null) throw new ServiceControllerError('CONFIG', `nodePortRange: ${JSON.stringify(opts.nodePortRange)} is not a range such as 30000-32767`);
    this.#state = new ServiceProxyState(opts.node, { serviceCIDR: cidr, nodePortRange: range });
    this.#firstSync = new Promise((resolve) => { this.#firstSyncDone = resolve; });
    this.#dir = new ManifestDir({
      dir: opts.manifestDir,
      rescanIntervalMs: opts.rescanIntervalMs,
      debounceMs: opts.debounceMs,
      onChange: (change) => this.#onChange(change),
      onSynced: () => {
        this.#synced = true;
        this.#runner.run();
      },
      onProblems: (file, problems) => this.#onProblems(file, problems),
      onError: (err) => opts.onError(err),
    });
    this.#runner = new SyncRunner({
      sync: (periodic) => this.#sync(periodic),
      minIntervalMs: opts.minSyncIntervalMs ?? 100,
      maxIntervalMs: opts.maxSyncIntervalMs ?? 30_000,
      retryIntervalMs: opts.retryIntervalMs ?? 1000,
      onError: (err) => {
        this.#state.forceFull();
        this.#published = false;
        opts.onError(new ServiceControllerError('SYNC_FAILED', `service sync failed (retrying with a full sync): ${err.message}`));
      },
    });
  }

  /**
   * Reads the directory, publishes the first snapshot (or reports why not), then follows
   * changes. Rejects with ManifestDirError (code TAPIR_MANIFEST_DIR) if the directory
   * cannot be read; bad files are reported through onError, not thrown.
   */
  async start(): Promise<void> {
    this.#runner.start();
    try {
      await this.#dir.start();
    } catch (err) {
      this.#runner.stop();
      throw err;
    }
    await this.#firstSync;
  }

  stop(): void {
    this.#dir.stop();
    this.#runner.stop();
    this.#firstSyncDone();
  }

  /** Re-reads the directory and syncs now, without waiting for watch events or minInterval. */
  async flush(): Promise<void> {
    await this.#dir.rescan();
    await this.#runner.runNow();
  }

  /** The last published snapshot. */
  get snapshot(): ServiceSnapshot | undefined {
    return this.#snapshot;
  }

  /** Number of syncs run so far (for tests and stats). */
  get syncs(): number {
    return this.#runner.syncs;
  }

  /** Every Service in the manifests, for `tapir lab status --json`. */
  describe(): ServiceDescription[] {
    return describeServices(this.#state);
  }

  /** Current problems: bad files (their last good state is in force) and rejected services. */
  problems(): string[] {
    const out: string[] = [];
    for (const list of this.#fileProblems.values()) out.push(...list);
    for (const list of this.#state.allocation.rejected.values()) out.push(...list);
    return out;
  }

  #onChange(change: ObjectChange): void {
    if (this.#tracker.record(change) && this.#synced) this.#runner.run();
  }

  #onProblems(file: string, problems: readonly string[]): void {
    if (problems.length === 0) {
      this.#fileProblems.delete(file);
      return;
    }
    this.#fileProblems.set(file, problems);
    this.#opts.onError(new ManifestError(file, problems));
  }

  #sync(periodic: boolean): void {
    if (!this.#synced) return;
    if (periodic) this.#state.forceFull();
    this.#state.apply(this.#tracker.drain());
    try {
      const { snapshot, changed } = this.#state.sync();
      this.#reportRejections();
      if (changed || !this.#published) {
        this.#opts.onSnapshot(snapshot);
        this.#snapshot = snapshot;
        this.#published = true;
      }
    } finally {
      this.#firstSyncDone();
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

// Leader election over a coordination.k8s.io/v1 Lease, client-go's leaderelection in
// small: every replica serves traffic, but only the leader writes (the Ingresses'
// status and the Events of their problems), so N replicas make one Event per problem
// and no status tug-of-war; ingress-nginx elects the same way. Each replica tries every
// `retryMs`: it creates the Lease when there is none, renews it while it holds it, and
// takes it over once the holder has not renewed for `leaseDurationMs`. Every write
// carries the resourceVersion it read, so of two replicas racing for the Lease the
// API server lets one win (409 Conflict for the other).
import { hostname } from 'node:os';
import { KubeApiError, type KubeApi } from '../k8s/kube-api.ts';

export interface LeaderElectionOptions {
  api: KubeApi;
  namespace: string;
  /** The Lease's name. */
  name: string;
  /** This replica: the pod's name (POD_NAME) where known, else host and pid. */
  identity?: string;
  /** client-go's defaults: 15 s lease, 2 s retry. */
  leaseDurationMs?: number;
  retryMs?: number;
  /** Became leader (true) or lost it (false). */
  onChange(leader: boolean): void;
  log(message: string): void;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export class LeaderElector {
  readonly #opts: LeaderElectionOptions;
  readonly identity: string;
  readonly #leaseMs: number;
  readonly #retryMs: number;
  #leader = false;
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** When this replica last renewed (performance.now()); leadership ends by itself after a lease without renewal. */
  #renewedAt = -Infinity;

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
    this.identity = opts.identity ?? (process.env.POD_NAME || `${hostname()}_${process.pid}`);
    this.#leaseMs = opts.leaseDurationMs ?? 15_000;
    this.#retryMs = opts.retryMs ?? 2_000;
  }

  get leader(): boolean {
    return this.#leader;
  }

  start(): void {
    void this.#tick();
  }

  /** Stops trying; a leader gives the Lease up (its holder cleared) so another takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    if (!this.#leader) return;
    this.#set(false);
    try {
      const lease = await this.#opts.api.get(this.#path());
      const spec = (lease.spec ?? {}) as LeaseSpec;
      if (spec.holderIdentity === this.identity) {
        await this.#opts.api.send('PUT', this.#path(), { ...lease, spec: { ...spec, holderIdentity: '', renewTime: new Date(0).toISOString() } });
      }
    } catch { /* the lease runs out by itself */ }
  }

  #path(collection = false): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.#opts.namespace)}/leases`;
    return collection ? base : `${base}/${encodeURIComponent(this.#opts.name)}`;
  }

  async #tick(): Promise<void> {
    if (this.#stopped) return;
    try {
      this.#set(await this.#tryAcquireOrRenew());
    } catch (err) {
      this.#opts.log(`leader election: ${(err as Error).message}`);
      // Without a renewal for a whole lease, another replica may hold it now.
      if (this.#leader && performance.now() - this.#renewedAt > this.#leaseMs) this.#set(false);
    }
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), this.#retryMs);
    this.#timer.unref();
  }

  async #tryAcquireOrRenew(): Promise<boolean> {
    const api = this.#opts.api;
    const now = new Date();
    const mine: LeaseSpec = { holderIdentity: this.identity, leaseDurationSeconds: Math.ceil(this.#leaseMs / 1000), renewTime: now.toISOString() };
    let lease: Record<string, unknown>;
    try {
      lease = await api.get(this.#path());
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 404) throw err;
      try {
        await api.send('POST', this.#path(true), {
          apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
          metadata: { name: this.#opts.name, namespace: this.#opts.namespace },
          spec: { ...mine, acquireTime: now.toISOString(), leaseTransitions: 0 },
        });
      } catch (e) {
        if (e instanceof KubeApiError && e.status === 409) return false; // another replica created it first
        throw e;
      }
      this.#renewedAt = performance.now();
      return true;
    }
    const spec = (lease.spec ?? {}) as LeaseSpec;
    const held = spec.holderIdentity !== undefined && spec.holderIdentity !== '';
    const expired = !held || Date.parse(spec.renewTime ?? '') + (spec.leaseDurationSeconds ?? 0) * 1000 < now.getTime();
    if (spec.holderIdentity !== this.identity && !expired) return false;
    const next: LeaseSpec = spec.holderIdentity === this.identity
      ? { ...spec, ...mine }
      : { ...spec, ...mine, acquireTime: now.toISOString(), leaseTransitions: (spec.leaseTransitions ?? 0) + 1 };
    try {
      // The resourceVersion read above: if anyone wrote since, this is a 409.
      await api.send('PUT', this.#path(), { ...lease, spec: next });
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 409) return false;
      throw e;
    }
    this.#renewedAt = performance.now();
    return true;
  }

  #set(leader: boolean): void {
    if (leader === this.#leader) return;
    this.#leader = leader;
    this.#opts.log(leader ? `leader election: ${this.identity} leads (Lease ${this.#opts.namespace}/${this.#opts.name})` : `leader election: ${this.identity} no longer leads`);
    this.#opts.onChange(leader);
  }
}

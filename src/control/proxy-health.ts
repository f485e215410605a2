// The proxy's own health, after kube-proxy's ProxyHealthServer
// (pkg/proxy/healthcheck/proxy_health.go): /livez answers 503 once a queued Service or
// EndpointSlice change has waited longer than the health timeout (twice the sync period)
// without a successful sync; /healthz answers the same, and also 503 while this node is
// not eligible for load-balancer traffic: its Node is missing, being deleted, or tainted
// ToBeDeletedByClusterAutoscaler (so a cloud load balancer drains a node that is going
// away). The node is eligible until a Node event says otherwise, as in kube-proxy.
// Load balancers and probes read only the status code; the JSON body is kube-proxy's
// (lastUpdated, currentTime, nodeEligible on /healthz), plus `healthy` and a `status`
// sentence saying why. Times are RFC 3339 (kube-proxy prints Go's time.String()).
// Tapir is IPv4 only, so kube-proxy's per-family maps are one timestamp each here.
// The service health checks (healthCheckNodePort, per Service) are health-check-server.ts.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { NodeState, SyncObserver, SyncResult } from './sync-observer.ts';

/** kube-proxy's name for the Cluster Autoscaler's taint on nodes it is about to delete. */
export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

/** Go's zero time, which kube-proxy reports as lastUpdated before its first sync. */
const ZERO_TIME = '0001-01-01T00:00:00Z';

export interface ProxyHealthState {
  healthy: boolean;
  nodeEligible: boolean;
  /** Date.now() of the last successful sync; 0 = none yet. */
  lastUpdated: number;
  /** Why, in a sentence. */
  status: string;
}

export class ProxyHealth implements SyncObserver {
  readonly healthTimeoutMs: number;
  readonly #now: () => number;
  #lastUpdated = 0;
  /** Date.now() of the oldest change not yet synced; 0 = none pending. */
  #oldestPending = 0;
  #node: { eligible: boolean; why: string } = { eligible: true, why: '' };
  /** Date.now() since the API server has not answered (cluster mode); 0 = it answers. */
  #unreachableSince = 0;
  /** Answers by path and code, for kubeproxy_proxy_{healthz,livez}_total. */
  readonly answers = { healthz: { 200: 0, 503: 0 }, livez: { 200: 0, 503: 0 } };

  /** `healthTimeoutMs`: kube-proxy passes 2 x its sync period. */
  constructor(healthTimeoutMs: number, now: () => number = Date.now) {
    this.healthTimeoutMs = healthTimeoutMs;
    this.#now = now;
  }

  /** kube-proxy's QueuedUpdate: the clock starts at the oldest change not yet synced. */
  changeQueued(): void {
    if (this.#oldestPending === 0) this.#oldestPending = this.#now();
  }

  /** kube-proxy's Updated, on a successful sync; a failed one changes nothing (the change keeps waiting). */
  synced(result: Pick<SyncResult, 'ok'>): void {
    if (!result.ok) return;
    this.#oldestPending = 0;
    this.#lastUpdated = this.#now();
  }

  /**
   * Cluster mode: the API server stopped or resumed answering. Not kube-proxy's: an
   * agent cut off from the API longer than the health timeout serves tables that may
   * be stale by any amount, so a load balancer should stop sending it new traffic; it
   * keeps forwarding with them meanwhile.
   */
  apiReachable(reachable: boolean): void {
    if (reachable) this.#unreachableSince = 0;
    else if (this.#unreachableSince === 0) this.#unreachableSince = this.#now();
  }

  /** kube-proxy's SyncNode; null = no Node object for this node (never listed, or deleted). */
  nodeChanged(node: NodeState | null): void {
    if (node === null) this.#node = { eligible: false, why: 'the Node object of this node is missing' };
    else if (node.deleting) this.#node = { eligible: false, why: 'the Node is being deleted' };
    else if (node.taints.includes(TO_BE_DELETED_TAINT)) this.#node = { eligible: false, why: `the Node is tainted ${TO_BE_DELETED_TAINT}` };
    else this.#node = { eligible: true, why: '' };
  }

  /** The proxy's health without the node's eligibility (/livez), then with it (/healthz). */
  state(): ProxyHealthState {
    const now = this.#now();
    const waited = this.#oldestPending === 0 ? 0 : now - this.#oldestPending;
    // kube-proxy: healthy while starting up or fully synced, or while the oldest queued
    // change has waited less than the timeout.
    const cutOff = this.#unreachableSince === 0 ? 0 : now - this.#unreachableSince;
    if (cutOff >= this.healthTimeoutMs) {
      const status = `the API server has not answered for ${(cutOff / 1000).toFixed(1)}s (limit ${this.healthTimeoutMs / 1000}s); forwarding with the last tables`;
      return { healthy: false, nodeEligible: this.#node.eligible, lastUpdated: this.#lastUpdated, status };
    }
    const healthy = waited < this.healthTimeoutMs;
    const status = healthy
      ? (this.#oldestPending === 0 ? 'synced' : `a change has waited ${(waited / 1000).toFixed(1)}s for a sync (limit ${this.healthTimeoutMs / 1000}s)`)
      : `a change has waited ${(waited / 1000).toFixed(1)}s without a successful sync (limit ${this.healthTimeoutMs / 1000}s)`;
    return { healthy, nodeEligible: this.#node.eligible, lastUpdated: this.#lastUpdated, status };
  }

  /** The answer of /healthz (`node`) or /livez: status code and kube-proxy's body. */
  answer(path: 'healthz' | 'livez'): { code: 200 | 503; body: Record<string, unknown> } {
    const s = this.state();
    const now = this.#now();
    const healthy = path === 'healthz' ? s.healthy && s.nodeEligible : s.healthy;
    // kube-proxy reports "now" as lastUpdated while healthy (older releases' meaning:
    // the sync loop ran recently), the real last sync otherwise.
    const lastUpdated = healthy ? now : s.lastUpdated;
    const body: Record<string, unknown> = {
      lastUpdated: lastUpdated === 0 ? ZERO_TIME : new Date(lastUpdated).toISOString(),
      currentTime: new Date(now).toISOString(),
    };
    if (path === 'healthz') body.nodeEligible = s.nodeEligible;
    body.healthy = healthy;
    body.status = !s.healthy ? s.status : path === 'healthz' && !s.nodeEligible ? this.#node.why : s.status;
    const code = healthy ? 200 : 503;
    this.answers[path][code]++;
    return { code, body };
  }
}

/** /healthz and /livez over HTTP on the healthz bind address. */
export class ProxyHealthServer {
  readonly #server: Server;
  readonly #health: ProxyHealth;

  private constructor(health: ProxyHealth) {
    this.#health = health;
    this.#server = createServer((req, res) => this.#serve(req, res));
  }

  /** Listens on host:port; rejects when the address cannot be bound (in use, not on this node). */
  static async listen(health: ProxyHealth, host: string, port: number): Promise<ProxyHealthServer> {
    const s = new ProxyHealthServer(health);
    await listen(s.#server, host, port);
    return s;
  }

  /** The bound port (for port 0). */
  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/livez') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
      res.end('404 page not found\n');
      return;
    }
    const { code, body } = this.#health.answer(path === '/healthz' ? 'healthz' : 'livez');
    res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
    res.end(JSON.stringify(body));
  }

  close(): Promise<void> {
    return closeServer(this.#server);
  }
}

/** server.listen as a promise: resolves once listening, rejects with the bind error. */
export function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

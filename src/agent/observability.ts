// The agent's health, metrics and configuration endpoints, as kube-proxy serves them:
// /healthz and /livez on healthzBindAddress, /metrics, /proxyMode and /configz on
// metricsBindAddress. They listen before the agent starts (a probe learns of a slow
// start) and read the agent through getters once it runs. `observer` goes to the
// service control side (AgentOptions.observer): it feeds the health state and the
// sync metrics. A Kubernetes source reports this node's Node through
// `observer.nodeChanged` (or ServiceController does, from the Node objects it is
// given) and its watch restarts through `metrics.watchRestarted`.
import type { Datapath } from '../datapath/datapath.ts';
import { ProxyHealth, ProxyHealthServer } from '../control/proxy-health.ts';
import type { NodeState, SyncObserver, SyncResult } from '../control/sync-observer.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { TapirError } from '../errors/tapir-error.ts';
import type { AgentConfig } from './config.ts';
import type { Registry } from 'prom-client';
import { configz } from './configz.ts';
import type { Logger } from './log.ts';
import { AgentMetrics, MetricsServer, type MetricsHost } from './metrics.ts';

/** What the endpoints read of a running agent. */
export interface ObservedAgent {
  readonly datapath: Datapath;
  readonly serviceSnapshot: ServiceSnapshot | null;
  pendingServiceChanges(): { services: number; endpoints: number } | null;
  /** The DNS server's metrics, if the agent serves DNS. */
  readonly dnsRegistry?: Registry | null;
}

/** kube-proxy retries its health and metrics servers every 5 s. */
const BIND_RETRY_MS = 5000;

/** healthzBindAddress or metricsBindAddress could not be bound and bindAddressHardFail is set. */
export class BindAddressError extends TapirError {
  readonly code = 'TAPIR_BIND_ADDRESS';
}

export class AgentObservability {
  readonly health: ProxyHealth;
  readonly metrics: AgentMetrics;
  readonly observer: SyncObserver;
  readonly #config: AgentConfig;
  readonly #log: Logger;
  readonly #logging: { verbosity: number; format: string };
  readonly #host: MetricsHost;
  #agent: ObservedAgent | null = null;
  #healthTimer: NodeJS.Timeout | null = null;
  #wasHealthy = true;
  /** Binds being retried (kube-proxy's wait.Until). */
  readonly #retries = new Set<NodeJS.Timeout>();
  #closed = false;
  #healthServer: ProxyHealthServer | null = null;
  #metricsServer: MetricsServer | null = null;

  constructor(config: AgentConfig, logger: Logger, logging: { verbosity: number; format: string }) {
    this.#config = config;
    this.#log = logger.child({ component: 'health' });
    this.#logging = logging;
    // kube-proxy: healthTimeout = 2 x syncPeriod.
    this.health = new ProxyHealth(2 * config.maxSyncIntervalMs);
    this.#host = {
      datapath: () => this.#agent?.datapath ?? null,
      pendingChanges: () => this.#agent?.pendingServiceChanges() ?? null,
      serviceSnapshot: () => this.#agent?.serviceSnapshot ?? null,
      health: this.health,
      configz: () => configz(this.#config, this.#logging),
      extraRegistries: () => {
        const dns = this.#agent?.dnsRegistry;
        return dns === null || dns === undefined ? [] : [dns];
      },
    };
    this.metrics = new AgentMetrics(this.#host);
    this.observer = this.#fanOut(logger.child({ component: 'services' }));
  }

  /** The agent these endpoints report on, once it runs. */
  attach(agent: ObservedAgent): void {
    this.#agent = agent;
  }

  /**
   * Binds both addresses. A failure ends the agent with bindAddressHardFail; otherwise
   * it is logged and the bind retried every 5 s until it succeeds, as kube-proxy's
   * servers are (wait.Until): a predecessor still shutting down, or an address not yet
   * on the node, must not leave the agent without health for its lifetime.
   */
  async listen(): Promise<void> {
    const kp = this.#config.kubeProxy;
    if (kp.healthzBindAddress !== null) {
      const { host, port } = kp.healthzBindAddress;
      await this.#bind('healthzBindAddress', host, port, async () => {
        this.#healthServer = await ProxyHealthServer.listen(this.health, host, port);
      });
    }
    if (kp.metricsBindAddress !== null) {
      const { host, port } = kp.metricsBindAddress;
      await this.#bind('metricsBindAddress', host, port, async () => {
        this.#metricsServer = await MetricsServer.listen(this.metrics, this.#host, host, port);
      });
    }
    // Health turns bad by time passing, not by an event: look once a second, to log it.
    this.#healthTimer = setInterval(() => this.#checkHealth(), 1000);
    this.#healthTimer.unref();
  }

  /** One line when the proxy's health flips (a probe sees it anyway; the log says why). */
  #checkHealth(): void {
    const state = this.health.state();
    if (state.healthy === this.#wasHealthy) return;
    this.#wasHealthy = state.healthy;
    if (state.healthy) this.#log.info('proxy healthy again: a sync succeeded');
    else this.#log.warn(`proxy unhealthy: ${state.status}`);
  }

  async #bind(field: string, host: string, port: number, listen: () => Promise<void>): Promise<void> {
    let failures = 0;
    const attempt = async (): Promise<boolean> => {
      if (this.#closed) return true;
      try {
        await listen();
        this.#log.info(`${field === 'healthzBindAddress' ? 'healthz' : 'metrics'} on ${host}:${port}${failures > 0 ? ` (after ${failures} failed attempt(s))` : ''}`);
        return true;
      } catch (err) {
        const message = `cannot serve ${field} ${host}:${port}: ${(err as Error).message}`;
        if (this.#config.kubeProxy.bindAddressHardFail) throw new BindAddressError(`${message} (bindAddressHardFail is set)`, { cause: err });
        // The first failure and then one line a minute, not one every 5 s.
        if (failures % 12 === 0) this.#log.error(`${message}; retrying every ${BIND_RETRY_MS / 1000}s, the agent runs on meanwhile`);
        failures++;
        return false;
      }
    };
    if (await attempt()) return;
    const timer = setInterval(() => {
      void attempt().then((done) => { if (done) this.#retries.delete(timer); if (done) clearInterval(timer); });
    }, BIND_RETRY_MS);
    timer.unref();
    this.#retries.add(timer);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#retries) clearInterval(timer);
    this.#retries.clear();
    if (this.#healthTimer !== null) clearInterval(this.#healthTimer);
    this.#healthTimer = null;
    await Promise.all([this.#healthServer?.close(), this.#metricsServer?.close()]);
    this.#healthServer = null;
    this.#metricsServer = null;
  }

  /** One observer for the control side: the health state, the metrics, and a log line where health changes. */
  #fanOut(log: Logger): SyncObserver {
    const health = this.health;
    const metrics = this.metrics;
    const checkHealth = (): void => this.#checkHealth();
    let lastNode = '';
    return {
      changeQueued(kind): void {
        health.changeQueued();
        metrics.changeQueued(kind);
        log.trace({ kind }, 'change queued');
      },
      synced(result: SyncResult): void {
        health.synced(result);
        metrics.synced(result);
        if (result.ok) log.debug({ seconds: Number(result.durationSeconds.toFixed(4)), changes: result.programmingLatencies.length, periodic: result.periodic }, 'synced');
        else log.verbose({ seconds: Number(result.durationSeconds.toFixed(4)) }, 'sync failed');
        checkHealth();
      },
      nodeChanged(node: NodeState | null): void {
        health.nodeChanged(node);
        metrics.nodeChanged(node);
        const text = node === null ? 'missing' : node.deleting ? 'being deleted' : node.taints.join(',');
        if (text !== lastNode) log.info(`node ${node === null ? 'missing' : `seen${text === '' ? '' : ` (${text})`}`}: healthz nodeEligible ${health.state().nodeEligible}`);
        lastNode = text;
      },
      watchRestarted(kind: string, reason: string): void {
        metrics.watchRestarted(kind, reason);
      },
      apiReachable(reachable: boolean): void {
        health.apiReachable(reachable);
        log.info({ reachable }, reachable ? 'the API server answers again' : 'the API server does not answer; forwarding with the last tables');
      },
    };
  }
}

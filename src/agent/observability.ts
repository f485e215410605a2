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
import { configz } from './configz.ts';
import type { Logger } from './log.ts';
import { AgentMetrics, MetricsServer, type MetricsHost } from './metrics.ts';

/** What the endpoints read of a running agent. */
export interface ObservedAgent {
  readonly datapath: Datapath;
  readonly serviceSnapshot: ServiceSnapshot | null;
  pendingServiceChanges(): { services: number; endpoints: number } | null;
}

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
    };
    this.metrics = new AgentMetrics(this.#host);
    this.observer = this.#fanOut(logger.child({ component: 'services' }));
  }

  /** The agent these endpoints report on, once it runs. */
  attach(agent: ObservedAgent): void {
    this.#agent = agent;
  }

  /** Binds both addresses; a failure is logged, or thrown with bindAddressHardFail. */
  async listen(): Promise<void> {
    const kp = this.#config.kubeProxy;
    if (kp.healthzBindAddress !== null) {
      const { host, port } = kp.healthzBindAddress;
      try {
        this.#healthServer = await ProxyHealthServer.listen(this.health, host, port);
        this.#log.info(`healthz on ${host}:${port}`);
      } catch (err) {
        this.#bindFailed('healthzBindAddress', `${host}:${port}`, err as Error);
      }
    }
    if (kp.metricsBindAddress !== null) {
      const { host, port } = kp.metricsBindAddress;
      try {
        this.#metricsServer = await MetricsServer.listen(this.metrics, this.#host, host, port);
        this.#log.info(`metrics on ${host}:${port}`);
      } catch (err) {
        this.#bindFailed('metricsBindAddress', `${host}:${port}`, err as Error);
      }
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

  #bindFailed(field: string, address: string, err: Error): void {
    const message = `cannot serve ${field} ${address}: ${err.message}`;
    if (this.#config.kubeProxy.bindAddressHardFail) throw new BindAddressError(`${message} (bindAddressHardFail is set)`, { cause: err });
    this.#log.error(`${message}; the agent runs on without it`);
  }

  async close(): Promise<void> {
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
    };
  }
}

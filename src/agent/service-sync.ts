// The agent's service proxy control: the manifest-driven ServiceController compiles a
// ServiceSnapshot for this node; each snapshot updates the data plane's service tables
// (through `onSnapshot`), the kernel steering of node ports and service IPs into the
// host TUN (from the underlay: steering.ts; from the node's own processes:
// local-steering.ts), and the healthCheckNodePort listeners. Nothing is programmed before the
// manifests have been read once (kube-proxy's "initialized" rule: start() resolves
// after the first full read and sync).
import { existsSync } from 'node:fs';
import { HealthCheckServers } from '../control/health-check-server.ts';
import { ServiceController, type ClusterViewConsumer } from '../control/service-controller.ts';
import type { SyncObserver } from '../control/sync-observer.ts';
import { ManifestDir } from '../k8s/manifest-dir.ts';
import { KubernetesSource, PROXY_LABEL_SELECTOR } from '../k8s/api-source.ts';
import { Kind, type NodeObject } from '../k8s/objects.ts';
import type { ObjectSource } from '../k8s/object-source.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv4ToString, ipv6ToString } from '../wire/index.ts';
import type { AgentConfig } from './config.ts';
import { LocalSteering } from './local-steering.ts';
import { Steering } from './steering.ts';

/**
 * The snapshot less every service port on the cluster DNS addresses: the node's own DNS
 * server holds those addresses (on the host TUN, as NodeLocal DNSCache holds kube-dns's
 * address on its dummy device), so a pod's packet to them is routed to it unchanged
 * instead of being translated to a kube-dns endpoint, or refused as a port no service
 * has once some of the address's ports were taken out. The server answers DNS there, and
 * its Corefile's `prometheus :9153` answers kube-dns's metrics port.
 */
export function withoutClusterDns(s: ServiceSnapshot, clusterDNS: readonly number[], clusterDNS6: readonly string[] = []): ServiceSnapshot {
  const taken = (p: ServiceSnapshot['ports'][number]): boolean => clusterDNS.includes(p.clusterIP);
  // The IPv6 half: the same, for an IPv6 kube-dns address (both sides RFC 5952 text).
  const taken6 = (p: NonNullable<ServiceSnapshot['ports6']>[number]): boolean => clusterDNS6.includes(p.clusterIP);
  const ports6 = s.ports6;
  const hit6 = ports6 !== undefined && ports6.some(taken6);
  if (!s.ports.some(taken) && !hit6) return s;
  return Object.freeze({
    ...s,
    ports: Object.freeze(s.ports.filter((p) => !taken(p))) as ServiceSnapshot['ports'],
    ...(hit6 ? { ports6: Object.freeze(ports6.filter((p) => !taken6(p))) as NonNullable<ServiceSnapshot['ports6']> } : {}),
  });
}

/**
 * A test hook, for the health tests: while the file this names exists, every sync that
 * would program a new snapshot fails (as a data plane that cannot be programmed would),
 * so queued changes wait and /healthz turns 503 after twice the sync period.
 */
export const SYNC_FAULT_ENV = 'TAPIR_TEST_SYNC_FAULT_FILE';
/**
 * Cluster mode: seconds without a byte on a watch (bookmarks included) before it counts
 * as stalled and is restarted; default 150. The lab sets 30 (its API server sends a
 * bookmark every 10 s), so a stalled watch is noticed within a test.
 */
export const WATCH_IDLE_ENV = 'TAPIR_WATCH_IDLE_SECONDS';

export interface ServiceSyncOptions {
  config: AgentConfig;
  onSnapshot(snapshot: ServiceSnapshot): void;
  log(message: string): void;
  /** Health and metrics: told of queued changes, syncs and this node's Node. */
  observer?: SyncObserver | undefined;
  /** Cluster mode: every Node, whenever one joins, changes or leaves (after the first list). */
  onNodes?(nodes: readonly NodeObject[]): void;
}

export class ServiceSync {
  readonly #controller: ServiceController;
  readonly #steering: Steering;
  readonly #localSteering: LocalSteering;
  /** The same for the node's IPv6 node-port address; null without one. */
  readonly #localSteering6: LocalSteering | null;
  readonly #health: HealthCheckServers;
  readonly #config: AgentConfig;
  readonly #log: (m: string) => void;
  #snapshot: ServiceSnapshot | null = null;
  // Steering updates run one after another, newest rules last.
  #steeringQueue: Promise<void> = Promise.resolve();

  /** Where the objects come from: the manifest directory, or (cluster mode) the Kubernetes API. */
  readonly source: ObjectSource;

  constructor(opts: ServiceSyncOptions) {
    const c = opts.config;
    this.#config = c;
    this.#log = opts.log;
    this.#steering = new Steering(c.underlayInterface, c.hostTun);
    this.#localSteering = new LocalSteering(c.hostTun, c.underlayAddress, c.nodePortAddresses.some((a) => a >>> 24 === 127));
    this.#localSteering6 = c.nodePortAddressesV6.length === 0 ? null : new LocalSteering(c.hostTun, ipv6ToString(c.nodePortAddressesV6[0]!), false);
    this.#health = new HealthCheckServers(opts.log);
    if (c.kubernetes !== null) {
      this.source = new KubernetesSource({
        api: c.kubernetes,
        // What kube-proxy watches, and the Nodes the overlay routes to.
        kinds: [
          { kind: Kind.SERVICE, labelSelector: PROXY_LABEL_SELECTOR },
          { kind: Kind.ENDPOINT_SLICE, labelSelector: PROXY_LABEL_SELECTOR },
          { kind: Kind.NODE },
        ],
        log: (m) => opts.log(`kubernetes: ${m}`),
        onRestart: (kind, reason) => opts.observer?.watchRestarted?.(kind, reason),
        onReachable: (reachable) => opts.observer?.apiReachable?.(reachable),
        ...(Number(process.env[WATCH_IDLE_ENV]) > 0 ? { watchIdleMs: Number(process.env[WATCH_IDLE_ENV]) * 1000 } : {}),
      });
      if (opts.onNodes !== undefined) this.#watchNodes(this.source, opts.onNodes);
    } else {
      this.source = new ManifestDir({ dir: c.manifests ?? '' });
    }
    this.#controller = new ServiceController({
      source: this.source,
      cluster: c.kubernetes !== null,
      // Node ports on the node's addresses of both families (IPv6 ones for the IPv6 NAT's half).
      node: {
        name: c.nodeName, ...(c.zone !== '' ? { zone: c.zone } : {}),
        nodePortAddresses: [...c.nodePortAddresses.map(ipv4ToString), ...c.nodePortAddressesV6.map((a) => ipv6ToString(a))],
      },
      serviceCIDR: c.serviceCIDR,
      // A dual-stack cluster (serviceCIDRv6 set): manifest mode allocates and accepts IPv6 cluster IPs too.
      ...(c.serviceCIDRv6 !== null ? { serviceCIDRs: { families: ['IPv4', 'IPv6'] as const, v4: c.serviceCIDR, v6: c.serviceCIDRv6 } } : {}),
      nodePortRange: c.nodePortRange,
      minSyncIntervalMs: c.minSyncIntervalMs,
      maxSyncIntervalMs: c.maxSyncIntervalMs,
      onSnapshot: (s) => {
        const fault = process.env[SYNC_FAULT_ENV];
        if (fault !== undefined && fault !== '' && existsSync(fault)) throw new Error(`sync fault injected (${SYNC_FAULT_ENV}: ${fault} exists)`);
        if (c.dns !== null) s = withoutClusterDns(s, c.dns.clusterDNS, c.dns.clusterDNS6);
        this.#snapshot = s;
        opts.onSnapshot(s);
        this.#program(s);
      },
      onError: (err) => opts.log(`services: ${err.message}`),
      ...(opts.observer === undefined ? {} : { observer: opts.observer }),
    });
  }

  /** The last compiled ClusterView; undefined before the first sync. */
  get view(): ClusterView | undefined {
    return this.#controller.view;
  }

  /** Every compiled ClusterView (the DNS server's input), from the next sync on; returns the unsubscribe. */
  subscribe(consume: ClusterViewConsumer): () => void {
    return this.#controller.subscribe(consume);
  }

  /** Changes waiting for the next sync (the *_changes_pending metrics). */
  pendingChanges(): { services: number; endpoints: number } {
    return this.#controller.pendingChanges();
  }

  get snapshot(): ServiceSnapshot | null {
    return this.#snapshot;
  }

  /** For `status`-style output: the services as the control side sees them. */
  describe(): unknown[] {
    return this.#controller.describe() as unknown[];
  }

  /** Hands every Node to `onNodes` after each change, once Nodes have synced. */
  #watchNodes(source: ObjectSource, onNodes: (nodes: readonly NodeObject[]) => void): void {
    const nodes = new Map<string, NodeObject>();
    let synced = false;
    source.watch({
      onChange: ({ previous, current }) => {
        const obj = current ?? previous;
        if (obj?.kind !== 'Node') return;
        if (current === undefined) nodes.delete(obj.metadata.name);
        else nodes.set(obj.metadata.name, current as NodeObject);
        if (synced) onNodes([...nodes.values()]);
      },
      onSynced: (kind) => {
        if (kind !== Kind.NODE) return;
        synced = true;
        onNodes([...nodes.values()]);
      },
      onProblems: () => {},
      onError: () => {},
    });
  }

  async start(): Promise<void> {
    await this.#steering.init();
    await this.#localSteering.init();
    await this.#localSteering6?.init();
    await this.#controller.start();
    await this.#steeringQueue;
  }

  #program(s: ServiceSnapshot): void {
    // Load-balancer and external IPs of both families, per service port (the local
    // steering's); the tc hook takes their addresses alone (steeringBatch dedups them).
    const frontends: { ip: number; protocol: number; port: number }[] = [];
    const frontends6: { ip: string; protocol: number; port: number }[] = [];
    for (const p of s.ports) for (const ip of [...p.loadBalancerIPs, ...p.externalIPs]) frontends.push({ ip, protocol: p.protocol, port: p.port });
    for (const p of s.ports6 ?? []) for (const ip of [...p.loadBalancerIPs, ...p.externalIPs]) frontends6.push({ ip, protocol: p.protocol, port: p.port });
    // The health checks' listeners, whose ports stay with the node's stack (both families' Services).
    this.#health.update(s);
    const healthCheckPorts = this.#health.ports;
    const c = this.#config;
    const rules = {
      nodeIP: c.underlayAddress, nodePortRange: c.nodePortRange, healthCheckPorts, serviceIPs: frontends.map((f) => f.ip),
      nodeIPs6: c.nodePortAddressesV6, serviceIPs6: frontends6.map((f) => f.ip),
    };
    const local = { nodePortAddresses: c.nodePortAddresses, nodePortRange: c.nodePortRange, healthCheckPorts, frontends };
    const local6 = { nodePortAddresses: c.nodePortAddressesV6.map((a) => ipv6ToString(a)), nodePortRange: c.nodePortRange, healthCheckPorts, frontends: frontends6 };
    this.#steeringQueue = this.#steeringQueue
      .then(() => this.#steering.apply(rules)).catch((err: Error) => this.#log(`steering: ${err.message}`))
      .then(() => this.#localSteering.apply(local)).catch((err: Error) => this.#log(`steering (node's own traffic): ${err.message}`))
      .then(() => this.#localSteering6?.apply(local6)).catch((err: Error) => this.#log(`steering (node's own IPv6 traffic): ${err.message}`));
  }

  /**
   * Stops watching and serving health checks. The kernel hooks stay unless `remove`: an
   * agent restarting (an upgrade) leaves them for its successor, as kube-proxy leaves its
   * rules, so that node-port traffic from outside meanwhile waits in the host TUN for a
   * retransmission instead of meeting the node's stack (which would reset it), and the
   * node's own connections to node ports keep their route.
   */
  async stop(opts: { remove?: boolean } = {}): Promise<void> {
    this.#controller.stop();
    this.#health.close();
    await this.#steeringQueue;
    if (opts.remove !== true) return;
    await this.#steering.close();
    await this.#localSteering.remove().catch((err: Error) => this.#log(`steering (node's own traffic): ${err.message}`));
    await this.#localSteering6?.remove().catch((err: Error) => this.#log(`steering (node's own IPv6 traffic): ${err.message}`));
  }
}

// The agent's Prometheus metrics (prom-client), served on the metrics bind address with
// /proxyMode and /configz as kube-proxy's metrics server serves them. kube-proxy's names
// (pkg/proxy/metrics/metrics.go) where the meaning is the same; tapir_* for the data
// plane. The data plane's numbers are read from its existing counters when scraped
// (collect callbacks): nothing is added to the per-packet path. Sync metrics are
// observed on the control side's own events (SyncObserver).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Datapath } from '../datapath/datapath.ts';
import { busyPollStats } from '../device/busy-poll.ts';
import { BATCH_SIZE_BUCKETS, dropNames, DROP_SLOTS, type PortCounters } from '../datapath/counters.ts';
import { PortKind } from '../datapath/port.ts';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';
import { natReasonNames, verdictNames } from '../services/nat-codes.ts';
import { conntrackCounterNames } from '../tables/conntrack.ts';
import { closeServer, listen, type ProxyHealth } from '../control/proxy-health.ts';
import type { NodeState, SyncObserver, SyncResult } from '../control/sync-observer.ts';

/** What the metrics read of the agent, at scrape time. */
export interface MetricsHost {
  /** null until the agent has started (the servers listen before). */
  datapath(): Datapath | null;
  /** Changes waiting for the next sync; null without a service proxy. */
  pendingChanges(): { services: number; endpoints: number } | null;
  /** The programmed snapshot; null before the first sync or without a service proxy. */
  serviceSnapshot(): ServiceSnapshot | null;
  readonly health: ProxyHealth;
  /** The effective configuration, for /configz. */
  configz(): unknown;
  /** Registries rendered after the agent's own (the DNS server's, with CoreDNS's names). */
  extraRegistries?(): readonly Registry[];
}

/** kube-proxy's buckets: ExponentialBuckets(0.001, 2, 15). */
const SYNC_BUCKETS = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);
/** kube-proxy's: 0.25 s, 0.5 s, 1..59 s, 60..115 s by 5, 120..300 s by 30. */
const PROGRAMMING_BUCKETS = [
  0.25, 0.5,
  ...Array.from({ length: 59 }, (_, i) => i + 1),
  ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i),
  ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i),
];

/** Conntrack counter (conntrackCounterNames) -> metric name. */
const CONNTRACK_METRICS: Readonly<Record<string, [string, string]>> = {
  inserted: ['tapir_conntrack_inserts_total', 'Conntrack entries created (new service flows).'],
  expired: ['tapir_conntrack_expirations_total', 'Conntrack entries removed after their timeout.'],
  evicted: ['tapir_conntrack_evictions_total', 'Conntrack entries evicted to make room in a full table (early drop).'],
  'dropped-full': ['tapir_conntrack_full_drops_total', 'New flows refused because the conntrack table was full and nothing could be evicted.'],
  invalid: ['tapir_conntrack_invalid_total', 'Packets invalid for their flow\'s TCP state.'],
  flushed: ['tapir_conntrack_flushes_total', 'Conntrack entries flushed (UDP flows to removed endpoints).'],
  removed: ['tapir_conntrack_removals_total', 'Conntrack entries removed otherwise (closed flows replaced by a new SYN).'],
  'source-limited': ['tapir_conntrack_source_limited_total', 'New flows refused because their source held its share of unanswered entries.'],
  sweeps: ['tapir_conntrack_gc_sweeps_total', 'Complete garbage-collection passes over the conntrack table.'],
};

export class AgentMetrics implements SyncObserver {
  readonly registry = new Registry();
  readonly #host: MetricsHost;
  readonly #syncDuration: Histogram;
  readonly #programming: Histogram;
  readonly #lastSync: Gauge;
  readonly #lastQueued: Gauge;
  readonly #serviceChanges: Counter;
  readonly #endpointChanges: Counter;
  readonly #syncFailures: Counter;
  readonly #watchRestarts: Counter;

  constructor(host: MetricsHost) {
    this.#host = host;
    const registers = [this.registry];
    const dp = (): Datapath | null => host.datapath();

    // ---- kube-proxy's ------------------------------------------------------------
    this.#syncDuration = new Histogram({ name: 'kubeproxy_sync_proxy_rules_duration_seconds', help: 'SyncProxyRules latency in seconds', buckets: SYNC_BUCKETS, registers });
    this.#programming = new Histogram({ name: 'kubeproxy_network_programming_duration_seconds', help: 'In Cluster Network Programming Latency in seconds', buckets: PROGRAMMING_BUCKETS, registers });
    this.#lastSync = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds', help: 'The last time proxy rules were successfully synced', registers });
    this.#lastQueued = new Gauge({ name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds', help: 'The last time a sync of proxy rules was queued', registers });
    this.#serviceChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_service_changes_total', help: 'Cumulative proxy rules Service changes', registers });
    this.#endpointChanges = new Counter({ name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total', help: 'Cumulative proxy rules Endpoint changes', registers });
    new Gauge({
      name: 'kubeproxy_sync_proxy_rules_service_changes_pending', help: 'Pending proxy rules Service changes', registers,
      collect() { this.set(host.pendingChanges()?.services ?? 0); },
    });
    new Gauge({
      name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending', help: 'Pending proxy rules Endpoint changes', registers,
      collect() { this.set(host.pendingChanges()?.endpoints ?? 0); },
    });
    new Gauge({
      name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total', help: 'Number of services with a Local traffic policy and no endpoints', labelNames: ['traffic_policy'], registers,
      collect() {
        const n = noLocalEndpoints(host.serviceSnapshot());
        this.set({ traffic_policy: 'internal' }, n.internal);
        this.set({ traffic_policy: 'external' }, n.external);
      },
    });
    new Counter({
      name: 'kubeproxy_proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status', labelNames: ['code'], registers,
      collect() { setCounts(this, host.health.answers.healthz); },
    });
    new Counter({
      name: 'kubeproxy_proxy_livez_total', help: 'Cumulative proxy livez HTTP status', labelNames: ['code'], registers,
      collect() { setCounts(this, host.health.answers.livez); },
    });

    // ---- Tapir's control side ---------------------------------------------------
    this.#syncFailures = new Counter({ name: 'tapir_sync_proxy_rules_failures_total', help: 'Service syncs that failed (retried as full syncs)', registers });
    this.#watchRestarts = new Counter({ name: 'tapir_watch_restarts_total', help: 'Restarts of a Kubernetes API watch (error, stall, 410 Gone), by kind and reason', labelNames: ['kind', 'reason'], registers });

    // ---- the data plane, read when scraped ---------------------------------------
    const portCounter = (name: string, help: string, read: (c: PortCounters) => number): void => {
      new Counter({
        name, help, labelNames: ['port', 'kind'], registers,
        collect() {
          this.reset();
          for (const { port, kind, counters } of ports(dp())) this.inc({ port, kind }, read(counters));
        },
      });
    };
    portCounter('tapir_port_rx_frames_total', 'Frames (underlay: datagrams) received per port', (c) => c.rxFrames);
    portCounter('tapir_port_rx_bytes_total', 'Bytes received per port', (c) => c.rxBytes);
    portCounter('tapir_port_tx_frames_total', 'Frames (underlay: datagrams) sent per port', (c) => c.txFrames);
    portCounter('tapir_port_tx_bytes_total', 'Bytes sent per port', (c) => c.txBytes);
    portCounter('tapir_rx_batches_total', 'Device reads that returned frames, per port', (c) => c.rxBatches);
    new Counter({
      name: 'tapir_drops_total', help: 'Frames dropped per port and reason (tapir stats names)', labelNames: ['port', 'kind', 'reason'], registers,
      collect() {
        this.reset();
        for (const { port, kind, counters } of ports(dp())) {
          for (let i = 1; i < DROP_SLOTS; i++) if (counters.drops[i]! > 0) this.inc({ port, kind, reason: dropNames[i]! }, counters.drops[i]!);
        }
      },
    });
    this.registry.registerMetric(new BatchSizeHistogram(dp) as unknown as Counter);
    new Counter({
      name: 'tapir_dns_datapath_queries_total', help: 'Pods\' UDP queries to the cluster DNS addresses seen by the data path: answered in place (zone or cache), or passed on to the DNS server\'s socket', labelNames: ['result'], registers,
      collect() {
        this.reset();
        this.inc({ result: 'answered' }, dp()?.localUdpAnswered ?? 0);
        this.inc({ result: 'passed' }, dp()?.localUdpPassed ?? 0);
      },
    });
    new Counter({ name: 'tapir_port_failures_total', help: 'Ports taken out of the data plane because their device failed', registers, collect() { setTotal(this, dp()?.portFailures ?? 0); } });
    new Counter({ name: 'tapir_underlay_receive_errors_total', help: 'Errors reading the underlay socket', registers, collect() { setTotal(this, dp()?.underlayRecvErrors ?? 0); } });
    new Counter({ name: 'tapir_busy_polls_total', help: 'Busy polls after traffic (busyPollMicros): at most one per wakeup', registers, collect() { setTotal(this, busyPollStats()?.spins ?? 0); } });
    new Counter({ name: 'tapir_busy_poll_callbacks_total', help: 'Port and underlay reads run from a busy poll: wakeups the data path did not wait for', registers, collect() { setTotal(this, busyPollStats()?.callbacks ?? 0); } });
    new Counter({ name: 'tapir_tunnel_superframes_sent_total', help: 'TSO frames for other nodes handed to the kernel whole, as UDP-tunnel super-frames', registers, collect() { setTotal(this, dp()?.superFrames.sent ?? 0); } });
    new Counter({ name: 'tapir_tunnel_superframes_received_total', help: 'UDP-tunnel super-frames received whole from other nodes, passed on as TSO frames', registers, collect() { setTotal(this, dp()?.superFrames.received ?? 0); } });
    new Counter({
      name: 'tapir_answer_reads_total', help: 'Reads of ports a wakeup had just written to, by whether the answer was already there', labelNames: ['found'], registers,
      collect() {
        this.reset();
        const d = dp();
        if (d !== null) {
          this.inc({ found: 'true' }, d.chaseHits);
          this.inc({ found: 'false' }, d.chaseMisses);
        }
      },
    });
    new Counter({ name: 'tapir_coalesced_segments_total', help: 'TCP segments from the underlay coalesced into larger frames for pods', registers, collect() { setTotal(this, dp()?.coalescedSegments ?? 0); } });
    new Counter({
      name: 'tapir_service_nat_packets_total', help: 'Packets through the service NAT by verdict', labelNames: ['verdict'], registers,
      collect() {
        this.reset();
        const nat = dp()?.serviceNat ?? null;
        if (nat !== null) verdictNames.forEach((v, i) => this.inc({ verdict: v }, nat.verdicts[i]!));
      },
    });
    new Counter({
      name: 'tapir_service_nat_refusals_total', help: 'Service packets dropped or rejected, by reason', labelNames: ['reason'], registers,
      collect() {
        this.reset();
        const nat = dp()?.serviceNat ?? null;
        if (nat !== null) for (let i = 1; i < natReasonNames.length; i++) if (nat.reasons[i]! > 0) this.inc({ reason: natReasonNames[i]! }, nat.reasons[i]!);
      },
    });
    new Gauge({ name: 'tapir_conntrack_entries', help: 'Live conntrack entries', registers, collect() { this.set(dp()?.serviceNat?.conntrack.size ?? 0); } });
    new Counter({
      name: 'tapir_service_nat6_packets_total', help: 'IPv6 packets through the service NAT (NAT66) by verdict', labelNames: ['verdict'], registers,
      collect() {
        this.reset();
        const nat = dp()?.serviceNat6 ?? null;
        if (nat !== null) verdictNames.forEach((v, i) => this.inc({ verdict: v }, nat.verdicts[i]!));
      },
    });
    new Gauge({ name: 'tapir_conntrack6_entries', help: 'Live IPv6 conntrack entries (NAT66)', registers, collect() { this.set(dp()?.serviceNat6?.conntrack.size ?? 0); } });
    new Gauge({ name: 'tapir_conntrack_capacity', help: 'Conntrack table size (entries)', registers, collect() { this.set(dp()?.serviceNat?.conntrack.capacity ?? 0); } });
    conntrackCounterNames.forEach((counter, i) => {
      const [name, help] = CONNTRACK_METRICS[counter] ?? [`tapir_conntrack_${counter.replace(/-/g, '_')}_total`, `Conntrack ${counter}`];
      new Counter({ name, help, registers, collect() { setTotal(this, dp()?.serviceNat?.conntrack.counters[i] ?? 0); } });
    });

    // ---- the process (kube-proxy exposes these through client_golang) ---------------
    const startSeconds = Math.floor(Date.now() / 1000 - process.uptime());
    new Gauge({ name: 'process_start_time_seconds', help: 'Start time of the process since unix epoch in seconds.', registers, collect() { this.set(startSeconds); } });
    new Counter({
      name: 'process_cpu_seconds_total', help: 'Total user and system CPU time spent in seconds.', registers,
      collect() { const u = process.cpuUsage(); setTotal(this, (u.user + u.system) / 1e6); },
    });
    new Gauge({ name: 'process_resident_memory_bytes', help: 'Resident memory size in bytes.', registers, collect() { this.set(process.memoryUsage.rss()); } });
  }

  changeQueued(kind: 'Service' | 'EndpointSlice' | 'Endpoints'): void {
    if (kind === 'Service') this.#serviceChanges.inc();
    else this.#endpointChanges.inc();
    this.#lastQueued.set(Date.now() / 1000);
  }

  synced(result: SyncResult): void {
    this.#syncDuration.observe(result.durationSeconds);
    if (!result.ok) {
      this.#syncFailures.inc();
      return;
    }
    this.#lastSync.set(Date.now() / 1000);
    for (const s of result.programmingLatencies) this.#programming.observe(s);
  }

  nodeChanged(_node: NodeState | null): void {}

  /** The Kubernetes source restarted a watch (`reason`: error, stalled, gone, ...). */
  watchRestarted(kind: string, reason: string): void {
    this.#watchRestarts.inc({ kind, reason });
  }

  /**
   * The metrics in Prometheus text format (what registry.metrics() renders), one metric
   * family at a time with a turn of the event loop between them: the agent's one thread
   * also runs the data plane, and a scrape of a node with hundreds of pods takes tens
   * of milliseconds of rendering (bench/metrics-scrape.ts), so the data plane's batches
   * run between families instead of waiting for the whole scrape. `stall` gets the
   * longest single step, in milliseconds.
   */
  async text(stall?: { ms: number }): Promise<string> {
    const parts: string[] = [];
    for (const registry of [this.registry, ...(this.#host.extraRegistries?.() ?? [])]) {
      for (const metric of registry.getMetricsAsArray()) {
        const t0 = performance.now();
        parts.push(await registry.getSingleMetricAsString(metric.name));
        if (stall !== undefined) stall.ms = Math.max(stall.ms, performance.now() - t0);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    return `${parts.join('\n\n')}\n`;
  }
}

/** Service ports with a Local traffic policy that this node has no endpoint for (kube-proxy counts them per sync). */
export function noLocalEndpoints(snapshot: ServiceSnapshot | null): { internal: number; external: number } {
  let internal = 0;
  let external = 0;
  for (const p of snapshot?.ports ?? []) {
    if (p.clusterIP === 0) continue;
    if (p.internalLocal && p.clusterEndpoints.length === 0) internal++;
    const reachableFromOutside = p.nodePort > 0 || p.loadBalancerIPs.length > 0 || p.externalIPs.length > 0;
    if (p.externalLocal && reachableFromOutside && p.externalEndpoints.length === 0) external++;
  }
  return { internal, external };
}

function ports(dp: Datapath | null): { port: string; kind: string; counters: PortCounters }[] {
  const out: { port: string; kind: string; counters: PortCounters }[] = [];
  if (dp === null) return out;
  for (const p of dp.ports) if (p !== undefined) out.push({ port: p.name, kind: p.kind === PortKind.POD ? 'pod' : 'host', counters: p.counters });
  out.push({ port: 'underlay', kind: 'underlay', counters: dp.underlayCounters });
  return out;
}

function setTotal(c: Counter, value: number): void {
  c.reset();
  c.inc(value);
}

function setCounts(c: Counter, counts: Readonly<Record<number, number>>): void {
  c.reset();
  for (const [code, n] of Object.entries(counts)) c.inc({ code }, n);
}

/**
 * `tapir_rx_batch_frames`: frames per receive batch, per kind of port (pod, host,
 * underlay: per port would be ten series a pod), as a Prometheus histogram made at
 * scrape time from the ports' power-of-two bucket counts (PortCounters). prom-client's
 * Histogram only takes observations, so this is a metric of its own.
 */
class BatchSizeHistogram {
  readonly name = 'tapir_rx_batch_frames';
  readonly help = 'Frames per receive batch, by kind of port';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #dp: () => Datapath | null;

  constructor(dp: () => Datapath | null) {
    this.#dp = dp;
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const byKind = new Map<string, { buckets: Float64Array; batches: number; frames: number }>();
    for (const { kind, counters } of ports(this.#dp())) {
      let k = byKind.get(kind);
      if (k === undefined) byKind.set(kind, k = { buckets: new Float64Array(BATCH_SIZE_BUCKETS), batches: 0, frames: 0 });
      for (let i = 0; i < BATCH_SIZE_BUCKETS; i++) k.buckets[i]! += counters.rxBatchSizes[i]!;
      k.batches += counters.rxBatches;
      k.frames += counters.rxBatchFrames;
    }
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [kind, k] of byKind) {
      let cumulative = 0;
      for (let i = 0; i < BATCH_SIZE_BUCKETS; i++) {
        cumulative += k.buckets[i]!;
        // Bucket i holds 2^i .. 2^(i+1)-1 frames; the last one is the 64-frame batch.
        const le = i === BATCH_SIZE_BUCKETS - 1 ? 64 : 2 ** (i + 1) - 1;
        values.push({ labels: { kind, le }, value: cumulative, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { kind, le: '+Inf' }, value: k.batches, metricName: `${this.name}_bucket` });
      values.push({ labels: { kind }, value: k.frames, metricName: `${this.name}_sum` });
      values.push({ labels: { kind }, value: k.batches, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** /metrics, /proxyMode, /configz (and kube-proxy's plain /healthz) on the metrics bind address. */
export class MetricsServer {
  readonly #server: Server;
  readonly #metrics: AgentMetrics;
  readonly #host: MetricsHost;

  private constructor(metrics: AgentMetrics, host: MetricsHost) {
    this.#metrics = metrics;
    this.#host = host;
    this.#server = createServer((req, res) => void this.#serve(req, res));
  }

  static async listen(metrics: AgentMetrics, host: MetricsHost, address: string, port: number): Promise<MetricsServer> {
    const s = new MetricsServer(metrics, host);
    await listen(s.#server, address, port);
    return s;
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    try {
      if (path === '/metrics') {
        const text = await this.#metrics.text();
        res.writeHead(200, { 'Content-Type': this.#metrics.registry.contentType });
        res.end(text);
      } else if (path === '/proxyMode') {
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
        res.end('tapir');
      } else if (path === '/configz') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
        res.end(JSON.stringify(this.#host.configz()));
      } else if (path === '/healthz') {
        // kube-proxy's metrics server answers its generic healthz ("ok"): the process serves.
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
        res.end('ok');
      } else {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
        res.end('404 page not found\n');
      }
    } catch (err) {
      res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${(err as Error).message}\n`);
    }
  }

  close(): Promise<void> {
    return closeServer(this.#server);
  }
}

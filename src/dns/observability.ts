// CoreDNS's `health`, `ready` and `prometheus` for Tapir's DNS server.
//
// - health: GET /health -> 200 "OK" while the process serves, also during the lameduck
//   (CoreDNS keeps it OK while draining, so a liveness probe does not kill a server
//   that is finishing its queries).
// - ready: GET /ready -> 200 "OK" once every plugin that reports readiness is ready (a
//   `kubernetes` zone after its first view), else 503 with their names, comma-separated,
//   as CoreDNS writes them; 503 from the start of a stop, so endpoints drop the server
//   while it drains.
// - prometheus: GET /metrics from one prom-client Registry (`DnsMetrics.registry`, which
//   the agent may merge into its own /metrics) with CoreDNS's names and labels where the
//   meaning is the same (docs/dns.md lists them).
//
// The per-query counters are plain Float64Arrays indexed by numbers the server computes
// from a route (server block zone on one listener), protocol, family, query type, rcode
// and plugin: a query touches no string, label object or Map. prom-client only sees
// them at scrape time, through metric objects whose get() turns the arrays into series.
import { createServer, type Server } from 'node:http';
import { Registry, type Metric } from 'prom-client';
import type { HostPort } from './corefile-config.ts';

/** Query types with their own `type` label (CoreDNS's plugin/metrics/vars monitorType); the others are "other". */
export const MONITORED_TYPES: readonly [number, string][] = [
  [1, 'A'], [28, 'AAAA'], [5, 'CNAME'], [48, 'DNSKEY'], [43, 'DS'], [15, 'MX'], [50, 'NSEC3'], [47, 'NSEC'], [2, 'NS'],
  [12, 'PTR'], [46, 'RRSIG'], [6, 'SOA'], [33, 'SRV'], [16, 'TXT'], [65, 'HTTPS'], [251, 'IXFR'], [252, 'AXFR'], [255, 'ANY'],
];
export const TYPE_SLOTS = MONITORED_TYPES.length + 1;
const OTHER_TYPE = MONITORED_TYPES.length;
const TYPE_NAMES = [...MONITORED_TYPES.map(([, n]) => n), 'other'];
/** qtype -> type slot, one byte per possible qtype so the lookup is one load. */
const TYPE_SLOT = new Uint8Array(65536).fill(OTHER_TYPE);
for (let i = 0; i < MONITORED_TYPES.length; i++) TYPE_SLOT[MONITORED_TYPES[i]![0]] = i;
export function typeSlot(qtype: number): number { return TYPE_SLOT[qtype & 0xffff]!; }

/** RFC 6895's names of the 4-bit header rcodes, as CoreDNS (miekg/dns RcodeToString) labels them. */
export const RCODE_NAMES: readonly string[] = [
  'NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE',
  'RCODE11', 'RCODE12', 'RCODE13', 'RCODE14', 'RCODE15',
];
export const RCODE_SLOTS = 16;

/** The `plugin` label of coredns_dns_responses_total: which plugin wrote the response ('' = the server itself). */
export const Writer = { SERVER: 0, CACHE: 1, KUBERNETES: 2, FORWARD: 3, LOOP: 4 } as const;
export type Writer = (typeof Writer)[keyof typeof Writer];
const WRITER_NAMES = ['', 'cache', 'kubernetes', 'forward', 'loop'];
export const WRITER_SLOTS = WRITER_NAMES.length;

export const Proto = { UDP: 0, TCP: 1 } as const;
export type Proto = (typeof Proto)[keyof typeof Proto];
const PROTO_NAMES = ['udp', 'tcp'];

/** plugin.TimeBuckets: prometheus.ExponentialBuckets(0.00025, 2, 16), observed in whole microseconds. */
const TIME_BUCKETS_US = Array.from({ length: 16 }, (_, i) => 250 * 2 ** i);
const TIME_LABELS = Array.from({ length: 16 }, (_, i) => String(0.00025 * 2 ** i));
/** CoreDNS's size buckets (plugin/metrics/vars). */
const SIZE_BUCKETS = [0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3];

type Labels = Record<string, string>;
interface SeriesValue { value: number; labels: Labels; metricName?: string }

/** A metric prom-client's Registry can hold and print (its get() is what Registry.metrics() calls). */
class ArrayMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  readonly aggregator = 'sum';
  readonly #values: () => SeriesValue[];
  constructor(name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => SeriesValue[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.#values = values;
  }
  get(): Promise<{ name: string; help: string; type: string; values: SeriesValue[]; aggregator: string }> {
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, values: this.#values(), aggregator: this.aggregator });
  }
  reset(): void {}
}

/** A histogram over a fixed number of series; observe() is two array writes and a short bucket scan. */
class ArrayHistogram {
  readonly bounds: number[];
  readonly counts: Float64Array;
  readonly sums: Float64Array;
  readonly totals: Float64Array;
  /** The `le` labels, and the factor from observed units to the metric's (microseconds to seconds). */
  readonly #labels: string[];
  readonly #scale: number;
  constructor(series: number, bounds: number[], labels = bounds.map(String), scale = 1) {
    this.bounds = bounds;
    this.#labels = labels;
    this.#scale = scale;
    this.counts = new Float64Array(series * bounds.length);
    this.sums = new Float64Array(series);
    this.totals = new Float64Array(series);
  }
  observe(series: number, value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) this.counts[series * b.length + i]!++;
    this.sums[series]! += value;
    this.totals[series]!++;
  }
  series(name: string, labelsOf: (s: number) => Labels): SeriesValue[] {
    const out: SeriesValue[] = [];
    const n = this.bounds.length;
    for (let s = 0; s < this.totals.length; s++) {
      if (this.totals[s] === 0) continue;
      const labels = labelsOf(s);
      let cumulative = 0;
      for (let i = 0; i < n; i++) {
        cumulative += this.counts[s * n + i]!;
        out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: this.#labels[i]! }, value: cumulative });
      }
      out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: this.totals[s]! });
      out.push({ metricName: `${name}_sum`, labels, value: this.sums[s]! * this.#scale });
      out.push({ metricName: `${name}_count`, labels, value: this.totals[s]! });
    }
    return out;
  }
}

/** One server block zone on one listener: the `server` and `zone` labels. */
export interface RouteLabels {
  /** "dns://:53", "dns://10.96.0.10:53" (CoreDNS's server label). */
  server: string;
  /** "cluster.local.", "." */
  zone: string;
}

/** What the metrics read on scrape from the plugins of each server block. */
export interface MetricsSources {
  caches(): { server: string; zones: string; stats: { hits: { success: number; denial: number }; misses: number; entries: { success: number; denial: number }; evictions?: { success: number; denial: number } } }[];
  forwarders(): { server: string; stats: { upstream: string; requests: number; failures: number; healthy: boolean; healthcheckFailures?: number }[]; rejects: number; broken: number }[];
  /** { server, zone, name } of every plugin of every block (coredns_plugin_enabled). */
  plugins(): { server: string; zone: string; name: string }[];
}

/** The counters of one DnsServer, by route index (see RouteLabels). */
export class DnsMetrics {
  readonly registry = new Registry();
  readonly routes: RouteLabels[];
  /** [route][proto][family][type] */
  readonly requests: Float64Array;
  /** [route][rcode][writer] */
  readonly responses: Float64Array;
  /** Forwarded responses by rcode (coredns_forward_responses_total, without CoreDNS's `to`). */
  readonly forwardResponses = new Float64Array(RCODE_SLOTS);
  /** Queries that could not be read at all (too short, a response): dropped, no answer. */
  dropped = 0;
  /** Handler failures (a bug): answered SERVFAIL, counted as coredns_panics_total. */
  panics = 0;
  /** [route][type], in microseconds. */
  readonly duration: ArrayHistogram;
  /** [route][proto] */
  readonly requestSize: ArrayHistogram;
  readonly responseSize: ArrayHistogram;

  constructor(routes: RouteLabels[], sources: MetricsSources, version: string) {
    this.routes = routes;
    const r = Math.max(1, routes.length);
    this.requests = new Float64Array(r * 2 * 2 * TYPE_SLOTS);
    this.responses = new Float64Array(r * RCODE_SLOTS * WRITER_SLOTS);
    this.duration = new ArrayHistogram(r * TYPE_SLOTS, TIME_BUCKETS_US, TIME_LABELS, 1e-6);
    this.requestSize = new ArrayHistogram(r * 2, SIZE_BUCKETS);
    this.responseSize = new ArrayHistogram(r * 2, SIZE_BUCKETS);
    const route = (i: number): Labels => ({ server: routes[i]!.server, zone: routes[i]!.zone, view: '' });
    const add = (m: ArrayMetric): void => { this.registry.registerMetric(m as unknown as Metric); };

    add(new ArrayMetric('coredns_dns_requests_total', 'Counter of DNS requests made per zone, protocol and family.', 'counter', () => {
      const out: SeriesValue[] = [];
      for (let i = 0; i < this.requests.length; i++) {
        const v = this.requests[i]!;
        if (v === 0) continue;
        const type = i % TYPE_SLOTS;
        const family = Math.floor(i / TYPE_SLOTS) % 2;
        const proto = Math.floor(i / (TYPE_SLOTS * 2)) % 2;
        const rt = Math.floor(i / (TYPE_SLOTS * 4));
        out.push({ value: v, labels: { ...route(rt), proto: PROTO_NAMES[proto]!, family: String(family + 1), type: TYPE_NAMES[type]! } });
      }
      return out;
    }));
    add(new ArrayMetric('coredns_dns_responses_total', 'Counter of response status codes.', 'counter', () => {
      const out: SeriesValue[] = [];
      for (let i = 0; i < this.responses.length; i++) {
        const v = this.responses[i]!;
        if (v === 0) continue;
        const writer = i % WRITER_SLOTS;
        const rcode = Math.floor(i / WRITER_SLOTS) % RCODE_SLOTS;
        const rt = Math.floor(i / (WRITER_SLOTS * RCODE_SLOTS));
        out.push({ value: v, labels: { ...route(rt), rcode: RCODE_NAMES[rcode]!, plugin: WRITER_NAMES[writer]! } });
      }
      return out;
    }));
    add(new ArrayMetric('coredns_dns_request_duration_seconds', 'Histogram of the time (in seconds) each request took per zone.', 'histogram',
      () => this.duration.series('coredns_dns_request_duration_seconds', (s) => ({ ...route(Math.floor(s / TYPE_SLOTS)), type: TYPE_NAMES[s % TYPE_SLOTS]! }))));
    add(new ArrayMetric('coredns_dns_request_size_bytes', 'Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.', 'histogram',
      () => this.requestSize.series('coredns_dns_request_size_bytes', (s) => ({ ...route(s >> 1), proto: PROTO_NAMES[s & 1]! }))));
    add(new ArrayMetric('coredns_dns_response_size_bytes', 'Size of the returned response in bytes.', 'histogram',
      () => this.responseSize.series('coredns_dns_response_size_bytes', (s) => ({ ...route(s >> 1), proto: PROTO_NAMES[s & 1]! }))));
    add(new ArrayMetric('coredns_panics_total', 'A metrics that counts the number of panics.', 'counter', () => [{ value: this.panics, labels: {} }]));
    add(new ArrayMetric('tapir_dns_dropped_queries_total', 'Datagrams dropped without an answer: shorter than a DNS header, or not a query (QR set).', 'counter',
      () => [{ value: this.dropped, labels: {} }]));
    add(new ArrayMetric('coredns_build_info', 'A metric with a constant \'1\' value labeled by version, revision, and goversion from which CoreDNS was built.', 'gauge',
      () => [{ value: 1, labels: { version: version, revision: 'tapir', goversion: `node${process.versions.node}` } }]));
    add(new ArrayMetric('coredns_plugin_enabled', 'A metric that indicates whether a plugin is enabled on per server and zone basis.', 'gauge',
      () => sources.plugins().map((p) => ({ value: 1, labels: { server: p.server, zone: p.zone, view: '', name: p.name } }))));
    add(new ArrayMetric('coredns_cache_entries', 'The number of elements in the cache.', 'gauge', () => sources.caches().flatMap((c) => [
      { value: c.stats.entries.success, labels: { server: c.server, type: 'success', zones: c.zones, view: '' } },
      { value: c.stats.entries.denial, labels: { server: c.server, type: 'denial', zones: c.zones, view: '' } },
    ])));
    add(new ArrayMetric('coredns_cache_hits_total', 'The count of cache hits.', 'counter', () => sources.caches().flatMap((c) => [
      { value: c.stats.hits.success, labels: { server: c.server, type: 'success', zones: c.zones, view: '' } },
      { value: c.stats.hits.denial, labels: { server: c.server, type: 'denial', zones: c.zones, view: '' } },
    ])));
    add(new ArrayMetric('coredns_cache_evictions_total', 'The count of cache evictions.', 'counter', () => sources.caches().flatMap((c) => [
      { value: c.stats.evictions?.success ?? 0, labels: { server: c.server, type: 'success', zones: c.zones, view: '' } },
      { value: c.stats.evictions?.denial ?? 0, labels: { server: c.server, type: 'denial', zones: c.zones, view: '' } },
    ])));
    add(new ArrayMetric('coredns_cache_misses_total', 'The count of cache misses. Deprecated, derive misses from cache hits/requests counters.', 'counter',
      () => sources.caches().map((c) => ({ value: c.stats.misses, labels: { server: c.server, zones: c.zones, view: '' } }))));
    add(new ArrayMetric('coredns_forward_requests_total', 'Counter of requests made per upstream.', 'counter',
      () => sources.forwarders().flatMap((f) => f.stats.map((s) => ({ value: s.requests, labels: { to: s.upstream } })))));
    add(new ArrayMetric('coredns_forward_healthcheck_failures_total', 'Counter of the number of failed healthchecks.', 'counter',
      () => sources.forwarders().flatMap((f) => f.stats.map((s) => ({ value: s.healthcheckFailures ?? 0, labels: { to: s.upstream } })))));
    add(new ArrayMetric('tapir_dns_forward_failures_total', 'Attempts to an upstream that failed or timed out.', 'counter',
      () => sources.forwarders().flatMap((f) => f.stats.map((s) => ({ value: s.failures, labels: { to: s.upstream } })))));
    add(new ArrayMetric('coredns_forward_healthcheck_broken_total', 'Counter of the number of complete failures of the healthchecks.', 'counter',
      () => [{ value: sources.forwarders().reduce((sum, f) => sum + f.broken, 0), labels: {} }]));
    add(new ArrayMetric('tapir_dns_forward_upstream_healthy', 'Whether the forwarder counts the upstream healthy (1) or marked down (0).', 'gauge',
      () => sources.forwarders().flatMap((f) => f.stats.map((s) => ({ value: s.healthy ? 1 : 0, labels: { to: s.upstream } })))));
    add(new ArrayMetric('coredns_forward_max_concurrent_rejects_total', 'Counter of the number of queries rejected because the concurrent queries were at maximum.', 'counter',
      () => [{ value: sources.forwarders().reduce((sum, f) => sum + f.rejects, 0), labels: {} }]));
    add(new ArrayMetric('coredns_forward_responses_total', 'Counter of responses received from upstreams, by rcode (without CoreDNS\'s "to" label: docs/dns.md).', 'counter', () => {
      const out: SeriesValue[] = [];
      for (let i = 0; i < RCODE_SLOTS; i++) if (this.forwardResponses[i]! > 0) out.push({ value: this.forwardResponses[i]!, labels: { rcode: RCODE_NAMES[i]! } });
      return out;
    }));
  }

  /** Index into `requests`. */
  requestIndex(route: number, proto: Proto, family: number, type: number): number {
    return ((route * 2 + proto) * 2 + (family - 1)) * TYPE_SLOTS + type;
  }

  /** Index into `responses`. */
  responseIndex(route: number, rcode: number, writer: Writer): number {
    return (route * RCODE_SLOTS + (rcode & 15)) * WRITER_SLOTS + writer;
  }
}

/** What /ready reports: the names of the plugins not ready yet ([] = ready). */
export interface ReadyState {
  notReady(): string[];
}

/**
 * The HTTP side: `health`, `ready` and `prometheus` listeners, one server per distinct
 * address (two server blocks naming the same ":9153" share it, as in CoreDNS).
 */
export class DnsEndpoints {
  readonly #servers = new Map<string, { address: HostPort; paths: Set<string>; server: Server | null }>();
  readonly #metrics: DnsMetrics;
  readonly #ready: ReadyState;
  #stopping = false;
  /** What each listener bound: "path@host:port" entries in the order given, for tests and logs. */
  readonly bound: { paths: string[]; address: string; port: number }[] = [];

  constructor(metrics: DnsMetrics, ready: ReadyState) {
    this.#metrics = metrics;
    this.#ready = ready;
  }

  add(path: '/health' | '/ready' | '/metrics', address: HostPort): void {
    const key = `${address.host}|${address.port}`;
    let entry = this.#servers.get(key);
    if (entry === undefined) {
      entry = { address, paths: new Set(), server: null };
      this.#servers.set(key, entry);
    }
    entry.paths.add(path);
  }

  async listen(): Promise<void> {
    for (const entry of this.#servers.values()) {
      const server = createServer((req, res) => { void this.#handle(entry.paths, req.method ?? 'GET', (req.url ?? '/').split('?')[0]!, res); });
      entry.server = server;
      const host = entry.address.host === '' ? '0.0.0.0' : entry.address.host;
      await new Promise<void>((resolve, reject) => {
        server.once('error', (err) => reject(new Error(`cannot listen on ${host}:${entry.address.port} for ${[...entry.paths].join(', ')}: ${err.message}`, { cause: err })));
        server.listen({ host, port: entry.address.port }, () => {
          server.removeAllListeners('error');
          // Accept errors (EMFILE) are the client's loss; the listener stays.
          server.on('error', () => {});
          resolve();
        });
      });
      const a = server.address();
      if (a !== null && typeof a === 'object') this.bound.push({ paths: [...entry.paths], address: a.address, port: a.port });
    }
  }

  /** From now on /ready says 503 (the lameduck); /health stays OK. */
  stopping(): void {
    this.#stopping = true;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#servers.values()].map((e) => new Promise<void>((resolve) => {
      if (e.server === null) { resolve(); return; }
      e.server.close(() => resolve());
      e.server.closeAllConnections();
    })));
  }

  async #handle(paths: Set<string>, method: string, path: string, res: import('node:http').ServerResponse): Promise<void> {
    if (!paths.has(path)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('404 page not found\n');
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    if (path === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('OK');
    } else if (path === '/ready') {
      const notReady = this.#stopping ? ['lameduck'] : this.#ready.notReady();
      if (notReady.length === 0) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('OK');
      else res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end(notReady.join(', '));
    } else {
      try {
        const text = await this.#metrics.registry.metrics();
        res.writeHead(200, { 'content-type': this.#metrics.registry.contentType }).end(text);
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`metrics: ${(err as Error).message}\n`);
      }
    }
  }
}

// The Ingress proxy's Prometheus metrics (prom-client). ingress-nginx's counterparts are
// nginx_ingress_controller_requests{ingress,service,status} and
// nginx_ingress_controller_request_duration_seconds; Tapir's keep their labels under its
// own prefix. The controller serves `registry` (IngressProxy.metrics).
//
// The two per-request series are counted here, in plain numbers, and handed to the
// registry when it is scraped: prom-client's own counters and
// histograms build a label hash string on every observation, which cost 4-5% of the
// proxy's CPU under keep-alive load (`--cpu-prof`, bench/ingress.ts).
import { Counter, Gauge, Registry, type Metric } from 'prom-client';

/** ingress-nginx's request duration buckets (seconds). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const REQUESTS = 'tapir_ingress_requests_total';
const DURATION = 'tapir_ingress_request_duration_seconds';

/** One Ingress and backend service: its answers by status and its durations. */
interface Series {
  readonly labels: { ingress: string; service: string };
  /** Answers by HTTP status. */
  readonly byStatus: Map<number, number>;
  /** Durations per bucket (not cumulative); the last one is above every bound. */
  readonly buckets: Float64Array;
  sum: number;
  count: number;
}

interface Value { labels: Record<string, string | number>; sharedLabels?: Record<string, string>; value: number; metricName?: string }

/** A metric as a Registry takes one: its name, and the values get() gives when scraped. */
function scraped(name: string, help: string, type: 'counter' | 'histogram', values: () => Value[], reset: () => void): Metric {
  const metric = { name, help, type, aggregator: 'sum', get: () => ({ name, help, type, aggregator: 'sum', values: values() }), reset };
  return metric as unknown as Metric;
}

export class IngressMetrics {
  readonly registry = new Registry();
  /** Series by ingress, then service: the configuration's own strings, so a lookup builds none. */
  readonly #series = new Map<string, Map<string, Series>>();
  readonly #all: Series[] = [];
  readonly #retries: Counter<'service' | 'reason'>;
  readonly #generation: Gauge;
  readonly #configChanges: Counter;

  /** `upstreams()`: how many upstream dispatchers (one per endpoint in use) are open, read at scrape time. */
  constructor(upstreams: () => number) {
    const registers = [this.registry];
    const reset = (): void => { this.#series.clear(); this.#all.length = 0; };
    this.registry.registerMetric(scraped(REQUESTS, 'Client requests answered, by Ingress, backend service and status (499: the client went away).', 'counter', () => this.#requestValues(), reset));
    this.registry.registerMetric(scraped(DURATION, 'Time from a request\'s headers to the end of its response, by Ingress and backend service.', 'histogram', () => this.#durationValues(), reset));
    this.#retries = new Counter({ name: 'tapir_ingress_upstream_retries_total', help: 'Requests sent again to another endpoint, by backend service and reason (connect: nothing was sent; reset: an idempotent request after it was sent).', labelNames: ['service', 'reason'], registers });
    this.#generation = new Gauge({ name: 'tapir_ingress_config_generation', help: 'Generation of the routing configuration being served.', registers });
    new Gauge({ name: 'tapir_ingress_upstream_dispatchers', help: 'Open upstream connection pools (one per endpoint, protocol and connect timeout in use).', registers, collect() { this.set(upstreams()); } });
    this.#configChanges = new Counter({ name: 'tapir_ingress_config_changes_total', help: 'Routing configurations swapped in.', registers });
  }

  request(ingress: string, service: string, status: number, seconds: number): void {
    let byService = this.#series.get(ingress);
    if (byService === undefined) this.#series.set(ingress, byService = new Map());
    let s = byService.get(service);
    if (s === undefined) {
      s = { labels: { ingress, service }, byStatus: new Map(), buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, count: 0 };
      byService.set(service, s);
      this.#all.push(s);
    }
    s.byStatus.set(status, (s.byStatus.get(status) ?? 0) + 1);
    let b = 0;
    while (b < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[b]!) b++;
    s.buckets[b]!++;
    s.sum += seconds;
    s.count++;
  }

  retry(service: string, reason: 'connect' | 'reset'): void {
    this.#retries.inc({ service, reason });
  }

  config(generation: number): void {
    this.#generation.set(generation);
    this.#configChanges.inc();
  }

  #requestValues(): Value[] {
    const values: Value[] = [];
    for (const s of this.#all) for (const [status, n] of s.byStatus) values.push({ labels: { ...s.labels, status: String(status) }, value: n });
    return values;
  }

  /** As prom-client's Histogram gives them: cumulative buckets by `le`, then +Inf, sum and count. */
  #durationValues(): Value[] {
    const values: Value[] = [];
    const bucket = `${DURATION}_bucket`;
    for (const s of this.#all) {
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) {
        acc += s.buckets[i]!;
        values.push({ labels: { le: DURATION_BUCKETS[i]! }, sharedLabels: s.labels, value: acc, metricName: bucket });
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: s.labels, value: s.count, metricName: bucket });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${DURATION}_sum` });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${DURATION}_count` });
    }
    return values;
  }
}

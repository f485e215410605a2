// The Ingress proxy's Prometheus metrics (prom-client). ingress-nginx's counterparts are
// nginx_ingress_controller_requests{ingress,service,status} and
// nginx_ingress_controller_request_duration_seconds; Tapir's keep their labels under its
// own prefix. The controller serves `registry` (IngressProxy.metrics).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** ingress-nginx's request duration buckets (seconds). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Children { requests: Counter.Internal; duration: Histogram.Internal<'ingress' | 'service'> }

export class IngressMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'ingress' | 'service' | 'status'>;
  readonly #duration: Histogram<'ingress' | 'service'>;
  readonly #retries: Counter<'service' | 'reason'>;
  readonly #generation: Gauge;
  readonly #configChanges: Counter;
  /**
   * Label children by ingress, then service, then status: prom-client hashes labels on
   * every call otherwise. The names are the configuration's own strings, whose hashes
   * V8 keeps, so a lookup builds no string.
   */
  readonly #children = new Map<string, Map<string, Children[]>>();

  /** `upstreams()`: how many upstream dispatchers (one per endpoint in use) are open, read at scrape time. */
  constructor(upstreams: () => number) {
    const registers = [this.registry];
    this.#requests = new Counter({ name: 'tapir_ingress_requests_total', help: 'Client requests answered, by Ingress, backend service and status (499: the client went away).', labelNames: ['ingress', 'service', 'status'], registers });
    this.#duration = new Histogram({ name: 'tapir_ingress_request_duration_seconds', help: 'Time from a request\'s headers to the end of its response, by Ingress and backend service.', labelNames: ['ingress', 'service'], buckets: DURATION_BUCKETS, registers });
    this.#retries = new Counter({ name: 'tapir_ingress_upstream_retries_total', help: 'Requests sent again to another endpoint, by backend service and reason (connect: nothing was sent; reset: an idempotent request after it was sent).', labelNames: ['service', 'reason'], registers });
    this.#generation = new Gauge({ name: 'tapir_ingress_config_generation', help: 'Generation of the routing configuration being served.', registers });
    new Gauge({ name: 'tapir_ingress_upstream_dispatchers', help: 'Open upstream connection pools (one per endpoint, protocol and connect timeout in use).', registers, collect() { this.set(upstreams()); } });
    this.#configChanges = new Counter({ name: 'tapir_ingress_config_changes_total', help: 'Routing configurations swapped in.', registers });
  }

  request(ingress: string, service: string, status: number, seconds: number): void {
    let byService = this.#children.get(ingress);
    if (byService === undefined) this.#children.set(ingress, byService = new Map());
    let byStatus = byService.get(service);
    if (byStatus === undefined) byService.set(service, byStatus = []);
    let c = byStatus[status];
    if (c === undefined) {
      c = { requests: this.#requests.labels(ingress, service, String(status)), duration: this.#duration.labels(ingress, service) };
      byStatus[status] = c;
    }
    c.requests.inc();
    c.duration.observe(seconds);
  }

  retry(service: string, reason: 'connect' | 'reset'): void {
    this.#retries.inc({ service, reason });
  }

  config(generation: number): void {
    this.#generation.set(generation);
    this.#configChanges.inc();
  }
}

// The controller's own HTTP endpoints, on a port of their own (10254 as ingress-nginx's
// controller): /healthz (200 once the proxy serves its first configuration and listens,
// 503 before), /metrics (Prometheus text: the controller's gauges and counters,
// followed by what the proxy exports: tapir_ingress_*, its generation among them), /status (the JSON that `tapir ingress status`
// and `tapir lab status` print). Never on the proxy's ports: a health probe must not
// depend on a route.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import type { ControllerStatus } from './controller.ts';
import { listenOn } from './listen.ts';

/** ingress-nginx's status port. */
export const DEFAULT_STATUS_PORT = 10254;

export interface StatusSource {
  status(): ControllerStatus;
  /** True once the proxy listens with a configuration. */
  healthy(): boolean;
  /** The proxy's own metrics in the Prometheus text format ('' = none). */
  proxyMetrics?(): Promise<string> | string;
}

export class StatusServer {
  readonly #server: Server;
  readonly #registry = new Registry();
  readonly #source: StatusSource;

  constructor(source: StatusSource) {
    this.#source = source;
    const r = this.#registry;
    const status = (): ControllerStatus => source.status();
    new Gauge({ name: 'tapir_ingress_controller_config_last_reload_timestamp_seconds', help: 'When the proxy last got a new configuration (Unix seconds)', registers: [r], collect() { this.set(status().configAt / 1000); } });
    new Gauge({ name: 'tapir_ingress_controller_hosts', help: 'Virtual hosts in the configuration', registers: [r], collect() { this.set(status().hosts); } });
    new Gauge({
      name: 'tapir_ingress_controller_ingresses', help: 'Ingresses seen, by whether this controller serves them', labelNames: ['served'], registers: [r],
      collect() {
        const s = status();
        const ours = s.ingresses.filter((i) => i.ours).length;
        this.set({ served: 'true' }, ours);
        this.set({ served: 'false' }, s.ingresses.length - ours);
      },
    });
    new Gauge({ name: 'tapir_ingress_controller_problems', help: 'Current problems of Ingresses (each is logged once) and inputs that failed validation', registers: [r], collect() { const s = status(); this.set(s.ingresses.reduce((n, i) => n + i.problems.length, 0) + s.inputProblems.length); } });
    new Counter({ name: 'tapir_ingress_controller_syncs_total', help: 'Syncs of the controller (compiles)', registers: [r], collect() { this.reset(); this.inc(status().syncs); } });
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/healthz') {
        const ok = source.healthy();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'no configuration yet\n');
      } else if (path === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(`${JSON.stringify(source.status(), null, 2)}\n`);
      } else if (path === '/metrics') {
        void this.#metrics().then((text) => res.writeHead(200, { 'content-type': this.#registry.contentType }).end(text), (err: Error) => res.writeHead(500).end(`${err.message}\n`));
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: /healthz, /metrics, /status\n');
      }
    });
  }

  async #metrics(): Promise<string> {
    const own = await this.#registry.metrics();
    const proxy = (await this.#source.proxyMetrics?.()) ?? '';
    return proxy === '' ? own : `${own}\n${proxy}`;
  }

  /** `address` undefined: both families (listen.ts), so a probe of the pod's IPv6 address is answered too. */
  async listen(port: number, address?: string): Promise<void> {
    await listenOn(this.#server, port, address);
  }

  get port(): number {
    const a = this.#server.address();
    return typeof a === 'object' && a !== null ? a.port : 0;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

// healthCheckNodePort servers, as kube-proxy serves them for services with
// externalTrafficPolicy: Local: an HTTP listener per port in the node's own stack that
// answers 200 while this node has a ready endpoint for the service and 503 otherwise,
// so an external load balancer sends traffic only to nodes that can serve it locally.
// The body follows kube-proxy's (pkg/proxy/healthcheck/service_health.go).
import { createServer, type Server } from 'node:http';

export interface HealthCheckEntry {
  port: number;
  namespace: string;
  name: string;
  localEndpoints: number;
}

interface Listener {
  server: Server;
  entry: HealthCheckEntry;
}

export class HealthCheckServers {
  readonly #listeners = new Map<number, Listener>();
  readonly #log: (m: string) => void;

  constructor(log: (m: string) => void = () => {}) {
    this.#log = log;
  }

  /** Opens, updates and closes listeners to match `entries` (one per port). */
  sync(entries: HealthCheckEntry[]): void {
    const wanted = new Map(entries.map((e) => [e.port, e]));
    for (const [port, l] of this.#listeners) {
      if (!wanted.has(port)) {
        l.server.close();
        this.#listeners.delete(port);
      }
    }
    for (const [port, entry] of wanted) {
      const existing = this.#listeners.get(port);
      if (existing !== undefined) {
        existing.entry = entry;
        continue;
      }
      const listener: Listener = { server: createServer((_req, res) => {
        const e = listener.entry;
        const body = JSON.stringify({ service: { namespace: e.namespace, name: e.name }, localEndpoints: e.localEndpoints, serviceProxyHealthy: true });
        res.writeHead(e.localEndpoints > 0 ? 200 : 503, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
        res.end(body);
      }), entry };
      listener.server.on('error', (err) => this.#log(`healthCheckNodePort ${port} (${entry.namespace}/${entry.name}): ${err.message}`));
      listener.server.listen(port);
      this.#listeners.set(port, listener);
    }
  }

  get ports(): number[] {
    return [...this.#listeners.keys()];
  }

  close(): void {
    for (const l of this.#listeners.values()) l.server.close();
    this.#listeners.clear();
  }
}

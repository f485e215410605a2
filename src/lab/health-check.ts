// kube-proxy's service health checks (pkg/proxy/healthcheck/service_health.go) for the
// lab's kernel proxy modes: an HTTP server on each healthCheckNodePort of a Service with
// externalTrafficPolicy Local, answering 200 when this node has a ready local endpoint
// and 503 when not, so a cloud load balancer sends traffic only to nodes that can keep
// the client's address. (With the tapir proxy mode the agent serves these.)
import { createServer, type Server } from 'node:http';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';

interface Entry { server: Server; namespace: string; name: string; localEndpoints: number }

export class HealthChecks {
  readonly #servers = new Map<number, Entry>();
  readonly #onError: (message: string) => void;

  constructor(onError: (message: string) => void) {
    this.#onError = onError;
  }

  get ports(): number[] {
    return [...this.#servers.keys()].sort((a, b) => a - b);
  }

  update(snapshot: ServiceSnapshot): void {
    const wanted = new Map<number, { namespace: string; name: string; localEndpoints: number }>();
    for (const port of snapshot.ports) {
      if (port.healthCheckNodePort === 0) continue;
      wanted.set(port.healthCheckNodePort, { namespace: port.namespace, name: port.name, localEndpoints: port.localReadyEndpoints });
    }
    for (const [port, entry] of this.#servers) {
      if (!wanted.has(port)) {
        entry.server.close();
        this.#servers.delete(port);
      }
    }
    for (const [port, want] of wanted) {
      const entry = this.#servers.get(port);
      if (entry !== undefined) {
        Object.assign(entry, want);
        continue;
      }
      const created: Entry = { ...want, server: createServer((_req, res) => {
        const body = JSON.stringify({ service: { namespace: created.namespace, name: created.name }, localEndpoints: created.localEndpoints, serviceProxyHealthy: true });
        res.writeHead(created.localEndpoints > 0 ? 200 : 503, { 'content-type': 'application/json', 'x-content-type-options': 'nosniff' });
        res.end(body);
      }) };
      created.server.on('error', (err) => this.#onError(`health check node port ${port}: ${err.message}`));
      created.server.listen(port, '0.0.0.0');
      this.#servers.set(port, created);
    }
  }

  close(): void {
    for (const entry of this.#servers.values()) entry.server.close();
    this.#servers.clear();
  }
}

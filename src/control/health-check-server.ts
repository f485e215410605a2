// kube-proxy's service health checks (pkg/proxy/healthcheck/service_health.go): an HTTP
// listener in the node's own stack on each healthCheckNodePort of a Service with
// externalTrafficPolicy: Local, answering 200 while this node has a ready local
// endpoint for it and 503 otherwise, so an external load balancer sends traffic only
// to nodes that can serve it without losing the client's address. The body follows
// kube-proxy's. One implementation for both proxies: the agent serves them for the
// tapir proxy mode, the lab's node daemon for the kernel (iptables, nftables) modes.
import { createServer, type Server } from 'node:http';
import type { ServiceSnapshot } from '../model/service-snapshot.ts';

interface Listener {
  server: Server;
  namespace: string;
  name: string;
  localEndpoints: number;
}

export class HealthCheckServers {
  readonly #listeners = new Map<number, Listener>();
  readonly #log: (m: string) => void;

  constructor(log: (m: string) => void = () => {}) {
    this.#log = log;
  }

  /** The open healthCheckNodePorts, ascending. */
  get ports(): number[] {
    return [...this.#listeners.keys()].sort((a, b) => a - b);
  }

  /**
   * Opens, updates and closes listeners to match the snapshot's healthCheckNodePorts.
   * The ports of one Service share its healthCheckNodePort and its local endpoints.
   */
  update(snapshot: ServiceSnapshot): void {
    const wanted = new Map<number, { namespace: string; name: string; localEndpoints: number }>();
    // An IPv6-only Service has its health check too (from the snapshot's IPv6 half); a
    // dual-stack one counts its IPv4 endpoints, as each of its pods has one of each.
    for (const p of [...snapshot.ports, ...(snapshot.ports6 ?? [])]) {
      if (p.healthCheckNodePort > 0 && !wanted.has(p.healthCheckNodePort)) wanted.set(p.healthCheckNodePort, { namespace: p.namespace, name: p.name, localEndpoints: p.localReadyEndpoints });
    }
    for (const [port, l] of this.#listeners) {
      if (!wanted.has(port)) {
        l.server.close();
        this.#listeners.delete(port);
      }
    }
    for (const [port, want] of wanted) {
      const existing = this.#listeners.get(port);
      if (existing !== undefined) {
        Object.assign(existing, want);
        continue;
      }
      const listener: Listener = { ...want, server: createServer((_req, res) => {
        const body = JSON.stringify({ service: { namespace: listener.namespace, name: listener.name }, localEndpoints: listener.localEndpoints, serviceProxyHealthy: true });
        res.writeHead(listener.localEndpoints > 0 ? 200 : 503, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
        res.end(body);
      }) };
      listener.server.on('error', (err) => this.#log(`healthCheckNodePort ${port} (${listener.namespace}/${listener.name}): ${err.message}`));
      // Every address of the node's stack, as kube-proxy without --nodeport-addresses.
      listener.server.listen(port);
      this.#listeners.set(port, listener);
    }
  }

  close(): void {
    for (const l of this.#listeners.values()) l.server.close();
    this.#listeners.clear();
  }
}

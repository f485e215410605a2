// HTTP/1.1 Upgrade (WebSocket, RFC 6455 4.1) passed through: the proxy connects to an
// endpoint (connect-retry as for requests: nothing was sent yet), writes the client's
// request head with the forwarding headers, and from then on copies bytes both ways;
// the endpoint's own 101 answer reaches the client unchanged, so any protocol that
// upgrades works. The connection closes when either side does, or after the route's
// read timeout without a byte from the endpoint (ingress-nginx's proxy-read-timeout
// does the same to WebSockets).
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { HeaderList } from './headers.ts';
import type { IngressMetrics } from './metrics.ts';
import type { BackendState } from './router.ts';
import { DOWN_AFTER_CONNECT_FAILURE_MS, MAX_TRIES } from './upstream.ts';

export interface UpgradeInit {
  client: Duplex;
  /** Bytes the client sent after its request head. */
  head: Buffer;
  backend: BackendState;
  ingress: string;
  method: string;
  path: string;
  headers: HeaderList;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  metrics: IngressMetrics;
  started: number;
}

export function tunnelUpgrade(init: UpgradeInit): void {
  const b = init.backend;
  if (b.endpoints.length === 0) {
    refuse(init, 503, `backend ${b.name} has no ready endpoints`);
    return;
  }
  const tried: number[] = [];
  let head = `${init.method} ${init.path} HTTP/1.1\r\n`;
  const lines = init.headers;
  for (let i = 0; i + 1 < lines.length; i += 2) head += `${lines[i]!}: ${lines[i + 1]!}\r\n`;
  head += '\r\n';

  let current: Socket | null = null;
  const attempt = (): void => {
    const i = b.next(tried, Date.now());
    tried.push(i);
    const ep = b.endpoints[i]!;
    const upstream: Socket = b.backend.protocol === 'HTTPS'
      ? tlsConnect({ host: ep.ip, port: ep.port, rejectUnauthorized: false })
      : netConnect({ host: ep.ip, port: ep.port });
    current = upstream;
    let connected = false;
    const connectTimer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' })), init.connectTimeoutMs);
    upstream.once(b.backend.protocol === 'HTTPS' ? 'secureConnect' : 'connect', () => {
      connected = true;
      clearTimeout(connectTimer);
      upstream.setNoDelay(true);
      upstream.write(head);
      if (init.head.length > 0) upstream.write(init.head);
      upstream.pipe(init.client);
      init.client.pipe(upstream);
      upstream.setTimeout(init.readTimeoutMs, () => { upstream.destroy(); init.client.destroy(); });
      init.metrics.request(init.ingress, b.name, 101, (performance.now() - init.started) / 1000);
    });
    upstream.on('error', (err) => {
      clearTimeout(connectTimer);
      if (connected) {
        init.client.destroy();
        return;
      }
      b.downUntil[i] = Date.now() + DOWN_AFTER_CONNECT_FAILURE_MS;
      if (tried.length < Math.min(MAX_TRIES, b.endpoints.length) && !init.client.destroyed) {
        init.metrics.retry(b.name, 'connect');
        attempt();
      } else {
        refuse(init, 502, `backend ${b.name} (endpoint ${ep.ip}:${ep.port}): ${(err as { code?: string }).code ?? err.message}`);
      }
    });
    upstream.on('close', () => { if (connected) init.client.destroy(); });
  };
  init.client.on('error', () => undefined);
  init.client.on('close', () => current?.destroy());
  attempt();
}

function refuse(init: UpgradeInit, status: 502 | 503, why: string): void {
  const reason = status === 502 ? 'Bad Gateway' : 'Service Unavailable';
  const body = `tapir-ingress: ${status} ${reason}: ${why}\n`;
  init.client.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  init.metrics.request(init.ingress, init.backend.name, status, (performance.now() - init.started) / 1000);
}

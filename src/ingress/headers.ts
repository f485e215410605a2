// The headers the Ingress proxy forwards: RFC 9110 7.6.1 hop-by-hop fields (and those a
// Connection field names) are removed in both directions, HTTP/2 pseudo-headers become
// Host, and the upstream learns the client through ingress-nginx's fields:
// X-Forwarded-For (the client's address appended to what came in), X-Forwarded-Proto,
// -Host, -Port, X-Real-IP, and X-Request-ID (kept when the client sent one, else a new
// random id, as nginx's $request_id).
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** Removed when forwarding a request or a response (RFC 9110 7.6.1, RFC 9113 8.2.2). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'http2-settings', 'expect']);

export type HeaderMap = Record<string, string | string[]>;

export interface ClientFacts {
  /** The client's address as the proxy saw it. */
  remoteAddress: string;
  scheme: 'http' | 'https';
  /** The port the client connected to. */
  serverPort: number;
  /** The Host header or :authority, as sent. */
  authority: string;
}

/**
 * The request headers for the upstream. `upgrade` keeps Connection and Upgrade (a
 * WebSocket handshake passes through); `keepTe` keeps `TE: trailers` (gRPC needs it).
 */
export function upstreamRequestHeaders(headers: IncomingHttpHeaders, client: ClientFacts, upgrade: boolean, keepTe: boolean): HeaderMap {
  const out: HeaderMap = {};
  const connection = headers.connection;
  const named = connection === undefined || upgrade ? null : connectionTokens(connection);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    if (name.charCodeAt(0) === 58 /* ':' pseudo-header */) continue;
    if (HOP_BY_HOP.has(name)) {
      if (upgrade && (name === 'connection' || name === 'upgrade')) out[name] = value;
      else if (keepTe && name === 'te' && value === 'trailers') out[name] = value;
      continue;
    }
    if (named !== null && named.includes(name)) continue;
    if (name === 'x-forwarded-for' || name === 'x-request-id' || name === 'x-real-ip' || name === 'x-forwarded-proto' || name === 'x-forwarded-host' || name === 'x-forwarded-port') continue;
    out[name] = value;
  }
  out.host = client.authority;
  const xff = headers['x-forwarded-for'];
  out['x-forwarded-for'] = xff === undefined || xff === '' ? client.remoteAddress : `${xff}, ${client.remoteAddress}`;
  out['x-forwarded-proto'] = client.scheme;
  out['x-forwarded-host'] = client.authority;
  out['x-forwarded-port'] = String(client.serverPort);
  out['x-real-ip'] = client.remoteAddress;
  const id = headers['x-request-id'];
  out['x-request-id'] = typeof id === 'string' && id !== '' ? id : randomUUID().replaceAll('-', '');
  return out;
}

/** The response headers for the client: hop-by-hop fields removed. */
export function clientResponseHeaders(headers: Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  const connection = headers.connection;
  const named = connection === undefined ? null : connectionTokens(connection);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (named !== null && named.includes(name)) continue;
    out[name] = value;
  }
  return out;
}

function connectionTokens(value: string | string[]): string[] {
  const s = Array.isArray(value) ? value.join(',') : value;
  // The common values name no other field.
  if (s === 'keep-alive' || s === 'close' || s === 'Keep-Alive' || s === 'upgrade' || s === 'Upgrade') return [];
  return s.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
}

/** The value of cookie `name` in a Cookie header, or null (RFC 6265 5.4: "; "-separated pairs). */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (header === undefined) return null;
  let at = 0;
  while (at < header.length) {
    let end = header.indexOf(';', at);
    if (end < 0) end = header.length;
    while (header.charCodeAt(at) === 32) at++;
    const eq = header.indexOf('=', at);
    if (eq > at && eq < end && header.slice(at, eq) === name) return header.slice(eq + 1, end).trim();
    at = end + 1;
  }
  return null;
}

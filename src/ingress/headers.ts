// The headers the Ingress proxy forwards: RFC 9110 7.6.1 hop-by-hop fields (and those a
// Connection field names) are removed in both directions, HTTP/2 pseudo-headers become
// Host, and the upstream learns the client through ingress-nginx's fields:
// X-Forwarded-For (the client's address appended to what came in), X-Forwarded-Proto,
// -Host, -Port, X-Real-IP, and X-Request-ID (kept when the client sent one, else a new
// random id, as nginx's $request_id).
import { randomFillSync } from 'node:crypto';

/** Removed when forwarding a request or a response (RFC 9110 7.6.1, RFC 9113 8.2.2). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'upgrade', 'trailer', 'http2-settings', 'expect']);
/** Whether a field (its name in any case) is hop-by-hop: HOP_BY_HOP by length, with no lower-cased copy of the name. */
export function isHopByHop(name: string): boolean {
  switch (name.length) {
    case 2: return sameName(name, 'te');
    case 6: return sameName(name, 'expect');
    case 7: return sameName(name, 'upgrade') || sameName(name, 'trailer');
    case 10: return sameName(name, 'connection') || sameName(name, 'keep-alive');
    case 14: return sameName(name, 'http2-settings');
    case 16: return sameName(name, 'proxy-connection');
    case 17: return sameName(name, 'transfer-encoding');
    default: return false;
  }
}

/** Whether field name `name` is `lower` (a lower-case name) in any case, without making a lower-cased copy. */
export function sameName(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if ((c >= 65 && c <= 90 ? c + 32 : c) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** The lines upstreamRequestHeaders adds: Host and the six forwarding fields, name and value each. */
const FORWARDING_LINES = 14;

let lastPort = -1, lastPortText = '';
/** A port as text, the last one remembered (a proxy listens on two). */
function portText(port: number): string {
  if (port !== lastPort) {
    lastPort = port;
    lastPortText = String(port);
  }
  return lastPortText;
}

/** The forwarding fields the proxy writes itself. */
const FORWARDING = new Set(['x-forwarded-for', 'x-request-id', 'x-real-ip', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port']);

export type HeaderMap = Record<string, string | string[]>;
/** Header lines as [name, value, name, value, ...] (llhttp's shape, and one undici takes). */
export type HeaderList = string[];

export interface ClientFacts {
  /** The client's address as the proxy saw it. */
  remoteAddress: string;
  scheme: 'http' | 'https';
  /** The port the client connected to. */
  serverPort: number;
  /** The Host header or :authority, as sent. */
  authority: string;
}

/** The value of field `lower` (a lower-case name) in `lines`, the first line of it; undefined when absent. */
export function headerValue(lines: readonly string[], lower: string): string | undefined {
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const n = lines[i]!;
    if (n.length === lower.length && (n === lower || n.toLowerCase() === lower)) return lines[i + 1];
  }
  return undefined;
}

/**
 * The request header lines for the upstream, from the client's lines (names in any
 * case; repeated fields stay repeated). `upgrade` keeps Connection and Upgrade (a
 * WebSocket handshake passes through); `keepTe` keeps `TE: trailers` (gRPC needs it).
 * Names come out in lower case, the forwarding fields last.
 */
export function upstreamRequestHeaders(lines: readonly string[], client: ClientFacts, upgrade: boolean, keepTe: boolean): HeaderList {
  // Sized once for the most it can hold (every line, and the forwarding fields), then
  // cut to what it holds: pushing onto an empty array would allocate its storage two or
  // three times over, per request.
  const out: HeaderList = new Array<string>(lines.length + FORWARDING_LINES);
  let n = 0;
  let named: string[] | null = null;
  if (!upgrade) {
    for (let i = 0; i + 1 < lines.length; i += 2) {
      if (sameName(lines[i]!, 'connection')) named = connectionTokens(lines[i + 1]!, named);
    }
  }
  let xff = '';
  let requestId = '';
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const name = lines[i]!.toLowerCase();
    const value = lines[i + 1]!;
    if (name.charCodeAt(0) === 58 /* ':' an HTTP/2 pseudo-header */) continue;
    if (HOP_BY_HOP.has(name)) {
      if ((upgrade && (name === 'connection' || name === 'upgrade')) || (keepTe && name === 'te' && value === 'trailers')) { out[n++] = name; out[n++] = value; }
      continue;
    }
    if (name === 'host') continue;
    if (named !== null && named.includes(name)) continue;
    if (FORWARDING.has(name)) {
      // As ingress-nginx: X-Forwarded-For is appended to, the client's X-Request-ID kept.
      if (name === 'x-forwarded-for' && value !== '') xff = xff === '' ? value : `${xff}, ${value}`;
      else if (name === 'x-request-id' && requestId === '') requestId = value;
      continue;
    }
    out[n++] = name;
    out[n++] = value;
  }
  const ip = client.remoteAddress;
  out[n++] = 'host'; out[n++] = client.authority;
  out[n++] = 'x-forwarded-for'; out[n++] = xff === '' ? ip : `${xff}, ${ip}`;
  out[n++] = 'x-forwarded-proto'; out[n++] = client.scheme;
  out[n++] = 'x-forwarded-host'; out[n++] = client.authority;
  out[n++] = 'x-forwarded-port'; out[n++] = portText(client.serverPort);
  out[n++] = 'x-real-ip'; out[n++] = ip;
  out[n++] = 'x-request-id'; out[n++] = requestId === '' ? requestId32() : requestId;
  out.length = n;
  return out;
}

let entropy = Buffer.alloc(0);
let entropyAt = 0;

/** 32 random hex digits, as nginx's $request_id (random bytes drawn 4 KiB at a time). */
export function requestId32(): string {
  if (entropyAt + 16 > entropy.length) {
    entropy = randomFillSync(Buffer.allocUnsafe(4096));
    entropyAt = 0;
  }
  entropyAt += 16;
  return entropy.toString('hex', entropyAt - 16, entropyAt);
}

/** The response headers for the client: hop-by-hop fields removed. */
export function clientResponseHeaders(headers: Record<string, string | string[] | undefined>): HeaderMap {
  const out: HeaderMap = {};
  const connection = headers.connection;
  const named = connection === undefined ? null : connectionTokens(Array.isArray(connection) ? connection.join(',') : connection, null);
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (named !== null && named.includes(name)) continue;
    out[name] = value;
  }
  return out;
}

/** The field names a Connection value lists (RFC 9110 7.6.1), added to `into`. */
export function connectionTokens(value: string, into: string[] | null): string[] | null {
  // The common values name no other field.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'upgrade' || value === 'Upgrade') return into;
  const tokens = value.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
  return into === null ? tokens : into.concat(tokens);
}

/** Every Cookie line as one value ("; "-joined, RFC 6265 5.4; HTTP/2 sends a line per cookie, RFC 9113 8.2.3); undefined without one. */
export function cookieHeader(lines: readonly string[]): string | undefined {
  let out: string | undefined;
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const n = lines[i]!;
    if (n.length === 6 && n.toLowerCase() === 'cookie') out = out === undefined ? lines[i + 1] : `${out}; ${lines[i + 1]!}`;
  }
  return out;
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

/**
 * Builds a message head from its pieces with one join (a chain of concatenations
 * would allocate a string per piece). The pieces' array keeps its storage from one
 * head to the next: a length of 0 would free it, and the next push allocate it again;
 * the pieces themselves are let go after each head.
 */
export class TextBuilder {
  readonly #parts: string[] = [];
  #n = 0;

  add(piece: string): void {
    this.#parts[this.#n++] = piece;
  }

  /** The head so far, as one flat string; the builder is empty again. */
  take(): string {
    const p = this.#parts, n = this.#n;
    // Shortening by a few keeps the storage (V8 trims only when over half is unused).
    if (p.length !== n) p.length = n;
    const text = p.join('');
    for (let i = 0; i < n; i++) p[i] = '';
    this.#n = 0;
    return text;
  }
}

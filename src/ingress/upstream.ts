// The upstream side of the Ingress proxy: one undici dispatcher per endpoint (a Pool of
// HTTP/1.1 keep-alive connections; for HTTPS backends the same over TLS, certificates
// not verified, as ingress-nginx's proxy_ssl_verify off; for GRPC an H2CClient, HTTP/2
// without TLS multiplexed on one connection), and `Exchange`, the undici dispatch
// handler of one client request that streams the response back, with backpressure.
//
// Retries (kube-proxy's old userspace "connect-retry", which no kernel mode has):
// - the connection failed (refused, unreachable, connect timeout): nothing was sent, so
//   any method goes to another endpoint, and the endpoint is skipped for
//   DOWN_AFTER_CONNECT_FAILURE_MS while others are left;
// - the connection broke after the request was sent: only an idempotent method
//   (RFC 9110 9.2.2) whose body the proxy still holds is sent again;
// - a read timeout is not retried (the endpoint may be working on it; a retry would
//   double the load that made it slow): 504.
// At most MAX_TRIES endpoints per request, ingress-nginx's proxy-next-upstream-tries.
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import { H2CClient, Pool, type Dispatcher } from 'undici';
import type { BackendProtocol } from './model.ts';
import type { BackendState } from './router.ts';
import { clientResponseHeaders, type HeaderList } from './headers.ts';
import type { IngressMetrics } from './metrics.ts';

export const MAX_TRIES = 3;
export const DOWN_AFTER_CONNECT_FAILURE_MS = 1_000;

/** Error codes of a connection that was never established: nothing of the request was sent. */
const CONNECT_FAILURES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EADDRNOTAVAIL', 'UND_ERR_CONNECT_TIMEOUT']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

function isConnectFailure(err: Error): boolean {
  const e = err as Error & { code?: string; syscall?: string };
  return (e.code !== undefined && CONNECT_FAILURES.has(e.code)) || e.syscall === 'connect';
}

/**
 * How a try went wrong, for both upstream engines (undici's here, the HTTP/1.1
 * engine's in h1-upstream.ts): the connection was never made (`connect`, and
 * `connect-timeout`), it broke after the request went (`reset`), no response came
 * within the read timeout (`timeout`), or the response could not be parsed (`invalid`).
 */
export type Failure = 'connect' | 'connect-timeout' | 'reset' | 'timeout' | 'invalid';

function failureKind(err: Error): Failure {
  const code = (err as { code?: string }).code;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect-timeout';
  if (isConnectFailure(err)) return 'connect';
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  return 'reset';
}

/** The first endpoint of a request: the one its affinity cookie names unless that one is down, else the next by round robin. */
export function firstEndpoint(b: BackendState, affinityEndpoint: number, now: number): number {
  if (affinityEndpoint >= 0 && b.downUntil[affinityEndpoint]! <= now) return affinityEndpoint;
  return b.next(NONE, now);
}

const NONE: readonly number[] = [];

/**
 * After a failed try of `endpoint`: marks it down when it could not be connected, and
 * says whether the request goes to another endpoint (the rules at the top).
 */
export function nextTry(b: BackendState, tried: readonly number[], endpoint: number, kind: Failure, method: string, streamedBody: boolean): 'retry' | 'fail' {
  const connect = kind === 'connect' || kind === 'connect-timeout';
  if (connect) b.downUntil[endpoint] = Date.now() + DOWN_AFTER_CONNECT_FAILURE_MS;
  if (tried.length >= Math.min(MAX_TRIES, b.endpoints.length) || streamedBody) return 'fail';
  if (connect) return 'retry';
  return kind !== 'timeout' && IDEMPOTENT.has(method) ? 'retry' : 'fail';
}

/** The proxy's own answer when the last try failed: 504 for a timeout, 502 otherwise, the body naming the backend and endpoint. */
export function failureBody(b: BackendState, tried: readonly number[], endpoint: number, kind: Failure, why: string): { status: 502 | 504; text: string } {
  const status = kind === 'timeout' || kind === 'connect-timeout' ? 504 : 502;
  const reason = status === 504 ? 'Gateway Timeout' : 'Bad Gateway';
  const where = tried.length > 1 ? `${tried.length} endpoints tried, last ${b.addresses[endpoint]}` : `endpoint ${b.addresses[endpoint]}`;
  return { status, text: `tapir-ingress: ${status} ${reason}: backend ${b.name} (${where}): ${why}\n` };
}

function describe(err: Error): string {
  const code = (err as { code?: string }).code;
  switch (code) {
    case 'ECONNREFUSED': return 'connection refused';
    case 'UND_ERR_CONNECT_TIMEOUT': return 'connect timed out';
    case 'UND_ERR_HEADERS_TIMEOUT': case 'UND_ERR_BODY_TIMEOUT': return 'no response within the read timeout';
    case 'UND_ERR_SOCKET': return 'the connection closed before a response';
    default: return code === undefined ? err.message : `${code}: ${err.message}`;
  }
}

/**
 * Dispatchers by (protocol, endpoint, connect timeout). `retain` after each new
 * configuration closes the ones it no longer uses; close() lets their requests in
 * flight finish, so a request keeps the endpoint it started on.
 */
export class UpstreamPools {
  readonly #pools = new Map<string, Dispatcher>();

  static key(protocol: BackendProtocol, address: string, connectTimeoutMs: number): string {
    return `${protocol} ${address} ${connectTimeoutMs}`;
  }

  get(protocol: BackendProtocol, address: string, connectTimeoutMs: number): Dispatcher {
    const key = UpstreamPools.key(protocol, address, connectTimeoutMs);
    let d = this.#pools.get(key);
    if (d === undefined) {
      // ingress-nginx keeps upstream connections 60 s; undici closes sooner when the
      // server's Keep-Alive header says so.
      const common = { connectTimeout: connectTimeoutMs, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 600_000 };
      if (protocol === 'GRPC') d = new H2CClient(`http://${address}`, common);
      else if (protocol === 'HTTPS') d = new Pool(`https://${address}`, { ...common, connect: { rejectUnauthorized: false } });
      else d = new Pool(`http://${address}`, common);
      this.#pools.set(key, d);
    }
    return d;
  }

  /** Closes (gracefully) every dispatcher whose key is not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const [key, d] of this.#pools) {
      if (keep.has(key)) continue;
      this.#pools.delete(key);
      d.close().catch(() => undefined);
    }
  }

  async destroy(): Promise<void> {
    const all = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(all.map((d) => d.destroy().catch(() => undefined)));
  }

  keys(): IterableIterator<string> {
    return this.#pools.keys();
  }
}

export type ClientResponse = ServerResponse | Http2ServerResponse;

/** What either upstream engine's exchange is given besides its pools, response and body. */
export interface ExchangeRequest {
  metrics: IngressMetrics;
  backend: BackendState;
  /** "namespace/name" of the Ingress, for metrics ('' for the default backend). */
  ingress: string;
  method: string;
  path: string;
  headers: HeaderList;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** The endpoint an affinity cookie names (-1: none), and the Set-Cookie to add when another is chosen. */
  affinityEndpoint: number;
  affinityCookie: { name: string; maxAgeSeconds: number; path: string } | null;
  started: number;
}

export interface ExchangeInit extends ExchangeRequest {
  pools: UpstreamPools;
  res: ClientResponse;
  /** null: no body; a Buffer can be sent again, a stream cannot. */
  body: Buffer | Readable | null;
}

/** One client request on its way to an endpoint and its response on the way back. */
export class Exchange implements Dispatcher.DispatchHandler {
  readonly #init: ExchangeInit;
  readonly #tried: number[] = [];
  #endpoint = -1;
  #controller: Dispatcher.DispatchController | null = null;
  #responded = false;
  #finished = false;
  #clientGone = false;
  /** A response chunk not written yet (see onResponseData). */
  #held: Buffer | null = null;
  #wroteBody = false;
  readonly #resume: () => void;
  readonly #flush: () => void;

  constructor(init: ExchangeInit) {
    this.#init = init;
    this.#resume = () => { if (this.#controller !== null && this.#controller.paused) this.#controller.resume(); };
    this.#flush = () => {
      const held = this.#held;
      if (held === null || this.#finished) return;
      this.#held = null;
      this.#wroteBody = true;
      if (!(this.#init.res as ServerResponse).write(held) && this.#controller !== null) {
        this.#controller.pause();
        this.#init.res.once('drain', this.#resume);
      }
    };
    init.res.once('close', () => {
      if (this.#finished) return;
      this.#clientGone = true;
      this.#controller?.abort(new Error('the client closed the connection'));
    });
  }

  /** Sends the request to the first endpoint; replies 503 when the backend has none. */
  start(): void {
    const b = this.#init.backend;
    if (b.endpoints.length === 0) {
      this.#fail(503, `tapir-ingress: 503 Service Unavailable: backend ${b.name} has no ready endpoints\n`);
      return;
    }
    this.#dispatch();
  }

  #dispatch(): void {
    const init = this.#init, b = init.backend;
    const now = Date.now();
    const i = this.#tried.length === 0 ? firstEndpoint(b, init.affinityEndpoint, now) : b.next(this.#tried, now);
    this.#endpoint = i;
    this.#tried.push(i);
    this.#controller = null;
    const dispatcher = init.pools.get(b.backend.protocol, b.addresses[i]!, init.connectTimeoutMs);
    try {
      dispatcher.dispatch({
        path: init.path, method: init.method, headers: init.headers, body: init.body,
        headersTimeout: init.readTimeoutMs, bodyTimeout: init.readTimeoutMs,
      }, this);
    } catch (err) {
      // undici refuses a request it cannot send (a header value it will not write).
      this.#fail(502, `tapir-ingress: 502 Bad Gateway: backend ${b.name}: the request cannot be forwarded: ${(err as Error).message}\n`);
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#clientGone) controller.abort(new Error('the client closed the connection'));
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx informational: the final response follows
    const init = this.#init, res = init.res;
    const out = clientResponseHeaders(headers);
    const cookie = init.affinityCookie;
    if (cookie !== null && init.affinityEndpoint !== this.#endpoint) {
      const set = `${cookie.name}=${init.backend.cookieValues[this.#endpoint]}; Path=${cookie.path}; Max-Age=${cookie.maxAgeSeconds}; HttpOnly`;
      const prior = out['set-cookie'];
      out['set-cookie'] = prior === undefined ? set : Array.isArray(prior) ? [...prior, set] : [prior, set];
    }
    try {
      // Both response kinds take a status and a header object.
      (res as ServerResponse).writeHead(statusCode, out);
    } catch (err) {
      // A header node:http or HTTP/2 will not send (an invalid name or value).
      this.#responded = true;
      this.#controller?.abort(err as Error);
      this.#fail(502, `tapir-ingress: 502 Bad Gateway: backend ${init.backend.name} (endpoint ${init.backend.addresses[this.#endpoint]}): invalid response headers: ${(err as Error).message}\n`);
      return;
    }
    this.#responded = true;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#finished) return;
    // The first chunk waits until the parser is done with what arrived (a microtask):
    // a small response's end comes in the same turn, and its body then leaves with its
    // headers in one write (res.end(chunk)), not two. A stream is not held up longer.
    const held = this.#held;
    if (held === null && !this.#wroteBody) {
      this.#held = chunk;
      queueMicrotask(this.#flush);
      return;
    }
    if (held === null) {
      this.#write(controller, chunk);
      return;
    }
    this.#held = null;
    this.#wroteBody = true;
    (this.#init.res as ServerResponse).write(held);
    this.#write(controller, chunk);
  }

  #write(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const res = this.#init.res as ServerResponse;
    if (!res.write(chunk)) {
      controller.pause();
      res.once('drain', this.#resume);
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
    if (this.#finished) return;
    const res = this.#init.res;
    let hasTrailers = false;
    for (const _ in trailers) { hasTrailers = true; break; }
    if (hasTrailers) res.addTrailers(clientResponseHeaders(trailers));
    this.#finished = true;
    const held = this.#held;
    this.#held = null;
    if (held !== null) (res as ServerResponse).end(held);
    else res.end();
    this.#record(res.statusCode);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const init = this.#init, b = init.backend;
    if (this.#finished) return; // answered already (invalid response headers)
    if (this.#clientGone) {
      this.#finished = true;
      this.#record(499);
      return;
    }
    if (this.#responded) {
      // Headers went out: all that is left is to cut the client's response short.
      this.#finished = true;
      init.res.destroy(err);
      this.#record(init.res.statusCode);
      return;
    }
    const kind = failureKind(err);
    if (nextTry(b, this.#tried, this.#endpoint, kind, init.method, isStream(init.body)) === 'retry') {
      init.metrics.retry(b.name, kind === 'connect' || kind === 'connect-timeout' ? 'connect' : 'reset');
      this.#dispatch();
      return;
    }
    const { status, text } = failureBody(b, this.#tried, this.#endpoint, kind, describe(err));
    this.#fail(status, text);
  }

  #fail(status: number, text: string): void {
    const res = this.#init.res;
    this.#finished = true;
    if (!res.headersSent) {
      const body = Buffer.from(text);
      (res as ServerResponse).writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length });
      res.end(body);
    } else {
      res.destroy();
    }
    this.#record(status);
  }

  #record(status: number): void {
    const init = this.#init;
    init.metrics.request(init.ingress, init.backend.name, status, (performance.now() - init.started) / 1000);
  }
}

function isStream(body: Buffer | Readable | null): boolean {
  return body !== null && !Buffer.isBuffer(body);
}

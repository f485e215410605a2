// The upstream side of the Ingress proxy's HTTP/1.1 engine: keep-alive connections to
// endpoints (plain, or TLS for backend-protocol HTTPS, certificates not verified as
// ingress-nginx's proxy_ssl_verify off), their responses parsed by llhttp straight
// from the socket, and `H1Exchange`, one client request on its way to an endpoint and
// its response written back to the client's H1Response. The retry rules are the
// undici exchange's (upstream.ts: `nextTry`); so are the status codes and their bodies.
//
// Timeouts without a timer per request: every busy connection carries a deadline on a
// coarse clock, and one sweep per SWEEP_MS (running while any connection is open)
// fails the ones past it: the connect timeout until the connection is up, then the
// read timeout from the request's last byte out or the response's last byte in, as
// nginx's proxy_read_timeout counts between two reads.
import { STATUS_CODES } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';
import { connectionTokens, isHopByHop } from './headers.ts';
import { attach, available as llhttpAvailable, createParser, setReading, type HttpParser, type ParseError } from './llhttp.ts';
import type { BackendProtocol } from './model.ts';
import type { BackendState } from './router.ts';
import { failureBody, firstEndpoint, nextTry, UpstreamPools, type ExchangeRequest, type Failure } from './upstream.ts';

const SWEEP_MS = 100;
/** Idle connections kept per endpoint (ingress-nginx's upstream keepalive is 320 per worker). */
const MAX_IDLE = 320;
const IDLE_MS = 60_000;

/** Connections to one endpoint. */
class EndpointPool {
  readonly idle: UpstreamConnection[] = [];
  closed = false;
  readonly #owner: H1Pools;
  readonly ip: string;
  readonly port: number;
  readonly tls: boolean;
  readonly connectTimeoutMs: number;

  constructor(owner: H1Pools, ip: string, port: number, tls: boolean, connectTimeoutMs: number) {
    this.#owner = owner;
    this.ip = ip;
    this.port = port;
    this.tls = tls;
    this.connectTimeoutMs = connectTimeoutMs;
  }

  acquire(): UpstreamConnection {
    return this.idle.pop() ?? new UpstreamConnection(this.#owner, this);
  }

  release(conn: UpstreamConnection): void {
    if (this.closed || this.idle.length >= MAX_IDLE) conn.destroy();
    else this.idle.push(conn);
  }

  forget(conn: UpstreamConnection): void {
    const i = this.idle.indexOf(conn);
    if (i >= 0) this.idle.splice(i, 1);
  }

  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.destroy();
  }
}

/** One keep-alive connection to an endpoint, serving one exchange at a time. */
class UpstreamConnection {
  readonly #owner: H1Pools;
  readonly #pool: EndpointPool;
  readonly #socket: Socket;
  readonly #parser: HttpParser;
  #exchange: H1Exchange | null = null;
  #connected = false;
  /** Coarse ms after which the sweep fails this connection's exchange (Infinity: idle). */
  deadline: number;
  idleSince = 0;
  #readTimeoutMs = 0;
  /** A 1xx response is being parsed: its end is not the exchange's. */
  #informational = false;
  #keepAlive = false;
  #trailers: string[] = [];
  #closed = false;
  #consumed = false;

  constructor(owner: H1Pools, pool: EndpointPool) {
    this.#owner = owner;
    this.#pool = pool;
    this.deadline = owner.now + pool.connectTimeoutMs;
    const socket = pool.tls
      ? tlsConnect({ host: pool.ip, port: pool.port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : netConnect({ host: pool.ip, port: pool.port });
    this.#socket = socket;
    socket.setNoDelay(true);
    this.#parser = createParser(true, {
      onHeaders: (headers) => { for (const h of headers) this.#trailers.push(h); },
      onHeadersComplete: (_major, _minor, headers, _method, _url, status, message, _upgrade, keepAlive) => {
        const ex = this.#exchange;
        if (ex === null) return 0;
        const code = status ?? 0;
        this.#informational = code < 200;
        if (this.#informational) return 0; // 100 Continue, 103 Early Hints: the final response follows
        this.#keepAlive = keepAlive;
        ex.onHead(code, message ?? '', headers ?? this.#takeTrailers());
        return ex.skipResponseBody ? 1 : 0;
      },
      onBody: (chunk) => this.#exchange?.onBody(chunk),
      onMessageComplete: () => {
        if (this.#informational) { this.#informational = false; return; }
        const ex = this.#exchange;
        if (ex === null) return;
        this.#exchange = null;
        this.#owner.busy.delete(this);
        this.deadline = Infinity;
        const trailers = this.#takeTrailers();
        ex.onEnd(trailers);
        if (this.#keepAlive && ex.requestSent && !this.#closed) {
          this.idleSince = this.#owner.now;
          this.#owner.idle.add(this);
          this.#pool.release(this);
        } else {
          this.destroy();
        }
      },
      onExecute: (result) => this.#executed(result),
    });
    const start = (): void => {
      this.#connected = true;
      this.#consumed = attach(this.#parser, socket, (chunk) => this.#executed(this.#parser.execute(chunk)));
      if (this.#exchange !== null) this.deadline = this.#owner.now + this.#readTimeoutMs;
    };
    socket.once(pool.tls ? 'secureConnect' : 'connect', start);
    socket.on('error', (err) => this.#fail(this.#connected ? 'reset' : 'connect', err));
    socket.on('close', () => {
      this.#fail('reset', null);
      // The parser is freed only once the socket is gone: a consumed handle reads into it until then.
      if (this.#consumed) this.#parser.unconsume();
      this.#parser.close();
    });
  }

  #takeTrailers(): string[] {
    const t = this.#trailers;
    if (t.length > 0) this.#trailers = [];
    return t;
  }

  #executed(result: number | ParseError): void {
    if (typeof result !== 'number') {
      this.#exchange?.failed('invalid', `invalid response: ${result.reason ?? result.code}`);
      this.#exchange = null;
      this.destroy();
      return;
    }
    const ex = this.#exchange;
    if (ex !== null) {
      this.deadline = this.#owner.now + this.#readTimeoutMs;
      ex.flush();
    }
  }

  /** Sends a request head (and a whole body) for `ex`. */
  send(ex: H1Exchange, head: string, body: Buffer | null, readTimeoutMs: number): void {
    this.#exchange = ex;
    this.#readTimeoutMs = readTimeoutMs;
    this.#owner.idle.delete(this);
    this.#owner.busy.add(this);
    this.deadline = this.#owner.now + (this.#connected ? readTimeoutMs : this.#pool.connectTimeoutMs);
    const socket = this.#socket;
    if (body === null || body.length === 0) {
      socket.write(head, 'latin1');
    } else {
      socket.cork();
      socket.write(head, 'latin1');
      socket.write(body);
      socket.uncork();
    }
  }

  /** A piece of a streamed request body; false when the endpoint is not taking it fast enough. */
  write(chunk: Buffer | string): boolean {
    return typeof chunk === 'string' ? this.#socket.write(chunk, 'latin1') : this.#socket.write(chunk);
  }

  onDrain(fn: () => void): void {
    this.#socket.once('drain', fn);
  }

  /** Stops or restarts reading the response (the client is slower than the endpoint). */
  reading(on: boolean): void {
    if (!this.#closed) setReading(this.#socket, this.#consumed, on);
  }

  /** The sweep: past the deadline. */
  timedOut(): void {
    const ex = this.#exchange;
    this.#exchange = null;
    if (ex !== null) ex.failed(this.#connected ? 'timeout' : 'connect-timeout', this.#connected ? 'no response within the read timeout' : 'connect timed out');
    this.destroy();
  }

  #fail(kind: 'connect' | 'reset', err: Error | null): void {
    const ex = this.#exchange;
    if (ex !== null && kind === 'reset' && err === null && ex.responding) {
      // A body delimited by the close ends here.
      this.#parser.finish();
    }
    const left = this.#exchange;
    this.#exchange = null;
    if (left !== null) {
      const code = (err as { code?: string } | null)?.code;
      const why = kind === 'connect'
        ? (code === 'ECONNREFUSED' ? 'connection refused' : code ?? err?.message ?? 'connect failed')
        : err === null ? 'the connection closed before a response' : `${code ?? ''}${code === undefined ? '' : ': '}${err.message}`;
      left.failed(kind, why);
    }
    this.destroy();
  }

  destroy(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#owner.busy.delete(this);
    this.#owner.idle.delete(this);
    this.#pool.forget(this);
    this.#socket.destroy();
  }
}

/**
 * The HTTP/1.1 engine's upstream connections, by the same keys as the undici pools
 * (UpstreamPools.key), retained after each configuration the same way.
 */
export class H1Pools {
  readonly #pools = new Map<string, EndpointPool>();
  readonly #byBackend = new WeakMap<BackendState, (EndpointPool | undefined)[]>();
  readonly busy = new Set<UpstreamConnection>();
  readonly idle = new Set<UpstreamConnection>();
  #timer: NodeJS.Timeout | null = null;
  /** Coarse clock (ms), advanced by the sweep. */
  now = Date.now();

  /** Whether `protocol` is one this engine speaks to endpoints (GRPC is HTTP/2: undici's). */
  static speaks(protocol: BackendProtocol): boolean {
    return (protocol === 'HTTP' || protocol === 'HTTPS') && llhttpAvailable();
  }

  get(protocol: BackendProtocol, b: BackendState, endpoint: number, connectTimeoutMs: number): EndpointPool {
    if (this.#timer === null) this.#startSweep();
    // Each BackendState remembers its endpoints' pools: no key string per request.
    let slots = this.#byBackend.get(b);
    if (slots === undefined) this.#byBackend.set(b, slots = []);
    const cached = slots[endpoint];
    if (cached !== undefined && !cached.closed && cached.connectTimeoutMs === connectTimeoutMs) return cached;
    const key = UpstreamPools.key(protocol, b.addresses[endpoint]!, connectTimeoutMs);
    let p = this.#pools.get(key);
    if (p === undefined) {
      const ep = b.endpoints[endpoint]!;
      p = new EndpointPool(this, ep.ip, ep.port, protocol === 'HTTPS', connectTimeoutMs);
      this.#pools.set(key, p);
    }
    slots[endpoint] = p;
    return p;
  }

  retain(keep: ReadonlySet<string>): void {
    for (const [key, p] of this.#pools) {
      if (keep.has(key)) continue;
      this.#pools.delete(key);
      p.close();
    }
  }

  destroy(): void {
    for (const p of this.#pools.values()) p.close();
    this.#pools.clear();
    for (const c of [...this.busy]) c.destroy();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  get size(): number {
    return this.#pools.size;
  }

  keys(): IterableIterator<string> {
    return this.#pools.keys();
  }

  #startSweep(): void {
    this.now = Date.now();
    this.#timer = setInterval(() => {
      const now = this.now = Date.now();
      for (const c of this.busy) if (now > c.deadline) c.timedOut();
      for (const c of this.idle) if (now - c.idleSince > IDLE_MS) c.destroy();
      if (this.busy.size === 0 && this.idle.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    }, SWEEP_MS);
    this.#timer.unref();
  }
}

/**
 * Where an exchange's response goes: the HTTP/1.1 engine's own H1Response, or a
 * node:http / HTTP/2 response through `NodeResponseSink`.
 */
export interface ResponseSink {
  readonly statusCode: number;
  /**
   * The response head: fields as [name, value, ...] already filtered for the client;
   * contentLength -1 when unknown; `trailers` when the endpoint announced trailers.
   */
  head(status: number, message: string, fields: string[], contentLength: number, trailers: boolean): void;
  /** A body piece; false: wait for 'drain'. */
  body(chunk: Buffer): boolean;
  /** The end of a read from the endpoint. */
  flush(): void;
  trailers(fields: string[]): void;
  end(): void;
  /** Cuts the response short. */
  abort(): void;
  /** A plain-text answer of the proxy's own. */
  answer(status: number, text: string): void;
  once(event: 'close' | 'drain', fn: () => void): unknown;
}

/** A request body that streams (proxy-body-size 0): the engine's H1Request, or a node stream through `streamSource`. */
export interface BodySource {
  streamBody(onChunk: (chunk: Buffer) => void, end: () => void): void;
  pause(): void;
  resume(): void;
}

/** A whole body of at most `limit` bytes from `source`, or null once it passes the limit (reading then stops). */
export function readWhole(source: BodySource, limit: number, done: (body: Buffer | null) => void): void {
  const chunks: Buffer[] = [];
  let length = 0, over = false;
  source.streamBody((chunk) => {
    if (over) return;
    length += chunk.length;
    if (length > limit) {
      over = true;
      source.pause();
      done(null);
      return;
    }
    chunks.push(chunk);
  }, () => { if (!over) done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)); });
}

/** What `answerPlain` needs of a response: node:http's shape, which every response kind here has. */
export interface PlainResponse {
  readonly headersSent: boolean;
  writeHead(status: number, headers: Record<string, string | number>): unknown;
  end(body: Buffer): unknown;
  destroy(): unknown;
}

/**
 * A short plain-text answer of the proxy's own (404, 413, 502, ...); `close` adds
 * `connection: close` (an HTTP/1.1 client may still be sending a body the proxy
 * refused). A response already under way is cut short instead.
 */
export function answerPlain(res: PlainResponse, status: number, text: string, close = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = Buffer.from(text);
  const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': body.length };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

/** A node:http or HTTP/2 request body as a BodySource. */
export function streamSource(stream: Readable): BodySource {
  return {
    streamBody: (onChunk, end) => { stream.on('data', onChunk); stream.on('end', end); stream.on('error', () => undefined); },
    pause: () => stream.pause(),
    resume: () => stream.resume(),
  };
}

/** A node:http ServerResponse or HTTP/2 compatibility response as a ResponseSink. */
export class NodeResponseSink implements ResponseSink {
  readonly #res: ServerResponse | Http2ServerResponse;

  constructor(res: ServerResponse | Http2ServerResponse) {
    this.#res = res;
  }

  get statusCode(): number {
    return this.#res.statusCode;
  }

  head(status: number, _message: string, fields: string[], contentLength: number, _trailers: boolean): void {
    const out = fieldObject(fields);
    if (contentLength >= 0) out['content-length'] = String(contentLength);
    (this.#res as ServerResponse).writeHead(status, out);
  }

  body(chunk: Buffer): boolean {
    return (this.#res as ServerResponse).write(chunk);
  }

  flush(): void {}

  trailers(fields: string[]): void {
    this.#res.addTrailers(fieldObject(fields));
  }

  end(): void {
    (this.#res as ServerResponse).end();
  }

  abort(): void {
    this.#res.destroy();
  }

  answer(status: number, text: string): void {
    answerPlain(this.#res as ServerResponse, status, text);
  }

  once(event: 'close' | 'drain', fn: () => void): void {
    this.#res.once(event, fn);
  }
}

/** Fields as an object with lower-case names (HTTP/2 wants them so); repeats joined, Set-Cookie kept apart. */
export function fieldObject(fields: readonly string[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toLowerCase();
    const value = fields[i + 1]!;
    const prior = out[name];
    if (prior === undefined) out[name] = name === 'set-cookie' ? [value] : value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = `${prior}, ${value}`;
  }
  return out;
}

export interface H1ExchangeInit extends ExchangeRequest {
  pools: H1Pools;
  res: ResponseSink;
  /** null: no body; a Buffer is the whole body (sent again on a retry); a source streams, once. */
  body: Buffer | BodySource | null;
}

export class H1Exchange {
  readonly #init: H1ExchangeInit;
  readonly #tried: number[] = [];
  #endpoint = -1;
  #conn: UpstreamConnection | null = null;
  /** The request head, built once for every try. */
  #head = '';
  /** The response head went to the client. */
  responding = false;
  #finished = false;
  requestSent = false;
  #paused = false;
  readonly skipResponseBody: boolean;
  readonly #streamed: boolean;

  constructor(init: H1ExchangeInit) {
    this.#init = init;
    this.skipResponseBody = init.method === 'HEAD';
    this.#streamed = init.body !== null && !Buffer.isBuffer(init.body);
    init.res.once('close', () => {
      if (this.#finished) return;
      this.#finished = true;
      const conn = this.#conn;
      this.#conn = null;
      conn?.destroy();
      this.#record(499);
    });
  }

  start(): void {
    const b = this.#init.backend;
    if (b.endpoints.length === 0) {
      this.#reply(503, `tapir-ingress: 503 Service Unavailable: backend ${b.name} has no ready endpoints\n`);
      return;
    }
    this.#head = this.#requestHead();
    this.#dispatch();
  }

  #requestHead(): string {
    const init = this.#init;
    let head = `${init.method} ${init.path} HTTP/1.1\r\n`;
    let clientLength: string | null = null;
    const lines = init.headers;
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const name = lines[i]!;
      if (name === 'content-length') clientLength = lines[i + 1]!;
      else head += `${name}: ${lines[i + 1]!}\r\n`;
    }
    const body = init.body;
    if (Buffer.isBuffer(body)) head += `content-length: ${body.length}\r\n`;
    else if (body !== null) head += clientLength !== null ? `content-length: ${clientLength}\r\n` : 'transfer-encoding: chunked\r\n';
    else if (clientLength !== null) head += 'content-length: 0\r\n';
    return `${head}\r\n`;
  }

  #dispatch(): void {
    const init = this.#init, b = init.backend;
    const i = this.#tried.length === 0 ? firstEndpoint(b, init.affinityEndpoint, Date.now()) : b.next(this.#tried, Date.now());
    this.#endpoint = i;
    this.#tried.push(i);
    this.requestSent = false;
    const conn = init.pools.get(b.backend.protocol, b, i, init.connectTimeoutMs).acquire();
    this.#conn = conn;
    const body = init.body;
    if (body === null || Buffer.isBuffer(body)) {
      conn.send(this, this.#head, body, init.readTimeoutMs);
      this.requestSent = true;
      return;
    }
    conn.send(this, this.#head, null, init.readTimeoutMs);
    const chunked = !this.#head.includes('\r\ncontent-length: ');
    body.streamBody((chunk) => {
      if (this.#conn !== conn) return;
      const ok = chunked ? conn.write(`${chunk.length.toString(16)}\r\n`) && conn.write(chunk) && conn.write('\r\n') : conn.write(chunk);
      if (!ok) {
        body.pause();
        conn.onDrain(() => body.resume());
      }
    }, () => {
      if (this.#conn !== conn) return;
      if (chunked) conn.write('0\r\n\r\n');
      this.requestSent = true;
    });
  }

  onHead(status: number, message: string, raw: string[]): void {
    if (this.#finished) return;
    const init = this.#init;
    const fields: string[] = [];
    let length = -1;
    // Fields a Connection header names are hop-by-hop too (RFC 9110 7.6.1).
    let named: string[] | null = null;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === 10 && name.toLowerCase() === 'connection') named = connectionTokens(raw[i + 1]!, named);
    }
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      // Content-Length is the client side's to write, from `length`.
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        length = Number(raw[i + 1]);
        continue;
      }
      if (isHopByHop(name)) continue;
      if (named !== null && named.includes(name.toLowerCase())) continue;
      fields.push(name, raw[i + 1]!);
    }
    // A chunked body's length is not known even when a Content-Length came with it (RFC 9112 6.3).
    const chunked = this.#hasField(raw, 'transfer-encoding');
    if (chunked) length = -1;
    const cookie = init.affinityCookie;
    if (cookie !== null && init.affinityEndpoint !== this.#endpoint) {
      fields.push('set-cookie', `${cookie.name}=${init.backend.cookieValues[this.#endpoint]}; Path=${cookie.path}; Max-Age=${cookie.maxAgeSeconds}; HttpOnly`);
    }
    this.responding = true;
    init.res.head(status, message === '' ? STATUS_CODES[status] ?? 'Unknown' : message, fields, length, chunked && this.#hasField(raw, 'trailer'));
  }

  /** Whether the response has field `lower` (a lower-case name). */
  #hasField(raw: string[], lower: string): boolean {
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      if (name.length === lower.length && name.toLowerCase() === lower) return true;
    }
    return false;
  }

  onBody(chunk: Buffer): void {
    if (this.#finished) return;
    const res = this.#init.res;
    if (res.body(chunk) || this.#paused) return;
    // The client is not keeping up: what is queued goes out, and the endpoint waits.
    res.flush();
    const conn = this.#conn;
    if (conn === null) return;
    this.#paused = true;
    conn.reading(false);
    res.once('drain', () => {
      this.#paused = false;
      if (this.#conn === conn) conn.reading(true);
    });
  }

  /** The end of a read from the endpoint: what it gave the client goes out. */
  flush(): void {
    if (!this.#finished) this.#init.res.flush();
  }

  onEnd(trailers: string[]): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#conn = null;
    const res = this.#init.res;
    if (trailers.length > 0) res.trailers(trailers);
    res.end();
    this.#record(res.statusCode);
  }

  /** The connection failed, broke or timed out before the response ended. */
  failed(kind: Failure, why: string): void {
    if (this.#finished) return;
    this.#conn = null;
    const init = this.#init, b = init.backend;
    if (this.responding) {
      // Headers went out: all that is left is to cut the client's response short.
      this.#finished = true;
      init.res.abort();
      this.#record(init.res.statusCode);
      return;
    }
    const next = nextTry(b, this.#tried, this.#endpoint, kind, init.method, this.#streamed);
    if (next === 'retry') {
      init.metrics.retry(b.name, kind === 'connect' || kind === 'connect-timeout' ? 'connect' : 'reset');
      this.#dispatch();
      return;
    }
    const { status, text } = failureBody(b, this.#tried, this.#endpoint, kind, why);
    this.#reply(status, text);
  }

  #reply(status: number, text: string): void {
    this.#finished = true;
    this.#init.res.answer(status, text);
    this.#record(status);
  }

  #record(status: number): void {
    const init = this.#init;
    init.metrics.request(init.ingress, init.backend.name, status, (performance.now() - init.started) / 1000);
  }
}

// `H1Exchange`: one client request on its way to an endpoint over the HTTP/1.1
// engine's connections (h1-pool.ts) and its response written back to the client's
// ResponseSink (sinks.ts). The retry rules are the undici exchange's (upstream.ts:
// `nextTry`); so are the status codes and their bodies.
import { STATUS_CODES } from 'node:http';
import { connectionTokens, isHopByHop, sameName, TextBuilder } from './headers.ts';
import type { H1Pools, PooledExchange, UpstreamConnection } from './h1-pool.ts';
import type { BodySource, ResponseSink } from './sinks.ts';
import { failureBody, firstEndpoint, nextTry, type ExchangeRequest, type Failure } from './upstream.ts';

/** Where request heads are built (#requestHead). */
const HEAD = new TextBuilder();
/** The response fields handed to the client's sink (onHead), refilled for each response. */
const FIELDS: string[] = [];

export class H1Exchange implements PooledExchange {
  readonly #init: ExchangeRequest;
  readonly #pools: H1Pools;
  readonly #res: ResponseSink;
  /** null: no body; a Buffer is the whole body (sent again on a retry); a source streams, once. */
  readonly #body: Buffer | BodySource | null;
  /** Endpoints tried, in order (allocated at the first try: most requests have one). */
  #tried: number[] | null = null;
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

  constructor(init: ExchangeRequest, pools: H1Pools, res: ResponseSink, body: Buffer | BodySource | null) {
    this.#init = init;
    this.#pools = pools;
    this.#res = res;
    this.#body = body;
    this.skipResponseBody = init.method === 'HEAD';
    this.#streamed = body !== null && !Buffer.isBuffer(body);
    res.once('close', () => {
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
    const h = HEAD;
    h.add(init.method); h.add(' '); h.add(init.path); h.add(' HTTP/1.1\r\n');
    let clientLength: string | null = null;
    const lines = init.headers;
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const name = lines[i]!;
      if (name === 'content-length') clientLength = lines[i + 1]!;
      else { h.add(name); h.add(': '); h.add(lines[i + 1]!); h.add('\r\n'); }
    }
    const body = this.#body;
    if (Buffer.isBuffer(body)) h.add(`content-length: ${body.length}\r\n`);
    else if (body !== null) h.add(clientLength !== null ? `content-length: ${clientLength}\r\n` : 'transfer-encoding: chunked\r\n');
    else if (clientLength !== null) h.add('content-length: 0\r\n');
    h.add('\r\n');
    return h.take();
  }

  #dispatch(): void {
    const init = this.#init, b = init.backend;
    const tried = this.#tried;
    const i = tried === null ? firstEndpoint(b, init.affinityEndpoint, Date.now()) : b.next(tried, Date.now());
    this.#endpoint = i;
    if (tried === null) this.#tried = [i];
    else tried.push(i);
    this.requestSent = false;
    const conn = this.#pools.get(b.backend.protocol, b, i, init.connectTimeoutMs).acquire();
    this.#conn = conn;
    const body = this.#body;
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
        conn.whenDrained(() => body.resume());
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
    // The sinks copy the fields before head() returns: one array serves every response.
    const fields = FIELDS;
    let n = 0;
    let length = -1;
    let chunked = false, trailer = false;
    // Fields a Connection header names are hop-by-hop too (RFC 9110 7.6.1): known only
    // once the whole head is read, so they are taken out afterwards (rare: the usual
    // values name none).
    let named: string[] | null = null;
    // One pass over the lines, by name length first: most names are none of these.
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      switch (name.length) {
        case 14:
          // Content-Length is the client side's to write, from `length`.
          if (sameName(name, 'content-length')) { length = Number(raw[i + 1]); continue; }
          break;
        case 10:
          if (sameName(name, 'connection')) { named = connectionTokens(raw[i + 1]!, named); continue; }
          break;
        case 17:
          if (sameName(name, 'transfer-encoding')) { chunked = true; continue; }
          break;
        case 7:
          if (sameName(name, 'trailer')) { trailer = true; continue; }
          break;
      }
      if (isHopByHop(name)) continue;
      fields[n++] = name;
      fields[n++] = raw[i + 1]!;
    }
    // Shortening by a few keeps the storage (V8 trims only when over half is unused).
    if (fields.length !== n) fields.length = n;
    if (named !== null) {
      for (let i = fields.length - 2; i >= 0; i -= 2) if (named.includes(fields[i]!.toLowerCase())) fields.splice(i, 2);
    }
    // A chunked body's length is not known even when a Content-Length came with it (RFC 9112 6.3).
    if (chunked) length = -1;
    const cookie = init.affinityCookie;
    if (cookie !== null && init.affinityEndpoint !== this.#endpoint) {
      fields.push('set-cookie', `${cookie.name}=${init.backend.cookieValues[this.#endpoint]}; Path=${cookie.path}; Max-Age=${cookie.maxAgeSeconds}; HttpOnly`);
    }
    this.responding = true;
    try {
      this.#res.head(status, message === '' ? STATUS_CODES[status] ?? 'Unknown' : message, fields, length, chunked && trailer);
    } finally {
      fields.fill('');
    }
  }

  onBody(chunk: Buffer | string): void {
    if (this.#finished) return;
    const res = this.#res;
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
    if (!this.#finished) this.#res.flush();
  }

  onEnd(trailers: string[]): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#conn = null;
    const res = this.#res;
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
      this.#res.abort();
      this.#record(this.#res.statusCode);
      return;
    }
    const next = nextTry(b, this.#tried!, this.#endpoint, kind, init.method, this.#streamed);
    if (next === 'retry') {
      init.metrics.retry(b.name, kind === 'connect' || kind === 'connect-timeout' ? 'connect' : 'reset');
      this.#dispatch();
      return;
    }
    const { status, text } = failureBody(b, this.#tried ?? [], this.#endpoint, kind, why);
    this.#reply(status, text);
  }

  #reply(status: number, text: string): void {
    this.#finished = true;
    this.#res.answer(status, text);
    this.#record(status);
  }

  #record(status: number): void {
    const init = this.#init;
    init.metrics.request(init.ingress, init.backend.name, status, (performance.now() - init.started) / 1000);
  }
}

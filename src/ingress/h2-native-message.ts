// The messages of the addon's HTTP/2 sessions (h2-native.ts): `NativeH2Request` (a
// request head, its body as a BodySource whose bytes go back to HTTP/2's windows as
// they are passed on) and `NativeH2Response` (a response framed by the session).
// NativeH2Response speaks what every other response kind here speaks (ResponseSink for
// the HTTP/1.1 upstream, node:http's writeHead/write/end for the proxy's own answers
// and the undici exchange), so the exchanges write to it unchanged.
import { answerPlain, ResponseEvents, type BodySource, type ResponseSink } from './sinks.ts';

/** native/src/h2-session.cc's H2Session (its header comment says what each call returns). */
export interface NativeH2Session {
  pump(input: Buffer | null, send: boolean): unknown[] | undefined;
  respond(id: number, status: number, lines: string[], endStream: boolean): number;
  write(id: number, chunk: Buffer): number;
  end(id: number, trailers: string[] | null): number;
  reset(id: number, code: number): void;
  consume(id: number, bytes: number): void;
  goaway(): void;
  close(): void;
}

/** What a request and its response need of their connection (NativeH2Connection in h2-native.ts). */
export interface H2Connection {
  readonly clientAddress: string;
  readonly session: NativeH2Session;
  /** Output waits for the end of this loop turn. */
  schedule(): void;
}

const INTERNAL_ERROR = 2;
/** Queued response bytes past which `body` says wait (h2-session.cc's kHighWater). */
const HIGH_WATER = 64 * 1024;

/** One HTTP/2 request: what the proxy reads of it, and its body as a BodySource. */
export class NativeH2Request implements BodySource {
  readonly httpVersionMajor = 2;
  readonly method: string;
  /** :path. */
  readonly url: string;
  /** Header lines as received, pseudo-headers first. */
  readonly rawHeaders: string[];
  /** Whether a body follows the head (no END_STREAM on HEADERS). */
  readonly hasBody: boolean;
  complete: boolean;
  readonly #conn: H2Connection;
  readonly #id: number;
  #chunks: Buffer[] = [];
  #onChunk: ((chunk: Buffer) => void) | null = null;
  #onEnd: (() => void) | null = null;
  #paused = false;
  /** Bytes delivered while paused: returned to the windows on resume. */
  #held = 0;
  #discard = false;

  constructor(conn: H2Connection, id: number, method: string, path: string, lines: string[], hasBody: boolean) {
    this.#conn = conn;
    this.#id = id;
    this.method = method;
    this.url = path;
    this.rawHeaders = lines;
    this.hasBody = hasBody;
    this.complete = !hasBody;
  }

  get clientAddress(): string {
    return this.#conn.clientAddress;
  }

  /** @internal */
  pushBody(chunk: Buffer): void {
    if (this.#discard) {
      this.#consume(chunk.length);
      return;
    }
    if (this.#onChunk === null) {
      this.#chunks.push(chunk);
      return;
    }
    this.#onChunk(chunk);
    if (this.#paused) this.#held += chunk.length;
    else this.#consume(chunk.length);
  }

  /** @internal */
  endBody(): void {
    this.complete = true;
    this.#onEnd?.();
  }

  streamBody(onChunk: (chunk: Buffer) => void, end: () => void): void {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#onChunk = onChunk;
    this.#onEnd = end;
    for (const c of chunks) this.pushBody(c);
    if (this.complete) end();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    const held = this.#held;
    this.#held = 0;
    if (held > 0) this.#consume(held);
  }

  /**
   * @internal the response ended (or the stream closed): what was not passed on, and
   * whatever still comes, goes back to the windows at once, a body that arrived whole
   * but was never read (a 404 to a POST, a paused upload whose answer came) included:
   * the connection's window is shared by every stream on it.
   */
  discard(): void {
    if (this.#discard) return;
    this.#discard = true;
    let bytes = this.#held;
    for (const c of this.#chunks) bytes += c.length;
    this.#chunks = [];
    this.#held = 0;
    this.#onChunk = null;
    this.#onEnd = null;
    if (bytes > 0) this.#consume(bytes);
  }

  #consume(bytes: number): void {
    this.#conn.session.consume(this.#id, bytes);
    this.#conn.schedule();
  }
}

/** connection-specific fields HTTP/2 does not carry (RFC 9113 8.2.2); node:http2 refuses them too. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export class NativeH2Response implements ResponseSink {
  readonly req: NativeH2Request;
  statusCode = 200;
  headersSent = false;
  finished = false;
  readonly #conn: H2Connection;
  readonly #id: number;
  /** The head ended the stream (HEAD, 204, 304): no body, no end(). */
  #headOnly = false;
  #trailers: string[] | null = null;
  #gone = false;
  readonly #events = new ResponseEvents();

  constructor(conn: H2Connection, id: number, req: NativeH2Request) {
    this.#conn = conn;
    this.#id = id;
    this.req = req;
  }

  /** node:http's shape: a status and a header object (the proxy's answers, the undici exchange). */
  writeHead(status: number, headers?: Record<string, string | number | readonly string[]>): this {
    const lines: string[] = [];
    let refused: string | null = null;
    for (const name in headers) {
      const v = headers[name]!;
      const lower = name.toLowerCase();
      // The HTTP/1.1 upstream's fields (head()) come without hop-by-hop ones; these may not.
      if (CONNECTION_SPECIFIC.has(lower)) refused ??= lower;
      if (Array.isArray(v)) for (const x of v) lines.push(lower, String(x));
      else lines.push(lower, String(v));
    }
    if (refused !== null && !this.headersSent && !this.#gone) {
      this.statusCode = status;
      this.headersSent = true;
      throw this.#refuse(`the connection-specific field "${refused}" has no place in HTTP/2`);
    }
    this.#respond(status, lines);
    return this;
  }

  // ResponseSink, for the HTTP/1.1 upstream (h1-upstream.ts).
  head(status: number, _message: string, fields: string[], contentLength: number, _trailers: boolean): void {
    const lines: string[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) lines.push(fields[i]!.toLowerCase(), fields[i + 1]!);
    if (contentLength >= 0) lines.push('content-length', String(contentLength));
    try {
      this.#respond(status, lines);
    } catch {
      // The stream is reset; the exchange sees it close.
    }
  }

  #respond(status: number, lines: string[]): void {
    this.statusCode = status;
    if (this.headersSent || this.#gone) return;
    this.headersSent = true;
    this.#headOnly = this.req.method === 'HEAD' || status === 204 || status === 304;
    const rv = this.#conn.session.respond(this.#id, status, lines, this.#headOnly);
    if (rv === -1) throw this.#refuse('a field name or value HTTP/2 cannot carry');
    this.#conn.schedule();
  }

  #refuse(why: string): Error {
    this.abort();
    return new Error(`invalid response header: ${why}`);
  }

  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.#headOnly || this.#gone || this.finished) return true;
    const queued = this.#conn.session.write(this.#id, typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    this.#conn.schedule();
    return queued <= HIGH_WATER;
  }

  body(chunk: Buffer | string): boolean {
    return this.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
  }

  flush(): void {
    this.#conn.schedule();
  }

  trailers(fields: string[]): void {
    const t: string[] = [];
    for (let i = 0; i + 1 < fields.length; i += 2) t.push(fields[i]!.toLowerCase(), fields[i + 1]!);
    this.#trailers = t;
  }

  addTrailers(headers: Record<string, string | readonly string[]>): void {
    const t: string[] = [];
    for (const name in headers) {
      const v = headers[name]!;
      if (Array.isArray(v)) for (const x of v) t.push(name.toLowerCase(), x as string);
      else t.push(name.toLowerCase(), v as string);
    }
    this.#trailers = t;
  }

  end(chunk?: Buffer | string): void {
    if (this.finished) return;
    if (!this.headersSent) {
      const length = chunk === undefined ? 0 : Buffer.byteLength(chunk);
      this.writeHead(this.statusCode, { 'content-length': length });
    }
    if (chunk !== undefined) this.write(chunk);
    this.finished = true;
    if (!this.#gone && !this.#headOnly) this.#conn.session.end(this.#id, this.#trailers);
    this.#conn.schedule();
    this.req.discard();
  }

  /** Cuts the response short: the client sees RST_STREAM. */
  abort(): void {
    if (this.#gone) return;
    this.finished = true;
    this.#conn.session.reset(this.#id, INTERNAL_ERROR);
    this.#conn.schedule();
  }

  destroy(_err?: Error): void {
    this.abort();
  }

  answer(status: number, text: string): void {
    answerPlain(this, status, text);
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    if (event === 'close' && this.#gone) queueMicrotask(fn);
    else this.#events.add(event, fn);
    return this;
  }

  /** @internal the stream closed (sent whole, reset, or its connection gone): 'close', once. */
  closed(): void {
    if (this.#gone) return;
    this.#gone = true;
    this.req.discard();
    this.#events.close();
  }

  /** @internal */
  drained(): void {
    this.#events.drain();
  }
}

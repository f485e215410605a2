// The HTTP/1.1 engine's messages: `H1Request` (a parsed request head, its body as it
// arrives) and `H1Response` (a response written through the connection's output,
// h1-server.ts). H1Response is a ResponseSink for the upstream engine and speaks the
// part of node:http's ServerResponse the proxy's other paths use (writeHead, write,
// end, 'drain', 'close'), so its own answers and the undici exchange (a GRPC backend)
// write to it unchanged.
import { STATUS_CODES } from 'node:http';
import { TextBuilder } from './headers.ts';
import { answerPlain, readWhole, ResponseEvents, type ResponseSink } from './sinks.ts';

/** What a request and its response need of their connection (ClientConnection in h1-server.ts). */
export interface H1Connection {
  readonly clientAddress: string;
  /** Queues output of `res`: head or framing text, then a body piece (a string is latin1), then more text; false when the client is behind. */
  out(res: H1Response, text: string | null, body: Buffer | string | null, after?: string): boolean;
  /** Writes what `res` queued by the end of this turn. */
  schedule(res: H1Response): void;
  /** Writes what `res` queued now. */
  flush(res: H1Response): void;
  /** `res` ended: write it, then go on to the next request or close. */
  finish(res: H1Response): void;
  /** An interim (1xx) response, ahead of whatever is queued. */
  interim(text: string): void;
  /** Stops or restarts reading the socket. */
  reading(on: boolean): void;
  destroy(): void;
}

export class H1Request {
  readonly method: string;
  /** The request target as sent. */
  readonly url: string;
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor: number;
  readonly rawHeaders: string[];
  readonly keepAlive: boolean;
  readonly upgrade: boolean;
  /** Whether the head announced a body (Content-Length over 0, or Transfer-Encoding). */
  readonly hasBody: boolean;
  /** Expect: 100-continue from an HTTP/1.1 client: "100 Continue" goes out when the body is first asked for. */
  #expectContinue: boolean;
  /** Body bytes not yet taken by a reader, and whether the body is whole. */
  #chunks: Buffer[] = [];
  #bodyBytes = 0;
  complete = false;
  #onChunk: ((chunk: Buffer) => void) | null = null;
  #onEnd: (() => void) | null = null;
  readonly #conn: H1Connection;

  constructor(conn: H1Connection, method: string, url: string, minor: number, raw: string[], keepAlive: boolean, upgrade: boolean) {
    this.#conn = conn;
    this.method = method;
    this.url = url;
    this.httpVersionMinor = minor;
    this.rawHeaders = raw;
    this.keepAlive = keepAlive;
    this.upgrade = upgrade;
    let body = false, expect = false;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i]!;
      if (n.length === 14 && n.toLowerCase() === 'content-length') body ||= raw[i + 1] !== '0';
      else if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') body = true;
      else if (n.length === 6 && n.toLowerCase() === 'expect') expect = raw[i + 1]!.toLowerCase() === '100-continue';
    }
    this.hasBody = body;
    this.#expectContinue = expect && minor >= 1;
  }

  /** The client's address as the upstream is told it (listen.ts clientAddress), once per connection. */
  get clientAddress(): string {
    return this.#conn.clientAddress;
  }



  get bufferedBodyBytes(): number {
    return this.#bodyBytes;
  }

  /** @internal the connection's parser delivers the body here. */
  pushBody(chunk: Buffer): void {
    if (this.#onChunk !== null) {
      this.#onChunk(chunk);
      return;
    }
    this.#chunks.push(chunk);
    this.#bodyBytes += chunk.length;
  }

  /** @internal */
  endBody(): void {
    this.complete = true;
    this.#onEnd?.();
  }

  /** The body's chunks as they come (those already buffered first); `end` when it is whole. */
  streamBody(onChunk: (chunk: Buffer) => void, end: () => void): void {
    if (this.#expectContinue) {
      // RFC 9110 10.1.1: the client waits for this before it sends the body.
      this.#expectContinue = false;
      if (!this.complete) this.#conn.interim('HTTP/1.1 100 Continue\r\n\r\n');
    }
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#bodyBytes = 0;
    for (const c of chunks) onChunk(c);
    if (this.complete) {
      end();
      return;
    }
    this.#onChunk = onChunk;
    this.#onEnd = end;
  }

  /** The whole body, or null once it passes `limit` bytes (reading then stops). */
  readBody(limit: number, done: (body: Buffer | null) => void): void {
    readWhole(this, limit, done);
  }

  /** Stops reading the client (backpressure from the upstream) and starts again. */
  pause(): void { this.#conn.reading(false); }
  resume(): void { this.#conn.reading(true); }
}

type Framing = 'length' | 'chunked' | 'close' | 'none';

/** Where response heads are built (H1Response.head). */
const HEAD = new TextBuilder();

/** Status lines with their standard reason, made once. */
const STATUS_LINES = new Map<number, string>();

function statusLine(status: number, message: string): string {
  if (message !== STATUS_CODES[status]) return `HTTP/1.1 ${status} ${message}\r\n`;
  let line = STATUS_LINES.get(status);
  if (line === undefined) STATUS_LINES.set(status, line = `HTTP/1.1 ${status} ${message}\r\n`);
  return line;
}

/**
 * The response to one request. The raw methods (`rawHead`, `rawBody`, `end`) are the
 * HTTP/1.1 upstream's (h1-upstream.ts); writeHead/write/end are node:http's, for
 * everything else.
 */
export class H1Response implements ResponseSink {
  readonly req: H1Request;
  statusCode = 200;
  headersSent = false;
  finished = false;
  /** Set when the connection closes after this response (the client asked, or the proxy must). */
  closeAfter: boolean;
  #framing: Framing = 'none';
  #trailers = '';
  readonly #events = new ResponseEvents();
  readonly #conn: H1Connection;

  constructor(conn: H1Connection, req: H1Request) {
    this.#conn = conn;
    this.req = req;
    this.closeAfter = !req.keepAlive;
  }

  /** A head built by the caller: the status line and fields without framing or Connection, each line ending in CRLF. */
  rawHead(status: number, lines: string, contentLength: number): void {
    this.#conn.out(this, `${lines}${this.#framingLines(status, contentLength)}`, null);
  }

  /** Chooses the framing for the body: its lines, the head's last (CRLF at the end). */
  #framingLines(status: number, contentLength: number): string {
    this.statusCode = status;
    this.headersSent = true;
    const noBody = this.req.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    let head = '';
    if (noBody) {
      this.#framing = 'none';
      if (contentLength >= 0) head = `content-length: ${contentLength}\r\n`;
    } else if (contentLength >= 0) {
      this.#framing = 'length';
      head = `content-length: ${contentLength}\r\n`;
    } else if (this.req.httpVersionMinor >= 1) {
      this.#framing = 'chunked';
      head = 'transfer-encoding: chunked\r\n';
    } else {
      this.#framing = 'close';
      this.closeAfter = true;
    }
    if (this.closeAfter) head += 'connection: close\r\n';
    else if (this.req.httpVersionMinor === 0) head += 'connection: keep-alive\r\n';
    return `${head}\r\n`;
  }

  /** A piece of the body. False: the client is not taking it fast enough, wait for 'drain'. */
  rawBody(chunk: Buffer | string): boolean {
    if (chunk.length === 0 || this.#framing === 'none') return true;
    if (this.#framing === 'chunked') return this.#conn.out(this, `${chunk.length.toString(16)}\r\n`, chunk, '\r\n');
    return this.#conn.out(this, null, chunk);
  }

  // ResponseSink, for the HTTP/1.1 upstream (h1-upstream.ts).
  head(status: number, message: string, fields: readonly string[], contentLength: number, _trailers: boolean): void {
    const h = HEAD;
    h.add(statusLine(status, message));
    for (let i = 0; i + 1 < fields.length; i += 2) { h.add(fields[i]!); h.add(': '); h.add(fields[i + 1]!); h.add('\r\n'); }
    h.add(this.#framingLines(status, contentLength));
    this.#conn.out(this, h.take(), null);
  }

  body(chunk: Buffer | string): boolean {
    return this.rawBody(chunk);
  }

  trailers(fields: readonly string[]): void {
    for (let i = 0; i + 1 < fields.length; i += 2) this.#trailers += `${fields[i]!}: ${fields[i + 1]!}\r\n`;
  }

  abort(): void {
    this.destroy();
  }

  answer(status: number, text: string): void {
    answerPlain(this, status, text);
  }

  /** Writes what the raw methods queued (they leave it for one write with what follows). */
  flush(): void {
    this.#conn.flush(this);
  }

  writeHead(status: number, headers?: Record<string, string | number | readonly string[]>): this {
    let lines = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`;
    let length = -1;
    for (const name in headers) {
      const v = headers[name]!;
      const lower = name.toLowerCase();
      if (lower === 'content-length') { length = Number(v); continue; }
      if (lower === 'connection') { if (String(v).toLowerCase() === 'close') this.closeAfter = true; continue; }
      if (lower === 'transfer-encoding') continue;
      if (Array.isArray(v)) for (const x of v) lines += `${name}: ${x}\r\n`;
      else lines += `${name}: ${v}\r\n`;
    }
    this.rawHead(status, lines, length);
    this.#conn.schedule(this);
    return this;
  }

  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode);
    const ok = this.rawBody(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    this.#conn.schedule(this);
    return ok;
  }

  addTrailers(headers: Record<string, string | readonly string[]>): void {
    for (const name in headers) {
      const v = headers[name]!;
      if (Array.isArray(v)) for (const x of v) this.#trailers += `${name}: ${x}\r\n`;
      else this.#trailers += `${name}: ${v as string}\r\n`;
    }
  }

  /** Ends the response; the connection goes on to the next request, or closes. */
  end(chunk?: Buffer | string): void {
    if (this.finished) return;
    if (!this.headersSent) {
      const body = chunk === undefined ? null : typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      this.writeHead(this.statusCode, { 'content-length': body === null ? 0 : body.length });
      if (body !== null) this.rawBody(body);
    } else if (chunk !== undefined) {
      this.rawBody(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    }
    this.finished = true;
    if (this.#framing === 'chunked') this.#conn.out(this, `0\r\n${this.#trailers}\r\n`, null);
    this.#conn.finish(this);
  }

  /** Cuts the response short: the client sees the connection close. */
  destroy(_err?: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.#conn.destroy();
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    this.#events.add(event, fn);
    return this;
  }

  /** @internal the response is done with (sent whole, or its connection closed): 'close', once. */
  closed(): void {
    this.#events.close();
  }

  /** @internal */
  drained(): void {
    this.#events.drain();
  }
}

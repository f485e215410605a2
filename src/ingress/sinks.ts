// Where the Ingress proxy's exchanges write responses and read streamed bodies, whatever
// the client spoke: `ResponseSink` (the HTTP/1.1 engine's H1Response, the HTTP/2 core
// API's H2Response, node:http's responses through NodeResponseSink) and `BodySource`;
// and the proxy's own plain-text answers and whole-body reads on any of them.
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Readable } from 'node:stream';

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
  /** A body piece (a string is latin1: bytes as char codes, as the addon hands small bodies over); false: wait for 'drain'. */
  body(chunk: Buffer | string): boolean;
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

/**
 * The 'close' and 'drain' listeners of an engine's response (H1Response,
 * NativeH2Response): each list runs once, then is gone, as `once` listeners do, without
 * an EventEmitter per response.
 */
export class ResponseEvents {
  // The first two 'close' listeners (the proxy's and the exchange's, on every response)
  // and the first 'drain' one in fields; an array only past those.
  #close1: (() => void) | null = null;
  #close2: (() => void) | null = null;
  #closeMore: (() => void)[] | null = null;
  #drain1: (() => void) | null = null;
  #drainMore: (() => void)[] | null = null;

  add(event: 'close' | 'drain', fn: () => void): void {
    if (event === 'close') {
      if (this.#close1 === null) this.#close1 = fn;
      else if (this.#close2 === null) this.#close2 = fn;
      else (this.#closeMore ??= []).push(fn);
    } else if (this.#drain1 === null) {
      this.#drain1 = fn;
    } else {
      (this.#drainMore ??= []).push(fn);
    }
  }

  close(): void {
    const a = this.#close1, b = this.#close2, more = this.#closeMore;
    this.#close1 = this.#close2 = null;
    this.#closeMore = null;
    a?.();
    b?.();
    if (more !== null) for (const fn of more) fn();
  }

  drain(): void {
    const a = this.#drain1, more = this.#drainMore;
    this.#drain1 = null;
    this.#drainMore = null;
    a?.();
    if (more !== null) for (const fn of more) fn();
  }
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

  body(chunk: Buffer | string): boolean {
    return (this.#res as ServerResponse).write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
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

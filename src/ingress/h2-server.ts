// The Ingress proxy's HTTP/2 requests on node:http2's core API: a request is its
// ServerHttp2Stream and header lines, not the compatibility layer's request and
// response objects around it (those were a good part of an h2 request's cost). TLS and
// ALPN are the proxy's own tls.Server (proxy.ts), which hands an h2 connection to a
// plain http2 server and an http/1.1 one to the HTTP/1.1 engine.
//
// `H2Response` is a ResponseSink (h1-upstream.ts) for the HTTP/1.1 upstream engine and
// speaks the part of node:http's ServerResponse the proxy's own answers and the undici
// exchange (GRPC endpoints) use, as H1Response does for HTTP/1.1 clients.
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { answerPlain, fieldObject, type ResponseSink } from './sinks.ts';

const { NGHTTP2_INTERNAL_ERROR } = constants;

/** One HTTP/2 request: what the proxy reads of it. */
export class H2Request {
  readonly httpVersionMajor = 2;
  readonly stream: ServerHttp2Stream;
  readonly method: string;
  /** :path. */
  readonly url: string;
  /** Header lines as node:http2 gives them, pseudo-headers included. */
  readonly rawHeaders: string[];
  readonly clientAddress: string;

  constructor(stream: ServerHttp2Stream, method: string, path: string, rawHeaders: string[], clientAddress: string) {
    this.stream = stream;
    this.method = method;
    this.url = path;
    this.rawHeaders = rawHeaders;
    this.clientAddress = clientAddress;
  }
}

export class H2Response implements ResponseSink {
  readonly stream: ServerHttp2Stream;
  statusCode = 200;
  headersSent = false;
  readonly #noBody: boolean;
  #trailers: OutgoingHttpHeaders | null = null;
  #waitsForTrailers = false;
  readonly #sendTrailers = (): void => {
    if (!this.stream.destroyed) this.stream.sendTrailers(this.#trailers ?? {});
  };

  constructor(stream: ServerHttp2Stream, method: string) {
    this.stream = stream;
    this.#noBody = method === 'HEAD';
  }

  get #gone(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  /**
   * The response head. `trailers`: the body may end with trailers (a GRPC answer; an
   * HTTP/1.1 endpoint's response that announced them), so the stream waits for them,
   * as node:http2's compatibility layer always does; without, it ends with its last
   * DATA frame.
   */
  writeHead(status: number, headers?: Record<string, string | number | readonly string[]>, trailers = true): this {
    this.statusCode = status;
    if (this.headersSent || this.#gone) return this;
    this.headersSent = true;
    const out: OutgoingHttpHeaders = { ':status': status };
    for (const name in headers) out[name.toLowerCase()] = headers[name] as string | number | string[];
    const endStream = this.#noBody || status === 204 || status === 304;
    this.#waitsForTrailers = !endStream && trailers;
    try {
      this.stream.respond(out, endStream ? { endStream: true } : this.#waitsForTrailers ? { waitForTrailers: true } : undefined);
    } catch (err) {
      // A field HTTP/2 will not carry (a connection-specific one, an invalid value): the client sees a reset.
      this.stream.close(NGHTTP2_INTERNAL_ERROR);
      throw err;
    }
    if (this.#waitsForTrailers) this.stream.once('wantTrailers', this.#sendTrailers);
    return this;
  }

  head(status: number, _message: string, fields: string[], contentLength: number, trailers = false): void {
    const headers = fieldObject(fields);
    if (contentLength >= 0) headers['content-length'] = String(contentLength);
    try {
      this.writeHead(status, headers, trailers);
    } catch {
      // The stream is reset; the exchange sees it close.
    }
  }

  write(chunk: Buffer | string): boolean {
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.#noBody || this.#gone) return true;
    return this.stream.write(chunk);
  }

  body(chunk: Buffer | string): boolean {
    return this.write(typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk);
  }

  flush(): void {}

  trailers(fields: string[]): void {
    this.#trailers = fieldObject(fields);
  }

  addTrailers(headers: OutgoingHttpHeaders): void {
    this.#trailers = { ...headers };
  }

  end(chunk?: Buffer | string): void {
    if (!this.headersSent) {
      const length = chunk === undefined ? 0 : Buffer.byteLength(chunk);
      this.writeHead(this.statusCode, { 'content-length': length }, false);
    }
    if (this.#gone) return;
    if (this.#noBody || chunk === undefined) this.stream.end();
    else this.stream.end(chunk);
  }

  abort(): void {
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }

  destroy(): void {
    this.abort();
  }

  answer(status: number, text: string): void {
    answerPlain(this, status, text);
  }

  once(event: 'close' | 'drain', fn: () => void): this {
    this.stream.once(event, fn);
    return this;
  }
}

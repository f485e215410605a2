// llhttp, the HTTP/1.1 parser inside node:http, used directly by the Ingress proxy's
// HTTP/1.1 engine (h1-server.ts, h1-upstream.ts). node:http builds an IncomingMessage,
// a ServerResponse and two streams around every request; a proxy needs none of them,
// and they are most of its cost per request (bench/ingress.ts). The parser is the same
// maintained one node:http uses, reached the way node:http reaches it: the
// `_http_common` module's HTTPParser binding, and `consume`, by which the parser reads
// a socket's bytes in C++ without a JavaScript 'data' event per read.
//
// Both are node internals without a stability promise. `available()` checks their
// shape once; where it does not hold (another Node version), the proxy serves plain
// HTTP through node:http as before (proxy.ts), and `consume` degrades to 'data'
// events per socket.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

/** The binding's parser, as node:http uses it (node's src/node_http_parser.cc). */
export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** Bytes parsed, or an Error with `code` (HPE_*) and `bytesParsed`. */
  execute(data: Buffer): number | ParseError;
  /** The end of input (a close-delimited response body ends here). */
  finish(): number | ParseError | undefined;
  consume(handle: unknown): void;
  unconsume(): void;
  getCurrentBuffer(): Buffer;
  close(): void;
  pause(): void;
  resume(): void;
  [callback: number]: unknown;
}

export interface ParseError extends Error {
  code: string;
  reason?: string;
  bytesParsed: number;
}

interface HttpParserClass {
  new(): HttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
}

/** kOnHeadersComplete's arguments: request parsers get method and url, response parsers status and reason. */
export type OnHeadersComplete = (versionMajor: number, versionMinor: number, headers: string[] | undefined, method: number | undefined,
  url: string | undefined, statusCode: number | undefined, statusMessage: string | undefined, upgrade: boolean, shouldKeepAlive: boolean) => number;

export interface ParserCallbacks {
  /** Header lines (and for requests the url) that arrived in pieces, before kOnHeadersComplete; also a chunked body's trailers. */
  onHeaders(headers: string[], url: string): void;
  /** Return 1 to tell a response parser that no body follows (the response to a HEAD). */
  onHeadersComplete: OnHeadersComplete;
  onBody(chunk: Buffer): void;
  onMessageComplete(): void;
  /** After each read the parser consumed: bytes parsed or the parse error. */
  onExecute(result: number | ParseError): void;
}

let binding: { HTTPParser: HttpParserClass; methods: string[] } | null | undefined;

function load(): { HTTPParser: HttpParserClass; methods: string[] } | null {
  if (binding !== undefined) return binding;
  try {
    const common = createRequire(import.meta.url)('_http_common') as { HTTPParser?: HttpParserClass; methods?: string[] };
    const P = common.HTTPParser;
    const ok = typeof P === 'function' && Array.isArray(common.methods)
      && typeof P.prototype.initialize === 'function' && typeof P.prototype.execute === 'function'
      && [P.kOnHeaders, P.kOnHeadersComplete, P.kOnBody, P.kOnMessageComplete, P.kOnExecute].every((k) => typeof k === 'number');
    binding = ok ? { HTTPParser: P, methods: common.methods! } : null;
  } catch {
    binding = null;
  }
  return binding;
}

/** Whether this Node exposes the parser in the shape the engine needs. */
export function available(): boolean {
  return load() !== null;
}

/** Request method names by the parser's method number. */
export function methodName(n: number): string {
  return load()!.methods[n] ?? 'GET';
}

/** node:http's limit on a request or response head (--max-http-header-size's default). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** A request (`response` false) or response parser calling `cb`. */
export function createParser(response: boolean, cb: ParserCallbacks): HttpParser {
  const { HTTPParser: P } = load()!;
  const p = new P();
  p.initialize(response ? P.RESPONSE : P.REQUEST, {}, MAX_HEAD_BYTES, 0);
  p[P.kOnHeaders] = cb.onHeaders;
  p[P.kOnHeadersComplete] = cb.onHeadersComplete;
  p[P.kOnBody] = cb.onBody;
  p[P.kOnMessageComplete] = cb.onMessageComplete;
  p[P.kOnExecute] = cb.onExecute;
  return p;
}

interface StreamHandle { isStreamBase?: boolean; _consumed?: boolean; readStart?(): number; readStop?(): number }

/**
 * Makes `parser` read `socket` in C++ (its onExecute is called per read) when the
 * socket's handle allows it, as node:http's server does; otherwise feeds it from
 * 'data' events. Returns whether the parser consumes the handle. Either way the
 * socket still emits 'end', 'close' and 'error'.
 */
export function attach(parser: HttpParser, socket: Socket, onData: (chunk: Buffer) => void): boolean {
  const handle = (socket as unknown as { _handle?: StreamHandle })._handle;
  if (handle?.isStreamBase === true && handle._consumed !== true) {
    handle._consumed = true;
    parser.consume(handle);
    return true;
  }
  socket.on('data', onData);
  return false;
}

/** Undoes `attach`'s consume, so that the socket's bytes flow as 'data' again (an upgrade). */
export function detach(parser: HttpParser, socket: Socket): void {
  const handle = (socket as unknown as { _handle?: StreamHandle })._handle;
  parser.unconsume();
  if (handle !== undefined && handle !== null) handle._consumed = false;
}

/** Stops (false) or restarts reading a consumed socket: backpressure without the stream machinery. */
export function setReading(socket: Socket, consumed: boolean, on: boolean): void {
  if (!consumed) {
    if (on) socket.resume();
    else socket.pause();
    return;
  }
  const handle = (socket as unknown as { _handle?: StreamHandle })._handle;
  if (handle === undefined || handle === null) return;
  if (on) handle.readStart?.();
  else handle.readStop?.();
}

// The client side of the Ingress proxy's HTTP/1.1 engine: a connection per client
// socket, its requests parsed by llhttp (llhttp.ts) straight from the socket, each
// handed to the proxy as an `H1Request` and an `H1Response`.
//
// - Requests are answered in order (RFC 9112 9.3.2): a pipelined request waits, its
//   body buffered, until the one before it has its whole response; reading stops
//   while one waits.
// - A response is written once where it can be: the head waits for the body until
//   the response ends, or until the upstream's read is over (`flush`; for the
//   node:http-style methods, the end of the turn), so a small response leaves in one
//   write, as nginx's does.
// - Framing towards the client is the engine's: Content-Length when the length is
//   known, chunked otherwise (an HTTP/1.0 client gets the body up to the close).
// - The request and response objects are h1-message.ts's.
// - A parse error is answered 400 (431 for a head over 16 KiB) and the connection
//   closed; an idle keep-alive connection closes after the idle timeout (KEEP_ALIVE_MS
//   unless the proxy says otherwise), as nginx's keepalive_timeout 75 s (a connection
//   still sending its first head counts as idle).
import { STATUS_CODES } from 'node:http';
import type { Server, Socket } from 'node:net';
import { H1Request, H1Response, type H1Connection } from './h1-message.ts';
import { clientAddress } from './listen.ts';
import { attach, createParser, detach, methodName, setReading, type HttpParser, type ParseError } from './llhttp.ts';
import { writeAtTurnEnd, type TurnWriter } from './turn-writes.ts';

export const KEEP_ALIVE_MS = 75_000;

/** How often idle connections are looked for: a second, or more often for a short idle timeout (tests). */
export function sweepInterval(idleTimeoutMs: number): number {
  return Math.min(1_000, Math.max(50, idleTimeoutMs / 2));
}
/** Body bytes a waiting (pipelined) request may buffer before reading stops. */
const QUEUED_BODY_BYTES = 64 * 1024;
/** Below this a body goes out in the same string as its head (one write, one copy). */
const SMALL_BODY = 2048;

export interface H1Handler {
  request(req: H1Request, res: H1Response): void;
  /** An Upgrade request (WebSocket): the socket is the handler's from now on; `head` is what followed the request head. */
  upgrade(req: H1Request, socket: Socket, head: Buffer): void;
  /** A request refused before it was one (400 unparsable, 431 head too large): for the metrics. */
  refused(status: number): void;
}

const discard = (): void => undefined;

/** One client connection: its parser, its requests in order, its output. */
class ClientConnection implements H1Connection, TurnWriter {
  readonly #socket: Socket;
  readonly #handler: H1Handler;
  readonly #parser: HttpParser;
  readonly #consumed: boolean;
  readonly #owner: H1Server;
  /** Requests parsed and not yet answered; [0] is being answered. */
  readonly #queue: H1Request[] = [];
  #active: H1Response | null = null;
  /** The request whose head or body the parser is in. */
  #parsing: H1Request | null = null;
  #partialHeaders: string[] = [];
  #partialUrl = '';
  /** Output waiting for the end of this turn (a string in latin1, then buffers). */
  #pendingText = '';
  #pendingBufs: Buffer[] = [];
  /** Registered to write at the end of the turn (turn-writes.ts); then to end the socket. */
  #turnQueued = false;
  #endAfterWrite = false;
  #readingOn = true;
  #upgradeHead: Buffer | null = null;
  #closed = false;
  /** Coarse time of the last request or response end, for the idle and head timeouts. */
  lastActive: number;
  #clientAddress: string | null = null;

  constructor(owner: H1Server, socket: Socket, handler: H1Handler, now: number) {
    this.#owner = owner;
    this.#socket = socket;
    this.#handler = handler;
    this.lastActive = now;
    socket.setNoDelay(true);
    this.#parser = createParser(false, {
      onHeaders: (headers, url) => {
        for (const h of headers) this.#partialHeaders.push(h);
        this.#partialUrl += url;
      },
      onHeadersComplete: (_major, minor, headers, method, url, _status, _message, upgrade, keepAlive) => {
        const raw = headers ?? this.#takeHeaders();
        const target = url ?? this.#takeUrl();
        const req = new H1Request(this, socket, methodName(method ?? 1), target, minor, raw, keepAlive, upgrade);
        this.#parsing = req;
        this.#queue.push(req);
        this.lastActive = this.#owner.now;
        if (!upgrade && this.#queue.length === 1) this.#next();
        return 0;
      },
      onBody: (chunk) => {
        const req = this.#parsing;
        if (req === null) return;
        req.pushBody(chunk);
        if (req !== this.#queue[0] && req.bufferedBodyBytes > QUEUED_BODY_BYTES) this.reading(false);
      },
      onMessageComplete: () => {
        const req = this.#parsing;
        this.#parsing = null;
        // Trailers of a chunked request body arrive as header lines: they are not forwarded.
        this.#partialHeaders = [];
        this.#partialUrl = '';
        if (req === null) return;
        req.endBody();
        // A pipelined request waits: read no further until the one before it is answered.
        // (One answered already, as the proxy's own answers are from its head, has left the queue.)
        if (this.#queue.indexOf(req) > 0) this.reading(false);
      },
      onExecute: (result) => this.#executed(result),
    });
    this.#consumed = attach(this.#parser, socket, (chunk) => this.#executed(this.#parser.execute(chunk), chunk));
    socket.on('drain', () => this.#active?.drained());
    socket.on('error', () => undefined);
    socket.on('close', () => this.#onClose());
  }

  get idle(): boolean {
    return this.#queue.length === 0;
  }

  get clientAddress(): string {
    return this.#clientAddress ??= clientAddress(this.#socket.remoteAddress);
  }

  #takeHeaders(): string[] {
    const h = this.#partialHeaders;
    this.#partialHeaders = [];
    return h;
  }

  #takeUrl(): string {
    const u = this.#partialUrl;
    this.#partialUrl = '';
    return u;
  }

  #executed(result: number | ParseError, chunk?: Buffer): void {
    if (typeof result !== 'number') {
      this.#parseError(result);
      return;
    }
    const last = this.#queue[this.#queue.length - 1];
    if (last !== undefined && last.upgrade && this.#upgradeHead === null) {
      // The parser stops after an upgrade request's head; what followed is the new protocol's.
      const data = chunk ?? this.#parser.getCurrentBuffer();
      this.#upgradeHead = data.subarray(result);
      if (this.#consumed) detach(this.#parser, this.#socket);
      else this.#socket.removeAllListeners('data');
      this.#socket.pause();
      if (this.#queue.length === 1) this.#next();
    }
  }

  #parseError(err: ParseError): void {
    if (this.#closed) return;
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.#handler.refused(status);
    // Whatever is being answered is cut short: the stream cannot be trusted from here on.
    const body = `tapir-ingress: ${status} ${STATUS_CODES[status]}: ${err.reason ?? err.code}\n`;
    this.#pendingText = '';
    this.#pendingBufs = [];
    if (this.#active === null) {
      this.#socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`, 'latin1');
    } else {
      this.#socket.destroy();
    }
  }

  /** Starts answering the request at the head of the queue. */
  #next(): void {
    const req = this.#queue[0];
    if (req === undefined || this.#closed) return;
    if (req.upgrade) {
      const head = this.#upgradeHead;
      if (head === null) return; // its head is not through the parser yet
      this.#queue.length = 0;
      this.#owner.release(this);
      this.#handler.upgrade(req, this.#socket, head);
      return;
    }
    const res = new H1Response(this, req);
    this.#active = res;
    this.#handler.request(req, res);
  }

  /** @internal queues output of `res` (head or framing text, then a body piece, then more text). */
  out(res: H1Response, text: string | null, body: Buffer | null, after?: string): boolean {
    if (res !== this.#active || this.#closed) return true;
    if (text !== null) this.#appendText(text);
    if (body !== null) {
      if (body.length <= SMALL_BODY && this.#pendingBufs.length === 0) this.#pendingText += body.toString('latin1');
      else {
        if (this.#pendingText !== '') { this.#pendingBufs.push(Buffer.from(this.#pendingText, 'latin1')); this.#pendingText = ''; }
        this.#pendingBufs.push(body);
      }
    }
    if (after !== undefined) this.#appendText(after);
    return this.#socket.writableLength < this.#socket.writableHighWaterMark;
  }

  /** @internal an interim (1xx) response, ahead of whatever is queued. */
  interim(text: string): void {
    if (!this.#closed) this.#socket.write(text, 'latin1');
  }

  /** @internal writes what `res` queued by the end of this turn (node:http-style callers, which do not say when a read is over). */
  schedule(res: H1Response): void {
    if (res === this.#active) this.#queueTurn();
  }

  /** @internal `res` has output for the client (the upstream finished a read): it goes at the end of this turn. */
  flush(res: H1Response): void {
    if (res === this.#active) this.#queueTurn();
  }

  #queueTurn(): void {
    if (this.#turnQueued) return;
    this.#turnQueued = true;
    writeAtTurnEnd(this);
  }

  writeTurn(): void {
    this.#turnQueued = false;
    this.#write();
    if (this.#endAfterWrite && !this.#closed) this.#socket.end();
  }

  #appendText(text: string): void {
    if (this.#pendingBufs.length === 0) this.#pendingText += text;
    else this.#pendingBufs.push(Buffer.from(text, 'latin1'));
  }

  #write(): void {
    if (this.#closed) return;
    const socket = this.#socket;
    const bufs = this.#pendingBufs;
    if (bufs.length === 0) {
      if (this.#pendingText !== '') socket.write(this.#pendingText, 'latin1');
      this.#pendingText = '';
      return;
    }
    socket.cork();
    if (this.#pendingText !== '') socket.write(this.#pendingText, 'latin1');
    for (const b of bufs) socket.write(b);
    socket.uncork();
    this.#pendingText = '';
    this.#pendingBufs = [];
  }

  /** @internal `res` ended: it is written at the end of the turn; the next request is answered, or the connection closes. */
  finish(res: H1Response): void {
    if (res !== this.#active) return;
    this.#queueTurn();
    this.#active = null;
    this.lastActive = this.#owner.now;
    res.closed();
    if (this.#closed) return;
    if (res.closeAfter) {
      this.#endAfterWrite = true;
      return;
    }
    if (!this.#readingOn) this.reading(true);
    const req = res.req;
    if (req.complete) {
      this.#queue.shift();
      this.#next();
      return;
    }
    // Answered before its body was read (a 404 to a POST): the body is read and
    // dropped, then the next request is answered. (A refused upload is answered with
    // `connection: close` instead: its body is not read at all.)
    req.streamBody(discard, () => {
      this.#queue.shift();
      this.#next();
    });
  }

  /** Stops or restarts reading the socket. */
  reading(on: boolean): void {
    if (this.#readingOn === on || this.#closed) return;
    this.#readingOn = on;
    setReading(this.#socket, this.#consumed, on);
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** Closes an idle connection (stop(), the keep-alive timeout). */
  closeIfIdle(): boolean {
    if (this.#queue.length > 0) return false;
    this.#socket.destroy();
    return true;
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.release(this);
    const res = this.#active;
    this.#active = null;
    if (res !== null) res.closed();
    if (this.#consumed && this.#upgradeHead === null) {
      try { this.#parser.unconsume(); } catch { /* the handle is gone */ }
    }
    this.#parser.close();
  }
}

/**
 * An HTTP/1.1 server: every connection of the net.Server given (listen.ts listens on
 * it) is parsed and answered here, and every socket handed to `accept` (the proxy's
 * TLS connections that chose http/1.1).
 */
export class H1Server {
  readonly #handler: H1Handler;
  readonly #idleTimeoutMs: number;
  readonly #connections = new Set<ClientConnection>();
  #timer: NodeJS.Timeout | null = null;
  /** Coarse clock (ms), advanced by the timeout sweep. */
  now = Date.now();

  constructor(server: Server | null, handler: H1Handler, idleTimeoutMs = KEEP_ALIVE_MS) {
    this.#handler = handler;
    this.#idleTimeoutMs = idleTimeoutMs;
    server?.on('connection', (socket: Socket) => this.accept(socket));
  }

  accept(socket: Socket): void {
    if (this.#timer === null) this.#startSweep();
    this.#connections.add(new ClientConnection(this, socket, this.#handler, this.now));
  }

  /** @internal */
  release(conn: ClientConnection): void {
    this.#connections.delete(conn);
  }

  /** Closes every connection not in a request; returns how many are left. */
  closeIdle(): number {
    for (const c of this.#connections) if (c.closeIfIdle()) this.#connections.delete(c);
    return this.#connections.size;
  }

  /** Closes every connection and stops the sweep. */
  destroy(): void {
    for (const c of this.#connections) c.destroy();
    this.#connections.clear();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  #startSweep(): void {
    this.now = Date.now();
    this.#timer = setInterval(() => {
      this.now = Date.now();
      for (const c of this.#connections) if (c.idle && this.now - c.lastActive > this.#idleTimeoutMs) c.destroy();
    }, sweepInterval(this.#idleTimeoutMs));
    this.#timer.unref();
  }
}

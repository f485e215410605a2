// The client side of the Ingress proxy's HTTP/1.1 engine: a connection per client
// socket, its requests parsed by llhttp on its wire (h1-wire.ts: a node socket with
// node's parser consuming it, `SocketClientWire` below, or the addon's socket,
// h1-native.ts), each handed to the proxy as an `H1Request` and an `H1Response`.
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
import type { ClientEvents, ClientWire } from './h1-wire.ts';
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

/** A node socket and node's parser reading it in C++ (llhttp.ts `consume`). */
class SocketClientWire implements ClientWire {
  readonly joinsWrites = false;
  readonly #socket: Socket;
  #parser: HttpParser | null = null;
  #consumed = false;
  #partialHeaders: string[] = [];
  #partialUrl = '';
  /** An Upgrade request's head went by: what follows it is the new protocol's. */
  #upgrading = false;
  #upgraded = false;

  constructor(socket: Socket) {
    this.#socket = socket;
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  get behind(): boolean {
    return this.#socket.writableLength >= this.#socket.writableHighWaterMark;
  }

  start(conn: ClientEvents): void {
    const socket = this.#socket;
    socket.setNoDelay(true);
    const parser = this.#parser = createParser(false, {
      onHeaders: (headers, url) => {
        for (const h of headers) this.#partialHeaders.push(h);
        this.#partialUrl += url;
      },
      onHeadersComplete: (_major, minor, headers, method, url, _status, _message, upgrade, keepAlive) => {
        if (upgrade) this.#upgrading = true;
        conn.onHead(methodName(method ?? 1), url ?? this.#takeUrl(), minor, headers ?? this.#takeHeaders(), keepAlive, upgrade);
        return 0;
      },
      onBody: (chunk) => conn.onBody(chunk),
      onMessageComplete: () => {
        // Trailers of a chunked request body arrive as header lines: they are not forwarded.
        this.#partialHeaders = [];
        this.#partialUrl = '';
        conn.onMessageComplete();
      },
      onExecute: (result) => this.#executed(conn, result),
    });
    this.#consumed = attach(parser, socket, (chunk) => this.#executed(conn, parser.execute(chunk), chunk));
    socket.on('drain', () => conn.onDrain());
    socket.on('error', () => undefined);
    socket.on('close', () => {
      conn.onClose();
      // Also after an upgrade, whose connection let go of the socket.
      this.release();
    });
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

  #executed(conn: ClientEvents, result: number | ParseError, chunk?: Buffer): void {
    if (typeof result !== 'number') {
      conn.onParseError(result.code, result.reason ?? result.code);
      return;
    }
    if (!this.#upgrading || this.#upgraded) return;
    // The parser stops after an upgrade request's head; what followed is the new protocol's.
    this.#upgraded = true;
    const data = chunk ?? this.#parser!.getCurrentBuffer();
    if (this.#consumed) detach(this.#parser!, this.#socket);
    else this.#socket.removeAllListeners('data');
    this.#socket.pause();
    conn.onUpgradeHead(data.subarray(result));
  }

  send(pieces: readonly (string | Buffer)[], n: number): void {
    const socket = this.#socket;
    if (n === 1) {
      const p = pieces[0]!;
      if (typeof p === 'string') socket.write(p, 'latin1');
      else socket.write(p);
      return;
    }
    socket.cork();
    for (let i = 0; i < n; i++) {
      const p = pieces[i]!;
      if (typeof p === 'string') socket.write(p, 'latin1');
      else socket.write(p);
    }
    socket.uncork();
  }

  reading(on: boolean): void {
    setReading(this.#socket, this.#consumed, on);
  }

  end(text?: string): void {
    if (text === undefined) this.#socket.end();
    else this.#socket.end(text, 'latin1');
  }

  destroy(): void {
    this.#socket.destroy();
  }

  takeSocket(): Socket {
    return this.#socket;
  }

  release(): void {
    const parser = this.#parser;
    if (parser === null) return;
    this.#parser = null;
    if (this.#consumed && !this.#upgraded) {
      try { parser.unconsume(); } catch { /* the handle is gone */ }
    }
    parser.close();
  }
}

/**
 * A connection's requests in order: the one being answered, then any pipelined behind
 * it (rare: those get an array). No array per request, as a shift to empty and a push
 * again would make.
 */
class RequestQueue {
  first: H1Request | null = null;
  #behind: H1Request[] | null = null;
  size = 0;

  push(req: H1Request): void {
    if (this.first === null) this.first = req;
    else (this.#behind ??= []).push(req);
    this.size++;
  }

  shift(): void {
    if (this.size === 0) return;
    this.size--;
    this.first = this.#behind === null || this.#behind.length === 0 ? null : this.#behind.shift()!;
  }

  /** Whether `req` waits behind another. */
  waiting(req: H1Request): boolean {
    return req !== this.first && this.#behind !== null && this.#behind.includes(req);
  }

  clear(): void {
    this.first = null;
    this.#behind = null;
    this.size = 0;
  }
}

/** One client connection: its requests in order, its output; what it reads comes from its wire. */
export class ClientConnection implements H1Connection, ClientEvents, TurnWriter {
  readonly #wire: ClientWire;
  readonly #handler: H1Handler;
  readonly #owner: H1Server;
  /** Requests parsed and not yet answered; [0] is being answered. */
  readonly #queue = new RequestQueue();
  #active: H1Response | null = null;
  /** The request whose head or body the parser is in. */
  #parsing: H1Request | null = null;
  /**
   * Output waiting for the end of this turn: latin1 text and buffers in order, adjacent
   * text joined; #pendingN of them. The array keeps its storage from one response to
   * the next (a length of 0 would free it, and the next push allocate it again).
   */
  readonly #pending: (string | Buffer)[] = [];
  #pendingN = 0;
  /** Registered to write at the end of the turn (turn-writes.ts); then to end the socket. */
  #turnQueued = false;
  #endAfterWrite = false;
  #readingOn = true;
  #upgradeHead: Buffer | null = null;
  #closed = false;
  /** Coarse time of the last request or response end, for the idle and head timeouts. */
  lastActive: number;
  #clientAddress: string | null = null;

  constructor(owner: H1Server, wire: ClientWire, handler: H1Handler, now: number) {
    this.#owner = owner;
    this.#wire = wire;
    this.#handler = handler;
    this.lastActive = now;
    wire.start(this);
  }

  get idle(): boolean {
    return this.#queue.size === 0;
  }

  get clientAddress(): string {
    return this.#clientAddress ??= clientAddress(this.#wire.remoteAddress);
  }

  // What the wire parsed.

  /** A request head. */
  onHead(method: string, url: string, minor: number, raw: string[], keepAlive: boolean, upgrade: boolean): void {
    const req = new H1Request(this, method, url, minor, raw, keepAlive, upgrade);
    this.#parsing = req;
    this.#queue.push(req);
    this.lastActive = this.#owner.now;
    if (!upgrade && this.#queue.size === 1) this.#next();
  }

  onBody(chunk: Buffer): void {
    const req = this.#parsing;
    if (req === null) return;
    req.pushBody(chunk);
    if (req !== this.#queue.first && req.bufferedBodyBytes > QUEUED_BODY_BYTES) this.reading(false);
  }

  onMessageComplete(): void {
    const req = this.#parsing;
    this.#parsing = null;
    if (req === null) return;
    req.endBody();
    // A pipelined request waits: read no further until the one before it is answered.
    // (One answered already, as the proxy's own answers are from its head, has left the queue.)
    if (this.#queue.waiting(req)) this.reading(false);
  }

  /** The last request was an Upgrade: `rest` is what followed its head; reading has stopped. */
  onUpgradeHead(rest: Buffer): void {
    this.#upgradeHead = rest;
    if (this.#queue.size === 1) this.#next();
  }

  onParseError(code: string, reason: string): void {
    if (this.#closed) return;
    const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    this.#handler.refused(status);
    // Whatever is being answered is cut short: the stream cannot be trusted from here on.
    const body = `tapir-ingress: ${status} ${STATUS_CODES[status]}: ${reason === '' ? code : reason}\n`;
    this.#dropPending();
    if (this.#active === null) {
      this.#wire.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    } else {
      this.#wire.destroy();
    }
  }

  onDrain(): void {
    this.#active?.drained();
  }

  /** Starts answering the request at the head of the queue. */
  #next(): void {
    const req = this.#queue.first;
    if (req === null || this.#closed) return;
    if (req.upgrade) {
      const head = this.#upgradeHead;
      if (head === null) return; // its head is not through the parser yet
      this.#queue.clear();
      this.#closed = true;
      this.#owner.release(this);
      // (The wire's parser is not released here: this may run inside its own callback;
      // node's wire frees it when the socket closes.)
      const socket = this.#wire.takeSocket();
      this.#handler.upgrade(req, socket, head);
      return;
    }
    const res = new H1Response(this, req);
    this.#active = res;
    this.#handler.request(req, res);
  }

  /** @internal queues output of `res` (head or framing text, then a body piece, then more text). */
  out(res: H1Response, text: string | null, body: Buffer | string | null, after?: string): boolean {
    if (res !== this.#active || this.#closed) return true;
    if (text !== null) this.#appendText(text);
    if (typeof body === 'string') {
      this.#appendText(body);
    } else if (body !== null) {
      // On node's socket a small body joined to its head leaves in one write; the
      // addon's sockets join whatever is sent together themselves.
      if (body.length <= SMALL_BODY && !this.#wire.joinsWrites) this.#appendText(body.toString('latin1'));
      else this.#pending[this.#pendingN++] = body;
    }
    if (after !== undefined) this.#appendText(after);
    return !this.#wire.behind;
  }

  /** @internal an interim (1xx) response, ahead of whatever is queued. */
  interim(text: string): void {
    if (!this.#closed) this.#wire.send([text], 1);
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
    if (this.#endAfterWrite && !this.#closed) this.#wire.end();
  }

  #appendText(text: string): void {
    const p = this.#pending, n = this.#pendingN;
    if (n > 0 && typeof p[n - 1] === 'string') p[n - 1] += text;
    else p[this.#pendingN++] = text;
  }

  #write(): void {
    if (this.#closed) return;
    if (this.#pendingN === 0) return;
    this.#wire.send(this.#pending, this.#pendingN);
    this.#dropPending();
  }

  /** Empties #pending, keeping its storage. */
  #dropPending(): void {
    const p = this.#pending;
    for (let i = 0; i < this.#pendingN; i++) p[i] = '';
    this.#pendingN = 0;
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
    this.#wire.reading(on);
  }

  destroy(): void {
    this.#wire.destroy();
  }

  /** Closes an idle connection (stop(), the keep-alive timeout). */
  closeIfIdle(): boolean {
    if (this.#queue.size > 0) return false;
    this.#wire.destroy();
    return true;
  }

  /** The wire is gone (the peer closed it, it broke, or destroy()). */
  onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#owner.release(this);
    const res = this.#active;
    this.#active = null;
    if (res !== null) res.closed();
    this.#wire.release();
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
    this.acceptWire(new SocketClientWire(socket));
  }

  /** A connection on another wire (the addon's socket, h1-native.ts). */
  acceptWire(wire: ClientWire): void {
    if (this.#timer === null) this.#startSweep();
    this.#connections.add(new ClientConnection(this, wire, this.#handler, this.now));
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

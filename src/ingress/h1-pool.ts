// The HTTP/1.1 engine's upstream connections: keep-alive connections to endpoints
// (plain, or TLS for backend-protocol HTTPS, certificates not verified as
// ingress-nginx's proxy_ssl_verify off), their responses parsed by llhttp on their
// wire (h1-wire.ts: the addon's socket for plain HTTP where the proxy has the addon's
// sockets, h1-native.ts; otherwise a node socket, `SocketUpstreamWire` below) and
// handed to the exchange each serves (h1-upstream.ts).
//
// Timeouts without a timer per request: every busy connection carries a deadline on a
// coarse clock, and one sweep per SWEEP_MS (running while any connection is open)
// fails the ones past it: the connect timeout until the connection is up, then the
// read timeout from the request's last byte out or the response's last byte in, as
// nginx's proxy_read_timeout counts between two reads.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { UpstreamEvents, UpstreamWire } from './h1-wire.ts';
import { attach, available as llhttpAvailable, createParser, setReading, type ParseError } from './llhttp.ts';
import type { BackendProtocol } from './model.ts';
import type { BackendState } from './router.ts';
import { NativeUpstreamWire, type NativeH1 } from './h1-native.ts';
import { writeAtTurnEnd, type TurnWriter } from './turn-writes.ts';
import { UpstreamPools, type Failure } from './upstream.ts';

/** What a connection needs of the exchange it serves (H1Exchange). */
export interface PooledExchange {
  /** The request is a HEAD: the response has no body whatever its head says. */
  readonly skipResponseBody: boolean;
  /** The response head went to the client. */
  readonly responding: boolean;
  /** The whole request went out (a connection is reused only then). */
  readonly requestSent: boolean;
  onHead(status: number, message: string, raw: string[]): void;
  /** A body piece (a string is latin1: the addon hands small ones over so). */
  onBody(chunk: Buffer | string): void;
  onEnd(trailers: string[]): void;
  /** The end of a read from the endpoint. */
  flush(): void;
  failed(kind: Failure, why: string): void;
}

const SWEEP_MS = 100;
/** Idle connections kept per endpoint (ingress-nginx's upstream keepalive is 320 per worker). */
const MAX_IDLE = 320;
const IDLE_MS = 60_000;

/** Connections to one endpoint. */
export class EndpointPool {
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

/** A node socket (net or TLS) and node's parser reading it (llhttp.ts). */
class SocketUpstreamWire implements UpstreamWire {
  readonly #pool: EndpointPool;
  #socket: Socket | null = null;
  #consumed = false;
  /** Header lines that came in pieces (and a chunked body's trailers). */
  #lines: string[] = [];

  constructor(pool: EndpointPool) {
    this.#pool = pool;
  }

  start(conn: UpstreamEvents): void {
    const pool = this.#pool;
    const socket = this.#socket = pool.tls
      ? tlsConnect({ host: pool.ip, port: pool.port, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : netConnect({ host: pool.ip, port: pool.port });
    socket.setNoDelay(true);
    const parser = createParser(true, {
      onHeaders: (headers) => { for (const h of headers) this.#lines.push(h); },
      onHeadersComplete: (_major, _minor, headers, _method, _url, status, message, _upgrade, keepAlive) =>
        conn.onHead(status ?? 0, message ?? '', headers ?? this.#takeLines(), keepAlive) ? 1 : 0,
      onBody: (chunk) => conn.onBody(chunk),
      onMessageComplete: () => conn.onMessageComplete(this.#takeLines()),
      onExecute: (result) => this.#executed(conn, result),
    });
    let connected = false;
    socket.once(pool.tls ? 'secureConnect' : 'connect', () => {
      connected = true;
      this.#consumed = attach(parser, socket, (chunk) => this.#executed(conn, parser.execute(chunk)));
      conn.onConnected();
    });
    socket.on('drain', () => conn.onDrain());
    socket.on('error', (err: Error & { code?: string }) => conn.onClosed(connected ? 'reset' : 'connect', err.code ?? null, err.message));
    socket.on('close', () => {
      // A body delimited by the close ends here (its exchange is told before the close).
      if (connected) parser.finish();
      conn.onClosed('reset', null, null);
      // The parser is freed only once the socket is gone: a consumed handle reads into it until then.
      if (this.#consumed) parser.unconsume();
      parser.close();
    });
  }

  #takeLines(): string[] {
    const t = this.#lines;
    if (t.length > 0) this.#lines = [];
    return t;
  }

  #executed(conn: UpstreamEvents, result: number | ParseError): void {
    if (typeof result !== 'number') conn.onParseError(result.reason ?? result.code);
    else conn.onReadEnd();
  }

  send(text: string | null, body: Buffer | null): boolean {
    const socket = this.#socket!;
    if (body === null || body.length === 0) return text === null ? true : socket.write(text, 'latin1');
    if (text === null) return socket.write(body);
    socket.cork();
    socket.write(text, 'latin1');
    const ok = socket.write(body);
    socket.uncork();
    return ok;
  }

  reading(on: boolean): void {
    if (this.#socket !== null) setReading(this.#socket, this.#consumed, on);
  }

  skipBody(): void {
    // node's parser asks at the head (onHead's answer).
  }

  destroy(): void {
    this.#socket?.destroy();
  }
}

/** One keep-alive connection to an endpoint, serving one exchange at a time. */
export class UpstreamConnection implements UpstreamEvents, TurnWriter {
  readonly #owner: H1Pools;
  readonly #pool: EndpointPool;
  readonly #wire: UpstreamWire;
  #exchange: PooledExchange | null = null;
  #connected = false;
  /** Coarse ms after which the sweep fails this connection's exchange (Infinity: idle, then closed IDLE_MS after idleSince). */
  deadline: number;
  idleSince = 0;
  #readTimeoutMs = 0;
  /** A 1xx response is being parsed: its end is not the exchange's. */
  #informational = false;
  #keepAlive = false;
  #closed = false;
  /** A request waiting for the end of the turn (turn-writes.ts): its head, and its whole body if it has one. */
  #head: string | null = null;
  #body: Buffer | null = null;
  #onDrain: (() => void) | null = null;
  #readingOn = true;

  constructor(owner: H1Pools, pool: EndpointPool) {
    this.#owner = owner;
    this.#pool = pool;
    this.deadline = owner.now + pool.connectTimeoutMs;
    owner.open.add(this);
    this.#wire = owner.wire(pool);
    this.#wire.start(this);
  }

  // What the wire parsed.

  onConnected(): void {
    this.#connected = true;
    if (this.#exchange !== null) this.deadline = this.#owner.now + this.#readTimeoutMs;
  }

  /** A response head; true: it has no body (the request was a HEAD). */
  onHead(status: number, message: string, raw: string[], keepAlive: boolean): boolean {
    const ex = this.#exchange;
    if (ex === null) return false;
    this.#informational = status < 200;
    if (this.#informational) return false; // 100 Continue, 103 Early Hints: the final response follows
    this.#keepAlive = keepAlive;
    ex.onHead(status, message, raw);
    return ex.skipResponseBody;
  }

  onBody(chunk: Buffer | string): void {
    this.#exchange?.onBody(chunk);
  }

  onMessageComplete(trailers: string[]): void {
    if (this.#informational) { this.#informational = false; return; }
    const ex = this.#exchange;
    if (ex === null) return;
    this.#exchange = null;
    this.deadline = Infinity;
    ex.onEnd(trailers);
    if (this.#keepAlive && ex.requestSent && !this.#closed) {
      // Reading stopped for a slow client may not have restarted: an idle connection
      // reads, to see its endpoint close it, and the next response.
      if (!this.#readingOn) this.reading(true);
      this.idleSince = this.#owner.now;
      this.#pool.release(this);
    } else {
      this.destroy();
    }
  }

  /** The end of a read from the endpoint. */
  onReadEnd(): void {
    const ex = this.#exchange;
    if (ex !== null) {
      this.deadline = this.#owner.now + this.#readTimeoutMs;
      ex.flush();
    }
  }

  onParseError(reason: string): void {
    this.#exchange?.failed('invalid', `invalid response: ${reason}`);
    this.#exchange = null;
    this.destroy();
  }

  onDrain(): void {
    const fn = this.#onDrain;
    this.#onDrain = null;
    fn?.();
  }

  /** The connection failed or closed (`code`: the error's, null for a close by the endpoint). */
  onClosed(kind: 'connect' | 'reset', code: string | null, message: string | null): void {
    const left = this.#exchange;
    this.#exchange = null;
    if (left !== null) {
      const why = kind === 'connect'
        ? (code === 'ECONNREFUSED' ? 'connection refused' : code ?? message ?? 'connect failed')
        : code === null && message === null ? 'the connection closed before a response' : `${code ?? ''}${code === null ? '' : ': '}${message ?? ''}`;
      left.failed(kind, why);
    }
    this.destroy();
  }

  /** Sends a request head (and a whole body) for `ex`. */
  send(ex: PooledExchange, head: string, body: Buffer | null, readTimeoutMs: number): void {
    this.#exchange = ex;
    this.#readTimeoutMs = readTimeoutMs;
    this.deadline = this.#owner.now + (this.#connected ? readTimeoutMs : this.#pool.connectTimeoutMs);
    if (ex.skipResponseBody) this.#wire.skipBody();
    this.#head = head;
    this.#body = body;
    writeAtTurnEnd(this);
  }

  writeTurn(): void {
    const head = this.#head;
    if (head === null) return;
    const body = this.#body;
    this.#head = null;
    this.#body = null;
    if (!this.#closed) this.#wire.send(head, body);
  }

  /** A piece of a streamed request body; false when the endpoint is not taking it fast enough. */
  write(chunk: Buffer | string): boolean {
    // The head goes first.
    if (this.#head !== null) this.writeTurn();
    if (this.#closed) return true;
    return typeof chunk === 'string' ? this.#wire.send(chunk, null) : this.#wire.send(null, chunk);
  }

  /** Runs `fn` once the endpoint took what was written (after write() said false). */
  whenDrained(fn: () => void): void {
    this.#onDrain = fn;
  }

  /** Stops or restarts reading the response (the client is slower than the endpoint). */
  reading(on: boolean): void {
    if (this.#closed || this.#readingOn === on) return;
    this.#readingOn = on;
    this.#wire.reading(on);
  }

  /** The sweep: past the deadline. */
  timedOut(): void {
    const ex = this.#exchange;
    this.#exchange = null;
    if (ex !== null) ex.failed(this.#connected ? 'timeout' : 'connect-timeout', this.#connected ? 'no response within the read timeout' : 'connect timed out');
    this.destroy();
  }

  destroy(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#owner.open.delete(this);
    this.#pool.forget(this);
    this.#wire.destroy();
  }
}

/**
 * The HTTP/1.1 engine's upstream connections, by the same keys as the undici pools
 * (UpstreamPools.key), retained after each configuration the same way.
 */
export class H1Pools {
  readonly #pools = new Map<string, EndpointPool>();
  readonly #byBackend = new WeakMap<BackendState, (EndpointPool | undefined)[]>();
  /** The addon's sockets for plain-HTTP endpoints (h1-native.ts), or null: node:net's. */
  readonly #native: NativeH1 | null;
  /** Every connection, busy or idle: the sweep's to walk (membership changes only when one opens or closes, not per request). */
  readonly open = new Set<UpstreamConnection>();
  #timer: NodeJS.Timeout | null = null;
  /** Coarse clock (ms), advanced by the sweep. */
  now = Date.now();

  constructor(native: NativeH1 | null = null) {
    this.#native = native;
  }

  /** The wire of a new connection to `pool`'s endpoint: the addon's socket for plain HTTP where there is one, a node socket otherwise. */
  wire(pool: EndpointPool): UpstreamWire {
    return this.#native !== null && !pool.tls ? new NativeUpstreamWire(this.#native, pool.ip, pool.port) : new SocketUpstreamWire(pool);
  }

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
    for (const c of [...this.open]) c.destroy();
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  keys(): IterableIterator<string> {
    return this.#pools.keys();
  }

  #startSweep(): void {
    this.now = Date.now();
    this.#timer = setInterval(() => {
      const now = this.now = Date.now();
      for (const c of this.open) {
        if (c.deadline !== Infinity) {
          if (now > c.deadline) c.timedOut();
        } else if (now - c.idleSince > IDLE_MS) {
          c.destroy();
        }
      }
      if (this.open.size === 0 && this.#timer !== null) {
        clearInterval(this.#timer);
        this.#timer = null;
      }
    }, SWEEP_MS);
    this.#timer.unref();
  }
}

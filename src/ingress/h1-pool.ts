// The HTTP/1.1 engine's upstream connections: keep-alive connections to endpoints
// (plain, or TLS for backend-protocol HTTPS, certificates not verified as
// ingress-nginx's proxy_ssl_verify off), their responses parsed by llhttp straight from
// the socket and handed to the exchange each serves (h1-upstream.ts).
//
// Timeouts without a timer per request: every busy connection carries a deadline on a
// coarse clock, and one sweep per SWEEP_MS (running while any connection is open)
// fails the ones past it: the connect timeout until the connection is up, then the
// read timeout from the request's last byte out or the response's last byte in, as
// nginx's proxy_read_timeout counts between two reads.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { attach, available as llhttpAvailable, createParser, setReading, type HttpParser, type ParseError } from './llhttp.ts';
import type { BackendProtocol } from './model.ts';
import type { BackendState } from './router.ts';
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
  onBody(chunk: Buffer): void;
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

/** One keep-alive connection to an endpoint, serving one exchange at a time. */
export class UpstreamConnection implements TurnWriter {
  readonly #owner: H1Pools;
  readonly #pool: EndpointPool;
  readonly #socket: Socket;
  readonly #parser: HttpParser;
  #exchange: PooledExchange | null = null;
  #connected = false;
  /** Coarse ms after which the sweep fails this connection's exchange (Infinity: idle, then closed IDLE_MS after idleSince). */
  deadline: number;
  idleSince = 0;
  #readTimeoutMs = 0;
  /** A 1xx response is being parsed: its end is not the exchange's. */
  #informational = false;
  #keepAlive = false;
  #trailers: string[] = [];
  #closed = false;
  #consumed = false;
  /** A request waiting for the end of the turn (turn-writes.ts): its head, and its whole body if it has one. */
  #head: string | null = null;
  #body: Buffer | null = null;

  constructor(owner: H1Pools, pool: EndpointPool) {
    this.#owner = owner;
    this.#pool = pool;
    this.deadline = owner.now + pool.connectTimeoutMs;
    owner.open.add(this);
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
        this.deadline = Infinity;
        const trailers = this.#takeTrailers();
        ex.onEnd(trailers);
        if (this.#keepAlive && ex.requestSent && !this.#closed) {
          this.idleSince = this.#owner.now;
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
  send(ex: PooledExchange, head: string, body: Buffer | null, readTimeoutMs: number): void {
    this.#exchange = ex;
    this.#readTimeoutMs = readTimeoutMs;
    this.deadline = this.#owner.now + (this.#connected ? readTimeoutMs : this.#pool.connectTimeoutMs);
    this.#head = head;
    this.#body = body;
    writeAtTurnEnd(this);
  }

  writeTurn(): void {
    const head = this.#head, body = this.#body;
    if (head === null) return;
    this.#head = null;
    this.#body = null;
    if (this.#closed) return;
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
    // The head goes first.
    if (this.#head !== null) this.writeTurn();
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
    this.#owner.open.delete(this);
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
  /** Every connection, busy or idle: the sweep's to walk (membership changes only when one opens or closes, not per request). */
  readonly open = new Set<UpstreamConnection>();
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

// The Ingress proxy: HTTP/1.1 on httpPort; HTTPS on httpsPort with ALPN h2 and
// http/1.1 (the proxy's own tls.Server hands each connection to its engine), the certificate chosen by SNI
// from the configuration's Secrets and the default certificate otherwise. Every request
// is routed by the current `Router` (router.ts), which setConfig replaces whole: a
// request reads the router once when it arrives and keeps it, so a request in flight
// finishes on the backend and endpoint it started with, and its upstream dispatcher is
// closed only after it finishes (UpstreamPools.retain).
//
// What a client gets (ingress-nginx's behaviour where Tapir has no reason to differ):
// - no rule and no default backend: 404; a backend without ready endpoints: 503;
//   every endpoint tried refused or broke: 502; no answer within the route's
//   proxy-read-timeout (or connect timeout on the last try): 504; a body over the
//   route's proxy-body-size: 413. Each with a plain-text body naming the backend.
// - plain HTTP to a host with TLS whose route keeps ssl-redirect: 308 to https.
// - request bodies are read whole before the upstream request when the route limits
//   their size (the default, 1 MiB; nginx buffers them too), so a connect failure or
//   an idempotent retry can send them again; with proxy-body-size 0 they stream and
//   are not retried.
//
// The proxy's own HTTP/1.1 engine (on node's llhttp) serves plain HTTP (h1-server.ts)
// and speaks to every HTTP and HTTPS endpoint, whichever side the request came from
// (h1-upstream.ts): node:http's request and response objects and undici's dispatch
// pipeline cost several times what the proxying does (bench/ingress.ts). HTTPS clients
// that chose http/1.1 go to the same engine; h2 clients to the native addon's nghttp2
// session (h2-native.ts), or node:http2 where the addon has none (h2-server.ts). GRPC
// backends (HTTP/2 to the endpoint) are undici's. Where this Node does not expose
// llhttp (llhttp.ts), plain HTTP is node:http's.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { Readable, type Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import { TapirError } from '../errors/tapir-error.ts';
import { cookieHeader, cookieValue, headerValue, upstreamRequestHeaders, type ClientFacts } from './headers.ts';
import { ANY_ADDRESS, clientAddress, listenOn, type Listening } from './listen.ts';
import { IngressMetrics } from './metrics.ts';
import type { IngressConfig, RouteOptions } from './model.ts';
import { normalizeHost, Router, type BackendState } from './router.ts';
import { SecureContextCache, type KeyPair } from './tls.ts';
import { Exchange, UpstreamPools, type ClientResponse, type ExchangeRequest } from './upstream.ts';
import { tunnelUpgrade } from './upgrade.ts';
import { H1Request, H1Response } from './h1-message.ts';
import { H1Server, KEEP_ALIVE_MS } from './h1-server.ts';
import { H1Pools } from './h1-pool.ts';
import { NativeClientWire, NativeH1, nativeH1Available } from './h1-native.ts';
import { H1Exchange } from './h1-upstream.ts';
import { answerPlain, NodeResponseSink, readWhole, streamSource, type PlainResponse } from './sinks.ts';
import { H2Request, H2Response } from './h2-server.ts';
import { NativeH2Connection, NativeH2Connections, nativeH2Session, type NativeH2SessionClass } from './h2-native.ts';
import { NativeH2Request, NativeH2Response } from './h2-native-message.ts';
import { available as llhttpAvailable } from './llhttp.ts';

export class IngressProxyError extends TapirError {
  readonly code = 'INGRESS_PROXY';
}

export interface IngressProxyOptions {
  httpPort: number;
  httpsPort: number;
  /**
   * Listen address of either family, listened on alone; default both families on one
   * socket ('::', IPv4 clients as IPv4-mapped addresses; '0.0.0.0' on a kernel without
   * IPv6: listen.ts).
   */
  address?: string;
  /** One line per event worth a person's attention (the agent's log callback shape). */
  log: (message: string) => void;
  defaultCertificate: KeyPair;
  /** The port in ssl-redirect's Location; default httpsPort (omitted when 443). */
  redirectHttpsPort?: number;
  /** Plain HTTP through node:http instead of the HTTP/1.1 engine (tests of both; the engine is the default where llhttp is reachable). */
  nodeHttp?: boolean;
  /** h2 clients through node:http2 instead of the addon's nghttp2 session (tests of both; the addon's is the default where it loads). */
  nodeH2?: boolean;
  /**
   * The HTTP/1.1 engine's plain sockets (the HTTP listener, its clients, plain-HTTP
   * endpoints) on node:net instead of the addon's (h1-native.ts; tests of both: the
   * addon's is the default where it loads).
   */
  nodeNet?: boolean;
  /**
   * A client connection with no request in flight this long is closed: HTTP/1.1
   * keep-alive ones, and HTTP/2 ones after a GOAWAY. Default KEEP_ALIVE_MS (75 s,
   * nginx's keepalive_timeout).
   */
  idleTimeoutMs?: number;
}

/** ingress-nginx's defaults, for the default backend (its Ingress carries no annotations that apply). */
export const DEFAULT_ROUTE_OPTIONS: RouteOptions = {
  sslRedirect: false, affinityCookie: null, proxyBodySize: 1 << 20, proxyReadTimeoutMs: 60_000,
  proxyConnectTimeoutMs: 5_000, rewriteTarget: null, useRegex: false,
};

type ClientRequest = IncomingMessage | H1Request | H2Request | NativeH2Request;
type AnyResponse = ClientResponse | H1Response | H2Response | NativeH2Response;

const EMPTY_CONFIG: IngressConfig = { generation: 0, hosts: [], defaultBackend: null, certificates: new Map() };

export class IngressProxy {
  readonly #opts: IngressProxyOptions;
  readonly #pools = new UpstreamPools();
  readonly #h1Pools: H1Pools;
  /** The addon's sockets for plain HTTP/1.1 (h1-native.ts), or null where node:net serves it. */
  readonly #native: NativeH1 | null;
  #nativeListener = 0;
  /** Endpoints in use, as (protocol, endpoint, connect timeout), whichever engine's pools hold them. */
  readonly #metrics = new IngressMetrics(() => new Set([...this.#pools.keys(), ...this.#h1Pools.keys()]).size);
  readonly #contexts: SecureContextCache;
  #router = new Router(EMPTY_CONFIG);
  /** Plain HTTP where the addon does not serve it: node:net (the HTTP/1.1 engine) or node:http. */
  readonly #http: Server | NetServer;
  /** The HTTP/1.1 engine on #http, or null where node:http serves it. */
  readonly #h1: H1Server | null;
  /** TLS with ALPN: h2 goes to #h2, http/1.1 to #h1Tls (the engine) or #http1Tls (node:http). */
  readonly #https: TlsServer;
  readonly #h2: Http2Server;
  /** The addon's HTTP/2 session class (h2-native.ts), or null where node:http2 serves h2. */
  readonly #h2Native: NativeH2SessionClass | null;
  readonly #h2Connections: NativeH2Connections;
  readonly #h1Tls: H1Server | null;
  readonly #http1Tls: Server | null;
  #httpPort = 0;
  #httpsPort = 0;
  /** Client connections and HTTP/2 sessions, for stop(). */
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<ServerHttp2Session>();
  /** Requests whose response has not closed yet. */
  #inFlight = 0;
  readonly #requestClosed = (): void => { this.#inFlight--; };
  /** A request the engines refused before routing (400, 431): counted with no Ingress or service, as the proxy's other own answers without a route. */
  readonly #refused = (status: number): void => { this.#metrics.request('', '', status, 0); };

  constructor(opts: IngressProxyOptions) {
    this.#opts = opts;
    this.#contexts = new SecureContextCache(opts.defaultCertificate, opts.log);
    const idleMs = opts.idleTimeoutMs ?? KEEP_ALIVE_MS;
    this.#h2Connections = new NativeH2Connections(idleMs);
    // nginx's keepalive_timeout is 75 s; node's default of 5 s would close idle
    // keep-alive clients sooner than they expect from an Ingress.
    const engine = opts.nodeHttp !== true && llhttpAvailable();
    this.#native = engine && opts.nodeNet !== true && nativeH1Available() ? new NativeH1() : null;
    this.#h1Pools = new H1Pools(this.#native);
    if (engine) {
      this.#http = createNetServer({ noDelay: true });
      this.#h1 = new H1Server(this.#http, {
        request: (req, res) => this.#onRequest(req, res, 'http', this.#httpPort),
        upgrade: (req, socket, head) => this.#onUpgrade(req, socket, head, 'http', this.#httpPort),
        refused: this.#refused,
      }, idleMs);
    } else {
      const http = createServer({ keepAliveTimeout: idleMs, noDelay: true }, (req, res) => this.#onRequest(req, res, 'http', this.#httpPort));
      http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head, 'http', this.#httpPort));
      http.on('clientError', (_err, socket: Duplex) => { if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n'); else socket.destroy(); });
      this.#http = http;
      this.#h1 = null;
    }
    // HTTPS: the proxy's own TLS server chooses by ALPN. h2 connections go to the
    // addon's nghttp2 session (h2-native.ts), or to a plain http2 server whose streams
    // are served on the core API (h2-server.ts); http/1.1 ones (and clients without
    // ALPN) to the HTTP/1.1 engine, or node:http where it serves.
    this.#https = createTlsServer({
      ALPNProtocols: ['h2', 'http/1.1'],
      cert: opts.defaultCertificate.certPem,
      key: opts.defaultCertificate.keyPem,
      SNICallback: (serverName, cb) => cb(null, this.#contexts.context(this.#router.secretForServerName(serverName))),
    });
    this.#h2 = createHttp2Server();
    this.#h2.on('stream', (stream, _headers, _flags, rawHeaders) => this.#onH2Stream(stream, rawHeaders as unknown as string[]));
    if (this.#h1 !== null) {
      this.#h1Tls = new H1Server(null, {
        request: (req, res) => this.#onRequest(req, res, 'https', this.#httpsPort),
        upgrade: (req, socket, head) => this.#onUpgrade(req, socket, head, 'https', this.#httpsPort),
        refused: this.#refused,
      }, idleMs);
      this.#http1Tls = null;
    } else {
      const http1 = createServer({ keepAliveTimeout: idleMs, noDelay: true }, (req, res) => this.#onRequest(req, res, 'https', this.#httpsPort));
      http1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head, 'https', this.#httpsPort));
      http1.on('clientError', (_err, socket: Duplex) => socket.destroy());
      this.#h1Tls = null;
      this.#http1Tls = http1;
    }
    this.#h2Native = opts.nodeH2 === true ? null : nativeH2Session();
    this.#https.on('secureConnection', (socket: TLSSocket) => {
      if (socket.alpnProtocol === 'h2' && this.#h2Native !== null) this.#acceptH2(socket, this.#h2Native);
      else if (socket.alpnProtocol === 'h2') this.#h2.emit('connection', socket);
      else if (this.#h1Tls !== null) this.#h1Tls.accept(socket);
      else this.#http1Tls!.emit('connection', socket);
    });
    const track = (socket: Socket): void => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    };
    this.#http.on('connection', track);
    // The TCP connections under TLS: destroying one ends whatever runs over it (an h2 session holds its TLS socket).
    this.#https.on('connection', track);
    this.#h2.on('session', (session: ServerHttp2Session) => {
      // node:http2 counts idleness as no frames either way: GOAWAY after that long.
      session.setTimeout(idleMs, () => session.close());
      this.#sessions.add(session);
      session.once('close', () => this.#sessions.delete(session));
    });
    // A client that goes away mid-handshake or sends garbage is its own problem.
    this.#https.on('tlsClientError', () => undefined);
  }

  /** The Prometheus registry: tapir_ingress_* (metrics.ts). */
  get metrics(): Registry {
    return this.#metrics.registry;
  }

  get generation(): number {
    return this.#router.generation;
  }

  /** What serves h2 clients: the addon's nghttp2 session (h2-native.ts) or node:http2. */
  get h2Engine(): 'native' | 'node' {
    return this.#h2Native !== null ? 'native' : 'node';
  }

  /** What plain HTTP/1.1 runs on: the addon's sockets, node:net (both the HTTP/1.1 engine), or node:http. */
  get h1Wire(): 'native' | 'net' | 'node:http' {
    return this.#native !== null ? 'native' : this.#h1 !== null ? 'net' : 'node:http';
  }

  /** The ports listened on (useful with port 0). */
  get ports(): { http: number; https: number } {
    return { http: this.#httpPort, https: this.#httpsPort };
  }

  async start(): Promise<void> {
    const address = this.#opts.address;
    const listen = async (server: NetServer, port: number, what: string): Promise<Listening> => {
      try {
        return await listenOn(server, port, address);
      } catch (err) {
        const where = address === undefined ? `[${ANY_ADDRESS}]` : address.includes(':') ? `[${address}]` : address;
        throw new IngressProxyError(`the Ingress proxy cannot listen for ${what} on ${where}:${port}: ${(err as { code?: string }).code ?? (err as Error).message}`);
      }
    };
    const http = this.#native !== null ? this.#listenNative(this.#native, address) : await listen(this.#http, this.#opts.httpPort, 'HTTP');
    const https = await listen(this.#https, this.#opts.httpsPort, 'HTTPS');
    this.#httpPort = http.port;
    this.#httpsPort = https.port;
    this.#opts.log(`ingress proxy listening: HTTP ${http.address}:${http.port} (${this.#native !== null ? "the addon's sockets" : 'node:net'}), HTTPS (h2 on ${this.#h2Native !== null ? "the addon's nghttp2" : 'node:http2'}, http/1.1) ${https.address}:${https.port}${http.bothFamilies ? ' (IPv4 and IPv6)' : ''}`);
  }

  /** The HTTP listener on the addon's sockets: each client goes to the HTTP/1.1 engine on its own wire. */
  #listenNative(native: NativeH1, address: string | undefined): Listening {
    const h1 = this.#h1!;
    try {
      const l = native.listen(this.#opts.httpPort, address, (id, remote) => {
        const wire = new NativeClientWire(native, id, remote);
        h1.acceptWire(wire);
        return wire;
      });
      this.#nativeListener = l.id;
      return l;
    } catch (err) {
      const where = address === undefined ? `[${ANY_ADDRESS}]` : address.includes(':') ? `[${address}]` : address;
      throw new IngressProxyError(`the Ingress proxy cannot listen for HTTP on ${where}:${this.#opts.httpPort}: ${(err as { code?: string }).code ?? (err as Error).message}`);
    }
  }

  /**
   * Serves `config` from the next request on. Requests already routed finish on the
   * backends they chose; dispatchers to endpoints the new configuration does not use
   * are closed once their requests end. Certificates that changed load on their next
   * handshake.
   */
  setConfig(config: IngressConfig): void {
    const router = new Router(config);
    this.#contexts.update(config.certificates);
    this.#router = router;
    const keep = new Set<string>();
    const add = (b: BackendState, connectTimeoutMs: number): void => {
      for (const a of b.addresses) keep.add(UpstreamPools.key(b.backend.protocol, a, connectTimeoutMs));
    };
    for (const r of router.rules) {
      add(r.backend, r.rule.options.proxyConnectTimeoutMs);
      if (r.canary !== null) add(r.canary.backend, r.rule.options.proxyConnectTimeoutMs);
    }
    if (router.defaultBackend !== null) add(router.defaultBackend, DEFAULT_ROUTE_OPTIONS.proxyConnectTimeoutMs);
    this.#pools.retain(keep);
    this.#h1Pools.retain(keep);
    this.#metrics.config(config.generation);
  }

  /**
   * Stops listening, lets requests in flight finish for up to `graceMs` (idle keep-alive
   * connections close at once, HTTP/2 sessions get GOAWAY), then closes every client
   * connection and upstream pool that is left.
   */
  async stop(graceMs = 1_000): Promise<void> {
    const closed = (server: NetServer): Promise<void> => new Promise((resolve) => {
      if (!server.listening) { resolve(); return; }
      server.close(() => resolve());
    });
    const both = Promise.all([closed(this.#http), closed(this.#https)]);
    if (this.#nativeListener !== 0) this.#native!.unlisten(this.#nativeListener);
    this.#nativeListener = 0;
    if (this.#h1 !== null) this.#h1.closeIdle();
    else (this.#http as Server).closeIdleConnections();
    this.#h1Tls?.closeIdle();
    this.#http1Tls?.closeIdleConnections();
    for (const session of this.#sessions) session.close();
    this.#h2Connections.goaway();
    // An idle HTTP/2 session is not closed by close() until its client hangs up: what
    // is waited for is the requests in flight, then every connection goes.
    const deadline = performance.now() + graceMs;
    while (this.#inFlight > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const session of this.#sessions) session.destroy();
    for (const socket of this.#sockets) socket.destroy();
    this.#h1?.destroy();
    this.#h1Tls?.destroy();
    this.#h2Connections.stopSweep();
    await both;
    this.#h1Pools.destroy();
    this.#native?.close();
    await this.#pools.destroy();
  }

  #acceptH2(socket: TLSSocket, Session: NativeH2SessionClass): void {
    const conn = new NativeH2Connection(socket, Session, {
      request: (req, res) => this.#onRequest(req, res, 'https', this.#httpsPort),
      refused: this.#refused,
    }, clientAddress(socket.remoteAddress));
    this.#h2Connections.add(conn, socket);
  }

  #onH2Stream(stream: ServerHttp2Stream, rawHeaders: string[]): void {
    const method = headerValue(rawHeaders, ':method') ?? 'GET';
    const path = headerValue(rawHeaders, ':path') ?? '/';
    const req = new H2Request(stream, method, path, rawHeaders, clientAddress(stream.session?.socket?.remoteAddress));
    stream.on('error', () => undefined);
    this.#onRequest(req, new H2Response(stream, method), 'https', this.#httpsPort);
  }

  #onRequest(req: ClientRequest, res: AnyResponse, scheme: 'http' | 'https', serverPort: number): void {
    const started = performance.now();
    this.#inFlight++;
    res.once('close', this.#requestClosed);
    const router = this.#router;
    const h2 = req.httpVersionMajor === 2;
    // The header lines as they came (node:http and HTTP/2 keep them too): the proxy's own
    // engine makes no headers object unless a route needs one.
    const lines = req.rawHeaders;
    const authority = (h2 ? headerValue(lines, ':authority') ?? headerValue(lines, 'host') : headerValue(lines, 'host')) ?? '';
    let url = req.url ?? '/';
    if (url.charCodeAt(0) !== 47 /* '/' */) {
      // absolute-form (RFC 9112 3.2.2) or '*': only a path is routed.
      try { const u = new URL(url); url = u.pathname + u.search; } catch { reply(this.#metrics, res, started, 400, '', '', `tapir-ingress: 400 Bad Request: request target ${JSON.stringify(req.url)} is not a path\n`); return; }
    }
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q);
    const host = normalizeHost(authority);
    const m = router.route(host, path);
    const rule = m.rule;
    const backendState = rule !== null ? rule.choose(lines, Math.random()) : m.defaultBackend;
    if (backendState === null) {
      reply(this.#metrics, res, started, 404, '', '', `tapir-ingress: 404 Not Found: no Ingress rule for host ${JSON.stringify(host)} path ${JSON.stringify(path)} and no default backend\n`);
      return;
    }
    const options = rule === null ? DEFAULT_ROUTE_OPTIONS : rule.rule.options;
    const ingress = rule === null ? '' : rule.rule.ingress;
    if (scheme === 'http' && rule !== null && options.sslRedirect && m.host !== null && m.host.tls !== null) {
      const port = this.#opts.redirectHttpsPort ?? this.#httpsPort;
      const location = `https://${host}${port === 443 ? '' : `:${port}`}${url}`;
      (res as ServerResponse).writeHead(308, { location, 'content-type': 'text/plain; charset=utf-8', 'content-length': 0 });
      (res as ServerResponse).end();
      this.#metrics.request(ingress, backendState.name, 308, (performance.now() - started) / 1000);
      return;
    }

    const remoteAddress = req instanceof H1Request || req instanceof H2Request || req instanceof NativeH2Request ? req.clientAddress : clientAddress(req.socket?.remoteAddress);
    const facts: ClientFacts = { remoteAddress, scheme, serverPort, authority };
    const upstreamHeaders = upstreamRequestHeaders(lines, facts, false, backendState.backend.protocol === 'GRPC');
    let affinityEndpoint = -1;
    const cookie = options.affinityCookie;
    if (cookie !== null) {
      const v = cookieValue(cookieHeader(lines), cookie.name);
      if (v !== null) affinityEndpoint = backendState.endpointForCookie(v);
    }
    const upstreamPath = rule === null ? url : rule.upstreamPath(path, query);
    const exchange: ExchangeRequest = {
      metrics: this.#metrics, backend: backendState, ingress, method: req.method ?? 'GET', path: upstreamPath, headers: upstreamHeaders,
      connectTimeoutMs: options.proxyConnectTimeoutMs, readTimeoutMs: options.proxyReadTimeoutMs, affinityEndpoint, affinityCookie: cookie, started,
    };
    const hasBody = req instanceof H1Request || req instanceof NativeH2Request ? req.hasBody
      : req instanceof H2Request ? !req.stream.endAfterHeaders : (headerValue(lines, 'content-length') ?? '0') !== '0' || headerValue(lines, 'transfer-encoding') !== undefined;
    // (No closure here: one would cost every request a context of this function's variables.)
    if (hasBody) this.#withBody(req, res, exchange, options.proxyBodySize);
    else this.#forward(exchange, res, null);
  }

  /** A request with a body: refused over proxy-body-size, read whole, or streamed (proxy-body-size 0). */
  #withBody(req: ClientRequest, res: AnyResponse, exchange: ExchangeRequest, limit: number): void {
    const lengthHeader = headerValue(req.rawHeaders, 'content-length');
    const tooLarge = (): void => {
      reply(this.#metrics, res, exchange.started, 413, exchange.ingress, exchange.backend.name, `tapir-ingress: 413 Content Too Large: the request body is over ${limit} bytes, the limit of backend ${exchange.backend.name} (proxy-body-size)\n`, true);
    };
    if (limit > 0 && lengthHeader !== undefined && Number(lengthHeader) > limit) {
      tooLarge();
      return;
    }
    if (limit === 0) {
      this.#forward(exchange, res, req);
      return;
    }
    const done = (body: Buffer | null): void => {
      if (body === null) tooLarge();
      else this.#forward(exchange, res, body);
    };
    if (req instanceof H1Request) req.readBody(limit, done);
    else readWhole(req instanceof NativeH2Request ? req : streamSource(req instanceof H2Request ? req.stream : req), limit, done);
  }

  /** The exchange with the endpoint, on the HTTP/1.1 engine (HTTP, HTTPS) or undici (GRPC). */
  #forward(exchange: ExchangeRequest, res: AnyResponse, body: Buffer | ClientRequest | null): void {
    if (H1Pools.speaks(exchange.backend.backend.protocol)) {
      const sink = res instanceof H1Response || res instanceof H2Response || res instanceof NativeH2Response ? res : new NodeResponseSink(res);
      const source = body === null || Buffer.isBuffer(body) || body instanceof H1Request || body instanceof NativeH2Request ? body
        : streamSource(body instanceof H2Request ? body.stream : body);
      new H1Exchange(exchange, this.#h1Pools, sink, source).start();
      return;
    }
    const stream = body instanceof H1Request || body instanceof NativeH2Request ? bodyStream(body) : body instanceof H2Request ? body.stream : body as Buffer | Readable | null;
    new Exchange({ ...exchange, pools: this.#pools, res: res as ClientResponse, body: stream }).start();
  }

  #onUpgrade(req: IncomingMessage | H1Request, socket: Duplex, head: Buffer, scheme: 'http' | 'https', serverPort: number): void {
    const started = performance.now();
    if (req.method === 'CONNECT') {
      const body = 'tapir-ingress: 405 Method Not Allowed: the Ingress proxy is no forward proxy (CONNECT)\n';
      socket.end(`HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
      this.#metrics.request('', '', 405, (performance.now() - started) / 1000);
      return;
    }
    const router = this.#router;
    const authority = headerValue(req.rawHeaders, 'host') ?? '';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const host = normalizeHost(authority);
    const m = router.route(host, path);
    const rule = m.rule;
    const backendState = rule !== null ? rule.choose(req.rawHeaders, Math.random()) : m.defaultBackend;
    if (backendState === null) {
      const body = `tapir-ingress: 404 Not Found: no Ingress rule for host ${JSON.stringify(host)} path ${JSON.stringify(path)} and no default backend\n`;
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      this.#metrics.request('', '', 404, (performance.now() - started) / 1000);
      return;
    }
    const options = rule === null ? DEFAULT_ROUTE_OPTIONS : rule.rule.options;
    const facts: ClientFacts = { remoteAddress: req instanceof H1Request ? req.clientAddress : clientAddress(req.socket.remoteAddress), scheme, serverPort, authority };
    tunnelUpgrade({
      client: socket, head, backend: backendState, ingress: rule === null ? '' : rule.rule.ingress, method: req.method ?? 'GET',
      path: rule === null ? url : rule.upstreamPath(path, q < 0 ? '' : url.slice(q)),
      headers: upstreamRequestHeaders(req.rawHeaders, facts, true, false),
      connectTimeoutMs: options.proxyConnectTimeoutMs, readTimeoutMs: options.proxyReadTimeoutMs, metrics: this.#metrics, started,
    });
  }
}

/** An engine request's body (HTTP/1.1, or HTTP/2 on the addon) as a stream, for the undici exchange (a GRPC backend with proxy-body-size 0). */
function bodyStream(req: H1Request | NativeH2Request): Readable {
  const stream = new Readable({ read: () => req.resume() });
  req.streamBody((chunk) => { if (!stream.push(chunk)) req.pause(); }, () => stream.push(null));
  return stream;
}

/** A short plain-text answer of the proxy's own, counted like the others. */
function reply(metrics: IngressMetrics, res: AnyResponse, started: number, status: number, ingress: string, service: string, text: string, close = false): void {
  // An HTTP/1.1 client may still be sending the body we refused: close after answering.
  answerPlain(res as PlainResponse, status, text, close && (res as ServerResponse).req?.httpVersionMajor === 1);
  metrics.request(ingress, service, status, (performance.now() - started) / 1000);
}


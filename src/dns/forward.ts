// The forwarder: CoreDNS's `forward` plugin (plugin/forward, plugin/pkg/proxy) for the
// names the cluster zones do not answer.
//
// One query, as Forward.ServeDNS runs it:
// - Past `maxConcurrent` queries in flight it is refused at once (DNS_TOO_MANY_QUERIES,
//   which the server answers REFUSED, coredns_forward_max_concurrent_rejects_total).
// - The upstreams are ordered by the policy (random: a fresh shuffle; round_robin: a
//   rotation that advances per query; sequential: as configured) and tried in that order.
//   One that the health check holds down is skipped; when every one is down, health
//   checking itself is taken to be broken and a random upstream is used anyway
//   (coredns_forward_healthcheck_broken_total).
// - An attempt that times out or fails (a socket error, a refused or reset TCP
//   connection) starts the health check of that upstream and moves on to the next; past
//   the end of the list the walk starts again, within CoreDNS's 5 s per query and, here,
//   at most two attempts per upstream, so an upstream that refuses at once cannot spin.
//   Any answer is an answer: a SERVFAIL or REFUSED from an upstream goes back to the
//   client as is (CoreDNS fails over on an rcode only when told to).
// - Transport: UDP, or TCP when `forceTcp`. With the client's transport given (the
//   optional 4th argument), CoreDNS's rule applies: the client's, unless force_tcp or
//   prefer_udp says otherwise, and a truncated UDP answer is asked again over TCP only
//   with prefer_udp (a UDP client gets the TC answer and comes back over TCP itself).
//   Without it the contract's rule: UDP first, TCP when the answer is truncated.
//
// Spoofing (RFC 5452): every attempt carries a fresh random id (crypto, never the
// client's), leaves from one of a few UDP sockets on kernel-chosen random ports that are
// replaced every `expire`, and an answer is taken only when it comes from the upstream's
// address and port, has QR set, the pending id and the query's question (name compared
// ignoring case); anything else is dropped and counted, and the attempt keeps waiting.
// A TCP connection carries one query at a time (as CoreDNS's persistConn) and goes back
// to a small idle pool per upstream, closed after `expire` idle; a pooled connection the
// upstream closed in the meantime is replaced once without counting as a failure
// (CoreDNS's ErrCachedClosed).
//
// Health (CoreDNS health_check, max_fails): after a failed attempt the upstream is probed
// with `. IN NS` (RD set) over the forwarding transport at once and then every
// `healthCheckMs` until any response comes back; each failed probe counts one fail, a
// response resets them, and the upstream is down while it has more than `maxFails`.
// `maxFails` 0 turns health checking off (never down).
//
// Bounds: queries in flight <= maxConcurrent, each with a timer; per upstream at most
// one running probe and MAX_IDLE_TCP idle connections; UDP_SOCKETS sockets per address
// family (plus retired ones that close when their last pending answer is in).
import { randomFillSync, randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as DgramSocket } from 'node:dgram';
import { connect, isIP, type Socket } from 'node:net';
import { TapirError } from '../errors/tapir-error.ts';

export interface Upstream {
  /** An IPv4 or IPv6 literal (an IPv6 one may carry a %scope). */
  address: string;
  port: number;
}

export interface ForwarderOptions {
  upstreams: Upstream[];
  /** CoreDNS `max_concurrent`; Tapir's default is DEFAULT_MAX_CONCURRENT (CoreDNS's is unlimited). */
  maxConcurrent: number;
  /** Per attempt, connection set-up included. */
  timeoutMs: number;
  policy: 'random' | 'round_robin' | 'sequential';
  forceTcp: boolean;
  preferUdp: boolean;
  /** CoreDNS `health_check` (default 0.5 s): the interval between probes of a failed upstream. */
  healthCheckMs: number;
  /** CoreDNS `except`: zones not forwarded (lower-case, trailing dot optional). */
  except?: string[];
  /** CoreDNS `max_fails` (default 2): failed probes before an upstream is down; 0 disables health checking. */
  maxFails?: number;
  /** CoreDNS `expire` (default 10 s): an idle TCP connection is closed, a UDP socket replaced, after it. */
  expireMs?: number;
}

export interface UpstreamStats {
  /** `address:port` (`[address]:port` for IPv6), the `to` label of coredns_forward_* metrics. */
  upstream: string;
  /** Attempts sent to it (coredns_forward_requests_total). */
  requests: number;
  /** Attempts that timed out or failed. */
  failures: number;
  /** Not held down by the health check (coredns_forward_healthcheck_failures_total counts below). */
  healthy: boolean;
  healthcheckFailures: number;
}

export interface ForwarderCounters {
  inFlight: number;
  /** coredns_forward_max_concurrent_rejects_total */
  maxConcurrentRejects: number;
  /** coredns_forward_healthcheck_broken_total: every upstream was down, a random one was used. */
  healthcheckBroken: number;
  /** Responses dropped: no attempt waits for their id (late, or a guess). */
  unmatchedResponses: number;
  /** Responses dropped: right id, but from another address or port, or for another question. */
  mismatchedResponses: number;
}

/** The fields of message.ts's `QueryInfo` the forwarder reads (a QueryInfo is passed as is). */
export interface ForwardQuery {
  /** Lower-case, no trailing dot. */
  readonly qname: string;
  /** The offset after the question section. */
  readonly questionEnd: number;
}

/** No upstream answered (every attempt failed or timed out); the server answers SERVFAIL. */
export class DnsUpstreamError extends TapirError {
  readonly code = 'DNS_UPSTREAM_FAILED';
}

/** Past max_concurrent; the server answers REFUSED. */
export class DnsTooManyQueriesError extends TapirError {
  readonly code = 'DNS_TOO_MANY_QUERIES';
}

/** A forward configuration the forwarder cannot run (the Corefile reader reports it with its line first). */
export class DnsForwardConfigError extends TapirError {
  readonly code = 'DNS_FORWARD_CONFIG_INVALID';
}

/** Tapir's bound when the Corefile sets none: about 2 KiB each, as CoreDNS's docs estimate. */
export const DEFAULT_MAX_CONCURRENT = 1000;
/** CoreDNS's defaultTimeout: the whole query, every attempt included. */
export const QUERY_DEADLINE_MS = 5000;
export const DEFAULT_EXPIRE_MS = 10_000;
export const DEFAULT_MAX_FAILS = 2;
/** CoreDNS's health-check client reads for at most 1 s. */
const PROBE_TIMEOUT_MS = 1000;
const UDP_SOCKETS = 4;
const MAX_IDLE_TCP = 16;
/** Ids of one UDP socket are 16 bits; keep far enough below that a random pick is quickly free. */
const MAX_CONCURRENT_LIMIT = 32768;
/** RFC 1035 limit of 15 upstreams is CoreDNS's too. */
const MAX_UPSTREAMS = 15;

const HEADER_SIZE = 12;

/** `. IN NS` with RD, the health probe (CoreDNS's HCDomain "." and HCRecursionDesired). */
const PROBE_QUERY = Uint8Array.of(0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1);
const PROBE_QUESTION_END = PROBE_QUERY.length;

interface Pending {
  readonly upstream: UpstreamState;
  /** The request as sent, id included: the answer's question is compared against it. */
  readonly request: Uint8Array;
  readonly questionEnd: number;
  readonly resolve: (res: Uint8Array) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

class UpstreamState {
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  readonly label: string;
  requests = 0;
  failures = 0;
  healthcheckFailures = 0;
  /** Failed probes since the last response (CoreDNS Proxy.fails). */
  fails = 0;
  probing = false;
  probeTimer: NodeJS.Timeout | undefined = undefined;
  wakeProbe: (() => void) | undefined = undefined;
  readonly idleTcp: TcpConn[] = [];

  constructor(address: string, port: number, family: 4 | 6) {
    this.address = address;
    this.port = port;
    this.family = family;
    this.label = family === 6 ? `[${address}]:${port}` : `${address}:${port}`;
  }
}

class UdpPort {
  readonly socket: DgramSocket;
  readonly pending = new Map<number, Pending>();
  readonly createdMs: number;
  retired = false;

  constructor(socket: DgramSocket, createdMs: number) {
    this.socket = socket;
    this.createdMs = createdMs;
  }
}

class TcpConn {
  readonly socket: Socket;
  readonly upstream: UpstreamState;
  /** Bytes of a frame not complete yet. */
  buffered: Buffer | undefined = undefined;
  pending: Pending | undefined = undefined;
  /** Taken from the idle pool: a close before any answer is the upstream's idle close, not a failure. */
  reused = false;
  answeredSinceTaken = false;
  closed = false;

  constructor(socket: Socket, upstream: UpstreamState) {
    this.socket = socket;
    this.upstream = upstream;
  }
}

/** A reused connection closed under us before it answered: try a fresh one. */
class CachedClosedError extends Error {}

export class Forwarder {
  readonly #upstreams: UpstreamState[];
  readonly #maxConcurrent: number;
  readonly #timeoutMs: number;
  readonly #policy: ForwarderOptions['policy'];
  readonly #forceTcp: boolean;
  readonly #preferUdp: boolean;
  readonly #healthCheckMs: number;
  readonly #maxFails: number;
  readonly #expireMs: number;
  readonly #except: string[];
  readonly #udp4: (UdpPort | undefined)[] = new Array<UdpPort | undefined>(UDP_SOCKETS).fill(undefined);
  readonly #udp6: (UdpPort | undefined)[] = new Array<UdpPort | undefined>(UDP_SOCKETS).fill(undefined);
  readonly #retired = new Set<UdpPort>();
  readonly #activeTcp = new Set<TcpConn>();
  /** One shared instance: an overload must not cost a stack trace per refused query. */
  readonly #tooMany: DnsTooManyQueriesError;
  #inFlight = 0;
  #robin = 0;
  #closed = false;
  #maxConcurrentRejects = 0;
  #healthcheckBroken = 0;
  #unmatched = 0;
  #mismatched = 0;

  constructor(options: ForwarderOptions) {
    const problems: string[] = [];
    if (options.upstreams.length === 0) problems.push('no upstream');
    if (options.upstreams.length > MAX_UPSTREAMS) problems.push(`${options.upstreams.length} upstreams, at most ${MAX_UPSTREAMS}`);
    const upstreams: UpstreamState[] = [];
    for (const u of options.upstreams) {
      const family = isIP(u.address.split('%')[0]!);
      if (family === 0) problems.push(`upstream ${JSON.stringify(u.address)} is not an IP address`);
      else if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) problems.push(`upstream ${u.address} has port ${u.port}, not 1-65535`);
      else upstreams.push(new UpstreamState(family === 6 ? canonicalIpv6(u.address) : u.address, u.port, family as 4 | 6));
    }
    if (!Number.isInteger(options.maxConcurrent) || options.maxConcurrent < 1 || options.maxConcurrent > MAX_CONCURRENT_LIMIT) {
      problems.push(`max_concurrent ${options.maxConcurrent} is not 1-${MAX_CONCURRENT_LIMIT}`);
    }
    if (!(options.timeoutMs > 0)) problems.push(`timeout ${options.timeoutMs} ms is not positive`);
    if (!(options.healthCheckMs > 0)) problems.push(`health_check ${options.healthCheckMs} ms is not positive`);
    const maxFails = options.maxFails ?? DEFAULT_MAX_FAILS;
    if (!Number.isInteger(maxFails) || maxFails < 0) problems.push(`max_fails ${maxFails} is not a non-negative integer`);
    const expireMs = options.expireMs ?? DEFAULT_EXPIRE_MS;
    if (!(expireMs > 0)) problems.push(`expire ${expireMs} ms is not positive`);
    if (!['random', 'round_robin', 'sequential'].includes(options.policy)) problems.push(`unknown policy ${JSON.stringify(options.policy)}`);
    if (problems.length > 0) throw new DnsForwardConfigError(`forward: ${problems.join('; ')}`);

    this.#upstreams = upstreams;
    this.#maxConcurrent = options.maxConcurrent;
    this.#timeoutMs = options.timeoutMs;
    this.#policy = options.policy;
    this.#forceTcp = options.forceTcp;
    this.#preferUdp = options.preferUdp;
    this.#healthCheckMs = options.healthCheckMs;
    this.#maxFails = maxFails;
    this.#expireMs = expireMs;
    this.#except = (options.except ?? []).map((z) => z.toLowerCase().replace(/\.$/, ''));
    this.#tooMany = new DnsTooManyQueriesError(`forward: more than ${this.#maxConcurrent} queries in flight (max_concurrent)`);
  }

  /** False for a name in an `except` zone: the server does not forward it (CoreDNS passes it to the next plugin). */
  handles(qname: string): boolean {
    for (const zone of this.#except) {
      if (zone === '' || qname === zone || (qname.endsWith(zone) && qname.charCodeAt(qname.length - zone.length - 1) === 0x2e)) return false;
    }
    return true;
  }

  /**
   * Sends the query (the whole message `msg[0, len)`, copied before this returns, so the
   * caller may reuse its buffer) to an upstream, failing over as the header describes;
   * resolves with the response, its id set back to the query's. `protocol` is the
   * client's transport when the caller wants CoreDNS's transport rule (see the header).
   * Rejects with DnsUpstreamError or DnsTooManyQueriesError, never with anything else.
   */
  async query(msg: Uint8Array, len: number, q: ForwardQuery, protocol?: 'udp' | 'tcp'): Promise<Uint8Array> {
    if (this.#closed) throw new DnsUpstreamError('forward: the forwarder is closed');
    if (len < HEADER_SIZE || len > msg.length || q.questionEnd > len || q.questionEnd < HEADER_SIZE + 5) {
      throw new DnsUpstreamError(`forward: not a query of ${len} bytes with its question ending at ${q.questionEnd}`);
    }
    if (!this.handles(q.qname)) throw new DnsUpstreamError(`forward: ${q.qname || '.'} is in an except zone`);
    if (this.#inFlight >= this.#maxConcurrent) {
      this.#maxConcurrentRejects++;
      throw this.#tooMany;
    }
    this.#inFlight++;
    const request = Buffer.from(msg.subarray(0, len)); // a copy: each attempt writes its own id into it
    const id = readU16(request, 0);
    try {
      const res = await this.#forward(request, q, protocol);
      res[0] = id >>> 8;
      res[1] = id & 0xff;
      return res;
    } finally {
      this.#inFlight--;
    }
  }

  stats(): UpstreamStats[] {
    return this.#upstreams.map((u) => ({
      upstream: u.label,
      requests: u.requests,
      failures: u.failures,
      healthy: !this.#isDown(u),
      healthcheckFailures: u.healthcheckFailures,
    }));
  }

  counters(): ForwarderCounters {
    return {
      inFlight: this.#inFlight,
      maxConcurrentRejects: this.#maxConcurrentRejects,
      healthcheckBroken: this.#healthcheckBroken,
      unmatchedResponses: this.#unmatched,
      mismatchedResponses: this.#mismatched,
    };
  }

  /** Fails every query in flight, stops the probes, closes every socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new DnsUpstreamError('forward: the forwarder is closed');
    for (const u of this.#upstreams) {
      clearTimeout(u.probeTimer);
      u.wakeProbe?.();
      for (const conn of u.idleTcp) conn.socket.destroy();
      u.idleTcp.length = 0;
    }
    for (const conn of this.#activeTcp) this.#failTcp(conn, closed, false);
    for (const port of [...this.#udp4, ...this.#udp6, ...this.#retired]) {
      if (port === undefined) continue;
      for (const p of port.pending.values()) {
        clearTimeout(p.timer);
        p.reject(closed);
      }
      port.pending.clear();
      try {
        port.socket.close();
      } catch {
        // an 'error' already closed it
      }
    }
    this.#udp4.fill(undefined);
    this.#udp6.fill(undefined);
    this.#retired.clear();
  }

  async #forward(request: Buffer, q: ForwardQuery, protocol: 'udp' | 'tcp' | undefined): Promise<Uint8Array> {
    const list = this.#list();
    const n = list.length;
    const deadline = Date.now() + QUERY_DEADLINE_MS;
    const tcpFirst = this.#forceTcp || (!this.#preferUdp && protocol === 'tcp');
    const tcpOnTruncation = !this.#forceTcp && (protocol === undefined || this.#preferUdp);
    let i = 0;
    let fails = 0;
    let attempts = 0;
    let lastError: Error | undefined;
    while (attempts < 2 * n && !this.#closed) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      if (i >= n) {
        i = 0;
        fails = 0;
      }
      let u = list[i++]!;
      if (this.#isDown(u)) {
        fails++;
        if (fails < n) continue;
        this.#healthcheckBroken++;
        u = this.#upstreams[randomInt(n)]!;
      }
      attempts++;
      u.requests++;
      const timeout = Math.min(this.#timeoutMs, remaining);
      try {
        let res = tcpFirst
          ? await this.#exchangeTcp(u, request, q.questionEnd, timeout)
          : await this.#exchangeUdp(u, request, q.questionEnd, timeout);
        if (!tcpFirst && tcpOnTruncation && (res[2]! & 0x02) !== 0) {
          res = await this.#exchangeTcp(u, request, q.questionEnd, Math.max(1, Math.min(this.#timeoutMs, deadline - Date.now())));
        }
        return res;
      } catch (err) {
        u.failures++;
        lastError = err as Error;
        this.#healthcheck(u);
        if (fails < n) continue;
        break;
      }
    }
    const why = lastError?.message ?? 'every upstream is down';
    throw new DnsUpstreamError(`forward: no answer for ${q.qname || '.'} from ${this.#upstreams.map((u) => u.label).join(', ')}: ${why}`);
  }

  /** The upstreams in the order this query tries them (CoreDNS policy.go). */
  #list(): UpstreamState[] {
    const all = this.#upstreams;
    switch (this.#policy) {
      case 'sequential':
        return all;
      case 'round_robin': {
        // CoreDNS roundRobin.List: the next one first, then the others in their order.
        this.#robin = (this.#robin + 1) % all.length;
        const first = this.#robin;
        return [all[first]!, ...all.slice(0, first), ...all.slice(first + 1)];
      }
      case 'random': {
        const list = all.slice();
        for (let i = list.length - 1; i > 0; i--) {
          const j = randomInt(i + 1);
          const t = list[i]!;
          list[i] = list[j]!;
          list[j] = t;
        }
        return list;
      }
    }
  }

  #isDown(u: UpstreamState): boolean {
    return this.#maxFails !== 0 && u.fails > this.#maxFails;
  }

  // ---- UDP ----

  #exchangeUdp(u: UpstreamState, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    const port = this.#udpPort(u.family);
    const id = freeId(port.pending);
    request[0] = id >>> 8;
    request[1] = id & 0xff;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const p: Pending = { upstream: u, request, questionEnd, resolve, reject, timer: undefined };
    p.timer = setTimeout(() => {
      if (port.pending.get(id) !== p) return;
      port.pending.delete(id);
      this.#maybeCloseRetired(port);
      reject(new DnsUpstreamError(`${u.label} did not answer within ${timeoutMs} ms (udp)`));
    }, timeoutMs);
    port.pending.set(id, p);
    port.socket.send(request, u.port, u.address, (err) => {
      if (err === null || err === undefined || port.pending.get(id) !== p) return;
      clearTimeout(p.timer);
      port.pending.delete(id);
      this.#maybeCloseRetired(port);
      reject(new DnsUpstreamError(`sending to ${u.label} failed: ${err.message}`));
    });
    return promise;
  }

  /** One of the pool's sockets at random, replaced when older than `expire`. */
  #udpPort(family: 4 | 6): UdpPort {
    const pool = family === 6 ? this.#udp6 : this.#udp4;
    const slot = randomInt(UDP_SOCKETS);
    const now = Date.now();
    const current = pool[slot];
    if (current !== undefined && !current.retired && now - current.createdMs < this.#expireMs) return current;
    if (current !== undefined) this.#retire(current);
    const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    const port = new UdpPort(socket, now);
    socket.on('message', (msg, rinfo) => this.#onUdpMessage(port, msg, rinfo));
    // A socket error (rare for an unconnected socket) retires it; sends report their own errors.
    socket.on('error', () => this.#retire(port));
    pool[slot] = port;
    return port;
  }

  #retire(port: UdpPort): void {
    if (port.retired) return;
    port.retired = true;
    for (const pool of [this.#udp4, this.#udp6]) {
      const i = pool.indexOf(port);
      if (i >= 0) pool[i] = undefined;
    }
    this.#retired.add(port);
    this.#maybeCloseRetired(port);
  }

  #maybeCloseRetired(port: UdpPort): void {
    if (!port.retired || port.pending.size > 0) return;
    this.#retired.delete(port);
    try {
      port.socket.close();
    } catch {
      // already closed
    }
  }

  #onUdpMessage(port: UdpPort, msg: Buffer, rinfo: RemoteInfo): void {
    if (msg.length < HEADER_SIZE) {
      this.#unmatched++;
      return;
    }
    const p = port.pending.get(msg.readUInt16BE(0));
    if (p === undefined) {
      this.#unmatched++;
      return;
    }
    if (rinfo.port !== p.upstream.port || rinfo.address !== p.upstream.address || !answers(msg, p.request, p.questionEnd)) {
      this.#mismatched++;
      return;
    }
    clearTimeout(p.timer);
    port.pending.delete(msg.readUInt16BE(0));
    this.#maybeCloseRetired(port);
    p.resolve(msg);
  }

  // ---- TCP ----

  async #exchangeTcp(u: UpstreamState, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    const idle = this.#takeIdle(u);
    if (idle !== undefined) {
      try {
        return await this.#roundTrip(idle, request, questionEnd, timeoutMs);
      } catch (err) {
        if (!(err instanceof CachedClosedError)) throw err;
      }
    }
    return this.#roundTrip(this.#dial(u), request, questionEnd, timeoutMs);
  }

  #takeIdle(u: UpstreamState): TcpConn | undefined {
    for (;;) {
      const conn = u.idleTcp.pop();
      if (conn === undefined) return undefined;
      if (conn.closed) continue;
      conn.socket.setTimeout(0);
      conn.reused = true;
      conn.answeredSinceTaken = false;
      this.#activeTcp.add(conn);
      return conn;
    }
  }

  #dial(u: UpstreamState): TcpConn {
    const socket = connect({ host: u.address, port: u.port, noDelay: true });
    const conn = new TcpConn(socket, u);
    this.#activeTcp.add(conn);
    socket.on('data', (chunk: Buffer) => this.#onTcpData(conn, chunk));
    socket.on('error', (err) => this.#failTcp(conn, new DnsUpstreamError(`tcp to ${u.label}: ${err.message}`), true));
    socket.on('close', () => this.#failTcp(conn, new DnsUpstreamError(`tcp to ${u.label}: closed before the answer`), true));
    // Only armed while idle (see #park): CoreDNS closes a connection unused for `expire`.
    socket.on('timeout', () => socket.destroy());
    return conn;
  }

  #roundTrip(conn: TcpConn, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    const u = conn.upstream;
    const id = randomId();
    request[0] = id >>> 8;
    request[1] = id & 0xff;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const p: Pending = { upstream: u, request, questionEnd, resolve, reject, timer: undefined };
    p.timer = setTimeout(() => {
      if (conn.pending !== p) return;
      // A late answer would arrive on this connection: it cannot carry another query.
      this.#failTcp(conn, new DnsUpstreamError(`${u.label} did not answer within ${timeoutMs} ms (tcp)`), false);
    }, timeoutMs);
    conn.pending = p;
    // RFC 1035 section 4.2.2: a two-byte length before the message.
    const frame = Buffer.allocUnsafe(2 + request.length);
    frame.writeUInt16BE(request.length, 0);
    frame.set(request, 2);
    conn.socket.write(frame);
    return promise;
  }

  #onTcpData(conn: TcpConn, chunk: Buffer): void {
    let buf = conn.buffered === undefined ? chunk : Buffer.concat([conn.buffered, chunk]);
    while (buf.length >= 2) {
      const frameLen = buf.readUInt16BE(0);
      if (buf.length < 2 + frameLen) break;
      const msg = buf.subarray(2, 2 + frameLen);
      buf = buf.subarray(2 + frameLen);
      const p = conn.pending;
      if (p === undefined) {
        // Nothing asked on this connection: it is out of step with us, do not reuse it.
        this.#unmatched++;
        conn.socket.destroy();
        return;
      }
      if (msg.length < HEADER_SIZE || msg.readUInt16BE(0) !== readU16(p.request, 0) || !answers(msg, p.request, p.questionEnd)) {
        // CoreDNS drops out-of-order responses and keeps reading.
        this.#mismatched++;
        continue;
      }
      clearTimeout(p.timer);
      conn.pending = undefined;
      conn.answeredSinceTaken = true;
      this.#park(conn);
      p.resolve(Buffer.from(msg)); // a copy: `buf` may hold the start of the next frame
    }
    conn.buffered = buf.length > 0 ? buf : undefined;
  }

  #park(conn: TcpConn): void {
    this.#activeTcp.delete(conn);
    const idle = conn.upstream.idleTcp;
    if (this.#closed || conn.closed || idle.length >= MAX_IDLE_TCP) {
      conn.socket.destroy();
      return;
    }
    conn.socket.setTimeout(this.#expireMs);
    idle.push(conn);
  }

  /** `byPeer`: the connection broke (error, close), as opposed to our timeout or close(). */
  #failTcp(conn: TcpConn, err: Error, byPeer: boolean): void {
    const wasClosed = conn.closed;
    conn.closed = true;
    this.#activeTcp.delete(conn);
    const idle = conn.upstream.idleTcp;
    const i = idle.indexOf(conn);
    if (i >= 0) idle.splice(i, 1);
    const p = conn.pending;
    conn.pending = undefined;
    if (!wasClosed) conn.socket.destroy();
    if (p === undefined) return;
    clearTimeout(p.timer);
    p.reject(byPeer && conn.reused && !conn.answeredSinceTaken ? new CachedClosedError(err.message) : err);
  }

  // ---- health ----

  #healthcheck(u: UpstreamState): void {
    if (this.#maxFails === 0 || u.probing || this.#closed) return;
    u.probing = true;
    void this.#probeLoop(u);
  }

  /** CoreDNS up.Probe: probe now, then every interval until one is answered. */
  async #probeLoop(u: UpstreamState): Promise<void> {
    try {
      while (!this.#closed) {
        if (await this.#probe(u)) {
          u.fails = 0;
          return;
        }
        u.fails++;
        u.healthcheckFailures++;
        await new Promise<void>((wake) => {
          u.wakeProbe = wake;
          u.probeTimer = setTimeout(wake, this.#healthCheckMs);
          u.probeTimer.unref();
        });
        u.wakeProbe = undefined;
      }
    } finally {
      u.probing = false;
    }
  }

  async #probe(u: UpstreamState): Promise<boolean> {
    const request = Buffer.from(PROBE_QUERY);
    const timeout = Math.min(PROBE_TIMEOUT_MS, this.#timeoutMs);
    try {
      if (this.#forceTcp) await this.#exchangeTcp(u, request, PROBE_QUESTION_END, timeout);
      else await this.#exchangeUdp(u, request, PROBE_QUESTION_END, timeout);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * True when `res` answers `req`: QR set, the same opcode, and the same question (bytes
 * of the question section equal with ASCII case folded, RFC 4343). A response with no
 * question is taken only with an error rcode: servers answer FORMERR or NOTIMP without
 * echoing a question they could not read.
 */
function answers(res: Uint8Array, req: Uint8Array, questionEnd: number): boolean {
  if (res.length < HEADER_SIZE || (res[2]! & 0x80) === 0 || (res[2]! & 0x78) !== (req[2]! & 0x78)) return false;
  const qdcount = readU16(res, 4);
  if (qdcount === 0) return (res[3]! & 0x0f) !== 0;
  if (qdcount !== 1 || res.length < questionEnd) return false;
  for (let i = HEADER_SIZE; i < questionEnd; i++) {
    let a = res[i]!;
    let b = req[i]!;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

/** Random ids from the kernel's CSPRNG, drawn in blocks (RFC 5452 section 9.2: unpredictable ids). */
const idBlock = new Uint16Array(1024);
let idNext = idBlock.length;

function randomId(): number {
  if (idNext === idBlock.length) {
    randomFillSync(idBlock);
    idNext = 0;
  }
  return idBlock[idNext++]!;
}

/** A random id no attempt on this socket is waiting for (pending stays below half the id space). */
function freeId(pending: Map<number, Pending>): number {
  for (;;) {
    const id = randomId();
    if (!pending.has(id)) return id;
  }
}

/** The form the kernel reports a sender in (rinfo.address): compressed, lower-case. */
function canonicalIpv6(address: string): string {
  const percent = address.indexOf('%');
  const bare = percent < 0 ? address : address.slice(0, percent);
  const canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  return percent < 0 ? canonical : canonical + address.slice(percent);
}

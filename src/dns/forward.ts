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
// One attempt on the wire (random ids and source ports, answers matched on source, id
// and question, the TCP connection pool) is upstream-transport.ts's job.
//
// Health (CoreDNS health_check, max_fails): after a failed attempt the upstream is probed
// with `. IN NS` (RD set) over the forwarding transport at once and then every
// `healthCheckMs` until any response comes back; each failed probe counts one fail, a
// response resets them, and the upstream is down while it has more than `maxFails`.
// `maxFails` 0 turns health checking off (never down).
//
// Bounds: queries in flight <= maxConcurrent, each attempt with a timer; per upstream at
// most one running probe (and the transport's bounded sockets and connection pool).
import { randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { TapirError } from '../errors/tapir-error.ts';
import { AttemptError, Endpoint, UpstreamTransport } from './upstream-transport.ts';

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
/** Ids of one UDP socket are 16 bits; keep far enough below that a random pick is quickly free. */
const MAX_CONCURRENT_LIMIT = 32768;
/** RFC 1035 limit of 15 upstreams is CoreDNS's too. */
const MAX_UPSTREAMS = 15;

const HEADER_SIZE = 12;

/** `. IN NS` with RD, the health probe (CoreDNS's HCDomain "." and HCRecursionDesired). */
const PROBE_QUERY = Uint8Array.of(0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1);
const PROBE_QUESTION_END = PROBE_QUERY.length;

class UpstreamState {
  readonly endpoint: Endpoint;
  requests = 0;
  failures = 0;
  healthcheckFailures = 0;
  /** Failed probes since the last response (CoreDNS Proxy.fails). */
  fails = 0;
  probing = false;
  probeTimer: NodeJS.Timeout | undefined = undefined;
  wakeProbe: (() => void) | undefined = undefined;

  constructor(endpoint: Endpoint) {
    this.endpoint = endpoint;
  }
}

export class Forwarder {
  readonly #upstreams: UpstreamState[];
  readonly #maxConcurrent: number;
  readonly #timeoutMs: number;
  readonly #policy: ForwarderOptions['policy'];
  readonly #forceTcp: boolean;
  readonly #preferUdp: boolean;
  readonly #healthCheckMs: number;
  readonly #maxFails: number;
  readonly #except: string[];
  readonly #transport: UpstreamTransport;
  /** One shared instance: an overload must not cost a stack trace per refused query. */
  readonly #tooMany: DnsTooManyQueriesError;
  #inFlight = 0;
  #robin = 0;
  #closed = false;
  #maxConcurrentRejects = 0;
  #healthcheckBroken = 0;

  constructor(options: ForwarderOptions) {
    const problems: string[] = [];
    if (options.upstreams.length === 0) problems.push('no upstream');
    if (options.upstreams.length > MAX_UPSTREAMS) problems.push(`${options.upstreams.length} upstreams, at most ${MAX_UPSTREAMS}`);
    const upstreams: UpstreamState[] = [];
    for (const u of options.upstreams) {
      const family = isIP(u.address.split('%')[0]!);
      if (family === 0) problems.push(`upstream ${JSON.stringify(u.address)} is not an IP address`);
      else if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) problems.push(`upstream ${u.address} has port ${u.port}, not 1-65535`);
      else upstreams.push(new UpstreamState(new Endpoint(u.address, u.port, family as 4 | 6)));
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
    this.#transport = new UpstreamTransport(expireMs);
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
      upstream: u.endpoint.label,
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
      unmatchedResponses: this.#transport.unmatched,
      mismatchedResponses: this.#transport.mismatched,
    };
  }

  /** Fails every query in flight, stops the probes, closes every socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const u of this.#upstreams) {
      clearTimeout(u.probeTimer);
      u.wakeProbe?.();
    }
    this.#transport.close(new AttemptError('the forwarder is closed'));
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
          ? await this.#transport.tcp(u.endpoint, request, q.questionEnd, timeout)
          : await this.#transport.udp(u.endpoint, request, q.questionEnd, timeout);
        if (!tcpFirst && tcpOnTruncation && (res[2]! & 0x02) !== 0) {
          res = await this.#transport.tcp(u.endpoint, request, q.questionEnd, Math.max(1, Math.min(this.#timeoutMs, deadline - Date.now())));
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
    throw new DnsUpstreamError(`forward: no answer for ${q.qname || '.'} from ${this.#upstreams.map((u) => u.endpoint.label).join(', ')}: ${why}`);
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
      if (this.#forceTcp) await this.#transport.tcp(u.endpoint, request, PROBE_QUESTION_END, timeout);
      else await this.#transport.udp(u.endpoint, request, PROBE_QUESTION_END, timeout);
      return true;
    } catch {
      return false;
    }
  }
}

function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

// The query pipeline: one query through its server block's plugins in CoreDNS's
// execution order, from reading it to sending its response:
//
//   read -> (bad: FORMERR / NOTIMP, counted, never thrown) -> the most specific server
//   block zone on that listener (none: REFUSED) -> kubernetes zone -> cache -> loop probe
//   -> forward (and cache.put) -> loadbalance -> reply
//
// The kubernetes zone comes before the cache (CoreDNS's order is the other way round)
// and its answers are not cached: they are precomputed wire data, current with the last
// view, so a Service change is answered within one sync (kubeadm's Corefile disables
// the cache for cluster.local for the same reason).
//
// The path for a cluster name is synchronous and allocates nothing of its own (a test
// counts collections): the query info is one reused object (message.ts's readQuery
// fills it), the answer is written into a reused buffer, counters are typed arrays. Only
// a forwarded query leaves that path: it gets its own copy of the query info (and of the
// query, when it sat in a batch slot) for the await.
//
// UDP responses larger than the client can take (512 without EDNS, its EDNS size
// otherwise) are truncated: the zone does it for its own answers (no partial RRsets);
// a forwarded or cached one is cut to its header and question with TC set (RFC 2181
// 9, RFC 1035 4.2.1), and the client retries over TCP. The reply goes back the way the
// query came (listener.ts's Client): a batch slot, node's dgram (a copy, see #send), a
// TCP connection with its length prefix, or the data path, which sends it itself.
import { appendAnswers, encodeQuery } from './cname-chase.ts';
import { MAX_MESSAGE, type Block, type Client, type Route } from './listener.ts';
import { Proto, TYPE_SLOTS, typeSlot, Writer, type DnsMetrics } from './observability.ts';
import type { DnsParts, QueryInfo } from './parts.ts';
import { logQuery, remoteAddress, typeName } from './query-log.ts';

const RCODE_NOERROR = 0;
const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;
const RCODE_REFUSED = 5;
const TYPE_CNAME = 5;

/** What the pipeline needs of the server's options (DnsServerOptions, structurally). */
export interface QueryPipelineOptions {
  log(message: string): void;
  /** A fatal condition (a detected loop, loop.ts's DnsLoopError). */
  onFatal?(err: Error): void;
}

/** The plugin chain of a DnsServer: every way in hands its queries to `query`. */
export class QueryPipeline {
  readonly #options: QueryPipelineOptions;
  #parts: DnsParts | null = null;
  #metrics: DnsMetrics | null = null;
  #q: QueryInfo | null = null;
  /** The one response buffer of the synchronous path (2 spare bytes: a TCP length prefix never needs them, but a zone writing up to maxSize might). */
  readonly res = Buffer.allocUnsafeSlow(MAX_MESSAGE + 2);

  constructor(options: QueryPipelineOptions) {
    this.#options = options;
  }

  /** The parts and metrics, from DnsServer.start() before any listener opens. */
  begin(parts: DnsParts, metrics: DnsMetrics): void {
    this.#parts = parts;
    this.#q = parts.newQueryInfo();
    this.#metrics = metrics;
  }

  /**
   * One query, from reading it to sending (or, when forwarded, starting) its answer,
   * written into `res`. Returns the length of a response given synchronously, 0 for none
   * (dropped, forwarded, or passed on by the local answerer).
   */
  query(client: Client, msg: Uint8Array, len: number, res: Uint8Array): number {
    // A field, not a local passed on: a double crossing a call that is not inlined is boxed.
    client.start = performance.now();
    const parts = this.#parts!;
    const metrics = this.#metrics!;
    const q = this.#q!;
    const l = client.listener;
    // Not even a header, or a response (QR set; answering it could start a loop between two
    // servers): dropped without an answer, as CoreDNS does.
    if (len < 12 || (msg[2]! & 0x80) !== 0) {
      if (!client.local) metrics.dropped++;
      return 0;
    }
    let route: Route | undefined;
    try {
      if (!parts.readQuery(msg, len, q)) {
        // What the reader says to answer; else an opcode other than QUERY is "not
        // implemented" and anything else is malformed.
        const rcode = q.rcode !== undefined && q.rcode !== 0 ? q.rcode : ((msg[2]! >> 3) & 15) !== 0 ? RCODE_NOTIMP : RCODE_FORMERR;
        if (rcode < 0) {
          if (!client.local) metrics.dropped++;
          return 0;
        }
        const n = parts.errorResponse(msg, len, rcode, res);
        return this.#finish(client, l.routes[l.routes.length - 1]!, null, len, res, n, Writer.SERVER);
      }
      const qname = q.qname;
      for (let i = 0; i < l.routes.length; i++) {
        const r = l.routes[i]!;
        const z = r.zone;
        if (z === '' || qname === z || (qname.length > z.length && qname.endsWith(z) && qname.charCodeAt(qname.length - z.length - 1) === 46)) {
          route = r;
          break;
        }
      }
      if (route === undefined) {
        // No server block for the name: CoreDNS answers REFUSED.
        const n = parts.errorResponse(msg, len, RCODE_REFUSED, res);
        return this.#finish(client, l.routes[l.routes.length - 1]!, q, len, res, n, Writer.SERVER);
      }
      const block = route.block;
      const limit = client.proto === Proto.TCP ? MAX_MESSAGE : q.edns ? Math.min(MAX_MESSAGE, Math.max(512, q.ednsUdpSize)) : 512;
      const maxSize = Math.min(limit, res.length);
      // The zone before the cache, and its answers never cached: they are precomputed
      // from the current view, so a hit would cost as much as the answer and a cached
      // one could outlive a Service change by the cache's TTL.
      if (block.zone !== null && block.zone.owns(qname)) {
        const n = block.zone.answer(msg, len, q, res, maxSize);
        if (n > 0) {
          // An ExternalName Service's CNAME to a name outside the zone: its records are
          // looked up through forward and appended, as CoreDNS's kubernetes plugin does
          // (stub resolvers do not follow a CNAME the answer does not resolve).
          const target = q.qtype === TYPE_CNAME || block.zone.cnameTarget === undefined ? '' : block.zone.cnameTarget(qname);
          if (target !== '' && !block.zone.owns(target) && block.forwarder !== null && block.forwards(target)) {
            if (client.local) return 0;
            void this.#chase({ ...client }, route, copyQuery(q), msg.slice(0, len), len, res.slice(0, n), target, maxSize);
            return 0;
          }
          return this.#finish(client, route, q, len, res, n, Writer.KUBERNETES);
        }
      }
      const caches = block.cache !== null && block.caches(qname);
      if (caches) {
        const n = block.cache!.get(q, res, Date.now(), msg, maxSize);
        if (n > 0) {
          const m = n > maxSize ? truncate(res, n, msg, q.questionEnd, res) : n;
          return this.#finish(client, route, q, len, res, m, Writer.CACHE);
        }
      }
      if (block.forwarder !== null && block.forwards(qname)) {
        // The data path passes it on to the socket, where it is read again and forwarded.
        if (client.local) return 0;
        if (block.loop !== null && block.loop.seen(q)) {
          this.#loopDetected(block, block.loop.error(`${remoteAddress(client)}:${client.port}`, `:${l.port}`));
          return 0;
        }
        // The forwarded query outlives a batch slot: its own copy then.
        void this.#forward({ ...client }, route, copyQuery(q), client.batched ? msg.slice(0, len) : msg, len, maxSize, caches);
        return 0;
      }
      // No plugin wrote a response (a name in the zone that fell through with nothing
      // after it): CoreDNS's plugin.NextOrFailure answers SERVFAIL.
      const n = parts.errorResponse(msg, len, RCODE_SERVFAIL, res);
      return this.#finish(client, route, q, len, res, n, Writer.SERVER);
    } catch (err) {
      // A bug in a plugin: the client gets SERVFAIL, the server keeps serving (CoreDNS
      // recovers panics the same way and counts them).
      metrics.panics++;
      this.#options.log(`[ERROR] Recovered from panic in server: "${route === undefined ? '' : `${route.zone}.`}" ${(err as Error).stack ?? String(err)}`);
      try {
        const n = parts.errorResponse(msg, len, RCODE_SERVFAIL, res);
        if (n > 0) this.#send(client, res, n);
        return n;
      } catch {
        return 0;
      }
    }
  }

  async #forward(client: Client, route: Route, q: QueryInfo, msg: Uint8Array, len: number, maxSize: number, caches: boolean): Promise<void> {
    const block = route.block;
    const metrics = this.#metrics!;
    let response: Uint8Array;
    try {
      response = await block.forwarder!.query(msg, len, q);
    } catch (err) {
      const code = (err as { code?: string }).code;
      const rcode = code === 'DNS_TOO_MANY_QUERIES' ? RCODE_REFUSED : RCODE_SERVFAIL;
      if (code === 'DNS_TOO_MANY_QUERIES') block.forwardRejects++;
      if (block.config.errors) this.#options.log(`[ERROR] plugin/errors: ${rcode} ${q.qname}. ${typeName(q.qtype)}: ${(err as Error).message}`);
      try {
        const n = this.#parts!.errorResponse(msg, len, rcode, this.res);
        this.#finish(client, route, q, len, this.res, n, Writer.FORWARD);
      } catch (bug) {
        metrics.panics++;
        this.#options.log(`[ERROR] Recovered from panic in server: "${route.zone}." ${(bug as Error).stack ?? String(bug)}`);
      }
      return;
    }
    // After the await nothing may throw out of here: an async function's exception would be
    // an unhandled rejection, which ends the process.
    try {
      const n = response.length;
      if (n < 12) return;
      metrics.forwardResponses[response[3]! & 15]!++;
      if (caches) this.#store(block, q, response, n);
      if (n > maxSize) {
        const m = truncate(response, n, msg, q.questionEnd, this.res);
        this.#finish(client, route, q, len, this.res, m, Writer.FORWARD);
      } else {
        this.#finish(client, route, q, len, response, n, Writer.FORWARD);
      }
    } catch (err) {
      metrics.panics++;
      this.#options.log(`[ERROR] Recovered from panic in server: "${route.zone}." ${(err as Error).stack ?? String(err)}`);
    }
  }

  /**
   * The zone's CNAME answer `zoneAnswer` for an ExternalName Service, completed with the
   * records of `target` (same type) from the cache or the upstream: the slow path, built
   * with dns-packet. Whatever fails, the client gets the CNAME alone, as before.
   */
  async #chase(client: Client, route: Route, q: QueryInfo, msg: Uint8Array, len: number, zoneAnswer: Uint8Array, target: string, maxSize: number): Promise<void> {
    const block = route.block;
    const parts = this.#parts!;
    let answer: Uint8Array = zoneAnswer;
    try {
      const query = encodeQuery(target, q.qtype, q.edns);
      const tq = parts.newQueryInfo();
      if (parts.readQuery(query, query.length, tq)) {
        const caches = block.cache !== null && block.caches(target);
        let upstream: Uint8Array | null = null;
        if (caches) {
          const n = block.cache!.get(tq, this.res, Date.now(), query, MAX_MESSAGE);
          if (n > 0) upstream = this.res.slice(0, n);
        }
        if (upstream === null) {
          upstream = await block.forwarder!.query(query, query.length, tq);
          if (caches && upstream.length >= 12) this.#store(block, tq, upstream, upstream.length);
        }
        answer = appendAnswers(zoneAnswer, upstream);
      }
    } catch (err) {
      if (block.config.errors) this.#options.log(`[ERROR] plugin/kubernetes: resolving the ExternalName target ${target} of ${q.qname}: ${(err as Error).message}`);
    }
    try {
      const n = answer.length;
      if (n > maxSize) {
        const m = truncate(answer, n, msg, q.questionEnd, this.res);
        this.#finish(client, route, q, len, this.res, m, Writer.KUBERNETES);
      } else {
        this.#finish(client, route, q, len, answer, n, Writer.KUBERNETES);
      }
    } catch (err) {
      this.#metrics!.panics++;
      this.#options.log(`[ERROR] Recovered from panic in server: "${route.zone}." ${(err as Error).stack ?? String(err)}`);
    }
  }

  #store(block: Block, q: QueryInfo, res: Uint8Array, n: number): void {
    const rcode = res[3]! & 15;
    // RFC 2308: NXDOMAIN, and NOERROR without answers (NODATA), are the denials.
    const denial = rcode === RCODE_NXDOMAIN || (rcode === RCODE_NOERROR && res[6] === 0 && res[7] === 0);
    if (block.stores(q.qname, denial)) block.cache!.put(q, res, n, Date.now());
  }

  /** Counts, logs, load-balances and sends one response. `q` null: the query could not be read. */
  #finish(client: Client, route: Route, q: QueryInfo | null, reqLen: number, res: Uint8Array, n: number, writer: Writer): number {
    if (n <= 0) return 0;
    const metrics = this.#metrics!;
    const block = route.block;
    const rcode = res[3]! & 15;
    if (block.config.loadbalance && rcode === RCODE_NOERROR && writer !== Writer.SERVER) this.#parts!.shuffleAnswers(res, n);
    this.#send(client, res, n);
    // Counted once answered, as CoreDNS's Report does after the plugins ran.
    const r = route.index;
    const type = q === null ? typeSlot(0) : typeSlot(q.qtype);
    metrics.requests[metrics.requestIndex(r, client.proto, client.family, type)]!++;
    metrics.responses[metrics.responseIndex(r, rcode, writer)]!++;
    // Whole microseconds: a small integer, never boxed.
    const micros = Math.round((performance.now() - client.start) * 1000) | 0;
    metrics.duration.observe(r * TYPE_SLOTS + type, micros);
    metrics.requestSize.observe(r * 2 + client.proto, reqLen);
    metrics.responseSize.observe(r * 2 + client.proto, n);
    if (block.config.log !== null && q !== null) logQuery(this.#options, block, client, q, reqLen, res, n, micros / 1e6);
    return n;
  }

  #send(client: Client, res: Uint8Array, n: number): void {
    // The data path sends it from its own buffer (`res` is that buffer).
    if (client.local) return;
    if (client.socket !== null) {
      const out = Buffer.allocUnsafe(n + 2);
      out.writeUInt16BE(n, 0);
      out.set(res.subarray(0, n), 2);
      if (!client.socket.destroyed) client.socket.write(out);
      return;
    }
    const l = client.listener;
    if (client.batched) {
      // Inside a batch the answer is already in its slot (udp-listeners.ts's readBatch
      // sends it); later (a forwarded query's), it goes out alone.
      if (res.buffer === l.batchBuffers?.answers.buffer || l.batch === null) return;
      const b = l.batchBuffers!;
      b.single.set(res.subarray(0, n));
      b.offsets[0] = 0; b.sendLengths[0] = n; b.dstAddrs[0] = client.ip; b.dstPorts[0] = client.port; b.gso[0] = 0;
      l.batch.sendBatch(b.single, b.offsets, b.sendLengths, b.dstAddrs, b.dstPorts, b.gso, 1);
      return;
    }
    const udp = l.udp;
    if (udp === null) return;
    // A copy: dgram holds on to the buffer until the (possibly deferred) send.
    const out = Buffer.allocUnsafe(n);
    out.set(res.subarray(0, n));
    udp.send(out, client.port, client.address);
  }

  #loopDetected(block: Block, err: Error): void {
    block.loop?.stop();
    this.#options.log(`[FATAL] plugin/loop: ${err.message}`);
    this.#options.onFatal?.(err);
  }
}

function copyQuery(q: QueryInfo): QueryInfo {
  return {
    id: q.id, flags: q.flags, qname: q.qname, qtype: q.qtype, qclass: q.qclass, questionEnd: q.questionEnd,
    edns: q.edns, ednsUdpSize: q.ednsUdpSize, ednsVersion: q.ednsVersion, dnssecOk: q.dnssecOk, rcode: q.rcode,
  };
}

/**
 * A response cut to its header and the query's question, TC set and the record counts
 * zero: what a server sends when the answer does not fit the client's UDP size (the
 * client retries over TCP). Written to `out` (which may be `res` itself); returns its length.
 */
export function truncate(res: Uint8Array, resLen: number, req: Uint8Array, questionEnd: number, out: Uint8Array): number {
  if (resLen < 12) return 0;
  if (out !== res) for (let i = 0; i < 12; i++) out[i] = res[i]!;
  out[2]! |= 0x02;
  out[4] = 0; out[5] = 1;
  out[6] = 0; out[7] = 0; out[8] = 0; out[9] = 0; out[10] = 0; out[11] = 0;
  for (let i = 12; i < questionEnd; i++) out[i] = req[i]!;
  return questionEnd;
}

// The DNS server: UDP and TCP listeners for the server blocks of a Corefile, each query
// through the block's plugins in CoreDNS's execution order:
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
// Three ways in for UDP: a batched socket (recvmmsg/sendmmsg through the native addon,
// `openBatchUdp`; each answer written straight into its send slot), node's dgram (the
// reply copied out of the shared buffer first: dgram keeps a reference to what it is
// given while the send is queued, and the next query would overwrite it), and the agent's
// data path (`localAnswerer`: a pod's query answered in place, or passed on to a socket
// when it must be forwarded).
//
// UDP responses larger than the client can take (512 without EDNS, its EDNS size
// otherwise) are truncated: the zone does it for its own answers (no partial RRsets);
// a forwarded or cached one is cut to its header and question with TC set (RFC 2181
// 9, RFC 1035 4.2.1), and the client retries over TCP. TCP carries several queries per
// connection with the 2-byte length framing of RFC 1035 4.2.2 / RFC 7766, answered as
// they complete, and an idle connection is closed after 10 s (CoreDNS's idle timeout).
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { createServer, type Server as TcpServer, type Socket as TcpSocket } from 'node:net';
import { readFileSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import { TapirError } from '../errors/tapir-error.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import { ipv4ToString, ipv6ToString } from '../wire/address.ts';
import { matchZone, type CorefileConfig, type ServerBlockConfig } from './corefile-config.ts';
import { DnsEndpoints, DnsMetrics, MONITORED_TYPES, Proto, RCODE_NAMES, TYPE_SLOTS, typeSlot, Writer, type RouteLabels } from './observability.ts';
import { REAL_PARTS, type CachePart, type DnsParts, type ForwarderPart, type LoopPart, type QueryInfo, type ZonePart } from './parts.ts';

const RCODE_NOERROR = 0;
const RCODE_FORMERR = 1;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;
const RCODE_NOTIMP = 4;
const RCODE_REFUSED = 5;
const TYPE_HINFO = 13;
const TYPE_CNAME = 5;
/** CoreDNS's `timeouts` default for an idle TCP connection. */
const TCP_IDLE_MS = 10_000;
/** Per upstream attempt (CoreDNS's forward reads for at most 2 s). */
const FORWARD_TIMEOUT_MS = 2000;
const MAX_MESSAGE = 65535;

/** The server could not bind an address of its Corefile. */
export class DnsListenError extends TapirError {
  readonly code = 'DNS_LISTEN';
}

export interface DnsServerOptions {
  corefile: CorefileConfig;
  log(message: string): void;
  /** The addresses to listen on when a server block has no `bind`; default every IPv4 address. */
  defaultBind?: string[];
  /** The query reader, zone, forwarder, cache and loop detector; default the real ones (REAL_PARTS). */
  parts?: DnsParts;
  /** A fatal condition (a detected loop, loop.ts's DnsLoopError): CoreDNS exits; `tapir dns` does too. Default: logged. */
  onFatal?(err: Error): void;
  /** coredns_build_info's version label. */
  version?: string;
  /**
   * Opens a batched UDP socket (src/device/udp.ts's UdpBatchSocket: recvmmsg/sendmmsg)
   * for an IPv4 listener; without it, or for IPv6, node's dgram. dgram costs a syscall,
   * a lookup tick and several objects per datagram; a batch is two syscalls for up to 64.
   */
  openBatchUdp?(address: string, port: number): BatchUdpSocket;
}

/** What the server needs of a batched UDP socket (UdpBatchSocket, structurally). */
export interface BatchUdpSocket {
  readonly localPort: number;
  recvBatch(slab: Uint8Array, slotSize: number, headroom: number, lengths: Int32Array, srcAddrs: Uint32Array,
    srcPorts: Uint16Array, groSegSizes: Int32Array, maxFrames: number): number;
  sendBatch(slab: Uint8Array, offsets: Int32Array, lengths: Int32Array, dstAddrs: Uint32Array, dstPorts: Uint16Array,
    gsoSizes: Int32Array, count: number): number;
  onReadable(cb: () => void): void;
  close(): void;
}

/** Queries per recvmmsg, and receive batches per readable wakeup (then the loop turns). */
const BATCH = 64;
const BATCHES_PER_WAKEUP = 4;
/** A query larger than this is cut by the kernel (MSG_TRUNC) and answered FORMERR. */
const QUERY_SLOT = 4096;
/** The largest UDP answer a batch slot holds; a client asking for more gets it truncated at this. */
const ANSWER_SLOT = 16384;

/** The buffers of one batched UDP listener, allocated once. */
class UdpBatchBuffers {
  readonly queries = new Uint8Array(BATCH * QUERY_SLOT);
  readonly answers = Buffer.allocUnsafeSlow(BATCH * ANSWER_SLOT);
  /** Views of each slot, made once: the query reader and the zone take messages from 0. */
  readonly queryViews: Uint8Array[] = [];
  readonly answerViews: Buffer[] = [];
  readonly lengths = new Int32Array(BATCH);
  readonly srcAddrs = new Uint32Array(BATCH);
  readonly srcPorts = new Uint16Array(BATCH);
  readonly gro = new Int32Array(BATCH);
  readonly offsets = new Int32Array(BATCH);
  readonly sendLengths = new Int32Array(BATCH);
  readonly dstAddrs = new Uint32Array(BATCH);
  readonly dstPorts = new Uint16Array(BATCH);
  readonly gso = new Int32Array(BATCH);
  /** One answer sent on its own (a forwarded query's, later). */
  readonly single = Buffer.allocUnsafeSlow(MAX_MESSAGE);
  constructor() {
    for (let i = 0; i < BATCH; i++) {
      this.queryViews.push(this.queries.subarray(i * QUERY_SLOT, (i + 1) * QUERY_SLOT));
      this.answerViews.push(this.answers.subarray(i * ANSWER_SLOT, (i + 1) * ANSWER_SLOT));
    }
  }
}

/** One server block at run time. */
class Block {
  readonly config: ServerBlockConfig;
  zone: ZonePart | null = null;
  zoneHasView = false;
  forwarder: ForwarderPart | null = null;
  cache: CachePart | null = null;
  /** `loop` (with `forward`): the probe's detector. */
  loop: LoopPart | null = null;
  forwardRejects = 0;
  /** `forward`'s FROM as a list for matchZone, made once. */
  readonly #from: string[];
  constructor(config: ServerBlockConfig) {
    this.config = config;
    this.#from = config.forward === null ? [] : [config.forward.from];
  }

  forwards(qname: string): boolean {
    const f = this.config.forward;
    return f !== null && matchZone(qname, this.#from) !== undefined && (f.except.length === 0 || matchZone(qname, f.except) === undefined);
  }

  /** Whether the cache is consulted for the name at all. */
  caches(qname: string): boolean {
    const c = this.config.cache;
    if (c === null || matchZone(qname, c.zones) === undefined) return false;
    return !(matchZone(qname, c.disableSuccess) !== undefined && matchZone(qname, c.disableDenial) !== undefined);
  }

  /** Whether a response of this kind for this name may be stored. */
  stores(qname: string, denial: boolean): boolean {
    const c = this.config.cache!;
    return matchZone(qname, denial ? c.disableDenial : c.disableSuccess) === undefined;
  }
}

interface Route {
  /** Index into the metrics' route arrays. */
  index: number;
  block: Block;
  /** The block zone this route matches ('' = root). */
  zone: string;
}

interface Listener {
  host: string;
  port: number;
  /** Most specific zone first. */
  routes: Route[];
  udp: Socket | null;
  batch: BatchUdpSocket | null;
  batchBuffers: UdpBatchBuffers | null;
  tcp: TcpServer | null;
  connections: Set<TcpSocket>;
  /** The one Client of every UDP query on this listener. */
  udpClient: Client;
}

/**
 * Where a response goes: a UDP client, a TCP connection, or (`local`) the caller of
 * answerLocal, the data path, which sends it itself. One mutable object per listener
 * serves every UDP query (the synchronous path keeps it no longer than the query); a
 * forwarded query takes a copy.
 */
interface Client {
  listener: Listener;
  proto: Proto;
  family: number;
  /** '' when only `ip` (or `ip6`) is known (the data path): written out only for the query log. */
  address: string;
  ip: number;
  /** The data path's IPv6 clients: their address, copied into these 16 bytes per query (null for every other client). */
  ip6: Uint8Array | null;
  port: number;
  socket: TcpSocket | null;
  local: boolean;
  /** performance.now() when the query was read. */
  start: number;
  /** From a batched UDP socket: its query lives in a slot the next batch overwrites. */
  batched: boolean;
}

/** A UDP service the data path answers in place (src/datapath's LocalUdpAnswerer). */
export interface LocalDnsAnswerer {
  /**
   * The query is `b[off, off + len)`, from IPv4 address `src`; writes the response into
   * `out` from 0 and returns its length, or 0 when the query must go on to the server's
   * socket (forwarded names, anything not answered synchronously). Never keeps `b`.
   */
  answer(b: Buffer, off: number, len: number, out: Buffer, src: number): number;
}

/** The IPv6 counterpart (src/datapath's LocalUdpAnswerer6): the client's address is the 16 bytes at `b[srcOffset]`. */
export interface LocalDnsAnswerer6 {
  answer(b: Buffer, off: number, len: number, out: Buffer, srcOffset: number): number;
}

export class DnsServer {
  readonly #options: DnsServerOptions;
  readonly #blocks: Block[];
  readonly #listeners: Listener[] = [];
  readonly #routes: RouteLabels[] = [];
  #parts: DnsParts | null = null;
  #metrics: DnsMetrics | null = null;
  #endpoints: DnsEndpoints | null = null;
  #view: ClusterView | null = null;
  #q: QueryInfo | null = null;
  /** The one response buffer of the synchronous path (2 spare bytes: a TCP length prefix never needs them, but a zone writing up to maxSize might). */
  readonly #res = Buffer.allocUnsafeSlow(MAX_MESSAGE + 2);
  #started = false;
  #stopped = false;
  readonly #timers = new Set<NodeJS.Timeout>();
  /** What it bound, with the zones (trailing dot, `.` the root) served there. */
  readonly addresses: { address: string; port: number; zones: string[] }[] = [];

  constructor(options: DnsServerOptions) {
    this.#options = options;
    this.#blocks = options.corefile.servers.map((s) => new Block(s));
    // Listeners: one per (bind address, port); each holds the routes of every block there.
    for (const block of this.#blocks) {
      const hosts = block.config.bind.length > 0 ? block.config.bind : options.defaultBind ?? ['0.0.0.0'];
      for (const host of hosts) {
        let l = this.#listeners.find((x) => x.host === host && x.port === block.config.port);
        if (l === undefined) {
          l = { host, port: block.config.port, routes: [], udp: null, batch: null, batchBuffers: null, tcp: null, connections: new Set(), udpClient: null as unknown as Client };
          l.udpClient = { listener: l, proto: Proto.UDP, family: 1, address: '', ip: 0, ip6: null, port: 0, socket: null, local: false, start: 0, batched: false };
          this.#listeners.push(l);
        }
        for (const zone of block.config.zones) {
          l.routes.push({ index: this.#routes.length, block, zone });
          this.#routes.push({ server: serverLabel(block.config, host), zone: zone === '' ? '.' : `${zone}.` });
        }
      }
    }
    for (const l of this.#listeners) l.routes.sort((a, b) => (b.zone === '' ? -1 : b.zone.length) - (a.zone === '' ? -1 : a.zone.length));
  }

  /** The metrics, for an agent that serves them on its own /metrics (Registry.merge). */
  get metrics(): DnsMetrics {
    if (this.#metrics === null) throw new Error('DnsServer.metrics before start()');
    return this.#metrics;
  }

  /** What the health, ready and metrics listeners bound. */
  get endpoints(): DnsEndpoints['bound'] {
    return this.#endpoints?.bound ?? [];
  }

  get registry(): DnsMetrics['registry'] {
    return this.metrics.registry;
  }

  /** Names of the plugins not ready yet (a kubernetes zone without its first view); [] = ready. */
  notReady(): string[] {
    return this.#blocks.some((b) => b.config.kubernetes !== null && !b.zoneHasView) ? ['kubernetes'] : [];
  }

  async start(): Promise<void> {
    if (this.#started) throw new Error('DnsServer.start() called twice');
    this.#started = true;
    const parts = this.#options.parts ?? REAL_PARTS;
    this.#parts = parts;
    this.#q = parts.newQueryInfo();
    for (const b of this.#blocks) {
      const c = b.config;
      if (c.kubernetes !== null) {
        const k = c.kubernetes;
        b.zone = parts.createZone({ zones: k.zones, ttl: k.ttl, pods: k.pods, fallthrough: k.fallthrough, ...(k.endpointPodNames ? { endpointPodNames: true } : {}) });
      }
      if (c.forward !== null) {
        const f = c.forward;
        b.forwarder = parts.createForwarder({
          upstreams: f.upstreams, maxConcurrent: f.maxConcurrent > 0 ? f.maxConcurrent : 1000, timeoutMs: FORWARD_TIMEOUT_MS,
          policy: f.policy, forceTcp: f.forceTcp, preferUdp: f.preferUdp, healthCheckMs: f.healthCheckMs, maxFails: f.maxFails, expireMs: f.expireMs,
          ...(f.except.length > 0 ? { except: f.except } : {}),
        });
      }
      if (c.loop && c.forward !== null) b.loop = parts.createLoopDetector(c.zones[0] ?? '');
      if (c.cache !== null) {
        const k = c.cache;
        b.cache = parts.createCache({
          successCapacity: k.success.capacity, denialCapacity: k.denial.capacity, maxTtl: k.success.maxTtl,
          maxDenialTtl: k.denial.maxTtl, minTtl: k.success.minTtl, minDenialTtl: k.denial.minTtl,
        });
      }
    }
    if (this.#view !== null) this.setView(this.#view);
    const metrics = new DnsMetrics(this.#routes, {
      caches: () => this.#blocks.filter((b) => b.cache !== null).map((b) => ({
        server: this.#routes[this.#firstRoute(b)]?.server ?? '', zones: b.config.cache!.zones.map((z) => z === '' ? '.' : `${z}.`).join(','), stats: b.cache!.stats(),
      })),
      forwarders: () => this.#blocks.filter((b) => b.forwarder !== null).map((b) => {
        const counters = b.forwarder!.counters?.();
        return {
          server: this.#routes[this.#firstRoute(b)]?.server ?? '', stats: b.forwarder!.stats(),
          rejects: counters?.maxConcurrentRejects ?? b.forwardRejects, broken: counters?.healthcheckBroken ?? 0,
        };
      }),
      plugins: () => this.#listeners.flatMap((l) => l.routes.flatMap((r) => r.block.config.plugins.map((name) => ({ ...this.#routes[r.index]!, name })))),
    }, this.#options.version ?? tapirVersion());
    this.#metrics = metrics;
    const endpoints = new DnsEndpoints(metrics, { notReady: () => this.notReady() });
    for (const b of this.#blocks) {
      if (b.config.health !== null) endpoints.add('/health', b.config.health.address);
      if (b.config.ready !== null) endpoints.add('/ready', b.config.ready.address);
      if (b.config.prometheus !== null) endpoints.add('/metrics', b.config.prometheus.address);
    }
    this.#endpoints = endpoints;
    try {
      for (const l of this.#listeners) await this.#listen(l);
      await endpoints.listen();
    } catch (err) {
      await this.#close();
      throw err instanceof TapirError ? err : new DnsListenError((err as Error).message, { cause: err });
    }
    for (const b of this.#blocks) if (b.loop !== null) this.#probeLoop(b);
  }

  /** Every kubernetes zone takes the view (filtered to its `namespaces`); the first one makes /ready OK. */
  setView(view: ClusterView): void {
    this.#view = view;
    if (this.#parts === null) return;
    for (const b of this.#blocks) {
      if (b.zone === null) continue;
      const namespaces = b.config.kubernetes!.namespaces;
      b.zone.update(namespaces.length === 0 ? view : { ...view, services: view.services.filter((s) => namespaces.includes(s.namespace)) });
      b.zoneHasView = true;
    }
  }

  /**
   * Stops: /ready turns 503 at once; with `health`'s lameduck the server keeps answering
   * (and /health OK) for that long, then closes every socket and listener.
   */
  async stop(opts: { lameduck?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#endpoints?.stopping();
    const lameduck = opts.lameduck === false ? 0 : Math.max(0, ...this.#blocks.map((b) => b.config.health?.lameduckMs ?? 0));
    if (lameduck > 0 && this.#started) {
      this.#options.log(`lameduck: answering for ${lameduck / 1000} s more before closing`);
      await new Promise((r) => setTimeout(r, lameduck));
    }
    await this.#close();
  }

  async #close(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const b of this.#blocks) b.loop?.stop();
    const closing: Promise<void>[] = [];
    for (const l of this.#listeners) {
      if (l.udp !== null) { const u = l.udp; closing.push(new Promise((r) => u.close(() => r()))); l.udp = null; }
      if (l.batch !== null) { l.batch.close(); l.batch = null; }
      if (l.tcp !== null) {
        const t = l.tcp;
        closing.push(new Promise((r) => t.close(() => r())));
        for (const c of l.connections) c.destroy();
        l.tcp = null;
      }
    }
    for (const b of this.#blocks) b.forwarder?.close();
    if (this.#endpoints !== null) closing.push(this.#endpoints.close());
    await Promise.all(closing);
  }

  #firstRoute(b: Block): number {
    for (const l of this.#listeners) for (const r of l.routes) if (r.block === b) return r.index;
    return -1;
  }

  async #listen(l: Listener): Promise<void> {
    const port = this.#options.openBatchUdp !== undefined && !l.host.includes(':') ? this.#listenBatch(l) : await this.#listenDgram(l);
    // TCP on the same port as UDP got (port 0 in the Corefile: whatever UDP was given).
    const tcp = createServer({ noDelay: true }, (socket) => this.#tcpConnection(l, socket));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: l.host, port, exclusive: true }, () => { tcp.off('error', reject); resolve(); });
    }).catch((err: Error) => { throw new DnsListenError(`cannot listen on ${l.host}:${port}/tcp: ${err.message}`, { cause: err }); });
    l.tcp = tcp;
    l.port = port;
    for (const r of l.routes) this.#routes[r.index]!.server = serverLabel(r.block.config, l.host, port);
    this.addresses.push({ address: l.host, port, zones: [...new Set(l.routes.map((r) => r.zone === '' ? '.' : `${r.zone}.`))].sort() });
  }

  async #listenDgram(l: Listener): Promise<number> {
    // The address is always a literal: answer the lookup at once (dgram's own takes a tick and a regex per send).
    const lookup = (address: string, _family: unknown, cb: (err: null, address: string, family: number) => void): void => cb(null, address, address.includes(':') ? 6 : 4);
    const udp = createSocket({ type: l.host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false, lookup: lookup as never });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: l.host, port: l.port, exclusive: true }, () => { udp.off('error', reject); resolve(); });
    }).catch((err: Error) => { udp.close(); throw new DnsListenError(`cannot listen on ${l.host}:${l.port}/udp: ${err.message}`, { cause: err }); });
    l.udp = udp;
    const port = udp.address().port;
    udp.on('message', (msg, rinfo) => this.#udpQuery(l, msg, rinfo));
    udp.on('error', (err) => this.#options.log(`udp ${l.host}:${port}: ${err.message}`));
    return port;
  }

  #listenBatch(l: Listener): number {
    let socket: BatchUdpSocket;
    try {
      socket = this.#options.openBatchUdp!(l.host, l.port);
    } catch (err) {
      throw new DnsListenError(`cannot listen on ${l.host}:${l.port}/udp: ${(err as Error).message}`, { cause: err });
    }
    l.batch = socket;
    l.batchBuffers = new UdpBatchBuffers();
    l.udpClient.batched = true;
    socket.onReadable(() => this.#readBatch(l));
    return socket.localPort;
  }

  /**
   * Up to BATCHES_PER_WAKEUP batches: every query answered synchronously goes out in the
   * one sendmmsg of its batch, from the answer slot it was written into.
   */
  #readBatch(l: Listener): void {
    const b = l.batchBuffers!;
    const client = l.udpClient;
    for (let round = 0; round < BATCHES_PER_WAKEUP; round++) {
      const socket = l.batch;
      if (socket === null) return;
      const n = socket.recvBatch(b.queries, QUERY_SLOT, 0, b.lengths, b.srcAddrs, b.srcPorts, b.gro, BATCH);
      if (n <= 0) return;
      let out = 0;
      for (let i = 0; i < n; i++) {
        client.ip = b.srcAddrs[i]!;
        client.port = b.srcPorts[i]!;
        const len = Math.min(b.lengths[i]!, QUERY_SLOT);
        const answer = this.#query(client, b.queryViews[i]!, len, b.answerViews[i]!);
        if (answer <= 0) continue;
        b.offsets[out] = i * ANSWER_SLOT;
        b.sendLengths[out] = answer;
        b.dstAddrs[out] = b.srcAddrs[i]!;
        b.dstPorts[out] = b.srcPorts[i]!;
        b.gso[out] = 0;
        out++;
      }
      if (out > 0) socket.sendBatch(b.answers, b.offsets, b.sendLengths, b.dstAddrs, b.dstPorts, b.gso, out);
      if (n < BATCH) return;
    }
  }

  #udpQuery(l: Listener, msg: Buffer, rinfo: RemoteInfo): void {
    const client = l.udpClient;
    client.family = rinfo.family === 'IPv6' ? 2 : 1;
    client.address = rinfo.address;
    client.port = rinfo.port;
    this.#query(client, msg, msg.length, this.#res);
  }

  /**
   * The synchronous part of the server for the data path (the agent's pods' datagrams to
   * the cluster DNS address, answered in place): cache and kubernetes zone of the server
   * block that listens on `port` (and `address`, or every address). Whatever would be
   * forwarded is passed on (0), to reach the same server through its socket, where it is
   * counted. null when no server block listens there.
   */
  localAnswerer(address: string, port: number): LocalDnsAnswerer | null {
    // An IPv6 address's clients are IPv6: localAnswerer6.
    if (address.includes(':')) return null;
    const l = this.#listeners.find((x) => x.port === port && (x.host === address || x.host === '0.0.0.0'));
    if (l === undefined) return null;
    const client: Client = { listener: l, proto: Proto.UDP, family: 1, address: '', ip: 0, ip6: null, port: 0, socket: null, local: true, start: 0, batched: false };
    const view = this.#localView();
    return {
      answer: (b: Buffer, off: number, len: number, out: Buffer, src: number): number => {
        client.ip = src;
        return this.#query(client, view(b, off), len, out);
      },
    };
  }

  /** localAnswerer for an IPv6 address the server listens on (an IPv6 cluster DNS address): pods' IPv6 queries answered in the data path. */
  localAnswerer6(address: string, port: number): LocalDnsAnswerer6 | null {
    const l = this.#listeners.find((x) => x.port === port && (x.host === address || x.host === '::'));
    if (l === undefined) return null;
    const ip6 = new Uint8Array(16);
    const client: Client = { listener: l, proto: Proto.UDP, family: 2, address: '', ip: 0, ip6, port: 0, socket: null, local: true, start: 0, batched: false };
    const view = this.#localView();
    return {
      answer: (b: Buffer, off: number, len: number, out: Buffer, srcOffset: number): number => {
        for (let i = 0; i < 16; i++) ip6[i] = b[srcOffset + i]!;
        return this.#query(client, view(b, off), len, out);
      },
    };
  }

  /**
   * One view per payload offset: the data path's arena has a few dozen slots, so after
   * the first queries no view is created (readQuery and the zone take a message from 0).
   */
  #localView(): (b: Buffer, off: number) => Uint8Array {
    const views = new Map<number, Uint8Array>();
    return (b, off) => {
      let view = views.get(off);
      if (view === undefined || view.buffer !== b.buffer || view.byteOffset !== b.byteOffset + off) {
        view = new Uint8Array(b.buffer, b.byteOffset + off, b.length - off);
        if (views.size < 4096) views.set(off, view);
      }
      return view;
    };
  }

  #tcpConnection(l: Listener, socket: TcpSocket): void {
    l.connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => l.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    const client: Client = {
      listener: l, proto: Proto.TCP, family: socket.remoteFamily === 'IPv6' ? 2 : 1,
      address: socket.remoteAddress ?? '', ip: 0, ip6: null, port: socket.remotePort ?? 0, socket, local: false, start: 0, batched: false,
    };
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (data: Buffer) => {
      pending = pending.length === 0 ? data : Buffer.concat([pending, data]);
      while (pending.length >= 2) {
        const len = pending.readUInt16BE(0);
        if (pending.length < 2 + len) break;
        // Its own copy: a forwarded query outlives this chunk.
        const msg = Buffer.from(pending.subarray(2, 2 + len));
        pending = pending.subarray(2 + len);
        this.#query(client, msg, len, this.#res);
      }
    });
  }

  /**
   * One query, from reading it to sending (or, when forwarded, starting) its answer,
   * written into `res`. Returns the length of a response given synchronously, 0 for none
   * (dropped, forwarded, or passed on by the local answerer).
   */
  #query(client: Client, msg: Uint8Array, len: number, res: Uint8Array): number {
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
        const n = this.#parts!.errorResponse(msg, len, rcode, this.#res);
        this.#finish(client, route, q, len, this.#res, n, Writer.FORWARD);
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
        const m = truncate(response, n, msg, q.questionEnd, this.#res);
        this.#finish(client, route, q, len, this.#res, m, Writer.FORWARD);
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
          const n = block.cache!.get(tq, this.#res, Date.now(), query, MAX_MESSAGE);
          if (n > 0) upstream = this.#res.slice(0, n);
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
        const m = truncate(answer, n, msg, q.questionEnd, this.#res);
        this.#finish(client, route, q, len, this.#res, m, Writer.KUBERNETES);
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
    if (block.config.log !== null && q !== null) this.#logQuery(block, client, q, reqLen, res, n, micros / 1e6);
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
      // Inside a batch the answer is already in its slot (#readBatch sends it); later (a
      // forwarded query's), it goes out alone.
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

  #logQuery(block: Block, client: Client, q: QueryInfo, reqLen: number, res: Uint8Array, n: number, seconds: number): void {
    const log = block.config.log!;
    if (matchZone(q.qname, log.names) === undefined) return;
    const rcode = res[3]! & 15;
    const answers = (res[6]! << 8) | res[7]!;
    const cls = rcode === RCODE_NXDOMAIN || (rcode === RCODE_NOERROR && answers === 0) ? 'denial' : rcode === RCODE_NOERROR ? 'success' : 'error';
    if (!log.classes.includes('all') && !log.classes.includes(cls)) return;
    const fields: Record<string, string> = {
      remote: remoteAddress(client), port: String(client.port), type: typeName(q.qtype), class: q.qclass === 1 ? 'IN' : q.qclass === 3 ? 'CH' : `CLASS${q.qclass}`,
      name: `${q.qname}.`, proto: client.proto === Proto.UDP ? 'udp' : 'tcp', size: String(reqLen), rcode: RCODE_NAMES[rcode]!, rsize: String(n),
      duration: `${seconds.toFixed(9).replace(/0+$/, '').replace(/\.$/, '')}s`, '>id': String(q.id), '>do': String(q.dnssecOk),
      '>bufsize': String(q.edns ? q.ednsUdpSize : 512), '>rflags': responseFlags(res), '>opcode': 'QUERY',
    };
    this.#options.log(`[INFO] ${log.format.replace(/\{([^}]*)\}/g, (m, k: string) => fields[k] ?? m)}`);
  }


  /**
   * CoreDNS's `loop` (loop.ts): asks "<random>.<random>.<zone>." HINFO through this
   * server; the probe coming in more than twice means forwarded queries come back here
   * (a resolv.conf naming 127.0.0.53, say) and every one would circle until it times out.
   */
  #probeLoop(block: Block): void {
    const l = this.#listeners.find((x) => x.routes.some((r) => r.block === block));
    if (l === undefined) return;
    void block.loop!.start({ address: l.host, port: l.port }).catch((err: Error) => this.#options.log(`[ERROR] plugin/loop: ${err.message}`));
  }

  #loopDetected(block: Block, err: Error): void {
    block.loop?.stop();
    this.#options.log(`[FATAL] plugin/loop: ${err.message}`);
    this.#options.onFatal?.(err);
  }
}

/** The client's address as text (made only for messages: the batched and data paths carry a number). */
function remoteAddress(client: Client): string {
  if (client.address !== '') return client.address;
  return client.ip6 === null ? ipv4ToString(client.ip) : ipv6ToString(client.ip6);
}

/** A recursive query for `name` (a valid host name: ASCII labels) and `qtype`, class IN, with an OPT when `edns`. */
function encodeQuery(name: string, qtype: number, edns: boolean): Uint8Array {
  const labels = name.split('.').filter((l) => l !== '');
  const b = new Uint8Array(12 + labels.reduce((n, l) => n + 1 + l.length, 0) + 1 + 4 + (edns ? 11 : 0));
  b[2] = 0x01; // RD
  b[5] = 1; // one question
  if (edns) b[11] = 1;
  let o = 12;
  for (const l of labels) {
    b[o++] = l.length;
    for (let i = 0; i < l.length; i++) b[o++] = l.charCodeAt(i) & 0xff;
  }
  b[o++] = 0;
  b[o++] = qtype >>> 8;
  b[o++] = qtype & 0xff;
  b[o++] = 0;
  b[o++] = 1; // IN
  if (edns) {
    // Root owner, type OPT (41), UDP size 1232; TTL and RDLENGTH zero.
    b[o + 1] = 0;
    b[o + 2] = 41;
    b[o + 3] = 1232 >>> 8;
    b[o + 4] = 1232 & 0xff;
  }
  return b;
}

/**
 * The zone's response with the upstream's answer records after its own (the CNAME), the
 * upstream's rcode, and its authority section when it answered nothing (an NXDOMAIN or
 * NODATA for the target keeps its SOA).
 */
function appendAnswers(zoneAnswer: Uint8Array, upstream: Uint8Array): Uint8Array {
  const mine = dnsPacket.decode(Buffer.from(zoneAnswer));
  const theirs = dnsPacket.decode(Buffer.from(upstream));
  const rcode = (theirs.flags ?? 0) & 0xf;
  const answers = [...(mine.answers ?? []), ...(theirs.answers ?? [])];
  return dnsPacket.encode({
    ...mine,
    flags: ((mine.flags ?? 0) & ~0xf) | rcode,
    answers,
    authorities: (theirs.answers ?? []).length === 0 ? theirs.authorities ?? [] : [],
  });
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

function typeName(qtype: number): string {
  for (const [t, n] of MONITORED_TYPES) if (t === qtype) return n;
  return qtype === TYPE_HINFO ? 'HINFO' : `TYPE${qtype}`;
}

/** "qr,aa,rd,ra" as CoreDNS's {>rflags} writes a response's flags. */
function responseFlags(res: Uint8Array): string {
  const a = res[2]!;
  const b = res[3]!;
  const out: string[] = [];
  if (a & 0x80) out.push('qr');
  if (a & 0x04) out.push('aa');
  if (a & 0x02) out.push('tc');
  if (a & 0x01) out.push('rd');
  if (b & 0x80) out.push('ra');
  if (b & 0x40) out.push('z');
  if (b & 0x20) out.push('ad');
  if (b & 0x10) out.push('cd');
  return out.join(',');
}

/** CoreDNS's `server` label: "dns://:53", "dns://10.96.0.10:53". */
function serverLabel(block: ServerBlockConfig, host: string, port = block.port): string {
  return `dns://${block.bind.length > 0 ? host : ''}:${port}`;
}

function tapirVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

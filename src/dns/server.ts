// The DNS server: UDP and TCP listeners for the server blocks of a Corefile, each query
// through its block's plugins (query-pipeline.ts). This file builds the run-time server
// blocks and listeners (listener.ts) from the Corefile, one listener per (bind address,
// port) with the routes of every block there, creates each block's plugins from the
// parts (parts.ts), opens the ways in (udp-listeners.ts: a batched socket or node's dgram;
// tcp-connection.ts; local-answerer.ts for the agent's data path), serves health, ready
// and metrics (observability.ts), hands each kubernetes zone the current view, and stops
// with `health`'s lameduck. TCP listens on the port UDP got, so a Corefile's port 0
// means one port for both.
import { createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { TapirError } from '../errors/tapir-error.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import type { CorefileConfig, ServerBlockConfig } from './corefile-config.ts';
import { newLocalAnswerer, newLocalAnswerer6, type LocalDnsAnswerer, type LocalDnsAnswerer6 } from './local-answerer.ts';
import { Block, DnsListenError, type BatchUdpSocket, type Client, type Listener } from './listener.ts';
import { DnsEndpoints, DnsMetrics, Proto, type RouteLabels } from './observability.ts';
import { REAL_PARTS, type DnsParts } from './parts.ts';
import { QueryPipeline } from './query-pipeline.ts';
import { tcpConnection } from './tcp-connection.ts';
import { listenBatch, listenDgram } from './udp-listeners.ts';

/** Per upstream attempt (CoreDNS's forward reads for at most 2 s). */
const FORWARD_TIMEOUT_MS = 2000;

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

export class DnsServer {
  readonly #options: DnsServerOptions;
  readonly #blocks: Block[];
  readonly #listeners: Listener[] = [];
  readonly #routes: RouteLabels[] = [];
  #parts: DnsParts | null = null;
  #metrics: DnsMetrics | null = null;
  /** The plugin chain every way in hands its queries to. */
  readonly #pipeline: QueryPipeline;
  #endpoints: DnsEndpoints | null = null;
  #view: ClusterView | null = null;
  #started = false;
  #stopped = false;
  /** What it bound, with the zones (trailing dot, `.` the root) served there. */
  readonly addresses: { address: string; port: number; zones: string[] }[] = [];

  constructor(options: DnsServerOptions) {
    this.#options = options;
    this.#pipeline = new QueryPipeline(options);
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
    this.#pipeline.begin(parts, metrics);
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
    const port = this.#options.openBatchUdp !== undefined && !l.host.includes(':') ? listenBatch(l, this.#pipeline, this.#options) : await listenDgram(l, this.#pipeline, this.#options);
    // TCP on the same port as UDP got (port 0 in the Corefile: whatever UDP was given).
    const tcp = createServer({ noDelay: true }, (socket) => tcpConnection(this.#pipeline, l, socket));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host: l.host, port, exclusive: true }, () => { tcp.off('error', reject); resolve(); });
    }).catch((err: Error) => { throw new DnsListenError(`cannot listen on ${l.host}:${port}/tcp: ${err.message}`, { cause: err }); });
    l.tcp = tcp;
    l.port = port;
    for (const r of l.routes) this.#routes[r.index]!.server = serverLabel(r.block.config, l.host, port);
    this.addresses.push({ address: l.host, port, zones: [...new Set(l.routes.map((r) => r.zone === '' ? '.' : `${r.zone}.`))].sort() });
  }

  /**
   * The synchronous part of the server for the data path, for the server block that
   * listens on `port` (and `address`, or every address): local-answerer.ts. null when no
   * server block listens there.
   */
  localAnswerer(address: string, port: number): LocalDnsAnswerer | null {
    return newLocalAnswerer(this.#listeners, this.#pipeline, address, port);
  }

  /** localAnswerer for an IPv6 address the server listens on (an IPv6 cluster DNS address): pods' IPv6 queries answered in the data path. */
  localAnswerer6(address: string, port: number): LocalDnsAnswerer6 | null {
    return newLocalAnswerer6(this.#listeners, this.#pipeline, address, port);
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

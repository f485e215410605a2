// The parts of the DNS server that live in their own files: the query reader
// (message.ts), the `kubernetes` zone (kubernetes-zone.ts), the forwarder (forward.ts),
// the cache (cache.ts) and the loop detector (loop.ts). The server codes against these
// interfaces (the contracts issue 10's split fixed; tsc checks the real classes against
// them here) and takes REAL_PARTS unless a test hands it others.
import { DnsCache, type CacheOptions } from './cache.ts';
import { Forwarder, type ForwarderOptions } from './forward.ts';
import { KubernetesZone, type KubernetesZoneOptions } from './kubernetes-zone.ts';
import { LoopDetector } from './loop.ts';
import { errorResponse, newQueryInfo, readQuery, shuffleAnswers, type QueryInfo } from './message.ts';

export type { QueryInfo, KubernetesZoneOptions, ForwarderOptions, CacheOptions };

export interface ZonePart {
  update(view: import('../model/cluster-view.ts').ClusterView): void;
  owns(qname: string): boolean;
  /** The response's length, or 0 (NOT_HANDLED): pass the query on. */
  answer(req: Uint8Array, reqLen: number, q: QueryInfo, res: Uint8Array, maxSize: number): number;
  /** The ExternalName target of a Service name ('' for any other name), which the server resolves through `forward`. */
  cnameTarget?(qname: string): string;
}

export interface ForwarderPart {
  /** Rejects with a TapirError, code DNS_UPSTREAM_FAILED (-> SERVFAIL) or DNS_TOO_MANY_QUERIES (-> REFUSED). */
  query(msg: Uint8Array, len: number, q: QueryInfo): Promise<Uint8Array>;
  stats(): { upstream: string; requests: number; failures: number; healthy: boolean; healthcheckFailures?: number }[];
  /** forward.ts's extra counters (coredns_forward_max_concurrent_rejects_total, _healthcheck_broken_total). */
  counters?(): { maxConcurrentRejects: number; healthcheckBroken: number };
  close(): void;
}

export interface CachePart {
  /** With `req` and `maxSize`, an entry larger than maxSize comes back truncated by the cache itself. */
  get(q: QueryInfo, res: Uint8Array, nowMs: number, req?: Uint8Array, maxSize?: number): number;
  put(q: QueryInfo, response: Uint8Array, len: number, nowMs: number): void;
  stats(): { hits: { success: number; denial: number }; misses: number; entries: { success: number; denial: number }; evictions?: { success: number; denial: number } };
}

/** loop.ts's LoopDetector: CoreDNS's `loop` for one server block. */
export interface LoopPart {
  readonly probeName: string;
  /** Every query that reaches the plugin; true: the probe came back a third time, a loop. */
  seen(q: { readonly qname: string; readonly qtype: number }): boolean;
  /** CoreDNS's message for the loop (a TapirError, code DNS_LOOP_DETECTED). */
  error(remote: string, local: string): Error & { code: string };
  /** Probes through the server at `target`; resolves how it ended. */
  start(target: { address: string; port: number }): Promise<'answered' | 'loop' | 'deadline' | 'stopped'>;
  stop(): void;
}

export interface DnsParts {
  newQueryInfo(): QueryInfo;
  /** false: not one standard query with one question. */
  readQuery(msg: Uint8Array, len: number, out: QueryInfo): boolean;
  errorResponse(req: Uint8Array, reqLen: number, rcode: number, res: Uint8Array): number;
  shuffleAnswers(msg: Uint8Array, len: number, random?: () => number): void;
  createZone(options: KubernetesZoneOptions): ZonePart;
  createForwarder(options: ForwarderOptions): ForwarderPart;
  createCache(options: CacheOptions): CachePart;
  createLoopDetector(zone: string): LoopPart;
}

/** The real parts. */
export const REAL_PARTS: DnsParts = {
  newQueryInfo,
  readQuery,
  errorResponse,
  shuffleAnswers,
  createZone: (o) => new KubernetesZone(o),
  createForwarder: (o) => new Forwarder(o),
  createCache: (o) => new DnsCache(o),
  createLoopDetector: (z) => new LoopDetector(z),
};

// A listener of the DNS server at run time, and what a query carries through it. One
// listener per (bind address, port) holds the routes of every server block there, most
// specific zone first, its sockets (node's dgram or a batched UDP socket, and TCP), and
// the Client that says where a response goes. The ways in (udp-listeners.ts,
// tcp-connection.ts, local-answerer.ts) fill a Client per query; the query pipeline
// (query-pipeline.ts) routes by the listener's zones and sends through its sockets; the
// server (server.ts) opens and closes them.
//
// The batched socket's buffers are allocated once per listener, in fixed slots: a query
// is read from its slot and answered straight into its send slot, so a batch of 64
// queries costs two syscalls and no allocation.
import type { Server as TcpServer, Socket as TcpSocket } from 'node:net';
import type { Socket } from 'node:dgram';
import { TapirError } from '../errors/tapir-error.ts';
import { matchZone, type ServerBlockConfig } from './corefile-config.ts';
import type { Proto } from './observability.ts';
import type { CachePart, ForwarderPart, LoopPart, ZonePart } from './parts.ts';

export const MAX_MESSAGE = 65535;

/** The server could not bind an address of its Corefile. */
export class DnsListenError extends TapirError {
  readonly code = 'DNS_LISTEN';
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

/** Queries per recvmmsg. */
export const BATCH = 64;
/** A query larger than this is cut by the kernel (MSG_TRUNC) and answered FORMERR. */
export const QUERY_SLOT = 4096;
/** The largest UDP answer a batch slot holds; a client asking for more gets it truncated at this. */
export const ANSWER_SLOT = 16384;

/** The buffers of one batched UDP listener, allocated once. */
export class UdpBatchBuffers {
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
export class Block {
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

export interface Route {
  /** Index into the metrics' route arrays. */
  index: number;
  block: Block;
  /** The block zone this route matches ('' = root). */
  zone: string;
}

export interface Listener {
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
 * localAnswerer, the data path, which sends it itself. One mutable object per listener
 * serves every UDP query (the synchronous path keeps it no longer than the query); a
 * forwarded query takes a copy.
 */
export interface Client {
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

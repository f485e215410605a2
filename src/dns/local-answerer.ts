// The third UDP way into the DNS server: the agent's data path. A pod's datagram to the
// cluster DNS address is answered in place, from the frame's own buffer into the data
// path's (src/datapath's LocalUdpAnswerer and LocalUdpAnswerer6), without a socket or a
// trip through the kernel. Only the synchronous part of the pipeline runs here (the
// kubernetes zone and the cache); whatever would be forwarded is passed on (0), and the
// data path delivers the datagram to the server's socket, where it is read again,
// forwarded and counted.
//
// Each answerer has its one Client (`local`: the pipeline sends nothing itself) and keeps
// the views of the payload offsets it has seen, so the cluster-name path allocates
// nothing after the first queries.
import type { Client, Listener } from './listener.ts';
import { Proto } from './observability.ts';
import type { QueryPipeline } from './query-pipeline.ts';

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

/**
 * The synchronous part of the server for the data path (the agent's pods' datagrams to
 * the cluster DNS address, answered in place): cache and kubernetes zone of the server
 * block that listens on `port` (and `address`, or every address). Whatever would be
 * forwarded is passed on (0), to reach the same server through its socket, where it is
 * counted. null when no server block listens there.
 */
export function newLocalAnswerer(listeners: Listener[], pipeline: QueryPipeline, address: string, port: number): LocalDnsAnswerer | null {
  // An IPv6 address's clients are IPv6: newLocalAnswerer6.
  if (address.includes(':')) return null;
  const l = listeners.find((x) => x.port === port && (x.host === address || x.host === '0.0.0.0'));
  if (l === undefined) return null;
  const client: Client = { listener: l, proto: Proto.UDP, family: 1, address: '', ip: 0, ip6: null, port: 0, socket: null, local: true, start: 0, batched: false };
  const view = localView();
  return {
    answer: (b: Buffer, off: number, len: number, out: Buffer, src: number): number => {
      client.ip = src;
      return pipeline.query(client, view(b, off), len, out);
    },
  };
}

/** newLocalAnswerer for an IPv6 address the server listens on (an IPv6 cluster DNS address): pods' IPv6 queries answered in the data path. */
export function newLocalAnswerer6(listeners: Listener[], pipeline: QueryPipeline, address: string, port: number): LocalDnsAnswerer6 | null {
  const l = listeners.find((x) => x.port === port && (x.host === address || x.host === '::'));
  if (l === undefined) return null;
  const ip6 = new Uint8Array(16);
  const client: Client = { listener: l, proto: Proto.UDP, family: 2, address: '', ip: 0, ip6, port: 0, socket: null, local: true, start: 0, batched: false };
  const view = localView();
  return {
    answer: (b: Buffer, off: number, len: number, out: Buffer, srcOffset: number): number => {
      for (let i = 0; i < 16; i++) ip6[i] = b[srcOffset + i]!;
      return pipeline.query(client, view(b, off), len, out);
    },
  };
}

/**
 * One view per payload offset: the data path's arena has a few dozen slots, so after
 * the first queries no view is created (readQuery and the zone take a message from 0).
 */
function localView(): (b: Buffer, off: number) => Uint8Array {
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

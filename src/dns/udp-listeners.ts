// The two UDP ways into the DNS server from the network, one per listener, chosen once
// when it opens (STYLE.md rule 8):
//
// - a batched socket (recvmmsg/sendmmsg through the native addon, DnsServerOptions's
//   `openBatchUdp`, IPv4 only): up to 64 queries per receive, each answered straight into
//   its send slot of listener.ts's UdpBatchBuffers, and every answer given synchronously
//   out in the one sendmmsg of its batch. dgram costs a syscall, a lookup tick and several
//   objects per datagram; a batch is two syscalls for up to 64.
// - node's dgram otherwise: the reply is copied out of the shared buffer first (the
//   pipeline's #send: dgram keeps a reference to what it is given while the send is
//   queued, and the next query would overwrite it).
//
// Both hand each query to the query pipeline with the listener's one reused Client, so
// the cluster-name path allocates nothing here either. The third UDP way in, the agent's
// data path, is local-answerer.ts.
import { createSocket, type RemoteInfo } from 'node:dgram';
import { ANSWER_SLOT, BATCH, DnsListenError, QUERY_SLOT, UdpBatchBuffers, type BatchUdpSocket, type Listener } from './listener.ts';
import type { QueryPipeline } from './query-pipeline.ts';

/** Receive batches per readable wakeup (then the loop turns). */
const BATCHES_PER_WAKEUP = 4;

/** What the UDP listeners need of the server's options (DnsServerOptions, structurally). */
export interface UdpListenerOptions {
  log(message: string): void;
  openBatchUdp?(address: string, port: number): BatchUdpSocket;
}

/** Binds `l` with node's dgram; returns the port it got. */
export async function listenDgram(l: Listener, pipeline: QueryPipeline, options: UdpListenerOptions): Promise<number> {
  // The address is always a literal: answer the lookup at once (dgram's own takes a tick and a regex per send).
  const lookup = (address: string, _family: unknown, cb: (err: null, address: string, family: number) => void): void => cb(null, address, address.includes(':') ? 6 : 4);
  const udp = createSocket({ type: l.host.includes(':') ? 'udp6' : 'udp4', reuseAddr: false, lookup: lookup as never });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind({ address: l.host, port: l.port, exclusive: true }, () => { udp.off('error', reject); resolve(); });
  }).catch((err: Error) => { udp.close(); throw new DnsListenError(`cannot listen on ${l.host}:${l.port}/udp: ${err.message}`, { cause: err }); });
  l.udp = udp;
  const port = udp.address().port;
  udp.on('message', (msg, rinfo) => udpQuery(pipeline, l, msg, rinfo));
  udp.on('error', (err) => options.log(`udp ${l.host}:${port}: ${err.message}`));
  return port;
}

/** Opens `l`'s batched socket through `options.openBatchUdp`; returns its port. */
export function listenBatch(l: Listener, pipeline: QueryPipeline, options: UdpListenerOptions): number {
  let socket: BatchUdpSocket;
  try {
    socket = options.openBatchUdp!(l.host, l.port);
  } catch (err) {
    throw new DnsListenError(`cannot listen on ${l.host}:${l.port}/udp: ${(err as Error).message}`, { cause: err });
  }
  l.batch = socket;
  l.batchBuffers = new UdpBatchBuffers();
  l.udpClient.batched = true;
  socket.onReadable(() => readBatch(pipeline, l));
  return socket.localPort;
}

/**
 * Up to BATCHES_PER_WAKEUP batches: every query answered synchronously goes out in the
 * one sendmmsg of its batch, from the answer slot it was written into.
 */
function readBatch(pipeline: QueryPipeline, l: Listener): void {
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
      const answer = pipeline.query(client, b.queryViews[i]!, len, b.answerViews[i]!);
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

function udpQuery(pipeline: QueryPipeline, l: Listener, msg: Buffer, rinfo: RemoteInfo): void {
  const client = l.udpClient;
  client.family = rinfo.family === 'IPv6' ? 2 : 1;
  client.address = rinfo.address;
  client.port = rinfo.port;
  pipeline.query(client, msg, msg.length, pipeline.res);
}

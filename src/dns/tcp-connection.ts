// DNS over TCP: several queries per connection with the 2-byte length framing of RFC
// 1035 4.2.2 / RFC 7766, answered as they complete, and an idle connection closed after
// 10 s (CoreDNS's idle timeout). Clients come here mostly after a truncated UDP answer,
// so this path allocates where it is simpler: each query gets its own copy (a forwarded
// one outlives the chunk it came in), and the pipeline's #send writes each response with
// its length prefix into a buffer of its own.
import type { Socket as TcpSocket } from 'node:net';
import type { Client, Listener } from './listener.ts';
import { Proto } from './observability.ts';
import type { QueryPipeline } from './query-pipeline.ts';

/** CoreDNS's `timeouts` default for an idle TCP connection. */
const TCP_IDLE_MS = 10_000;

/** A connection accepted on `l`'s TCP listener: its queries through the pipeline until it closes or idles out. */
export function tcpConnection(pipeline: QueryPipeline, l: Listener, socket: TcpSocket): void {
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
      pipeline.query(client, msg, len, pipeline.res);
    }
  });
}

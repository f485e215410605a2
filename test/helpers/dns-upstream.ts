// Test upstreams for the forwarder and the cache: small DNS servers built on dns-packet,
// UDP and TCP on the same port of 127.0.0.1 (port 0: the kernel picks it; nothing leaves
// the host), whose behaviour a test sets per query. Plus `MiniDnsServer`, the shortest
// server that wires readQuery, the loop detector, the cache and the forwarder together,
// so that real clients (dig) and the loop probe have something to talk to.
// Queries are read with src/dns/message.ts's readQuery, as the server reads them.
import * as dnsPacket from 'dns-packet';
import { createSocket, type RemoteInfo, type Socket as DgramSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { DnsCache } from '../../src/dns/cache.ts';
import type { Forwarder } from '../../src/dns/forward.ts';
import type { LoopDetector } from '../../src/dns/loop.ts';
import { newQueryInfo, readQuery, type QueryInfo } from '../../src/dns/message.ts';

export { newQueryInfo, readQuery, type QueryInfo };

/** A query as a client sends it (RD set), and its QueryInfo. */
export function makeQuery(name: string, type: dnsPacket.RecordType = 'A', opts: { id?: number; edns?: boolean; dnssecOk?: boolean } = {}): { msg: Buffer; q: QueryInfo } {
  const packet: dnsPacket.Packet = {
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: 'IN' }],
  };
  if (opts.edns || opts.dnssecOk) {
    packet.additionals = [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as dnsPacket.Answer];
  }
  const msg = dnsPacket.encode(packet);
  const q = newQueryInfo();
  if (!readQuery(msg, msg.length, q)) throw new Error(`makeQuery: readQuery refused ${name}`);
  return { msg, q };
}

/** dns-packet's decoded form with the fields the tests read, typed loosely. */
export interface DecodedRecord {
  type: string;
  name: string;
  ttl?: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data?: any;
}
export interface Decoded {
  id: number;
  rcode: string;
  flag_rd: boolean;
  flag_tc: boolean;
  questions: { name: string; type: string }[];
  answers: DecodedRecord[];
  authorities: DecodedRecord[];
  additionals: DecodedRecord[];
}

export function decode(bytes: Uint8Array): Decoded {
  return dnsPacket.decode(Buffer.from(bytes)) as unknown as Decoded;
}

/** A response echoing the query's id and question. */
export function responseTo(query: dnsPacket.DecodedPacket, fields: { rcode?: number; flags?: number; answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[]; additionals?: dnsPacket.Answer[] } = {}): dnsPacket.Packet {
  return {
    type: 'response',
    id: query.id,
    flags: (fields.flags ?? dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE) | (fields.rcode ?? 0),
    questions: query.questions ?? [],
    answers: fields.answers ?? [],
    authorities: fields.authorities ?? [],
    additionals: fields.additionals ?? [],
  };
}

export interface UpstreamContext {
  transport: 'udp' | 'tcp';
  /** The client's address (UDP) or its connection's remote end (TCP). */
  remote: { address: string; port: number };
  /** Sends raw bytes back to the client on the same socket / connection. */
  send(bytes: Uint8Array): void;
  /** TCP: which accepted connection (1, 2, ...) carried the query; 0 for UDP. */
  connection: number;
  /** TCP: closes the connection (an idle timeout on the server's side); nothing for UDP. */
  close(): void;
}

/** A reply, raw bytes, 'drop' (never answer), or a promise of one of those. */
export type UpstreamReply = dnsPacket.Packet | Uint8Array | 'drop';
export type UpstreamHandler = (query: dnsPacket.DecodedPacket, ctx: UpstreamContext) => UpstreamReply | Promise<UpstreamReply>;

export interface SeenQuery {
  id: number;
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

export class FakeUpstream {
  readonly address: string;
  readonly port: number;
  handler: UpstreamHandler;
  readonly seen: SeenQuery[] = [];
  tcpConnections = 0;
  /** TCP connections open now (the forwarder's pooled ones included). */
  get openConnections(): number {
    return this.#sockets.size;
  }
  readonly #udp: DgramSocket;
  readonly #tcp: Server;
  readonly #sockets = new Set<Socket>();

  private constructor(address: string, udp: DgramSocket, tcp: Server, handler: UpstreamHandler) {
    this.address = address;
    this.#udp = udp;
    this.#tcp = tcp;
    this.handler = handler;
    this.port = udp.address().port;
    udp.on('message', (msg, rinfo) => this.#onUdp(msg, rinfo));
    tcp.on('connection', (socket) => this.#onTcp(socket));
  }

  /** UDP and TCP on one kernel-chosen port of the loopback (127.0.0.1, or ::1). */
  static async start(handler: UpstreamHandler, address = '127.0.0.1'): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 20; attempt++) {
      const udp = createSocket(address.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind(0, address, () => resolve());
      });
      const tcp = createServer();
      const ok = await new Promise<boolean>((resolve) => {
        tcp.once('error', () => resolve(false));
        tcp.listen(udp.address().port, address, () => resolve(true));
      });
      if (ok) return new FakeUpstream(address, udp, tcp, handler);
      udp.close();
    }
    throw new Error('FakeUpstream: no port free for both UDP and TCP');
  }

  /** The upstream as the forwarder's options name it. */
  get upstream(): { address: string; port: number } {
    return { address: this.address, port: this.port };
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#tcp.close(() => resolve()));
    await new Promise<void>((resolve) => this.#udp.close(() => resolve()));
  }

  async #answer(msg: Buffer, ctx: UpstreamContext): Promise<void> {
    let query: dnsPacket.DecodedPacket;
    try {
      query = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = query.questions?.[0];
    this.seen.push({ id: query.id ?? 0, name: question?.name ?? '', type: question?.type ?? '', transport: ctx.transport });
    const reply = await this.handler(query, ctx);
    if (reply === 'drop') return;
    ctx.send(reply instanceof Uint8Array ? reply : dnsPacket.encode(reply));
  }

  #onUdp(msg: Buffer, rinfo: RemoteInfo): void {
    const send = (bytes: Uint8Array): void => {
      this.#udp.send(bytes, rinfo.port, rinfo.address);
    };
    void this.#answer(msg, { transport: 'udp', remote: { address: rinfo.address, port: rinfo.port }, send, connection: 0, close: () => undefined });
  }

  #onTcp(socket: Socket): void {
    const connection = ++this.tcpConnections;
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    const send = (bytes: Uint8Array): void => {
      const frame = Buffer.allocUnsafe(2 + bytes.length);
      frame.writeUInt16BE(bytes.length, 0);
      frame.set(bytes, 2);
      if (!socket.destroyed) socket.write(frame);
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void this.#answer(Buffer.from(msg), {
          transport: 'tcp', remote: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, send, connection, close: () => socket.destroy(),
        });
      }
    });
  }
}

/** A UDP port that is bound but never answers: a blackholed upstream. */
export async function silentUpstream(): Promise<{ upstream: { address: string; port: number }; received: () => number; close: () => Promise<void> }> {
  const udp = createSocket('udp4');
  let count = 0;
  udp.on('message', () => count++);
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
  return {
    upstream: { address: '127.0.0.1', port: udp.address().port },
    received: () => count,
    close: () => new Promise<void>((resolve) => udp.close(() => resolve())),
  };
}

/**
 * The shortest server over the pieces of this slice (the real one is src/dns/server.ts):
 * UDP on 127.0.0.1, readQuery, the loop hook, the cache, the forwarder, SERVFAIL or
 * REFUSED when the forwarder rejects.
 */
export class MiniDnsServer {
  readonly #udp: DgramSocket;
  readonly #forwarder: Forwarder;
  readonly #cache: DnsCache | undefined;
  readonly #loop: LoopDetector | undefined;
  readonly #q = newQueryInfo();
  readonly #res = new Uint8Array(65535);
  loopErrors: Error[] = [];
  answered = 0;

  private constructor(udp: DgramSocket, forwarder: Forwarder, cache?: DnsCache, loop?: LoopDetector) {
    this.#udp = udp;
    this.#forwarder = forwarder;
    this.#cache = cache;
    this.#loop = loop;
    udp.on('message', (msg, rinfo) => void this.#serve(msg, rinfo));
  }

  /** `forwarder` may be made once the port is known (a server forwarding to itself). */
  static async start(forwarder: Forwarder | ((self: { address: string; port: number }) => Forwarder), cache?: DnsCache, loop?: LoopDetector): Promise<MiniDnsServer> {
    const udp = createSocket('udp4');
    await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', () => resolve()));
    const f = typeof forwarder === 'function' ? forwarder({ address: '127.0.0.1', port: udp.address().port }) : forwarder;
    return new MiniDnsServer(udp, f, cache, loop);
  }

  get port(): number {
    return this.#udp.address().port;
  }

  async #serve(msg: Buffer, rinfo: RemoteInfo): Promise<void> {
    const q = this.#q;
    if (!readQuery(msg, msg.length, q)) return;
    if (this.#loop?.seen(q)) {
      this.loopErrors.push(this.#loop.error(`${rinfo.address}:${rinfo.port}`, `127.0.0.1:${this.port}`));
      this.#reply(rcodeOnly(msg, 2), rinfo);
      return;
    }
    const maxSize = q.edns ? q.ednsUdpSize : 512;
    if (this.#cache) {
      const n = this.#cache.get(q, this.#res, Date.now(), msg, maxSize);
      if (n > 0) {
        this.#reply(this.#res.subarray(0, n), rinfo);
        return;
      }
    }
    // The await below lets other queries reuse #q: keep what this one needs.
    const query = { ...q };
    try {
      const res = await this.#forwarder.query(msg, msg.length, query, 'udp');
      this.#cache?.put(query, res, res.length, Date.now());
      this.#reply(res, rinfo);
    } catch (err) {
      this.#reply(rcodeOnly(msg, (err as { code?: string }).code === 'DNS_TOO_MANY_QUERIES' ? 5 : 2), rinfo);
    }
  }

  #reply(bytes: Uint8Array, rinfo: RemoteInfo): void {
    this.answered++;
    this.#udp.send(bytes, rinfo.port, rinfo.address);
  }

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.#udp.close(() => resolve()));
  }
}

/** The query's header and question with QR and an rcode (no OPT, no records). */
function rcodeOnly(req: Buffer, rcode: number): Buffer {
  const q = newQueryInfo();
  const end = readQuery(req, req.length, q) ? q.questionEnd : 12;
  const res = Buffer.from(req.subarray(0, end));
  res[2] = 0x80 | (req[2]! & 0x79);
  res[3] = 0x80 | rcode;
  res.writeUInt16BE(end > 12 ? 1 : 0, 4);
  res.writeUInt32BE(0, 6);
  res.writeUInt16BE(0, 10);
  return res;
}

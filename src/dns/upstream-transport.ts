// The wire side of the forwarder: one attempt of one query to one upstream, over UDP or
// TCP, with the spoofing defences (RFC 5452) and the connection handling of CoreDNS's
// plugin/pkg/proxy. forward.ts decides which upstream and when; this file moves bytes.
//
// UDP: UDP_SOCKETS sockets per address family, bound by the kernel to random ports, one
// picked at random per attempt and replaced after `expire` (a replaced one closes when
// its last pending answer is in or timed out). Every attempt carries a fresh id from the
// kernel's CSPRNG; an answer is taken only from the upstream's address and port, with QR
// set, the pending id and the query's question (name compared ignoring case, RFC 4343),
// else dropped and counted while the attempt keeps waiting.
//
// TCP (RFC 1035 section 4.2.2, two-byte length prefix): one query at a time per
// connection, as CoreDNS's persistConn; after its answer the connection goes back to
// the upstream's idle pool (at most MAX_IDLE_TCP), where it is closed after `expire`
// idle. A pooled connection that the upstream closed meanwhile is replaced once, without
// counting as a failure (CoreDNS's ErrCachedClosed). A timed-out attempt closes its
// connection: a late answer must not meet the next query.
import { randomFillSync } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as DgramSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';

const UDP_SOCKETS = 4;
const MAX_IDLE_TCP = 16;
const HEADER_SIZE = 12;

/** One upstream as the transport reaches it. */
export class Endpoint {
  /** As the kernel reports a sender (IPv6 compressed, lower-case): compared with each answer's source. */
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
  /** `address:port`, `[address]:port` for IPv6. */
  readonly label: string;
  readonly idleTcp: TcpConn[] = [];

  constructor(address: string, port: number, family: 4 | 6) {
    this.address = family === 6 ? canonicalIpv6(address) : address;
    this.port = port;
    this.family = family;
    this.label = family === 6 ? `[${this.address}]:${port}` : `${this.address}:${port}`;
  }
}

/** Why one attempt failed (a timeout, a socket error, a closed connection); the forwarder words the final error. */
export class AttemptError extends Error {}

/** A reused connection closed under us before it answered: try a fresh one. */
class CachedClosedError extends AttemptError {}

interface Pending {
  readonly upstream: Endpoint;
  /** The request as sent, id included: the answer's question is compared against it. */
  readonly request: Uint8Array;
  readonly questionEnd: number;
  readonly resolve: (res: Uint8Array) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

class UdpPort {
  readonly socket: DgramSocket;
  readonly pending = new Map<number, Pending>();
  readonly createdMs: number;
  retired = false;

  constructor(socket: DgramSocket, createdMs: number) {
    this.socket = socket;
    this.createdMs = createdMs;
  }
}

class TcpConn {
  readonly socket: Socket;
  readonly upstream: Endpoint;
  /** Bytes of a frame not complete yet. */
  buffered: Buffer | undefined = undefined;
  pending: Pending | undefined = undefined;
  /** Taken from the idle pool: a close before any answer is the upstream's idle close, not a failure. */
  reused = false;
  answeredSinceTaken = false;
  closed = false;

  constructor(socket: Socket, upstream: Endpoint) {
    this.socket = socket;
    this.upstream = upstream;
  }
}

export class UpstreamTransport {
  readonly #expireMs: number;
  readonly #udp4: (UdpPort | undefined)[] = new Array<UdpPort | undefined>(UDP_SOCKETS).fill(undefined);
  readonly #udp6: (UdpPort | undefined)[] = new Array<UdpPort | undefined>(UDP_SOCKETS).fill(undefined);
  readonly #retired = new Set<UdpPort>();
  readonly #activeTcp = new Set<TcpConn>();
  readonly #endpoints = new Set<Endpoint>();
  #closed = false;
  /** Responses dropped: no attempt waits for their id (late, or a guess). */
  unmatched = 0;
  /** Responses dropped: right id, but from another address or port, or for another question. */
  mismatched = 0;

  constructor(expireMs: number) {
    this.#expireMs = expireMs;
  }

  /** Fails every attempt in flight with `err` and closes every socket. */
  close(err: Error): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ep of this.#endpoints) {
      for (const conn of ep.idleTcp) conn.socket.destroy();
      ep.idleTcp.length = 0;
    }
    for (const conn of this.#activeTcp) this.#failTcp(conn, err, false);
    for (const port of [...this.#udp4, ...this.#udp6, ...this.#retired]) {
      if (port === undefined) continue;
      for (const p of port.pending.values()) {
        clearTimeout(p.timer);
        p.reject(err);
      }
      port.pending.clear();
      try {
        port.socket.close();
      } catch {
        // an 'error' already closed it
      }
    }
    this.#udp4.fill(undefined);
    this.#udp6.fill(undefined);
    this.#retired.clear();
  }

  // ---- UDP ----

  /** One attempt over UDP; rejects with AttemptError (timeout, send error). */
  udp(u: Endpoint, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new AttemptError('the transport is closed'));
    const port = this.#udpPort(u.family);
    const id = freeId(port.pending);
    request[0] = id >>> 8;
    request[1] = id & 0xff;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const p: Pending = { upstream: u, request, questionEnd, resolve, reject, timer: undefined };
    p.timer = setTimeout(() => {
      if (port.pending.get(id) !== p) return;
      port.pending.delete(id);
      this.#maybeCloseRetired(port);
      reject(new AttemptError(`${u.label} did not answer within ${timeoutMs} ms (udp)`));
    }, timeoutMs);
    port.pending.set(id, p);
    port.socket.send(request, u.port, u.address, (err) => {
      if (err === null || err === undefined || port.pending.get(id) !== p) return;
      clearTimeout(p.timer);
      port.pending.delete(id);
      this.#maybeCloseRetired(port);
      reject(new AttemptError(`sending to ${u.label} failed: ${err.message}`));
    });
    return promise;
  }

  /** One of the pool's sockets at random, replaced when older than `expire`. */
  #udpPort(family: 4 | 6): UdpPort {
    const pool = family === 6 ? this.#udp6 : this.#udp4;
    const slot = randomId() % UDP_SOCKETS;
    const now = Date.now();
    const current = pool[slot];
    if (current !== undefined && !current.retired && now - current.createdMs < this.#expireMs) return current;
    if (current !== undefined) this.#retire(current);
    const socket = createSocket({ type: family === 6 ? 'udp6' : 'udp4' });
    const port = new UdpPort(socket, now);
    socket.on('message', (msg, rinfo) => this.#onUdpMessage(port, msg, rinfo));
    // A socket error (rare for an unconnected socket) retires it; sends report their own errors.
    socket.on('error', () => this.#retire(port));
    pool[slot] = port;
    return port;
  }

  #retire(port: UdpPort): void {
    if (port.retired) return;
    port.retired = true;
    for (const pool of [this.#udp4, this.#udp6]) {
      const i = pool.indexOf(port);
      if (i >= 0) pool[i] = undefined;
    }
    this.#retired.add(port);
    this.#maybeCloseRetired(port);
  }

  #maybeCloseRetired(port: UdpPort): void {
    if (!port.retired || port.pending.size > 0) return;
    this.#retired.delete(port);
    try {
      port.socket.close();
    } catch {
      // already closed
    }
  }

  #onUdpMessage(port: UdpPort, msg: Buffer, rinfo: RemoteInfo): void {
    if (msg.length < HEADER_SIZE) {
      this.unmatched++;
      return;
    }
    const p = port.pending.get(msg.readUInt16BE(0));
    if (p === undefined) {
      this.unmatched++;
      return;
    }
    if (rinfo.port !== p.upstream.port || rinfo.address !== p.upstream.address || !answers(msg, p.request, p.questionEnd)) {
      this.mismatched++;
      return;
    }
    clearTimeout(p.timer);
    port.pending.delete(msg.readUInt16BE(0));
    this.#maybeCloseRetired(port);
    p.resolve(msg);
  }

  // ---- TCP ----

  /** One attempt over TCP, on a pooled connection when there is one; rejects with AttemptError. */
  async tcp(u: Endpoint, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    if (this.#closed) throw new AttemptError('the transport is closed');
    const idle = this.#takeIdle(u);
    if (idle !== undefined) {
      try {
        return await this.#roundTrip(idle, request, questionEnd, timeoutMs);
      } catch (err) {
        if (!(err instanceof CachedClosedError)) throw err;
      }
    }
    return this.#roundTrip(this.#dial(u), request, questionEnd, timeoutMs);
  }

  #takeIdle(u: Endpoint): TcpConn | undefined {
    for (;;) {
      const conn = u.idleTcp.pop();
      if (conn === undefined) return undefined;
      if (conn.closed) continue;
      conn.socket.setTimeout(0);
      conn.reused = true;
      conn.answeredSinceTaken = false;
      this.#activeTcp.add(conn);
      return conn;
    }
  }

  #dial(u: Endpoint): TcpConn {
    this.#endpoints.add(u);
    const socket = connect({ host: u.address, port: u.port, noDelay: true });
    const conn = new TcpConn(socket, u);
    this.#activeTcp.add(conn);
    socket.on('data', (chunk: Buffer) => this.#onTcpData(conn, chunk));
    socket.on('error', (err) => this.#failTcp(conn, new AttemptError(`tcp to ${u.label}: ${err.message}`), true));
    socket.on('close', () => this.#failTcp(conn, new AttemptError(`tcp to ${u.label}: closed before the answer`), true));
    // Only armed while idle (see #park): CoreDNS closes a connection unused for `expire`.
    socket.on('timeout', () => socket.destroy());
    return conn;
  }

  #roundTrip(conn: TcpConn, request: Uint8Array, questionEnd: number, timeoutMs: number): Promise<Uint8Array> {
    const u = conn.upstream;
    const id = randomId();
    request[0] = id >>> 8;
    request[1] = id & 0xff;
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    const p: Pending = { upstream: u, request, questionEnd, resolve, reject, timer: undefined };
    p.timer = setTimeout(() => {
      if (conn.pending !== p) return;
      // A late answer would arrive on this connection: it cannot carry another query.
      this.#failTcp(conn, new AttemptError(`${u.label} did not answer within ${timeoutMs} ms (tcp)`), false);
    }, timeoutMs);
    conn.pending = p;
    // RFC 1035 section 4.2.2: a two-byte length before the message.
    const frame = Buffer.allocUnsafe(2 + request.length);
    frame.writeUInt16BE(request.length, 0);
    frame.set(request, 2);
    conn.socket.write(frame);
    return promise;
  }

  #onTcpData(conn: TcpConn, chunk: Buffer): void {
    let buf = conn.buffered === undefined ? chunk : Buffer.concat([conn.buffered, chunk]);
    while (buf.length >= 2) {
      const frameLen = buf.readUInt16BE(0);
      if (buf.length < 2 + frameLen) break;
      const msg = buf.subarray(2, 2 + frameLen);
      buf = buf.subarray(2 + frameLen);
      const p = conn.pending;
      if (p === undefined) {
        // Nothing asked on this connection: it is out of step with us, do not reuse it.
        this.unmatched++;
        conn.socket.destroy();
        return;
      }
      if (msg.length < HEADER_SIZE || msg.readUInt16BE(0) !== readU16(p.request, 0) || !answers(msg, p.request, p.questionEnd)) {
        // CoreDNS drops out-of-order responses and keeps reading.
        this.mismatched++;
        continue;
      }
      clearTimeout(p.timer);
      conn.pending = undefined;
      conn.answeredSinceTaken = true;
      this.#park(conn);
      p.resolve(Buffer.from(msg)); // a copy: `buf` may hold the start of the next frame
    }
    conn.buffered = buf.length > 0 ? buf : undefined;
  }

  #park(conn: TcpConn): void {
    this.#activeTcp.delete(conn);
    const idle = conn.upstream.idleTcp;
    if (this.#closed || conn.closed || idle.length >= MAX_IDLE_TCP) {
      conn.socket.destroy();
      return;
    }
    conn.socket.setTimeout(this.#expireMs);
    idle.push(conn);
  }

  /** `byPeer`: the connection broke (error, close), as opposed to our timeout or close(). */
  #failTcp(conn: TcpConn, err: Error, byPeer: boolean): void {
    const wasClosed = conn.closed;
    conn.closed = true;
    this.#activeTcp.delete(conn);
    const idle = conn.upstream.idleTcp;
    const i = idle.indexOf(conn);
    if (i >= 0) idle.splice(i, 1);
    const p = conn.pending;
    conn.pending = undefined;
    if (!wasClosed) conn.socket.destroy();
    if (p === undefined) return;
    clearTimeout(p.timer);
    p.reject(byPeer && conn.reused && !conn.answeredSinceTaken ? new CachedClosedError(err.message) : err);
  }
}

/**
 * True when `res` answers `req`: QR set, the same opcode, and the same question (bytes
 * of the question section equal with ASCII case folded, RFC 4343). A response with no
 * question is taken only with an error rcode: servers answer FORMERR or NOTIMP without
 * echoing a question they could not read.
 */
function answers(res: Uint8Array, req: Uint8Array, questionEnd: number): boolean {
  if (res.length < HEADER_SIZE || (res[2]! & 0x80) === 0 || (res[2]! & 0x78) !== (req[2]! & 0x78)) return false;
  const qdcount = readU16(res, 4);
  if (qdcount === 0) return (res[3]! & 0x0f) !== 0;
  if (qdcount !== 1 || res.length < questionEnd) return false;
  for (let i = HEADER_SIZE; i < questionEnd; i++) {
    let a = res[i]!;
    let b = req[i]!;
    if (a >= 0x41 && a <= 0x5a) a |= 0x20;
    if (b >= 0x41 && b <= 0x5a) b |= 0x20;
    if (a !== b) return false;
  }
  return true;
}

function readU16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

/** Random ids from the kernel's CSPRNG, drawn in blocks (RFC 5452 section 9.2: unpredictable ids). */
const idBlock = new Uint16Array(1024);
let idNext = idBlock.length;

function randomId(): number {
  if (idNext === idBlock.length) {
    randomFillSync(idBlock);
    idNext = 0;
  }
  return idBlock[idNext++]!;
}

/** A random id no attempt on this socket is waiting for (pending stays below half the id space). */
function freeId(pending: Map<number, Pending>): number {
  for (;;) {
    const id = randomId();
    if (!pending.has(id)) return id;
  }
}

/** The form the kernel reports a sender in (rinfo.address): compressed, lower-case. */
function canonicalIpv6(address: string): string {
  const percent = address.indexOf('%');
  const bare = percent < 0 ? address : address.slice(0, percent);
  const canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  return percent < 0 ? canonical : canonical + address.slice(percent);
}


// The HTTP/1.1 engine's plain sockets on the addon (native/src/h1-io.cc): the proxy's
// HTTP listener, its clients and its plain-HTTP endpoints, read, parsed by node's own
// llhttp and written in C. node:net costs a JavaScript callback per read, three or
// four more per message from the parser, and the Writable machinery per write; here
// every socket that was ready is read in one call, and JavaScript gets one array of
// events for all of them (`poll`), dispatched to the connection each belongs to.
// Writes wait for the end of that dispatch (or, made outside it, for the end of the
// loop turn, after the connections' own turn-end writes: turn-writes.ts) and leave
// together (`flush`).
//
// The connections themselves (h1-server.ts, h1-pool.ts) are the same as on node:net:
// only their wire differs (h1-wire.ts). TLS stays node's: HTTPS
// clients and HTTPS endpoints are node sockets. An Upgrade request's socket is handed
// to node (`detach`, then a net.Socket on the same fd) for the tunnel (upgrade.ts).
import { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { nativeAddon } from '../device/native.ts';
import type { ClientEvents, ClientWire, UpstreamEvents, UpstreamWire } from './h1-wire.ts';
import { listenAddresses, type Listening } from './listen.ts';
import { methodName } from './llhttp.ts';
import { writeAfterTurnWrites, type TurnWriter } from './turn-writes.ts';

/** native/src/h1-io.cc's H1Io. */
interface H1Io {
  onReadable(fn: () => void): void;
  poll(sink: (...events: unknown[]) => void): void;
  flush(sink: (...events: unknown[]) => void): void;
  listen(address: string, port: number, v6only: boolean): [number, number];
  connect(ip: string, port: number): number;
  write(id: number, text: string | null, body: Uint8Array | null, text2: string | null): boolean;
  end(id: number): void;
  destroy(id: number): void;
  reading(id: number, on: boolean): void;
  skipBody(id: number): void;
  detach(id: number): [number, Buffer | null] | null;
  close(): void;
}
type H1IoClass = new () => H1Io;

/** What a socket's events go to: a client connection's wire or an upstream connection's. */
export interface NativeSocketEvents {
  requestHead(method: number, url: string, minor: number, lines: string[], flags: number): void;
  responseHead(status: number, reason: string, lines: string[], keepAlive: boolean): void;
  /** A body piece: a Buffer, or for an endpoint's response a latin1 string when small. */
  body(chunk: Buffer | string): void;
  messageEnd(trailers: string[] | null): void;
  connected(): void;
  drained(): void;
  parseError(code: string, reason: string): void;
  /** The socket is gone: 0 when the peer closed it, else the errno (a failed connect too). */
  closed(errno: number): void;
  /** An Upgrade or CONNECT request's head was the last parsed: what followed it. */
  upgrade(rest: Buffer): void;
  /** The end of a read that parsed response bytes. */
  readEnd(): void;
}

/** Request head flags (h1-io.cc). */
export const KEEP_ALIVE = 1;
export const UPGRADE = 2;

let ioClass: H1IoClass | null | undefined;

/** The addon's H1Io, or null: an addon built without it, or a node whose llhttp it could not bind (h1-io.cc checks at load). */
function h1IoClass(): H1IoClass | null {
  if (ioClass !== undefined) return ioClass;
  try {
    ioClass = (nativeAddon() as unknown as { H1Io?: H1IoClass }).H1Io ?? null;
  } catch {
    ioClass = null;
  }
  return ioClass;
}

/** Whether plain HTTP/1.1 can run on the addon here. */
export function nativeH1Available(): boolean {
  return h1IoClass() !== null;
}

/** An errno as node names it in `code` ('ECONNREFUSED'). */
export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-errno);
  } catch {
    return `E${errno}`;
  }
}

/** The addon's sockets of one proxy, and the dispatch of their events. */
export class NativeH1 implements TurnWriter {
  readonly #io: H1Io;
  readonly #sockets = new Map<number, NativeSocketEvents>();
  readonly #listeners = new Map<number, (id: number, address: string) => NativeSocketEvents>();
  /** In a dispatch: writes wait for its end. */
  #dispatching = false;
  #turnQueued = false;
  #closed = false;
  /** flush() brought events. */
  #flushed = false;

  constructor() {
    const C = h1IoClass();
    if (C === null) throw new Error('the addon has no HTTP/1.1 sockets (H1Io)');
    this.#io = new C();
    this.#io.onReadable(() => this.#onReadable());
  }

  /**
   * Listens as listen.ts's listenOn does (no address: both families, IPv4 alone where
   * the kernel has no IPv6); each client connection's events go to what `accept` makes.
   */
  listen(port: number, address: string | undefined, accept: (id: number, address: string) => NativeSocketEvents): Listening & { id: number } {
    let last: unknown;
    for (const [host, bothFamilies] of listenAddresses(address)) {
      try {
        // ipv6Only false, as listenOn's: '::' takes IPv4 clients too.
        const [id, bound] = this.#io.listen(host, port, false);
        this.#listeners.set(id, accept);
        return { id, port: bound, address: host.includes(':') ? `[${host}]` : host, bothFamilies };
      } catch (err) {
        last = err;
        if ((err as { code?: string }).code !== 'EAFNOSUPPORT') break;
      }
    }
    throw last;
  }

  /** Stops listening (connections already accepted go on). */
  unlisten(id: number): void {
    if (this.#listeners.delete(id)) this.#io.destroy(id);
  }

  /** Connects to an endpoint; its events go to `events` (closed(errno) for a failure). */
  connect(ip: string, port: number, events: NativeSocketEvents): number {
    const id = this.#io.connect(ip, port);
    if (id < 0) {
      queueMicrotask(() => events.closed(-id));
      return 0;
    }
    this.#sockets.set(id, events);
    return id;
  }

  /** Queues output; false when over the high-water mark is queued (drained() follows). */
  write(id: number, text: string | null, body: Uint8Array | null = null, text2: string | null = null): boolean {
    const ok = this.#io.write(id, text, body, text2);
    this.#queueTurn();
    return ok;
  }

  /** Shuts the writing side once the output queued has left. */
  end(id: number): void {
    this.#io.end(id);
    this.#queueTurn();
  }

  /** Closes the socket now; no event follows. */
  destroy(id: number): void {
    if (this.#sockets.delete(id)) this.#io.destroy(id);
  }

  reading(id: number, on: boolean): void {
    this.#io.reading(id, on);
  }

  /** The response to the request just written has no body (a HEAD). */
  skipBody(id: number): void {
    this.#io.skipBody(id);
  }

  /** The socket as a node Socket, from here on node's (an upgrade), its unsent output written first. */
  detach(id: number): Socket {
    this.#sockets.delete(id);
    const d = this.#io.detach(id);
    if (d === null) throw new Error(`no socket ${id}`);
    const socket = new Socket({ fd: d[0], readable: true, writable: true });
    if (d[1] !== null) socket.write(d[1]);
    return socket;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#sockets.clear();
    this.#listeners.clear();
    this.#io.close();
  }

  #queueTurn(): void {
    if (this.#dispatching || this.#turnQueued) return;
    this.#turnQueued = true;
    writeAfterTurnWrites(this);
  }

  writeTurn(): void {
    this.#turnQueued = false;
    this.#flush();
  }

  #onReadable(): void {
    if (this.#closed) return;
    this.#dispatching = true;
    try {
      this.#io.poll(this.#sink);
      this.#flush();
    } finally {
      this.#dispatching = false;
    }
  }

  /** Writes what is queued; what that brings (drained sockets, broken ones) is dispatched, and written in turn. */
  #flush(): void {
    const was = this.#dispatching;
    this.#dispatching = true;
    try {
      // flush() calls the sink when the writes brought events; they may write more.
      do {
        this.#flushed = false;
        this.#io.flush(this.#sink);
      } while (this.#flushed && !this.#closed);
    } finally {
      this.#dispatching = was;
    }
  }

  /** What poll() and flush() hand their events to. */
  readonly #sink = (...ev: unknown[]): void => {
    this.#flushed = true;
    this.#dispatch(ev);
  };

  #dispatch(ev: unknown[]): void {
    const sockets = this.#sockets;
    for (let i = 0; i < ev.length && !this.#closed;) {
      const type = ev[i] as number, id = ev[i + 1] as number;
      switch (type) {
        case 1: { // accepted
          const accept = this.#listeners.get(ev[i + 2] as number);
          if (accept === undefined) this.#io.destroy(id);
          else sockets.set(id, accept(id, ev[i + 3] as string));
          i += 4;
          break;
        }
        case 2: {
          const n = ev[i + 6] as number, at = i + 7;
          sockets.get(id)?.requestHead(ev[i + 2] as number, ev[i + 3] as string, ev[i + 4] as number, ev.slice(at, at + n) as string[], ev[i + 5] as number);
          i = at + n;
          break;
        }
        case 3: {
          const n = ev[i + 5] as number, at = i + 6;
          sockets.get(id)?.responseHead(ev[i + 2] as number, ev[i + 3] as string, ev.slice(at, at + n) as string[], ev[i + 4] as boolean);
          i = at + n;
          break;
        }
        case 4:
          sockets.get(id)?.body(ev[i + 2] as Buffer | string);
          i += 3;
          break;
        case 5: {
          const n = ev[i + 2] as number, at = i + 3;
          sockets.get(id)?.messageEnd(n === 0 ? null : ev.slice(at, at + n) as string[]);
          i = at + n;
          break;
        }
        case 6:
          sockets.get(id)?.connected();
          i += 2;
          break;
        case 7:
          sockets.get(id)?.drained();
          i += 2;
          break;
        case 8:
          sockets.get(id)?.parseError(ev[i + 2] as string, ev[i + 3] as string);
          i += 4;
          break;
        case 9: {
          const s = sockets.get(id);
          sockets.delete(id);
          s?.closed(ev[i + 2] as number);
          i += 3;
          break;
        }
        case 10:
          sockets.get(id)?.upgrade(ev[i + 2] as Buffer);
          i += 3;
          break;
        case 11:
          sockets.get(id)?.readEnd();
          i += 2;
          break;
        default:
          throw new Error(`H1Io: unknown event ${type}`);
      }
    }
  }
}

/** A client connection's wire on the addon (h1-server.ts ClientWire). */
export class NativeClientWire implements ClientWire, NativeSocketEvents {
  readonly #io: NativeH1;
  readonly #id: number;
  readonly remoteAddress: string;
  #conn: ClientEvents | null = null;
  behind = false;
  readonly joinsWrites = true;

  constructor(io: NativeH1, id: number, remoteAddress: string) {
    this.#io = io;
    this.#id = id;
    this.remoteAddress = remoteAddress;
  }

  start(conn: ClientEvents): void {
    this.#conn = conn;
  }

  send(pieces: readonly (string | Buffer)[], n: number): void {
    // write() takes text, a buffer and text: a head, a body and its framing in one call.
    let ok = true;
    for (let i = 0; i < n;) {
      let text: string | null = null, body: Buffer | null = null, after: string | null = null;
      let p = pieces[i]!;
      if (typeof p === 'string') { text = p; p = pieces[++i]!; }
      if (i < n && typeof p !== 'string') { body = p; p = pieces[++i]!; }
      if (body !== null && i < n && typeof p === 'string') { after = p; i++; }
      ok = this.#io.write(this.#id, text, body, after);
    }
    if (!ok) this.behind = true;
  }

  reading(on: boolean): void {
    this.#io.reading(this.#id, on);
  }

  end(text?: string): void {
    if (text !== undefined) this.#io.write(this.#id, text);
    this.#io.end(this.#id);
  }

  destroy(): void {
    this.#io.destroy(this.#id);
    this.#conn?.onClose();
  }

  takeSocket(): Socket {
    return this.#io.detach(this.#id);
  }

  release(): void {
    this.#conn = null;
  }

  // The addon's events.
  requestHead(method: number, url: string, minor: number, lines: string[], flags: number): void {
    this.#conn?.onHead(methodName(method), url, minor, lines, (flags & KEEP_ALIVE) !== 0, (flags & UPGRADE) !== 0);
  }

  body(chunk: Buffer | string): void {
    // A client's body comes as Buffers (strings are for endpoints' small responses).
    this.#conn?.onBody(chunk as Buffer);
  }

  messageEnd(): void {
    this.#conn?.onMessageComplete();
  }

  drained(): void {
    this.behind = false;
    this.#conn?.onDrain();
  }

  parseError(code: string, reason: string): void {
    this.#conn?.onParseError(code, reason);
  }

  closed(): void {
    this.#conn?.onClose();
  }

  upgrade(rest: Buffer): void {
    this.#conn?.onUpgradeHead(rest);
  }

  responseHead(): void { /* a client sends requests */ }
  connected(): void { /* accepted, not connected */ }
  readEnd(): void { /* response reads only */ }
}

/** An upstream connection's wire on the addon (h1-pool.ts UpstreamWire): plain HTTP endpoints. */
export class NativeUpstreamWire implements UpstreamWire, NativeSocketEvents {
  readonly #io: NativeH1;
  readonly #ip: string;
  readonly #port: number;
  #id = 0;
  #conn: UpstreamEvents | null = null;
  #connected = false;

  constructor(io: NativeH1, ip: string, port: number) {
    this.#io = io;
    this.#ip = ip;
    this.#port = port;
  }

  start(conn: UpstreamEvents): void {
    this.#conn = conn;
    this.#id = this.#io.connect(this.#ip, this.#port, this);
  }

  send(text: string | null, body: Buffer | null): boolean {
    return this.#id === 0 ? true : this.#io.write(this.#id, text, body);
  }

  reading(on: boolean): void {
    if (this.#id !== 0) this.#io.reading(this.#id, on);
  }

  skipBody(): void {
    if (this.#id !== 0) this.#io.skipBody(this.#id);
  }

  destroy(): void {
    if (this.#id !== 0) this.#io.destroy(this.#id);
  }

  // The addon's events.
  connected(): void {
    this.#connected = true;
    this.#conn?.onConnected();
  }

  responseHead(status: number, reason: string, lines: string[], keepAlive: boolean): void {
    // Whether a body follows was the addon's to know (skipBody).
    this.#conn?.onHead(status, reason, lines, keepAlive);
  }

  body(chunk: Buffer | string): void {
    this.#conn?.onBody(chunk);
  }

  messageEnd(trailers: string[] | null): void {
    this.#conn?.onMessageComplete(trailers ?? []);
  }

  readEnd(): void {
    this.#conn?.onReadEnd();
  }

  drained(): void {
    this.#conn?.onDrain();
  }

  parseError(code: string, reason: string): void {
    this.#conn?.onParseError(reason === '' ? code : reason);
  }

  closed(errno: number): void {
    const conn = this.#conn;
    this.#conn = null;
    this.#id = 0;
    if (conn === null) return;
    const code = errno === 0 ? null : errnoName(errno);
    conn.onClosed(this.#connected ? 'reset' : 'connect', code, code === null ? null : `${this.#connected ? 'read' : 'connect'} ${code}`);
  }

  requestHead(): void { /* an endpoint sends responses */ }
  upgrade(): void { /* not for responses */ }
}

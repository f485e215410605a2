// The Ingress proxy's HTTP/2 clients on the native addon's H2Session: nghttp2 (the
// library under node:http2) framing the connection in C (native/src/h2-session.cc),
// JavaScript routing the requests. node:http2 makes a Duplex stream, header objects
// and several callbacks from C++ per request, and they were most of an h2 request's
// cost (docs/ingress-proxy.md); here a request is one entry of the array a `pump`
// returns, and its response two or three calls into C whose frames leave with
// everything else of the same loop turn in one TLS write.
//
// - TLS stays node's: the connection reads the TLSSocket's 'data' and writes what the
//   session framed. Output is written once per connection per loop turn
//   (turn-writes.ts, as the HTTP/1.1 engine's), so the responses that came back from
//   endpoints in one turn share a TLS record and a write, as nginx's do.
// - Request bodies are flow-controlled by HTTP/2 itself: a body's bytes go back to the
//   stream's and the connection's windows (`consume`) once they were passed on, so a
//   client faster than its endpoint waits for WINDOW_UPDATE. A body nobody reads (a
//   request answered before it) is consumed and dropped, as the HTTP/1.1 engine drops it.
// - Response bodies queue in the session until the client's window lets them out;
//   `body` returns false past 64 KiB queued and 'drain' follows under 16 KiB.
// - Trailers follow the last DATA frame when the response has any (a GRPC answer);
//   without, the last DATA frame ends the stream.
// - The request and response objects are h2-native-message.ts's.
import type { TLSSocket } from 'node:tls';
import { nativeAddon } from '../device/native.ts';
import { sweepInterval } from './h1-server.ts';
import { writeAtTurnEnd, type TurnWriter } from './turn-writes.ts';
import { NativeH2Request, NativeH2Response, type H2Connection, type NativeH2Session } from './h2-native-message.ts';

export type { NativeH2Session };

export interface NativeH2SessionClass {
  new(opts: { maxConcurrentStreams: number; maxHeaderListBytes: number }): NativeH2Session;
}

// The events of a pump (h2-session.cc's header comment).
const HEAD = 1, DATA = 2, BODY_END = 3, CLOSED = 4, DRAINED = 5, OVER = 6;
/** nginx's http2_max_concurrent_streams. */
const MAX_CONCURRENT_STREAMS = 128;
/** node:http's limit on a request head, as the HTTP/1.1 engine's (llhttp.ts MAX_HEAD_BYTES). */
const MAX_HEADER_LIST_BYTES = 16 * 1024;

let sessionClass: NativeH2SessionClass | null | undefined;

/** The addon's H2Session, or null where the addon has none (built before it) or cannot load. */
export function nativeH2Session(): NativeH2SessionClass | null {
  if (sessionClass !== undefined) return sessionClass;
  try {
    const C = (nativeAddon() as unknown as { H2Session?: NativeH2SessionClass }).H2Session;
    // One session made and freed: nghttp2's symbols are bound on first use, so a node
    // without them fails here, once, rather than on a client's connection.
    if (C !== undefined) new C({ maxConcurrentStreams: 1, maxHeaderListBytes: 1024 }).close();
    sessionClass = C ?? null;
  } catch {
    sessionClass = null;
  }
  return sessionClass;
}

export interface NativeH2Handler {
  request(req: NativeH2Request, res: NativeH2Response): void;
  /** A request refused before it was one (431: its head was over MAX_HEADER_LIST_BYTES): for the metrics. */
  refused(status: number): void;
}

const noop = (): void => undefined;

/** One client connection that chose h2 by ALPN. */
export class NativeH2Connection implements H2Connection, TurnWriter {
  readonly #socket: TLSSocket;
  readonly #session: NativeH2Session;
  readonly #handler: NativeH2Handler;
  readonly clientAddress: string;
  /** Open streams by id: their requests and responses. */
  readonly #streams = new Map<number, NativeH2Response>();
  /** The socket's buffer is over its mark: frames wait in the session for 'drain'. */
  #blocked = false;
  #closed = false;
  /** Registered to write at the end of the turn (turn-writes.ts). */
  #turnQueued = false;
  #goingAway = false;
  /** performance.now() when the last stream closed (or the connection opened): the idle timeout counts from here while no stream is open. */
  idleSince = performance.now();

  constructor(socket: TLSSocket, Session: NativeH2SessionClass, handler: NativeH2Handler, clientAddress: string) {
    this.#socket = socket;
    this.#handler = handler;
    this.clientAddress = clientAddress;
    this.#session = new Session({ maxConcurrentStreams: MAX_CONCURRENT_STREAMS, maxHeaderListBytes: MAX_HEADER_LIST_BYTES });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#events(this.#session.pump(chunk, false));
      this.schedule();
    });
    socket.on('drain', () => {
      this.#blocked = false;
      this.schedule();
    });
    socket.on('error', noop);
    socket.on('close', () => this.#onClose());
    // The server's SETTINGS.
    this.schedule();
  }

  /** @internal output waits for the end of this loop turn. */
  schedule(): void {
    if (this.#closed || this.#turnQueued) return;
    this.#turnQueued = true;
    writeAtTurnEnd(this);
  }

  /**
   * Writes what the session framed. Writing can schedule this connection again (a
   * stream's close returns its body's bytes to the window): that is the next turn's.
   */
  writeTurn(): void {
    this.#turnQueued = false;
    if (this.#closed || this.#blocked) return;
    this.#events(this.#session.pump(null, true));
  }

  /** Whether no stream is open. */
  get idle(): boolean {
    return this.#streams.size === 0;
  }

  /** No new streams; those open finish, then the connection closes (the proxy's stop(), the idle timeout). */
  goaway(): void {
    if (this.#closed || this.#goingAway) return;
    this.#goingAway = true;
    this.#session.goaway();
    this.schedule();
  }

  /** @internal the session, for the stream's own calls. */
  get session(): NativeH2Session {
    return this.#session;
  }

  #events(r: unknown[] | undefined): void {
    if (r === undefined || this.#closed) return;
    const out = r[0] as Buffer | null;
    if (out !== null && !this.#socket.write(out)) this.#blocked = true;
    for (let i = 1; i < r.length;) {
      const id = r[i + 1] as number;
      switch (r[i] as number) {
        case HEAD:
          this.#head(id, r[i + 2] === 1, r[i + 3] as string[] | null);
          i += 4;
          break;
        case DATA: {
          const chunk = r[i + 2] as Buffer;
          const res = this.#streams.get(id);
          if (res !== undefined) res.req.pushBody(chunk);
          else this.#session.consume(id, chunk.length);
          i += 3;
          break;
        }
        case BODY_END:
          this.#streams.get(id)?.req.endBody();
          i += 2;
          break;
        case CLOSED: {
          const res = this.#streams.get(id);
          this.#streams.delete(id);
          if (this.#streams.size === 0) this.idleSince = performance.now();
          res?.closed();
          i += 3;
          break;
        }
        case DRAINED:
          this.#streams.get(id)?.drained();
          i += 2;
          break;
        case OVER:
          // A protocol error (the session queued its GOAWAY, written above) or both sides done.
          this.#socket.end();
          i += 3;
          break;
        default:
          throw new Error(`h2-session: unknown event ${String(r[i])}`);
      }
    }
  }

  #head(id: number, endStream: boolean, lines: string[] | null): void {
    if (lines === null) {
      // Over MAX_HEADER_LIST_BYTES: the session dropped its fields.
      const req = new NativeH2Request(this, id, 'GET', '/', [], !endStream);
      const res = new NativeH2Response(this, id, req);
      this.#streams.set(id, res);
      this.#handler.refused(431);
      res.answer(431, `tapir-ingress: 431 Request Header Fields Too Large: the request head is over ${MAX_HEADER_LIST_BYTES} bytes\n`);
      return;
    }
    let method = 'GET', path = '/';
    for (let i = 0; i < lines.length; i += 2) {
      const name = lines[i]!;
      if (name.charCodeAt(0) !== 58 /* ':' */) break; // pseudo-headers come first (RFC 9113 8.3)
      if (name === ':method') method = lines[i + 1]!;
      else if (name === ':path') path = lines[i + 1]!;
    }
    const req = new NativeH2Request(this, id, method, path, lines, !endStream);
    const res = new NativeH2Response(this, id, req);
    this.#streams.set(id, res);
    this.#handler.request(req, res);
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    const open = [...this.#streams.values()];
    this.#streams.clear();
    this.#session.close();
    for (const res of open) res.closed();
  }
}

/**
 * The open connections, and their idle timeout: one with no stream open for
 * `idleTimeoutMs` gets a GOAWAY, and closes once it is written.
 */
export class NativeH2Connections {
  readonly #all = new Set<NativeH2Connection>();
  readonly #idleTimeoutMs: number;
  /** Runs while any connection is open. */
  #sweep: NodeJS.Timeout | null = null;

  constructor(idleTimeoutMs: number) {
    this.#idleTimeoutMs = idleTimeoutMs;
  }

  add(conn: NativeH2Connection, socket: TLSSocket): void {
    this.#all.add(conn);
    socket.once('close', () => this.#all.delete(conn));
    if (this.#sweep !== null) return;
    this.#sweep = setInterval(() => {
      const now = performance.now();
      for (const c of this.#all) if (c.idle && now - c.idleSince > this.#idleTimeoutMs) c.goaway();
      if (this.#all.size === 0) this.stopSweep();
    }, sweepInterval(this.#idleTimeoutMs));
    this.#sweep.unref();
  }

  /** GOAWAY to every connection (the proxy's stop()). */
  goaway(): void {
    for (const c of this.#all) c.goaway();
  }

  stopSweep(): void {
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
  }
}

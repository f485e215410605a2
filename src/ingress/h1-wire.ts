// What the HTTP/1.1 engine's connections (h1-server.ts, h1-pool.ts) read from and write
// to: a wire. A node socket with node's parser on it is one (SocketClientWire,
// SocketUpstreamWire); the addon's socket is the other (h1-native.ts). Either calls
// its connection's `on*` methods with what it parsed.
import type { Socket } from 'node:net';

/** A client connection, as its wire sees it (ClientConnection in h1-server.ts). */
export interface ClientEvents {
  /** A request head. */
  onHead(method: string, url: string, minor: number, raw: string[], keepAlive: boolean, upgrade: boolean): void;
  onBody(chunk: Buffer): void;
  onMessageComplete(): void;
  /** The last request was an Upgrade: `rest` is what followed its head; reading has stopped. */
  onUpgradeHead(rest: Buffer): void;
  /** A parse error (node's HPE_* code; HPE_HEADER_OVERFLOW for a head over 16 KiB); reading has stopped. */
  onParseError(code: string, reason: string): void;
  onDrain(): void;
  /** The wire is gone (the peer closed it, it broke, or destroy()). */
  onClose(): void;
}

export interface ClientWire {
  readonly remoteAddress: string | undefined;
  /**
   * Whether text and buffers sent together leave in one write whatever their number
   * (the addon's sockets copy them into one queue); otherwise a small body is best
   * joined to its head as text first.
   */
  readonly joinsWrites: boolean;
  /** Starts delivering to `conn`. */
  start(conn: ClientEvents): void;
  /** Writes the first `n` of `pieces` (latin1 text and buffers) in order; the array is the caller's again on return. */
  send(pieces: readonly (string | Buffer)[], n: number): void;
  /** Whether output is queued past the high-water mark (onDrain follows). */
  readonly behind: boolean;
  reading(on: boolean): void;
  /** Writes `text` if given, then shuts the writing side. */
  end(text?: string): void;
  destroy(): void;
  /** The connection as a node socket, the caller's from now on (an Upgrade: reading has stopped after its head). */
  takeSocket(): Socket;
  /** The connection is gone: the parser's resources go too. */
  release(): void;
}

/** An upstream connection, as its wire sees it (UpstreamConnection in h1-pool.ts). */
export interface UpstreamEvents {
  onConnected(): void;
  /** A response head; true: it has no body (the request was a HEAD). */
  onHead(status: number, message: string, raw: string[], keepAlive: boolean): boolean;
  /** A body piece (a string is latin1: the addon hands small ones over so, with no ArrayBuffer each). */
  onBody(chunk: Buffer | string): void;
  onMessageComplete(trailers: string[]): void;
  /** The end of a read from the endpoint. */
  onReadEnd(): void;
  onParseError(reason: string): void;
  onDrain(): void;
  /** The connection failed or closed (`code`: the error's, null for a close by the endpoint). */
  onClosed(kind: 'connect' | 'reset', code: string | null, message: string | null): void;
}

export interface UpstreamWire {
  /** Connects, delivering to `conn`. */
  start(conn: UpstreamEvents): void;
  /** Writes latin1 text, then a buffer; false when the endpoint is not taking it fast enough (onDrain follows). */
  send(text: string | null, body: Buffer | null): boolean;
  reading(on: boolean): void;
  /** The response to the request just sent has no body (the request was a HEAD). */
  skipBody(): void;
  destroy(): void;
}

// The agent's control socket: a Unix stream socket (mode 0600) speaking the protocol of
// protocol.ts. The server only parses, validates and dispatches; what a request does is
// up to the handler the agent plugs in (the port manager and a status function).
import { chmodSync, lstatSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { TapirError } from '../errors/tapir-error.ts';
import {
  ControlError, ControlErrorCode, encodeError, encodeOk, parseRequest,
  type AddPortRequest, type CaptureStartRequest, type CaptureStopRequest, type CheckPortRequest, type ControlRequest,
  type CaptureStartInfo, type CaptureStopInfo, type ControlOp, type ControlResponseOf, type DelPortRequest, type PortInfo,
  type StatsInfo, type StatusInfo, type TraceInfo, type TraceRequest,
} from './protocol.ts';

export interface ControlHandler {
  status(): StatusInfo | Promise<StatusInfo>;
  /** Same (containerId, ifName, ip) twice returns the same port (contract: idempotent add). */
  addPort(req: AddPortRequest): PortInfo | Promise<PortInfo>;
  /** Succeeds when the port is absent (CNI DEL is idempotent). */
  delPort(req: DelPortRequest): void | Promise<void>;
  /** Throws ControlError NOT_FOUND or MISMATCH when the port is not what the request says. */
  checkPort(req: CheckPortRequest): void | Promise<void>;
  listPorts(): PortInfo[] | Promise<PortInfo[]>;
  // Operator tools, served by the agent (absent in a bare port manager: UNKNOWN_OP).
  stats?(): StatsInfo;
  captureStart?(req: CaptureStartRequest): CaptureStartInfo;
  captureStop?(req: CaptureStopRequest): CaptureStopInfo;
  trace?(req: TraceRequest): TraceInfo;
}

export interface ControlServerOptions {
  path: string;
  handler: ControlHandler;
  /** Longest request line accepted; a CNI request is a few hundred bytes. */
  maxLineBytes?: number;
  /** A connection that sends nothing for this long is closed, so stuck clients cannot pile up. */
  idleTimeoutMs?: number;
  log?: (message: string) => void;
}

const DEFAULT_MAX_LINE = 64 * 1024;
const DEFAULT_IDLE_MS = 60_000;

export class ControlServer {
  readonly path: string;
  readonly #server: Server;
  readonly #handler: ControlHandler;
  readonly #maxLine: number;
  readonly #idleMs: number;
  readonly #log: (message: string) => void;
  readonly #sockets = new Set<Socket>();

  private constructor(opts: ControlServerOptions) {
    this.path = opts.path;
    this.#handler = opts.handler;
    this.#maxLine = opts.maxLineBytes ?? DEFAULT_MAX_LINE;
    this.#idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    this.#log = opts.log ?? (() => {});
    this.#server = createServer((socket) => this.#accept(socket));
  }

  /** Binds the socket (replacing a stale one left by a dead agent) and starts serving. */
  static async listen(opts: ControlServerOptions): Promise<ControlServer> {
    const server = new ControlServer(opts);
    mkdirSync(dirname(opts.path), { recursive: true, mode: 0o755 });
    await removeStaleSocket(opts.path);
    // umask 0177 while binding, so the socket is never reachable by others, not even
    // for the moment between bind(2) and chmod(2).
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.#server.once('error', reject);
        server.#server.listen(opts.path, () => {
          server.#server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(previous);
    }
    chmodSync(opts.path, 0o600);
    server.#server.on('error', (err) => server.#log(`control socket ${opts.path}: ${err.message}`));
    return server;
  }

  get connections(): number {
    return this.#sockets.size;
  }

  /** Stops accepting, drops open connections and removes the socket file. */
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    try { unlinkSync(this.path); } catch { /* already gone */ }
  }

  #accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.setTimeout(this.#idleMs, () => socket.destroy());
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => { /* the peer went away; 'close' follows */ });
    let pending = '';
    let refused = false;
    // Requests on one connection are answered strictly in order: each waits for the
    // previous one's response to be written.
    let chain: Promise<void> = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      if (refused) return;
      pending += chunk;
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.trim() === '') continue;
        chain = chain.then(() => this.#answer(socket, line));
      }
      if (pending.length > this.#maxLine) {
        const message = `request line longer than ${this.#maxLine} bytes`;
        pending = '';
        refused = true;
        chain = chain.then(() => { socket.end(encodeError(ControlErrorCode.badRequest, message)); });
      }
    });
  }

  async #answer(socket: Socket, line: string): Promise<void> {
    let reply: string;
    try {
      reply = encodeOk(await this.#dispatch(parseRequest(line)));
    } catch (err) {
      if (err instanceof ControlError) {
        reply = encodeError(err.code, err.message);
      } else {
        // A TapirError (a DeviceError's errno name) or a Node system error has a code worth passing on.
        const e = err as Error & { code?: unknown };
        const code = err instanceof TapirError ? err.code : e.code;
        const detail = typeof code === 'string' ? ` (${code})` : '';
        this.#log(`control request failed: ${e.stack ?? e.message}`);
        reply = encodeError(ControlErrorCode.internal, `${e.message}${detail}`);
      }
    }
    if (!socket.destroyed && socket.writable) socket.write(reply);
  }

  async #dispatch(req: ControlRequest): Promise<ControlResponseOf<ControlOp>> {
    const h = this.#handler;
    switch (req.op) {
      case 'status': return await h.status();
      case 'addPort': return { port: await h.addPort(req) };
      case 'delPort': await h.delPort(req); return {};
      case 'checkPort': await h.checkPort(req); return {};
      case 'listPorts': return { ports: await h.listPorts() };
      case 'stats': return this.#tool(h.stats, req.op)();
      case 'captureStart': return this.#tool(h.captureStart, req.op)(req);
      case 'captureStop': return this.#tool(h.captureStop, req.op)(req);
      case 'trace': return this.#tool(h.trace, req.op)(req);
    }
  }

  #tool<F extends (...args: never[]) => unknown>(fn: F | undefined, op: string): F {
    if (fn === undefined) throw new ControlError(ControlErrorCode.unknownOp, `'${op}' is not served here (no datapath)`);
    return fn.bind(this.#handler) as F;
  }
}

/**
 * A socket file left behind by an agent that died is removed; one that still accepts
 * connections belongs to a live agent, and binding over it would steal its clients.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new ControlError(ControlErrorCode.internal, `${path} exists and is not a socket; refusing to replace it`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new ControlError(ControlErrorCode.internal, `${path}: another agent is already listening on this control socket`);
  unlinkSync(path);
}

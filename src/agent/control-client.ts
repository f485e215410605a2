// Client of the agent's control socket, used by the CNI plugin (and `tapir` tools). One
// connection per request: a CNI invocation makes one or two calls, so pooling buys
// nothing, and a fresh connection never reads a stale answer.
//
// Transport failures become ControlError AGENT_UNAVAILABLE (socket file missing,
// connection refused or dropped before the answer) or AGENT_TIMEOUT (no answer in time);
// the CNI maps those to "try again later" (11) or, for STATUS, "plugin not available" (50).
// An answer with ok:false becomes a ControlError with the agent's own code.
import { connect } from 'node:net';
import {
  AgentUnreachableError, ControlError, ControlErrorCode, controlErrorCode,
  type AddPortRequest, type ControlRequest, type ControlResponseOf, type PortInfo, type StatusInfo,
} from './protocol.ts';

export interface ControlClientOptions {
  /** Whole-request budget: connect, send, answer. addPort runs a few `ip` commands, and
   * the agent serialises port changes, so 20 parallel pod starts queue behind each other. */
  timeoutMs?: number;
}

export const DEFAULT_CONTROL_TIMEOUT_MS = 15_000;

/** An ok:true answer line as parsed, before `request` checks and strips `ok`. */
type Answer = Record<string, unknown> & { ok: true };

export class ControlClient {
  readonly path: string;
  readonly timeoutMs: number;

  constructor(path: string, opts: ControlClientOptions = {}) {
    this.path = path;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_CONTROL_TIMEOUT_MS;
  }

  /**
   * Sends one request and returns the body of the ok:true answer (without `ok`); throws
   * ControlError otherwise. The body's type is the protocol's for the operation: the
   * server in this package produces exactly that; the fields a caller depends on most
   * (ports) are checked by the typed helpers below.
   */
  async request<R extends ControlRequest>(req: R): Promise<ControlResponseOf<R['op']>> {
    const { ok: _ok, ...body } = await this.#exchange(req);
    return body as ControlResponseOf<R['op']>;
  }

  #exchange(req: ControlRequest): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const socket = connect(this.path);
      let buffer = '';
      let settled = false;
      const finish = (err: ControlError | null, answer?: Answer): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (err !== null) reject(err);
        else resolve(answer!);
      };
      const timer = setTimeout(() => {
        finish(new AgentUnreachableError(ControlErrorCode.timeout, `agent at ${this.path} did not answer '${req.op}' within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      socket.setEncoding('utf8');
      socket.once('connect', () => socket.write(`${JSON.stringify(req)}\n`));
      socket.on('data', (chunk: string) => {
        buffer += chunk;
        const nl = buffer.indexOf('\n');
        if (nl < 0) return;
        finish(...decodeAnswer(buffer.slice(0, nl), this.path));
      });
      socket.once('error', (err: NodeJS.ErrnoException) => finish(transportError(err, this.path, req.op)));
      socket.once('close', () => {
        finish(new AgentUnreachableError(ControlErrorCode.unavailable, `agent at ${this.path} closed the connection before answering '${req.op}'`));
      });
    });
  }

  async status(): Promise<StatusInfo> {
    const a: { [K in keyof StatusInfo]: unknown } = await this.request({ op: 'status' });
    const status: StatusInfo = {
      node: String(a.node), pid: Number(a.pid), podCIDR: String(a.podCIDR), gateway: String(a.gateway),
      mtu: Number(a.mtu), ports: Number(a.ports),
    };
    // An agent of before IPv6, or a node without an IPv6 pod range, leaves both out.
    if (typeof a.podCIDRv6 === 'string' && typeof a.gateway6 === 'string') {
      status.podCIDRv6 = a.podCIDRv6;
      status.gateway6 = a.gateway6;
    }
    return status;
  }

  async addPort(req: Omit<AddPortRequest, 'op'>): Promise<PortInfo> {
    const a: { port: unknown } = await this.request({ op: 'addPort', ...req });
    return expectPort(a.port, this.path);
  }

  async delPort(containerId: string, ifName: string): Promise<void> {
    await this.request({ op: 'delPort', containerId, ifName });
  }

  /** The port must hold exactly `ip` (IPv4, undefined = none) and `ip6` (IPv6, undefined = none). */
  async checkPort(containerId: string, ifName: string, ip: string | undefined, ip6?: string): Promise<void> {
    await this.request({ op: 'checkPort', containerId, ifName, ...(ip === undefined ? {} : { ip }), ...(ip6 === undefined ? {} : { ip6 }) });
  }

  async listPorts(): Promise<PortInfo[]> {
    const a: { ports: unknown } = await this.request({ op: 'listPorts' });
    if (!Array.isArray(a.ports)) throw new ControlError(ControlErrorCode.badRequest, `agent at ${this.path} answered listPorts without a 'ports' list`);
    return a.ports.map((p) => expectPort(p, this.path));
  }
}

function decodeAnswer(line: string, path: string): [ControlError | null, Answer?] {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return [new ControlError(ControlErrorCode.badRequest, `agent at ${path} sent a line that is not JSON: ${line.slice(0, 200)}`)];
  }
  const obj = raw as { ok?: unknown; error?: { code?: unknown; message?: unknown } };
  if (obj !== null && typeof obj === 'object' && obj.ok === true) return [null, obj as Answer];
  const code = controlErrorCode(obj?.error?.code);
  const message = typeof obj?.error?.message === 'string' ? obj.error.message : `unexpected answer: ${line.slice(0, 200)}`;
  // A code this client does not know (a newer agent) is kept in the message.
  return [new ControlError(code ?? ControlErrorCode.internal, code === undefined && obj?.error?.code !== undefined ? `${message} (agent code ${String(obj.error.code)})` : message)];
}

function transportError(err: NodeJS.ErrnoException, path: string, op: string): AgentUnreachableError {
  switch (err.code) {
    case 'ENOENT':
      return new AgentUnreachableError(ControlErrorCode.unavailable, `agent control socket ${path} does not exist (is the tapir agent running?)`);
    case 'ECONNREFUSED':
      return new AgentUnreachableError(ControlErrorCode.unavailable, `agent control socket ${path} refused the connection (agent not running; stale socket)`);
    case 'EACCES':
    case 'EPERM':
      return new AgentUnreachableError(ControlErrorCode.unavailable, `no permission to connect to ${path} (the socket is mode 0600, owned by the agent's user)`);
    default:
      return new AgentUnreachableError(ControlErrorCode.unavailable, `agent control socket ${path}: ${err.code ?? ''} ${err.message} during '${op}'`);
  }
}

function expectPort(value: unknown, path: string): PortInfo {
  const p = value as PortInfo | undefined;
  if (p === undefined || p === null || typeof p !== 'object' || typeof p.ip !== 'string' || typeof p.mac !== 'string' || typeof p.ifName !== 'string') {
    throw new ControlError(ControlErrorCode.badRequest, `agent at ${path} answered without a valid port: ${JSON.stringify(value)}`);
  }
  return p;
}

// The agent's control protocol, shared by the agent (control-server.ts) and the CNI
// plugin (control-client.ts): newline-delimited JSON over a Unix stream socket, one
// request object per line, one response line per request, answered in order.
// Addresses travel as text (dotted quads, RFC 5952 IPv6) so the protocol stays readable
// with `socat`. A pod has an IPv4 address, an IPv6 address or both (dual-stack): the
// IPv4 fields are `ip`, `prefixLength`, `gateway`, the IPv6 ones `ip6`, `prefixLength6`,
// `gateway6`; a client of before IPv6 sends the IPv4 ones only and keeps working.
import { TapirError } from '../errors/tapir-error.ts';
import { isIpv6Text, parseIpv4 } from '../wire/address.ts';
import type { TraceResult } from '../services/trace.ts';

/** Stable error codes: on the wire (`error.code`) and on thrown ControlErrors. */
export const ControlErrorCode = {
  /** The line is not JSON, not an object, or longer than the server accepts. */
  badRequest: 'BAD_REQUEST',
  unknownOp: 'UNKNOWN_OP',
  missingField: 'MISSING_FIELD',
  invalidField: 'INVALID_FIELD',
  /** checkPort: the agent has no port for (containerId, ifName). */
  notFound: 'NOT_FOUND',
  /** addPort: the pair already has a port with another address, or the address is taken. */
  conflict: 'CONFLICT',
  /** checkPort: the port exists but its address or device is not what was asked. */
  mismatch: 'MISMATCH',
  netnsNotFound: 'NETNS_NOT_FOUND',
  /** Opening, moving or configuring the TAP failed. */
  deviceError: 'DEVICE_ERROR',
  internal: 'INTERNAL',
  // Raised by the client only, never sent by the server:
  /** No agent: the socket file is missing, the connection was refused or dropped. */
  unavailable: 'AGENT_UNAVAILABLE',
  /** The agent accepted the connection but did not answer in time. */
  timeout: 'AGENT_TIMEOUT',
} as const;
export type ControlErrorCode = (typeof ControlErrorCode)[keyof typeof ControlErrorCode];

/**
 * An error of the control protocol. `code` is the wire code (the agent's answer carries
 * it as `error.code`), so a client rethrows the agent's own condition.
 */
export class ControlError extends TapirError {
  readonly code: ControlErrorCode;
  constructor(code: ControlErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

/** The client's "nobody answered" (as opposed to "the agent said no"): AGENT_UNAVAILABLE or AGENT_TIMEOUT. */
export class AgentUnreachableError extends ControlError {
  constructor(code: typeof ControlErrorCode.unavailable | typeof ControlErrorCode.timeout, message: string) {
    super(code, message);
  }
}

/** True for the client-side errors that mean "nobody answered" (as opposed to "the agent said no"). */
export function isAgentUnreachable(err: unknown): err is AgentUnreachableError {
  return err instanceof AgentUnreachableError;
}

const WIRE_CODES: ReadonlySet<string> = new Set(Object.values(ControlErrorCode));

/** A code read off the wire, if it is one of the protocol's. */
export function controlErrorCode(text: unknown): ControlErrorCode | undefined {
  return typeof text === 'string' && WIRE_CODES.has(text) ? text as ControlErrorCode : undefined;
}

export interface StatusRequest { op: 'status' }
export interface AddPortRequest {
  op: 'addPort';
  containerId: string;
  ifName: string;
  /** Path of the pod's network namespace (bind mount or /proc/PID/ns/net). */
  netns: string;
  /** The pod's IPv4 address, its prefix length and gateway: all three or none (an IPv6-only pod). */
  ip?: string;
  prefixLength?: number;
  gateway?: string;
  /** The pod's IPv6 address, prefix length and gateway: all three or none (an IPv4-only pod). */
  ip6?: string;
  prefixLength6?: number;
  gateway6?: string;
  podName?: string;
  podNamespace?: string;
  /** The CNI network (the conflist's `name`) the port belongs to; GC is scoped by it. */
  network?: string;
}
export interface DelPortRequest { op: 'delPort'; containerId: string; ifName: string }
/** The port must hold exactly these addresses: `ip` absent = no IPv4 address, `ip6` absent = no IPv6. */
export interface CheckPortRequest { op: 'checkPort'; containerId: string; ifName: string; ip?: string; ip6?: string }
export interface ListPortsRequest { op: 'listPorts' }
/** Per-port counters of the datapath (`tapir agent stats`, the lab's status). */
export interface StatsRequest { op: 'stats' }
/** Copy a port's frames into a pcap file, for at most `seconds` (`tapir capture`). */
export interface CaptureStartRequest { op: 'captureStart'; port: string; file: string; seconds?: number }
export interface CaptureStopRequest { op: 'captureStop'; port: string }
/** Explain a packet's fate with the agent's live service tables and forwarding table (`tapir trace`). */
export interface TraceRequest { op: 'trace'; protocol: 6 | 17; src: string; srcPort: number; dst: string; dstPort: number; from: 'pod' | 'host' | 'external' }
export type ControlRequest = StatusRequest | AddPortRequest | DelPortRequest | CheckPortRequest | ListPortsRequest
  | StatsRequest | CaptureStartRequest | CaptureStopRequest | TraceRequest;
export type ControlOp = ControlRequest['op'];

export interface StatusInfo {
  node: string;
  /** The agent's process id (a restarted agent answers on the same socket with another). */
  pid: number;
  podCIDR: string;
  gateway: string;
  /** The node's IPv6 pod range and gateway (its ::1); absent when the node has none. */
  podCIDRv6?: string;
  gateway6?: string;
  mtu: number;
  /** Number of pod ports the agent holds. */
  ports: number;
}

export interface PortInfo {
  containerId: string;
  ifName: string;
  /** Name the TAP had in the agent's namespace before it moved ("tp" + 8 hex). */
  hostName: string;
  mac: string;
  netns: string;
  /** IPv4 address, prefix length, gateway; '', 0, '' for an IPv6-only pod. */
  ip: string;
  prefixLength: number;
  gateway: string;
  /** IPv6 address, prefix length, gateway; absent for an IPv4-only pod. */
  ip6?: string;
  prefixLength6?: number;
  gateway6?: string;
  mtu: number;
  podName?: string;
  podNamespace?: string;
  /** The CNI network that added the port ('' or absent: not recorded). */
  network?: string;
}

/** One port's counters (`stats`). */
export interface PortStats {
  /** Datapath port index; -1 for the underlay socket. */
  index: number;
  name: string;
  kind: 'pod' | 'host' | 'underlay';
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  /** Frames dropped, by reason name; reasons that never happened are left out. */
  drops: Record<string, number>;
}

export interface StatsInfo {
  ports: PortStats[];
  /** TCP segments from the underlay coalesced into TSO frames for pods. */
  coalescedSegments: number;
  /**
   * The kernel's UDP tunnel segmentation (docs/ARCHITECTURE.md, "To a remote node"): on or
   * off, super-frames handed to it whole, and super-frames received whole from a peer.
   */
  tunnelOffload: { on: boolean; sent: number; received: number };
  /** Reads of ports a wakeup had just written to (request/response traffic): those that found the answer waiting, and those that found nothing. */
  answerReads: { found: number; empty: number };
  /** Ports taken out of the datapath because their device failed (a pod's namespace went first). */
  portFailures: number;
  /** recvmmsg calls on the underlay socket that failed (counted, then read again). */
  underlayRecvErrors: number;
  /** The service conntrack (null before services are programmed): size and counters by name. */
  conntrack: { entries: number; capacity: number; maxUnassuredPerSource: number; counters: Record<string, number> } | null;
  /** Service packets refused (dropped or rejected) by reason name. */
  natRefusals: Record<string, number>;
  /** The IPv6 service NAT's conntrack and refusals (NAT66); null/empty on a node without IPv6 pods. */
  conntrack6?: StatsInfo['conntrack'];
  natRefusals6?: Record<string, number>;
  /** The agent process's memory (process.memoryUsage()), bytes: what a soak watches for leaks. */
  memory: { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number };
}

export interface CaptureStartInfo { port: string; linkType: number }
export interface CaptureStopInfo { port: string; frames: number }
/** The service trace, with the forwarding table's verdict on where the packet goes. */
export type TraceInfo = TraceResult & { egress: string };

/**
 * Every operation's request and the body of its ok:true answer, shared by the server
 * (control-server.ts dispatches on it) and the client (whose `request` returns it).
 */
export interface ControlOps {
  status: { request: StatusRequest; response: StatusInfo };
  addPort: { request: AddPortRequest; response: { port: PortInfo } };
  delPort: { request: DelPortRequest; response: Record<never, never> };
  checkPort: { request: CheckPortRequest; response: Record<never, never> };
  listPorts: { request: ListPortsRequest; response: { ports: PortInfo[] } };
  stats: { request: StatsRequest; response: StatsInfo };
  captureStart: { request: CaptureStartRequest; response: CaptureStartInfo };
  captureStop: { request: CaptureStopRequest; response: CaptureStopInfo };
  trace: { request: TraceRequest; response: TraceInfo };
}
export type ControlRequestOf<Op extends ControlOp> = ControlOps[Op]['request'];
export type ControlResponseOf<Op extends ControlOp> = ControlOps[Op]['response'];

export interface ErrorBody { code: string; message: string }
/** One answer line: `{ok: true, ...body}` or `{ok: false, error}`. */
export type ControlResponse<Op extends ControlOp = ControlOp> =
  | ({ ok: true } & ControlResponseOf<Op>)
  | { ok: false; error: ErrorBody };

// Container ID and interface name rules of the CNI spec (section "Parameters"): the
// agent checks them again because anything on the socket may call it, not only the CNI.
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

/** A Linux interface name: 1..15 bytes, not "." or "..", no '/', ':' or whitespace. */
export function isValidIfName(name: string): boolean {
  return name.length > 0 && Buffer.byteLength(name) < 16 && name !== '.' && name !== '..' && !/[/:\s]/.test(name);
}

export function isValidContainerId(id: string): boolean {
  return CONTAINER_ID.test(id);
}

type Raw = Record<string, unknown>;

function field(obj: Raw, op: string, key: string): unknown {
  const v = obj[key];
  if (v === undefined || v === null) throw new ControlError(ControlErrorCode.missingField, `${op}: field '${key}' is required`);
  return v;
}

function stringField(obj: Raw, op: string, key: string): string {
  const v = field(obj, op, key);
  if (typeof v !== 'string' || v === '') throw new ControlError(ControlErrorCode.invalidField, `${op}: field '${key}' must be a non-empty string`);
  return v;
}

function optionalString(obj: Raw, op: string, key: string): string | undefined {
  if (obj[key] === undefined || obj[key] === null) return undefined;
  if (typeof obj[key] !== 'string') throw new ControlError(ControlErrorCode.invalidField, `${op}: field '${key}' must be a string`);
  return obj[key];
}

function ipv4Field(obj: Raw, op: string, key: string): string {
  const v = stringField(obj, op, key);
  if (parseIpv4(v) === undefined) throw new ControlError(ControlErrorCode.invalidField, `${op}: field '${key}' is not an IPv4 address: '${v}'`);
  return v;
}

function ipv6Field(obj: Raw, op: string, key: string): string {
  const v = stringField(obj, op, key);
  if (!isIpv6Text(v)) throw new ControlError(ControlErrorCode.invalidField, `${op}: field '${key}' is not an IPv6 address: '${v}'`);
  return v;
}

function present(obj: Raw, key: string): boolean {
  return obj[key] !== undefined && obj[key] !== null;
}

function prefixField(obj: Raw, op: string, key: string, max: number): number {
  const v = field(obj, op, key);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new ControlError(ControlErrorCode.invalidField, `${op}: ${key} must be an integer from 1 to ${max}`);
  }
  return v;
}

/**
 * One family's address, prefix length and gateway: all three, or none of them. A field
 * without its address is INVALID_FIELD (a client that lost the address, not one that
 * means "no such family"); an address without the others is MISSING_FIELD.
 */
function family(obj: Raw, op: string, keys: readonly [string, string, string], v6: boolean): [string, number, string] | null {
  const [ipKey, lenKey, gwKey] = keys;
  if (!present(obj, ipKey)) {
    for (const k of [lenKey, gwKey]) if (present(obj, k)) throw new ControlError(ControlErrorCode.invalidField, `${op}: field '${k}' is given without '${ipKey}'`);
    return null;
  }
  const read = v6 ? ipv6Field : ipv4Field;
  return [read(obj, op, ipKey), prefixField(obj, op, lenKey, v6 ? 128 : 32), read(obj, op, gwKey)];
}

const V4_KEYS = ['ip', 'prefixLength', 'gateway'] as const;
const V6_KEYS = ['ip6', 'prefixLength6', 'gateway6'] as const;

function ids(obj: Raw, op: string): { containerId: string; ifName: string } {
  const containerId = stringField(obj, op, 'containerId');
  if (!isValidContainerId(containerId)) {
    throw new ControlError(ControlErrorCode.invalidField, `${op}: containerId '${containerId}' must start with a letter or digit and contain only letters, digits, '_', '.', '-'`);
  }
  const ifName = stringField(obj, op, 'ifName');
  if (!isValidIfName(ifName)) throw new ControlError(ControlErrorCode.invalidField, `${op}: ifName '${ifName}' is not a valid Linux interface name`);
  return { containerId, ifName };
}

/** Parses and validates one request line; throws ControlError with the code to answer. */
export function parseRequest(line: string): ControlRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new ControlError(ControlErrorCode.badRequest, `request is not JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ControlError(ControlErrorCode.badRequest, 'request must be a JSON object');
  const obj = raw as Raw;
  const op = obj.op;
  if (typeof op !== 'string') throw new ControlError(ControlErrorCode.missingField, "field 'op' is required");
  switch (op) {
    case 'status':
    case 'listPorts':
    case 'stats':
      return { op };
    case 'captureStop':
      return { op, port: stringField(obj, op, 'port') };
    case 'trace': {
      const port = (key: string): number => {
        const v = field(obj, op, key);
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) throw new ControlError(ControlErrorCode.invalidField, `${op}: ${key} must be a port from 1 to 65535`);
        return v;
      };
      const protocol = field(obj, op, 'protocol');
      if (protocol !== 6 && protocol !== 17) throw new ControlError(ControlErrorCode.invalidField, `${op}: protocol must be 6 (TCP) or 17 (UDP)`);
      const from = field(obj, op, 'from');
      if (from !== 'pod' && from !== 'host' && from !== 'external') throw new ControlError(ControlErrorCode.invalidField, `${op}: from must be pod, host or external`);
      // IPv4, or IPv6 (routed only: service NAT is IPv4's), both of one family.
      const family = isIpv6Text(stringField(obj, op, 'dst')) ? ipv6Field : ipv4Field;
      return { op, protocol, src: family(obj, op, 'src'), srcPort: port('srcPort'), dst: family(obj, op, 'dst'), dstPort: port('dstPort'), from };
    }
    case 'captureStart': {
      const file = stringField(obj, op, 'file');
      if (!file.startsWith('/')) throw new ControlError(ControlErrorCode.invalidField, `${op}: file must be an absolute path, got '${file}'`);
      const seconds = obj.seconds;
      if (seconds !== undefined && (typeof seconds !== 'number' || !(seconds > 0) || seconds > 86400)) {
        throw new ControlError(ControlErrorCode.invalidField, `${op}: seconds must be a number from 0 to 86400`);
      }
      const req: CaptureStartRequest = { op, port: stringField(obj, op, 'port'), file };
      if (seconds !== undefined) req.seconds = seconds;
      return req;
    }
    case 'delPort':
      return { op, ...ids(obj, op) };
    case 'checkPort': {
      const req: CheckPortRequest = { op, ...ids(obj, op) };
      if (present(obj, 'ip')) req.ip = ipv4Field(obj, op, 'ip');
      if (present(obj, 'ip6')) req.ip6 = ipv6Field(obj, op, 'ip6');
      if (req.ip === undefined && req.ip6 === undefined) throw new ControlError(ControlErrorCode.missingField, `${op}: field 'ip' or 'ip6' is required`);
      return req;
    }
    case 'addPort': {
      const { containerId, ifName } = ids(obj, op);
      const netns = stringField(obj, op, 'netns');
      if (!netns.startsWith('/')) throw new ControlError(ControlErrorCode.invalidField, `${op}: netns must be an absolute path, got '${netns}'`);
      const v4 = family(obj, op, V4_KEYS, false);
      const v6 = family(obj, op, V6_KEYS, true);
      if (v4 === null && v6 === null) throw new ControlError(ControlErrorCode.missingField, `${op}: field 'ip' or 'ip6' is required (a pod has an IPv4 address, an IPv6 address or both)`);
      const req: AddPortRequest = { op, containerId, ifName, netns };
      if (v4 !== null) [req.ip, req.prefixLength, req.gateway] = v4;
      if (v6 !== null) [req.ip6, req.prefixLength6, req.gateway6] = v6;
      const podName = optionalString(obj, op, 'podName');
      const podNamespace = optionalString(obj, op, 'podNamespace');
      if (podName !== undefined) req.podName = podName;
      if (podNamespace !== undefined) req.podNamespace = podNamespace;
      const network = optionalString(obj, op, 'network');
      if (network !== undefined) req.network = network;
      return req;
    }
    default:
      throw new ControlError(ControlErrorCode.unknownOp, `unknown op '${op}' (known: status, addPort, delPort, checkPort, listPorts, stats, captureStart, captureStop, trace)`);
  }
}

export function encodeError(code: ControlErrorCode, message: string): string {
  return `${JSON.stringify({ ok: false, error: { code, message } })}\n`;
}

export function encodeOk<Op extends ControlOp>(body: ControlResponseOf<Op>): string {
  return `${JSON.stringify({ ok: true, ...body })}\n`;
}

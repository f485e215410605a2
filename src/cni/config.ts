// The network configuration a runtime streams on stdin (CNI spec, "Plugin configuration
// object"): decoding (code 6), version negotiation (code 1) and validation (code 7, or 2
// for a field we do not support), each error naming the field.
import { parseCidr, type Cidr } from '../wire/address.ts';
import { parseIpv4 } from '../wire/address.ts';
import { CniCode, CniError } from './errors.ts';

/** Versions whose result format we produce; 0.1.0/0.2.0 used the old ip4/ip6 shape. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export const LATEST_VERSION = '1.1.0';
export const DEFAULT_CONTROL_SOCKET = '/run/tapir/agent.sock';
/** Where host-local (and we, the same way) keep allocations: the spec's /var/lib/cni. */
export const DEFAULT_IPAM_DATA_DIR = '/var/lib/cni/networks';
export const TAPIR_IPAM = 'tapir-ipam';

export interface TapirIpamConfig {
  type: typeof TAPIR_IPAM;
  /** Absent: the agent's podCIDR (asked with `status`). */
  subnet: Cidr | null;
  gateway: number | null;
  rangeStart: number | null;
  rangeEnd: number | null;
  dataDir: string;
  routes: ConfigRoute[];
}

export interface DelegatedIpamConfig { type: string }

export interface ConfigRoute { dst: string; gw?: string }

export interface NetConf {
  cniVersion: string;
  name: string;
  type: string;
  controlSocket: string;
  agentTimeoutMs: number | undefined;
  ipam: TapirIpamConfig | DelegatedIpamConfig;
  dns: Record<string, unknown> | undefined;
  prevResult: Record<string, unknown> | undefined;
  /** GC only: `cni.dev/valid-attachments` as "containerId/ifName" keys. */
  validAttachments: Set<string> | undefined;
  /** The object exactly as received: passed on unchanged to delegated plugins. */
  raw: Record<string, unknown>;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function attachmentKey(containerId: string, ifName: string): string {
  return `${containerId}/${ifName}`;
}

const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
type Raw = Record<string, unknown>;

export function decodeJson(text: string, what: string): Raw {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CniCode.decode, `failed to decode ${what}`, `not valid JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new CniError(CniCode.decode, `failed to decode ${what}`, 'expected a JSON object');
  }
  return raw as Raw;
}

function invalid(field: string, problem: string): never {
  throw new CniError(CniCode.invalidConfig, `invalid network configuration: ${field} ${problem}`, `field '${field}' ${problem}`);
}

function requiredString(obj: Raw, key: string, where: string): string {
  const v = obj[key];
  if (v === undefined) invalid(where, 'is required');
  if (typeof v !== 'string' || v === '') invalid(where, 'must be a non-empty string');
  return v;
}

function optionalIpv4(obj: Raw, key: string, where: string): number | null {
  if (obj[key] === undefined) return null;
  const text = requiredString(obj, key, where);
  const a = parseIpv4(text);
  if (a === undefined) return invalid(where, `'${text}' is not an IPv4 address`);
  return a;
}

/** Checks cniVersion against what we support and what the command needs. */
export function checkVersion(version: string, command: string): void {
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(version)) {
    throw new CniError(CniCode.incompatibleVersion, `incompatible CNI versions: config is ${version}`,
      `tapir-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const min = command === 'CHECK' ? '0.4.0' : command === 'GC' || command === 'STATUS' ? '1.1.0' : '0.3.0';
  if (compareVersions(version, min) < 0) {
    throw new CniError(CniCode.incompatibleVersion, `config version ${version} does not allow ${command}`, `${command} needs cniVersion ${min} or later`);
  }
}

export function parseNetConf(text: string, command: string): NetConf {
  const raw = decodeJson(text, 'network configuration from stdin');
  const cniVersion = requiredString(raw, 'cniVersion', 'cniVersion');
  checkVersion(cniVersion, command);
  const name = requiredString(raw, 'name', 'name');
  if (!NETWORK_NAME.test(name)) invalid('name', `'${name}' must start with a letter or digit followed by letters, digits, '_', '.' or '-'`);
  const type = requiredString(raw, 'type', 'type');
  const controlSocket = raw.controlSocket === undefined ? DEFAULT_CONTROL_SOCKET : requiredString(raw, 'controlSocket', 'controlSocket');
  if (!controlSocket.startsWith('/')) invalid('controlSocket', `'${controlSocket}' must be an absolute path`);
  let agentTimeoutMs: number | undefined;
  if (raw.agentTimeoutMs !== undefined) {
    const t = raw.agentTimeoutMs;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 600_000) invalid('agentTimeoutMs', 'must be an integer from 1 to 600000');
    agentTimeoutMs = t;
  }
  const ipamRaw = raw.ipam === undefined ? { type: TAPIR_IPAM } : raw.ipam;
  if (ipamRaw === null || typeof ipamRaw !== 'object' || Array.isArray(ipamRaw)) invalid('ipam', 'must be an object');
  const ipam = parseIpam(ipamRaw as Raw);
  const dns = optionalObject(raw, 'dns');
  const prevResult = optionalObject(raw, 'prevResult');
  let validAttachments: Set<string> | undefined;
  if (command === 'GC') {
    // libcni 1.1 also sends the list as `cni.dev/attachments` (containernetworking/cni#1101).
    // Absent is an error, not "nothing is valid": that reading would delete every pod's port.
    const list = raw['cni.dev/valid-attachments'] ?? raw['cni.dev/attachments'];
    if (list === undefined) invalid('cni.dev/valid-attachments', 'is required for GC');
    if (!Array.isArray(list)) invalid('cni.dev/valid-attachments', 'must be a list of {containerID, ifname}');
    validAttachments = new Set(list.map((a: unknown, i: number) => {
      const o = a as Raw | null;
      if (o === null || typeof o !== 'object' || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
        invalid(`cni.dev/valid-attachments[${i}]`, 'must be an object with string fields containerID and ifname');
      }
      return attachmentKey(o.containerID, o.ifname);
    }));
  }
  return { cniVersion, name, type, controlSocket, agentTimeoutMs, ipam, dns, prevResult, validAttachments, raw };
}

function optionalObject(raw: Raw, key: string): Raw | undefined {
  const v = raw[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) invalid(key, 'must be an object');
  return v as Raw;
}

const TAPIR_IPAM_FIELDS = new Set(['type', 'subnet', 'gateway', 'rangeStart', 'rangeEnd', 'dataDir', 'routes']);

function parseIpam(ipam: Raw): TapirIpamConfig | DelegatedIpamConfig {
  const type = requiredString(ipam, 'type', 'ipam.type');
  if (type !== TAPIR_IPAM) {
    if (type.includes('/')) invalid('ipam.type', `'${type}' must be a plugin name found in CNI_PATH, not a path`);
    return { type };
  }
  for (const key of Object.keys(ipam)) {
    if (!TAPIR_IPAM_FIELDS.has(key)) {
      throw new CniError(CniCode.unsupportedField, `unsupported field in network configuration: ipam.${key}=${JSON.stringify(ipam[key])}`,
        `tapir-ipam understands ${[...TAPIR_IPAM_FIELDS].join(', ')}`);
    }
  }
  let subnet: Cidr | null = null;
  if (ipam.subnet !== undefined) {
    const text = requiredString(ipam, 'subnet', 'ipam.subnet');
    subnet = parseCidr(text) ?? null;
    if (subnet === null) return invalid('ipam.subnet', `'${text}' is not an IPv4 CIDR like 10.244.1.0/24`);
    if (subnet.prefixLength > 30) invalid('ipam.subnet', `'${text}' leaves no room for a gateway and pods (use /30 or shorter)`);
  }
  const dataDir = ipam.dataDir === undefined ? DEFAULT_IPAM_DATA_DIR : requiredString(ipam, 'dataDir', 'ipam.dataDir');
  if (!dataDir.startsWith('/')) invalid('ipam.dataDir', `'${dataDir}' must be an absolute path`);
  const routes: ConfigRoute[] = [];
  if (ipam.routes !== undefined) {
    if (!Array.isArray(ipam.routes)) invalid('ipam.routes', 'must be a list of {dst, gw?}');
    ipam.routes.forEach((r: unknown, i: number) => {
      const o = r as Raw;
      const where = `ipam.routes[${i}]`;
      if (o === null || typeof o !== 'object') invalid(where, 'must be an object');
      const dst = requiredString(o, 'dst', `${where}.dst`);
      if (parseCidr(dst) === undefined) invalid(`${where}.dst`, `'${dst}' is not an IPv4 CIDR`);
      const gw = optionalIpv4(o, 'gw', `${where}.gw`);
      routes.push(gw === null ? { dst } : { dst, gw: o.gw as string });
    });
  }
  return {
    type: TAPIR_IPAM,
    subnet,
    gateway: optionalIpv4(ipam, 'gateway', 'ipam.gateway'),
    rangeStart: optionalIpv4(ipam, 'rangeStart', 'ipam.rangeStart'),
    rangeEnd: optionalIpv4(ipam, 'rangeEnd', 'ipam.rangeEnd'),
    dataDir,
    routes,
  };
}

// The network configuration a runtime streams on stdin (CNI spec, "Plugin configuration
// object"): decoding (code 6), version negotiation (code 1) and validation (code 7, or 2
// for a field we do not support), every problem named with its field path.
import { Fields, Problems, checkCidr, isMapping, typeName, type Raw } from '../config/fields.ts';
import type { Cidr } from '../wire/address.ts';
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

export function decodeJson(text: string, what: string): Raw {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CniCode.decode, `failed to decode ${what}`, `not valid JSON: ${(err as Error).message}`);
  }
  if (!isMapping(raw)) throw new CniError(CniCode.decode, `failed to decode ${what}`, 'expected a JSON object');
  return raw;
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

/**
 * Reads the configuration with the shared field reader: every problem, each with its
 * field path, in one error (code 7; code 2 when the only problems are fields tapir-ipam
 * does not know). Unknown top-level keys are not problems: the spec lets a runtime add
 * its own (name, cniVersion, runtimeConfig, prevResult, cni.dev/...), `args` is to be
 * ignored when not understood, and the object is handed on whole to a delegated IPAM
 * plugin, whose fields it may carry.
 */
export function parseNetConf(text: string, command: string): NetConf {
  const raw = decodeJson(text, 'network configuration from stdin');
  const problems = new Problems('', []);
  const f = new Fields(raw, '', problems);
  // The version first: it says how to read the rest, and which commands exist.
  const cniVersion = f.string('cniVersion', true);
  if (cniVersion !== '') checkVersion(cniVersion, command);
  const name = f.string('name', true);
  if (name !== '' && !NETWORK_NAME.test(name)) f.fail('name', `${JSON.stringify(name)} must start with a letter or digit followed by letters, digits, '_', '.' or '-'`);
  const type = f.string('type', true);
  const controlSocket = absolutePath(f, 'controlSocket', DEFAULT_CONTROL_SOCKET);
  const agentTimeoutMs = f.has('agentTimeoutMs') ? f.int('agentTimeoutMs', 1, 600_000, 0) : undefined;
  const unsupported: string[] = [];
  const ipamFields = f.has('ipam') ? f.map('ipam') : new Fields({ type: TAPIR_IPAM }, 'ipam', problems);
  const ipam = ipamFields === undefined || !isMapping(ipamFields.value) ? null : parseIpam(ipamFields, unsupported);
  const dns = optionalObject(f, 'dns');
  const prevResult = optionalObject(f, 'prevResult');
  let validAttachments: Set<string> | undefined;
  if (command === 'GC') {
    // libcni 1.1 also sends the list as `cni.dev/attachments` (containernetworking/cni#1101).
    // Absent or null means no attachment of this network is valid: libcni (1.2.3, the
    // reference client) leaves the key out when its list is empty, as after cnitool's gc
    // has deleted every cached attachment. What keeps this from costing other pods is
    // the scope: GC removes only ports and addresses of the network it is given.
    const key = f.has('cni.dev/valid-attachments') || !f.has('cni.dev/attachments') ? 'cni.dev/valid-attachments' : 'cni.dev/attachments';
    validAttachments = new Set();
    for (const item of f.list(key)) {
      const a = new Fields(item.value, item.path, problems);
      if (!isMapping(item.value)) continue;
      const containerId = a.string('containerID', true);
      const ifName = a.string('ifname', true);
      validAttachments.add(attachmentKey(containerId, ifName));
    }
  }
  if (problems.list.length > 0) {
    const all = [...problems.list, ...unsupported.map((u) => `unsupported field ${u}`)];
    throw new CniError(CniCode.invalidConfig, `invalid network configuration: ${all[0]}${all.length > 1 ? ` (and ${all.length - 1} more problem(s))` : ''}`, all.join('; '));
  }
  if (unsupported.length > 0) {
    throw new CniError(CniCode.unsupportedField, `unsupported field in network configuration: ${unsupported.join(', ')}`,
      `tapir-ipam understands ${TAPIR_IPAM_FIELDS.join(', ')}`);
  }
  return { cniVersion, name, type, controlSocket, agentTimeoutMs, ipam: ipam!, dns, prevResult, validAttachments, raw };
}

/** An absolute path; `fallback` when absent. */
function absolutePath(f: Fields, key: string, fallback: string): string {
  if (!f.has(key)) return fallback;
  const v = f.string(key);
  if (typeof f.value[key] === 'string' && !v.startsWith('/')) f.fail(key, `${JSON.stringify(v)} must be an absolute path`);
  return v;
}

function optionalObject(f: Fields, key: string): Raw | undefined {
  if (!f.has(key)) return undefined;
  const v = f.value[key];
  if (!isMapping(v)) {
    f.fail(key, `must be an object, not ${typeName(v)}`);
    return undefined;
  }
  return v;
}

const TAPIR_IPAM_FIELDS = ['type', 'subnet', 'gateway', 'rangeStart', 'rangeEnd', 'dataDir', 'routes'] as const;

/** Fields tapir-ipam does not know go to `unsupported` as key=value (spec, code 2: name both). */
function parseIpam(ipam: Fields, unsupported: string[]): TapirIpamConfig | DelegatedIpamConfig {
  const type = ipam.string('type', true);
  if (type !== TAPIR_IPAM) {
    if (type.includes('/')) ipam.fail('type', `${JSON.stringify(type)} must be a plugin name found in CNI_PATH, not a path`);
    return { type };
  }
  for (const key of Object.keys(ipam.value)) {
    if (!(TAPIR_IPAM_FIELDS as readonly string[]).includes(key)) unsupported.push(`${ipam.pathOf(key)}=${JSON.stringify(ipam.value[key])}`);
  }
  const subnet = ipam.cidr('subnet') ?? null;
  if (subnet !== null && subnet.prefixLength > 30) ipam.fail('subnet', `${subnet} leaves no room for a gateway and pods (use /30 or shorter)`);
  const routes: ConfigRoute[] = [];
  for (const r of ipam.maps('routes')) {
    const dst = r.string('dst', true);
    if (dst !== '') checkCidr(dst, r.pathOf('dst'), ipam.problems);
    const gw = r.ipv4('gw');
    routes.push(gw === undefined ? { dst } : { dst, gw: r.value.gw as string });
  }
  return {
    type: TAPIR_IPAM,
    subnet,
    gateway: ipam.ipv4('gateway') ?? null,
    rangeStart: ipam.ipv4('rangeStart') ?? null,
    rangeEnd: ipam.ipv4('rangeEnd') ?? null,
    dataDir: absolutePath(ipam, 'dataDir', DEFAULT_IPAM_DATA_DIR),
    routes,
  };
}

// The network configuration a runtime streams on stdin (CNI spec, "Plugin configuration
// object"): decoding (code 6), version negotiation (code 1) and validation (code 7, or 2
// for a field we do not support), every problem named with its field path.
import { Fields, Problems, isMapping, typeName, type Raw } from '../config/fields.ts';
import { Cidr6, isIpv6Text, parseCidr, parseCidr6, parseIpv4, type Cidr } from '../wire/address.ts';
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
  /**
   * The range sets, one address each (host-local's `ranges`: at most one IPv4 and one
   * IPv6 set, one range per set), or the single `subnet` form as one set. Empty: the
   * agent's podCIDR, and its podCIDRv6 when it has one (asked with `status`).
   */
  ranges: RangeConfig[];
  dataDir: string;
  routes: ConfigRoute[];
}

/** One range of `ranges` (or the single form); addresses as text of the range's family. */
export interface RangeConfig {
  family: 4 | 6;
  /** Null: the agent's pod range of this family (the single form without `subnet`). */
  subnet: Cidr | Cidr6 | null;
  gateway: string | null;
  rangeStart: string | null;
  rangeEnd: string | null;
  /** Index of its set in `ranges` (0 in the single form): host-local's last_reserved_ip.N. */
  set: number;
  /** The field path, for errors found later (the gateway outside the subnet...). */
  path: string;
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

const TAPIR_IPAM_FIELDS = ['type', 'subnet', 'gateway', 'rangeStart', 'rangeEnd', 'ranges', 'dataDir', 'routes'] as const;
const RANGE_FIELDS = ['subnet', 'gateway', 'rangeStart', 'rangeEnd'] as const;

/** A prefix of either family; a problem (naming the field) when it is neither. */
function anyCidr(f: Fields, key: string, required: boolean): Cidr | Cidr6 | undefined {
  const v = f.value[key];
  if (v === undefined || v === null) {
    if (required) f.missing(key);
    return undefined;
  }
  if (typeof v !== 'string') {
    f.fail(key, `must be a prefix string such as "10.244.1.0/24" or "fd00:10:244:1::/64", not ${typeName(v)}`);
    return undefined;
  }
  const cidr = v.includes(':') ? parseCidr6(v) : parseCidr(v);
  if (cidr === undefined) f.fail(key, `${JSON.stringify(v)} is not an IPv4 or IPv6 prefix such as "10.244.1.0/24" or "fd00:10:244:1::/64"`);
  return cidr;
}

/** An address of `family` (a problem naming the field when it is not one). */
function address(f: Fields, key: string, family: 4 | 6): string | null {
  const v = f.value[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') {
    f.fail(key, `must be an IPv${family} address string, not ${typeName(v)}`);
    return null;
  }
  const ok = family === 4 ? parseIpv4(v) !== undefined : isIpv6Text(v);
  if (!ok) {
    const other = family === 4 ? isIpv6Text(v) : parseIpv4(v) !== undefined;
    f.fail(key, other ? `${JSON.stringify(v)} is an IPv${family === 4 ? 6 : 4} address, but the range is IPv${family}` : `${JSON.stringify(v)} is not an IPv${family} address`);
    return null;
  }
  return v;
}

const familyOf = (c: Cidr | Cidr6): 4 | 6 => (c instanceof Cidr6 ? 6 : 4);

/** One range: subnet (required in `ranges`), gateway, rangeStart, rangeEnd, all of the subnet's family. */
function readRange(r: Fields, set: number, family: 4 | 6 | null, requireSubnet: boolean): RangeConfig | null {
  const subnet = anyCidr(r, 'subnet', requireSubnet) ?? null;
  if (subnet === null && requireSubnet) return null;
  const fam = subnet === null ? family ?? 4 : familyOf(subnet);
  if (subnet !== null) {
    const max = fam === 4 ? 30 : 126;
    if (subnet.prefixLength > max) r.fail('subnet', `${subnet} leaves no room for a gateway and pods (use /${max} or shorter)`);
  }
  return { family: fam, subnet, gateway: address(r, 'gateway', fam), rangeStart: address(r, 'rangeStart', fam), rangeEnd: address(r, 'rangeEnd', fam), set, path: r.path };
}

/**
 * host-local's `ranges`: a list of range sets, each a list of ranges of one family, one
 * address per set. tapir-ipam gives a pod at most one address per family (the agent's
 * pod has one eth0, one IPv4 and one IPv6 gateway), so at most one set per family, and
 * one range per set.
 */
function readRanges(ipam: Fields, unsupported: string[]): RangeConfig[] {
  const out: RangeConfig[] = [];
  const sets = ipam.list('ranges');
  if (Array.isArray(ipam.value.ranges) && sets.length === 0) ipam.fail('ranges', 'must not be empty: give one range set per address family, such as [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]');
  sets.forEach((set, i) => {
    if (!Array.isArray(set.value)) {
      ipam.problems.add(set.path, `must be a list of ranges (a range set), not ${typeName(set.value)}`);
      return;
    }
    if (set.value.length === 0) {
      ipam.problems.add(set.path, 'must hold a range');
      return;
    }
    if (set.value.length > 1) ipam.problems.add(`${set.path}[1]`, 'tapir-ipam takes one range per set, as it gives one address per family (narrow the one range with rangeStart and rangeEnd)');
    const first = set.value[0];
    const r = new Fields(first, `${set.path}[0]`, ipam.problems);
    if (!isMapping(first)) {
      ipam.problems.add(r.path, `must be a range object with a subnet, not ${typeName(first)}`);
      return;
    }
    for (const key of Object.keys(first)) {
      if (!(RANGE_FIELDS as readonly string[]).includes(key)) unsupported.push(`${r.pathOf(key)}=${JSON.stringify(first[key])}`);
    }
    const range = readRange(r, i, null, true);
    if (range === null) return;
    const twin = out.find((o) => o.family === range.family);
    if (twin !== undefined) {
      ipam.problems.add(set.path, `a second IPv${range.family} range set (the first is ${twin.path}): tapir-ipam gives a pod one address per family`);
      return;
    }
    out.push(range);
  });
  return out;
}

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
  let ranges: RangeConfig[];
  if (ipam.has('ranges')) {
    for (const key of RANGE_FIELDS) if (ipam.has(key)) ipam.fail(key, 'give either ipam.ranges or the single-range fields (subnet, gateway, rangeStart, rangeEnd), not both');
    ranges = readRanges(ipam, unsupported);
  } else {
    // The single form: one range, IPv4 unless the subnet is IPv6; without a subnet, the
    // agent's pod ranges (its gateway, rangeStart and rangeEnd then IPv4 ones).
    const single = readRange(ipam, 0, 4, false);
    ranges = single === null || (single.subnet === null && single.gateway === null && single.rangeStart === null && single.rangeEnd === null) ? [] : [single];
  }
  const routes: ConfigRoute[] = [];
  for (const r of ipam.maps('routes')) {
    const dst = r.string('dst', true);
    let family: 4 | 6 = 4;
    if (dst !== '') {
      const cidr = anyCidr(r, 'dst', true);
      if (cidr !== undefined) family = familyOf(cidr);
    }
    const gw = address(r, 'gw', family);
    routes.push(gw === null ? { dst } : { dst, gw });
  }
  return {
    type: TAPIR_IPAM,
    ranges,
    dataDir: absolutePath(ipam, 'dataDir', DEFAULT_IPAM_DATA_DIR),
    routes,
  };
}

// The CNI Result (spec "Success" / "ADD Success") in one internal shape, read from any
// version we support (prevResult, a delegated IPAM plugin's answer) and written for the
// configuration's cniVersion:
//   0.3.x, 0.4.0: ips[] carry "version": "4"|"6";
//   1.0.0:        no "version"; interfaces {name, mac, sandbox};
//   1.1.0:        interfaces may add mtu/socketPath/pciID, routes mtu/advmss/priority/table/scope.
import { compareVersions } from './config.ts';
import { CniCode, CniError } from './errors.ts';

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
  socketPath?: string;
  pciID?: string;
}
export interface CniIp { address: string; gateway?: string; interface?: number }
export interface CniRoute { dst: string; gw?: string; mtu?: number; advmss?: number; priority?: number; table?: number; scope?: number }
export interface CniDns { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] }
export interface CniResult { interfaces: CniInterface[]; ips: CniIp[]; routes: CniRoute[]; dns: CniDns }

type Raw = Record<string, unknown>;

function bad(where: string, problem: string): never {
  throw new CniError(CniCode.decode, `failed to decode ${where}`, problem);
}

function optString(o: Raw, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') bad(where, `${key} must be a string`);
  return v;
}

function optNumber(o: Raw, key: string, where: string): number | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) bad(where, `${key} must be a non-negative integer`);
  return v;
}

function list(o: Raw, key: string, where: string): Raw[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) bad(where, `${key} must be a list`);
  return v.map((e, i) => {
    if (e === null || typeof e !== 'object' || Array.isArray(e)) bad(where, `${key}[${i}] must be an object`);
    return e as Raw;
  });
}

function assign<T extends object>(target: T, key: keyof T, value: unknown): void {
  if (value !== undefined) (target as Record<keyof T, unknown>)[key] = value;
}

/** Reads a Result of any supported version; `where` names it in errors ("prevResult"). */
export function parseResult(raw: Raw, where: string): CniResult {
  const interfaces = list(raw, 'interfaces', where).map((o, i) => {
    const name = optString(o, 'name', `${where}.interfaces[${i}]`);
    if (name === undefined) bad(where, `interfaces[${i}].name is required`);
    const itf: CniInterface = { name };
    assign(itf, 'mac', optString(o, 'mac', where));
    assign(itf, 'sandbox', optString(o, 'sandbox', where));
    assign(itf, 'mtu', optNumber(o, 'mtu', where));
    assign(itf, 'socketPath', optString(o, 'socketPath', where));
    assign(itf, 'pciID', optString(o, 'pciID', where));
    return itf;
  });
  const ips = list(raw, 'ips', where).map((o, i) => {
    const address = optString(o, 'address', where);
    if (address === undefined || !address.includes('/')) bad(where, `ips[${i}].address must be an address in CIDR notation`);
    const ip: CniIp = { address };
    assign(ip, 'gateway', optString(o, 'gateway', where));
    const index = optNumber(o, 'interface', where);
    if (index !== undefined && index >= interfaces.length) bad(where, `ips[${i}].interface ${index} is not an index into interfaces (${interfaces.length} entries)`);
    assign(ip, 'interface', index);
    return ip;
  });
  const routes = list(raw, 'routes', where).map((o, i) => {
    const dst = optString(o, 'dst', where);
    if (dst === undefined) bad(where, `routes[${i}].dst is required`);
    const r: CniRoute = { dst };
    assign(r, 'gw', optString(o, 'gw', where));
    for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) assign(r, k, optNumber(o, k, where));
    return r;
  });
  const dnsRaw = raw.dns;
  const dns: CniDns = dnsRaw !== null && typeof dnsRaw === 'object' && !Array.isArray(dnsRaw) ? { ...(dnsRaw as CniDns) } : {};
  return { interfaces, ips, routes, dns };
}

function ipVersion(address: string): '4' | '6' {
  return address.includes(':') ? '6' : '4';
}

/** The Result as printed for `cniVersion` (an already validated supported version). */
export function formatResult(r: CniResult, cniVersion: string): Raw {
  const v11 = compareVersions(cniVersion, '1.1.0') >= 0;
  const v10 = compareVersions(cniVersion, '1.0.0') >= 0;
  const interfaces = r.interfaces.map((i) => {
    const out: Raw = { name: i.name };
    if (i.mac !== undefined) out.mac = i.mac;
    if (v11 && i.mtu !== undefined) out.mtu = i.mtu;
    if (i.sandbox !== undefined) out.sandbox = i.sandbox;
    if (v11 && i.socketPath !== undefined) out.socketPath = i.socketPath;
    if (v11 && i.pciID !== undefined) out.pciID = i.pciID;
    return out;
  });
  const ips = r.ips.map((ip) => {
    const out: Raw = v10 ? {} : { version: ipVersion(ip.address) };
    if (ip.interface !== undefined) out.interface = ip.interface;
    out.address = ip.address;
    if (ip.gateway !== undefined) out.gateway = ip.gateway;
    return out;
  });
  const routes = r.routes.map((rt) => {
    const out: Raw = { dst: rt.dst };
    if (rt.gw !== undefined) out.gw = rt.gw;
    if (v11) for (const k of ['mtu', 'advmss', 'priority', 'table', 'scope'] as const) if (rt[k] !== undefined) out[k] = rt[k];
    return out;
  });
  const out: Raw = { cniVersion };
  if (interfaces.length > 0) out.interfaces = interfaces;
  out.ips = ips;
  if (routes.length > 0) out.routes = routes;
  out.dns = r.dns;
  return out;
}

/**
 * Chaining (spec "Chained Plugins"): a plugin that is not first must pass the previous
 * result on or modify it, never ignore it. We append our interface and give our
 * addresses its index, so plugins before us keep what they reported.
 */
export function appendAttachment(prev: CniResult | null, own: CniResult): CniResult {
  if (prev === null) return own;
  const offset = prev.interfaces.length;
  const routes = [...prev.routes];
  for (const r of own.routes) if (!routes.some((p) => p.dst === r.dst && p.gw === r.gw)) routes.push(r);
  return {
    interfaces: [...prev.interfaces, ...own.interfaces],
    ips: [...prev.ips, ...own.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }))],
    routes,
    dns: Object.keys(own.dns).length > 0 ? own.dns : prev.dns,
  };
}

// A ServiceSnapshot as JSON: the one written form, readable by eye and diffable (dotted
// addresses, protocol names, one line of text per endpoint: "10.244.1.5:8080 node=a
// zone=- local ready serving", "ip:port" in the cluster and external lists, names in
// `key`). The golden files of test/fixtures/control are written in it, `tapir trace
// --snapshot FILE` reads it, and it reads back into the same snapshot. For hand-written
// snapshots the reader also takes endpoints as objects, addresses as uint32 and
// protocols as 6/17. Errors name the file and the field (ports[3].clusterEndpoints[0])
// and say what was expected. Never on the hot path. The IPv6 half (ports6,
// nodePortAddresses6) is written the same way with IPv6 text ("[fd00::5]:8080" where a
// port follows), and left out when empty.
import { ipv4ToString, ipv6ToString, parseIpv4, parseIpv6 } from '../wire/address.ts';
import { L4Protocol, type EndpointSpec, type ServicePortSpec, type ServiceSnapshot } from './service-snapshot.ts';

/** How one family's addresses are written and read. */
interface Codec<A> {
  text(a: A): string;
  /** "ip:port", "[ip]:port". */
  hostPort(a: A, port: number): string;
  read(r: Reader, v: unknown, path: string): A;
  /** The headless service's cluster IP. */
  none: A;
  bits: number;
}

const V4: Codec<number> = {
  text: ipv4ToString, hostPort: (a, port) => `${ipv4ToString(a)}:${port}`, read: (r, v, path) => r.ip(v, path), none: 0, bits: 32,
};
const V6: Codec<string> = {
  text: (a) => a, hostPort: (a, port) => `[${a}]:${port}`, read: (r, v, path) => r.ip6(v, path), none: '', bits: 128,
};

export interface ServicePortJson {
  key: string;
  protocol: string;
  clusterIP: string;
  port: number;
  nodePort: number;
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  affinityTimeoutSeconds: number;
  lb: string;
  externalLocal: boolean;
  internalLocal: boolean;
  healthCheckNodePort: number;
  localReadyEndpoints: number;
  /** "ip:port node=N zone=Z [local] ready|serving|terminating..." */
  allEndpoints: string[];
  /** "ip:port" */
  clusterEndpoints: string[];
  externalEndpoints: string[];
}

export interface ServiceSnapshotJson {
  generation: number;
  nodePortAddresses: string[];
  ports: ServicePortJson[];
  nodePortAddresses6?: string[];
  ports6?: ServicePortJson[];
}

export function endpointToText(ep: EndpointSpec): string {
  return endpointTextOf(ep, V4);
}

function endpointTextOf<A>(ep: EndpointSpec<A>, c: Codec<A>): string {
  // Where the endpoint is (local) and what state it is in are separate words: a local
  // endpoint that is neither ready nor serving is "local not-serving", as the same
  // endpoint on another node is "not-serving".
  const conditions = [ep.ready ? 'ready' : '', ep.serving ? 'serving' : '', ep.terminating ? 'terminating' : ''].filter((f) => f !== '');
  return `${c.hostPort(ep.ip, ep.port)} node=${ep.nodeName || '-'} zone=${ep.zone || '-'} ${ep.local ? 'local ' : ''}${conditions.join(' ') || 'not-serving'}`;
}

export function servicePortToJson(p: ServicePortSpec): ServicePortJson {
  return portToJson(p, V4);
}

function portToJson<A>(p: ServicePortSpec<A>, c: Codec<A>): ServicePortJson {
  const address = (ep: EndpointSpec<A>): string => c.hostPort(ep.ip, ep.port);
  return {
    key: p.key,
    protocol: p.protocol === L4Protocol.UDP ? 'UDP' : 'TCP',
    clusterIP: c.text(p.clusterIP),
    port: p.port,
    nodePort: p.nodePort,
    externalIPs: p.externalIPs.map((a) => c.text(a)),
    loadBalancerIPs: p.loadBalancerIPs.map((a) => c.text(a)),
    loadBalancerSourceRanges: p.loadBalancerSourceRanges.map(([network, length]) => `${c.text(network)}/${length}`),
    affinityTimeoutSeconds: p.affinityTimeoutSeconds,
    lb: p.lb,
    externalLocal: p.externalLocal,
    internalLocal: p.internalLocal,
    healthCheckNodePort: p.healthCheckNodePort,
    localReadyEndpoints: p.localReadyEndpoints,
    allEndpoints: p.allEndpoints.map((ep) => endpointTextOf(ep, c)),
    clusterEndpoints: p.clusterEndpoints.map(address),
    externalEndpoints: p.externalEndpoints.map(address),
  };
}

export function snapshotToJson(s: ServiceSnapshot): ServiceSnapshotJson {
  const json: ServiceSnapshotJson = { generation: s.generation, nodePortAddresses: s.nodePortAddresses.map(ipv4ToString), ports: s.ports.map(servicePortToJson) };
  if ((s.nodePortAddresses6 ?? []).length > 0) json.nodePortAddresses6 = [...s.nodePortAddresses6!];
  if ((s.ports6 ?? []).length > 0) json.ports6 = s.ports6!.map((p) => portToJson(p, V6));
  return json;
}
import { TapirError } from '../errors/tapir-error.ts';

export class SnapshotError extends TapirError {
  readonly code = 'TAPIR_SNAPSHOT';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

type Json = unknown;

class Reader {
  readonly #where: string;
  constructor(where: string) {
    this.#where = where;
  }

  fail(path: string, what: string): never {
    throw new SnapshotError(`${this.#where}: ${path}: ${what}`);
  }

  obj(v: Json, path: string): Record<string, Json> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, 'expected an object');
    return v as Record<string, Json>;
  }

  arr(v: Json, path: string, optional = false): Json[] {
    if (v === undefined && optional) return [];
    if (!Array.isArray(v)) this.fail(path, 'expected a list');
    return v;
  }

  str(v: Json, path: string, fallback?: string): string {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string') this.fail(path, 'expected a string');
    return v;
  }

  bool(v: Json, path: string, fallback: boolean): boolean {
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') this.fail(path, 'expected true or false');
    return v;
  }

  int(v: Json, path: string, min: number, max: number, fallback?: number): number {
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, `expected an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
    return v;
  }

  ip(v: Json, path: string): number {
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff) return v;
    if (typeof v === 'string') {
      const a = parseIpv4(v);
      if (a !== undefined) return a;
    }
    return this.fail(path, `expected an IPv4 address ("10.96.0.10"), got ${JSON.stringify(v)}`);
  }

  ip6(v: Json, path: string): string {
    const b = typeof v === 'string' ? parseIpv6(v) : null;
    if (b === null) return this.fail(path, `expected an IPv6 address ("fd00:10:96::a"), got ${JSON.stringify(v)}`);
    return ipv6ToString(b);
  }

  protocol(v: Json, path: string): 6 | 17 {
    if (v === 6 || v === 'TCP' || v === 'tcp') return 6;
    if (v === 17 || v === 'UDP' || v === 'udp') return 17;
    return this.fail(path, `expected "TCP" or "UDP", got ${JSON.stringify(v)}`);
  }

  cidr<A>(v: Json, path: string, c: Codec<A>): [A, number] {
    if (Array.isArray(v) && v.length === 2) return [c.read(this, v[0], `${path}[0]`), this.int(v[1], `${path}[1]`, 0, c.bits)];
    if (typeof v === 'string') {
      const [a, len] = v.split('/');
      return [c.read(this, a, path), len === undefined ? c.bits : this.int(Number(len), path, 0, c.bits)];
    }
    return this.fail(path, `expected a CIDR ("${c.bits === 32 ? '10.0.0.0/8' : 'fd00::/64'}"), got ${JSON.stringify(v)}`);
  }
}

function readEndpoint<A>(r: Reader, c: Codec<A>, v: Json, path: string, known: EndpointSpec<A>[] = []): EndpointSpec<A> {
  if (typeof v === 'string') return endpointText(r, c, v, path, known);
  const o = r.obj(v, path);
  return {
    ip: c.read(r, o.ip, `${path}.ip`),
    port: r.int(o.port, `${path}.port`, 1, 65535),
    nodeName: r.str(o.nodeName, `${path}.nodeName`, ''),
    local: r.bool(o.local, `${path}.local`, false),
    zone: r.str(o.zone, `${path}.zone`, ''),
    ready: r.bool(o.ready, `${path}.ready`, true),
    serving: r.bool(o.serving, `${path}.serving`, true),
    terminating: r.bool(o.terminating, `${path}.terminating`, false),
  };
}

// "ip:port [node=N] [zone=Z] [local] [ready] [serving] [terminating] [not-serving]"; a
// bare "ip:port" takes the conditions of the same endpoint in allEndpoints (`known`).
function endpointText<A>(r: Reader, c: Codec<A>, text: string, path: string, known: EndpointSpec<A>[]): EndpointSpec<A> {
  const [at, ...words] = text.trim().split(/\s+/);
  const colon = at!.lastIndexOf(':');
  if (colon < 0) r.fail(path, `expected "IP:PORT ...", got ${JSON.stringify(text)}`);
  const host = at!.slice(0, colon);
  const ip = c.read(r, host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host, path);
  const port = r.int(Number(at!.slice(colon + 1)), path, 1, 65535);
  if (words.length === 0) {
    const same = known.find((e) => e.ip === ip && e.port === port);
    if (same !== undefined) return same;
    return { ip, port, nodeName: '', local: false, zone: '', ready: true, serving: true, terminating: false };
  }
  const e: EndpointSpec<A> = { ip, port, nodeName: '', local: false, zone: '', ready: false, serving: false, terminating: false };
  for (const w of words) {
    if (w.startsWith('node=')) e.nodeName = w === 'node=-' ? '' : w.slice(5);
    else if (w.startsWith('zone=')) e.zone = w === 'zone=-' ? '' : w.slice(5);
    else if (w === 'local' || w === 'ready' || w === 'serving' || w === 'terminating') e[w] = true;
    else if (w !== 'not-serving') r.fail(path, `unknown endpoint word ${JSON.stringify(w)} (node=, zone=, local, ready, serving, terminating)`);
  }
  return e;
}

function readPort<A>(r: Reader, c: Codec<A>, v: Json, path: string): ServicePortSpec<A> {
  const o = r.obj(v, path);
  const eps = (field: string, known: EndpointSpec<A>[] = []) => r.arr(o[field], `${path}.${field}`, true).map((e, i) => readEndpoint(r, c, e, `${path}.${field}[${i}]`, known));
  const all = eps('allEndpoints');
  const lb = r.str(o.lb, `${path}.lb`, 'random');
  if (lb !== 'random' && lb !== 'maglev') r.fail(`${path}.lb`, `expected "random" or "maglev", got ${JSON.stringify(lb)}`);
  // "namespace/name:portName" when the parts are not given separately.
  const keyed = typeof o.key === 'string' ? /^([^/]*)\/([^:]*):(.*)$/.exec(o.key) : null;
  const namespace = r.str(o.namespace, `${path}.namespace`, keyed?.[1] ?? 'default');
  const name = r.str(o.name, `${path}.name`, keyed?.[2]);
  const portName = r.str(o.portName, `${path}.portName`, keyed?.[3] ?? '');
  const port: ServicePortSpec<A> = {
    key: r.str(o.key, `${path}.key`, `${namespace}/${name}:${portName}`),
    namespace, name, portName,
    protocol: r.protocol(o.protocol ?? 'TCP', `${path}.protocol`),
    clusterIP: o.clusterIP === undefined || o.clusterIP === 'None' || o.clusterIP === '' ? c.none : c.read(r, o.clusterIP, `${path}.clusterIP`),
    port: r.int(o.port, `${path}.port`, 1, 65535),
    nodePort: r.int(o.nodePort, `${path}.nodePort`, 0, 65535, 0),
    externalIPs: r.arr(o.externalIPs, `${path}.externalIPs`, true).map((a, i) => c.read(r, a, `${path}.externalIPs[${i}]`)),
    loadBalancerIPs: r.arr(o.loadBalancerIPs, `${path}.loadBalancerIPs`, true).map((a, i) => c.read(r, a, `${path}.loadBalancerIPs[${i}]`)),
    loadBalancerSourceRanges: r.arr(o.loadBalancerSourceRanges, `${path}.loadBalancerSourceRanges`, true).map((x, i) => r.cidr(x, `${path}.loadBalancerSourceRanges[${i}]`, c)),
    affinityTimeoutSeconds: r.int(o.affinityTimeoutSeconds, `${path}.affinityTimeoutSeconds`, 0, 86400, 0),
    lb,
    externalLocal: r.bool(o.externalLocal, `${path}.externalLocal`, false),
    internalLocal: r.bool(o.internalLocal, `${path}.internalLocal`, false),
    healthCheckNodePort: r.int(o.healthCheckNodePort, `${path}.healthCheckNodePort`, 0, 65535, 0),
    allEndpoints: all,
    clusterEndpoints: o.clusterEndpoints === undefined ? all.filter((e) => e.ready) : eps('clusterEndpoints', all),
    externalEndpoints: o.externalEndpoints === undefined ? all.filter((e) => e.ready) : eps('externalEndpoints', all),
    localReadyEndpoints: 0,
  };
  port.localReadyEndpoints = r.int(o.localReadyEndpoints, `${path}.localReadyEndpoints`, 0, 1 << 30, all.filter((e) => e.local && e.ready).length);
  return port;
}

/** Parses a snapshot; `where` (a file name) starts every error message. */
export function parseServiceSnapshot(text: string, where: string): ServiceSnapshot {
  const r = new Reader(where);
  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new SnapshotError(`${where}: not JSON: ${(err as Error).message}`);
  }
  const o = r.obj(doc, '(top)');
  const snapshot: ServiceSnapshot = {
    generation: r.int(o.generation, 'generation', 0, Number.MAX_SAFE_INTEGER, 0),
    ports: r.arr(o.ports, 'ports').map((p, i) => readPort(r, V4, p, `ports[${i}]`)),
    nodePortAddresses: r.arr(o.nodePortAddresses, 'nodePortAddresses', true).map((a, i) => r.ip(a, `nodePortAddresses[${i}]`)),
  };
  if (o.ports6 !== undefined) snapshot.ports6 = r.arr(o.ports6, 'ports6').map((p, i) => readPort(r, V6, p, `ports6[${i}]`));
  if (o.nodePortAddresses6 !== undefined) snapshot.nodePortAddresses6 = r.arr(o.nodePortAddresses6, 'nodePortAddresses6').map((a, i) => r.ip6(a, `nodePortAddresses6[${i}]`));
  return snapshot;
}

/** The snapshot as JSON text in the form above (parseServiceSnapshot reads it back). */
export function serviceSnapshotToJson(s: ServiceSnapshot): string {
  return JSON.stringify(snapshotToJson(s), null, 2);
}

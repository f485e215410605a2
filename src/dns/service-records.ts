// The records of one Service (Kubernetes DNS specification 1.1.0, as CoreDNS's
// kubernetes plugin answers them) and their encoding into response bodies
// (zone-writer.ts): compileService() says which names a Service gives and what each
// holds; the encoders turn one name's record set into the bytes after the question.
// KubernetesZoneRecords (kubernetes-zone-records.ts) keeps them per Service; KubernetesZone
// (kubernetes-zone.ts) answers from them.
import type { EndpointPortView, EndpointView, EndpointView6, ServiceView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import { parseIpv4, parseIpv6 } from '../wire/address.ts';
import { CLASS_IN, RrType, latin1Write } from './message.ts';
import { isPlainName, type BodyArena } from './zone-writer.ts';

/** The schema version of the Kubernetes DNS specification these records follow. */
export const DNS_SCHEMA_VERSION = '1.1.0';
/** CoreDNS gives dns-version this TTL whatever the zone's. */
const DNS_VERSION_TTL = 28800;
/** CoreDNS's SOA: refresh 7200, retry 1800, expire 86400; its TTL is min(ttl, 300). */
const SOA_REFRESH = 7200;
const SOA_RETRY = 1800;
const SOA_EXPIRE = 86400;
const SOA_MAX_TTL = 300;

/** An SRV target with the addresses its additional records give (0 / '' = none of that family). */
export interface SrvTarget { port: number; target: string; ip: number; ip6: string }

/** What one name holds while a Service is compiled; encoded into bodies right after. */
export class NameRecords {
  a: number[] | null = null;
  /** IPv6 addresses, RFC 5952 text (as the ClusterView carries them). */
  aaaa: string[] | null = null;
  srv: SrvTarget[] | null = null;
  ptr: string[] | null = null;
  txt: string | null = null;
  cname: string | null = null;
}

/** An empty non-terminal: the name exists, with no records (NODATA). */
export const EMPTY = new NameRecords();

/**
 * An endpoint's name label: its hostname, else its address with dashes (CoreDNS's
 * endpointHostname: dots, or an IPv6 address's colons, become "-": fd00--5).
 */
export function endpointHost(e: EndpointView | EndpointView6): string {
  if (e.hostname !== '') return e.hostname;
  const ip = e.ip;
  if (typeof ip === 'string') return ip.replaceAll(':', '-');
  return `${ip >>> 24}-${(ip >>> 16) & 0xff}-${(ip >>> 8) & 0xff}-${ip & 0xff}`;
}

/** The name labels of a Service's endpoints, per family: by endpoint index, '' for none. */
export interface EndpointHosts { v4: string[]; v6: string[] }

/**
 * Per endpoint of `svc` (IPv4 ones, then IPv6 ones): its name label if it is ready (a
 * publishNotReadyAddresses Service's endpoints all are) and the label is usable, else ''.
 */
export function endpointHosts(svc: ServiceView): EndpointHosts {
  const host = (e: EndpointView | EndpointView6): string => {
    if (!(e.ready || svc.publishNotReadyAddresses)) return '';
    const h = endpointHost(e);
    return h.length <= 63 && h.indexOf('.') < 0 && isPlainName(h) ? h : '';
  };
  return { v4: svc.endpoints.map(host), v6: svc.endpoints6.map(host) };
}

/** One endpoint address of either family while a Service is compiled. */
interface Endpoint { ip: number; ip6: string; ports: readonly EndpointPortView[] }

/**
 * The forward names of one Service in `zone`, into `at`; the namespace name it keeps
 * alive into `ents`; its endpoints' names (by endpoint index and family, '' for none)
 * into `endpointNames`. `hosts` from endpointHosts(). A dual-stack Service's name has
 * an A and an AAAA record, a single-stack one only its family's (the other type is
 * NODATA); a headless Service's endpoints of both families share their names.
 */
export function compileService(svc: ServiceView, zone: string, at: (name: string) => NameRecords, ents: string[], hosts: EndpointHosts, endpointNames: EndpointHosts | null): void {
  const name = `${svc.name}.${svc.namespace}.svc.${zone}`;
  if (!isPlainName(name)) return;
  if (svc.type === 'ExternalName') {
    const target = svc.externalName.toLowerCase().replace(/\.$/, '');
    // k8s: "external names that resemble IPv4 addresses are not resolved by DNS servers".
    if (!isPlainName(target) || parseIpv4(target) !== undefined) return;
    ents.push(`${svc.namespace}.svc.${zone}`);
    at(name).cname = target;
    return;
  }
  if (!svc.headless && svc.clusterIP === 0 && svc.clusterIP6 === '') return; // rejected: nothing allocated
  ents.push(`${svc.namespace}.svc.${zone}`);

  // Ready endpoints (hosts[i] !== '') by name; RFC 1035's 255 bytes on the wire.
  const named = (list: string[]): string[] => list.map((h) => (h !== '' && name.length + h.length + 1 <= 253 ? `${h}.${name}` : ''));
  const names = [...named(hosts.v4), ...named(hosts.v6)];
  const eps: Endpoint[] = [
    ...svc.endpoints.map((e) => ({ ip: e.ip, ip6: '', ports: e.ports })),
    ...svc.endpoints6.map((e) => ({ ip: 0, ip6: e.ip, ports: e.ports })),
  ];
  const add = (r: NameRecords, e: Endpoint): void => {
    if (e.ip6 === '') {
      r.a ??= [];
      if (!r.a.includes(e.ip)) r.a.push(e.ip);
    } else {
      r.aaaa ??= [];
      if (!r.aaaa.includes(e.ip6)) r.aaaa.push(e.ip6);
    }
  };
  for (let i = 0; i < eps.length; i++) if (names[i] !== '') add(at(names[i]!), eps[i]!);
  if (endpointNames !== null) {
    for (let i = 0; i < names.length; i++) (i < svc.endpoints.length ? endpointNames.v4 : endpointNames.v6).push(names[i]!);
  }

  if (!svc.headless) {
    const r = at(name);
    if (svc.clusterIP !== 0) r.a = [svc.clusterIP];
    if (svc.clusterIP6 !== '') r.aaaa = [svc.clusterIP6];
    const target = (port: number): SrvTarget => ({ port, target: name, ip: svc.clusterIP, ip6: svc.clusterIP6 });
    if (svc.ports.length > 0) r.srv = svc.ports.map((p) => target(p.port));
    for (const p of svc.ports) {
      if (p.name === '') continue;
      const srvName = `_${p.name}._${p.protocol === L4Protocol.UDP ? 'udp' : 'tcp'}.${name}`;
      if (isPlainName(srvName)) at(srvName).srv = [target(p.port)];
    }
    return;
  }
  // Headless: no ready endpoint, no name (spec 2.4.1 says NXDOMAIN).
  if (!names.some((n) => n !== '')) return;
  const r = at(name);
  for (let i = 0; i < eps.length; i++) if (names[i] !== '') add(r, eps[i]!);
  r.srv = [];
  const byPort = new Map<string, SrvTarget[]>();
  for (let i = 0; i < eps.length; i++) {
    const target = names[i]!;
    if (target === '') continue;
    const e = eps[i]!;
    for (const p of e.ports) {
      const srv = { port: p.port, target, ip: e.ip, ip6: e.ip6 };
      r.srv.push(srv);
      if (p.name === '') continue;
      const key = `_${p.name}._${p.protocol === L4Protocol.UDP ? 'udp' : 'tcp'}`;
      let list = byPort.get(key);
      if (list === undefined) byPort.set(key, (list = []));
      list.push(srv);
    }
  }
  if (r.srv.length === 0) r.srv = null;
  for (const [key, list] of byPort) {
    const srvName = `${key}.${name}`;
    if (isPlainName(srvName)) at(srvName).srv = list;
  }
}

export function encodeA(arena: BodyArena, name: string, ips: number[], ttl: number): number {
  arena.begin(name);
  for (const ip of ips) arena.a(name, ttl, ip, 'answer');
  return arena.finish();
}

export function encodeAaaa(arena: BodyArena, name: string, ips: string[], ttl: number): number {
  arena.begin(name);
  for (const ip of ips) arena.aaaa(name, ttl, parseIpv6(ip)!, 'answer');
  return arena.finish();
}

export function encodeTxt(arena: BodyArena, name: string, text: string): number {
  arena.begin(name);
  const at = arena.rr(name, RrType.TXT, DNS_VERSION_TTL);
  arena.u8(text.length);
  for (let i = 0; i < text.length; i++) arena.u8(text.charCodeAt(i));
  arena.end(at, 'answer');
  return arena.finish();
}

export function encodeNames(arena: BodyArena, name: string, type: number, targets: string[], ttl: number): number {
  arena.begin(name);
  for (const t of targets) {
    const at = arena.rr(name, type, ttl);
    arena.name(t);
    arena.end(at, 'answer');
  }
  return arena.finish();
}

export function encodeSrv(arena: BodyArena, name: string, srv: SrvTarget[], ttl: number): number {
  arena.begin(name);
  const seen = new Set<string>();
  const records = srv.filter((s) => {
    const key = `${s.target} ${s.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  // CoreDNS: weight = 100 / (records of that priority), at least 1; every priority is 0.
  const weight = Math.max(1, Math.floor(100 / records.length));
  for (const s of records) {
    const at = arena.rr(name, RrType.SRV, ttl);
    arena.u16(0);
    arena.u16(weight);
    arena.u16(s.port);
    arena.name(s.target);
    arena.end(at, 'answer');
  }
  arena.additional();
  // The targets' addresses (CoreDNS: an A for an IPv4 one, an AAAA for an IPv6 one).
  const extra = new Set<string>();
  for (const s of srv) {
    const key = `${s.target} ${s.ip} ${s.ip6}`;
    if (extra.has(key)) continue;
    extra.add(key);
    // A dual-stack ClusterIP Service's target carries both of its cluster IPs.
    if (s.ip !== 0 || s.ip6 === '') arena.a(s.target, ttl, s.ip, 'additional');
    if (s.ip6 !== '') arena.aaaa(s.target, ttl, parseIpv6(s.ip6)!, 'additional');
  }
  return arena.finish();
}

/** The apex SOA (CoreDNS's: ns.dns.<zone>, hostmaster.<zone>, the generation as serial, the TTL as minimum). */
export function encodeSoa(arena: BodyArena, zone: string, generation: number, ttl: number): number {
  const name = zone;
  arena.begin(name);
  const at = arena.rr(name, RrType.SOA, Math.min(ttl, SOA_MAX_TTL));
  arena.name(`ns.dns.${zone}`);
  arena.name(`hostmaster.${zone}`);
  arena.u32(generation);
  arena.u32(SOA_REFRESH);
  arena.u32(SOA_RETRY);
  arena.u32(SOA_EXPIRE);
  arena.u32(ttl);
  arena.end(at, 'answer');
  return arena.finish();
}

/** The apex NS: ns.dns.<zone>, with its addresses in the additional section when there are some. */
export function encodeNs(arena: BodyArena, zone: string, dnsIP: number, ttl: number, dnsIP6 = ''): number {
  const name = zone;
  arena.begin(name);
  const target = `ns.dns.${zone}`;
  const at = arena.rr(name, RrType.NS, ttl);
  arena.name(target);
  arena.end(at, 'answer');
  if (dnsIP !== 0 || dnsIP6 !== '') arena.additional();
  if (dnsIP !== 0) arena.a(target, ttl, dnsIP, 'additional');
  if (dnsIP6 !== '') arena.aaaa(target, ttl, parseIpv6(dnsIP6)!, 'additional');
  return arena.finish();
}

/**
 * The SOA record of a negative answer for `zone`: its owner, and the suffixes of its
 * two names, are pointers to the zone's name inside the question (offset patched per
 * answer; 0 here). Layout: ptr(2) type class ttl rdlen | "ns" "dns" ptr | "hostmaster" ptr | 5 x u32.
 */
export function negativeSoa(generation: number, ttl: number): Buffer {
  const b = Buffer.alloc(2 + 10 + 9 + 13 + 20);
  let o = 2;
  o = b.writeUInt16BE(RrType.SOA, o);
  o = b.writeUInt16BE(CLASS_IN, o);
  o = b.writeUInt32BE(Math.min(ttl, SOA_MAX_TTL), o);
  o = b.writeUInt16BE(9 + 13 + 20, o);
  b[o++] = 2; o += latin1Write.call(b, 'ns', o);
  b[o++] = 3; o += latin1Write.call(b, 'dns', o);
  o += 2;
  b[o++] = 10; o += latin1Write.call(b, 'hostmaster', o);
  o += 2;
  o = b.writeUInt32BE(generation >>> 0, o);
  o = b.writeUInt32BE(SOA_REFRESH, o);
  o = b.writeUInt32BE(SOA_RETRY, o);
  o = b.writeUInt32BE(SOA_EXPIRE, o);
  b.writeUInt32BE(ttl, o);
  return b;
}

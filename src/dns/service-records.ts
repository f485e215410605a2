// The records of one Service (Kubernetes DNS specification 1.1.0, as CoreDNS's
// kubernetes plugin answers them) and their encoding into response bodies
// (zone-writer.ts): compileService() says which names a Service gives and what each
// holds; the encoders turn one name's record set into the bytes after the question.
// KubernetesZone (kubernetes-zone.ts) keeps them per Service and answers from them.
import type { EndpointView, ServiceView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import { parseIpv4 } from '../wire/address.ts';
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

export interface SrvTarget { port: number; target: string; ip: number }

/** What one name holds while a Service is compiled; encoded into bodies right after. */
export class NameRecords {
  a: number[] | null = null;
  srv: SrvTarget[] | null = null;
  ptr: string[] | null = null;
  txt: string | null = null;
  cname: string | null = null;
}

/** An empty non-terminal: the name exists, with no records (NODATA). */
export const EMPTY = new NameRecords();

/** An endpoint's name label: its hostname, else its address with dashes (CoreDNS's endpointHostname). */
export function endpointHost(e: EndpointView): string {
  const ip = e.ip;
  return e.hostname !== '' ? e.hostname : `${ip >>> 24}-${(ip >>> 16) & 0xff}-${(ip >>> 8) & 0xff}-${ip & 0xff}`;
}

/**
 * Per endpoint of `svc`: its name label if it is ready (a publishNotReadyAddresses
 * Service's endpoints all are) and the label is usable, else ''.
 */
export function endpointHosts(svc: ServiceView): string[] {
  return svc.endpoints.map((e) => {
    if (!(e.ready || svc.publishNotReadyAddresses)) return '';
    const host = endpointHost(e);
    return host.length <= 63 && host.indexOf('.') < 0 && isPlainName(host) ? host : '';
  });
}

/**
 * The forward names of one Service in `zone`, into `at`; the namespace name it keeps
 * alive into `ents`; its endpoints' names (by endpoint index, '' for none) into
 * `endpointNames`. `hosts` from endpointHosts().
 */
export function compileService(svc: ServiceView, zone: string, at: (name: string) => NameRecords, ents: string[], hosts: string[], endpointNames: string[] | null): void {
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
  if (!svc.headless && svc.clusterIP === 0) return; // rejected: nothing allocated
  ents.push(`${svc.namespace}.svc.${zone}`);

  // Ready endpoints (hosts[i] !== '') by name; RFC 1035's 255 bytes on the wire.
  const names = hosts.map((h) => (h !== '' && name.length + h.length + 1 <= 253 ? `${h}.${name}` : ''));
  const eps = svc.endpoints;
  for (let i = 0; i < eps.length; i++) {
    if (names[i] === '') continue;
    const r = at(names[i]!);
    r.a ??= [];
    if (!r.a.includes(eps[i]!.ip)) r.a.push(eps[i]!.ip);
  }
  if (endpointNames !== null) for (const n of names) endpointNames.push(n);

  if (!svc.headless) {
    const r = at(name);
    r.a = [svc.clusterIP];
    if (svc.ports.length > 0) r.srv = svc.ports.map((p) => ({ port: p.port, target: name, ip: svc.clusterIP }));
    for (const p of svc.ports) {
      if (p.name === '') continue;
      const srvName = `_${p.name}._${p.protocol === L4Protocol.UDP ? 'udp' : 'tcp'}.${name}`;
      if (isPlainName(srvName)) at(srvName).srv = [{ port: p.port, target: name, ip: svc.clusterIP }];
    }
    return;
  }
  // Headless: no ready endpoint, no name (spec 2.4.1 says NXDOMAIN).
  if (!names.some((n) => n !== '')) return;
  const r = at(name);
  r.a = [];
  for (let i = 0; i < eps.length; i++) if (names[i] !== '' && !r.a.includes(eps[i]!.ip)) r.a.push(eps[i]!.ip);
  r.srv = [];
  const byPort = new Map<string, SrvTarget[]>();
  for (let i = 0; i < eps.length; i++) {
    const target = names[i]!;
    if (target === '') continue;
    const e = eps[i]!;
    for (const p of e.ports) {
      r.srv.push({ port: p.port, target, ip: e.ip });
      if (p.name === '') continue;
      const key = `_${p.name}._${p.protocol === L4Protocol.UDP ? 'udp' : 'tcp'}`;
      let list = byPort.get(key);
      if (list === undefined) byPort.set(key, (list = []));
      list.push({ port: p.port, target, ip: e.ip });
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
  const extra = new Set<string>();
  for (const s of srv) {
    const key = `${s.target} ${s.ip}`;
    if (extra.has(key)) continue;
    extra.add(key);
    arena.a(s.target, ttl, s.ip, 'additional');
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

/** The apex NS: ns.dns.<zone>, with its address in the additional section when there is one. */
export function encodeNs(arena: BodyArena, zone: string, dnsIP: number, ttl: number): number {
  const name = zone;
  arena.begin(name);
  const target = `ns.dns.${zone}`;
  const at = arena.rr(name, RrType.NS, ttl);
  arena.name(target);
  arena.end(at, 'answer');
  if (dnsIP !== 0) {
    arena.additional();
    arena.a(target, ttl, dnsIP, 'additional');
  }
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

// The `kubernetes` zone: what CoreDNS's kubernetes plugin answers (Kubernetes DNS
// specification 1.1.0, kubernetes/dns docs/specification.md, plus CoreDNS's `pods
// insecure` records), compiled from one ClusterView into wire bytes. update() builds,
// per lower-case name, the response body of every record type the name has
// (service-records.ts, zone-writer.ts); answer() is one Map lookup, a copy of the
// question and of that body, and a header. Names that exist with no data for the asked
// type get NODATA, names that do not exist NXDOMAIN (or NOT_HANDLED when the zone
// falls through), both with the zone's SOA in the authority section (RFC 2308 3).
//
// What exists (for each forward zone Z; `host` is an endpoint's hostname, or its address
// with dashes, a-b-c-d, as CoreDNS names endpoints without one):
//   Z                              SOA, NS (ns.dns.Z, its A in additional when kube-system/kube-dns has a cluster IP)
//   dns-version.Z                  TXT "1.1.0" (TTL 28800, as CoreDNS)
//   svc.Z, pod.Z, dns.Z            empty non-terminals (NODATA)
//   ns.dns.Z                       A / AAAA: the kube-dns cluster IPs (CoreDNS answers its own Service's)
//   <ns>.svc.Z                     empty non-terminal, for each namespace with a Service
//   <svc>.<ns>.svc.Z               ClusterIP: A and/or AAAA, its cluster IP of each family
//                                  (a single-stack Service's other type is NODATA).
//                                  Headless: A / AAAA per ready endpoint of that family
//                                  (none ready: the name does not exist, spec 2.4.1).
//                                  ExternalName: CNAME (for every qtype, see below). SRV: every port
//                                  (CoreDNS's answer for a name without _port._proto).
//   _<port>._<proto>.<svc>.<ns>.svc.Z   SRV per named port (headless: per ready endpoint
//                                  serving the port), priority 0, weight 100/n as CoreDNS,
//                                  the targets' A and AAAA records in the additional section
//   <host>.<svc>.<ns>.svc.Z        A / AAAA per ready endpoint with that host (an IPv6 one
//                                  without a hostname is named with dashes: fd00--5; CoreDNS answers
//                                  these for ClusterIP Services' endpoints too)
//   <a-b-c-d>.<ns>.pod.Z           A a.b.c.d for any namespace (`pods insecure`; computed
//                                  per query, not stored); <ns>.pod.Z is NODATA then;
//                                  <fd00-10-244-1--5>.<ns>.pod.Z: AAAA fd00:10:244:1::5
// and in a reverse zone (in-addr.arpa, ip6.arpa, RFC 3596 2.5 nibbles): PTR for every
// cluster IP of either family (its Service's name) and every other ready endpoint
// address (its endpoint names) in the first forward zone.
// A ready endpoint is one with `ready` (the endpoints controller marks every endpoint
// of a publishNotReadyAddresses Service ready) or of such a Service.
//
// ExternalName: a target inside the zone is chased at update time (the CNAME, then the
// target's records for the type, one level, as CoreDNS's A() does). A target outside
// the zone gets the CNAME alone: CoreDNS looks it up through itself (so through
// `forward`) and appends its records; a server that wants the same asks cnameTarget()
// and resolves the target itself. Stub resolvers (glibc, musl) do not chase a CNAME
// that comes without its target's records.
import { TapirError } from '../errors/tapir-error.ts';
import type { ClusterView, ServiceView } from '../model/cluster-view.ts';
import {
  CLASS_IN, Flag, HEADER_LENGTH, OPT_LENGTH, RCODE_BADVERS, Rcode, RrType,
  writeHeader, writeOpt, type QueryInfo,
} from './message.ts';
import {
  compileService, DNS_SCHEMA_VERSION, EMPTY, encodeA, encodeAaaa, encodeNames, encodeNs, encodeSoa, encodeSrv, encodeTxt,
  endpointHosts, NameRecords, negativeSoa, type EndpointHosts,
} from './service-records.ts';
import { parseIpv6 } from '../wire/address.ts';
import { BODY_HEADER, Col, isPlainName, nameWireLength, NameTable } from './zone-writer.ts';

export interface KubernetesZoneOptions {
  /** Lower-case, no trailing dot: ['cluster.local', 'in-addr.arpa', 'ip6.arpa']. */
  zones: string[];
  /** Seconds (CoreDNS default 5; kubeadm's Corefile says 30). */
  ttl: number;
  pods: 'disabled' | 'insecure';
  /** null: none; []: every zone; else only names under these zones. */
  fallthrough: string[] | null;
  /** CoreDNS's option (endpoint names from the pod name); not implemented: true is refused. */
  endpointPodNames?: boolean;
}

export const NOT_HANDLED = 0;

export { DNS_SCHEMA_VERSION };

/** The Service whose cluster IP is the name servers' address (ns.dns.<zone>), kubeadm's name. */
const DNS_SERVICE_KEY = 'kube-system/kube-dns';

export class KubernetesZoneError extends TapirError {
  readonly code = 'TAPIR_DNS_ZONE';
}

/** The record column (zone-writer.ts's Col) a query type reads, or -1 for a type no name has. */
function column(qtype: number): number {
  switch (qtype) {
    case RrType.A: return Col.A;
    case RrType.NS: return Col.NS;
    case RrType.CNAME: return Col.CNAME;
    case RrType.SOA: return Col.SOA;
    case RrType.PTR: return Col.PTR;
    case RrType.TXT: return Col.TXT;
    case RrType.SRV: return Col.SRV;
    case RrType.AAAA: return Col.AAAA;
    default: return -1;
  }
}

function isReverseZone(zone: string): boolean {
  return zone === 'in-addr.arpa' || zone.endsWith('.in-addr.arpa') || zone === 'ip6.arpa' || zone.endsWith('.ip6.arpa');
}

/** `qname` is `zone` or below it (a dot escaped as `\.` inside a label is no label boundary). */
function under(qname: string, zone: string, dotted: string): boolean {
  if (qname === zone) return true;
  if (qname.length <= zone.length || !qname.endsWith(dotted)) return false;
  let slashes = 0;
  for (let i = qname.length - dotted.length - 1; i >= 0 && qname.charCodeAt(i) === 0x5c; i--) slashes++;
  return (slashes & 1) === 0;
}

interface PtrSource { key: string; target: string; cluster: boolean }

/** What one Service put in the zone, to take out again when it changes. */
interface ServiceUnit {
  view: ServiceView;
  names: string[];
  ents: string[];
  /** The addresses it has PTR sources for (in ptrIndex, under its key). */
  ptrs: number[];
  /** The same for IPv6 addresses (in ptrIndex6), RFC 5952 text. */
  ptrs6: string[];
}

export class KubernetesZone {
  private readonly zones: string[];
  private readonly dottedZones: string[];
  private readonly reverse: boolean[];
  /** The zone PTR targets are named in (CoreDNS's primary zone: the first forward one). */
  private readonly primary: string;
  private readonly fallthrough: { zone: string; dotted: string }[] | null;
  private readonly ttl: number;
  private readonly podsInsecure: boolean;

  private readonly hasReverse: boolean;
  private synced = false;
  private table = new NameTable();
  /** Per Service key: what it put in the zone. */
  private units = new Map<string, ServiceUnit>();
  /** Namespace names (<ns>.svc.<zone>) and how many Services keep each alive. */
  private entRefs = new Map<string, number>();
  /** Reverse name -> the Services' addresses that name it (one source, the common case, without an array). */
  private ptrIndex = new Map<number, PtrSource | PtrSource[]>();
  /** The same for IPv6 addresses, by their RFC 5952 text. */
  private ptrIndex6 = new Map<string, PtrSource | PtrSource[]>();
  /** Per zone: its negative-answer SOA record with the owner pointer at 0 (patched per answer). */
  private soaRecords: Buffer[] = [];
  private externalTargets = new Map<string, string>();
  /** The address of the last IPv6 pod name parsed (podIpv6), and its groups: reused per query. */
  private readonly pod6 = new Uint8Array(16);
  private readonly podGroups = new Uint16Array(8);

  constructor(options: KubernetesZoneOptions) {
    if (options.endpointPodNames === true) {
      throw new KubernetesZoneError('kubernetes: endpoint_pod_names is not implemented (the ClusterView carries no pod names for endpoints); remove the option');
    }
    if (!Number.isInteger(options.ttl) || options.ttl < 0 || options.ttl > 3600) {
      throw new KubernetesZoneError(`kubernetes: ttl ${options.ttl} is out of range (0 to 3600 seconds, as CoreDNS)`);
    }
    this.zones = options.zones.map((z) => z.toLowerCase().replace(/\.$/, ''));
    for (const z of this.zones) if (!isPlainName(z)) throw new KubernetesZoneError(`kubernetes: zone ${JSON.stringify(z)} is not a domain name`);
    this.dottedZones = this.zones.map((z) => `.${z}`);
    this.reverse = this.zones.map(isReverseZone);
    this.hasReverse = this.reverse.some((r) => r);
    const primary = this.zones.find((z) => !isReverseZone(z));
    if (primary === undefined) throw new KubernetesZoneError(`kubernetes: zones ${this.zones.join(' ')} hold no forward zone (cluster.local or another) for the records to live in`);
    this.primary = primary;
    this.ttl = options.ttl;
    this.podsInsecure = options.pods === 'insecure';
    const fall = options.fallthrough;
    this.fallthrough = fall === null ? null
      : fall.length === 0 ? [{ zone: '', dotted: '' }]
        : fall.map((f) => { const zone = f.toLowerCase().replace(/\.$/, ''); return { zone, dotted: `.${zone}` }; });
  }

  /** The index of the longest zone `qname` is in, or -1. */
  private zoneOf(qname: string): number {
    let best = -1;
    for (let i = 0; i < this.zones.length; i++) {
      if (under(qname, this.zones[i]!, this.dottedZones[i]!) && (best < 0 || this.zones[i]!.length > this.zones[best]!.length)) best = i;
    }
    return best;
  }

  owns(qname: string): boolean {
    return this.zoneOf(qname) >= 0;
  }

  /** The ExternalName target of a Service name in the zone ('' for any other name), for a server that chases it. */
  cnameTarget(qname: string): string {
    return this.externalTargets.get(qname) ?? '';
  }

  private fallsThrough(qname: string): boolean {
    const fall = this.fallthrough;
    if (fall === null) return false;
    for (const f of fall) if (f.zone === '' || under(qname, f.zone, f.dotted)) return true;
    return false;
  }

  // ---- compile ----------------------------------------------------------------------

  /**
   * Brings the zone to `view`. A Service whose view object is the one of the last update
   * (the controller keeps unchanged ones, see sameServiceView) costs nothing; a changed
   * one has its names taken out and compiled again, and the PTR names its addresses touch
   * are rebuilt. So a sync after one endpoint changed costs that Service, not the cluster.
   */
  update(view: ClusterView): void {
    try {
      this.apply(view);
    } catch (e) {
      // A half-applied update must not keep serving: start from nothing next time.
      this.reset();
      throw e;
    }
  }

  private reset(): void {
    this.table = new NameTable();
    this.units = new Map();
    this.entRefs = new Map();
    this.ptrIndex = new Map();
    this.ptrIndex6 = new Map();
    this.externalTargets = new Map();
    this.synced = false;
  }

  private apply(view: ClusterView): void {
    const next = new Map<string, ServiceView>();
    for (const svc of view.services) next.set(svc.key, svc);
    const dirtyPtrs = new Set<number>();
    const dirtyPtrs6 = new Set<string>();
    for (const [key, unit] of this.units) {
      if (next.get(key) === unit.view) continue;
      this.removeUnit(unit, dirtyPtrs, dirtyPtrs6);
      this.units.delete(key);
    }
    for (const svc of view.services) {
      if (!this.units.has(svc.key)) this.units.set(svc.key, this.addUnit(svc, dirtyPtrs, dirtyPtrs6));
    }
    if (this.hasReverse) {
      for (const ip of dirtyPtrs) this.writePtr(ip);
      for (const ip of dirtyPtrs6) this.writePtr6(ip);
    }

    // The names every zone has; the apex's SOA carries the generation as its serial.
    const dnsService = next.get(DNS_SERVICE_KEY);
    const dnsIP = dnsService !== undefined && !dnsService.headless ? dnsService.clusterIP : 0;
    const dnsIP6 = dnsService !== undefined && !dnsService.headless ? dnsService.clusterIP6 : '';
    for (let z = 0; z < this.zones.length; z++) {
      const zone = this.zones[z]!;
      const apex = this.table.claim(zone);
      this.setBody(apex, Col.SOA, encodeSoa(this.table.arena, zone, view.generation, this.ttl));
      this.setBody(apex, Col.NS, encodeNs(this.table.arena, zone, this.reverse[z] ? 0 : dnsIP, this.ttl, this.reverse[z] ? '' : dnsIP6));
      if (this.reverse[z]) continue;
      const version = new NameRecords();
      version.txt = DNS_SCHEMA_VERSION;
      this.writeName(`dns-version.${zone}`, version);
      for (const ent of [`svc.${zone}`, `pod.${zone}`, `dns.${zone}`]) this.writeName(ent, EMPTY);
      const ns = new NameRecords();
      if (dnsIP !== 0) ns.a = [dnsIP];
      if (dnsIP6 !== '') ns.aaaa = [dnsIP6];
      this.writeName(`ns.dns.${zone}`, ns);
    }
    // After everything else: a target may have changed without its ExternalName.
    for (const [name, target] of this.externalTargets) this.chase(name, target);
    this.soaRecords = this.zones.map(() => negativeSoa(view.generation, this.ttl));
    this.table.compactIfWasteful();
    this.table.trim();
    this.synced = true;
  }

  /**
   * An ExternalName whose target is a name of this zone: for each type the target has,
   * the CNAME followed by the target's records, as CoreDNS answers (its A() looks an
   * in-zone target up). One level: a target that is itself a CNAME is left to the
   * client; a target without the type (or without a name) gets the CNAME alone.
   */
  private chase(name: string, target: string): void {
    const table = this.table;
    const slot = table.names.get(name);
    if (slot === undefined) return;
    const chased = [Col.A, Col.AAAA, Col.NS, Col.SOA, Col.PTR, Col.TXT, Col.SRV] as const;
    const targetSlot = this.zoneOf(target) >= 0 ? table.names.get(target) : undefined;
    const targetRow = targetSlot === undefined || table.columns[targetSlot * Col.COUNT + Col.CNAME]! >= 0 ? -1 : targetSlot * Col.COUNT;
    for (const col of chased) {
      const body = targetRow < 0 ? -1 : table.columns[targetRow + col]!;
      if (body < 0) {
        if (table.columns[slot * Col.COUNT + col]! >= 0) table.replace(slot, col, -1);
        continue;
      }
      const arena = table.arena;
      arena.begin(name);
      const at = arena.rr(name, RrType.CNAME, this.ttl);
      arena.name(target);
      arena.end(at, 'answer');
      arena.appendBody(body, target);
      table.replace(slot, col, arena.finish());
    }
  }

  private setBody(slot: number, col: number, body: number): void {
    this.table.columns[slot * Col.COUNT + col] = body;
  }

  /** (Re)writes every body of `name`. */
  private writeName(name: string, r: NameRecords): void {
    const slot = this.table.claim(name);
    if (r.cname !== null) {
      // RFC 1034 3.6.2: a CNAME has no other data.
      this.setBody(slot, Col.CNAME, encodeNames(this.table.arena, name, RrType.CNAME, [r.cname], this.ttl));
      return;
    }
    if (r.a !== null) this.setBody(slot, Col.A, encodeA(this.table.arena, name, r.a, this.ttl));
    if (r.aaaa !== null) this.setBody(slot, Col.AAAA, encodeAaaa(this.table.arena, name, r.aaaa, this.ttl));
    if (r.txt !== null) this.setBody(slot, Col.TXT, encodeTxt(this.table.arena, name, r.txt));
    if (r.ptr !== null) this.setBody(slot, Col.PTR, encodeNames(this.table.arena, name, RrType.PTR, r.ptr, this.ttl));
    if (r.srv !== null) this.setBody(slot, Col.SRV, encodeSrv(this.table.arena, name, r.srv, this.ttl));
  }

  private addUnit(svc: ServiceView, dirtyPtrs: Set<number>, dirtyPtrs6: Set<string>): ServiceUnit {
    const unit: ServiceUnit = { view: svc, names: [], ents: [], ptrs: [], ptrs6: [] };
    const local = new Map<string, NameRecords>();
    const at = (name: string): NameRecords => {
      let r = local.get(name);
      if (r === undefined) local.set(name, (r = new NameRecords()));
      return r;
    };
    const hosts = endpointHosts(svc);
    // The endpoints' names in the primary zone, which their PTR records name (the same strings).
    const primaryNames: EndpointHosts = { v4: [], v6: [] };
    for (let z = 0; z < this.zones.length; z++) {
      if (!this.reverse[z]) compileService(svc, this.zones[z]!, at, unit.ents, hosts, this.zones[z] === this.primary ? primaryNames : null);
    }
    for (const [name, r] of local) {
      this.writeName(name, r);
      unit.names.push(name);
      if (r.cname !== null) this.externalTargets.set(name, r.cname);
    }
    for (const ent of unit.ents) {
      const refs = this.entRefs.get(ent) ?? 0;
      this.entRefs.set(ent, refs + 1);
      if (refs === 0) this.writeName(ent, EMPTY);
    }
    this.addPtrSources(svc, unit, dirtyPtrs, dirtyPtrs6, primaryNames);
    return unit;
  }

  private removeUnit(unit: ServiceUnit, dirtyPtrs: Set<number>, dirtyPtrs6: Set<string>): void {
    for (const name of unit.names) {
      this.table.remove(name);
      this.externalTargets.delete(name);
    }
    for (const ent of unit.ents) {
      const refs = this.entRefs.get(ent)! - 1;
      if (refs > 0) this.entRefs.set(ent, refs);
      else {
        this.entRefs.delete(ent);
        this.table.remove(ent);
      }
    }
    const key = unit.view.key;
    for (const ip of unit.ptrs) {
      const sources = this.ptrIndex.get(ip);
      if (sources === undefined) continue;
      const left = Array.isArray(sources) ? sources.filter((s) => s.key !== key) : sources.key !== key ? [sources] : [];
      if (left.length === 0) this.ptrIndex.delete(ip);
      else this.ptrIndex.set(ip, left.length === 1 ? left[0]! : left);
      dirtyPtrs.add(ip);
    }
    for (const ip of unit.ptrs6) {
      const sources = this.ptrIndex6.get(ip);
      if (sources === undefined) continue;
      const left = Array.isArray(sources) ? sources.filter((s) => s.key !== key) : sources.key !== key ? [sources] : [];
      if (left.length === 0) this.ptrIndex6.delete(ip);
      else this.ptrIndex6.set(ip, left.length === 1 ? left[0]! : left);
      dirtyPtrs6.add(ip);
    }
  }

  /** What `svc` contributes to PTR names: its cluster IPs, and its ready endpoints' addresses, of both families. */
  private addPtrSources(svc: ServiceView, unit: ServiceUnit, dirtyPtrs: Set<number>, dirtyPtrs6: Set<string>, primaryNames: EndpointHosts): void {
    if (!this.hasReverse || svc.type === 'ExternalName' || (!svc.headless && svc.clusterIP === 0 && svc.clusterIP6 === '')) return;
    const svcName = `${svc.name}.${svc.namespace}.svc.${this.primary}`;
    if (!isPlainName(svcName)) return;
    const add = (ip: number, target: string, cluster: boolean): void => {
      const source: PtrSource = { key: svc.key, target, cluster };
      const sources = this.ptrIndex.get(ip);
      if (sources === undefined) this.ptrIndex.set(ip, source);
      else if (Array.isArray(sources)) sources.push(source);
      else this.ptrIndex.set(ip, [sources, source]);
      if (unit.ptrs[unit.ptrs.length - 1] !== ip) unit.ptrs.push(ip);
      dirtyPtrs.add(ip);
    };
    const add6 = (ip: string, target: string, cluster: boolean): void => {
      const source: PtrSource = { key: svc.key, target, cluster };
      const sources = this.ptrIndex6.get(ip);
      if (sources === undefined) this.ptrIndex6.set(ip, source);
      else if (Array.isArray(sources)) sources.push(source);
      else this.ptrIndex6.set(ip, [sources, source]);
      if (unit.ptrs6[unit.ptrs6.length - 1] !== ip) unit.ptrs6.push(ip);
      dirtyPtrs6.add(ip);
    };
    if (!svc.headless && svc.clusterIP !== 0) add(svc.clusterIP, svcName, true);
    if (!svc.headless && svc.clusterIP6 !== '') add6(svc.clusterIP6, svcName, true);
    svc.endpoints.forEach((e, i) => {
      const target = primaryNames.v4[i];
      if (target !== undefined && target !== '') add(e.ip, target, false);
    });
    svc.endpoints6.forEach((e, i) => {
      const target = primaryNames.v6[i];
      if (target !== undefined && target !== '') add6(e.ip, target, false);
    });
  }

  /**
   * The PTR name of an address from its sources, in Service key order: a cluster IP
   * names its (first) Service alone, as CoreDNS looks Services up before endpoints;
   * else every endpoint name. Only for addresses inside one of our reverse zones.
   */
  private writePtr(ip: number): void {
    const name = `${ip & 0xff}.${(ip >>> 8) & 0xff}.${(ip >>> 16) & 0xff}.${ip >>> 24}.in-addr.arpa`;
    const z = this.zoneOf(name);
    if (z < 0 || !this.reverse[z]) return;
    const sources = this.ptrIndex.get(ip);
    if (sources === undefined) {
      this.table.remove(name);
      return;
    }
    this.writeName(name, ptrRecords(sources));
  }

  /** writePtr for an IPv6 address: its ip6.arpa name, 32 nibbles lowest first (RFC 3596 2.5). */
  private writePtr6(ip: string): void {
    const bytes = parseIpv6(ip)!;
    let name = '';
    for (let i = 15; i >= 0; i--) name += `${(bytes[i]! & 0xf).toString(16)}.${(bytes[i]! >> 4).toString(16)}.`;
    name += 'ip6.arpa';
    const z = this.zoneOf(name);
    if (z < 0 || !this.reverse[z]) return;
    const sources = this.ptrIndex6.get(ip);
    if (sources === undefined) {
      this.table.remove(name);
      return;
    }
    this.writeName(name, ptrRecords(sources));
  }

  /**
   * The forward names of one Service in `zone`, into `at`; the namespace name it keeps
   * alive into `ents`; its endpoints' names (by endpoint index) into `endpointNames`.
   */
  // ---- answer -----------------------------------------------------------------------

  answer(req: Uint8Array, _reqLen: number, q: QueryInfo, res: Uint8Array, maxSize: number): number {
    const z = this.zoneOf(q.qname);
    if (z < 0) return NOT_HANDLED;
    if (q.edns && q.ednsVersion !== 0) return this.empty(req, q, res, RCODE_BADVERS, 0, -1);
    // CoreDNS's kubernetes plugin refuses zone transfers; other classes are not ours.
    if (q.qclass !== CLASS_IN || q.qtype === RrType.AXFR || q.qtype === RrType.IXFR) return this.empty(req, q, res, Rcode.REFUSED, 0, -1);
    // Before the first sync there is nothing to deny with (CoreDNS: SERVFAIL until synced).
    if (!this.synced) return this.empty(req, q, res, Rcode.SERVFAIL, 0, -1);

    const table = this.table;
    const slot = table.names.get(q.qname);
    if (slot === undefined) return this.missing(req, q, res, z);
    const row = slot * Col.COUNT;
    // The type's own body (for an ExternalName: the CNAME and its chased target), else
    // the name's CNAME, which answers every type (RFC 1034 3.6.2).
    const col = column(q.qtype);
    let body = col < 0 ? -1 : table.columns[row + col]!;
    if (body < 0) body = table.columns[row + Col.CNAME]!;
    if (body < 0) return this.empty(req, q, res, Rcode.NOERROR, Flag.AA, z);
    return this.fromBody(req, q, res, maxSize, body);
  }

  /** A name not in the table: a pod name (computed), else NXDOMAIN or fall through. */
  private missing(req: Uint8Array, q: QueryInfo, res: Uint8Array, z: number): number {
    if (!this.reverse[z] && this.podsInsecure) {
      const pod = this.podAddress(q.qname, this.zones[z]!);
      if (pod >= 0) {
        if (q.qtype !== RrType.A) return this.empty(req, q, res, Rcode.NOERROR, Flag.AA, z);
        return this.podAnswer(req, q, res, pod);
      }
      if (pod === POD_IPV6) {
        if (q.qtype !== RrType.AAAA) return this.empty(req, q, res, Rcode.NOERROR, Flag.AA, z);
        return this.podAnswer(req, q, res, -1);
      }
      if (pod === POD_NAMESPACE) return this.empty(req, q, res, Rcode.NOERROR, Flag.AA, z);
    }
    if (this.fallsThrough(q.qname)) return NOT_HANDLED;
    return this.empty(req, q, res, Rcode.NXDOMAIN, Flag.AA, z);
  }

  /**
   * `<a-b-c-d>.<ns>.pod.<zone>`: the address (>= 0); POD_IPV6 for an IPv6 address with
   * dashes for colons (`fd00-10-244-1--5`, CoreDNS's form; the address in pod6);
   * POD_NAMESPACE for `<ns>.pod.<zone>`; NOT_POD otherwise. CoreDNS's insecure mode
   * checks nothing else.
   */
  private podAddress(qname: string, zone: string): number {
    const suffix = qname.length - zone.length - 5; // where ".pod." starts
    if (suffix <= 0 || !qname.startsWith('.pod.', suffix)) return NOT_POD;
    const nsStart = qname.lastIndexOf('.', suffix - 1) + 1;
    if (nsStart === 0) return POD_NAMESPACE; // <ns>.pod.<zone>
    const podEnd = nsStart - 1;
    if (qname.lastIndexOf('.', podEnd - 1) >= 0 || nsStart === suffix) return NOT_POD;
    // a-b-c-d, each part 0-255 without leading zeros (Go's net.ParseIP refuses them).
    let ip = 0;
    let part = 0;
    let digits = 0;
    let parts = 0;
    for (let i = 0; i <= podEnd; i++) {
      const c = i === podEnd ? 0x2d : qname.charCodeAt(i);
      if (c === 0x2d) {
        if (digits === 0 || part > 255) return this.podIpv6(qname, podEnd) ? POD_IPV6 : NOT_POD;
        ip = ip * 256 + part;
        parts++;
        part = 0;
        digits = 0;
        continue;
      }
      if (c < 0x30 || c > 0x39 || digits === 3 || (digits === 1 && part === 0)) return this.podIpv6(qname, podEnd) ? POD_IPV6 : NOT_POD;
      part = part * 10 + (c - 0x30);
      digits++;
    }
    return parts === 4 ? ip : this.podIpv6(qname, podEnd) ? POD_IPV6 : NOT_POD;
  }

  /**
   * qname[0, end) as an IPv6 address with "-" for ":" ("--" for "::"), into pod6;
   * false when it is none. Char by char into reused arrays: no allocation per query.
   */
  private podIpv6(qname: string, end: number): boolean {
    const g = this.podGroups;
    let n = 0;
    let gap = -1;
    let value = 0;
    let digits = 0;
    let afterDash = false;
    let i = 0;
    if (end > 0 && qname.charCodeAt(0) === 0x2d) {
      if (end < 2 || qname.charCodeAt(1) !== 0x2d) return false;
      gap = 0;
      i = 2;
    }
    for (; i <= end; i++) {
      const c = i === end ? -1 : qname.charCodeAt(i);
      const hex = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : -1;
      if (hex >= 0) {
        if (digits === 4) return false;
        value = value * 16 + hex;
        digits++;
        afterDash = false;
        continue;
      }
      if (c !== 0x2d && c !== -1) return false;
      if (digits > 0) {
        if (n === 8) return false;
        g[n++] = value;
        value = 0;
        digits = 0;
        if (c === -1) break;
        afterDash = true;
        continue;
      }
      // An empty group: the second dash of the one "--", or the end right after it ("fd00--", "--").
      if (c === -1) {
        if (gap === n && qname.charCodeAt(i - 1) === 0x2d) break;
        return false;
      }
      if (!afterDash || gap >= 0) return false;
      gap = n;
      afterDash = false;
    }
    if (gap < 0 ? n !== 8 : n > 7) return false;
    const out = this.pod6;
    const tail = gap < 0 ? 0 : n - gap;
    const head = n - tail;
    out.fill(0);
    for (let k = 0; k < head; k++) { out[2 * k] = g[k]! >>> 8; out[2 * k + 1] = g[k]! & 0xff; }
    for (let k = 0; k < tail; k++) { const at = 8 - tail + k; out[2 * at] = g[head + k]! >>> 8; out[2 * at + 1] = g[head + k]! & 0xff; }
    return true;
  }

  /** Header + the query's question; returns the offset after the question. */
  private startResponse(req: Uint8Array, q: QueryInfo, res: Uint8Array): number {
    const end = q.questionEnd;
    for (let i = HEADER_LENGTH; i < end; i++) res[i] = req[i]!;
    return end;
  }

  /** A pod's A record (`ip` >= 0), or its AAAA record from pod6 (`ip` < 0). */
  private podAnswer(req: Uint8Array, q: QueryInfo, res: Uint8Array, ip: number): number {
    let o = this.startResponse(req, q, res);
    res[o++] = 0xc0; res[o++] = HEADER_LENGTH;
    res[o++] = 0; res[o++] = ip >= 0 ? RrType.A : RrType.AAAA;
    res[o++] = 0; res[o++] = CLASS_IN;
    const ttl = this.ttl;
    res[o++] = ttl >>> 24; res[o++] = (ttl >>> 16) & 0xff; res[o++] = (ttl >>> 8) & 0xff; res[o++] = ttl & 0xff;
    if (ip >= 0) {
      res[o++] = 0; res[o++] = 4;
      res[o++] = ip >>> 24; res[o++] = (ip >>> 16) & 0xff; res[o++] = (ip >>> 8) & 0xff; res[o++] = ip & 0xff;
    } else {
      res[o++] = 0; res[o++] = 16;
      for (let k = 0; k < 16; k++) res[o++] = this.pod6[k]!;
    }
    writeHeader(res, q.id, q.flags, Flag.AA, Rcode.NOERROR, 1, 1, 0, q.edns ? 1 : 0);
    if (q.edns) o = writeOpt(res, o, q, 0);
    return o;
  }

  /**
   * A response without answers: NXDOMAIN or NODATA with the SOA of zone `z` in the
   * authority section (RFC 2308 3), or an error rcode without it (z = -1).
   */
  private empty(req: Uint8Array, q: QueryInfo, res: Uint8Array, rcode: number, flags: number, z: number): number {
    let o = this.startResponse(req, q, res);
    let ns = 0;
    if (z >= 0) {
      const soa = this.soaRecords[z]!;
      // The zone's name ends the question name: its offset there.
      const zoneAt = HEADER_LENGTH + (q.questionEnd - 4 - HEADER_LENGTH) - nameWireLength(this.zones[z]!);
      const ptr = 0xc000 | zoneAt;
      soa.copy(res, o);
      res[o] = ptr >>> 8; res[o + 1] = ptr & 0xff;
      res[o + 2 + 10 + 7] = ptr >>> 8; res[o + 2 + 10 + 8] = ptr & 0xff;
      res[o + 2 + 10 + 20] = ptr >>> 8; res[o + 2 + 10 + 21] = ptr & 0xff;
      o += soa.length;
      ns = 1;
    }
    writeHeader(res, q.id, q.flags, flags, rcode, 1, 0, ns, q.edns ? 1 : 0);
    if (q.edns) o = writeOpt(res, o, q, rcode);
    return o;
  }

  /** A precomputed body; what does not fit in maxSize is cut: the additional section first (no TC), else everything (TC). */
  private fromBody(req: Uint8Array, q: QueryInfo, res: Uint8Array, maxSize: number, body: number): number {
    const a = this.table.arena.buf;
    const length = a.readUInt32BE(body);
    let an = a.readUInt16BE(body + 4);
    let ns = a.readUInt16BE(body + 6);
    let ar = a.readUInt16BE(body + 8);
    let copy = length;
    let flags = Flag.AA;
    const opt = q.edns ? OPT_LENGTH : 0;
    let o = this.startResponse(req, q, res);
    if (o + length + opt > maxSize) {
      // RFC 2181 9: dropping additional records needs no TC; a partial RRset in the
      // answer does, and we send none of it then (the client retries over TCP).
      const answerEnd = a.readUInt32BE(body + 10);
      ar = 0;
      copy = answerEnd;
      if (o + answerEnd + opt > maxSize) {
        flags |= Flag.TC;
        an = 0;
        ns = 0;
        copy = 0;
      }
    }
    if (copy > 0) a.copy(res, o, body + BODY_HEADER, body + BODY_HEADER + copy);
    o += copy;
    writeHeader(res, q.id, q.flags, flags, Rcode.NOERROR, 1, an, ns, ar + (q.edns ? 1 : 0));
    if (q.edns) o = writeOpt(res, o, q, 0);
    return o;
  }
}

/**
 * The PTR records of an address from its sources, in Service key order: a cluster IP
 * names its (first) Service alone, as CoreDNS looks Services up before endpoints; else
 * every endpoint name.
 */
function ptrRecords(sources: PtrSource | PtrSource[]): NameRecords {
  const r = new NameRecords();
  if (!Array.isArray(sources)) r.ptr = [sources.target];
  else {
    // Stable: one Service's sources keep their endpoint order.
    const sorted = [...sources].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const cluster = sorted.find((s) => s.cluster);
    r.ptr = cluster !== undefined ? [cluster.target] : [...new Set(sorted.map((s) => s.target))];
  }
  return r;
}

const NOT_POD = -1;
const POD_NAMESPACE = -2;
const POD_IPV6 = -3;

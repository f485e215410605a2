// The records of the `kubernetes` zone (kubernetes-zone.ts), compiled from one
// ClusterView into response bodies in a NameTable (zone-writer.ts), which KubernetesZone
// answers from. Compiling is per Service: each keeps what it put in the zone (a
// ServiceUnit) so that a changed one is taken out and compiled again (service-records.ts
// says what its names hold) while the others cost nothing; then the PTR names its
// addresses touch are rebuilt (ptr-index.ts), the names every zone has written, and the
// in-zone ExternalName targets chased. Nothing here runs per query.
import type { ClusterView, ServiceView } from '../model/cluster-view.ts';
import { RrType } from './message.ts';
import { PtrIndex, ptrRecords } from './ptr-index.ts';
import {
  compileService, DNS_SCHEMA_VERSION, EMPTY, encodeA, encodeAaaa, encodeNames, encodeNs, encodeSoa, encodeSrv, encodeTxt,
  endpointHosts, NameRecords, negativeSoa, type EndpointHosts,
} from './service-records.ts';
import { parseIpv6 } from '../wire/address.ts';
import { Col, NameTable } from './zone-writer.ts';

/** The Service whose cluster IP is the name servers' address (ns.dns.<zone>), kubeadm's name. */
const DNS_SERVICE_KEY = 'kube-system/kube-dns';

/** What one Service put in the zone, to take out again when it changes. */
interface ServiceUnit {
  view: ServiceView;
  names: string[];
  ents: string[];
  /** The addresses it has PTR sources for (in ptrIndex, under its key). */
  ptrs: number[];
  /** The same for IPv6 addresses (in ptrIndex, get6), RFC 5952 text. */
  ptrs6: string[];
}

export class KubernetesZoneRecords {
  private readonly zones: string[];
  private readonly reverse: boolean[];
  /** The zone PTR targets are named in (CoreDNS's primary zone: the first forward one). */
  private readonly primary: string;
  private readonly ttl: number;
  private readonly hasReverse: boolean;
  /** KubernetesZone's zoneOf: the index of the longest zone a name is in, or -1. */
  private readonly zoneOf: (qname: string) => number;

  // What KubernetesZone answers from (read per query, written only here).
  /** False before the first update and after a failed one (CoreDNS: SERVFAIL until synced). */
  synced = false;
  table = new NameTable();
  /** Per zone: its negative-answer SOA record with the owner pointer at 0 (patched per answer). */
  soaRecords: Buffer[] = [];
  /** ExternalName Service name -> its target. */
  externalTargets = new Map<string, string>();

  /** Per Service key: what it put in the zone. */
  private units = new Map<string, ServiceUnit>();
  /** Namespace names (<ns>.svc.<zone>) and how many Services keep each alive. */
  private entRefs = new Map<string, number>();
  private ptrIndex = new PtrIndex();

  constructor(zones: string[], reverse: boolean[], primary: string, ttl: number, zoneOf: (qname: string) => number) {
    this.zones = zones;
    this.reverse = reverse;
    this.hasReverse = reverse.some((r) => r);
    this.primary = primary;
    this.ttl = ttl;
    this.zoneOf = zoneOf;
  }

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
    this.ptrIndex = new PtrIndex();
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
    if (this.hasReverse) this.ptrIndex.add(svc, unit, dirtyPtrs, dirtyPtrs6, primaryNames, this.primary);
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
    this.ptrIndex.remove(unit.view.key, unit, dirtyPtrs, dirtyPtrs6);
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
    const sources = this.ptrIndex.get6(ip);
    if (sources === undefined) {
      this.table.remove(name);
      return;
    }
    this.writeName(name, ptrRecords(sources));
  }
}

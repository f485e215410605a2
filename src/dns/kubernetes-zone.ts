// The `kubernetes` zone: what CoreDNS's kubernetes plugin answers (Kubernetes DNS
// specification 1.1.0, kubernetes/dns docs/specification.md, plus CoreDNS's `pods
// insecure` records), compiled from one ClusterView into wire bytes. update() builds,
// per lower-case name, the response body of every record type the name has
// (kubernetes-zone-records.ts, with service-records.ts and zone-writer.ts); answer(),
// here, is one Map lookup, a copy of the question and of that body, and a header. Names that exist with no data for the asked
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
//                                  per query, not stored: pod-names.ts); <ns>.pod.Z is NODATA then;
//                                  <fd00-10-244-1--5>.<ns>.pod.Z: AAAA fd00:10:244:1::5
// and in a reverse zone (in-addr.arpa, ip6.arpa, RFC 3596 2.5 nibbles): PTR for every
// cluster IP of either family (its Service's name) and every other ready endpoint
// address (its endpoint names) in the first forward zone (ptr-index.ts).
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
import type { ClusterView } from '../model/cluster-view.ts';
import { KubernetesZoneRecords } from './kubernetes-zone-records.ts';
import {
  CLASS_IN, Flag, HEADER_LENGTH, OPT_LENGTH, RCODE_BADVERS, Rcode, RrType,
  writeHeader, writeOpt, type QueryInfo,
} from './message.ts';
import { POD_IPV6, POD_NAMESPACE, podAddress } from './pod-names.ts';
import { DNS_SCHEMA_VERSION } from './service-records.ts';
import { BODY_HEADER, Col, isPlainName, nameWireLength } from './zone-writer.ts';

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

export class KubernetesZone {
  private readonly zones: string[];
  private readonly dottedZones: string[];
  private readonly reverse: boolean[];
  private readonly fallthrough: { zone: string; dotted: string }[] | null;
  private readonly ttl: number;
  private readonly podsInsecure: boolean;
  /** What update() compiled from the ClusterView: the name table, the SOA records, the ExternalName targets. */
  private readonly records: KubernetesZoneRecords;
  /** The address of the last IPv6 pod name parsed (pod-names.ts), and its groups: reused per query. */
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
    const primary = this.zones.find((z) => !isReverseZone(z));
    if (primary === undefined) throw new KubernetesZoneError(`kubernetes: zones ${this.zones.join(' ')} hold no forward zone (cluster.local or another) for the records to live in`);
    this.ttl = options.ttl;
    this.podsInsecure = options.pods === 'insecure';
    const fall = options.fallthrough;
    this.fallthrough = fall === null ? null
      : fall.length === 0 ? [{ zone: '', dotted: '' }]
        : fall.map((f) => { const zone = f.toLowerCase().replace(/\.$/, ''); return { zone, dotted: `.${zone}` }; });
    this.records = new KubernetesZoneRecords(this.zones, this.reverse, primary, this.ttl, (qname) => this.zoneOf(qname));
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
    return this.records.externalTargets.get(qname) ?? '';
  }

  private fallsThrough(qname: string): boolean {
    const fall = this.fallthrough;
    if (fall === null) return false;
    for (const f of fall) if (f.zone === '' || under(qname, f.zone, f.dotted)) return true;
    return false;
  }

  // ---- compile ----------------------------------------------------------------------

  /**
   * Brings the zone to `view`, compiling again only the Services whose view changed
   * (kubernetes-zone-records.ts). After a failed update the zone answers SERVFAIL until
   * one succeeds.
   */
  update(view: ClusterView): void {
    this.records.update(view);
  }

  // ---- answer -----------------------------------------------------------------------

  answer(req: Uint8Array, _reqLen: number, q: QueryInfo, res: Uint8Array, maxSize: number): number {
    const z = this.zoneOf(q.qname);
    if (z < 0) return NOT_HANDLED;
    if (q.edns && q.ednsVersion !== 0) return this.empty(req, q, res, RCODE_BADVERS, 0, -1);
    // CoreDNS's kubernetes plugin refuses zone transfers; other classes are not ours.
    if (q.qclass !== CLASS_IN || q.qtype === RrType.AXFR || q.qtype === RrType.IXFR) return this.empty(req, q, res, Rcode.REFUSED, 0, -1);
    // Before the first sync there is nothing to deny with (CoreDNS: SERVFAIL until synced).
    if (!this.records.synced) return this.empty(req, q, res, Rcode.SERVFAIL, 0, -1);

    const table = this.records.table;
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
      const pod = podAddress(q.qname, this.zones[z]!, this.podGroups, this.pod6);
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
      const soa = this.records.soaRecords[z]!;
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
    const a = this.records.table.arena.buf;
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

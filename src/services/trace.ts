// `tapir trace`: a packet's fate through the service tables, step by step. The packet
// is built and run through a real ServiceNat.process() (the hot path's own decisions:
// frontend, endpoint list, choice, masquerade, verdict), or ServiceNat6's for an IPv6
// packet; this file only explains the NatResult it leaves, with the snapshot's endpoint
// conditions for the "why". Addresses are IPv4 uint32 or IPv6 RFC 5952 text, as the
// snapshot's two halves hold them.
import {
  IpProtocol, LinkType, PacketInfo, TcpFlags, buildPacket, decodeFrame, ipv4ToString, ipv6ToString, parseIpv6,
} from '../wire/index.ts';
import { ServiceNat, type NatResult, type ServiceNatOptions } from './nat.ts';
import { ServiceNat6 } from './nat6.ts';
import {
  LbChoice, MasqReason, NatReason, Verdict, entryPointNames, lbChoiceNames, masqReasonNames, natReasonNames, verdictNames,
} from './nat-codes.ts';
import type { Address } from '../tables/service-address.ts';
import { FrontendKind, frontendKindNames } from '../tables/service-frontends.ts';
import { buildServiceTable, buildServiceTable6, type ServiceTable } from '../tables/service-table.ts';
import { maglevTableSize } from '../tables/maglev.ts';
/** A conntrack tuple of either family (Conntrack.tuple, tuple6). */
type FlowTuple = { src: Address; srcPort: number; dst: Address; dstPort: number };
import type { EndpointSpec, ServicePortSpec, ServiceSnapshot } from '../model/service-snapshot.ts';

/** A packet to trace: IPv4 addresses as uint32, IPv6 ones as text (both of one family). */
export interface TracePacket {
  protocol: 6 | 17;
  src: Address;
  srcPort: number;
  dst: Address;
  dstPort: number;
  entryPoint: number;
}

/** What tracing needs of either family's engine. */
interface TraceNat {
  readonly result: NatResult;
  readonly table: ServiceTable<Address>;
  process(info: PacketInfo, buf: Uint8Array, entryPoint: number, l4Partial: boolean, now: number): number;
}

export interface TraceResult {
  verdict: string;
  reason: string;
  /** "namespace/name:port" of the service port matched, or null. */
  servicePort: string | null;
  frontend: string | null;
  endpoint: string | null;
  lb: string;
  masquerade: string;
  /** The packet as it leaves, "a.b.c.d:port -> e.f.g.h:port" ("[a::b]:port" for IPv6). */
  after: string;
  /** The destination IPv4 of the packet as it leaves (after DNAT), for routing it on; 0 for IPv6. */
  afterDst: number;
  /** The destination IPv6 (text) of an IPv6 packet as it leaves; '' for IPv4. */
  afterDst6: string;
  steps: string[];
}

// What kube-proxy says for each reject/drop (its rule comments), for the verdict line.
const REASON_TEXT: Record<number, string> = {
  [NatReason.NO_ENDPOINTS]: 'the service port has no endpoints (kube-proxy: "has no endpoints", REJECT)',
  [NatReason.UNKNOWN_PORT]: 'no service has this port on the cluster IP (rejected, as kube-proxy\'s nftables mode does)',
  [NatReason.NO_LOCAL_ENDPOINTS]: 'endpoints exist but none on this node, and the traffic policy is Local (kube-proxy: "has no local endpoints", DROP)',
  [NatReason.SOURCE_RANGE]: 'the client is outside loadBalancerSourceRanges',
  [NatReason.CONNTRACK_FULL]: 'the conntrack table is full and nothing in the probe window could be evicted',
  [NatReason.CONNTRACK_SOURCE_LIMIT]: 'the client already holds its share of unanswered conntrack entries (a flood from one source is held to a part of the table)',
  [NatReason.TCP_NOT_NEW]: 'a TCP segment that cannot open a connection (only SYN, or an ACK picked up mid-stream, can)',
  [NatReason.FRAGMENT]: 'an IP fragment to a service address (fragments are not reassembled)',
  [NatReason.SNAT_PORTS_EXHAUSTED]: 'no free source port to masquerade with',
};

const addrText = (a: Address): string => (typeof a === 'number' ? ipv4ToString(a) : a);
const tuple = (a: Address, p: number): string => (typeof a === 'number' ? `${ipv4ToString(a)}:${p}` : `[${a}]:${p}`);
const protoName = (p: number) => (p === IpProtocol.TCP ? 'TCP' : 'UDP');

/**
 * Traces a packet through a fresh engine of its family built from `snapshot` (empty
 * conntrack and affinity): ServiceNat, or ServiceNat6 masquerading to `masqueradeIP6`.
 */
export function traceServicePacket(snapshot: ServiceSnapshot, packet: TracePacket, options: ServiceNatOptions & { masqueradeIP6?: Uint8Array }): TraceResult {
  if (typeof packet.dst === 'string') {
    const table = buildServiceTable6(snapshot);
    const nat = new ServiceNat6(table, {
      masqueradeIP: options.masqueradeIP6 ?? new Uint8Array(16), seed: options.seed ?? 1, conntrack: options.conntrack ?? {}, affinityCapacity: options.affinityCapacity ?? 16,
    });
    return traceWith(nat, packet, 1, `snapshot generation ${snapshot.generation}, ${table.count} IPv6 service ports`);
  }
  const table = buildServiceTable(snapshot);
  const nat = new ServiceNat(table, options);
  return traceWith(nat, packet, 1, `snapshot generation ${snapshot.generation}, ${table.count} service ports`);
}

/**
 * Traces a packet through `nat` as it stands (its conntrack and affinity state count).
 * process() runs for real: a new flow leaves its entry behind, as the packet would.
 */
export function traceWith(nat: ServiceNat | ServiceNat6, p: TracePacket, now: number, context: string): TraceResult {
  const steps: string[] = [];
  const t = nat.table as ServiceTable<Address>;
  const engine = nat as TraceNat;
  steps.push(`packet: ${protoName(p.protocol)} ${tuple(p.src, p.srcPort)} -> ${tuple(p.dst, p.dstPort)}, from ${entryPointNames[p.entryPoint] ?? '?'} (${context})`);
  const l4 = p.protocol === IpProtocol.TCP ? { tcp: { srcPort: p.srcPort, dstPort: p.dstPort, seq: 1, ack: 0, flags: TcpFlags.SYN } } : { udp: { srcPort: p.srcPort, dstPort: p.dstPort } };
  const buf = typeof p.src === 'number' && typeof p.dst === 'number'
    ? buildPacket({ ipv4: { src: p.src, dst: p.dst, ttl: 64 }, ...l4 })
    : buildPacket({ ipv6: { src: parseIpv6(String(p.src))!, dst: parseIpv6(String(p.dst))!, hopLimit: 64 }, ...l4 });
  const info = new PacketInfo();
  decodeFrame(info, buf, 0, buf.length, LinkType.RAW_IP);
  const verdict = engine.process(info, buf, p.entryPoint, false, now);
  const r = engine.result;
  const v6 = info.ipVersion === 6;
  const srcAfter: Address = v6 ? ipv6ToString(buf, info.src6Offset) : info.src4;
  const dstAfter: Address = v6 ? ipv6ToString(buf, info.dst6Offset) : info.dst4;
  const after = `${tuple(srcAfter, info.srcPort)} -> ${tuple(dstAfter, info.dstPort)}`;
  const port = r.servicePort >= 0 ? t.ports[r.servicePort]! : null;

  if (r.entry >= 0 && !r.newFlow) {
    steps.push(`conntrack: entry ${r.entry} matches (${r.direction === 0 ? 'original direction: client to service' : 'reply direction: endpoint to client'}); its NAT applies`);
  } else {
    steps.push('conntrack: no entry for this tuple (a new flow)');
  }
  if (port !== null) {
    explainFrontend(steps, port, r.frontend, p);
    if (verdict === Verdict.NATED || r.reason === NatReason.NO_LOCAL_ENDPOINTS || r.reason === NatReason.CONNTRACK_FULL || r.reason === NatReason.CONNTRACK_SOURCE_LIMIT || r.reason === NatReason.SNAT_PORTS_EXHAUSTED) {
      explainEndpoints(steps, port, r.external, r.frontend, p.entryPoint);
    }
    if (r.endpoint >= 0) explainChoice(steps, t, port, r.servicePort, r.external, r.lb, r.endpoint);
  } else if (r.entry < 0) {
    const isNodeAddr = t.nodePortAddressList.includes(p.dst);
    steps.push(`frontend: none is ${tuple(p.dst, p.dstPort)}/${protoName(p.protocol)} (no cluster, external or load-balancer IP${isNodeAddr ? `; ${addrText(p.dst)} serves node ports, but none is ${p.dstPort}` : ''})`);
  }
  if (verdict === Verdict.NATED && r.newFlow) {
    const ct = nat.conntrack;
    const tupleOf = (ref: number): FlowTuple => (nat instanceof ServiceNat6 ? nat.conntrack.tuple6(ref) : ct.tuple(ref));
    explainNat(steps, tupleOf(r.entry * 2), tupleOf(r.entry * 2 + 1), r.entry, r.masquerade);
  }
  const verdictLine = verdict === Verdict.NATED ? `forward ${protoName(p.protocol)} ${after}${endpointWhere(t, r.endpoint, port)}`
    : verdict === Verdict.PASS ? 'not a service packet: forwarded unchanged'
    : `${REASON_TEXT[r.reason] ?? natReasonNames[r.reason]}${verdict === Verdict.REJECT_TCP_RST ? '; answered with a TCP reset' : verdict === Verdict.REJECT_ICMP ? '; answered with ICMP port unreachable' : ''}`;
  steps.push(`verdict: ${verdictNames[verdict]}: ${verdictLine}`);
  return {
    verdict: verdictNames[verdict]!,
    reason: natReasonNames[r.reason]!,
    servicePort: port?.key ?? null,
    frontend: r.frontend >= 0 ? frontendKindNames[r.frontend]! : null,
    endpoint: r.endpoint >= 0 ? tuple(endpointAddress(t, r.endpoint), t.endpointPort[r.endpoint]!) : null,
    lb: lbChoiceNames[r.lb]!,
    masquerade: masqReasonNames[r.masquerade]!,
    after,
    afterDst: v6 ? 0 : info.dst4,
    afterDst6: v6 ? String(dstAfter) : '',
    steps,
  };
}

/** The address of endpoint `k` of a table: IPv4's from endpointIP, IPv6's from its words. */
function endpointAddress(t: ServiceTable<Address>, k: number): Address {
  if (t.family === 4) return t.endpointIP[k]!;
  const b = new Uint8Array(16);
  const view = new DataView(b.buffer);
  for (let w = 0; w < 4; w++) view.setInt32(4 * w, t.endpointIP6[k * 4 + w]!);
  return ipv6ToString(b);
}

function explainFrontend(steps: string[], port: ServicePortSpec<Address>, kind: number, p: TracePacket): void {
  const name = `${port.namespace}/${port.name}${port.portName ? ` port "${port.portName}"` : ''}`;
  const at = kind === FrontendKind.NODE_PORT ? `node port ${p.dstPort} on ${addrText(p.dst)}` : tuple(p.dst, p.dstPort);
  steps.push(`frontend: ${at}/${protoName(p.protocol)} is the ${frontendKindNames[kind]} of ${name} (cluster IP ${port.clusterIP ? tuple(port.clusterIP, port.port) : 'none'})`);
  if (kind === FrontendKind.LOAD_BALANCER && port.loadBalancerSourceRanges.length > 0) {
    steps.push(`  loadBalancerSourceRanges: ${port.loadBalancerSourceRanges.map(([a, n]) => `${addrText(a)}/${n}`).join(', ')}`);
  }
}

function explainEndpoints(steps: string[], port: ServicePortSpec<Address>, external: boolean, kind: number, entryPoint: number): void {
  const list = external ? port.externalEndpoints : port.clusterEndpoints;
  const why = external
    ? `for node ports, external and load-balancer IPs under externalTrafficPolicy ${port.externalLocal ? 'Local' : 'Cluster'}`
    : kind !== FrontendKind.CLUSTER_IP
      ? `externalTrafficPolicy Local sends ${entryPointNames[entryPoint]} traffic to the cluster-wide list`
      : `for traffic from inside the cluster under internalTrafficPolicy ${port.internalLocal ? 'Local' : 'Cluster'}`;
  steps.push(`endpoints: the ${external ? 'external' : 'cluster'} list (${why}): ${list.length} of ${port.allEndpoints.length} eligible`);
  const policyLocal = external ? port.externalLocal : port.internalLocal;
  const anyReady = list.some((e) => e.ready);
  const node = (e: EndpointSpec<Address>) => (e.nodeName || '?') + (e.local ? ' (this node)' : '');
  const nodeWidth = Math.max(0, ...port.allEndpoints.map((e) => node(e).length));
  const condWidth = Math.max(0, ...port.allEndpoints.map((e) => conditions(e).length));
  for (const e of port.allEndpoints) {
    const inList = list.some((x) => x.ip === e.ip && x.port === e.port);
    steps.push(`  ${tuple(e.ip, e.port).padEnd(typeof e.ip === 'number' ? 21 : 30)}  ${node(e).padEnd(nodeWidth)}  ${conditions(e).padEnd(condWidth)}  ${inList ? eligible(e) : notEligible(e, anyReady, policyLocal)}`);
  }
}

function conditions(e: EndpointSpec<Address>): string {
  const c = [e.ready ? 'ready' : 'not ready'];
  if (!e.ready) c.push(e.serving ? 'serving' : 'not serving');
  if (e.terminating) c.push('terminating');
  if (e.zone) c.push(`zone ${e.zone}`);
  return c.join(', ');
}

function eligible(e: EndpointSpec<Address>): string {
  return e.ready ? 'eligible' : 'eligible (fallback: no ready endpoint, serving and terminating ones are used)';
}

function notEligible(e: EndpointSpec<Address>, anyReady: boolean, policyLocal: boolean): string {
  if (!e.ready && !e.serving) return 'not eligible: not serving';
  if (!e.ready && anyReady) return 'not eligible: not ready (ready endpoints exist)';
  if (policyLocal && !e.local) return 'not eligible: on another node (traffic policy Local)';
  return 'not eligible: filtered by topology (EndpointSlice hints / trafficDistribution)';
}

function explainChoice(steps: string[], t: ServiceTable<Address>, port: ServicePortSpec<Address>, sp: number, external: boolean, lb: number, ep: number): void {
  const n = external ? t.externalCount[sp]! : t.clusterCount[sp]!;
  const chosen = tuple(endpointAddress(t, ep), t.endpointPort[ep]!);
  let how: string;
  if (lb === LbChoice.AFFINITY) how = `sessionAffinity ClientIP: the client's entry (timeout ${port.affinityTimeoutSeconds} s) still points to it`;
  else if (lb === LbChoice.MAGLEV) how = `Maglev consistent hashing of the 5-tuple over a ${maglevTableSize(n)}-slot table of ${n} endpoints`;
  else how = `random among ${n}`;
  steps.push(`choice: ${chosen} by ${how}`);
  if (port.affinityTimeoutSeconds > 0 && lb !== LbChoice.AFFINITY) steps.push(`  sessionAffinity ClientIP: no live entry for this client; recorded for ${port.affinityTimeoutSeconds} s`);
}

function explainNat(steps: string[], o: FlowTuple, r: FlowTuple, e: number, masq: number): void {
  steps.push(`NAT: DNAT ${tuple(o.dst, o.dstPort)} -> ${tuple(r.src, r.srcPort)}`);
  if (masq === MasqReason.NONE) {
    steps.push(`NAT: no SNAT: the client keeps its address${r.dstPort !== o.srcPort ? ` (source port ${o.srcPort} -> ${r.dstPort}: the reply tuple was taken)` : ''}`);
  } else {
    steps.push(`NAT: SNAT ${tuple(o.src, o.srcPort)} -> ${tuple(r.dst, r.dstPort)}: ${masqReasonNames[masq]}`);
  }
  steps.push(`conntrack: entry ${e} created; replies ${tuple(r.src, r.srcPort)} -> ${tuple(r.dst, r.dstPort)} are reverse-NATed`);
}

function endpointWhere(t: ServiceTable<Address>, ep: number, port: ServicePortSpec<Address> | null): string {
  if (ep < 0 || port === null) return '';
  const ip = endpointAddress(t, ep);
  const spec = port.allEndpoints.find((e) => e.ip === ip && e.port === t.endpointPort[ep]);
  if (t.endpointLocal[ep] === 1) return ' (endpoint on this node: to its pod port)';
  return spec?.nodeName ? ` (endpoint on node ${spec.nodeName}: over the overlay)` : '';
}

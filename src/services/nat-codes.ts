// The numeric codes ServiceNat.process() answers with and records in NatResult:
// verdicts, why a packet was rejected or dropped, where it entered the node, how the
// endpoint was chosen, why the source was masqueraded. Names indexed by code are for
// counters, logs and `tapir trace` (slow path only).
import { FrontendKind } from '../tables/service-frontends.ts';
import { PortFlag } from '../tables/service-table.ts';

/** Where the packet entered the node. Replies are recognised by conntrack whatever the entry point. */
export const EntryPoint = {
  /** From a local pod's port. */
  POD: 0,
  /** From the node's own stack (the host TUN). */
  HOST: 1,
  /** From outside the cluster: node ports, load-balancer and external IPs steered in from the underlay. */
  EXTERNAL: 2,
} as const;
export type EntryPointCode = (typeof EntryPoint)[keyof typeof EntryPoint];
export const entryPointNames: readonly string[] = ['pod', 'host', 'external'];

export const Verdict = {
  /** Not a service packet (nor a reply or ICMP error of a service flow): forward as is. */
  PASS: 0,
  /** Rewritten in place (DNAT/SNAT, reverse NAT, or an ICMP error translated): forward the new packet. */
  NATED: 1,
  /** Answer with a TCP reset (ServiceNat.buildReject) and drop the packet. */
  REJECT_TCP_RST: 2,
  /** Answer with ICMP port unreachable (ServiceNat.buildReject) and drop the packet. */
  REJECT_ICMP: 3,
  /** Drop; NatResult.reason says why. */
  DROP: 4,
} as const;
export type VerdictCode = (typeof Verdict)[keyof typeof Verdict];
export const verdictNames: readonly string[] = ['pass', 'nated', 'reject-tcp-rst', 'reject-icmp', 'drop'];

/** Why a packet was rejected or dropped (NatResult.reason, ServiceNat.reasons). */
export const NatReason = {
  NONE: 0,
  /** Reject: the service port has no endpoints at all (kube-proxy: "has no endpoints", REJECT). */
  NO_ENDPOINTS: 1,
  /** Reject: a cluster IP on a port no service has (kube-proxy's nftables mode rejects these). */
  UNKNOWN_PORT: 2,
  /** Drop: endpoints exist but none for this traffic under a Local traffic policy ("has no local endpoints", DROP). */
  NO_LOCAL_ENDPOINTS: 3,
  /** Drop: client outside the load-balancer IP's loadBalancerSourceRanges. */
  SOURCE_RANGE: 4,
  /** Drop: conntrack had no room and nothing it could evict. */
  CONNTRACK_FULL: 5,
  /** Drop: a TCP segment that cannot open a flow (FIN, RST, SYN-ACK) and belongs to none. */
  TCP_NOT_NEW: 6,
  /** Drop: an IP fragment to a frontend address (no reassembly: later fragments carry no ports). */
  FRAGMENT: 7,
  /** Drop: masquerading found no free source port for the endpoint. */
  SNAT_PORTS_EXHAUSTED: 8,
  /** Drop: the client already holds its share of unanswered conntrack entries (a flood). */
  CONNTRACK_SOURCE_LIMIT: 9,
} as const;
export const natReasonNames: readonly string[] = [
  'none', 'no-endpoints', 'unknown-port', 'no-local-endpoints', 'source-range', 'conntrack-full', 'tcp-not-new',
  'fragment', 'snat-ports-exhausted', 'conntrack-source-limit',
];

/** How the endpoint of a new flow was chosen. */
export const LbChoice = { NONE: 0, RANDOM: 1, MAGLEV: 2, AFFINITY: 3 } as const;
export const lbChoiceNames: readonly string[] = ['none', 'random', 'maglev', 'client-ip affinity'];

/** Why a new flow's source was rewritten (0: kept). */
export const MasqReason = {
  NONE: 0,
  /** A pod reached itself through its service: the reply must come back through the node. */
  HAIRPIN: 1,
  /** The node's own traffic to a service. */
  HOST: 2,
  /** A client outside the cluster reached a cluster IP (kube-proxy masquerades non-pod sources). */
  OFF_CLUSTER: 3,
  /** externalTrafficPolicy: Cluster: the endpoint may be on another node. */
  EXTERNAL_POLICY_CLUSTER: 4,
  /** ServiceNatOptions.masqueradeAll (kube-proxy --masquerade-all). */
  MASQUERADE_ALL: 5,
} as const;
export const masqReasonNames: readonly string[] = [
  'none', 'hairpin (pod to itself)', 'traffic from the node itself', 'client outside the cluster to a cluster IP',
  'externalTrafficPolicy: Cluster', 'masquerade-all',
];

/** servicePolicy()'s answer: the external endpoint list is used. */
export const POLICY_EXTERNAL = 8;

/**
 * Which endpoint list a new flow uses and why its source is rewritten, by frontend
 * kind, the port's PortFlag bits and the entry point (the table in nat.ts' header):
 * a MasqReason, plus POLICY_EXTERNAL for the external list. Both families' engines
 * decide with it. Small and pure, so TurboFan inlines it into the per-flow path.
 */
export function servicePolicy(kind: number, portFlags: number, entryPoint: number, masqueradeAll: boolean): number {
  let external = kind !== FrontendKind.CLUSTER_IP;
  let masq: number = MasqReason.NONE;
  if (!external) {
    if (entryPoint === EntryPoint.HOST) masq = MasqReason.HOST;
    else if (entryPoint === EntryPoint.EXTERNAL) masq = MasqReason.OFF_CLUSTER;
  } else if ((portFlags & PortFlag.EXTERNAL_LOCAL) === 0) {
    masq = MasqReason.EXTERNAL_POLICY_CLUSTER;
  } else if (entryPoint !== EntryPoint.EXTERNAL) {
    external = false;
    if (entryPoint === EntryPoint.HOST) masq = MasqReason.HOST;
  }
  if (masq === MasqReason.NONE && masqueradeAll) masq = MasqReason.MASQUERADE_ALL;
  return external ? masq | POLICY_EXTERNAL : masq;
}

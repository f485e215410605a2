// The agent's configuration: one node's view of the cluster network, as the agent runs
// with it (AgentConfig), the defaults a file may leave out, what it may take from the
// process (AgentConfigEnvironment), and the error that lists every problem of a file.
// config-file.ts reads the file; tapir-config.ts reads its TapirAgentConfiguration and
// kube-proxy-config.ts its KubeProxyConfiguration. docs/agent-config.md documents every field.
import { TapirError } from '../errors/tapir-error.ts';
import type { KubeAuth } from '../k8s/kube-api.ts';
import type { PortRange } from '../model/cluster-defaults.ts';
import type { Cidr, Cidr6 } from '../wire/address.ts';
import type { ConntrackTimeouts } from '../tables/tcp-state.ts';
import type { KubeProxySettings } from './kube-proxy-config.ts';

export interface NodeRecord {
  name: string;
  underlayIP: number;
  /** The node's IPv6 underlay address, VXLAN's peer over an IPv6 underlay (`underlayIPv6`; cluster mode: the Node's IPv6 InternalIP); null/absent otherwise. */
  underlayIP6?: Uint8Array | null;
  podCIDR: Cidr;
  /** The node's IPv6 pod range (dual-stack), or null/absent. */
  podCIDRv6?: Cidr6 | null;
}

export interface AgentConfig {
  nodeName: string;
  underlayInterface: string;
  underlayAddress: number;
  podCIDR: Cidr;
  clusterCIDR: Cidr;
  serviceCIDR: Cidr;
  /** This node's IPv6 pod range and the cluster's (dual-stack): both or neither (null). The IPv6 gateway is podCIDRv6's ::1. */
  podCIDRv6: Cidr6 | null;
  clusterCIDRv6: Cidr6 | null;
  /** The cluster IPs' IPv6 range (routed into the host TUN; NAT66 serves it); null = none. */
  serviceCIDRv6: Cidr6 | null;
  /** The node's IPv6 address (the source of its IPv6 traffic to this node's pods); null = the IPv6 pod gateway, on the host TUN, for those too. */
  underlayAddressV6: Uint8Array | null;
  /**
   * The family VXLAN rides (`underlay.family`): 4, or 6 for an IPv6 underlay, one for the
   * whole cluster. Inner frames of both families ride either.
   */
  underlayFamily: 4 | 6;
  /** Over an IPv6 underlay, this node's end of the tunnels: underlay.addressV6, else (cluster mode) the Node's IPv6 InternalIP; null over IPv4. */
  vxlanAddress6: Uint8Array | null;
  /**
   * `tunnelOffload` (default true): where the kernel can (Linux 6.17+, the node
   * forwarding IPv4), hand it whole VXLAN super-frames through an egress TAP and let it
   * segment them (src/agent/tunnel-egress.ts); false keeps segmenting in software.
   */
  tunnelOffload: boolean;
  /** VXLAN network identifier (24 bits, RFC 7348 section 5). */
  vni: number;
  /** Pod MTU: the underlay's MTU less what VXLAN adds (50 bytes over IPv4, 70 over IPv6). */
  mtu: number;
  stateDir: string;
  controlSocket: string;
  /** Name of the host TUN: the node's own stack's way into the pod network (and steered traffic's). */
  hostTun: string;
  nodes: NodeRecord[];
  /** Directory of Kubernetes manifests (Services, EndpointSlices, Pods, Nodes) to serve; none = no service proxy. */
  manifests: string | null;
  /** topology.kubernetes.io/zone of this node ('' = from its Node object, if any). */
  zone: string;
  /** Addresses on which node ports are served (kube-proxy's nodePortAddresses), 127.0.0.1 for localhost node ports; default the underlay address and 127.0.0.1. */
  nodePortAddresses: number[];
  /**
   * The IPv6 addresses node ports are served on (a node with IPv6 pods): underlay.addressV6,
   * else (cluster mode) the Node's IPv6 InternalIP, as kube-proxy's "primary" takes each
   * family's node IP; [] = IPv6 node ports nowhere.
   */
  nodePortAddressesV6: Uint8Array[];
  /** Node ports (kube-apiserver's --service-node-port-range). */
  nodePortRange: PortRange;
  /** Connection-tracking table size (entries); a full table evicts expired entries, then refuses new flows. */
  conntrackSize: number;
  /**
   * Busy polling after traffic (microseconds, 0 = off, the default): the data path keeps
   * polling its ports and the underlay this long after the last packet before it sleeps,
   * so request/response traffic does not wait for the agent to be woken (Linux's
   * net.core.busy_poll, for the agent; src/device/busy-poll.ts). Buys connections/s and
   * latency with CPU.
   */
  busyPollMicros: number;
  /** Conntrack timeouts the config sets, in seconds (the rest keep DEFAULT_TIMEOUTS). */
  conntrackTimeouts: Partial<ConntrackTimeouts>;
  /** The service sync runner: bursts within this become one sync (kube-proxy's minSyncPeriod). */
  minSyncIntervalMs: number;
  /** A full sync at least this often (kube-proxy's syncPeriod); healthz fails after twice this. */
  maxSyncIntervalMs: number;
  /** The KubeProxyConfiguration's settings (its defaults when the file has none). */
  kubeProxy: KubeProxySettings;
  /** Cluster mode: Services, EndpointSlices and Nodes from this API server (set from `tapir agent --kubernetes`); null reads `manifests`. */
  kubernetes: KubeAuth | null;
  /** The node's cluster DNS server (docs/dns.md); null = not served (no `dns` field). */
  dns: AgentDnsConfig | null;
}

export interface AgentDnsConfig {
  /** The IPv4 cluster DNS addresses (kubelet's clusterDNS) this node answers, on the host TUN; default the service CIDR's tenth address. */
  clusterDNS: number[];
  /**
   * Its IPv6 ones (RFC 5952 text), from the same `clusterDNS` list: an IPv6-only or
   * IPv6-primary cluster's kube-dns address (the IPv6 service range's tenth, fd00:10:96::a
   * in the lab). Served like the IPv4 ones, the node's IPv6 stack permitting.
   */
  clusterDNS6: string[];
  /** A CoreDNS Corefile; null = the built-in one (kubeadm's default Corefile). */
  corefile: string | null;
  /** Also answer on the node's underlay address (the kube-dns Service's endpoints contract). */
  nodeAddress: boolean;
}

/** Tapir's own sync intervals when the config names none (kube-proxy's are 1 s and 30 s). */
export const DEFAULT_MIN_SYNC_INTERVAL_MS = 100;
export const DEFAULT_MAX_SYNC_INTERVAL_MS = 30_000;
/** Without a KubeProxyConfiguration, the conntrack table has this many entries. */
export const DEFAULT_CONNTRACK_SIZE = 262144;

/** What the config may take from the process: NODE_NAME (the downward API's), the hostname, the CPU count. */
export interface AgentConfigEnvironment {
  nodeName?: string | undefined;
  hostname?: string;
  cores?: number;
  /**
   * Cluster mode: what this node's Node object says (its InternalIP, the interface that
   * holds it, spec.podCIDR). Fields the file leaves out are taken from here, so one
   * ConfigMap serves every node.
   */
  node?: {
    address?: number | undefined; interface?: string | undefined; podCIDR?: Cidr | undefined;
    /** The Node's IPv6 InternalIP (dual-stack). */
    address6?: Uint8Array | undefined;
    /** The IPv6 entry of spec.podCIDRs (dual-stack). */
    podCIDRv6?: Cidr6 | undefined;
  };
}

/** VXLAN over IPv4: outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** VXLAN over IPv6: the outer IPv6 header is 40 bytes, 20 more than IPv4's. */
export const VXLAN6_OVERHEAD = 70;

/** What VXLAN adds to a pod's packet over an underlay of this family. */
export function vxlanOverhead(family: 4 | 6): number {
  return family === 6 ? VXLAN6_OVERHEAD : VXLAN_OVERHEAD;
}

/** The config file cannot be read or is wrong; `problems` lists every one, each with its field path. */
export class AgentConfigError extends TapirError {
  readonly code = 'TAPIR_AGENT_CONFIG';
  readonly file: string;
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super(problems.length === 1 ? problems[0]! : `${file}: ${problems.length} problems:\n  ${problems.join('\n  ')}`);
    this.file = file;
    this.problems = problems;
  }

  /** `tapir agent` was started wrongly (as with a bad option): nothing ran. */
  override get exitCode(): number {
    return 2;
  }
}

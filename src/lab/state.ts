// The lab's record of what it made: /run/tapir/lab/<name>/state.json. `up` writes it
// before creating anything and after every step, so `status`, `exec` and `down` (also
// after a crash) know every namespace, device, process and file of the lab.
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DnsPolicy, PodDnsConfig } from '../k8s/objects.ts';
import type { ContainerPort, Dataplane, ProxyMode, Workload } from './topology.ts';
import { LabError } from './validate.ts';

export const LAB_ROOT = '/run/tapir/lab';
export const STATE_VERSION = 2;

export interface AgentState {
  pid: number | null;
  /** The agent's own directory: config, control socket, logs, IPAM data. */
  dir: string;
  config: string;
  controlSocket: string;
  log: string;
}

/**
 * The lab's own per-node process (src/lab/node/node-daemon.ts), running in the node
 * namespace: the kubelet's readiness prober for the node's pods, kube-proxy for the
 * iptables/nftables proxy modes, and the load balancer's announcer (MetalLB L2 style).
 */
export interface DaemonState {
  pid: number | null;
  config: string;
  log: string;
  /** JSON the daemon rewrites after each pass: revision acted on, addresses announced, errors. */
  status: string;
}

export interface NodeState {
  name: string;
  /** topology.kubernetes.io/zone of the node's Node object. */
  zone: string;
  /** 1-based: node i gets underlay .10+i and the i-th /24 of the cluster CIDR by default. */
  index: number;
  netns: string;
  underlayIP: string;
  /** The node's veth end inside the underlay namespace (the other end is eth0 here). */
  underlayPort: string;
  podCIDR: string;
  gateway: string;
  /**
   * Dual-stack and IPv6-only labs: the node's IPv6 underlay address, pod range and
   * gateway (absent otherwise). An IPv6-only lab keeps podCIDR and gateway (the agent's
   * config needs them; no pod gets an address from them) and the IPv4 underlay address
   * (the overlay's VXLAN runs over it).
   */
  underlayIP6?: string;
  podCIDRv6?: string;
  gateway6?: string;
  /** Kernel dataplane: MAC of vxlan0, which remote nodes resolve podCIDR .0 to. */
  vtepMac: string;
  /** Devices the lab created inside the node namespace. */
  devices: string[];
  agent: AgentState | null;
  daemon: DaemonState;
}

export interface PodState {
  name: string;
  namespace: string;
  node: string;
  netns: string;
  /** IPv4. Kernel: planned by the lab. Tapir: from the CNI result (null until ADD succeeded; always null in IPv6-only labs). */
  ip: string | null;
  /** Dual-stack and IPv6-only labs: the pod's IPv6 address from the CNI result (null until then; absent in IPv4 labs). */
  ip6?: string | null;
  mac: string | null;
  labels: Record<string, string>;
  ports: ContainerPort[];
  workload: Workload;
  /** The node-side device (kernel: the veth on cni0; tapir: the agent's TAP name). */
  hostDevice: string | null;
  /** CNI_CONTAINERID: sha256 of lab/namespace/pod, so DEL after a crash uses the same id. */
  containerId: string;
  cniAdded: boolean;
  workloadPid: number | null;
  log: string;
  readyFile: string;
  /**
   * The Pod's DNS fields (absent in states of older labs: ClusterFirst, no dnsConfig) and
   * what the lab, as the kubelet, made of them when the pod started: the resolv.conf
   * written to /etc/netns/<netns>/resolv.conf (its lines) and the kubelet's
   * DNSConfigForming warnings (limits exceeded).
   */
  dns?: { policy: DnsPolicy; config: PodDnsConfig | null; hostNetwork: boolean; resolvConf: string[]; warnings: string[] };
  /** spec.enableServiceLinks (default true). */
  enableServiceLinks?: boolean;
  /** spec.hostname and spec.subdomain of a topology pod (its Pod object carries them). */
  hostname?: string;
  subdomain?: string;
  /**
   * The environment the lab gave the pod's processes on top of the lab command's own:
   * POD_NAME, POD_NAMESPACE, NODE_NAME, POD_IP, and the Service variables of the
   * Services that existed at its start (src/lab/cluster/service-env.ts). `lab exec`
   * runs commands in the pod with it.
   */
  env?: Record<string, string>;
  /**
   * Set on pods a node daemon (the lab's kubelet) started from a Pod in the API, whoever
   * created it: their record is the daemon's file (kubeletPodsFile), merged in by
   * loadState and never written to state.json.
   */
  startedBy?: 'kubelet';
}

/** The lab API server (src/lab/apiserver/lab-control-plane.ts): where it runs and how to reach it. */
export interface ApiServerState {
  pid: number;
  dir: string;
  log: string;
  /** Its address on the underlay bridge. */
  address: string;
  /** https://ADDRESS:6443 (from the lab's namespaces) and https://127.0.0.1:PORT (from the host). */
  labServer: string;
  hostServer: string;
  caFile: string;
  /** Admin kubeconfigs: `tapir lab kubeconfig` prints the host one. */
  hostKubeconfig: string;
  labKubeconfig: string;
  /** The agents' service account token (ServiceAccount kube-system/tapir). */
  agentToken: string;
}

/** The lab's upstream DNS server (src/lab/network/upstream-dns.ts), NSD in the underlay namespace. */
export interface UpstreamDnsState {
  address: string;
  pid: number | null;
  /** Config, zone, NSD's own log and state files. */
  dir: string;
  config: string;
  /** stdout and stderr of the process. */
  log: string;
}

export interface ClientState { name: string; netns: string; ip: string; underlayPort: string; /** Dual-stack labs. */ ip6?: string }

export interface LabState {
  version: number;
  name: string;
  dataplane: Dataplane;
  proxyMode: ProxyMode;
  /** The manifest directory (Kubernetes objects, one per file) every agent watches. */
  manifests: string;
  /** How long a deleted pod stays terminating before it is stopped. */
  terminationGracePeriodSeconds: number;
  /** building: `up` is running or crashed; ready: traffic was verified. */
  phase: 'building' | 'ready';
  createdAt: string;
  source: string;
  stateDir: string;
  addressing: {
    underlayCIDR: string; clusterCIDR: string; serviceCIDR: string; loadBalancerPool: string; vni: number; mtu: number; podMTU: number;
    /** Dual-stack and IPv6-only labs (absent in IPv4 labs and older states). */
    underlayCIDRv6?: string; clusterCIDRv6?: string; serviceCIDRv6?: string;
    /** Dual-stack and IPv6-only labs: the load balancer's IPv6 pool (the IPv4 pool's host numbers in underlayCIDRv6). */
    loadBalancerPoolV6?: string;
  };
  /** The pods' and Services' address families (absent: ipv4, in states of older labs). */
  ipFamily?: 'ipv4' | 'dual' | 'ipv6';
  /** The overlay rides the nodes' IPv6 underlay addresses (`lab up --underlay ipv6`, dual-stack and IPv6-only labs); absent: IPv4. */
  underlayFamily?: 'ipv6';
  underlay: { netns: string; bridge: string };
  nodes: NodeState[];
  pods: PodState[];
  client: ClientState | null;
  /** The lab API server (src/lab/apiserver/), once started; absent in labs made before it. */
  apiServer?: ApiServerState;
  /** The lab's upstream DNS server (absent in states of older labs). */
  upstreamDns?: UpstreamDnsState;
  /** Topology `agent:` settings written into every agent's config (absent in states of older labs). */
  agent?: { conntrackSize?: number; busyPollMicros?: number; tunnelOffload?: boolean };
  /**
   * Where the lab keeps its Kubernetes objects: `kubernetes` (the default) in the lab API
   * server, which the agents watch in cluster mode and `lab apply` writes; `manifests` in
   * the manifest directory (the clusterless mode). Absent: manifests (older labs).
   */
  objectStore?: ObjectStore;
}

export const OBJECT_STORES = ['kubernetes', 'manifests'] as const;
export type ObjectStore = (typeof OBJECT_STORES)[number];

/** The lab keeps its objects in its API server (cluster mode). */
export function usesApi(state: LabState): state is LabState & { apiServer: ApiServerState } {
  return state.objectStore === 'kubernetes' && state.apiServer !== undefined;
}

export function stateDirOf(lab: string): string {
  return join(LAB_ROOT, lab);
}

export function statePathOf(lab: string): string {
  return join(stateDirOf(lab), 'state.json');
}

/** Writes atomically (rename) so a crash never leaves half a JSON document. */
export function saveState(state: LabState): void {
  const path = statePathOf(state.name);
  const saved = { ...state, pods: state.pods.filter((p) => p.startedBy !== 'kubelet') };
  writeFileSync(`${path}.tmp`, `${JSON.stringify(saved, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

/** The state of lab `lab`, or undefined when it has none (never made, or removed). */
export function loadState(lab: string): LabState | undefined {
  let text: string;
  try {
    text = readFileSync(statePathOf(lab), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let state: LabState;
  try {
    state = JSON.parse(text) as LabState;
  } catch (err) {
    throw new LabError('STATE_CORRUPT', `${statePathOf(lab)}: not valid JSON (${(err as Error).message}); \`tapir lab down --name ${lab}\` still removes the lab by its name prefix`);
  }
  if (state.version !== STATE_VERSION) {
    throw new LabError('STATE_VERSION', `${statePathOf(lab)}: state version ${state.version}, this tapir writes ${STATE_VERSION}`);
  }
  for (const node of state.nodes) {
    for (const pod of readKubeletPods(kubeletPodsFile(state.stateDir, node.name))) {
      if (!state.pods.some((p) => p.namespace === pod.namespace && p.name === pod.name)) state.pods.push({ ...pod, startedBy: 'kubelet' });
    }
  }
  return state;
}

/** The pods a node daemon started as the kubelet (its own record; see PodState.startedBy). */
export function kubeletPodsFile(stateDir: string, node: string): string {
  return join(stateDir, 'nodes', node, 'kubelet-pods.json');
}

/** A kubelet's record; empty when it has none (or a torn one: the daemon rewrites it whole). */
export function readKubeletPods(path: string): PodState[] {
  try {
    const pods = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return Array.isArray(pods) ? pods as PodState[] : [];
  } catch {
    return [];
  }
}

export function writeKubeletPods(path: string, pods: readonly PodState[]): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(pods, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function requireState(lab: string): LabState {
  const state = loadState(lab);
  if (state === undefined) throw new LabError('NOT_FOUND', `no lab named "${lab}" (start one with: tapir lab up --name ${lab})`);
  return state;
}

/**
 * Claims the lab's state directory: mkdir is atomic, so two `up`s of one name can't
 * both proceed. Returns false when the directory already exists.
 */
export function claimStateDir(lab: string): boolean {
  mkdirSync(LAB_ROOT, { recursive: true });
  try {
    mkdirSync(stateDirOf(lab));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

export function listLabs(): string[] {
  try {
    return readdirSync(LAB_ROOT, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

/** Whether the lab is dual-stack (its pods and nodes have IPv6 addresses too). */
export function isDualStack(state: LabState): boolean {
  return state.ipFamily === 'dual';
}

/** Whether VXLAN rides the nodes' IPv6 underlay addresses. */
export function isIpv6Underlay(state: LabState): boolean {
  return state.underlayFamily === 'ipv6';
}

/** Whether the lab is IPv6-only (kind's `ipFamily: ipv6`): pods and Services IPv6. */
export function isIpv6Only(state: LabState): boolean {
  return state.ipFamily === 'ipv6';
}

/** Whether the lab's pods and Services have IPv6 addresses (dual-stack or IPv6-only). */
export function hasIpv6(state: LabState): boolean {
  return state.ipFamily === 'dual' || state.ipFamily === 'ipv6';
}

/**
 * The service ranges as kube-apiserver's --service-cidr takes them, primary first: an
 * IPv6-only lab's is its IPv6 range alone, a dual-stack lab's IPv4 then IPv6.
 */
export function labServiceCidrs(state: LabState): string {
  if (state.ipFamily === 'ipv6') return state.addressing.serviceCIDRv6!;
  return state.ipFamily === 'dual' ? `${state.addressing.serviceCIDR},${state.addressing.serviceCIDRv6}` : state.addressing.serviceCIDR;
}

/** The pod's primary address (status.podIP): IPv4, or IPv6 in an IPv6-only lab; null until known. */
export function podPrimaryIP(pod: PodState): string | null {
  return pod.ip ?? pod.ip6 ?? null;
}

// The objects the lab itself puts into its manifest directory, as the control plane
// of a cluster would have them: a Node per lab node (zone label, InternalIP = the
// underlay address), the Namespaces in use, and a Pod per lab pod with the status the
// kubelet would report (pod IP, Ready condition). Plain YAML-ready objects.
import { isIpv6Only, type LabState, type NodeState, type PodState } from '../state.ts';
import type { RawObject } from './manifests.ts';

export const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** Namespaces every cluster has. */
export const BUILTIN_NAMESPACES = ['default', 'kube-system'] as const;

export function nodeObject(node: NodeState): RawObject {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: node.name, labels: { 'kubernetes.io/hostname': node.name, [ZONE_LABEL]: node.zone } },
    spec: { podCIDR: node.podCIDR, podCIDRs: node.podCIDRv6 === undefined ? [node.podCIDR] : [node.podCIDR, node.podCIDRv6] },
    status: {
      addresses: [
        { type: 'InternalIP', address: node.underlayIP },
        ...(node.underlayIP6 === undefined ? [] : [{ type: 'InternalIP', address: node.underlayIP6 }]),
        { type: 'Hostname', address: node.name },
      ],
    },
  };
}

export function namespaceObject(name: string): RawObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

/** The Pod a topology pod stands for: one container declaring the workload's ports. */
export function topologyPodObject(pod: PodState): RawObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: pod.name, namespace: pod.namespace, labels: { ...pod.labels } },
    spec: {
      nodeName: pod.node,
      ...(pod.hostname === undefined ? {} : { hostname: pod.hostname }),
      ...(pod.subdomain === undefined ? {} : { subdomain: pod.subdomain }),
      ...podDnsSpec(pod),
      containers: [{
        name: pod.workload.type === 'command' ? 'command' : 'echo',
        ports: pod.ports.map((p) => ({ ...(p.name === '' ? {} : { name: p.name }), containerPort: p.port, protocol: p.protocol })),
      }],
    },
    status: podStatus(pod, false),
  };
}

/** The Pod spec's dnsPolicy, dnsConfig and enableServiceLinks of a lab pod, in the API's form. */
function podDnsSpec(pod: PodState): RawObject {
  const dns = pod.dns;
  const spec: RawObject = { dnsPolicy: dns?.policy ?? 'ClusterFirst', enableServiceLinks: pod.enableServiceLinks ?? true };
  if (dns?.config != null) {
    spec.dnsConfig = {
      ...(dns.config.nameservers.length === 0 ? {} : { nameservers: dns.config.nameservers }),
      ...(dns.config.searches.length === 0 ? {} : { searches: dns.config.searches }),
      ...(dns.config.options.length === 0 ? {} : { options: dns.config.options.map((o) => (o.value === null ? { name: o.name } : { name: o.name, value: o.value })) }),
    };
  }
  return spec;
}

/** status as the kubelet reports it; `ready` is the prober's verdict. */
export function podStatus(pod: PodState, ready: boolean, hostIP?: string): RawObject {
  const value = ready ? 'True' : 'False';
  return {
    phase: 'Running',
    ...(hostIP === undefined ? {} : { hostIP }),
    // podIPs: the primary first (IPv4; in an IPv6-only lab the only one, IPv6).
    ...(podIPsOf(pod).length === 0 ? {} : { podIP: podIPsOf(pod)[0], podIPs: podIPsOf(pod).map((ip) => ({ ip })) }),
    conditions: [
      { type: 'PodScheduled', status: 'True' },
      { type: 'ContainersReady', status: value },
      { type: 'Ready', status: value },
    ],
  };
}

/** The pod's addresses as status.podIPs lists them, primary first. */
function podIPsOf(pod: PodState): string[] {
  return [pod.ip, pod.ip6].filter((ip): ip is string => ip != null);
}

/** Sets the Ready (and ContainersReady) condition of a stored Pod in place; false if already so. */
export function setPodReady(raw: RawObject, ready: boolean): boolean {
  const status = (raw.status ??= {}) as { conditions?: { type: string; status: string; lastTransitionTime?: string }[] };
  const conditions = (status.conditions ??= []);
  const value = ready ? 'True' : 'False';
  let changed = false;
  for (const type of ['ContainersReady', 'Ready']) {
    const condition = conditions.find((c) => c.type === type);
    if (condition === undefined) {
      conditions.push({ type, status: value, lastTransitionTime: new Date().toISOString() });
      changed = true;
    } else if (condition.status !== value) {
      condition.status = value;
      condition.lastTransitionTime = new Date().toISOString();
      changed = true;
    }
  }
  return changed;
}

/** Every namespace the lab's pods live in, plus the built-in ones. */
export function labNamespaces(state: LabState): string[] {
  return [...new Set([...BUILTIN_NAMESPACES, ...state.pods.map((p) => p.namespace)])].sort();
}

/**
 * status.containerStatuses as the kubelet writes them (kubectl's READY column counts
 * them): every container running since `startedAt`, ready with the pod's verdict.
 */
export function containerStatuses(names: readonly string[], ready: boolean, startedAt: string): RawObject[] {
  return names.map((name) => ({
    name, ready, started: true, restartCount: 0, image: 'tapir-lab/echo', imageID: '',
    state: { running: { startedAt } },
  }));
}

/** The kube-dns Service's ports (kubeadm's CoreDNS addon's, which clients and dashboards know). */
const KUBE_DNS_PORTS = [
  { name: 'dns', port: 53, protocol: 'UDP' },
  { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  { name: 'metrics', port: 9153, protocol: 'TCP' },
] as const;

/**
 * The cluster DNS addon as the lab installs it (kubeadm would create CoreDNS's): the
 * kube-dns Service on the cluster DNS address, without a selector, and an EndpointSlice
 * naming every node's address, where each node's own DNS server (the agent's, or
 * `tapir dns` beside a kernel proxy) answers, as the agents' hostNetwork pods would be
 * selected by deploy/kubernetes/kube-dns/service.yaml. Pods never need the endpoints
 * under the Tapir data plane: their node answers the address itself.
 */
export function kubeDnsObjects(state: LabState, clusterDNS: string): RawObject[] {
  const ports = KUBE_DNS_PORTS.map((p) => ({ ...p }));
  const ipv6Only = isIpv6Only(state);
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'kube-dns', namespace: 'kube-system', labels: { 'k8s-app': 'kube-dns', 'kubernetes.io/name': 'CoreDNS' } },
      spec: { clusterIP: clusterDNS, ports: ports.map((p) => ({ ...p, targetPort: p.port })) },
    },
    {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: { name: 'kube-dns-nodes', namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns', 'endpointslice.kubernetes.io/managed-by': 'tapir-lab' } },
      // An IPv6-only lab's kube-dns is IPv6 (its endpoints the nodes' IPv6 underlay addresses, where the agents answer too).
      addressType: ipv6Only ? 'IPv6' : 'IPv4',
      endpoints: state.nodes.map((n) => ({ addresses: [ipv6Only ? n.underlayIP6! : n.underlayIP], nodeName: n.name, conditions: { ready: true, serving: true, terminating: false } })),
      ports,
    },
  ];
}

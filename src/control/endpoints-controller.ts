// The EndpointSlice controller's job for manifest mode and the lab (in a cluster,
// kube-controller-manager does it): the pods a Service selects become EndpointSlices.
// Follows k8s.io/endpointslice: conditions from the pod (serving = pod Ready,
// terminating = deletionTimestamp set, ready = serving and not terminating), named
// target ports resolved per pod (a pod without the named port is left out of that
// port), endpoints grouped into one slice per distinct port mapping, and
// trafficDistribution turned into hints the way its preferClose heuristic does.
// Dual-stack: one set of slices per address family the Service has
// (getAddressTypesForService), each endpoint the pod's address of that family from
// status.podIPs; a pod without one is no endpoint of that family's slices.
import { parseIpv6 } from '../wire/address.ts';
import { familyOfValid } from '../k8s/ip-families.ts';
import { Label, type IpFamily, type EndpointSliceObject, type NodeObject, type PodObject, type ServiceObject, type SliceEndpoint, type SlicePort } from '../k8s/objects.ts';

/** EndpointSlice label naming the controller that manages a slice. */
const MANAGED_BY = 'endpointslice.kubernetes.io/managed-by';
const CLOSE_DISTRIBUTIONS = new Set(['PreferClose', 'PreferSameZone', 'PreferSameNode']);

/** Equality-based selector: every key/value of the selector is among the labels. */
export function selectorMatches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const key in selector) {
    if (labels[key] !== selector[key]) return false;
  }
  return true;
}

/** Whether a pod is a candidate for any Service's endpoints at all. */
function podHasEndpoint(pod: PodObject): boolean {
  // Pods that ran to completion keep their IP in status but no longer serve.
  return pod.status.podIP !== '' && pod.status.phase !== 'Succeeded' && pod.status.phase !== 'Failed';
}

/** podutil.FindPort: a named target port is looked up among the containers' ports of the same protocol. */
export function findPort(pod: PodObject, targetPort: number | string, protocol: string): number | undefined {
  if (typeof targetPort === 'number') return targetPort;
  for (const container of pod.spec.containers) {
    for (const port of container.ports) {
      if (port.name === targetPort && port.protocol === protocol) return port.containerPort;
    }
  }
  return undefined;
}

/**
 * The EndpointSlices for one Service with a selector (none for a Service without one).
 * `pods` may hold pods of any namespace; only the Service's own are considered.
 * Output is sorted (slices by port mapping, endpoints by address) so every node derives
 * the same slices from the same manifests.
 */
/**
 * The address types of a Service's slices (the EndpointSlice controller's
 * getAddressTypesForService): its ipFamilies; without them (a Service from before
 * dual-stack, or one manifest mode has not settled) its cluster IP's family, and both
 * for a headless one. `families` overrides the object's (manifest mode's allocation).
 */
export function sliceAddressTypes(service: ServiceObject, families?: readonly IpFamily[]): IpFamily[] {
  const given = families !== undefined && families.length > 0 ? families : service.spec.ipFamilies;
  if (given.length > 0) return (['IPv4', 'IPv6'] as const).filter((f) => given.includes(f));
  const clusterIP = service.spec.clusterIP;
  if (clusterIP === 'None') return ['IPv4', 'IPv6'];
  return [clusterIP === '' ? 'IPv4' : familyOfValid(clusterIP)];
}

export function endpointSlicesForService(service: ServiceObject, pods: Iterable<PodObject>, nodes: ReadonlyMap<string, NodeObject>, families?: readonly IpFamily[]): EndpointSliceObject[] {
  const selector = service.spec.selector;
  if (selector === null) return [];
  const candidates = [...pods];
  return sliceAddressTypes(service, families).flatMap((family) => slicesOfFamily(service, candidates, nodes, selector, family));
}

function slicesOfFamily(service: ServiceObject, pods: readonly PodObject[], nodes: ReadonlyMap<string, NodeObject>, selector: Readonly<Record<string, string>>, family: IpFamily): EndpointSliceObject[] {
  const namespace = service.metadata.namespace;
  const distribution = service.spec.trafficDistribution;
  const groups = new Map<string, { ports: SlicePort[]; endpoints: SliceEndpoint[] }>();
  for (const pod of pods) {
    if (pod.metadata.namespace !== namespace || !podHasEndpoint(pod) || !selectorMatches(selector, pod.metadata.labels)) continue;
    const address = pod.status.podIPs.find((ip) => familyOfValid(ip) === family) ?? (pod.status.podIPs.length === 0 && familyOfValid(pod.status.podIP) === family ? pod.status.podIP : undefined);
    if (address === undefined) continue;
    const ports: SlicePort[] = [];
    for (const sp of service.spec.ports) {
      const port = findPort(pod, sp.targetPort, sp.protocol);
      if (port !== undefined) ports.push({ name: sp.name, port, protocol: sp.protocol });
    }
    // A pod that serves none of the Service's ports is no endpoint of it.
    if (service.spec.ports.length > 0 && ports.length === 0) continue;
    const terminating = pod.metadata.deletionTimestamp !== '';
    const serving = pod.status.ready;
    const ready = service.spec.publishNotReadyAddresses || (serving && !terminating);
    const nodeName = pod.spec.nodeName;
    const zone = nodes.get(nodeName)?.zone ?? '';
    // Hints go on ready endpoints only (trafficdist.preferCloseHeuristic).
    const hinted = ready && CLOSE_DISTRIBUTIONS.has(distribution);
    const endpoint: SliceEndpoint = {
      address,
      ready,
      serving,
      terminating,
      // The pod's DNS name under its headless Service (k8s.io/endpointslice: hostname
      // and subdomain set, the subdomain naming this Service).
      hostname: pod.spec.hostname !== '' && pod.spec.subdomain === service.metadata.name ? pod.spec.hostname : '',
      nodeName,
      zone,
      forZones: hinted && zone !== '' ? [zone] : [],
      forNodes: hinted && distribution === 'PreferSameNode' && nodeName !== '' ? [nodeName] : [],
    };
    const key = JSON.stringify(ports);
    let group = groups.get(key);
    if (group === undefined) groups.set(key, (group = { ports, endpoints: [] }));
    group.endpoints.push(endpoint);
  }
  const keys = [...groups.keys()].sort();
  return keys.map((key, i) => {
    const group = groups.get(key)!;
    group.endpoints.sort((a, b) => compareIpText(a.address, b.address));
    return {
      kind: 'EndpointSlice',
      origin: service.origin,
      metadata: {
        // Kubernetes names slices <service>-<random>; every node must derive the same
        // names here, so they count, IPv4 as before dual-stack, IPv6 with its family.
        name: `${service.metadata.name}-tapir-${family === 'IPv6' ? 'ipv6-' : ''}${i}`,
        namespace,
        labels: { [Label.SERVICE_NAME]: service.metadata.name, [MANAGED_BY]: 'tapir.dev' },
        annotations: {},
        deletionTimestamp: '',
        resourceVersion: '',
      },
      serviceName: service.metadata.name,
      addressType: family,
      endpoints: group.endpoints,
      ports: group.ports,
    } satisfies EndpointSliceObject;
  });
}

/** Numeric order of two addresses of one family (validated input). */
export function compareIpText(a: string, b: string): number {
  if (!a.includes(':')) return compareIpv4Text(a, b);
  const pa = parseIpv6(a)!;
  const pb = parseIpv6(b)!;
  for (let i = 0; i < 16; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

/** Numeric order of dotted quads (validated input). */
export function compareIpv4Text(a: string, b: string): number {
  const pa = a.split('.');
  const pb = b.split('.');
  for (let i = 0; i < 4; i++) {
    const d = Number(pa[i]) - Number(pb[i]);
    if (d !== 0) return d;
  }
  return 0;
}

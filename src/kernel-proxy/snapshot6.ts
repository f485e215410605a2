// The IPv6 half of what kube-proxy programs on a dual-stack node (its IPv6 proxier, fed
// by the IPv6 EndpointSlices only): one ProxySnapshot of family 6, compiled from the
// ClusterView's IPv6 fields (clusterIP6, endpoints6, externalIPs6, loadBalancerIngress6)
// with the same per-node rules as the IPv4 compile (src/control/compile.ts): which
// frontends a port has, its traffic policies, and which endpoints each kind of traffic
// may use here (categorizeEndpoints). What the view does not carry (session affinity,
// internalTrafficPolicy, the IPv6 loadBalancerSourceRanges, the load-balancing
// annotation) is read from the Service object the view was made from.
//
// Topology hints are not in the view's IPv6 endpoints, so IPv6 traffic of the Cluster
// policy uses every ready endpoint (kube-proxy's behaviour for a Service without hints).
import { categorizeEndpoints, type HintedEndpoint } from '../control/topology.ts';
import { Annotation, type ServiceObject } from '../k8s/objects.ts';
import type { ClusterView, ServiceView } from '../model/cluster-view.ts';
import { LbAlgorithm, type EndpointSpec } from '../model/service-snapshot.ts';
import type { ProxyEndpoint, ProxyPortSpec, ProxySnapshot } from './proxy-plan.ts';

export interface ProxyNode6 {
  /** This node's name: endpoints on it are local. */
  name: string;
  /** topology.kubernetes.io/zone of this node; '' if unknown. */
  zone: string;
  /** This node's IPv6 addresses that serve node ports (kube-proxy's nodePortAddresses of the family). */
  nodePortAddresses: string[];
}

/** `service("ns/name")`: the Service object behind a view, for the fields the view does not carry. */
export function compileProxySnapshot6(view: ClusterView, service: (key: string) => ServiceObject | undefined, node: ProxyNode6): ProxySnapshot {
  const ports: ProxyPortSpec[] = [];
  for (const svc of view.services) {
    if (!svc.proxied || svc.clusterIP6 === '') continue;
    const object = service(svc.key);
    // The view and the source may be a moment apart: a Service the source no longer has is left out until the next sync.
    if (object === undefined) continue;
    ports.push(...servicePorts6(svc, object, node));
  }
  return { family: 6, generation: view.generation, ports, nodePortAddresses: [...node.nodePortAddresses] };
}

function servicePorts6(svc: ServiceView, object: ServiceObject, node: ProxyNode6): ProxyPortSpec[] {
  const spec = object.spec;
  const isV6 = (text: string): boolean => text.includes(':');
  const externalIPs = [...svc.externalIPs6];
  // ipMode Proxy: the load balancer rewrites the destination; the node does not capture the address (KEP-1860).
  const loadBalancerIPs = svc.type === 'LoadBalancer' ? svc.loadBalancerIngress6.filter((i) => i.ipMode === 'VIP').map((i) => i.ip) : [];
  const sourceRanges = spec.loadBalancerSourceRanges.filter(isV6);
  const lb = object.metadata.annotations[Annotation.LB_ALGORITHM] === 'maglev' ? LbAlgorithm.MAGLEV : LbAlgorithm.RANDOM;
  const internalLocal = spec.internalTrafficPolicy === 'Local';
  const localReady = new Set<string>();
  const out = svc.ports.map((port) => {
    const externallyAccessible = port.nodePort !== 0 || loadBalancerIPs.length > 0 || externalIPs.length > 0;
    const externalLocal = externallyAccessible && svc.externalTrafficPolicy === 'Local';
    // kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints.
    const usesCluster = !internalLocal || (externallyAccessible && !externalLocal);
    const usesLocal = internalLocal || externalLocal;
    // categorizeEndpoints works on EndpointSpecs: each stands in for one IPv6 endpoint
    // (its `ip` the index), and the chosen ones are mapped back.
    const endpoints: ProxyEndpoint[] = [];
    const hinted: HintedEndpoint[] = [];
    const byStandIn = new Map<EndpointSpec, ProxyEndpoint>();
    for (const ep of svc.endpoints6) {
      const served = ep.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
      if (served === undefined) continue;
      const local = ep.nodeName !== '' && ep.nodeName === node.name;
      const endpoint: ProxyEndpoint = { ip: ep.ip, port: served.port, nodeName: ep.nodeName, local, zone: ep.zone, ready: ep.ready, serving: ep.serving, terminating: ep.terminating };
      const standIn: EndpointSpec = { ...endpoint, ip: endpoints.length };
      endpoints.push(endpoint);
      byStandIn.set(standIn, endpoint);
      hinted.push({ spec: standIn, forZones: [], forNodes: [] });
      if (local && ep.ready) localReady.add(`[${ep.ip}]:${served.port}`);
    }
    const { cluster, local } = categorizeEndpoints(hinted, usesCluster, usesLocal, node.name, node.zone);
    const back = (list: EndpointSpec[]): ProxyEndpoint[] => list.map((e) => byStandIn.get(e)!);
    return {
      key: `${svc.key}:${port.name}`,
      namespace: svc.namespace,
      name: svc.name,
      portName: port.name,
      protocol: port.protocol,
      clusterIP: svc.clusterIP6,
      port: port.port,
      nodePort: port.nodePort,
      externalIPs,
      loadBalancerIPs,
      loadBalancerSourceRanges: sourceRanges,
      affinityTimeoutSeconds: spec.sessionAffinity === 'ClientIP' ? spec.affinityTimeoutSeconds : 0,
      lb,
      externalLocal,
      internalLocal,
      healthCheckNodePort: externalLocal ? svc.healthCheckNodePort : 0,
      allEndpoints: endpoints,
      clusterEndpoints: back(internalLocal ? local : cluster),
      externalEndpoints: !externallyAccessible ? [] : back(externalLocal ? local : cluster),
      localReadyEndpoints: 0,
    };
  });
  // The health check answers per service: every port carries the service's count.
  return out.map((p) => ({ ...p, localReadyEndpoints: localReady.size }));
}

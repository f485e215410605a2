// One Service, its allocation and its EndpointSlices compiled into the ServicePortSpecs
// of one node (src/services/spec.ts), applying kube-proxy's rules: which services are
// proxied at all, which frontends a port has, and which endpoints each kind of traffic
// may use on this node. The result is frozen: snapshots share it across generations.
import { ipv4, parseCidr } from '../wire/address.ts';
import { Annotation, Label, type EndpointSliceObject, type ServiceObject } from '../k8s/objects.ts';
import { L4Protocol, LbAlgorithm, type EndpointSpec, type ServicePortSpec } from '../model/service-snapshot.ts';
import type { ServiceAllocation } from './allocator.ts';
import { categorizeEndpoints, type HintedEndpoint } from './topology.ts';

export interface NodeContext {
  name: string;
  /** topology.kubernetes.io/zone of this node; '' if unknown. */
  zone: string;
  nodePortAddresses: number[];
}

/** kube-proxy leaves alone ExternalName and headless services and those another proxy claims. */
export function isProxied(svc: ServiceObject): boolean {
  return svc.spec.type !== 'ExternalName' && svc.spec.clusterIP !== 'None' && svc.metadata.labels[Label.SERVICE_PROXY_NAME] === undefined;
}

function freezeAll<T>(list: T[]): T[] {
  return Object.freeze(list) as T[];
}

/** The endpoints of one service port: matched by (port name, protocol), one per ip:port. */
function endpointsForPort(name: string, protocol: string, slices: readonly EndpointSliceObject[], node: NodeContext): HintedEndpoint[] {
  const byAddress = new Map<string, HintedEndpoint>();
  for (const slice of slices) {
    // The IPv4 tables read IPv4 slices only (kube-proxy's tracker keeps its family's).
    if (slice.addressType !== 'IPv4') continue;
    for (const port of slice.ports) {
      if (port.name !== name || port.protocol !== protocol) continue;
      for (const ep of slice.endpoints) {
        const address = ep.addresses[0];
        if (address === undefined) continue;
        const local = ep.nodeName !== '' && ep.nodeName === node.name;
        const key = `${address}:${port.port}`;
        // The same endpoint in two slices: kube-proxy keeps one, preferring a local copy.
        if (byAddress.has(key) && !local) continue;
        const spec: EndpointSpec = Object.freeze({
          ip: ipv4(address),
          port: port.port,
          nodeName: ep.nodeName,
          local,
          zone: ep.zone,
          ready: ep.ready,
          serving: ep.serving,
          terminating: ep.terminating,
        });
        byAddress.set(key, { spec, forZones: ep.forZones, forNodes: ep.forNodes });
      }
    }
  }
  return [...byAddress.values()].sort((a, b) => a.spec.ip - b.spec.ip || a.spec.port - b.spec.port);
}

/**
 * The IPv4 service port specs of one Service. Dual-stack: these tables are IPv4's, and
 * take the IPv4 half only, as kube-proxy's IPv4 proxier does: a Service without an
 * IPv4 cluster IP is not programmed at all (node ports included), IPv6 external IPs,
 * load-balancer IPs, source ranges and IPv6 slices are left out. (With every source
 * range IPv6, the IPv4 frontends get none and admit every source, as kube-proxy's.)
 */
export function compileService(svc: ServiceObject, alloc: ServiceAllocation, slices: readonly EndpointSliceObject[], node: NodeContext): ServicePortSpec[] {
  if (!isProxied(svc) || alloc.clusterIP === 0) return [];
  const namespace = svc.metadata.namespace;
  const name = svc.metadata.name;
  const spec = svc.spec;
  const isV4 = (text: string): boolean => !text.includes(':');
  const externalIPs = freezeAll(spec.externalIPs.filter(isV4).map((text) => ipv4(text)));
  // ipMode Proxy: the load balancer rewrites the destination to a node, so the node
  // must not capture the address itself (KEP-1860).
  const loadBalancerIPs = freezeAll(spec.type === 'LoadBalancer'
    ? svc.status.loadBalancerIngress.filter((i) => i.ipMode === 'VIP' && isV4(i.ip)).map((i) => ipv4(i.ip))
    : []);
  const sourceRanges = freezeAll(spec.loadBalancerSourceRanges.filter(isV4).map((text) => {
    const cidr = parseCidr(text)!;
    return Object.freeze([cidr.network, cidr.prefixLength]) as [number, number];
  }));
  const lb = svc.metadata.annotations[Annotation.LB_ALGORITHM] === 'maglev' ? LbAlgorithm.MAGLEV : LbAlgorithm.RANDOM;
  const internalLocal = spec.internalTrafficPolicy === 'Local';

  const out: ServicePortSpec[] = [];
  const localReady = new Set<string>();
  spec.ports.forEach((port, i) => {
    const nodePort = alloc.nodePorts[i] ?? 0;
    const externallyAccessible = nodePort !== 0 || loadBalancerIPs.length > 0 || externalIPs.length > 0;
    const externalLocal = externallyAccessible && spec.externalTrafficPolicy === 'Local';
    // kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints.
    const usesCluster = !internalLocal || (externallyAccessible && !externalLocal);
    const usesLocal = internalLocal || externalLocal;
    const endpoints = endpointsForPort(port.name, port.protocol, slices, node);
    const { cluster, local } = categorizeEndpoints(endpoints, usesCluster, usesLocal, node.name, node.zone);
    for (const ep of endpoints) if (ep.spec.local && ep.spec.ready) localReady.add(`${ep.spec.ip}:${ep.spec.port}`);
    out.push({
      key: `${namespace}/${name}:${port.name}`,
      namespace,
      name,
      portName: port.name,
      protocol: port.protocol === 'UDP' ? L4Protocol.UDP : L4Protocol.TCP,
      clusterIP: alloc.clusterIP,
      port: port.port,
      nodePort,
      externalIPs,
      loadBalancerIPs,
      loadBalancerSourceRanges: sourceRanges,
      affinityTimeoutSeconds: spec.sessionAffinity === 'ClientIP' ? spec.affinityTimeoutSeconds : 0,
      lb,
      externalLocal,
      internalLocal,
      healthCheckNodePort: externalLocal ? alloc.healthCheckNodePort : 0,
      allEndpoints: freezeAll(endpoints.map((ep) => ep.spec)),
      clusterEndpoints: freezeAll(internalLocal ? local : cluster),
      // Traffic to node ports, external IPs and load-balancer IPs; none without such frontends.
      externalEndpoints: freezeAll(!externallyAccessible ? [] : externalLocal ? local : cluster),
      localReadyEndpoints: 0,
    });
  });
  // The health check answers per service (kube-proxy's LocalReadyEndpoints counts the
  // distinct local ready ip:port of all ports), so every port carries the same count.
  return out.map((p) => Object.freeze({ ...p, localReadyEndpoints: localReady.size }));
}

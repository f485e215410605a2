// One Service, its allocation and its EndpointSlices compiled into the ServicePortSpecs
// of one node (src/services/spec.ts), applying kube-proxy's rules: which services are
// proxied at all, which frontends a port has, and which endpoints each kind of traffic
// may use on this node. The result is frozen: snapshots share it across generations.
import { ipv4, ipv6ToString, parseCidr, parseCidr6, parseIpv6 } from '../wire/address.ts';
import { flat, kept, NO_ITEMS } from '../config/compact.ts';
import { Annotation, Label, type EndpointSliceObject, type ServiceObject } from '../k8s/objects.ts';
import { L4Protocol, LbAlgorithm, type EndpointSpec, type ServicePortSpec, type ServicePortSpec6 } from '../model/service-snapshot.ts';
import type { ServiceAllocation } from './allocator.ts';
import { categorizeEndpoints, type HintedEndpoint } from './topology.ts';

export interface NodeContext {
  name: string;
  /** topology.kubernetes.io/zone of this node; '' if unknown. */
  zone: string;
  nodePortAddresses: number[];
  /** The node's IPv6 node-port addresses (RFC 5952 text); absent = none. */
  nodePortAddresses6?: string[];
}

/** kube-proxy leaves alone ExternalName and headless services and those another proxy claims. */
export function isProxied(svc: ServiceObject): boolean {
  return svc.spec.type !== 'ExternalName' && svc.spec.clusterIP !== 'None' && svc.metadata.labels[Label.SERVICE_PROXY_NAME] === undefined;
}

/**
 * What compiling takes from one address family: which slices and addresses are its, and
 * how an address is held (IPv4 uint32, IPv6 RFC 5952 text). kube-proxy runs one proxier
 * per family, each reading only its family's half of a dual-stack Service.
 */
interface Family<A extends number | string> {
  addressType: 'IPv4' | 'IPv6';
  /** Whether API text is an address of this family. */
  is(text: string): boolean;
  /** Whether API text (a valid CIDR) is a network of this family. */
  isNetwork(text: string): boolean;
  /** The held form of API text already known to be of this family. */
  parse(text: string): A;
  /** The family's cluster IP of an allocation; `none` when it has none. */
  clusterIP(alloc: ServiceAllocation): A;
  none: A;
  compare(a: A, b: A): number;
}

const V4: Family<number> = {
  addressType: 'IPv4',
  is: (text) => !text.includes(':'),
  isNetwork: (text) => !text.includes(':'),
  parse: (text) => ipv4(text),
  clusterIP: (alloc) => alloc.clusterIP,
  none: 0,
  compare: (a, b) => a - b,
};

/** Canonical text (RFC 5952), so the same address is always the same string. */
function canonical6(text: string): string {
  return ipv6ToString(parseIpv6(text)!);
}

function compare6(a: string, b: string): number {
  const x = parseIpv6(a)!;
  const y = parseIpv6(b)!;
  for (let i = 0; i < 16; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

const V6: Family<string> = {
  addressType: 'IPv6',
  is: (text) => text.includes(':') && parseIpv6(text) !== null,
  isNetwork: (text) => text.includes(':'),
  parse: canonical6,
  clusterIP: (alloc) => {
    const ip = alloc.clusterIPs.find((text) => text.includes(':'));
    return ip === undefined ? '' : canonical6(ip);
  },
  none: '',
  compare: compare6,
};

/** The endpoints of one service port: matched by (port name, protocol), one per ip:port. */
function endpointsForPort<A extends number | string>(family: Family<A>, name: string, protocol: string, slices: readonly EndpointSliceObject[], node: NodeContext): HintedEndpoint<A>[] {
  const byAddress = new Map<string, HintedEndpoint<A>>();
  for (const slice of slices) {
    // Each family's tables read that family's slices only (kube-proxy's tracker keeps its family's).
    if (slice.addressType !== family.addressType) continue;
    for (const port of slice.ports) {
      if (port.name !== name || port.protocol !== protocol) continue;
      for (const ep of slice.endpoints) {
        const address = ep.address;
        if (address === '' || !family.is(address)) continue;
        const ip = family.parse(address);
        const local = ep.nodeName !== '' && ep.nodeName === node.name;
        const key = `${ip}:${port.port}`;
        // The same endpoint in two slices: kube-proxy keeps one, preferring a local copy.
        if (byAddress.has(key) && !local) continue;
        const spec: EndpointSpec<A> = Object.freeze({
          ip,
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
  return [...byAddress.values()].sort((a, b) => family.compare(a.spec.ip, b.spec.ip) || a.spec.port - b.spec.port);
}

/**
 * The IPv4 service port specs of one Service. Dual-stack: each family's tables take
 * that family's half only, as kube-proxy's per-family proxiers do: a Service without an
 * IPv4 cluster IP is not programmed here at all (node ports included), and IPv6
 * external IPs, load-balancer IPs, source ranges and slices are left out. (With every
 * source range IPv6, the IPv4 frontends get none and admit every source, as kube-proxy's.)
 */
export function compileService(svc: ServiceObject, alloc: ServiceAllocation, slices: readonly EndpointSliceObject[], node: NodeContext): ServicePortSpec[] {
  return compileFamily(V4, svc, alloc, slices, node, (text) => {
    const cidr = parseCidr(text)!;
    return [cidr.network, cidr.prefixLength];
  });
}

/** The IPv6 service port specs of one Service: compileService's IPv6 counterpart. */
export function compileService6(svc: ServiceObject, alloc: ServiceAllocation, slices: readonly EndpointSliceObject[], node: NodeContext): ServicePortSpec6[] {
  return compileFamily(V6, svc, alloc, slices, node, (text) => {
    const cidr = parseCidr6(text)!;
    return [ipv6ToString(cidr.network), cidr.prefixLength];
  });
}

function compileFamily<A extends number | string>(family: Family<A>, svc: ServiceObject, alloc: ServiceAllocation, slices: readonly EndpointSliceObject[], node: NodeContext,
  parseRange: (text: string) => [A, number]): ServicePortSpec<A>[] {
  const clusterIP = family.clusterIP(alloc);
  if (!isProxied(svc) || clusterIP === family.none) return NO_ITEMS;
  const namespace = svc.metadata.namespace;
  const name = svc.metadata.name;
  const spec = svc.spec;
  const externalIPs = kept(spec.externalIPs.filter(family.is).map(family.parse));
  // ipMode Proxy: the load balancer rewrites the destination to a node, so the node
  // must not capture the address itself (KEP-1860).
  const loadBalancerIPs = kept(spec.type === 'LoadBalancer'
    ? svc.status.loadBalancerIngress.filter((i) => i.ipMode === 'VIP' && family.is(i.ip)).map((i) => family.parse(i.ip))
    : []);
  const sourceRanges = kept(spec.loadBalancerSourceRanges.filter(family.isNetwork).map((text) => Object.freeze(parseRange(text)) as [A, number]));
  const lb = svc.metadata.annotations[Annotation.LB_ALGORITHM] === 'maglev' ? LbAlgorithm.MAGLEV : LbAlgorithm.RANDOM;
  const internalLocal = spec.internalTrafficPolicy === 'Local';

  const out: ServicePortSpec<A>[] = [];
  const localReady = new Set<string>();
  spec.ports.forEach((port, i) => {
    const nodePort = alloc.nodePorts[i] ?? 0;
    const externallyAccessible = nodePort !== 0 || loadBalancerIPs.length > 0 || externalIPs.length > 0;
    const externalLocal = externallyAccessible && spec.externalTrafficPolicy === 'Local';
    // kube-proxy's UsesClusterEndpoints / UsesLocalEndpoints.
    const usesCluster = !internalLocal || (externallyAccessible && !externalLocal);
    const usesLocal = internalLocal || externalLocal;
    const endpoints = endpointsForPort(family, port.name, port.protocol, slices, node);
    const { cluster, local } = categorizeEndpoints(endpoints, usesCluster, usesLocal, node.name, node.zone);
    // The lists are filtered from allEndpoints in its order, so one as long is the same
    // list: it is kept once (with every endpoint ready, all three are one array).
    const allEndpoints = kept(endpoints.map((ep) => ep.spec));
    const keep = (list: EndpointSpec<A>[]): EndpointSpec<A>[] => (list.length === allEndpoints.length ? allEndpoints : kept(list));
    const clusterEndpoints = keep(cluster);
    const localEndpoints = keep(local);
    for (const ep of endpoints) if (ep.spec.local && ep.spec.ready) localReady.add(`${ep.spec.ip}:${ep.spec.port}`);
    out.push({
      key: flat(`${namespace}/${name}:${port.name}`),
      namespace,
      name,
      portName: port.name,
      protocol: port.protocol === 'UDP' ? L4Protocol.UDP : L4Protocol.TCP,
      clusterIP,
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
      allEndpoints,
      clusterEndpoints: internalLocal ? localEndpoints : clusterEndpoints,
      // Traffic to node ports, external IPs and load-balancer IPs; none without such frontends.
      externalEndpoints: !externallyAccessible ? NO_ITEMS : externalLocal ? localEndpoints : clusterEndpoints,
      localReadyEndpoints: 0,
    });
  });
  // The health check answers per service (kube-proxy's LocalReadyEndpoints counts the
  // distinct local ready ip:port of all ports), so every port carries the same count.
  return kept(out.map((p) => Object.freeze({ ...p, localReadyEndpoints: localReady.size })));
}

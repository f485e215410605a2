// Hand-made ServiceSnapshots for tests, benchmarks and examples: a service port with
// kube-proxy's defaults filled in, and a generator of N services for scale runs. The
// real snapshots come from the control side (manifests, endpoints controller).
import { ipv4, ipv6ToString, parseCidr6, parseIpv6 } from '../wire/address.ts';
import type { EndpointSpec, EndpointSpec6, ServicePortSpec, ServicePortSpec6, ServiceSnapshot } from './service-snapshot.ts';

/** A dotted quad (or a uint32) as uint32; throws on a malformed one (programmer error). */
export function ip(a: string | number): number {
  if (typeof a === 'number') return a >>> 0;
  return ipv4(a);
}

/** A ready endpoint on another node unless `over` says otherwise. */
export function endpoint(address: string | number, port: number, over: Partial<EndpointSpec> = {}): EndpointSpec {
  return { ip: ip(address), port, nodeName: over.local ? 'this-node' : 'other-node', local: false, zone: '', ready: true, serving: true, terminating: false, ...over };
}

/** An IPv6 address in canonical text (RFC 5952); throws on a malformed one (programmer error). */
export function ip6(a: string): string {
  const b = parseIpv6(a);
  if (b === null) throw new RangeError(`not an IPv6 address: ${a}`);
  return ipv6ToString(b);
}

/** endpoint() for IPv6. */
export function endpoint6(address: string, port: number, over: Partial<EndpointSpec6> = {}): EndpointSpec6 {
  return { ip: ip6(address), port, nodeName: over.local ? 'this-node' : 'other-node', local: false, zone: '', ready: true, serving: true, terminating: false, ...over };
}

export interface PortInputOf<A, In> extends Partial<Omit<ServicePortSpec<A>, 'clusterIP' | 'externalIPs' | 'loadBalancerIPs' | 'loadBalancerSourceRanges'>> {
  clusterIP?: In;
  externalIPs?: In[];
  loadBalancerIPs?: In[];
  /** "10.0.0.0/8" (or "2001:db8::/64") style. */
  loadBalancerSourceRanges?: string[];
}
export type PortInput = PortInputOf<number, string | number>;
export type PortInput6 = PortInputOf<string, string>;

/**
 * A service port. Endpoint lists default the simple way (the control side applies the
 * full kube-proxy rules): cluster = ready endpoints of allEndpoints (local ones only
 * under internalTrafficPolicy Local), external = ready ones (local only under
 * externalTrafficPolicy Local).
 */
export function servicePort(p: PortInput): ServicePortSpec {
  return portOf(p, ip, 0, (c) => {
    const [a, len] = c.split('/');
    return [ip(a!), Number(len ?? 32)];
  });
}

/** servicePort() for the IPv6 half of a snapshot. */
export function servicePort6(p: PortInput6): ServicePortSpec6 {
  return portOf(p, ip6, '', (c) => {
    const cidr = parseCidr6(c);
    if (cidr === undefined) throw new RangeError(`not an IPv6 network: ${c}`);
    return [ipv6ToString(cidr.network), cidr.prefixLength];
  });
}

function portOf<A, In>(p: PortInputOf<A, In>, addr: (a: In) => A, none: A, range: (c: string) => [A, number]): ServicePortSpec<A> {
  const namespace = p.namespace ?? 'default';
  const name = p.name ?? 'svc';
  const portName = p.portName ?? '';
  const all = p.allEndpoints ?? [...(p.clusterEndpoints ?? []), ...(p.externalEndpoints ?? [])];
  const ready = all.filter((e) => e.ready);
  return {
    key: p.key ?? `${namespace}/${name}:${portName}`,
    namespace,
    name,
    portName,
    protocol: p.protocol ?? 6,
    clusterIP: p.clusterIP === undefined ? none : addr(p.clusterIP),
    port: p.port ?? 80,
    nodePort: p.nodePort ?? 0,
    externalIPs: (p.externalIPs ?? []).map(addr),
    loadBalancerIPs: (p.loadBalancerIPs ?? []).map(addr),
    loadBalancerSourceRanges: (p.loadBalancerSourceRanges ?? []).map(range),
    affinityTimeoutSeconds: p.affinityTimeoutSeconds ?? 0,
    lb: p.lb ?? 'random',
    externalLocal: p.externalLocal ?? false,
    internalLocal: p.internalLocal ?? false,
    healthCheckNodePort: p.healthCheckNodePort ?? 0,
    allEndpoints: all,
    clusterEndpoints: p.clusterEndpoints ?? ready.filter((e) => !p.internalLocal || e.local),
    externalEndpoints: p.externalEndpoints ?? ready.filter((e) => !p.externalLocal || e.local),
    localReadyEndpoints: p.localReadyEndpoints ?? ready.filter((e) => e.local).length,
  };
}

export function snapshot(ports: ServicePortSpec[], nodePortAddresses: (string | number)[] = [], generation = 1): ServiceSnapshot {
  return { generation, ports, nodePortAddresses: nodePortAddresses.map(ip) };
}

/** A snapshot with only an IPv6 half. */
export function snapshot6(ports6: ServicePortSpec6[], nodePortAddresses6: string[] = [], generation = 1): ServiceSnapshot {
  return { generation, ports: [], nodePortAddresses: [], ports6, nodePortAddresses6: nodePortAddresses6.map(ip6) };
}

export interface ScaleOptions {
  endpointsPerService?: number;
  /** Every n-th service uses Maglev (0: none). */
  maglevEvery?: number;
  /** Every n-th service has a node port (0: none). */
  nodePortEvery?: number;
  /** Every n-th service has ClientIP affinity (0: none). */
  affinityEvery?: number;
}

/**
 * `count` services with one TCP port each: cluster IPs from 10.96.0.1 up, endpoints
 * in 10.244.0.0/16, node ports from 30000 (as many as the range holds).
 */
export function scaleSnapshot(count: number, o: ScaleOptions = {}): ServiceSnapshot {
  const per = o.endpointsPerService ?? 3;
  const ports: ServicePortSpec[] = [];
  const base = ip('10.96.0.1');
  const pods = ip('10.244.0.0');
  for (let i = 0; i < count; i++) {
    const eps: EndpointSpec[] = [];
    for (let k = 0; k < per; k++) eps.push(endpoint(pods + ((i * per + k) % 65000) + 2, 8080, { local: k === 0 }));
    ports.push(servicePort({
      name: `svc-${i}`,
      clusterIP: base + i,
      port: 80,
      nodePort: o.nodePortEvery && i % o.nodePortEvery === 0 && 30000 + i / o.nodePortEvery <= 32767 ? 30000 + i / o.nodePortEvery : 0,
      lb: o.maglevEvery && i % o.maglevEvery === 0 ? 'maglev' : 'random',
      affinityTimeoutSeconds: o.affinityEvery && i % o.affinityEvery === 0 ? 10800 : 0,
      allEndpoints: eps,
    }));
  }
  return snapshot(ports, ['192.168.1.10']);
}

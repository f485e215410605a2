// One Service as the ClusterView shows it (src/model/cluster-view.ts): what the
// manifests asked for, what was allocated, and every endpoint address with its
// conditions, hostname and ports. Node-independent, unlike the snapshot's ports, and
// made for every Service, including the headless and ExternalName ones the proxy skips.
import { ipv4, parseIpv6 } from '../wire/address.ts';
import type { EndpointSliceObject, IpFamily, Protocol, ServiceObject } from '../k8s/objects.ts';
import type { EndpointPortView, EndpointView, EndpointView6, ServiceView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import type { ServiceAllocation } from './allocator.ts';
import { isProxied } from './compile.ts';

const l4 = (protocol: Protocol): L4Protocol => (protocol === 'UDP' ? L4Protocol.UDP : L4Protocol.TCP);

function frozen<T>(value: T): T {
  return Object.freeze(value);
}

/** `alloc` undefined: the Service was rejected (`problems` says why). */
export function serviceView(svc: ServiceObject, alloc: ServiceAllocation | undefined, slices: readonly EndpointSliceObject[], problems: readonly string[]): ServiceView {
  const spec = svc.spec;
  const endpoints = endpointViews(svc, slices, 'IPv4').map((e) => frozen({ ...e, ip: ipv4(e.ip) }) as EndpointView).sort((a, b) => a.ip - b.ip);
  const endpoints6 = endpointViews(svc, slices, 'IPv6').map((e) => ({ key: parseIpv6(e.ip)!, e })).sort((a, b) => compareBytes(a.key, b.key)).map((x) => frozen(x.e));
  const isV6 = (ip: string): boolean => ip.includes(':');
  const clusterIPs = alloc?.clusterIPs ?? [];
  return frozen({
    key: `${svc.metadata.namespace}/${svc.metadata.name}`,
    namespace: svc.metadata.namespace,
    name: svc.metadata.name,
    type: spec.type,
    clusterIP: alloc?.clusterIP ?? 0,
    clusterIP6: clusterIPs.find(isV6) ?? '',
    clusterIPs: frozen(spec.clusterIP === 'None' && alloc !== undefined ? ['None'] : [...clusterIPs]),
    ipFamilies: frozen([...(alloc?.ipFamilies ?? [])]),
    ipFamilyPolicy: alloc?.ipFamilyPolicy ?? '',
    headless: spec.clusterIP === 'None',
    externalName: spec.type === 'ExternalName' ? spec.externalName : '',
    proxied: alloc !== undefined && isProxied(svc),
    ports: frozen(spec.ports.map((p, i) => frozen({ name: p.name, protocol: l4(p.protocol), port: p.port, targetPort: p.targetPort, nodePort: alloc?.nodePorts[i] ?? 0 }))),
    externalIPs: frozen(spec.externalIPs.filter((ip) => !isV6(ip)).map((text) => ipv4(text))),
    externalIPs6: frozen(spec.externalIPs.filter(isV6)),
    loadBalancerIngress: frozen(svc.status.loadBalancerIngress.filter((i) => !isV6(i.ip)).map((i) => frozen({ ip: ipv4(i.ip), ipMode: i.ipMode }))),
    loadBalancerIngress6: frozen(svc.status.loadBalancerIngress.filter((i) => isV6(i.ip)).map((i) => frozen({ ip: i.ip, ipMode: i.ipMode }))),
    externalTrafficPolicy: spec.externalTrafficPolicy,
    healthCheckNodePort: alloc?.healthCheckNodePort ?? 0,
    publishNotReadyAddresses: spec.publishNotReadyAddresses,
    endpoints: frozen(endpoints),
    endpoints6: frozen(endpoints6),
    problems: frozen([...problems]),
  });
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** One view per address of the family's slices (the address as text), ports frozen. */
function endpointViews(svc: ServiceObject, slices: readonly EndpointSliceObject[], family: IpFamily): EndpointView6[] {
  const spec = svc.spec;
  const byAddress = new Map<string, { view: EndpointView6; ports: EndpointPortView[] }>();
  for (const slice of slices) {
    if (slice.addressType !== family) continue;
    // A slice without ports serves nothing of a service that has ports.
    if (slice.ports.length === 0 && spec.ports.length > 0) continue;
    const ports = slice.ports.map((p) => frozen({ name: p.name, protocol: l4(p.protocol), port: p.port }));
    for (const ep of slice.endpoints) {
      const address = ep.addresses[0];
      if (address === undefined) continue;
      const seen = byAddress.get(address);
      if (seen !== undefined) {
        // The same address in another slice: the first slice's conditions, both slices' ports.
        for (const p of ports) if (!seen.ports.some((q) => q.name === p.name && q.protocol === p.protocol)) seen.ports.push(p);
        continue;
      }
      const own = [...ports];
      byAddress.set(address, {
        ports: own,
        view: { ip: address, hostname: ep.hostname, nodeName: ep.nodeName, zone: ep.zone, ready: ep.ready, serving: ep.serving, terminating: ep.terminating, ports: own },
      });
    }
  }
  return [...byAddress.values()].map((e) => {
    Object.freeze(e.ports);
    return e.view;
  });
}

function sameList<T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (!same(a[i]!, b[i]!)) return false;
  return true;
}

const is = <T>(x: T, y: T): boolean => x === y;
const samePort = (x: EndpointPortView, y: EndpointPortView): boolean => x.name === y.name && x.protocol === y.protocol && x.port === y.port;

/**
 * Whether two views say the same, field by field: a sync keeps the earlier (identical)
 * object then, so consumers can tell by identity what changed. A JSON comparison costs
 * several times more at 10,000 services.
 */
export function sameServiceView(a: ServiceView, b: ServiceView): boolean {
  return a.key === b.key && a.type === b.type && a.clusterIP === b.clusterIP && a.clusterIP6 === b.clusterIP6 && a.headless === b.headless
    && a.ipFamilyPolicy === b.ipFamilyPolicy && sameList(a.clusterIPs, b.clusterIPs, is) && sameList(a.ipFamilies, b.ipFamilies, is)
    && sameList(a.externalIPs6, b.externalIPs6, is) && sameList(a.loadBalancerIngress6, b.loadBalancerIngress6, (x, y) => x.ip === y.ip && x.ipMode === y.ipMode)
    && a.externalName === b.externalName && a.proxied === b.proxied && a.externalTrafficPolicy === b.externalTrafficPolicy
    && a.healthCheckNodePort === b.healthCheckNodePort && a.publishNotReadyAddresses === b.publishNotReadyAddresses
    && sameList(a.ports, b.ports, (x, y) => x.name === y.name && x.protocol === y.protocol && x.port === y.port && x.targetPort === y.targetPort && x.nodePort === y.nodePort)
    && sameList(a.externalIPs, b.externalIPs, is)
    && sameList(a.loadBalancerIngress, b.loadBalancerIngress, (x, y) => x.ip === y.ip && x.ipMode === y.ipMode)
    && sameList(a.problems, b.problems, is)
    && sameList(a.endpoints, b.endpoints, sameEndpoint) && sameList(a.endpoints6, b.endpoints6, sameEndpoint);
}

function sameEndpoint(x: EndpointView | EndpointView6, y: EndpointView | EndpointView6): boolean {
  return x.ip === y.ip && x.hostname === y.hostname && x.nodeName === y.nodeName && x.zone === y.zone
    && x.ready === y.ready && x.serving === y.serving && x.terminating === y.terminating && sameList(x.ports, y.ports, samePort);
}

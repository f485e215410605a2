// One Service as the ClusterView shows it (src/model/cluster-view.ts): what the
// manifests asked for, what was allocated, and every endpoint address with its
// conditions, hostname and ports. Node-independent, unlike the snapshot's ports, and
// made for every Service, including the headless and ExternalName ones the proxy skips.
import { ipv4 } from '../wire/address.ts';
import type { EndpointSliceObject, Protocol, ServiceObject } from '../k8s/objects.ts';
import type { EndpointPortView, EndpointView, ServiceView } from '../model/cluster-view.ts';
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
  const byAddress = new Map<string, { view: EndpointView; ports: EndpointPortView[] }>();
  for (const slice of slices) {
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
        view: { ip: ipv4(address), hostname: ep.hostname, nodeName: ep.nodeName, zone: ep.zone, ready: ep.ready, serving: ep.serving, terminating: ep.terminating, ports: own },
      });
    }
  }
  const endpoints = [...byAddress.values()].map((e) => {
    Object.freeze(e.ports);
    return frozen(e.view);
  }).sort((a, b) => a.ip - b.ip);
  return frozen({
    key: `${svc.metadata.namespace}/${svc.metadata.name}`,
    namespace: svc.metadata.namespace,
    name: svc.metadata.name,
    type: spec.type,
    clusterIP: alloc?.clusterIP ?? 0,
    headless: spec.clusterIP === 'None',
    externalName: spec.type === 'ExternalName' ? spec.externalName : '',
    proxied: alloc !== undefined && isProxied(svc),
    ports: frozen(spec.ports.map((p, i) => frozen({ name: p.name, protocol: l4(p.protocol), port: p.port, targetPort: p.targetPort, nodePort: alloc?.nodePorts[i] ?? 0 }))),
    externalIPs: frozen(spec.externalIPs.map((text) => ipv4(text))),
    loadBalancerIngress: frozen(svc.status.loadBalancerIngress.map((i) => frozen({ ip: ipv4(i.ip), ipMode: i.ipMode }))),
    externalTrafficPolicy: spec.externalTrafficPolicy,
    healthCheckNodePort: alloc?.healthCheckNodePort ?? 0,
    publishNotReadyAddresses: spec.publishNotReadyAddresses,
    endpoints: frozen(endpoints),
    problems: frozen([...problems]),
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
  return a.key === b.key && a.type === b.type && a.clusterIP === b.clusterIP && a.headless === b.headless
    && a.externalName === b.externalName && a.proxied === b.proxied && a.externalTrafficPolicy === b.externalTrafficPolicy
    && a.healthCheckNodePort === b.healthCheckNodePort && a.publishNotReadyAddresses === b.publishNotReadyAddresses
    && sameList(a.ports, b.ports, (x, y) => x.name === y.name && x.protocol === y.protocol && x.port === y.port && x.targetPort === y.targetPort && x.nodePort === y.nodePort)
    && sameList(a.externalIPs, b.externalIPs, is)
    && sameList(a.loadBalancerIngress, b.loadBalancerIngress, (x, y) => x.ip === y.ip && x.ipMode === y.ipMode)
    && sameList(a.problems, b.problems, is)
    && sameList(a.endpoints, b.endpoints, (x, y) => x.ip === y.ip && x.hostname === y.hostname && x.nodeName === y.nodeName && x.zone === y.zone
      && x.ready === y.ready && x.serving === y.serving && x.terminating === y.terminating && sameList(x.ports, y.ports, samePort));
}

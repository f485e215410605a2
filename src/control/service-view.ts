// One Service as the ClusterView shows it (src/model/cluster-view.ts): what the
// manifests asked for, what was allocated, and every endpoint address with its
// conditions, hostname and ports (those lists made when first read). Node-independent,
// unlike the snapshot's ports, and made for every Service, including the headless and
// ExternalName ones the proxy skips.
import { ipv4, parseIpv6 } from '../wire/address.ts';
import { flat, kept, ListInterner, NO_ITEMS } from '../config/compact.ts';
import type { EndpointSliceObject, IpFamily, Protocol, ServiceObject } from '../k8s/objects.ts';
import type { EndpointPortView, EndpointView, EndpointView6, LoadBalancerIngressView, LoadBalancerIngressView6, ServicePortView, ServiceView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import type { ServiceAllocation } from './allocator.ts';
import { isProxied } from './compile.ts';

const l4 = (protocol: Protocol): L4Protocol => (protocol === 'UDP' ? L4Protocol.UDP : L4Protocol.TCP);

/** `alloc` undefined: the Service was rejected (`problems` says why). */
export function serviceView(svc: ServiceObject, alloc: ServiceAllocation | undefined, slices: readonly EndpointSliceObject[], problems: readonly string[]): ServiceView {
  return Object.freeze(new CompiledServiceView(svc, alloc, slices, problems));
}

const isV6 = (ip: string): boolean => ip.includes(':');

/**
 * A ServiceView whose endpoint lists are made when first read. The agent's own service
 * proxy never reads them (its tables come from the snapshot), and at 25,000 Services with
 * ten endpoints each they were 40 MB of the agent's heap: a view keeps the slices it was
 * made from (which the control side holds anyway) and builds the lists for the consumers
 * that read them (DNS, ingress, `lab status`), once.
 */
class CompiledServiceView implements ServiceView {
  readonly key: string;
  readonly namespace: string;
  readonly name: string;
  readonly type: ServiceView['type'];
  readonly clusterIP: number;
  readonly clusterIP6: string;
  readonly clusterIPs: readonly string[];
  readonly ipFamilies: readonly IpFamily[];
  readonly ipFamilyPolicy: ServiceView['ipFamilyPolicy'];
  readonly headless: boolean;
  readonly externalName: string;
  readonly proxied: boolean;
  readonly ports: ServicePortView[];
  readonly externalIPs: number[];
  readonly externalIPs6: readonly string[];
  readonly loadBalancerIngress: LoadBalancerIngressView[];
  readonly loadBalancerIngress6: readonly LoadBalancerIngressView6[];
  readonly externalTrafficPolicy: ServiceView['externalTrafficPolicy'];
  readonly healthCheckNodePort: number;
  readonly publishNotReadyAddresses: boolean;
  readonly problems: string[];
  /** What the endpoint lists are made from. */
  readonly #slices: readonly EndpointSliceObject[];
  readonly #servicePorts: number;
  #endpoints: EndpointView[] | undefined;
  #endpoints6: EndpointView6[] | undefined;

  constructor(svc: ServiceObject, alloc: ServiceAllocation | undefined, slices: readonly EndpointSliceObject[], problems: readonly string[]) {
    const spec = svc.spec;
    const clusterIPs = alloc?.clusterIPs ?? [];
    this.key = flat(`${svc.metadata.namespace}/${svc.metadata.name}`);
    this.namespace = svc.metadata.namespace;
    this.name = svc.metadata.name;
    this.type = spec.type;
    this.clusterIP = alloc?.clusterIP ?? 0;
    this.clusterIP6 = clusterIPs.find(isV6) ?? '';
    this.clusterIPs = spec.clusterIP === 'None' && alloc !== undefined ? NONE_HEADLESS : kept(clusterIPs);
    this.ipFamilies = kept(alloc?.ipFamilies ?? NO_ITEMS);
    this.ipFamilyPolicy = alloc?.ipFamilyPolicy ?? '';
    this.headless = spec.clusterIP === 'None';
    this.externalName = spec.type === 'ExternalName' ? spec.externalName : '';
    this.proxied = alloc !== undefined && isProxied(svc);
    this.ports = PORT_LISTS.keep(spec.ports.map((p, i) => ({ name: p.name, protocol: l4(p.protocol), port: p.port, targetPort: p.targetPort, nodePort: alloc?.nodePorts[i] ?? 0 })));
    this.externalIPs = kept(spec.externalIPs.filter((ip) => !isV6(ip)).map((text) => ipv4(text)));
    this.externalIPs6 = kept(spec.externalIPs.filter(isV6));
    const ingress = svc.status.loadBalancerIngress;
    this.loadBalancerIngress = kept(ingress.filter((i) => !isV6(i.ip)).map((i) => Object.freeze({ ip: ipv4(i.ip), ipMode: i.ipMode })));
    this.loadBalancerIngress6 = kept(ingress.filter((i) => isV6(i.ip)).map((i) => Object.freeze({ ip: i.ip, ipMode: i.ipMode })));
    this.externalTrafficPolicy = spec.externalTrafficPolicy;
    this.healthCheckNodePort = alloc?.healthCheckNodePort ?? 0;
    this.publishNotReadyAddresses = spec.publishNotReadyAddresses;
    this.problems = kept(problems);
    this.#slices = Object.isFrozen(slices) ? slices : kept(slices);
    this.#servicePorts = spec.ports.length;
  }

  get endpoints(): EndpointView[] {
    return (this.#endpoints ??= this.makeEndpoints());
  }

  get endpoints6(): readonly EndpointView6[] {
    return (this.#endpoints6 ??= this.makeEndpoints6());
  }

  /** The IPv4 list as `endpoints` returns it, made anew (and not kept) when it was not read yet. */
  makeEndpoints(): EndpointView[] {
    if (this.#endpoints !== undefined) return this.#endpoints;
    const list = endpointViews(this.#slices, this.#servicePorts, 'IPv4').map((e) => Object.freeze({ ...e, ip: ipv4(e.ip) }) as EndpointView).sort((a, b) => a.ip - b.ip);
    return kept(list);
  }

  makeEndpoints6(): EndpointView6[] {
    if (this.#endpoints6 !== undefined) return this.#endpoints6;
    const list = endpointViews(this.#slices, this.#servicePorts, 'IPv6').map((e) => ({ key: parseIpv6(e.ip)!, e })).sort((a, b) => compareBytes(a.key, b.key)).map((x) => Object.freeze(x.e));
    return kept(list);
  }

  /** Whether both lists are made from the same slice objects (then they are the same). */
  static sameSlices(a: CompiledServiceView, b: CompiledServiceView): boolean {
    return a.#servicePorts === b.#servicePorts && sameList(a.#slices, b.#slices, is);
  }

  /** Every field, the endpoint lists included (made for the output when they were not read). */
  toJSON(): ServiceView {
    return { ...this, endpoints: this.makeEndpoints(), endpoints6: this.makeEndpoints6() } as ServiceView;
  }
}

const NONE_HEADLESS: readonly string[] = Object.freeze(['None']);

/** Port lists, one each however many views have the same (most Services have one port, 80 to 8080 say). */
const PORT_LISTS = new ListInterner<ServicePortView>(4_096);

/**
 * A view's endpoint lists as they are or would be: for output made once (describe), which
 * should not leave 25,000 Services' lists made and kept behind it.
 */
export function endpointsOnce(view: ServiceView): { endpoints: readonly EndpointView[]; endpoints6: readonly EndpointView6[] } {
  if (view instanceof CompiledServiceView) return { endpoints: view.makeEndpoints(), endpoints6: view.makeEndpoints6() };
  return { endpoints: view.endpoints, endpoints6: view.endpoints6 };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/**
 * One view per address of the family's slices (the address as text). An address in one
 * slice shares that slice's frozen port list; one in several gets a list of its own.
 */
function endpointViews(slices: readonly EndpointSliceObject[], servicePorts: number, family: IpFamily): EndpointView6[] {
  const byAddress = new Map<string, { ip: string; hostname: string; nodeName: string; zone: string; ready: boolean; serving: boolean; terminating: boolean; ports: readonly EndpointPortView[] }>();
  for (const slice of slices) {
    if (slice.addressType !== family) continue;
    // A slice without ports serves nothing of a service that has ports.
    if (slice.ports.length === 0 && servicePorts > 0) continue;
    const ports = kept(slice.ports.map((p) => Object.freeze({ name: p.name, protocol: l4(p.protocol), port: p.port })));
    for (const ep of slice.endpoints) {
      const address = ep.address;
      if (address === '') continue;
      const seen = byAddress.get(address);
      if (seen !== undefined) {
        // The same address in another slice: the first slice's conditions, both slices' ports.
        const more = ports.filter((p) => !seen.ports.some((q) => q.name === p.name && q.protocol === p.protocol));
        if (more.length > 0) seen.ports = Object.freeze([...seen.ports, ...more]);
        continue;
      }
      byAddress.set(address, { ip: address, hostname: ep.hostname, nodeName: ep.nodeName, zone: ep.zone, ready: ep.ready, serving: ep.serving, terminating: ep.terminating, ports });
    }
  }
  return [...byAddress.values()] as EndpointView6[];
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
    && sameEndpoints(a, b);
}

/** The endpoint lists, compared without making and keeping those of views nobody read. */
function sameEndpoints(a: ServiceView, b: ServiceView): boolean {
  if (a instanceof CompiledServiceView && b instanceof CompiledServiceView && CompiledServiceView.sameSlices(a, b)) return true;
  const x = endpointsOnce(a);
  const y = endpointsOnce(b);
  return sameList(x.endpoints, y.endpoints, sameEndpoint) && sameList(x.endpoints6, y.endpoints6, sameEndpoint);
}

function sameEndpoint(x: EndpointView | EndpointView6, y: EndpointView | EndpointView6): boolean {
  return x.ip === y.ip && x.hostname === y.hostname && x.nodeName === y.nodeName && x.zone === y.zone
    && x.ready === y.ready && x.serving === y.serving && x.terminating === y.terminating && sameList(x.ports, y.ports, samePort);
}

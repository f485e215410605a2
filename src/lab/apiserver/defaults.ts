// What the API server adds to objects on create and update: the API's defaults for the
// fields Tapir and kubectl read, and the Service allocations (cluster IP from the
// service CIDR, node ports from the node-port range) that kube-apiserver's service
// registry makes. The manifest mode's allocator (src/control/allocator.ts) is a pure
// function of the set of Services so that every agent agrees without writing back; here
// the choice is written into the object, so a plain "first free from a random start"
// pool (above a static band kept for values asked for by name, as kube-apiserver
// keeps one) suffices and a Service keeps its values for life. One pool per service CIDR
// (family); ipFamilies and ipFamilyPolicy are settled by k8s/ip-families.ts.
import { ipv4ToString, ipv6ToString, parseIpv4, parseIpv6, type Cidr, type Cidr6 } from '../../wire/address.ts';
import { isMapping, type Raw } from '../../config/fields.ts';
import type { PortRange, ServiceCidrs } from '../../model/cluster-defaults.ts';
import { canonicalIp } from '../../k8s/fields.ts';
import { resolveIpFamilies } from '../../k8s/ip-families.ts';
import type { IpFamily, IpFamilyPolicy, ServiceType } from '../../k8s/objects.ts';
import { ApiError, type Cause } from './status.ts';
import type { Obj } from './store.ts';

class Pool {
  private readonly used = new Set<number>();
  /** Never picked, only given on request. */
  readonly reserved = new Set<number>();
  private readonly first: number;
  private readonly last: number;
  /**
   * The values below first + staticBand are picked only when every value above is
   * taken: kube-apiserver keeps the start of the service CIDR (KEP-3070) and of the
   * node-port range (KEP-3668) for values that manifests ask for by name, so that a
   * Service allocated at random does not take an address another one states.
   */
  private readonly staticBand: number;

  constructor(first: number, last: number, staticBand = 0) {
    this.first = first;
    this.last = last;
    this.staticBand = Math.min(staticBand, last - first + 1);
  }

  contains(v: number): boolean {
    return v >= this.first && v <= this.last;
  }

  has(v: number): boolean {
    return this.used.has(v);
  }

  take(v: number): void {
    this.used.add(v);
  }

  release(v: number): void {
    this.used.delete(v);
  }

  /**
   * A free value (not in `alsoTaken` either) from a random start, above the static band
   * while any is free there, or -1 when there is none.
   */
  pick(alsoTaken: readonly number[] = []): number {
    const split = this.first + this.staticBand;
    const v = this.pickIn(split, this.last, alsoTaken);
    return v >= 0 ? v : this.pickIn(this.first, split - 1, alsoTaken);
  }

  private pickIn(first: number, last: number, alsoTaken: readonly number[]): number {
    const size = last - first + 1;
    if (size <= 0) return -1;
    const start = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      const v = first + ((start + i) % size);
      if (!this.used.has(v) && !this.reserved.has(v) && !alsoTaken.includes(v)) return v;
    }
    return -1;
  }
}

/**
 * One family's service CIDR as a pool of offsets into it (an IPv6 service CIDR is /108
 * or longer, so offsets are plain numbers): IPv4 without the network and broadcast
 * addresses, IPv6 without the network address (the subnet-router anycast address).
 */
class FamilyPool {
  readonly family: IpFamily;
  readonly cidrText: string;
  readonly pool: Pool;
  private readonly v4: Cidr | undefined;
  private readonly v6: Cidr6 | undefined;

  constructor(v4: Cidr | undefined, v6: Cidr6 | undefined) {
    this.v4 = v4;
    this.v6 = v6;
    this.family = v4 !== undefined ? 'IPv4' : 'IPv6';
    this.cidrText = (v4 ?? v6)!.toString();
    const size = v4 !== undefined ? v4.size : 2 ** (128 - v6!.prefixLength);
    // KEP-3070's static band: min(max(16, size / 16), 256) addresses at the start.
    this.pool = new Pool(1, v4 !== undefined ? size - 2 : size - 1, Math.min(Math.max(16, Math.floor(size / 16)), 256));
    // The first host address is the `kubernetes` Service's (kube-apiserver reserves it the same way).
    this.pool.reserved.add(1);
  }

  /** The offset of `ip` in the CIDR, or -1 when it is outside or not of this family. */
  offsetOf(ip: string): number {
    if (this.v4 !== undefined) {
      const a = parseIpv4(ip);
      return a === undefined || !this.v4.contains(a) ? -1 : a - this.v4.network;
    }
    const b = parseIpv6(ip);
    if (b === null || !ip.includes(':') || !this.v6!.contains(b)) return -1;
    return (((b[12]! << 24) | (b[13]! << 16) | (b[14]! << 8) | b[15]!) >>> 0) - this.v6!.word(3);
  }

  address(offset: number): string {
    return this.v4 !== undefined ? ipv4ToString(this.v4.network + offset) : ipv6ToString(this.v6!.host(offset));
  }
}

export class ServiceAllocator {
  private readonly families: FamilyPool[];
  private readonly ports: Pool;
  readonly serviceCIDRs: ServiceCidrs;

  /** `serviceCIDRs`: one per family, primary first (a bare Cidr: an IPv4-only cluster). */
  constructor(serviceCIDRs: ServiceCidrs | Cidr, nodePorts: Readonly<PortRange>) {
    this.serviceCIDRs = 'families' in serviceCIDRs ? serviceCIDRs : { families: ['IPv4'], v4: serviceCIDRs, v6: undefined };
    const cidrs = this.serviceCIDRs;
    this.families = cidrs.families.map((f) => (f === 'IPv4' ? new FamilyPool(cidrs.v4, undefined) : new FamilyPool(undefined, cidrs.v6)));
    // KEP-3668's static band: min(max(16, size / 32), 128) ports at the start of the range.
    const portRange = nodePorts.max - nodePorts.min + 1;
    this.ports = new Pool(nodePorts.min, nodePorts.max, Math.min(Math.max(16, Math.floor(portRange / 32)), 128));
  }

  /** The IPv4 service CIDR (an IPv4-only or dual-stack cluster's). */
  get serviceCIDR(): Cidr {
    return this.serviceCIDRs.v4!;
  }

  /** The `kubernetes` Service's address: the primary service CIDR's first host address. */
  get apiServiceIP(): string {
    return this.families[0]!.address(1);
  }

  private familyPool(ip: string): FamilyPool | undefined {
    const family: IpFamily = ip.includes(':') ? 'IPv6' : 'IPv4';
    return this.families.find((f) => f.family === family);
  }

  /** Marks the values a stored Service holds as used (start-up, after the journal's replay). */
  record(svc: Obj): void {
    const spec = isMapping(svc.spec) ? svc.spec : {};
    for (const ip of storedClusterIPs(spec)) {
      const fp = this.familyPool(ip);
      const offset = fp?.offsetOf(ip) ?? -1;
      if (offset >= 0) fp!.pool.take(offset);
    }
    for (const p of servicePorts(spec)) if (typeof p.nodePort === 'number' && p.nodePort > 0) this.ports.take(p.nodePort);
    if (typeof spec.healthCheckNodePort === 'number' && spec.healthCheckNodePort > 0) this.ports.take(spec.healthCheckNodePort);
  }

  release(svc: Obj): void {
    const spec = isMapping(svc.spec) ? svc.spec : {};
    for (const ip of storedClusterIPs(spec)) {
      const fp = this.familyPool(ip);
      const offset = fp?.offsetOf(ip) ?? -1;
      if (offset >= 0) fp!.pool.release(offset);
    }
    for (const p of servicePorts(spec)) if (typeof p.nodePort === 'number') this.ports.release(p.nodePort);
    if (typeof spec.healthCheckNodePort === 'number') this.ports.release(spec.healthCheckNodePort);
  }

  /**
   * Defaults and allocates `svc` in place; `old` is the stored version on update, whose
   * allocations are kept. Throws 422 Invalid for a taken or out-of-range request, and
   * for families the cluster does not have (ip-families.ts).
   */
  allocate(svc: Obj, old: Obj | undefined): void {
    const spec = isMapping(svc.spec) ? svc.spec : (svc.spec = {});
    const oldSpec = old !== undefined && isMapping(old.spec) ? old.spec : {};
    const name = String(svc.metadata.name);
    const causes: Cause[] = [];
    spec.type ??= 'ClusterIP';
    const type = spec.type;
    spec.sessionAffinity ??= 'None';
    if (type !== 'ExternalName') spec.internalTrafficPolicy ??= 'Cluster';
    if (type === 'NodePort' || type === 'LoadBalancer') spec.externalTrafficPolicy ??= 'Cluster';
    if (type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;
    for (const p of servicePorts(spec)) {
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port;
    }
    const taken: { fp: FamilyPool; offset: number }[] = [];
    const fail = (field: string, message: string): void => {
      causes.push({ reason: 'FieldValueInvalid', message, field });
    };
    if (type === 'ExternalName') {
      // The registry wipes what describes cluster IPs (initIPFamilyFields).
      delete spec.ipFamilies;
      delete spec.ipFamilyPolicy;
      delete spec.clusterIPs;
    } else this.allocateClusterIPs(spec, oldSpec, fail, taken);
    // Node ports: the stored one for the same port and protocol is kept (as the registry's
    // patchAllocatedValues does), a requested one is checked, the rest allocated. Node
    // ports belong to no family: one serves every cluster IP of the Service.
    const wantsNodePorts = type === 'NodePort' || (type === 'LoadBalancer' && spec.allocateLoadBalancerNodePorts !== false);
    const oldPorts = servicePorts(oldSpec);
    const ports: number[] = [];
    for (const [i, p] of servicePorts(spec).entries()) {
      if (!wantsNodePorts) { delete p.nodePort; continue; }
      const before = oldPorts.find((o) => o.port === p.port && (o.protocol ?? 'TCP') === p.protocol)?.nodePort;
      if ((p.nodePort === undefined || p.nodePort === 0) && typeof before === 'number') { p.nodePort = before; continue; }
      if (typeof p.nodePort === 'number' && p.nodePort !== 0) {
        // The Service's own node port, also when the port it belongs to changed.
        if (p.nodePort === before || (oldPorts.some((o) => o.nodePort === p.nodePort) && !ports.includes(p.nodePort))) {
          ports.push(p.nodePort);
          continue;
        }
        if (!this.ports.contains(p.nodePort)) fail(`spec.ports[${i}].nodePort`, `Invalid value: ${p.nodePort}: provided port is not in the valid range`);
        else if (this.ports.has(p.nodePort) || ports.includes(p.nodePort)) fail(`spec.ports[${i}].nodePort`, `Invalid value: ${p.nodePort}: provided port is already allocated`);
        else ports.push(p.nodePort);
        continue;
      }
      const port = this.pickPort(ports);
      if (port < 0) fail(`spec.ports[${i}].nodePort`, 'Internal error: range is full');
      else { p.nodePort = port; ports.push(port); }
    }
    if (type === 'LoadBalancer' && spec.externalTrafficPolicy === 'Local') {
      if (typeof oldSpec.healthCheckNodePort === 'number' && (spec.healthCheckNodePort === undefined || spec.healthCheckNodePort === 0)) spec.healthCheckNodePort = oldSpec.healthCheckNodePort;
      else if (spec.healthCheckNodePort === undefined || spec.healthCheckNodePort === 0) {
        const port = this.pickPort(ports);
        if (port > 0) { spec.healthCheckNodePort = port; ports.push(port); }
      }
    } else delete spec.healthCheckNodePort;
    if (causes.length > 0) throw ApiError.invalid('Service', '', name, causes);
    for (const t of taken) t.fp.pool.take(t.offset);
    for (const port of ports) this.ports.take(port);
    // An update that dropped a node port, a cluster IP or changed type gives the old values back.
    if (old !== undefined) {
      this.release(old);
      this.record(svc);
    }
  }

  /**
   * clusterIP, clusterIPs, ipFamilies and ipFamilyPolicy, as the registry settles them:
   * the stored primary address and family are immutable; a policy other than
   * SingleStack may add the second family on update, SingleStack drops it.
   */
  private allocateClusterIPs(spec: Raw, oldSpec: Raw, fail: (field: string, message: string) => void, taken: { fp: FamilyPool; offset: number }[]): void {
    const oldIPs = storedClusterIPs(oldSpec);
    let requested = stringList(spec.clusterIPs);
    if (requested.length === 0 && typeof spec.clusterIP === 'string' && spec.clusterIP !== '') requested = [spec.clusterIP];
    requested = requested.map(canonicalIp);
    let families = stringList(spec.ipFamilies) as IpFamily[];
    const policy = typeof spec.ipFamilyPolicy === 'string' ? spec.ipFamilyPolicy as IpFamilyPolicy : '';
    if (oldIPs.length > 0) {
      const oldFamilies = stringList(oldSpec.ipFamilies) as IpFamily[];
      // Fields a client left out keep their stored values; SingleStack keeps the primary only.
      if (requested.length === 0) requested = policy === 'SingleStack' ? oldIPs.slice(0, 1) : oldIPs;
      else if (policy === 'SingleStack' && requested.length > 1 && sameList(requested, oldIPs)) requested = requested.slice(0, 1);
      if (families.length === 0) families = policy === 'SingleStack' ? oldFamilies.slice(0, 1) : oldFamilies;
      else if (policy === 'SingleStack' && families.length > 1 && sameList(families, oldFamilies)) families = families.slice(0, 1);
      if (requested[0] !== oldIPs[0]) {
        fail('spec.clusterIPs[0]', `Invalid value: ${JSON.stringify(requested[0] ?? '')}: may not change once set`);
        return;
      }
      if (oldFamilies[0] !== undefined && families[0] !== undefined && families[0] !== oldFamilies[0]) {
        fail('spec.ipFamilies[0]', `Invalid value: ${JSON.stringify(families[0])}: may not change once set`);
        return;
      }
    }
    const headless = requested[0] === 'None';
    const decision = resolveIpFamilies({
      type: spec.type as ServiceType,
      headless,
      hasSelector: isMapping(spec.selector) && Object.keys(spec.selector).length > 0,
      clusterIPs: headless ? [] : requested,
      ipFamilies: families,
      ipFamilyPolicy: policy,
    }, this.serviceCIDRs.families);
    for (const p of decision.problems) fail(p.field, `Invalid value: ${p.message}`);
    if (decision.problems.length > 0) return;
    spec.ipFamilies = decision.ipFamilies;
    spec.ipFamilyPolicy = decision.ipFamilyPolicy;
    if (headless) {
      spec.clusterIP = 'None';
      spec.clusterIPs = ['None'];
      return;
    }
    const ips: string[] = [];
    decision.ipFamilies.forEach((family, i) => {
      const fp = this.families.find((f) => f.family === family)!;
      const field = requested.length > 1 || i > 0 ? `spec.clusterIPs[${i}]` : 'spec.clusterIP';
      const ip = requested[i];
      if (ip !== undefined) {
        if (oldIPs.includes(ip)) { ips.push(ip); return; }
        const offset = fp.offsetOf(ip);
        if (offset < 1 || !fp.pool.contains(offset)) fail(field, `Invalid value: ${JSON.stringify(ip)}: provided IP is not in the valid range. The range of valid IPs is ${fp.cidrText}`);
        else if (fp.pool.has(offset)) fail(field, `Invalid value: ${JSON.stringify(ip)}: provided IP is already allocated`);
        else { taken.push({ fp, offset }); ips.push(ip); }
        return;
      }
      const offset = fp.pool.pick();
      if (offset < 0) fail(field, `Internal error: range is full (${fp.cidrText})`);
      else { taken.push({ fp, offset }); ips.push(fp.address(offset)); }
    });
    spec.clusterIPs = ips;
    spec.clusterIP = ips[0];
  }

  /**
   * A free node port other than those this Service was given already. (Retrying random
   * picks against them failed now and then with ports still free: one in 256 for the
   * second port of a range of three.)
   */
  private pickPort(alsoTaken: number[]): number {
    return this.ports.pick(alsoTaken);
  }
}

/** A Service's allocated addresses as stored: clusterIPs, else clusterIP; never None. */
function storedClusterIPs(spec: Raw): string[] {
  const ips = stringList(spec.clusterIPs);
  const list = ips.length > 0 ? ips : typeof spec.clusterIP === 'string' && spec.clusterIP !== '' ? [spec.clusterIP] : [];
  return list.filter((ip) => ip !== 'None');
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function servicePorts(spec: Raw): Raw[] {
  return Array.isArray(spec.ports) ? spec.ports.filter(isMapping) : [];
}

/** Pod defaults kubectl and the lab read (core/v1 SetDefaults_Pod, SetDefaults_ContainerPort). */
export function defaultPod(pod: Obj): void {
  const spec = isMapping(pod.spec) ? pod.spec : (pod.spec = {});
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.enableServiceLinks ??= true;
  spec.schedulerName ??= 'default-scheduler';
  for (const list of ['containers', 'initContainers']) {
    for (const c of Array.isArray(spec[list]) ? (spec[list] as unknown[]).filter(isMapping) : []) {
      for (const p of Array.isArray(c.ports) ? c.ports.filter(isMapping) : []) p.protocol ??= 'TCP';
    }
  }
  const status = isMapping(pod.status) ? pod.status : (pod.status = {});
  status.phase ??= 'Pending';
}

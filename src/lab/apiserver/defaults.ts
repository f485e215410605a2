// What the API server adds to objects on create and update: the API's defaults for the
// fields Tapir and kubectl read, and the Service allocations (cluster IP from the
// service CIDR, node ports from the node-port range) that kube-apiserver's service
// registry makes. The manifest mode's allocator (src/control/allocator.ts) is a pure
// function of the set of Services so that every agent agrees without writing back; here
// the choice is written into the object, so a plain "first free from a random start"
// pool suffices and a Service keeps its values for life.
import { ipv4, ipv4ToString, type Cidr } from '../../wire/address.ts';
import { isMapping, type Raw } from '../../config/fields.ts';
import type { PortRange } from '../../model/cluster-defaults.ts';
import { ApiError, type Cause } from './status.ts';
import type { Obj } from './store.ts';

class Pool {
  private readonly used = new Set<number>();
  /** Never picked, only given on request. */
  readonly reserved = new Set<number>();
  private readonly first: number;
  private readonly last: number;

  constructor(first: number, last: number) {
    this.first = first;
    this.last = last;
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

  /** A free value from a random start, or -1 when the range is full. */
  pick(): number {
    const size = this.last - this.first + 1;
    const start = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      const v = this.first + ((start + i) % size);
      if (!this.used.has(v) && !this.reserved.has(v)) return v;
    }
    return -1;
  }
}

export class ServiceAllocator {
  private readonly ips: Pool;
  private readonly ports: Pool;
  readonly serviceCIDR: Cidr;

  constructor(serviceCIDR: Cidr, nodePorts: Readonly<PortRange>) {
    this.serviceCIDR = serviceCIDR;
    // Neither the network nor the broadcast address; the first host address is the
    // `kubernetes` Service's (kube-apiserver reserves it the same way).
    this.ips = new Pool(serviceCIDR.host(1), serviceCIDR.broadcast - 1);
    this.ips.reserved.add(serviceCIDR.host(1));
    this.ports = new Pool(nodePorts.min, nodePorts.max);
  }

  /** The `kubernetes` Service's address: the service CIDR's first host address. */
  get apiServiceIP(): string {
    return ipv4ToString(this.serviceCIDR.host(1));
  }

  /** Marks the values a stored Service holds as used (start-up, after the journal's replay). */
  record(svc: Obj): void {
    const spec = isMapping(svc.spec) ? svc.spec : {};
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '') this.ips.take(ipv4(spec.clusterIP));
    for (const p of servicePorts(spec)) if (typeof p.nodePort === 'number' && p.nodePort > 0) this.ports.take(p.nodePort);
    if (typeof spec.healthCheckNodePort === 'number' && spec.healthCheckNodePort > 0) this.ports.take(spec.healthCheckNodePort);
  }

  release(svc: Obj): void {
    const spec = isMapping(svc.spec) ? svc.spec : {};
    if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None' && spec.clusterIP !== '') this.ips.release(ipv4(spec.clusterIP));
    for (const p of servicePorts(spec)) if (typeof p.nodePort === 'number') this.ports.release(p.nodePort);
    if (typeof spec.healthCheckNodePort === 'number') this.ports.release(spec.healthCheckNodePort);
  }

  /**
   * Defaults and allocates `svc` in place; `old` is the stored version on update, whose
   * allocations are kept. Throws 422 Invalid for a taken or out-of-range request.
   */
  allocate(svc: Obj, old: Obj | undefined): void {
    const spec = isMapping(svc.spec) ? svc.spec : (svc.spec = {});
    const oldSpec = old !== undefined && isMapping(old.spec) ? old.spec : {};
    const name = String(svc.metadata.name);
    const causes: Cause[] = [];
    spec.type ??= 'ClusterIP';
    const type = spec.type;
    spec.sessionAffinity ??= 'None';
    if (type !== 'ExternalName') {
      spec.internalTrafficPolicy ??= 'Cluster';
      spec.ipFamilies ??= ['IPv4'];
      spec.ipFamilyPolicy ??= 'SingleStack';
    }
    if (type === 'NodePort' || type === 'LoadBalancer') spec.externalTrafficPolicy ??= 'Cluster';
    if (type === 'LoadBalancer') spec.allocateLoadBalancerNodePorts ??= true;
    for (const p of servicePorts(spec)) {
      p.protocol ??= 'TCP';
      p.targetPort ??= p.port;
    }
    const taken: number[] = [];
    const fail = (field: string, message: string): void => {
      causes.push({ reason: 'FieldValueInvalid', message, field });
    };
    // Cluster IP: kept from the stored version, else the requested one, else allocated.
    if (type !== 'ExternalName') {
      const requested = typeof spec.clusterIP === 'string' ? spec.clusterIP : '';
      const kept = typeof oldSpec.clusterIP === 'string' ? oldSpec.clusterIP : '';
      if (kept !== '' && (requested === '' || requested === kept)) spec.clusterIP = kept;
      else if (kept !== '') fail('spec.clusterIP', `Invalid value: ${JSON.stringify(requested)}: field is immutable`);
      else if (requested === 'None') spec.clusterIP = 'None';
      else if (requested !== '') {
        let ip: number | undefined;
        try { ip = ipv4(requested); } catch { ip = undefined; }
        if (ip === undefined || !this.ips.contains(ip)) fail('spec.clusterIP', `Invalid value: ${JSON.stringify(requested)}: provided IP is not in the valid range. The range of valid IPs is ${this.serviceCIDR.toString()}`);
        else if (this.ips.has(ip)) fail('spec.clusterIP', `Invalid value: ${JSON.stringify(requested)}: provided IP is already allocated`);
        else taken.push(ip);
      } else {
        const ip = this.ips.pick();
        if (ip < 0) fail('spec.clusterIP', `Internal error: range is full (${this.serviceCIDR.toString()})`);
        else { spec.clusterIP = ipv4ToString(ip); taken.push(ip); }
      }
      if (typeof spec.clusterIP === 'string') spec.clusterIPs = [spec.clusterIP];
    }
    // Node ports: the stored one for the same port and protocol is kept (as the registry's
    // patchAllocatedValues does), a requested one is checked, the rest allocated.
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
    for (const ip of taken) this.ips.take(ip);
    for (const port of ports) this.ports.take(port);
    // An update that dropped a node port or changed type gives the old values back.
    if (old !== undefined) {
      this.release(old);
      this.record(svc);
    }
  }

  private pickPort(alsoTaken: number[]): number {
    for (let tries = 0; tries < 8; tries++) {
      const port = this.ports.pick();
      if (port < 0 || !alsoTaken.includes(port)) return port;
    }
    return -1;
  }
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

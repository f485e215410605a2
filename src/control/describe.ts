// The services as `tapir lab status --json` lists them: the ClusterView's services
// (what the manifests asked for, what was allocated, and every endpoint with its
// conditions) with dotted addresses and protocol names. Node-independent (no topology
// or traffic-policy filtering), unlike the snapshot. Dual-stack fields as the Kubernetes
// API names them: clusterIPs (primary first) and ipFamilies; endpoints of both families.
import { ipv4ToString } from '../wire/address.ts';
import type { ClusterView } from '../model/cluster-view.ts';
import { L4Protocol } from '../model/service-snapshot.ts';
import { endpointsOnce } from './service-view.ts';

export interface ServicePortDescription {
  name: string;
  port: number;
  protocol: string;
  targetPort: number | string;
  /** 0 = none. */
  nodePort: number;
}

export interface EndpointDescription {
  ip: string;
  node: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface ServiceDescription {
  name: string;
  namespace: string;
  type: string;
  /** The allocated (primary) address, "None" for headless services, "" for ExternalName and rejected services. */
  clusterIP: string;
  /** spec.clusterIPs: one per family, primary first; ["None"] for headless, [] for ExternalName and rejected services. */
  clusterIPs: string[];
  /** spec.ipFamilies as settled; [] for ExternalName and rejected services. */
  ipFamilies: string[];
  externalIPs: string[];
  /** status.loadBalancer.ingress addresses, whatever their ipMode. */
  loadBalancerIPs: string[];
  healthCheckNodePort: number;
  ports: ServicePortDescription[];
  endpoints: EndpointDescription[];
  /** Why the service was rejected (allocation conflicts); absent when it is fine. */
  problems?: string[];
}

export function describeServices(view: Pick<ClusterView, 'services'>): ServiceDescription[] {
  return view.services.map((svc) => {
    const { endpoints, endpoints6 } = endpointsOnce(svc);
    // A view built without the dual-stack fields (older builders) still has its IPv4 address.
    const clusterIPs = svc.headless ? ['None'] : svc.clusterIPs.length > 0 ? [...svc.clusterIPs] : svc.clusterIP !== 0 ? [ipv4ToString(svc.clusterIP)] : [];
    const description: ServiceDescription = {
      name: svc.name,
      namespace: svc.namespace,
      type: svc.type,
      clusterIP: clusterIPs[0] ?? '',
      clusterIPs,
      ipFamilies: svc.ipFamilies.length > 0 || svc.type === 'ExternalName' || clusterIPs.length === 0 ? [...svc.ipFamilies] : clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')),
      externalIPs: [...svc.externalIPs.map(ipv4ToString), ...svc.externalIPs6],
      loadBalancerIPs: [...svc.loadBalancerIngress.map((i) => ipv4ToString(i.ip)), ...svc.loadBalancerIngress6.map((i) => i.ip)],
      healthCheckNodePort: svc.healthCheckNodePort,
      ports: svc.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol === L4Protocol.UDP ? 'UDP' : 'TCP', targetPort: p.targetPort, nodePort: p.nodePort })),
      endpoints: [
        ...endpoints.map((e) => ({ ip: ipv4ToString(e.ip), node: e.nodeName, ready: e.ready, serving: e.serving, terminating: e.terminating })),
        ...endpoints6.map((e) => ({ ip: e.ip, node: e.nodeName, ready: e.ready, serving: e.serving, terminating: e.terminating })),
      ],
    };
    if (svc.problems.length > 0) description.problems = [...svc.problems];
    return description;
  });
}

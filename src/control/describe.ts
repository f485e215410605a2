// The services as `tapir lab status --json` lists them: what the manifests asked for,
// what was allocated, and every endpoint with its conditions. Node-independent (no
// topology or traffic-policy filtering), unlike the snapshot.
import { ipv4ToString } from '../wire/address.ts';
import type { ServiceProxyState } from './service-proxy-state.ts';
import { compareIpv4Text } from './endpoints-controller.ts';

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
  /** The allocated address, "None" for headless services, "" for ExternalName and rejected services. */
  clusterIP: string;
  externalIPs: string[];
  /** status.loadBalancer.ingress addresses, whatever their ipMode. */
  loadBalancerIPs: string[];
  healthCheckNodePort: number;
  ports: ServicePortDescription[];
  endpoints: EndpointDescription[];
  /** Why the service was rejected (allocation conflicts); absent when it is fine. */
  problems?: string[];
}

export function describeServices(state: ServiceProxyState): ServiceDescription[] {
  const out: ServiceDescription[] = [];
  const keys = [...state.services.keys()].sort();
  for (const key of keys) {
    const svc = state.services.get(key)!;
    const alloc = state.allocation.allocations.get(key);
    const endpoints = new Map<string, EndpointDescription>();
    for (const slice of state.slicesFor(key)) {
      // A slice without ports serves nothing of a service that has ports.
      if (slice.ports.length === 0 && svc.spec.ports.length > 0) continue;
      for (const ep of slice.endpoints) {
        const ip = ep.addresses[0];
        if (ip === undefined || endpoints.has(ip)) continue;
        endpoints.set(ip, { ip, node: ep.nodeName, ready: ep.ready, serving: ep.serving, terminating: ep.terminating });
      }
    }
    const description: ServiceDescription = {
      name: svc.metadata.name,
      namespace: svc.metadata.namespace,
      type: svc.spec.type,
      clusterIP: svc.spec.clusterIP === 'None' ? 'None' : alloc !== undefined && alloc.clusterIP !== 0 ? ipv4ToString(alloc.clusterIP) : '',
      externalIPs: [...svc.spec.externalIPs],
      loadBalancerIPs: svc.status.loadBalancerIngress.map((i) => i.ip),
      healthCheckNodePort: alloc?.healthCheckNodePort ?? 0,
      ports: svc.spec.ports.map((p, i) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort, nodePort: alloc?.nodePorts[i] ?? 0 })),
      endpoints: [...endpoints.values()].sort((a, b) => compareIpv4Text(a.ip, b.ip)),
    };
    const problems = state.allocation.rejected.get(key);
    if (problems !== undefined) description.problems = [...problems];
    out.push(description);
  }
  return out;
}

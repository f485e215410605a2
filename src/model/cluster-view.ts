// The compiled view of Services and their endpoints that one sync of the control side
// produces, for every consumer at once: the service proxy takes the per-node
// `ServiceSnapshot` inside it; a DNS server needs every Service (headless and
// ExternalName ones too, which the proxy skips) with its ports and endpoint hostnames;
// an ingress proxy and `lab status` need the endpoints with their conditions. Plain,
// immutable data (frozen by the compiler), shared across generations where unchanged.
// Addresses are IPv4 uint32 like the snapshot's.
import type { L4Protocol, ServiceSnapshot } from './service-snapshot.ts';

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

export interface ServicePortView {
  name: string;
  protocol: L4Protocol;
  port: number;
  /** A container port number, or the name of one (resolved per endpoint). */
  targetPort: number | string;
  /** The allocated node port; 0 = none. */
  nodePort: number;
}

export interface EndpointPortView {
  name: string;
  protocol: L4Protocol;
  port: number;
}

/** One endpoint address of a Service, node-independent (no topology or traffic-policy filtering). */
export interface EndpointView {
  ip: number;
  /** The endpoint's DNS name within a headless Service; '' = none. */
  hostname: string;
  /** '' if unknown. */
  nodeName: string;
  zone: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The ports this address serves (matched to service ports by name and protocol). */
  ports: EndpointPortView[];
}

export interface LoadBalancerIngressView {
  ip: number;
  /** 'Proxy': the load balancer rewrites the destination; the node does not capture the address. */
  ipMode: 'VIP' | 'Proxy';
}

export interface ServiceView {
  /** "namespace/name". */
  key: string;
  namespace: string;
  name: string;
  type: ServiceType;
  /** The allocated cluster IP; 0 for headless, ExternalName and rejected services. */
  clusterIP: number;
  /** spec.clusterIP None: DNS answers with the endpoints, the proxy has nothing to do. */
  headless: boolean;
  /** spec.externalName of an ExternalName Service (a DNS CNAME); '' otherwise. */
  externalName: string;
  /** The service proxy programs it (not headless, not ExternalName, no other proxy named, not rejected). */
  proxied: boolean;
  ports: ServicePortView[];
  externalIPs: number[];
  /** status.loadBalancer.ingress, whatever the ipMode. */
  loadBalancerIngress: LoadBalancerIngressView[];
  externalTrafficPolicy: '' | 'Cluster' | 'Local';
  /** 0 = none. */
  healthCheckNodePort: number;
  publishNotReadyAddresses: boolean;
  /** One per address, in address order; the conditions of its first slice. */
  endpoints: EndpointView[];
  /** Why the Service was rejected (allocation conflicts); empty when it is fine. */
  problems: string[];
}

/** Everything one sync compiled, at one moment. */
export interface ClusterView {
  /** Increases whenever anything in the view changes (the snapshot has its own generation). */
  generation: number;
  /** The node the snapshot was compiled for. */
  nodeName: string;
  /** Every Service, in "namespace/name" order. */
  services: ServiceView[];
  /** What the service proxy on this node programs. */
  snapshot: ServiceSnapshot;
}

// The compiled view of Services and their endpoints that one sync of the control side
// produces, for every consumer at once: the service proxy takes the per-node
// `ServiceSnapshot` inside it; a DNS server needs every Service (headless and
// ExternalName ones too, which the proxy skips) with its ports and endpoint hostnames;
// an ingress proxy and `lab status` need the endpoints with their conditions. Plain,
// immutable data (frozen by the compiler), shared across generations where unchanged.
// IPv4 addresses are uint32 like the snapshot's. IPv6 ones (dual-stack and IPv6
// Services) are RFC 5952 text in fields of their own (clusterIP6, endpoints6,
// externalIPs6, loadBalancerIngress6), so a reader of the IPv4 fields never meets one:
// text compares with === (sameServiceView), prints as the API writes it, and a NAT66
// compile turns it into 16 bytes once with wire's parseIpv6.
import type { L4Protocol, ServiceSnapshot } from './service-snapshot.ts';

/** core/v1 IPFamily. */
export type IpFamily = 'IPv4' | 'IPv6';

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

/** An IPv6 endpoint address: as EndpointView, with the address in RFC 5952 text. */
export interface EndpointView6 extends Omit<EndpointView, 'ip'> {
  ip: string;
}

/** An IPv6 load-balancer ingress address, in RFC 5952 text. */
export interface LoadBalancerIngressView6 {
  ip: string;
  ipMode: 'VIP' | 'Proxy';
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
  /** The IPv4 cluster IP; 0 for headless, ExternalName and rejected services and those without an IPv4 one. */
  clusterIP: number;
  /** The IPv6 cluster IP in RFC 5952 text; '' when none. */
  clusterIP6: string;
  /** spec.clusterIPs as the API names them: every cluster IP, primary first, as text; [] when none. */
  clusterIPs: readonly string[];
  /** spec.ipFamilies as settled (a headless Service has them too); [] for ExternalName and rejected services. */
  ipFamilies: readonly IpFamily[];
  ipFamilyPolicy: '' | 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
  /** spec.clusterIP None: DNS answers with the endpoints, the proxy has nothing to do. */
  headless: boolean;
  /** spec.externalName of an ExternalName Service (a DNS CNAME); '' otherwise. */
  externalName: string;
  /** The service proxy programs it (not headless, not ExternalName, no other proxy named, not rejected). */
  proxied: boolean;
  ports: ServicePortView[];
  /** The IPv4 external IPs. */
  externalIPs: number[];
  /** The IPv6 external IPs, RFC 5952 text. */
  externalIPs6: readonly string[];
  /** status.loadBalancer.ingress of IPv4, whatever the ipMode. */
  loadBalancerIngress: LoadBalancerIngressView[];
  /** status.loadBalancer.ingress of IPv6. */
  loadBalancerIngress6: readonly LoadBalancerIngressView6[];
  externalTrafficPolicy: '' | 'Cluster' | 'Local';
  /** 0 = none. */
  healthCheckNodePort: number;
  publishNotReadyAddresses: boolean;
  /**
   * One per IPv4 address (IPv4 slices), in address order; the conditions of its first
   * slice. The compiler makes the list when it is first read (the proxy never reads it).
   */
  endpoints: EndpointView[];
  /** The same for IPv6 addresses (IPv6 slices), in address order. */
  endpoints6: readonly EndpointView6[];
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

/**
 * The dual-stack fields of a ServiceView left empty: for builders of IPv4-only views
 * that set clusterIP and endpoints themselves (tests, benchmarks, synthetic views).
 */
export const NO_DUAL_STACK_FIELDS: Pick<ServiceView, 'clusterIP6' | 'clusterIPs' | 'ipFamilies' | 'ipFamilyPolicy' | 'externalIPs6' | 'loadBalancerIngress6' | 'endpoints6'> = Object.freeze({
  clusterIP6: '', clusterIPs: Object.freeze([]), ipFamilies: Object.freeze([]), ipFamilyPolicy: '', externalIPs6: Object.freeze([]), loadBalancerIngress6: Object.freeze([]), endpoints6: Object.freeze([]),
});

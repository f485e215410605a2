// The compiled view of Services and endpoints for one node: what the control side
// (src/control: manifests, endpoints controller, change tracking, kube-proxy's endpoint
// selection rules) hands to the data plane's service tables (src/tables: frontends,
// load balancing, conntrack, NAT). Plain, immutable data; the tables build their
// typed-array form from it. IPv4 addresses are uint32 (src/wire parseIpv4); the IPv6
// half of a dual-stack snapshot (ports6) carries RFC 5952 text, which the IPv6 tables
// turn into words once per build. Types are generic in the address: `A` is number
// (IPv4) or string (IPv6), so both halves share one shape and one compiler.

export const L4Protocol = { TCP: 6, UDP: 17 } as const;
export type L4Protocol = (typeof L4Protocol)[keyof typeof L4Protocol];

export const LbAlgorithm = { RANDOM: 'random', MAGLEV: 'maglev' } as const;
export type LbAlgorithm = (typeof LbAlgorithm)[keyof typeof LbAlgorithm];

/** One backend of a service port, after named target ports were resolved. */
export interface EndpointSpec<A = number> {
  ip: A;
  port: number;
  /** Node the endpoint runs on ('' if unknown); `local` = this node. */
  nodeName: string;
  local: boolean;
  zone: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

/**
 * One port of one Service, with its endpoint lists already filtered the way kube-proxy's
 * CategorizeEndpoints does for THIS node (ready, else serving+terminating fallback;
 * topology hints / trafficDistribution; internal/externalTrafficPolicy: Local).
 */
export interface ServicePortSpec<A = number> {
  /** "namespace/name:portName" (portName may be ""), unique, stable across syncs. */
  key: string;
  namespace: string;
  name: string;
  portName: string;
  protocol: L4Protocol;
  /** 0 ('' for IPv6) for headless services (they are skipped: no frontends). */
  clusterIP: A;
  port: number;
  /** 0 when the service has no node port. */
  nodePort: number;
  externalIPs: A[];
  /** status.loadBalancer.ingress IPs with ipMode VIP (ipMode Proxy ones are left out). */
  loadBalancerIPs: A[];
  /** CIDRs allowed to reach loadBalancerIPs; empty = everyone. [network, prefixLength] pairs. */
  loadBalancerSourceRanges: [A, number][];
  /** sessionAffinity ClientIP timeout in seconds; 0 = no affinity. */
  affinityTimeoutSeconds: number;
  lb: LbAlgorithm;
  /** externalTrafficPolicy: Local (keep client source, local endpoints only, no SNAT). */
  externalLocal: boolean;
  /** internalTrafficPolicy: Local. */
  internalLocal: boolean;
  /** healthCheckNodePort (externalTrafficPolicy Local on NodePort/LoadBalancer); 0 = none. */
  healthCheckNodePort: number;
  /** Every endpoint of the port, for status and tracing. */
  allEndpoints: EndpointSpec<A>[];
  /** Endpoints for traffic from inside the cluster (pods, nodes) to the cluster IP. */
  clusterEndpoints: EndpointSpec<A>[];
  /** Endpoints for traffic to node ports, external IPs and load-balancer IPs. */
  externalEndpoints: EndpointSpec<A>[];
  /** Number of this node's endpoints that are ready (healthCheckNodePort answers 200 if > 0). */
  localReadyEndpoints: number;
}

/** Everything the data plane needs of Services, for one node, at one moment. */
export interface ServiceSnapshot {
  /** Increases with every sync; tables and traces report it. */
  generation: number;
  ports: ServicePortSpec[];
  /** Addresses on which node ports are served on this node (nodePortAddresses). */
  nodePortAddresses: number[];
  /** The IPv6 service ports (dual-stack and IPv6 Services), in `ports` order; absent = none. */
  ports6?: ServicePortSpec6[];
  /** The node's IPv6 node-port addresses; absent = none. */
  nodePortAddresses6?: string[];
}

/** An IPv6 service port: addresses in RFC 5952 text. */
export type ServicePortSpec6 = ServicePortSpec<string>;
export type EndpointSpec6 = EndpointSpec<string>;

// The Kubernetes objects Tapir reads (from manifests; later from the API), after
// validation: only the fields kube-proxy, the EndpointSlice controller, DNS and the lab
// use, with the API's defaults applied (protocol TCP, ready/serving true when absent,
// ...), so later stages never re-check or re-default anything. Field names follow the
// Kubernetes API.
import { flat } from '../config/compact.ts';

export const Kind = {
  SERVICE: 'Service',
  ENDPOINT_SLICE: 'EndpointSlice',
  ENDPOINTS: 'Endpoints',
  POD: 'Pod',
  NODE: 'Node',
  NAMESPACE: 'Namespace',
  INGRESS: 'Ingress',
  INGRESS_CLASS: 'IngressClass',
  SECRET: 'Secret',
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** Labels and annotations with meaning to Tapir. */
export const Label = {
  /** On an EndpointSlice: the Service it belongs to. */
  SERVICE_NAME: 'kubernetes.io/service-name',
  /** On a Service: another proxy implements it (kube-proxy skips such services). */
  SERVICE_PROXY_NAME: 'service.kubernetes.io/service-proxy-name',
  /** On a Node. */
  TOPOLOGY_ZONE: 'topology.kubernetes.io/zone',
  /** On an Endpoints object: the mirroring controller leaves it alone. */
  SKIP_MIRROR: 'endpointslice.kubernetes.io/skip-mirror',
} as const;

export const Annotation = {
  /** Per-service load-balancing algorithm (like Cilium's service.cilium.io/lb-algorithm). */
  LB_ALGORITHM: 'tapir.dev/lb-algorithm',
} as const;

/**
 * Where an object came from, for messages. A manifest file names the document ("svc.yaml:
 * document 2"); an object read from the Kubernetes API names the server it came from.
 */
export type Origin = FileOrigin | ApiOrigin;

export interface FileOrigin {
  source: 'file';
  /** The file's name in its manifest directory. */
  file: string;
  /** 1-based position in the file's document stream. */
  document: number;
  /** Index in the items of a `kind: List` document, if it came from one. */
  item?: number;
}

export interface ApiOrigin {
  source: 'api';
  /** The API server the object was listed or watched from ("https://10.0.0.1:6443"). */
  server: string;
}

/** "svc.yaml: document 2", "all.json: document 1, items[7]" or "https://10.0.0.1:6443". */
export function originText(origin: Origin): string {
  if (origin.source === 'api') return origin.server;
  return `${origin.file}: document ${origin.document}${origin.item === undefined ? '' : `, items[${origin.item}]`}`;
}

export interface ObjectMeta {
  name: string;
  /** '' for cluster-scoped kinds (Node, Namespace); 'default' when a namespaced object omits it. */
  namespace: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  /** Set on objects being deleted (a Pod with it is terminating); '' otherwise. */
  deletionTimestamp: string;
  /**
   * Opaque version of the object, set by its source (ObjectSource): it changes whenever
   * the object does. The API server's for API objects; a manifest directory numbers
   * the versions it reads itself. '' for objects that no source stored (generated ones).
   */
  resourceVersion: string;
  /** RFC 3339, as the API server sets it; '' or absent when unknown (a manifest without it). */
  creationTimestamp?: string;
}

export type Protocol = 'TCP' | 'UDP';

export interface ServicePort {
  name: string;
  protocol: Protocol;
  port: number;
  /** A container port number, or the name of a container port (resolved per pod). */
  targetPort: number | string;
  /** 0 = not requested (allocated for NodePort/LoadBalancer). */
  nodePort: number;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';

/** core/v1 IPFamily: the address family of a cluster IP, an EndpointSlice's addressType. */
export type IpFamily = 'IPv4' | 'IPv6';
export const IP_FAMILIES: readonly IpFamily[] = ['IPv4', 'IPv6'];

/** core/v1 IPFamilyPolicy: how many families a Service wants (ipFamilies, clusterIPs). */
export type IpFamilyPolicy = 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
export const IP_FAMILY_POLICIES: readonly IpFamilyPolicy[] = ['SingleStack', 'PreferDualStack', 'RequireDualStack'];

export interface LoadBalancerIngress {
  /** Either family (IPv6 in RFC 5952 text). */
  ip: string;
  /** 'Proxy': the load balancer proxies (rewrites the destination), so the node must not capture the IP. */
  ipMode: 'VIP' | 'Proxy';
}

export interface ServiceObject {
  kind: 'Service';
  origin: Origin;
  metadata: ObjectMeta;
  spec: {
    type: ServiceType;
    /** '' = allocate, 'None' = headless, else the requested address: always clusterIPs[0] (or ''). */
    clusterIP: string;
    /**
     * One address per family, in ipFamilies order (primary first); [] = allocate
     * everything, ['None'] = headless. A validated object holds at most one per family,
     * IPv6 ones in RFC 5952 text; fewer than ipFamilies means the rest is to allocate.
     */
    clusterIPs: string[];
    /**
     * [] = not given (ExternalName: always []): the allocator defaults it from the
     * cluster's service CIDRs and ipFamilyPolicy. Primary family first.
     */
    ipFamilies: IpFamily[];
    /** '' = not given (ExternalName: always ''); the allocator defaults it as kube-apiserver does. */
    ipFamilyPolicy: '' | IpFamilyPolicy;
    ports: ServicePort[];
    /** null = no selector (endpoints are written by hand). An empty selector counts as none. */
    selector: Readonly<Record<string, string>> | null;
    sessionAffinity: 'None' | 'ClientIP';
    /** sessionAffinityConfig.clientIP.timeoutSeconds; 0 when sessionAffinity is None. */
    affinityTimeoutSeconds: number;
    /** '' for services that are not reachable from outside (the API leaves it unset). */
    externalTrafficPolicy: '' | 'Cluster' | 'Local';
    internalTrafficPolicy: 'Cluster' | 'Local';
    /** '' | PreferClose | PreferSameZone | PreferSameNode. */
    trafficDistribution: string;
    /** Either family, as written (IPv6 in RFC 5952 text). */
    externalIPs: string[];
    /** IPv4 or IPv6 prefixes. */
    loadBalancerSourceRanges: string[];
    /** 0 = not requested. */
    healthCheckNodePort: number;
    externalName: string;
    publishNotReadyAddresses: boolean;
    allocateLoadBalancerNodePorts: boolean;
  };
  status: { loadBalancerIngress: LoadBalancerIngress[] };
}

export interface SliceEndpoint {
  /**
   * The first of the endpoint's addresses (of the slice's addressType, IPv6 in RFC 5952
   * text), the one the API tells consumers to use (kube-proxy uses no other). The rest
   * are validated and dropped: a list per endpoint was 14 MB at 250,000 endpoints.
   */
  address: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** The endpoint's DNS name within a headless Service ('' = none). */
  hostname: string;
  nodeName: string;
  zone: string;
  /** hints.forZones[].name and hints.forNodes[].name. */
  forZones: string[];
  forNodes: string[];
}

export interface SlicePort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface EndpointSliceObject {
  kind: 'EndpointSlice';
  origin: Origin;
  metadata: ObjectMeta;
  /** From the kubernetes.io/service-name label. */
  serviceName: string;
  /** IPv4 or IPv6 (FQDN slices are refused): every address of the slice is of it. */
  addressType: IpFamily;
  endpoints: SliceEndpoint[];
  ports: SlicePort[];
}

export interface EndpointAddress {
  ip: string;
  hostname: string;
  nodeName: string;
}

export interface EndpointSubset {
  addresses: EndpointAddress[];
  notReadyAddresses: EndpointAddress[];
  ports: SlicePort[];
}

export interface EndpointsObject {
  kind: 'Endpoints';
  origin: Origin;
  metadata: ObjectMeta;
  subsets: EndpointSubset[];
}

export interface ContainerPort {
  name: string;
  containerPort: number;
  protocol: Protocol;
}

export interface Probe {
  tcpSocket: { port: number | string } | null;
  httpGet: { port: number | string; path: string } | null;
  exec: { command: string[] } | null;
  initialDelaySeconds: number;
  periodSeconds: number;
  timeoutSeconds: number;
  successThreshold: number;
  failureThreshold: number;
}

/**
 * A container's `env` entry the lab can give a value: a literal `value` (with `$(VAR)`
 * references, expanded by the kubelet) or a downward-API `fieldRef`. Entries from
 * ConfigMaps, Secrets and resources are not read (Tapir keeps no such objects).
 */
export interface EnvVar {
  name: string;
  value: string;
  /** valueFrom.fieldRef.fieldPath ("metadata.name", "status.podIP", ...); '' for a literal value. */
  fieldPath: string;
}

export interface Container {
  name: string;
  ports: ContainerPort[];
  env: EnvVar[];
  /** null = run the built-in echo servers on the container ports (lab). */
  command: string[] | null;
  args: string[];
  readinessProbe: Probe | null;
}

/** spec.dnsPolicy (core/v1 DNSPolicy); the API server defaults it to ClusterFirst. */
export const DNS_POLICIES = ['ClusterFirst', 'ClusterFirstWithHostNet', 'Default', 'None'] as const;
export type DnsPolicy = (typeof DNS_POLICIES)[number];

/** spec.dnsConfig (core/v1 PodDNSConfig): merged into the resolv.conf the policy gives. */
export interface PodDnsConfig {
  /** IPv4 or IPv6 addresses, at most 3. */
  nameservers: string[];
  /** Search domains, a trailing dot allowed (at most 32, 2048 characters with spaces). */
  searches: string[];
  /** `options` entries: name, and value (null when absent: "rotate", not "ndots:2"). */
  options: { name: string; value: string | null }[];
}

export interface PodObject {
  kind: 'Pod';
  origin: Origin;
  metadata: ObjectMeta;
  /**
   * hostname and subdomain: the pod's DNS name under a headless Service named like the
   * subdomain ('' = none). dnsPolicy, dnsConfig, enableServiceLinks (default true) and
   * hostNetwork: what the kubelet reads to build the pod's resolv.conf and environment.
   */
  spec: {
    nodeName: string; hostname: string; subdomain: string; containers: Container[];
    dnsPolicy: DnsPolicy; dnsConfig: PodDnsConfig | null; enableServiceLinks: boolean; hostNetwork: boolean;
  };
  status: {
    phase: string;
    /** '' until the pod has an address: podIPs[0]. */
    podIP: string;
    /** status.podIPs[].ip: at most one per family, the first one podIP; [] until the pod has an address. */
    podIPs: string[];
    /** The Ready condition is "True". */
    ready: boolean;
  };
}

export interface NodeAddress {
  type: string;
  address: string;
}

export interface NodeObject {
  kind: 'Node';
  origin: Origin;
  metadata: ObjectMeta;
  /** topology.kubernetes.io/zone label, '' if absent. */
  zone: string;
  /** status.addresses, IPv4 ones (and names) only. */
  addresses: NodeAddress[];
  /** The IPv6 InternalIP and ExternalIP entries of status.addresses (a dual-stack node), apart so IPv4 readers never meet one; absent if none. */
  addresses6?: NodeAddress[];
  /** spec.taints[].key. */
  taints?: readonly string[];
  /** spec.podCIDRs (or spec.podCIDR), IPv4 only: where the node's pods live. */
  podCIDRs?: readonly string[];
  /** The IPv6 entry of spec.podCIDRs (a dual-stack node), if any. */
  podCIDRv6?: string;
}

export interface NamespaceObject {
  kind: 'Namespace';
  origin: Origin;
  metadata: ObjectMeta;
}

/** An Ingress backend: a Service port (by number or name), or a resource reference (which Tapir refuses). */
export interface IngressBackendRef {
  service: { name: string; port: number | string } | null;
  resource: { apiGroup: string; kind: string; name: string } | null;
}

export interface IngressPathObject {
  /** As written; '' when absent (checked by the Ingress compile, not here: a bad path costs its rule only). */
  path: string;
  pathType: 'Exact' | 'Prefix' | 'ImplementationSpecific';
  backend: IngressBackendRef;
}

export interface IngressRuleObject {
  /** '' = every host; may be a wildcard ("*.foo.com"). */
  host: string;
  /** rules[].http.paths; [] when the rule has no http. */
  paths: IngressPathObject[];
}

export interface IngressObject {
  kind: 'Ingress';
  origin: Origin;
  metadata: ObjectMeta;
  spec: {
    /** '' = not set (the default class, or the kubernetes.io/ingress.class annotation, decides). */
    ingressClassName: string;
    defaultBackend: IngressBackendRef | null;
    tls: { hosts: string[]; secretName: string }[];
    rules: IngressRuleObject[];
  };
  /** status.loadBalancer.ingress[].ip, as last written (the controller compares before it writes). */
  status: { loadBalancerIPs: string[] };
}

export interface IngressClassObject {
  kind: 'IngressClass';
  origin: Origin;
  metadata: ObjectMeta;
  /** spec.controller, e.g. "tapir.dev/ingress-controller". */
  controller: string;
  /** The ingressclass.kubernetes.io/is-default-class annotation is "true". */
  isDefault: boolean;
}

/**
 * A Secret. Only kubernetes.io/tls Secrets keep data (the certificate and key, checked:
 * both parse and the key is the certificate's); of any other type only the type is
 * kept, so a controller watching Secrets never holds credentials it has no use for.
 */
export interface SecretObject {
  kind: 'Secret';
  origin: Origin;
  metadata: ObjectMeta;
  type: string;
  tls: { certPem: string; keyPem: string; dnsNames: string[]; notAfter: string } | null;
}

export type K8sObject = ServiceObject | EndpointSliceObject | EndpointsObject | PodObject | NodeObject | NamespaceObject | IngressObject | IngressClassObject | SecretObject;

/** "Kind/namespace/name": unique per object, '' namespace for cluster-scoped kinds. */
export function objectKey(obj: K8sObject): string {
  return `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`;
}

/** "namespace/name", the way kubectl and kube-proxy name namespaced objects. */
export function namespacedName(obj: K8sObject): string {
  // Flat: the key is kept by several maps per object (a string of pieces is a tree of them).
  return obj.metadata.namespace === '' ? obj.metadata.name : flat(`${obj.metadata.namespace}/${obj.metadata.name}`);
}

/**
 * "svc.yaml: document 2 (Service default/web)" or "https://10.0.0.1:6443 (Service
 * default/web)": the prefix of every message about an object.
 */
export function describeOrigin(obj: K8sObject): string {
  return `${originText(obj.origin)} (${obj.kind} ${namespacedName(obj)})`;
}

// The kinds the lab's API server serves: adding one is one row of RESOURCES.
//
// A row names what discovery, routing, RBAC and kubectl need to know of a kind: its
// group/version, plural resource, scope, subresources, short names, how strategic merge
// patch merges its lists (the `patchMergeKey` tags of the Go types in k8s.io/api), and
// the Tapir validator for the kinds Tapir itself reads (src/k8s/validate*.ts).
import { Kind } from '../../k8s/objects.ts';

export interface ResourceInfo {
  group: string;
  version: string;
  kind: string;
  /** Plural lower-case resource name, as in /api/v1/pods. */
  resource: string;
  singular: string;
  namespaced: boolean;
  /** 'status', 'binding'. */
  subresources: readonly string[];
  shortNames: readonly string[];
  /** Discovery categories: `kubectl get all` lists the kinds in "all" (Pods and Services here, as in Kubernetes). */
  categories: readonly string[];
  /** Tapir's validator applies (src/k8s KINDS): invalid objects are answered 422. */
  tapirKind?: Kind;
  /**
   * Strategic merge patch: the lists merged by key ("spec.containers" -> "name"; an
   * item path uses "[]": "spec.containers[].ports" -> "containerPort"). Lists not named
   * here are replaced whole, as lists without a patchStrategy are in Kubernetes.
   */
  mergeKeys: Readonly<Record<string, string>>;
  /**
   * Server-side apply: the lists' `listMapKeys`, where they differ from the strategic
   * merge key. Several key fields are joined by ",", a key field's OpenAPI default follows
   * "=": Service ports are keyed on port and protocol ("port,protocol=TCP"), so 53/UDP and
   * 53/TCP stay two ports (the strategic merge key, port alone, famously merges them).
   */
  applyKeys: Readonly<Record<string, string>>;
}

/** Every object's metadata lists (ObjectMeta's patch strategies). */
const META_KEYS = { 'metadata.ownerReferences': 'uid', 'metadata.finalizers': '' } as const;

/** PodSpec's merge keys, shared with every kind that carries a pod template. */
const POD_SPEC_KEYS = {
  'spec.containers': 'name',
  'spec.initContainers': 'name',
  'spec.containers[].ports': 'containerPort',
  'spec.initContainers[].ports': 'containerPort',
  'spec.containers[].env': 'name',
  'spec.initContainers[].env': 'name',
  'spec.containers[].volumeMounts': 'mountPath',
  'spec.initContainers[].volumeMounts': 'mountPath',
  'spec.volumes': 'name',
  'spec.imagePullSecrets': 'name',
  'status.conditions': 'type',
} as const;

/** Container ports' listMapKeys (containerPort and protocol, TCP by default). */
const POD_SPEC_APPLY_KEYS = {
  'spec.containers[].ports': 'containerPort,protocol=TCP',
  'spec.initContainers[].ports': 'containerPort,protocol=TCP',
} as const;

function row(group: string, version: string, kind: string, resource: string, namespaced: boolean, extra: Partial<ResourceInfo> = {}): ResourceInfo {
  return {
    group,
    version,
    kind,
    resource,
    singular: kind.toLowerCase(),
    namespaced,
    subresources: [],
    shortNames: [],
    categories: [],
    ...extra,
    mergeKeys: { ...META_KEYS, ...extra.mergeKeys },
    applyKeys: { ...META_KEYS, ...extra.mergeKeys, ...extra.applyKeys },
  };
}

const CORE = '';
const RBAC = 'rbac.authorization.k8s.io';

export const RESOURCES: readonly ResourceInfo[] = [
  row(CORE, 'v1', 'Namespace', 'namespaces', false, { subresources: ['status'], shortNames: ['ns'], tapirKind: Kind.NAMESPACE, mergeKeys: { 'spec.finalizers': '' } }),
  row(CORE, 'v1', 'Pod', 'pods', true, { subresources: ['status', 'binding'], shortNames: ['po'], categories: ['all'], tapirKind: Kind.POD, mergeKeys: POD_SPEC_KEYS, applyKeys: POD_SPEC_APPLY_KEYS }),
  row(CORE, 'v1', 'Service', 'services', true, { subresources: ['status'], shortNames: ['svc'], categories: ['all'], tapirKind: Kind.SERVICE, mergeKeys: { 'spec.ports': 'port', 'status.conditions': 'type' }, applyKeys: { 'spec.ports': 'port,protocol=TCP' } }),
  row(CORE, 'v1', 'Endpoints', 'endpoints', true, { singular: 'endpoints', shortNames: ['ep'], tapirKind: Kind.ENDPOINTS }),
  row(CORE, 'v1', 'Node', 'nodes', false, { subresources: ['status'], shortNames: ['no'], tapirKind: Kind.NODE, mergeKeys: { 'status.addresses': 'type', 'status.conditions': 'type', 'spec.taints': 'key' } }),
  row(CORE, 'v1', 'Secret', 'secrets', true),
  row(CORE, 'v1', 'ConfigMap', 'configmaps', true, { shortNames: ['cm'] }),
  row(CORE, 'v1', 'ServiceAccount', 'serviceaccounts', true, { shortNames: ['sa'], mergeKeys: { secrets: 'name' } }),
  row(CORE, 'v1', 'Event', 'events', true, { shortNames: ['ev'] }),
  row('events.k8s.io', 'v1', 'Event', 'events', true, { shortNames: ['ev'] }),
  row('discovery.k8s.io', 'v1', 'EndpointSlice', 'endpointslices', true, { tapirKind: Kind.ENDPOINT_SLICE }),
  row('coordination.k8s.io', 'v1', 'Lease', 'leases', true),
  row('networking.k8s.io', 'v1', 'Ingress', 'ingresses', true, { subresources: ['status'], shortNames: ['ing'] }),
  row('networking.k8s.io', 'v1', 'IngressClass', 'ingressclasses', false),
  row(RBAC, 'v1', 'ClusterRole', 'clusterroles', false),
  row(RBAC, 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false),
  row(RBAC, 'v1', 'Role', 'roles', true),
  row(RBAC, 'v1', 'RoleBinding', 'rolebindings', true),
];

/** "v1" or "discovery.k8s.io/v1". */
export function apiVersionOf(info: ResourceInfo): string {
  return info.group === '' ? info.version : `${info.group}/${info.version}`;
}

/** "pods", "endpointslices.discovery.k8s.io": the store's and the journal's key of a resource. */
export function resourceKey(info: ResourceInfo): string {
  return info.group === '' ? info.resource : `${info.resource}.${info.group}`;
}

const BY_PATH = new Map(RESOURCES.map((r) => [`${apiVersionOf(r)}/${r.resource}`, r]));
const BY_KIND = new Map(RESOURCES.map((r) => [`${apiVersionOf(r)}/${r.kind}`, r]));

/** The resource served at /api/v1/<resource> or /apis/<group>/<version>/<resource>. */
export function resourceAt(group: string, version: string, resource: string): ResourceInfo | undefined {
  return BY_PATH.get(`${group === '' ? version : `${group}/${version}`}/${resource}`);
}

export function resourceOfKind(apiVersion: string, kind: string): ResourceInfo | undefined {
  return BY_KIND.get(`${apiVersion}/${kind}`);
}

/** The served groups in discovery order (core first), each with its one version. */
export function groups(): { group: string; version: string; resources: ResourceInfo[] }[] {
  const out = new Map<string, { group: string; version: string; resources: ResourceInfo[] }>();
  for (const r of RESOURCES) {
    const g = out.get(r.group) ?? { group: r.group, version: r.version, resources: [] };
    g.resources.push(r);
    out.set(r.group, g);
  }
  return [...out.values()];
}

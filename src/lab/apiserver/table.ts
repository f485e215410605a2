// Server-side printing (meta.k8s.io/v1 Table), which `kubectl get` asks for with
// `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: the columns of
// pkg/printers/internalversion for the kinds people look at in the lab (wide columns have
// priority 1), NAME and AGE for the rest.
import { isMapping, type Raw } from '../../config/fields.ts';
import type { Obj } from './store.ts';

interface Column {
  name: string;
  type: string;
  format?: string;
  priority?: number;
  description: string;
  cell(o: Obj, now: number): unknown;
}

const m = (v: unknown): Raw => (isMapping(v) ? v : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const orNone = (s: string): string => (s === '' ? '<none>' : s);

const NAME: Column = { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', cell: (o) => o.metadata.name };
const AGE: Column = { name: 'Age', type: 'string', description: 'CreationTimestamp', cell: (o, now) => age(String(o.metadata.creationTimestamp ?? ''), now) };

/** kubectl's duration format (duration.HumanDuration): 45s, 12m, 3h20m, 5d. */
export function age(timestamp: string, now: number): string {
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return '<unknown>';
  const s = Math.max(0, Math.floor((now - t) / 1000));
  if (s < 120) return `${s}s`;
  const min = Math.floor(s / 60);
  if (min < 10) return `${min}m${s % 60 === 0 ? '' : `${s % 60}s`}`;
  if (min < 180) return `${min}m`;
  const h = Math.floor(min / 60);
  if (h < 8) return `${h}h${min % 60 === 0 ? '' : `${min % 60}m`}`;
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

function podReady(o: Obj): string {
  const statuses = list(m(o.status).containerStatuses).map(m);
  const total = list(m(o.spec).containers).length;
  return `${statuses.filter((c) => c.ready === true).length}/${total}`;
}

function podStatus(o: Obj): string {
  if (o.metadata.deletionTimestamp !== undefined) return 'Terminating';
  const s = m(o.status);
  return typeof s.reason === 'string' && s.reason !== '' ? s.reason : String(s.phase ?? 'Pending');
}

function nodeStatus(o: Obj): string {
  const ready = list(m(o.status).conditions).map(m).find((c) => c.type === 'Ready');
  const text = ready?.status === 'True' ? 'Ready' : 'NotReady';
  return m(o.spec).unschedulable === true ? `${text},SchedulingDisabled` : text;
}

function nodeAddress(o: Obj, type: string): string {
  return orNone(String(list(m(o.status).addresses).map(m).find((a) => a.type === type)?.address ?? ''));
}

function servicePorts(o: Obj): string {
  const ports = list(m(o.spec).ports).map(m).map((p) => `${String(p.port)}${p.nodePort === undefined ? '' : `:${String(p.nodePort)}`}/${String(p.protocol ?? 'TCP')}`);
  return orNone(ports.join(','));
}

function externalIP(o: Obj): string {
  const spec = m(o.spec);
  const lb = list(m(m(o.status).loadBalancer).ingress).map((i) => String(m(i).ip ?? m(i).hostname ?? ''));
  const ips = [...list(spec.externalIPs).map(String), ...lb];
  if (spec.type === 'ExternalName') return String(spec.externalName ?? '');
  if (ips.length > 0) return ips.join(',');
  return spec.type === 'LoadBalancer' ? '<pending>' : '<none>';
}

function selector(v: unknown): string {
  const entries = Object.entries(m(v));
  return entries.length === 0 ? '<none>' : entries.map(([k, x]) => `${k}=${String(x)}`).join(',');
}

function sliceEndpoints(o: Obj): string {
  const addrs = list(o.endpoints).flatMap((e) => list(m(e).addresses).map(String));
  if (addrs.length === 0) return '<unset>';
  return addrs.length > 3 ? `${addrs.slice(0, 3).join(',')} + ${addrs.length - 3} more...` : addrs.join(',');
}

function subjects(o: Obj, kind: string): string {
  return list(o.subjects).map(m).filter((x) => x.kind === kind).map((x) => (kind === 'ServiceAccount' ? `${String(x.namespace ?? '')}/${String(x.name)}` : String(x.name))).join(', ');
}

/** kubectl's Ingress HOSTS: the rules' hosts ("*" for none), at most three then "+ N more...". */
function ingressHosts(o: Obj): string {
  const hosts = list(m(o.spec).rules).map((r) => String(m(r).host ?? '') || '*');
  if (hosts.length === 0) return '*';
  return hosts.length > 3 ? `${hosts.slice(0, 3).join(',')} + ${hosts.length - 3} more...` : hosts.join(',');
}

const BINDING_COLUMNS: readonly Column[] = [
  NAME,
  { name: 'Role', type: 'string', description: 'Role it binds', cell: (o) => `${String(m(o.roleRef).kind)}/${String(m(o.roleRef).name)}` },
  AGE,
  { name: 'Users', type: 'string', priority: 1, description: 'Users in the binding', cell: (o) => subjects(o, 'User') },
  { name: 'Groups', type: 'string', priority: 1, description: 'Groups in the binding', cell: (o) => subjects(o, 'Group') },
  { name: 'ServiceAccounts', type: 'string', priority: 1, description: 'ServiceAccounts in the binding', cell: (o) => subjects(o, 'ServiceAccount') },
];

const COLUMNS: Readonly<Record<string, readonly Column[]>> = {
  pods: [
    NAME,
    { name: 'Ready', type: 'string', description: 'The aggregate readiness state of this pod for accepting traffic.', cell: podReady },
    { name: 'Status', type: 'string', description: 'The aggregate status of the containers in this pod.', cell: podStatus },
    { name: 'Restarts', type: 'string', description: 'The number of times the containers in this pod have been restarted.', cell: (o) => String(list(m(o.status).containerStatuses).reduce((n: number, c) => n + Number(m(c).restartCount ?? 0), 0)) },
    AGE,
    { name: 'IP', type: 'string', priority: 1, description: 'IP address allocated to the pod.', cell: (o) => orNone(String(m(o.status).podIP ?? '')) },
    { name: 'Node', type: 'string', priority: 1, description: 'Name of the node the pod is assigned to.', cell: (o) => orNone(String(m(o.spec).nodeName ?? '')) },
    { name: 'Nominated Node', type: 'string', priority: 1, description: 'Name of the node where the pod is nominated.', cell: (o) => orNone(String(m(o.status).nominatedNodeName ?? '')) },
    { name: 'Readiness Gates', type: 'string', priority: 1, description: 'The readiness gates of the pod.', cell: (o) => (list(m(o.spec).readinessGates).length === 0 ? '<none>' : String(list(m(o.spec).readinessGates).length)) },
  ],
  nodes: [
    NAME,
    { name: 'Status', type: 'string', description: 'The status of the node', cell: nodeStatus },
    { name: 'Roles', type: 'string', description: 'The roles of the node', cell: (o) => orNone(Object.keys(m(o.metadata.labels)).filter((k) => k.startsWith('node-role.kubernetes.io/')).map((k) => k.slice('node-role.kubernetes.io/'.length)).join(',')) },
    AGE,
    { name: 'Version', type: 'string', description: 'Kubelet Version reported by the node.', cell: (o) => String(m(m(o.status).nodeInfo).kubeletVersion ?? '') },
    { name: 'Internal-IP', type: 'string', priority: 1, description: 'List of internal IPs in the node.', cell: (o) => nodeAddress(o, 'InternalIP') },
    { name: 'External-IP', type: 'string', priority: 1, description: 'List of external IPs in the node.', cell: (o) => nodeAddress(o, 'ExternalIP') },
    { name: 'OS-Image', type: 'string', priority: 1, description: 'OS image reported by the node.', cell: (o) => orNone(String(m(m(o.status).nodeInfo).osImage ?? '')) },
    { name: 'Kernel-Version', type: 'string', priority: 1, description: 'Kernel version reported by the node.', cell: (o) => orNone(String(m(m(o.status).nodeInfo).kernelVersion ?? '')) },
    { name: 'Container-Runtime', type: 'string', priority: 1, description: 'Container runtime reported by the node.', cell: (o) => orNone(String(m(m(o.status).nodeInfo).containerRuntimeVersion ?? '')) },
  ],
  services: [
    NAME,
    { name: 'Type', type: 'string', description: 'The type of the service.', cell: (o) => String(m(o.spec).type ?? 'ClusterIP') },
    { name: 'Cluster-IP', type: 'string', description: 'The cluster IP of the service.', cell: (o) => orNone(String(m(o.spec).clusterIP ?? '')) },
    { name: 'External-IP', type: 'string', description: 'The external IPs of the service.', cell: externalIP },
    { name: 'Port(s)', type: 'string', description: 'The ports of the service.', cell: servicePorts },
    AGE,
    { name: 'Selector', type: 'string', priority: 1, description: 'The selector of the service.', cell: (o) => selector(m(o.spec).selector) },
  ],
  'endpointslices.discovery.k8s.io': [
    NAME,
    { name: 'AddressType', type: 'string', description: 'The address type of the slice.', cell: (o) => String(o.addressType ?? '') },
    { name: 'Ports', type: 'string', description: 'The ports of the slice.', cell: (o) => orNone(list(o.ports).map((p) => String(m(p).port ?? '')).join(',')) },
    { name: 'Endpoints', type: 'string', description: 'The endpoints of the slice.', cell: sliceEndpoints },
    AGE,
  ],
  'ingresses.networking.k8s.io': [
    NAME,
    { name: 'Class', type: 'string', description: 'The name of the IngressClass resource that should be used for additional configuration', cell: (o) => String(m(o.spec).ingressClassName ?? '<none>') },
    { name: 'Hosts', type: 'string', description: 'Hosts that incoming requests are matched against before the ingress rule', cell: ingressHosts },
    { name: 'Address', type: 'string', description: 'Address is a list containing ingress points for the load-balancer', cell: (o) => list(m(m(o.status).loadBalancer).ingress).map((i) => String(m(i).ip ?? m(i).hostname ?? '')).join(',') },
    { name: 'Ports', type: 'string', description: 'Ports of TLS configurations that open', cell: (o) => (list(m(o.spec).tls).length > 0 ? '80, 443' : '80') },
    AGE,
  ],
  'ingressclasses.networking.k8s.io': [
    NAME,
    { name: 'Controller', type: 'string', description: 'Controller that is responsible for handling this class', cell: (o) => String(m(o.spec).controller ?? '') },
    { name: 'Parameters', type: 'string', description: 'A reference to a resource with additional parameters', cell: (o) => (m(o.spec).parameters === undefined ? '<none>' : String(m(m(o.spec).parameters).name ?? '')) },
    AGE,
  ],
  'clusterrolebindings.rbac.authorization.k8s.io': BINDING_COLUMNS,
  'rolebindings.rbac.authorization.k8s.io': BINDING_COLUMNS,
  namespaces: [NAME, { name: 'Status', type: 'string', description: 'The status of the namespace', cell: (o) => String(m(o.status).phase ?? 'Active') }, AGE],
  configmaps: [NAME, { name: 'Data', type: 'integer', description: 'Number of data entries.', cell: (o) => Object.keys(m(o.data)).length + Object.keys(m(o.binaryData)).length }, AGE],
};

/** The Table for `objects` of resource `res` (the store's key), as kube-apiserver's TableConvertor builds it. */
export function toTable(res: string, objects: readonly Obj[], resourceVersion: string, includeObject: string): Raw {
  const columns = COLUMNS[res] ?? [NAME, AGE];
  const now = Date.now();
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion },
    columnDefinitions: columns.map((c) => ({ name: c.name, type: c.type, format: c.format ?? '', description: c.description, priority: c.priority ?? 0 })),
    rows: objects.map((o) => ({ cells: columns.map((c) => c.cell(o, now)), object: rowObject(o, includeObject) })),
  };
}

/** includeObject=Metadata (the default) sends PartialObjectMetadata; Object the whole object; None nothing. */
function rowObject(o: Obj, includeObject: string): unknown {
  if (includeObject === 'None') return null;
  if (includeObject === 'Object') return o;
  return { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata };
}

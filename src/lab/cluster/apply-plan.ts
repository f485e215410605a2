// The checking half of `lab apply` and `lab delete`, with no side effects: the file is
// validated as every agent validates manifests (src/k8s), then against the lab (Nodes
// are the lab's own, namespaces must exist, a Pod's spec is immutable, cluster IPs and
// node ports must not collide), and the objects to write are prepared the way the API
// server would store them: cluster IP and node ports allocated and written into the
// spec, a LoadBalancer address in status. Any problem rejects the whole command, each
// one naming file, document and field.
import { parseAllDocuments } from 'yaml';
import { allocateServices, needsNodePorts } from '../../control/allocator.ts';
import { DEFAULT_NODE_PORT_RANGE } from '../../model/cluster-defaults.ts';
import { parseManifest } from '../../k8s/manifest.ts';
import { describeOrigin, namespacedName, objectKey, type FileOrigin, type K8sObject, type PodObject, type ServiceObject } from '../../k8s/objects.ts';
import { validateDocument } from '../../k8s/validate.ts';
import { ipv4ToString, parseCidr } from '../../wire/address.ts';
import { BUILTIN_NAMESPACES } from './lab-objects.ts';
import { assignLoadBalancerIP, parsePool, takenAddresses } from './load-balancer.ts';
import { loadObjects, readObject, type RawObject } from './manifests.ts';
import type { LabState } from '../state.ts';
import type { ManifestSource } from './topology-manifests.ts';
import { isDns1123Label } from '../../k8s/fields.ts';
import { LabError } from '../validate.ts';

export interface PlannedObject {
  object: K8sObject;
  /** The object as it will be stored (allocations filled in). */
  raw: RawObject;
  /** The stored object it replaces. */
  existing: K8sObject | undefined;
  action: 'created' | 'configured' | 'unchanged';
}

export interface ApplyPlan {
  objects: PlannedObject[];
  warnings: string[];
}

/** "kubectl apply"-style name: service/web, pod/web-1a. */
export function resourceName(obj: K8sObject): string {
  return `${obj.kind.toLowerCase()}/${obj.metadata.name}`;
}

export function invalid(source: string, problems: string[]): LabError {
  return new LabError('MANIFEST_INVALID', problems.length === 1
    ? `${problems[0]} (nothing was changed)`
    : `${source}: ${problems.length} problems, nothing was changed:\n  ${problems.join('\n  ')}`);
}

/** The file's validated objects and their raw documents, by 1-based document number. */
export function readSource(source: ManifestSource): { objects: K8sObject[]; raw: Map<number, RawObject> } {
  const parsed = parseManifest(source.text, source.file);
  if (parsed.problems.length > 0) throw invalid(source.file, parsed.problems);
  const raw = new Map<number, RawObject>();
  const stream = parseAllDocuments(source.text);
  (Array.isArray(stream) ? stream : []).forEach((doc, i) => raw.set(i + 1, doc.toJS() as RawObject));
  if (parsed.objects.length === 0) throw invalid(source.file, [`${source.file}: no objects in it`]);
  return { objects: parsed.objects, raw };
}

function stored(state: LabState): Map<string, K8sObject> {
  return new Map(loadObjects(state.manifests).objects.map((o) => [objectKey(o), o]));
}

export function planApply(state: LabState, source: ManifestSource): ApplyPlan {
  const { objects, raw } = readSource(source);
  const current = stored(state);
  const problems: string[] = [];
  const warnings: string[] = [];
  const fail = (obj: K8sObject, field: string, message: string): void => { problems.push(`${describeOrigin(obj)}: ${field}: ${message}`); };
  const namespaces = new Set([...BUILTIN_NAMESPACES, ...[...current.values(), ...objects].filter((o) => o.kind === 'Namespace').map((o) => o.metadata.name)]);
  const planned: PlannedObject[] = [];

  for (const obj of objects) {
    const doc = structuredClone(raw.get((obj.origin as FileOrigin).document)!);
    const existing = current.get(objectKey(obj));
    if (obj.kind === 'Node') {
      fail(obj, 'kind', 'Nodes belong to the lab (one per topology node) and cannot be applied');
      continue;
    }
    if (obj.metadata.namespace !== '' && !namespaces.has(obj.metadata.namespace)) {
      fail(obj, 'metadata.namespace', `namespace "${obj.metadata.namespace}" does not exist (apply a Namespace object first, or in the same file)`);
    }
    ((doc.metadata ??= {}) as Record<string, unknown>);
    if (obj.metadata.namespace !== '') (doc.metadata as Record<string, unknown>).namespace = obj.metadata.namespace;
    if (obj.kind === 'Pod') checkPod(state, obj, existing as PodObject | undefined, fail);
    planned.push({ object: obj, raw: doc, existing, action: existing === undefined ? 'created' : 'configured' });
  }
  planServices(state, planned, current, problems, warnings);
  if (problems.length > 0) throw invalid(source.file, problems);
  for (const p of planned) {
    const before = p.existing === undefined ? undefined : readObject(state.manifests, p.existing.kind, p.existing.metadata.namespace, p.existing.metadata.name);
    if (before !== undefined && sameContent(p, before)) p.action = 'unchanged';
  }
  return { objects: planned, warnings };
}

/** Unchanged when everything but the status the lab's controllers own is the same. */
function sameContent(p: PlannedObject, before: RawObject): boolean {
  const strip = (o: RawObject): string => JSON.stringify({ ...o, status: p.object.kind === 'Pod' ? undefined : o.status, ...(p.object.kind === 'Pod' ? { spec: { ...(o.spec as object), nodeName: undefined } } : {}) });
  return strip(p.raw) === strip(before);
}

type Fail = (obj: K8sObject, field: string, message: string) => void;

function checkPod(state: LabState, pod: PodObject, existing: PodObject | undefined, fail: Fail): void {
  if (!isDns1123Label(pod.metadata.name)) {
    // The pod's network namespace is named after it, with "." separating the parts.
    fail(pod, 'metadata.name', `"${pod.metadata.name}" must be a DNS-1123 label in the lab (lower-case letters, digits and "-", no ".")`);
  }
  if (pod.spec.hostNetwork) fail(pod, 'spec.hostNetwork', 'hostNetwork pods are not supported by the lab (every lab pod gets its own network namespace)');
  if (pod.spec.nodeName !== '' && !state.nodes.some((n) => n.name === pod.spec.nodeName)) {
    fail(pod, 'spec.nodeName', `"${pod.spec.nodeName}" is not a node of lab ${state.name} (nodes: ${state.nodes.map((n) => n.name).join(', ')})`);
  }
  const seen = new Map<string, string>();
  pod.spec.containers.forEach((c, i) => {
    if (c.command !== null) return;
    c.ports.forEach((p, j) => {
      const id = `${p.containerPort}/${p.protocol}`;
      const path = `spec.containers[${i}].ports[${j}]`;
      if (seen.has(id)) fail(pod, `${path}.containerPort`, `${id} is also served by ${seen.get(id)} (one echo server per port)`);
      seen.set(id, path);
    });
  });
  if (existing === undefined) return;
  if (existing.metadata.deletionTimestamp !== '') fail(pod, 'metadata', 'the pod is being deleted; apply it again once it is gone');
  if (pod.spec.nodeName !== '' && pod.spec.nodeName !== existing.spec.nodeName) {
    fail(pod, 'spec.nodeName', `a pod cannot move (it runs on ${existing.spec.nodeName}); delete it first`);
  }
  if (JSON.stringify(pod.spec.containers) !== JSON.stringify(existing.spec.containers)) {
    fail(pod, 'spec.containers', 'a Pod\'s containers cannot change once it runs (only labels and annotations can); delete it first');
  }
}

/**
 * Stores Services as the API server does: values already allocated are kept across
 * re-applies (clusterIP, node ports, health-check node port, load-balancer address),
 * new ones are allocated and written into the object, collisions are rejected.
 */
function planServices(state: LabState, planned: PlannedObject[], current: Map<string, K8sObject>, problems: string[], warnings: string[]): void {
  const entries = planned.filter((p) => p.object.kind === 'Service');
  if (entries.length === 0) return;
  for (const p of entries) {
    const existing = p.existing as ServiceObject | undefined;
    const next = p.object as ServiceObject;
    // The API server refuses to change an allocated cluster IP (spec.clusterIP is immutable).
    const before = existing?.spec.clusterIP ?? '';
    if (before !== '' && next.spec.clusterIP !== '' && next.spec.clusterIP !== before) {
      problems.push(`${describeOrigin(next)}: spec.clusterIP: field is immutable (it is ${before}); delete the Service to change it`);
    }
    carryOver(p.raw, existing, next);
  }
  const merged = new Map<string, ServiceObject>();
  for (const p of entries) {
    // Re-validated with the carried-over fields, so they are checked like typed ones.
    const obj = validateDocument(p.raw, p.object.origin, problems) as ServiceObject | undefined;
    if (obj === undefined) continue;
    p.object = obj;
    merged.set(namespacedName(obj), obj);
  }
  const others = [...current.values()].filter((o): o is ServiceObject => o.kind === 'Service' && !merged.has(namespacedName(o)));
  // Stored Services keep what they hold (the allocator alone would let the name that
  // sorts first win, which is right for agents without an API server, not for one).
  const held = new Map<string, string>();
  for (const o of others) {
    if (o.spec.clusterIP !== '' && o.spec.clusterIP !== 'None') held.set(`ip ${o.spec.clusterIP}`, namespacedName(o));
    for (const port of o.spec.ports) if (port.nodePort !== 0) held.set(`port ${port.nodePort}`, namespacedName(o));
    if (o.spec.healthCheckNodePort !== 0) held.set(`port ${o.spec.healthCheckNodePort}`, namespacedName(o));
  }
  for (const p of entries) {
    const svc = merged.get(namespacedName(p.object));
    if (svc === undefined) continue;
    const clash = (key: string, field: string, what: string): void => {
      const owner = held.get(key);
      if (owner !== undefined) problems.push(`${describeOrigin(svc)}: ${field}: ${what} is already allocated to Service ${owner}`);
    };
    if (svc.spec.clusterIP !== '' && svc.spec.clusterIP !== 'None') clash(`ip ${svc.spec.clusterIP}`, 'spec.clusterIP', svc.spec.clusterIP);
    svc.spec.ports.forEach((port, i) => { if (port.nodePort !== 0) clash(`port ${port.nodePort}`, `spec.ports[${i}].nodePort`, String(port.nodePort)); });
    if (svc.spec.healthCheckNodePort !== 0) clash(`port ${svc.spec.healthCheckNodePort}`, 'spec.healthCheckNodePort', String(svc.spec.healthCheckNodePort));
  }
  const allocation = allocateServices([...others, ...merged.values()], { serviceCIDR: parseCidr(state.addressing.serviceCIDR)!, nodePortRange: DEFAULT_NODE_PORT_RANGE });
  // Messages already name file, document and field; only the applied services' matter.
  for (const [key, messages] of allocation.rejected) if (merged.has(key)) problems.push(...messages);
  const pool = parsePool(state.addressing.loadBalancerPool)!;
  const taken = takenAddresses(others);
  for (const p of entries) {
    const svc = p.object as ServiceObject;
    const alloc = allocation.allocations.get(namespacedName(svc));
    if (alloc === undefined) continue;
    const spec = p.raw.spec as Record<string, unknown>;
    if (svc.spec.clusterIP === '' && alloc.clusterIP !== 0) spec.clusterIP = ipv4ToString(alloc.clusterIP);
    const ports = spec.ports as Record<string, unknown>[] | undefined;
    alloc.nodePorts.forEach((np, i) => { if (np !== 0 && ports?.[i] !== undefined) ports[i]!.nodePort = np; });
    if (alloc.healthCheckNodePort !== 0) spec.healthCheckNodePort = alloc.healthCheckNodePort;
    const userStatus = (p.raw.status as { loadBalancer?: unknown } | undefined)?.loadBalancer !== undefined;
    if (svc.spec.type !== 'LoadBalancer' || userStatus) {
      // A status written by hand (say ipMode: Proxy) is kept: the lab's "cloud" stays out.
      if (!userStatus) delete p.raw.status;
      continue;
    }
    const existing = p.existing as ServiceObject | undefined;
    const current = existing?.spec.type === 'LoadBalancer' ? existing.status.loadBalancerIngress[0]?.ip : undefined;
    const requested = typeof spec.loadBalancerIP === 'string' ? spec.loadBalancerIP : undefined;
    const ip = assignLoadBalancerIP(pool, current, requested, taken);
    if (ip === undefined) {
      warnings.push(`${describeOrigin(svc)}: no free address in the load balancer pool ${state.addressing.loadBalancerPool}; the Service stays pending`);
      delete p.raw.status;
      continue;
    }
    taken.add(ip);
    p.raw.status = { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } };
  }
}

/** Fields the API server keeps when a re-applied manifest leaves them out. */
function carryOver(raw: RawObject, existing: ServiceObject | undefined, next: ServiceObject): void {
  if (existing === undefined) return;
  const spec = (raw.spec ??= {}) as Record<string, unknown>;
  if (spec.clusterIP === undefined && existing.spec.clusterIP !== '' && existing.spec.clusterIP !== 'None' && next.spec.clusterIP === '') spec.clusterIP = existing.spec.clusterIP;
  if (needsNodePorts(next)) {
    const ports = (spec.ports ?? []) as Record<string, unknown>[];
    next.spec.ports.forEach((p, i) => {
      if (p.nodePort !== 0 || ports[i] === undefined) return;
      const before = existing.spec.ports.find((q) => q.port === p.port && q.protocol === p.protocol) ?? existing.spec.ports.find((q) => q.name === p.name && q.protocol === p.protocol);
      if (before !== undefined && before.nodePort !== 0) ports[i]!.nodePort = before.nodePort;
    });
  }
  if (spec.healthCheckNodePort === undefined && existing.spec.healthCheckNodePort !== 0 && next.spec.type === 'LoadBalancer' && next.spec.externalTrafficPolicy === 'Local') {
    spec.healthCheckNodePort = existing.spec.healthCheckNodePort;
  }
}

export interface DeletePlan {
  objects: K8sObject[];
}

export function planDelete(state: LabState, source: ManifestSource): DeletePlan {
  const { objects } = readSource(source);
  const current = stored(state);
  const problems: string[] = [];
  const keys = new Set(objects.map(objectKey));
  for (const obj of objects) {
    const where = describeOrigin(obj);
    if (obj.kind === 'Node') problems.push(`${where}: kind: Nodes belong to the lab and cannot be deleted`);
    else if (!current.has(objectKey(obj))) problems.push(`${where}: metadata.name: not found in lab ${state.name}`);
    else if (obj.kind === 'Namespace') {
      if ((BUILTIN_NAMESPACES as readonly string[]).includes(obj.metadata.name)) problems.push(`${where}: metadata.name: namespace ${obj.metadata.name} cannot be deleted`);
      const inside = [...current.values()].filter((o) => o.metadata.namespace === obj.metadata.name && !keys.has(objectKey(o)));
      if (inside.length > 0) problems.push(`${where}: metadata.name: namespace ${obj.metadata.name} still holds ${inside.map(resourceName).join(', ')}; delete them first or in the same file`);
    }
  }
  if (problems.length > 0) throw invalid(source.file, problems);
  return { objects: objects.map((o) => current.get(objectKey(o))!) };
}

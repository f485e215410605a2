// The lab in cluster mode (the default): its Kubernetes objects live in the lab API
// server. `lab apply` and `lab delete` go there as kubectl's do (server-side apply,
// graceful pod deletion), the API server allocates cluster IPs and node ports and its
// controllers write the EndpointSlices and bind unscheduled Pods; the node daemons play
// the parts of a cluster that run on nodes and in the cloud: the kubelet starts a bound
// Pod (namespace, tapir-cni, workload) and writes its status (phase, podIP, hostIP; its
// prober then the Ready condition), and the load-balancer controller gives a
// LoadBalancer Service an address from the lab's pool (src/lab/node/kubelet.ts,
// load-balancer-controller.ts). `lab apply` waits for both, as `kubectl apply` followed
// by `kubectl wait` would. A file is validated whole first, as in manifest mode; what
// the API server refuses is reported with its message.
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { describeOrigin, type K8sObject, type PodObject, type ServiceObject } from '../../k8s/objects.ts';
import { validateDocument } from '../../k8s/validate.ts';
import { isDns1123Label } from '../../k8s/fields.ts';
import { LabApiClient, objectPath } from '../apiserver/client.ts';
import { waitForDaemons } from '../node/daemons.ts';
import { removePod } from '../network/pods.ts';
import { START_FAILED } from '../node/kubelet.ts';
import { sleep } from '../network/shell.ts';
import { saveState, type ApiServerState, type LabState, type PodState } from '../state.ts';
import { LabError } from '../validate.ts';
import { invalid, readSource, resourceName, type ApplyPlan } from './apply-plan.ts';
import { containerStatuses, podStatus, topologyPodObject } from './lab-objects.ts';
import { assignLoadBalancerIP, parsePool, takenAddresses } from './load-balancer.ts';
import { bumpRevision, MANIFEST_LOCK, withLock, type RawObject } from './manifests.ts';
import type { ManifestSource } from './topology-manifests.ts';
import { labHostIP } from './pod-start.ts';

/** The field manager of the lab's server-side applies (kubectl's is "kubectl"). */
const FIELD_MANAGER = 'tapir-lab';
const DAEMON_TIMEOUT_MS = 20_000;
/** The lab's scheduler binds a new Pod within milliseconds; this bounds the wait. */
const BIND_TIMEOUT_MS = 10_000;
/** Starting a pod (namespace, CNI ADD, workload up) takes a second or two; this bounds it. */
const START_TIMEOUT_MS = 30_000;
/** The load-balancer controller assigns within a pass (200 ms) of seeing the Service. */
const ADDRESS_TIMEOUT_MS = 10_000;

/** The lab's admin client (system:masters), on the host's loopback port. */
export function adminClient(api: ApiServerState): LabApiClient {
  const kubeconfig = parseYaml(readFileSync(api.hostKubeconfig, 'utf8')) as { users: { user: { token: string } }[] };
  return new LabApiClient(api.hostServer, api.caFile, kubeconfig.users[0]!.user.token);
}

/** Every object of the kinds the lab shows, validated as the agents validate them. */
export async function listApiObjects(api: ApiServerState): Promise<{ objects: K8sObject[]; problems: string[] }> {
  const client = adminClient(api);
  const objects: K8sObject[] = [];
  const problems: string[] = [];
  for (const [path, apiVersion, kind] of [
    ['/api/v1/services', 'v1', 'Service'], ['/apis/discovery.k8s.io/v1/endpointslices', 'discovery.k8s.io/v1', 'EndpointSlice'],
    ['/api/v1/pods', 'v1', 'Pod'], ['/api/v1/nodes', 'v1', 'Node'],
    ['/apis/networking.k8s.io/v1/ingresses', 'networking.k8s.io/v1', 'Ingress'], ['/apis/networking.k8s.io/v1/ingressclasses', 'networking.k8s.io/v1', 'IngressClass'],
  ] as const) {
    const list = await client.must('GET', path);
    for (const item of Array.isArray(list.items) ? list.items : []) {
      const obj = validateDocument({ ...(item as object), apiVersion, kind }, { source: 'api', server: api.hostServer }, problems);
      if (obj !== undefined) objects.push(obj);
    }
  }
  return { objects, problems };
}

async function getObject(client: LabApiClient, raw: RawObject): Promise<RawObject | undefined> {
  const res = await client.request('GET', objectPath(raw, true));
  if (res.status === 404) return undefined;
  if (res.status !== 200) throw new LabError('API_FAILED', `GET ${objectPath(raw, true)}: ${res.status} ${String(res.body.message ?? '')}`);
  return res.body;
}

/** The Pod's status as the kubelet writes it once the sandbox runs (Ready comes from the prober). */
async function writePodStatus(client: LabApiClient, pod: PodState, hostIP: string, containers: readonly string[]): Promise<void> {
  const now = new Date().toISOString();
  await client.must('PATCH', `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}/status`,
    { status: { ...podStatus(pod, false, hostIP), startTime: now, containerStatuses: containerStatuses(containers, false, now) } }, 'application/merge-patch+json');
}

/** `lab up`: the topology's pods (already running) as Pods bound to their nodes, with their status. */
export async function createTopologyPods(state: LabState & { apiServer: ApiServerState }): Promise<void> {
  const client = adminClient(state.apiServer);
  for (const pod of state.pods) {
    const { status: _status, ...object } = topologyPodObject(pod);
    (object.spec as RawObject).terminationGracePeriodSeconds = state.terminationGracePeriodSeconds;
    await client.create(object);
    const containers = ((object.spec as { containers: { name: string }[] }).containers).map((c) => c.name);
    await writePodStatus(client, pod, labHostIP(state, state.nodes.find((n) => n.name === pod.node)!), containers);
  }
}

/** The plan of an apply: validated objects and their documents; Nodes are the lab's own. */
function planApiApply(source: ManifestSource, nodes: readonly string[]): ApplyPlan {
  const { objects, raw } = readSource(source);
  const problems: string[] = [];
  const planned = objects.map((object) => {
    if (object.kind === 'Node') problems.push(`${describeOrigin(object)}: kind: Nodes belong to the lab (one per topology node) and cannot be applied`);
    if (object.kind === 'Pod') {
      // The pod's network namespace is named after it, with "." separating the parts.
      if (!isDns1123Label(object.metadata.name)) problems.push(`${describeOrigin(object)}: metadata.name: "${object.metadata.name}" must be a DNS-1123 label in the lab (lower-case letters, digits and "-", no ".")`);
      if (object.spec.hostNetwork) problems.push(`${describeOrigin(object)}: spec.hostNetwork: hostNetwork pods are not supported by the lab (every lab pod gets its own network namespace)`);
      if (object.spec.nodeName !== '' && !nodes.includes(object.spec.nodeName)) problems.push(`${describeOrigin(object)}: spec.nodeName: "${object.spec.nodeName}" is not a node of this lab (nodes: ${nodes.join(', ')})`);
    }
    const doc = structuredClone(raw.get((object.origin as { document: number }).document)!);
    if (object.metadata.namespace !== '') ((doc.metadata ??= {}) as Record<string, unknown>).namespace = object.metadata.namespace;
    return { object, raw: doc, existing: undefined, action: 'created' as const };
  });
  if (problems.length > 0) throw invalid(source.file, problems);
  // Namespaces first, as kubectl orders them: the rest may live in them.
  planned.sort((a, b) => Number(b.object.kind === 'Namespace') - Number(a.object.kind === 'Namespace'));
  return { objects: planned, warnings: [] };
}

/**
 * Applies the file through the API (the caller holds the command lock). New Pods are
 * created unbound unless they name a node, bound by the lab's scheduler, then started
 * by their node's kubelet; a Pod that fails to start is deleted again.
 */
export async function apiApplyLocked(state: LabState & { apiServer: ApiServerState }, source: ManifestSource, progress: (m: string) => void): Promise<{ lines: string[]; warnings: string[] }> {
  const plan = planApiApply(source, state.nodes.map((n) => n.name));
  const client = adminClient(state.apiServer);
  const lines: string[] = [];
  const warnings: string[] = [];
  const pool = parsePool(state.addressing.loadBalancerPool)!;
  // Pods and Namespaces go one at a time, in file order (a Pod is waited for until it
  // runs; the rest may live in a Namespace); the objects between them APPLY_CONCURRENCY
  // at a time. One at a time, a file of 10,000 objects waited for 20,000 round trips.
  const applyOne = async (p: ApplyPlan['objects'][number]): Promise<{ line: string; warning?: string }> => {
    const before = await getObject(client, p.raw);
    if (p.object.kind === 'Pod' && before === undefined) {
      const { status: _status, ...object } = p.raw;
      // The lab's default grace period (the topology's) where the Pod names none.
      const spec = (object.spec ??= {}) as RawObject;
      spec.terminationGracePeriodSeconds ??= state.terminationGracePeriodSeconds;
      await client.create(object);
      await waitForPodStart(state, client, p.object as PodObject, progress);
      return { line: `${resourceName(p.object)} created` };
    }
    if (p.object.kind === 'Pod') delete p.raw.status;
    const after = await client.apply(p.raw, FIELD_MANAGER);
    const line = `${resourceName(p.object)} ${before === undefined ? 'created' : (before.metadata as RawObject).resourceVersion === (after.metadata as RawObject).resourceVersion ? 'unchanged' : 'configured'}`;
    const warning = p.object.kind === 'Service' ? await waitForAddress(state, client, after, pool) : undefined;
    return { line, ...(warning === undefined ? {} : { warning: `${describeOrigin(p.object)}: ${warning}` }) };
  };
  for (const run of applyRuns(plan.objects)) {
    for (const r of await inOrder(run, APPLY_CONCURRENCY, applyOne)) {
      lines.push(r.line);
      if (r.warning !== undefined) warnings.push(r.warning);
    }
  }
  const revision = await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => bumpRevision(state.stateDir));
  await waitForDaemons(state, revision, DAEMON_TIMEOUT_MS + 10 * plan.objects.length);
  return { lines, warnings };
}

/**
 * A new Pod: waits for the scheduler's binding and the node's kubelet (the node daemon)
 * to start it and write its status. One that fails to start is deleted again and its
 * node's reason reported.
 */
async function waitForPodStart(state: LabState & { apiServer: ApiServerState }, client: LabApiClient, object: PodObject, progress: (m: string) => void): Promise<void> {
  const path = `/api/v1/namespaces/${encodeURIComponent(object.metadata.namespace)}/pods/${encodeURIComponent(object.metadata.name)}`;
  const name = `${object.metadata.namespace}/${object.metadata.name}`;
  let deadline = Date.now() + BIND_TIMEOUT_MS;
  let nodeName = '';
  for (;;) {
    const stored = await client.must('GET', path);
    const status = (stored.status ?? {}) as { podIP?: unknown; reason?: unknown; message?: unknown; phase?: unknown };
    const boundTo = String((stored.spec as RawObject | undefined)?.nodeName ?? '');
    if (boundTo !== '' && nodeName === '') {
      nodeName = boundTo;
      if (!state.nodes.some((n) => n.name === nodeName)) throw new LabError('NOT_SCHEDULED', `pod ${name} is bound to ${nodeName}, which is not a node of lab ${state.name}`);
      progress(`pod ${name}: starting on ${nodeName}`);
      deadline = Date.now() + START_TIMEOUT_MS;
    }
    if (status.phase === 'Running') return;
    if (status.reason === START_FAILED) {
      await client.request('DELETE', `${path}?gracePeriodSeconds=0`);
      throw new LabError('POD_START_FAILED', String(status.message));
    }
    if (Date.now() > deadline) {
      if (nodeName === '') throw new LabError('NOT_SCHEDULED', `pod ${name} was not bound to a node within ${BIND_TIMEOUT_MS / 1000} s (is a node schedulable?)`);
      throw new LabError('POD_START_FAILED', `pod ${name} was not started on ${nodeName} within ${START_TIMEOUT_MS / 1000} s (see ${state.nodes.find((n) => n.name === nodeName)!.daemon.log})`);
    }
    await sleep(50);
  }
}

/**
 * A LoadBalancer Service: waits for the lab's load-balancer controller (in the first
 * node's daemon) to give it an address; a warning when the pool is exhausted.
 */
async function waitForAddress(state: LabState & { apiServer: ApiServerState }, client: LabApiClient, raw: RawObject, pool: NonNullable<ReturnType<typeof parsePool>>): Promise<string | undefined> {
  const spec = (raw.spec ?? {}) as { type?: string };
  if (spec.type !== 'LoadBalancer') return undefined;
  const deadline = Date.now() + ADDRESS_TIMEOUT_MS;
  for (;;) {
    const current = await client.must('GET', objectPath(raw, true));
    const status = (current.status ?? {}) as { loadBalancer?: { ingress?: unknown[] } };
    if ((status.loadBalancer?.ingress?.length ?? 0) > 0) return undefined;
    const meta = raw.metadata as { namespace: string; name: string };
    const services = (await listApiObjects(state.apiServer)).objects.filter((o): o is ServiceObject => o.kind === 'Service');
    if (assignLoadBalancerIP(pool, undefined, undefined, takenAddresses(services, `${meta.namespace}/${meta.name}`)) === undefined) {
      return `no free address in the load balancer pool ${state.addressing.loadBalancerPool}; the Service stays pending`;
    }
    if (Date.now() > deadline) return `no address from the load balancer pool within ${ADDRESS_TIMEOUT_MS / 1000} s (see ${state.nodes[0]!.daemon.log})`;
    await sleep(50);
  }
}

/** Requests of `lab apply` in flight at once between Pods and Namespaces (the API server is one Node process). */
const APPLY_CONCURRENCY = 8;

/** The plan cut into runs applied one after another: a Pod or Namespace alone, the objects between them together. */
export function applyRuns<T extends { object: K8sObject }>(objects: readonly T[]): T[][] {
  const runs: T[][] = [];
  let open: T[] | undefined;
  for (const p of objects) {
    if (p.object.kind === 'Pod' || p.object.kind === 'Namespace') {
      runs.push([p]);
      open = undefined;
    } else if (open === undefined) runs.push(open = [p]);
    else open.push(p);
  }
  return runs;
}

/**
 * `fn` over `items`, at most `limit` at once; the results in the items' order. The first
 * failure stops new starts and is thrown once the started ones have ended (none is left
 * running behind the caller's back).
 */
export async function inOrder<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
  return out;
}

/**
 * Deletes the file's objects through the API. Pods go gracefully: the API server marks
 * them terminating (their endpoints turn so), the lab stops them after the grace period
 * and confirms as the kubelet does (a delete with grace 0). Namespaces go last.
 */
export async function apiDeleteLocked(state: LabState & { apiServer: ApiServerState }, source: ManifestSource, progress: (m: string) => void): Promise<{ lines: string[]; warnings: string[] }> {
  const { objects } = readSource(source);
  const client = adminClient(state.apiServer);
  const problems: string[] = [];
  const found: { object: K8sObject; raw: RawObject }[] = [];
  const checked = await inOrder(objects, APPLY_CONCURRENCY, async (object) => {
    const raw = { apiVersion: KIND_VERSION[object.kind] ?? 'v1', kind: object.kind, metadata: { name: object.metadata.name, ...(object.metadata.namespace === '' ? {} : { namespace: object.metadata.namespace }) } };
    return { object, raw, exists: object.kind !== 'Node' && await getObject(client, raw) !== undefined };
  });
  for (const { object, raw, exists } of checked) {
    if (object.kind === 'Node') problems.push(`${describeOrigin(object)}: kind: Nodes belong to the lab and cannot be deleted`);
    else if (!exists) problems.push(`${describeOrigin(object)}: metadata.name: not found in lab ${state.name}`);
    else found.push({ object, raw });
  }
  if (problems.length > 0) throw invalid(source.file, problems);
  const pods = found.filter((f) => f.object.kind === 'Pod');
  const namespaces = found.filter((f) => f.object.kind === 'Namespace');
  await inOrder(found.filter((f) => f.object.kind !== 'Pod' && f.object.kind !== 'Namespace'), APPLY_CONCURRENCY, (f) => client.delete(f.raw));
  let grace = 0;
  for (const f of pods) {
    const res = await client.must('DELETE', objectPath(f.raw, true));
    const seconds = Number((res.metadata as RawObject | undefined)?.deletionGracePeriodSeconds ?? 0);
    grace = Math.max(grace, Number.isFinite(seconds) ? seconds : 0);
  }
  if (pods.length > 0) {
    progress(`${pods.map((f) => `pod ${f.object.metadata.namespace}/${f.object.metadata.name}`).join(', ')}: terminating for ${grace} s`);
    await waitForDaemons(state, await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => bumpRevision(state.stateDir)), DAEMON_TIMEOUT_MS);
    await sleep(grace * 1000);
    for (const f of pods) {
      const pod = state.pods.find((p) => p.namespace === f.object.metadata.namespace && p.name === f.object.metadata.name);
      // A kubelet's pod: its node daemon stops it and confirms the deletion.
      if (pod?.startedBy === 'kubelet') await waitForPodStop(client, f.raw, pod);
      else {
        if (pod !== undefined) await removePod(state, pod, progress);
        await client.delete(f.raw, 0);
      }
    }
    state.pods = state.pods.filter((p) => !pods.some((f) => f.object.metadata.namespace === p.namespace && f.object.metadata.name === p.name));
    saveState(state);
  }
  for (const f of namespaces) await client.delete(f.raw);
  const revision = await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => bumpRevision(state.stateDir));
  await waitForDaemons(state, revision, DAEMON_TIMEOUT_MS + 10 * objects.length);
  return { lines: found.map((f) => `${f.object.kind.toLowerCase()} "${f.object.metadata.name}" deleted`), warnings: [] };
}

/** Waits (bounded) until the Pod is gone from the API and its namespace from the host. */
async function waitForPodStop(client: LabApiClient, raw: RawObject, pod: PodState): Promise<void> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  for (;;) {
    const inApi = await getObject(client, raw) !== undefined;
    const running = existsSync(`/run/netns/${pod.netns}`);
    if (!inApi && !running) return;
    if (Date.now() > deadline) throw new LabError('POD_STOP_FAILED', `pod ${pod.namespace}/${pod.name} was not stopped within ${STOP_TIMEOUT_MS / 1000} s of its grace period (${inApi ? 'still in the API' : ''}${inApi && running ? ', ' : ''}${running ? `namespace ${pod.netns} still there` : ''}); see node ${pod.node}'s daemon log`);
    await sleep(50);
  }
}

const STOP_TIMEOUT_MS = 20_000;

const KIND_VERSION: Record<string, string> = { EndpointSlice: 'discovery.k8s.io/v1', Ingress: 'networking.k8s.io/v1', IngressClass: 'networking.k8s.io/v1' };

/** For `lab status`: the API's objects, or an empty list with the reason when it does not answer. */
export async function apiObjectsOrProblem(api: ApiServerState): Promise<{ objects: K8sObject[]; problems: string[] }> {
  try {
    return await listApiObjects(api);
  } catch (err) {
    return { objects: [], problems: [`the lab API server does not answer: ${(err as Error).message}`] };
  }
}

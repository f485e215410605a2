// `tapir lab apply -f FILE` and `tapir lab delete -f FILE`: objects added to, changed in
// and removed from a running lab the way kubectl does it against an API server. The
// plan (src/lab/cluster/apply-plan.ts) is checked completely first; new pods are then started
// (and removed again if one fails) before any manifest is written, so a failed command
// leaves the lab as it was. Pods being deleted stay terminating (deletionTimestamp set,
// still serving) for their grace period, like kubectl's default graceful deletion.
import type { K8sObject, PodObject, ServiceObject } from '../../k8s/objects.ts';
import { planApply, planDelete, resourceName, type PlannedObject } from './apply-plan.ts';
import { waitForDaemons } from '../node/daemons.ts';
import { podStatus } from './lab-objects.ts';
import { bumpRevision, COMMAND_LOCK, loadObjects, MANIFEST_LOCK, readObject, removeObject, withLock, writeObject, type RawObject } from './manifests.ts';
import { createPod, planPod, removePod, scheduleNode } from '../network/pods.ts';
import { sleep } from '../network/shell.ts';
import { saveState, usesApi, type LabState, type PodState } from '../state.ts';
import { apiApplyLocked, apiDeleteLocked } from './api-apply.ts';
import type { ManifestSource } from './topology-manifests.ts';
import { LabError } from '../validate.ts';

const DAEMON_TIMEOUT_MS = 20_000;
/** Node daemons re-read every object they are shown; large applies get proportionally longer. */
function daemonTimeout(objects: number): number {
  return DAEMON_TIMEOUT_MS + 10 * objects;
}
const COMMAND_LOCK_TIMEOUT_MS = 120_000;

export interface CommandResult {
  /** One line per object, kubectl style: "service/web created". */
  lines: string[];
  warnings: string[];
}

function requireReady(state: LabState): void {
  if (state.phase !== 'ready') throw new LabError('NOT_READY', `lab ${state.name} is not ready (phase ${state.phase}); wait for \`lab up\` to finish`);
}

export async function labApply(state: LabState, source: ManifestSource, progress: (m: string) => void): Promise<CommandResult> {
  requireReady(state);
  return withLock(state.stateDir, COMMAND_LOCK, COMMAND_LOCK_TIMEOUT_MS, () => (usesApi(state) ? apiApplyLocked(state, source, progress) : applyLocked(state, source, progress)));
}

/** The apply itself; `lab up` calls it directly for the topology's services. */
export async function applyLocked(state: LabState, source: ManifestSource, progress: (m: string) => void): Promise<CommandResult> {
  const plan = planApply(state, source);
  const newPods = plan.objects.filter((p) => p.object.kind === 'Pod' && p.existing === undefined);
  const created: PodState[] = [];
  // The Services a new pod's environment names: those stored before this apply (the
  // file's own are written after its pods start, as a kubelet may well see them late).
  const services = newPods.length === 0 ? [] : loadObjects(state.manifests).objects.filter((o): o is ServiceObject => o.kind === 'Service');
  try {
    for (const p of newPods) {
      const object = p.object as PodObject;
      const node = object.spec.nodeName === '' ? scheduleNode(state, created) : state.nodes.find((n) => n.name === object.spec.nodeName)!;
      const pod = planPod(state, node, object, [...state.pods, ...created]);
      created.push(pod);
      progress(`pod ${pod.namespace}/${pod.name}: starting on ${pod.node}${pod.ip === null ? '' : ` (${pod.ip})`}`);
      await createPod(state, pod, services);
      p.raw.spec = { ...(p.raw.spec as object), nodeName: pod.node };
      const hostIP = node.underlayIP;
      p.raw.status = podStatus(pod, false, hostIP);
    }
  } catch (err) {
    for (const pod of created) await removePod(state, pod, progress);
    throw err;
  }
  const revision = await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => {
    for (const p of plan.objects) {
      if (p.action === 'unchanged') continue;
      writeObject(state.manifests, storedForm(state, p));
    }
    return bumpRevision(state.stateDir);
  });
  state.pods.push(...created);
  for (const p of plan.objects) {
    if (p.object.kind !== 'Pod' || p.existing === undefined) continue;
    const pod = state.pods.find((q) => q.namespace === p.object.metadata.namespace && q.name === p.object.metadata.name);
    if (pod !== undefined) pod.labels = { ...p.object.metadata.labels };
  }
  saveState(state);
  await waitForDaemons(state, revision, daemonTimeout(plan.objects.length));
  return { lines: plan.objects.map((p) => `${resourceName(p.object)} ${p.action}`), warnings: plan.warnings };
}

/** What is written: a re-applied Pod keeps its node and the status the prober wrote. */
function storedForm(state: LabState, p: PlannedObject): RawObject {
  if (p.object.kind !== 'Pod' || p.existing === undefined) return p.raw;
  const before = readObject(state.manifests, 'Pod', p.existing.metadata.namespace, p.existing.metadata.name) ?? {};
  return { ...p.raw, spec: { ...(p.raw.spec as object), nodeName: (p.existing as PodObject).spec.nodeName }, status: before.status };
}

export async function labDelete(state: LabState, source: ManifestSource, progress: (m: string) => void): Promise<CommandResult> {
  requireReady(state);
  if (usesApi(state)) return withLock(state.stateDir, COMMAND_LOCK, COMMAND_LOCK_TIMEOUT_MS, () => apiDeleteLocked(state, source, progress));
  return withLock(state.stateDir, COMMAND_LOCK, COMMAND_LOCK_TIMEOUT_MS, async () => {
    const { objects } = planDelete(state, source);
    const pods = objects.filter((o): o is PodObject => o.kind === 'Pod');
    // Namespaces go last, once what was in them is gone.
    const namespaces = objects.filter((o) => o.kind === 'Namespace');
    const others = objects.filter((o) => o.kind !== 'Pod' && o.kind !== 'Namespace');
    const now = new Date().toISOString();
    let grace = 0;
    // Step 1: other objects go at once; pods turn terminating (still serving, no longer ready).
    let revision = await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => {
      for (const o of others) removeObject(state.manifests, o.kind, o.metadata.namespace, o.metadata.name);
      for (const pod of pods) {
        const raw = readObject(state.manifests, 'Pod', pod.metadata.namespace, pod.metadata.name);
        if (raw === undefined) continue;
        const seconds = gracePeriod(state, raw);
        grace = Math.max(grace, seconds);
        raw.metadata = { ...(raw.metadata as object), deletionTimestamp: now, deletionGracePeriodSeconds: seconds };
        writeObject(state.manifests, raw);
      }
      return bumpRevision(state.stateDir);
    });
    if (pods.length > 0) {
      progress(`${pods.map((p) => `pod ${p.metadata.namespace}/${p.metadata.name}`).join(', ')}: terminating for ${grace} s`);
      await waitForDaemons(state, revision, DAEMON_TIMEOUT_MS);
      await sleep(grace * 1000);
      // Step 2: the pods stop and their manifests go.
      for (const object of pods) {
        const pod = state.pods.find((p) => p.namespace === object.metadata.namespace && p.name === object.metadata.name);
        if (pod !== undefined) await removePod(state, pod, progress);
      }
    }
    revision = await withLock(state.stateDir, MANIFEST_LOCK, 10_000, () => {
      for (const o of [...pods, ...namespaces]) removeObject(state.manifests, o.kind, o.metadata.namespace, o.metadata.name);
      return bumpRevision(state.stateDir);
    });
    if (pods.length > 0) {
      state.pods = state.pods.filter((p) => !pods.some((o) => o.metadata.namespace === p.namespace && o.metadata.name === p.name));
      saveState(state);
    }
    await waitForDaemons(state, revision, daemonTimeout(objects.length));
    return { lines: objects.map((o: K8sObject) => `${o.kind.toLowerCase()} "${o.metadata.name}" deleted`), warnings: [] };
  });
}

/** spec.terminationGracePeriodSeconds of the Pod, else the lab's (topology) default. */
function gracePeriod(state: LabState, raw: RawObject): number {
  const value = (raw.spec as { terminationGracePeriodSeconds?: unknown } | undefined)?.terminationGracePeriodSeconds;
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 300 ? value : state.terminationGracePeriodSeconds;
}

// The kubelet's part of a lab node daemon in cluster mode: Pods bound to this node
// that do not run yet, whoever created them (kubectl, `tapir lab apply`), are started
// the way the lab starts every pod (a network namespace, CNI ADD through tapir-cni or
// the kernel dataplane's veth, the workload process), and their status (phase, podIP,
// hostIP, startTime, containerStatuses) is written to the API; the readiness prober then
// writes Ready. A Pod being deleted is stopped once its grace period has run (workload
// stopped, CNI DEL, namespace removed) and its deletion confirmed with grace 0, as the
// kubelet does; a Pod gone from the API is stopped at once.
//
// The daemon runs in the node's network namespace but the host's mount namespace
// (nsenter --net), so the namespaces it adds are the host's and the agents'. What it
// started is recorded in its own file (state.ts kubeletPodsFile), never in state.json:
// `lab` commands rewrite that, and loadState merges both.
import type { PodObject, ServiceObject } from '../../k8s/objects.ts';
import { validateDocument } from '../../k8s/validate.ts';
import type { LabApiClient } from '../apiserver/client.ts';
import { containerStatuses, podStatus } from '../cluster/lab-objects.ts';
import { labHostIP } from '../cluster/pod-start.ts';
import { createPod, planPod, removePod } from '../network/pods.ts';
import { kubeletPodsFile, loadState, podPrimaryIP, readKubeletPods, writeKubeletPods, type PodState } from '../state.ts';

/** A pod that failed to start is tried again after this long (the kubelet's back-off, flat). */
const RETRY_MS = 10_000;
/** The reason written to the status of a Pod that failed to start (`lab apply` reads it). */
export const START_FAILED = 'TapirLabStartFailed';

export class Kubelet {
  readonly #lab: string;
  readonly #node: string;
  readonly #api: LabApiClient;
  readonly #log: (message: string) => void;
  readonly #file: string;
  #pods: PodState[];
  /** "ns/name" of a pod that failed to start: when it may be tried again. */
  readonly #failed = new Map<string, number>();
  /** "ns/name" of a started pod whose status write failed (retried each pass). */
  readonly #unwritten = new Set<string>();

  constructor(options: { lab: string; stateDir: string; node: string; api: LabApiClient; log: (message: string) => void }) {
    this.#lab = options.lab;
    this.#node = options.node;
    this.#api = options.api;
    this.#log = options.log;
    this.#file = kubeletPodsFile(options.stateDir, options.node);
    // A restarted daemon takes its pods back.
    this.#pods = readKubeletPods(this.#file);
  }

  /** The pods this kubelet runs ("ns/name"). */
  get running(): string[] {
    return this.#pods.map(key);
  }

  /** One pass over this node's Pods (as the API shows them, after a full sync). */
  async sync(objects: readonly PodObject[], now = Date.now()): Promise<string[]> {
    const problems: string[] = [];
    const state = loadState(this.#lab);
    if (state === undefined) return problems;
    const byKey = new Map(objects.filter((o) => o.spec.nodeName === this.#node).map((o) => [`${o.metadata.namespace}/${o.metadata.name}`, o]));

    // Stop first: a deleted Pod's name may be taken by a new one.
    for (const pod of [...this.#pods]) {
      const object = byKey.get(key(pod));
      const gone = object === undefined;
      const due = !gone && object.metadata.deletionTimestamp !== '' && Date.parse(object.metadata.deletionTimestamp) <= now;
      if (!gone && !due) continue;
      this.#log(`kubelet: stopping pod ${key(pod)}${gone ? ' (gone from the API)' : ' (grace period over)'}`);
      await removePod(state, pod, (m) => this.#log(`kubelet: ${m}`));
      this.#pods = this.#pods.filter((p) => p !== pod);
      this.#save();
      if (!gone) {
        const res = await this.#api.request('DELETE', `${podPath(pod.namespace, pod.name)}?gracePeriodSeconds=0`);
        if (res.status !== 200 && res.status !== 404) problems.push(`confirming the deletion of pod ${key(pod)}: ${res.status} ${String(res.body.message ?? '')}`);
      }
    }

    const node = state.nodes.find((n) => n.name === this.#node);
    if (node === undefined) return problems;
    for (const [k, object] of byKey) {
      if (object.metadata.deletionTimestamp !== '' || state.pods.some((p) => key(p) === k) || this.#pods.some((p) => key(p) === k)) continue;
      if ((this.#failed.get(k) ?? 0) > now) continue;
      // Everything on this node, from the lab's record and this kubelet's: addresses and devices taken.
      const others = [...state.pods.filter((p) => !this.#pods.some((q) => key(q) === key(p))), ...this.#pods];
      const pod: PodState = { ...planPod(state, node, object, others), startedBy: 'kubelet' };
      this.#log(`kubelet: starting pod ${k}`);
      try {
        await createPod(state, pod, await this.#services());
      } catch (err) {
        const message = `pod ${k} failed to start: ${(err as Error).message}`;
        this.#log(`kubelet: ${message}`);
        await removePod(state, pod, (m) => this.#log(`kubelet: ${m}`)).catch((e: Error) => this.#log(`kubelet: cleaning up ${k}: ${e.message}`));
        this.#failed.set(k, now + RETRY_MS);
        problems.push(message);
        await this.#api.request('PATCH', `${podPath(object.metadata.namespace, object.metadata.name)}/status`,
          { status: { phase: 'Pending', reason: START_FAILED, message } }, 'application/merge-patch+json');
        continue;
      }
      this.#failed.delete(k);
      this.#pods.push(pod);
      this.#save();
      this.#log(`kubelet: pod ${k} runs${podPrimaryIP(pod) === null ? '' : ` at ${podPrimaryIP(pod)}`}`);
      for (const warning of pod.dns?.warnings ?? []) await this.#warn(object, 'DNSConfigForming', warning, problems);
      await this.#writeStatus(pod, object, labHostIP(state, node), problems);
    }
    // A status write that failed is tried again at the next pass.
    for (const pod of this.#pods) {
      const object = byKey.get(key(pod));
      if (object !== undefined && object.metadata.deletionTimestamp === '' && this.#unwritten.has(key(pod))) await this.#writeStatus(pod, object, labHostIP(state, node), problems);
    }
    return problems;
  }

  /**
   * Every Service as the API has it now, for a starting pod's environment. The kubelet
   * reads its informer's cache and refuses to build the variables before that has synced
   * once; a fresh list is that, exactly at the start. A failed list fails the start
   * (retried later), as the kubelet's "services have not yet been read" does.
   */
  async #services(): Promise<ServiceObject[]> {
    const res = await this.#api.request('GET', '/api/v1/services');
    if (res.status !== 200) throw new Error(`listing services for the pod's environment: ${res.status} ${String(res.body.message ?? '')}`);
    const problems: string[] = [];
    const items = Array.isArray(res.body.items) ? res.body.items : [];
    return items.map((item) => validateDocument({ ...(item as object), apiVersion: 'v1', kind: 'Service' }, { source: 'api', server: 'kubelet' }, problems))
      .filter((o): o is ServiceObject => o?.kind === 'Service');
  }

  /** A Warning event about the Pod, as the kubelet's recorder writes one (`kubectl describe pod` lists it). */
  async #warn(object: PodObject, reason: string, message: string, problems: string[]): Promise<void> {
    this.#log(`kubelet: pod ${object.metadata.namespace}/${object.metadata.name}: ${reason}: ${message}`);
    const now = new Date().toISOString();
    const event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name: `${object.metadata.name}.${Date.now().toString(16)}${Math.floor(Math.random() * 0x10000).toString(16)}`, namespace: object.metadata.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace: object.metadata.namespace, name: object.metadata.name },
      reason,
      message,
      type: 'Warning',
      source: { component: 'kubelet', host: this.#node },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const res = await this.#api.request('POST', `/api/v1/namespaces/${encodeURIComponent(object.metadata.namespace)}/events`, event);
    if (res.status !== 201 && res.status !== 200) problems.push(`recording a ${reason} event of pod ${object.metadata.namespace}/${object.metadata.name}: ${res.status} ${String(res.body.message ?? '')}`);
  }

  async #writeStatus(pod: PodState, object: PodObject, hostIP: string, problems: string[]): Promise<void> {
    const at = new Date().toISOString();
    // Marked first: a request that throws is retried too.
    this.#unwritten.add(key(pod));
    const res = await this.#api.request('PATCH', `${podPath(pod.namespace, pod.name)}/status`,
      { status: { ...podStatus(pod, false, hostIP), reason: null, message: null, startTime: at, containerStatuses: containerStatuses(object.spec.containers.map((c) => c.name), false, at) } },
      'application/merge-patch+json');
    if (res.status !== 200 && res.status !== 404) {
      problems.push(`writing the status of pod ${key(pod)}: ${res.status} ${String(res.body.message ?? '')}`);
    } else {
      this.#unwritten.delete(key(pod));
    }
  }

  #save(): void {
    writeKubeletPods(this.#file, this.#pods);
  }
}

function key(pod: { namespace: string; name: string }): string {
  return `${pod.namespace}/${pod.name}`;
}

function podPath(namespace: string, name: string): string {
  return `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(name)}`;
}

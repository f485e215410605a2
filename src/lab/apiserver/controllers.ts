// The parts of kube-controller-manager and kube-scheduler the lab needs, inside the lab
// API server: the EndpointSlice controller and a scheduler (below). It watches Services, Pods and Nodes in the store and writes
// each selector Service's EndpointSlices through the same object handlers an API
// client's writes go through (so watches see ordinary changes), computed by Tapir's own
// controller (src/control/endpoints-controller.ts, which follows k8s.io/endpointslice).
// Slices it manages carry `endpointslice.kubernetes.io/managed-by:
// endpointslice-controller.k8s.io`; slices of Services without a selector are the
// user's and left alone. Changes are coalesced: a burst of pod updates is one sync of
// the Services they touch.
import { isMapping, type Raw } from '../../config/fields.ts';
import { endpointSlicesForService } from '../../control/endpoints-controller.ts';
import type { EndpointSliceObject, K8sObject, NodeObject, PodObject, ServiceObject } from '../../k8s/objects.ts';
import { validateDocument } from '../../k8s/validate.ts';
import type { ObjectHandlers, ResourceRequest } from './handlers.ts';
import { resourceAt } from './resources.ts';
import type { Change, Obj, Watcher } from './store.ts';

export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
export const CONTROLLER_NAME = 'endpointslice-controller.k8s.io';
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const ORIGIN = { source: 'api', server: 'tapir-lab-apiserver' } as const;
const SLICES = resourceAt('discovery.k8s.io', 'v1', 'endpointslices')!;
const SLICE_KEY = 'endpointslices.discovery.k8s.io';

export class EndpointSliceController {
  private readonly handlers: ObjectHandlers;
  private readonly watchers: Watcher[];
  /** "namespace/name" of Services to sync; '*' for all (a Node changed). */
  private readonly dirty = new Set<string>();
  private scheduled = false;
  private stopped = false;
  /**
   * The names of the slices this controller manages, by "namespace/service": a Service's
   * sync looks its own up here instead of listing every slice (a list sorts them all,
   * which at 5,000 Services made each Service's sync cost milliseconds).
   */
  private readonly managed = new Map<string, Set<string>>();

  constructor(handlers: ObjectHandlers) {
    this.handlers = handlers;
    const watcher = (res: string): Watcher => ({ res, deliver: (c) => this.changed(c), close: () => {}, stall: () => {} });
    this.watchers = ['services', 'pods', 'nodes'].map(watcher);
    this.watchers.push({ res: SLICE_KEY, deliver: (c) => this.indexSlice(c), close: () => {}, stall: () => {} });
    for (const slice of handlers.store.list(SLICE_KEY)) this.indexSlice({ type: 'ADDED', res: SLICE_KEY, rv: 0, object: slice, previous: undefined });
    for (const w of this.watchers) handlers.store.addWatcher(w);
    // Whatever the journal brought back, or was written while no controller ran.
    this.dirty.add('*');
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watchers) this.handlers.store.removeWatcher(w);
  }

  private changed(c: Change): void {
    const ns = String(c.object.metadata.namespace ?? '');
    if (c.res === 'services') this.dirty.add(`${ns}/${String(c.object.metadata.name)}`);
    else if (c.res === 'pods') {
      // The Services of the pod's namespace that select it before or after the change.
      for (const svc of this.handlers.store.list('services', ns)) {
        const selector = isMapping(svc.spec) && isMapping(svc.spec.selector) ? svc.spec.selector : undefined;
        if (selector === undefined) continue;
        if ([c.object, c.previous].some((p) => p !== undefined && selects(selector, p))) this.dirty.add(`${ns}/${String(svc.metadata.name)}`);
      }
    } else this.dirty.add('*');
    this.schedule();
  }

  /** Keeps `managed` in step with the store's slices. */
  private indexSlice(c: Change): void {
    const name = String(c.object.metadata.name);
    // Whatever the slice was: out of its Service's set; what it is now (unless deleted): in.
    for (const was of [c.previous, c.object]) {
      const key = was === undefined ? undefined : owner(was);
      if (key !== undefined) this.managed.get(key)?.delete(name);
    }
    const now = c.type === 'DELETED' ? undefined : owner(c.object);
    if (now !== undefined) {
      let names = this.managed.get(now);
      if (names === undefined) this.managed.set(now, names = new Set());
      names.add(name);
    }
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.stopped) this.sync();
    });
  }

  private sync(): void {
    const store = this.handlers.store;
    const keys = this.dirty.has('*') ? store.list('services').map((s) => `${String(s.metadata.namespace)}/${String(s.metadata.name)}`) : [...this.dirty];
    this.dirty.clear();
    const nodes = new Map<string, NodeObject>();
    for (const raw of store.list('nodes')) {
      const node = tapirObject(raw, 'v1', 'Node');
      if (node?.kind === 'Node') nodes.set(node.metadata.name, node);
    }
    const podsByNamespace = new Map<string, PodObject[]>();
    for (const key of keys) {
      const [ns, name] = key.split('/') as [string, string];
      let pods = podsByNamespace.get(ns);
      if (pods === undefined) {
        pods = store.list('pods', ns).map((p) => tapirObject(p, 'v1', 'Pod')).filter((p): p is PodObject => p?.kind === 'Pod');
        podsByNamespace.set(ns, pods);
      }
      this.syncService(ns, name, pods, nodes);
    }
  }

  private syncService(ns: string, name: string, pods: PodObject[], nodes: ReadonlyMap<string, NodeObject>): void {
    const store = this.handlers.store;
    const raw = store.get('services', ns, name);
    const svc = raw === undefined ? undefined : tapirObject(raw, 'v1', 'Service') as ServiceObject | undefined;
    const owned = [...this.managed.get(`${ns}/${name}`) ?? []].map((n) => store.get(SLICE_KEY, ns, n)).filter((s): s is Obj => s !== undefined);
    // Gone, or no selector (any more): the controller's slices go; hand-written ones stay.
    const desired = svc === undefined || svc.spec.selector === null ? [] : endpointSlicesForService(svc, pods, nodes).map((s) => toRaw(s, raw!));
    const query = new URLSearchParams();
    const request = (sliceName: string): ResourceRequest => ({ info: SLICES, namespace: ns, name: sliceName, subresource: '', query });
    for (const slice of desired) {
      const sliceName = String(slice.metadata.name);
      const existing = store.get(SLICE_KEY, ns, sliceName);
      try {
        if (existing === undefined) this.handlers.create(request(''), slice);
        else this.handlers.update(request(sliceName), { ...slice, metadata: { ...slice.metadata, resourceVersion: existing.metadata.resourceVersion } });
      } catch (err) {
        process.stderr.write(`tapir lab apiserver: endpointslice controller: ${ns}/${sliceName}: ${(err as Error).message}\n`);
      }
    }
    const wanted = new Set(desired.map((s) => String(s.metadata.name)));
    for (const slice of owned) {
      if (!wanted.has(String(slice.metadata.name))) this.handlers.delete(request(String(slice.metadata.name)), undefined);
    }
  }
}

/** Equality-based selector over a stored object's labels. */
function selects(selector: Raw, obj: Obj): boolean {
  const labels = isMapping(obj.metadata.labels) ? obj.metadata.labels : {};
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** Tapir's validated view of a stored object; undefined for one Tapir cannot read (left out). */
function tapirObject(raw: Obj, apiVersion: string, kind: string): K8sObject | undefined {
  const problems: string[] = [];
  return validateDocument({ ...raw, apiVersion, kind }, ORIGIN, problems);
}

/** The API form of a computed slice, owned by its Service (as kube-controller-manager writes it). */
function toRaw(slice: EndpointSliceObject, service: Obj): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: slice.metadata.name,
      namespace: slice.metadata.namespace,
      labels: { ...slice.metadata.labels, [MANAGED_BY_LABEL]: CONTROLLER_NAME },
      ownerReferences: [{ apiVersion: 'v1', kind: 'Service', name: String(service.metadata.name), uid: String(service.metadata.uid), controller: true, blockOwnerDeletion: true }],
    },
    addressType: slice.addressType,
    endpoints: slice.endpoints.map((e) => {
      const out: Raw = { addresses: [e.address], conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating } };
      if (e.hostname !== '') out.hostname = e.hostname;
      if (e.nodeName !== '') out.nodeName = e.nodeName;
      if (e.zone !== '') out.zone = e.zone;
      if (e.forZones.length > 0 || e.forNodes.length > 0) {
        const hints: Raw = {};
        if (e.forZones.length > 0) hints.forZones = e.forZones.map((z) => ({ name: z }));
        if (e.forNodes.length > 0) hints.forNodes = e.forNodes.map((n) => ({ name: n }));
        out.hints = hints;
      }
      return out;
    }),
    ports: slice.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
  };
}

/**
 * The scheduler's part the lab needs: a Pod without spec.nodeName is bound (pods/binding)
 * to the schedulable Node whose taints it tolerates that runs the fewest pods (ties by
 * name). No resources, affinities or topology spread: the lab's pods are small and few.
 */
export class Scheduler {
  private readonly handlers: ObjectHandlers;
  private readonly watchers: Watcher[];
  private scheduled = false;
  private stopped = false;

  constructor(handlers: ObjectHandlers) {
    this.handlers = handlers;
    const watcher = (res: string): Watcher => ({ res, deliver: () => this.schedule(), close: () => {}, stall: () => {} });
    this.watchers = ['pods', 'nodes'].map(watcher);
    for (const w of this.watchers) handlers.store.addWatcher(w);
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watchers) this.handlers.store.removeWatcher(w);
  }

  private schedule(): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (!this.stopped) this.bindPending();
    });
  }

  private bindPending(): void {
    const store = this.handlers.store;
    const pods = store.list('pods');
    const load = new Map<string, number>();
    for (const p of pods) {
      const node = isMapping(p.spec) ? p.spec.nodeName : undefined;
      if (typeof node === 'string' && node !== '') load.set(node, (load.get(node) ?? 0) + 1);
    }
    const nodes = store.list('nodes').filter((n) => !(isMapping(n.spec) && n.spec.unschedulable === true));
    const podsInfo = resourceAt('', 'v1', 'pods')!;
    for (const pod of pods) {
      const spec = isMapping(pod.spec) ? pod.spec : {};
      if ((typeof spec.nodeName === 'string' && spec.nodeName !== '') || pod.metadata.deletionTimestamp !== undefined) continue;
      const tolerations = Array.isArray(spec.tolerations) ? spec.tolerations.filter(isMapping) : [];
      const fits = nodes.filter((n) => taints(n).every((t) => t.effect === 'PreferNoSchedule' || tolerations.some((tol) => tolerates(tol, t))));
      if (fits.length === 0) continue;
      fits.sort((a, b) => (load.get(String(a.metadata.name)) ?? 0) - (load.get(String(b.metadata.name)) ?? 0) || String(a.metadata.name).localeCompare(String(b.metadata.name)));
      const node = String(fits[0]!.metadata.name);
      try {
        this.handlers.create({ info: podsInfo, namespace: String(pod.metadata.namespace), name: String(pod.metadata.name), subresource: 'binding', query: new URLSearchParams() }, { apiVersion: 'v1', kind: 'Binding', metadata: { name: pod.metadata.name }, target: { apiVersion: 'v1', kind: 'Node', name: node } });
        load.set(node, (load.get(node) ?? 0) + 1);
      } catch (err) {
        process.stderr.write(`tapir lab apiserver: scheduler: ${String(pod.metadata.namespace)}/${String(pod.metadata.name)}: ${(err as Error).message}\n`);
      }
    }
  }
}

function taints(node: Obj): Raw[] {
  return isMapping(node.spec) && Array.isArray(node.spec.taints) ? node.spec.taints.filter(isMapping) : [];
}

/** core/v1 Toleration.ToleratesTaint. */
function tolerates(tol: Raw, taint: Raw): boolean {
  if (tol.effect !== undefined && tol.effect !== '' && tol.effect !== taint.effect) return false;
  if (tol.key !== undefined && tol.key !== '' && tol.key !== taint.key) return false;
  if (tol.operator === 'Exists') return true;
  return (tol.key !== undefined && tol.key !== '') && (tol.value ?? '') === (taint.value ?? '');
}

/** "namespace/service" of a slice this controller manages, or undefined for any other slice. */
function owner(slice: Obj): string | undefined {
  const labels = isMapping(slice.metadata.labels) ? slice.metadata.labels : {};
  const service = labels[SERVICE_NAME_LABEL];
  return labels[MANAGED_BY_LABEL] === CONTROLLER_NAME && typeof service === 'string' ? `${String(slice.metadata.namespace ?? '')}/${service}` : undefined;
}

// The control side's state between syncs: the objects as last seen, and the derived
// data (allocations, generated EndpointSlices, compiled ports per service). apply()
// takes the recorded changes and only marks which services they touch; sync()
// recomputes those services and returns the complete ClusterView: every Service's view
// and the snapshot for this node. Compiled ports and views of untouched services are
// reused as they are (same frozen objects), which keeps one endpoint change cheap with
// 10,000 services and lets the tables diff by identity.
import { mirrorEndpoints } from '../k8s/endpoints-mirror.ts';
import type { ObjectChange } from '../k8s/object-source.ts';
import { namespacedName, type EndpointSliceObject, type EndpointsObject, type K8sObject, type NodeObject, type PodObject, type ServiceObject } from '../k8s/objects.ts';
import type { ClusterView, ServiceView } from '../model/cluster-view.ts';
import type { ServicePortSpec, ServicePortSpec6, ServiceSnapshot } from '../model/service-snapshot.ts';
import { ipv6ToString, parseIpv4, parseIpv6 } from '../wire/address.ts';
import { flat, NO_ITEMS } from '../config/compact.ts';
import { allocateServices, allocationFromSpec, allocationsFromSpec, type AllocationResult, type AllocatorConfig } from './allocator.ts';
import { compileService, compileService6, type NodeContext } from './compile.ts';
import { endpointSlicesForService, selectorMatches } from './endpoints-controller.ts';
import { PodIndex, ServiceSelectorIndex } from './selector-index.ts';
import { sameServiceView, serviceView } from './service-view.ts';
import { SortedMap } from './sorted-map.ts';

export interface NodeOptions {
  name: string;
  /** Defaults to the Node object's topology.kubernetes.io/zone label. */
  zone?: string;
  /** Addresses node ports are served on (dotted or uint32); default: the Node object's InternalIP and ExternalIP addresses. */
  nodePortAddresses?: (string | number)[];
}

export interface SyncResult {
  /** The complete view; the previous one again when nothing changed. */
  view: ClusterView;
  /** view.snapshot. */
  snapshot: ServiceSnapshot;
  /** False when nothing in the view changed since the previous sync. */
  changed: boolean;
  /** False when the snapshot is the previous one (a change only headless or ExternalName services see, say). */
  snapshotChanged: boolean;
}

export class ServiceProxyState {
  readonly #nodeOptions: NodeOptions;
  /** Manifest mode's allocator, or null in cluster mode (the API server allocates, kube-controller-manager writes the slices). */
  readonly #allocator: AllocatorConfig | null;
  // Objects by "namespace/name" (nodes by name).
  readonly services = new Map<string, ServiceObject>();
  readonly endpoints = new Map<string, EndpointsObject>();
  readonly nodes = new Map<string, NodeObject>();
  /**
   * Hand-written EndpointSlices by owning service ("namespace/serviceName"), in name order;
   * a list is replaced, never changed, so that views may keep it. (A Map per service was
   * 480 bytes where a Service has one slice: 12 MB at 25,000 Services.)
   */
  readonly #slicesByService = new Map<string, readonly EndpointSliceObject[]>();
  readonly #pods = new PodIndex();
  readonly #servicesBySelector = new ServiceSelectorIndex();

  #allocation: AllocationResult = { allocations: new Map(), rejected: new Map() };
  readonly #generated = new Map<string, EndpointSliceObject[]>();
  /** Compiled ports per service: the IPv4 half, and the IPv6 half of dual-stack and IPv6 Services. */
  readonly #compiled = new SortedMap<{ ports: ServicePortSpec[]; ports6: ServicePortSpec6[] }>();
  readonly #views = new SortedMap<ServiceView>();
  readonly #dirty = new Set<string>();
  /** Services added, changed or removed since the last sync: cluster mode re-reads only their allocations. */
  readonly #changedServices = new Set<string>();
  #full = true;
  #nodeKey = '';
  #node: NodeContext = { name: '', zone: '', nodePortAddresses: [] };
  #generation = 0;
  #viewGeneration = 0;
  #snapshot: ServiceSnapshot | undefined;
  #view: ClusterView | undefined;

  /**
   * `allocator`: manifest mode, where this side allocates addresses and node ports and
   * derives EndpointSlices from Pods and Endpoints; 'api' for cluster mode, where the
   * API server allocated (read from each Service) and every EndpointSlice is listed.
   */
  constructor(node: NodeOptions, allocator: AllocatorConfig | 'api') {
    this.#nodeOptions = node;
    this.#allocator = allocator === 'api' ? null : allocator;
  }

  get node(): Readonly<NodeContext> { return this.#node; }
  get allocation(): Readonly<AllocationResult> { return this.#allocation; }

  /**
   * How many entries each per-object map holds (for tests and memory benchmarks):
   * once every object is gone and a sync has run, every one must be 0.
   */
  retained(): Record<string, number> {
    return {
      services: this.services.size,
      endpoints: this.endpoints.size,
      nodes: this.nodes.size,
      slicesByService: this.#slicesByService.size,
      pods: this.#pods.size,
      servicesBySelector: this.#servicesBySelector.size,
      allocations: this.#allocation.allocations.size,
      rejected: this.#allocation.rejected.size,
      generated: this.#generated.size,
      compiled: this.#compiled.size,
      views: this.#views.size,
      dirty: this.#dirty.size,
      changedServices: this.#changedServices.size,
    };
  }

  /** The next sync recomputes everything (after a failed sync, and periodically). */
  forceFull(): void {
    this.#full = true;
  }

  apply(changes: readonly ObjectChange[]): void {
    for (const { previous, current } of changes) {
      if (previous !== undefined) this.#remove(previous);
      if (current !== undefined) this.#add(current);
    }
  }

  #add(obj: K8sObject): void {
    const key = namespacedName(obj);
    const ns = obj.metadata.namespace;
    switch (obj.kind) {
      case 'Service':
        this.services.set(key, obj);
        this.#servicesBySelector.add(key, obj);
        this.#serviceChanged(key);
        break;
      case 'EndpointSlice':
      {
        const owner = flat(`${ns}/${obj.serviceName}`);
        const slices = (this.#slicesByService.get(owner) ?? NO_ITEMS).filter((s) => s.metadata.name !== obj.metadata.name);
        const at = slices.findIndex((s) => s.metadata.name > obj.metadata.name);
        slices.splice(at < 0 ? slices.length : at, 0, obj);
        this.#slicesByService.set(owner, Object.freeze(slices));
        this.#dirty.add(owner);
        break;
      }
      case 'Endpoints':
        this.endpoints.set(key, obj);
        this.#dirty.add(key);
        break;
      case 'Pod':
        this.#pods.add(obj);
        this.#podChanged(obj);
        break;
      case 'Node':
        this.nodes.set(obj.metadata.name, obj);
        // Zones feed every generated slice and possibly this node's context.
        this.#full = true;
        break;
      case 'Namespace':
        break;
    }
  }

  #remove(obj: K8sObject): void {
    const key = namespacedName(obj);
    const ns = obj.metadata.namespace;
    switch (obj.kind) {
      case 'Service':
        this.services.delete(key);
        this.#servicesBySelector.remove(key, obj);
        this.#serviceChanged(key);
        break;
      case 'EndpointSlice': {
        // The service's entry goes with its last slice: services come and go by the
        // thousand, and an empty entry per name ever seen would only grow.
        const owner = flat(`${ns}/${obj.serviceName}`);
        const slices = (this.#slicesByService.get(owner) ?? NO_ITEMS).filter((s) => s.metadata.name !== obj.metadata.name);
        if (slices.length === 0) this.#slicesByService.delete(owner);
        else this.#slicesByService.set(owner, Object.freeze(slices));
        this.#dirty.add(owner);
        break;
      }
      case 'Endpoints':
        this.endpoints.delete(key);
        this.#dirty.add(key);
        break;
      case 'Pod':
        this.#pods.remove(obj);
        this.#podChanged(obj);
        break;
      case 'Node':
        this.nodes.delete(obj.metadata.name);
        this.#full = true;
        break;
      case 'Namespace':
        break;
    }
  }

  #serviceChanged(key: string): void {
    this.#dirty.add(key);
    this.#changedServices.add(key);
  }

  /** A pod touches the services whose selector matches its labels (old or new). */
  #podChanged(pod: PodObject): void {
    for (const key of this.#servicesBySelector.candidates(pod.metadata.namespace, pod.metadata.labels)) {
      const selector = this.services.get(key)?.spec.selector;
      if (selector !== null && selector !== undefined && selectorMatches(selector, pod.metadata.labels)) this.#dirty.add(key);
    }
  }

  #resolveNode(): NodeContext {
    const opts = this.#nodeOptions;
    const nodeObject = this.nodes.get(opts.name);
    const addresses = opts.nodePortAddresses
      ?? nodeObject?.addresses.filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address)
      ?? [];
    const v6 = addresses.filter((a) => typeof a === 'string' && a.includes(':')).map((a) => parseIpv6(a as string)).filter((a) => a !== null);
    return {
      name: opts.name,
      zone: opts.zone ?? nodeObject?.zone ?? '',
      nodePortAddresses: Object.freeze(addresses.map((a) => (typeof a === 'number' ? a >>> 0 : parseIpv4(a))).filter((a) => a !== undefined)) as number[],
      nodePortAddresses6: Object.freeze(v6.map((a) => ipv6ToString(a))) as string[],
    };
  }

  /** The slices a service's endpoints come from: hand-written ones plus generated (selector) or mirrored (Endpoints) ones. */
  slicesFor(key: string): readonly EndpointSliceObject[] {
    const svc = this.services.get(key);
    const hand = this.#slicesByService.get(key) ?? NO_ITEMS;
    if (svc === undefined || this.#allocator === null) return hand;
    if (svc.spec.selector !== null) return [...hand, ...(this.#generated.get(key) ?? [])];
    const endpoints = this.endpoints.get(key);
    return endpoints === undefined ? hand : [...hand, ...mirrorEndpoints(endpoints)];
  }

  /** Recomputes what changed and returns the complete snapshot for this node. */
  sync(): SyncResult {
    const node = this.#resolveNode();
    const nodeKey = JSON.stringify(node);
    if (nodeKey !== this.#nodeKey) {
      this.#nodeKey = nodeKey;
      this.#node = node;
      this.#full = true;
    }
    if (this.#full) {
      for (const key of this.services.keys()) this.#dirty.add(key);
      for (const key of this.#compiled.keys()) this.#dirty.add(key);
    }
    if (this.#allocator === null && !this.#full) {
      // Cluster mode: a Service's allocation is its own spec's (allocationFromSpec), so
      // only the changed ones are read again (and they are dirty already). Reading all
      // of them, and comparing each as JSON, on every sync while 10k Services streamed
      // in was most of the agent's CPU (and of every other watcher's) during the apply.
      const allocations = this.#allocation.allocations;
      for (const key of this.#changedServices) {
        const svc = this.services.get(key);
        const a = svc === undefined ? undefined : allocationFromSpec(svc);
        if (a === undefined) allocations.delete(key);
        else allocations.set(key, a);
      }
    } else if (this.#full || this.#changedServices.size > 0) {
      const old = this.#allocation;
      this.#allocation = this.#allocator === null ? allocationsFromSpec(this.services.values()) : allocateServices(this.services.values(), this.#allocator);
      for (const key of this.services.keys()) {
        if (JSON.stringify(old.allocations.get(key)) !== JSON.stringify(this.#allocation.allocations.get(key))) this.#dirty.add(key);
        else if (JSON.stringify(old.rejected.get(key)) !== JSON.stringify(this.#allocation.rejected.get(key))) this.#dirty.add(key);
      }
    }
    let changed = this.#snapshot === undefined;
    let viewChanged = this.#view === undefined;
    for (const key of this.#dirty) {
      const svc = this.services.get(key);
      if (svc === undefined) {
        this.#generated.delete(key);
        if (this.#views.delete(key)) viewChanged = true;
        if (this.#compiled.delete(key)) changed = true;
        continue;
      }
      if (svc.spec.selector !== null && this.#allocator !== null) {
        this.#generated.set(key, endpointSlicesForService(svc, this.#pods.candidates(svc.metadata.namespace, svc.spec.selector), this.nodes, this.#allocation.allocations.get(key)?.ipFamilies));
      } else this.#generated.delete(key);
      const alloc = this.#allocation.allocations.get(key);
      const slices = this.slicesFor(key);
      const view = serviceView(svc, alloc, slices, this.#allocation.rejected.get(key) ?? []);
      const viewBefore = this.#views.get(key);
      if (viewBefore === undefined || !sameServiceView(viewBefore, view)) {
        this.#views.set(key, view);
        viewChanged = true;
      }
      const ports = alloc === undefined ? [] : compileService(svc, alloc, slices, this.#node);
      const ports6 = alloc === undefined ? [] : compileService6(svc, alloc, slices, this.#node);
      const before = this.#compiled.get(key);
      // A family whose ports did not change keeps its objects: the tables diff by identity.
      const same4 = before !== undefined && JSON.stringify(before.ports) === JSON.stringify(ports);
      const same6 = before !== undefined && JSON.stringify(before.ports6) === JSON.stringify(ports6);
      if (same4 && same6) continue;
      const none = ports.length === 0 && ports6.length === 0;
      if (none && before === undefined) continue;
      const kept = { ports: same4 ? before!.ports : ports, ports6: same6 ? before!.ports6 : ports6 };
      if (none) this.#compiled.delete(key);
      else this.#compiled.set(key, kept);
      changed = true;
    }
    this.#dirty.clear();
    this.#changedServices.clear();
    this.#full = false;
    if (changed) {
      const ports: ServicePortSpec[] = [];
      const ports6: ServicePortSpec6[] = [];
      for (const c of this.#compiled.sortedValues()) {
        for (const port of c.ports) ports.push(port);
        for (const port of c.ports6) ports6.push(port);
      }
      this.#snapshot = Object.freeze({
        generation: ++this.#generation,
        ports: Object.freeze(ports) as ServicePortSpec[],
        nodePortAddresses: this.#node.nodePortAddresses,
        ...(ports6.length > 0 ? { ports6: Object.freeze(ports6) as ServicePortSpec6[] } : {}),
        ...(this.#node.nodePortAddresses6 !== undefined && this.#node.nodePortAddresses6.length > 0 ? { nodePortAddresses6: this.#node.nodePortAddresses6 } : {}),
      });
    }
    if (changed || viewChanged) {
      const services = this.#views.sortedValues().slice();
      this.#view = Object.freeze({ generation: ++this.#viewGeneration, nodeName: this.#node.name, services: Object.freeze(services) as ServiceView[], snapshot: this.#snapshot! });
    }
    const view = this.#view!;
    return { view, snapshot: view.snapshot, changed: changed || viewChanged, snapshotChanged: changed };
  }
}

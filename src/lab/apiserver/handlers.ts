// The object verbs of the lab API server: get, list, create, update, patch (merge,
// strategic merge, JSON patch, server-side apply), delete (graceful for Pods, held by
// finalizers), deletecollection, and the pods/binding subresource the lab's scheduler
// uses. Each verb runs to its end without awaiting, so a check (resourceVersion,
// AlreadyExists) and the write that depends on it cannot interleave with another request.
import { randomUUID } from 'node:crypto';
import { isMapping, type Raw } from '../../config/fields.ts';
import { validateDocument } from '../../k8s/validate.ts';
import { applyConfig } from './apply.ts';
import { defaultPod, type ServiceAllocator } from './defaults.ts';
import { clone, jsonEqual, jsonPatch, mergePatch, strategicMergePatch } from './patch.ts';
import { apiVersionOf, RESOURCES, resourceKey, type ResourceInfo } from './resources.ts';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { ApiError, type Cause } from './status.ts';
import type { Obj, Store } from './store.ts';

/** One request against a resource, as parsed from its path (see server.ts). */
export interface ResourceRequest {
  info: ResourceInfo;
  /** '' for cluster-scoped resources and for lists across all namespaces. */
  namespace: string;
  name: string;
  subresource: string;
  query: URLSearchParams;
}

/** What the validation messages name as the objects' origin. */
const ORIGIN = { source: 'api', server: 'tapir-lab-apiserver' } as const;

/** generateName's suffix alphabet (k8s.io/apiserver/pkg/storage/names: no vowels, no 0/1/3). */
const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

export function now(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class ObjectHandlers {
  readonly store: Store;
  private readonly allocator: ServiceAllocator;
  /** Pods being deleted gracefully, by "namespace/name": the timer that removes them. */
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();

  constructor(store: Store, allocator: ServiceAllocator) {
    this.store = store;
    this.allocator = allocator;
    for (const svc of store.list('services')) allocator.record(svc);
    // Pods whose grace period ran while the server was down go now, the others when it ends.
    for (const pod of store.list('pods')) {
      if (typeof pod.metadata.deletionTimestamp === 'string' && !hasFinalizers(pod)) this.scheduleRemoval(pod, Date.parse(pod.metadata.deletionTimestamp) - Date.now());
    }
  }

  close(): void {
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
  }

  get(req: ResourceRequest): Obj {
    const obj = this.store.get(resourceKey(req.info), req.namespace, req.name);
    if (obj === undefined) throw ApiError.notFound(resourceKey(req.info), req.name);
    return obj;
  }

  /** The matching objects, one page of them with `limit`; the continue token is the last key served. */
  list(req: ResourceRequest): { items: Obj[]; resourceVersion: string; continueToken: string; remaining: number } {
    const filter = this.filter(req);
    let items = this.store.list(resourceKey(req.info), req.namespace).filter(filter);
    const token = req.query.get('continue') ?? '';
    if (token !== '') {
      let after: string;
      try {
        after = String((JSON.parse(Buffer.from(token, 'base64url').toString()) as Raw).after);
      } catch {
        throw ApiError.badRequest(`continue key is not valid: ${JSON.stringify(token)}`);
      }
      items = items.filter((o) => keyOf(o) > after);
    }
    const limit = Number(req.query.get('limit') ?? '0');
    let continueToken = '';
    let remaining = 0;
    if (Number.isInteger(limit) && limit > 0 && items.length > limit) {
      remaining = items.length - limit;
      items = items.slice(0, limit);
      continueToken = Buffer.from(JSON.stringify({ after: keyOf(items[items.length - 1]!) })).toString('base64url');
    }
    return { items, resourceVersion: String(this.store.resourceVersion), continueToken, remaining };
  }

  /** The request's label and field selectors as one predicate. */
  filter(req: ResourceRequest): (o: Obj) => boolean {
    const labels = parseLabelSelector(req.query.get('labelSelector') ?? '');
    const fields = parseFieldSelector(req.query.get('fieldSelector') ?? '', req.info.resource);
    return (o) => matchesLabels(labels, isMapping(o.metadata.labels) ? (o.metadata.labels as Record<string, string>) : {}) && matchesFields(fields, o);
  }

  create(req: ResourceRequest, body: unknown): Obj {
    if (req.subresource === 'binding') return this.bind(req, body);
    if (req.subresource !== '') throw ApiError.methodNotAllowed();
    const obj = this.checkBody(req, body);
    const meta = obj.metadata;
    if ((meta.name === undefined || meta.name === '') && typeof meta.generateName === 'string' && meta.generateName !== '') {
      let suffix = '';
      for (let i = 0; i < 5; i++) suffix += NAME_ALPHABET[Math.floor(Math.random() * NAME_ALPHABET.length)];
      meta.name = `${meta.generateName}${suffix}`;
    }
    if (typeof meta.name !== 'string' || meta.name === '') {
      throw ApiError.invalid(req.info.kind, req.info.group, '', [{ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' }]);
    }
    const res = resourceKey(req.info);
    if (req.info.namespaced && this.store.get('namespaces', '', String(meta.namespace)) === undefined) throw ApiError.notFound('namespaces', String(meta.namespace));
    if (this.store.get(res, String(meta.namespace ?? ''), meta.name) !== undefined) throw ApiError.alreadyExists(res, meta.name);
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    if (obj.spec !== undefined) meta.generation = 1;
    this.prepare(req.info, obj, undefined);
    if (isDryRun(req)) return obj;
    if (req.info.resource === 'services') this.allocator.allocate(obj, undefined);
    return this.store.put(res, obj);
  }

  /** PUT: replaces the object, or only its status through /status. */
  update(req: ResourceRequest, body: unknown): Obj {
    if (req.subresource !== '' && req.subresource !== 'status') throw ApiError.methodNotAllowed();
    const existing = this.get(req);
    const obj = this.checkBody(req, body);
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== existing.metadata.resourceVersion) throw ApiError.conflict(resourceKey(req.info), req.name);
    return this.write(req, existing, obj);
  }

  patch(req: ResourceRequest, contentType: string, body: unknown): Obj {
    if (req.subresource !== '' && req.subresource !== 'status') throw ApiError.methodNotAllowed();
    const res = resourceKey(req.info);
    const existing = this.store.get(res, req.namespace, req.name);
    if (contentType === 'application/apply-patch+yaml') {
      const manager = req.query.get('fieldManager') ?? '';
      if (manager === '') throw ApiError.badRequest('PATCH with application/apply-patch+yaml requires the fieldManager parameter');
      const config = this.checkBody(req, body);
      if (existing === undefined) {
        if (req.subresource !== '') throw ApiError.notFound(res, req.name);
        const created = applyConfig(undefined, config, manager, req.info.applyKeys, apiVersionOf(req.info));
        return this.create(req, created);
      }
      return this.write(req, existing, applyConfig(existing, config, manager, req.info.applyKeys, apiVersionOf(req.info)) as Obj);
    }
    if (existing === undefined) throw ApiError.notFound(res, req.name);
    let patched: unknown;
    switch (contentType) {
      case 'application/merge-patch+json': patched = mergePatch(existing, body); break;
      case 'application/strategic-merge-patch+json': patched = strategicMergePatch(existing, body, req.info.mergeKeys); break;
      case 'application/json-patch+json': patched = jsonPatch(existing, body); break;
      default: throw new ApiError('UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json`);
    }
    if (!isMapping(patched) || !isMapping(patched.metadata)) throw ApiError.badRequest('the patch removed the object\'s metadata');
    // A patch that names a resourceVersion is conditional on it, as in Kubernetes.
    const rv = isMapping(body) && isMapping(body.metadata) ? body.metadata.resourceVersion : undefined;
    if (typeof rv === 'string' && rv !== '' && rv !== existing.metadata.resourceVersion) throw ApiError.conflict(res, req.name);
    patched.metadata.resourceVersion = existing.metadata.resourceVersion;
    return this.write(req, existing, patched as Obj);
  }

  delete(req: ResourceRequest, body: unknown): Obj {
    if (req.subresource !== '') throw ApiError.methodNotAllowed();
    const res = resourceKey(req.info);
    const existing = this.get(req);
    const options = isMapping(body) ? body : {};
    const pre = isMapping(options.preconditions) ? options.preconditions : {};
    if (typeof pre.uid === 'string' && pre.uid !== existing.metadata.uid) throw ApiError.conflict(res, req.name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${String(existing.metadata.uid)}`);
    if (typeof pre.resourceVersion === 'string' && pre.resourceVersion !== existing.metadata.resourceVersion) throw ApiError.conflict(res, req.name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${String(existing.metadata.resourceVersion)}`);
    if (isDryRun(req)) return existing;
    const graceText = req.query.get('gracePeriodSeconds');
    const requested = typeof options.gracePeriodSeconds === 'number' ? options.gracePeriodSeconds : graceText !== null ? Number(graceText) : undefined;
    const grace = req.info.resource === 'pods' ? this.podGrace(existing, requested) : 0;
    if (grace > 0 || hasFinalizers(existing)) {
      // Graceful or held: mark it; the timer or the last finalizer's removal deletes it.
      const at = Date.now() + grace * 1000;
      const previous = typeof existing.metadata.deletionTimestamp === 'string' ? Date.parse(existing.metadata.deletionTimestamp) : Infinity;
      // A second delete may shorten the grace period, never lengthen it.
      if (at >= previous) return existing;
      const marked = clone(existing);
      marked.metadata.deletionTimestamp = new Date(Math.min(at, previous)).toISOString().replace(/\.\d{3}Z$/, 'Z');
      if (req.info.resource === 'pods') marked.metadata.deletionGracePeriodSeconds = grace;
      const stored = this.store.put(res, marked);
      if (!hasFinalizers(stored) && req.info.resource === 'pods') this.scheduleRemoval(stored, grace * 1000);
      return stored;
    }
    return this.remove(req.info, existing);
  }

  deleteCollection(req: ResourceRequest, body: unknown): Obj[] {
    const deleted: Obj[] = [];
    for (const o of this.list({ ...req, query: new URLSearchParams({ labelSelector: req.query.get('labelSelector') ?? '', fieldSelector: req.query.get('fieldSelector') ?? '' }) }).items) {
      deleted.push(this.delete({ ...req, namespace: String(o.metadata.namespace ?? ''), name: String(o.metadata.name) }, body));
    }
    return deleted;
  }

  /** POST pods/<name>/binding: the scheduler's write of spec.nodeName. */
  private bind(req: ResourceRequest, body: unknown): Obj {
    if (req.info.resource !== 'pods') throw ApiError.methodNotAllowed();
    const existing = this.get(req);
    const target = isMapping(body) && isMapping(body.target) ? body.target : {};
    if (typeof target.name !== 'string' || target.name === '') {
      throw ApiError.invalid('Binding', '', req.name, [{ reason: 'FieldValueRequired', message: 'Required value', field: 'target.name' }]);
    }
    const nodeName = isMapping(existing.spec) ? existing.spec.nodeName : undefined;
    if (typeof nodeName === 'string' && nodeName !== '') throw ApiError.conflict('pods', req.name, `pod ${req.name} is already assigned to node "${nodeName}"`);
    const bound = clone(existing);
    (bound.spec as Raw).nodeName = target.name;
    this.store.put('pods', bound);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 } as unknown as Obj;
  }

  /** The shared tail of update, patch and apply. */
  private write(req: ResourceRequest, existing: Obj, incoming: Obj): Obj {
    const res = resourceKey(req.info);
    let next = clone(incoming);
    if (req.subresource === 'status') next = { ...clone(existing), status: next.status };
    else if (req.info.subresources.includes('status')) {
      if (existing.status === undefined) delete next.status;
      else next.status = clone(existing.status);
    }
    const meta = next.metadata;
    // What a client cannot change.
    for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation']) {
      if (existing.metadata[k] === undefined) delete meta[k];
      else meta[k] = existing.metadata[k];
    }
    meta.name = existing.metadata.name;
    if (req.info.namespaced) meta.namespace = existing.metadata.namespace;
    else delete meta.namespace;
    meta.resourceVersion = existing.metadata.resourceVersion;
    if (req.subresource === '' && !jsonEqual(next.spec, existing.spec) && typeof existing.metadata.generation === 'number') meta.generation = existing.metadata.generation + 1;
    this.prepare(req.info, next, existing);
    if (req.info.resource === 'services' && req.subresource === '' && !isDryRun(req)) this.allocator.allocate(next, existing);
    // No change, no new version (the API server's no-op detection keeps watches quiet).
    if (jsonEqual(next, existing) || isDryRun(req)) return isDryRun(req) ? next : existing;
    if (typeof meta.deletionTimestamp === 'string' && !hasFinalizers(next) && !this.graceTimers.has(keyOf(next))) return this.remove(req.info, next);
    return this.store.put(res, next);
  }

  /** Fills kind and apiVersion, applies defaults and validates. */
  private prepare(info: ResourceInfo, obj: Obj, existing: Obj | undefined): void {
    obj.apiVersion = apiVersionOf(info);
    obj.kind = info.kind;
    if (info.resource === 'pods') defaultPod(obj);
    if (info.resource === 'namespaces' && existing === undefined) obj.status = { phase: 'Active' };
    if (info.tapirKind === undefined) return;
    const problems: string[] = [];
    const validated = validateDocument(obj, ORIGIN, problems);
    if (validated !== undefined) return;
    throw ApiError.invalid(info.kind, info.group, String(obj.metadata.name ?? ''), problems.map(toCause));
  }

  /** Checks a request body's type, kind and names against the URL. */
  private checkBody(req: ResourceRequest, body: unknown): Obj {
    if (!isMapping(body)) throw ApiError.badRequest(`the body of the request must be a ${req.info.kind} object`);
    const obj = clone(body) as Obj;
    if (!isMapping(obj.metadata)) obj.metadata = {};
    const expected = apiVersionOf(req.info);
    if ((obj.kind !== undefined && obj.kind !== req.info.kind) || (obj.apiVersion !== undefined && obj.apiVersion !== expected)) {
      throw ApiError.badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${expected}) or kind (${req.info.kind})`);
    }
    const meta = obj.metadata;
    if (req.info.namespaced) {
      if (typeof meta.namespace === 'string' && meta.namespace !== '' && meta.namespace !== req.namespace) {
        throw ApiError.badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = req.namespace;
    } else delete meta.namespace;
    if (req.name !== '' && typeof meta.name === 'string' && meta.name !== '' && meta.name !== req.name) {
      throw ApiError.badRequest(`the name of the object (${meta.name}) does not match the name on the URL (${req.name})`);
    }
    if (req.name !== '' && req.subresource === '') meta.name = req.name;
    return obj;
  }

  private podGrace(pod: Obj, requested: number | undefined): number {
    const spec = isMapping(pod.spec) ? pod.spec : {};
    // An unscheduled pod has no kubelet to wait for: it goes at once, as in Kubernetes.
    if (typeof spec.nodeName !== 'string' || spec.nodeName === '') return 0;
    const phase = isMapping(pod.status) ? pod.status.phase : undefined;
    if (phase === 'Succeeded' || phase === 'Failed') return 0;
    const grace = requested ?? (typeof spec.terminationGracePeriodSeconds === 'number' ? spec.terminationGracePeriodSeconds : 30);
    return Number.isFinite(grace) && grace > 0 ? grace : 0;
  }

  private scheduleRemoval(pod: Obj, delayMs: number): void {
    const key = keyOf(pod);
    clearTimeout(this.graceTimers.get(key));
    const uid = pod.metadata.uid;
    const timer = setTimeout(() => {
      this.graceTimers.delete(key);
      const current = this.store.get('pods', String(pod.metadata.namespace), String(pod.metadata.name));
      if (current !== undefined && current.metadata.uid === uid && !hasFinalizers(current)) this.store.remove('pods', String(current.metadata.namespace), String(current.metadata.name));
    }, Math.max(0, delayMs));
    timer.unref();
    this.graceTimers.set(key, timer);
  }

  private remove(info: ResourceInfo, obj: Obj): Obj {
    const key = keyOf(obj);
    clearTimeout(this.graceTimers.get(key));
    this.graceTimers.delete(key);
    // The namespace controller's job, done at once: a deleted namespace takes its objects along.
    if (info.resource === 'namespaces') {
      for (const r of RESOURCES) {
        if (!r.namespaced) continue;
        for (const o of this.store.list(resourceKey(r), String(obj.metadata.name))) this.remove(r, o);
      }
    }
    const removed = this.store.remove(resourceKey(info), String(obj.metadata.namespace ?? ''), String(obj.metadata.name));
    if (info.resource === 'services') this.allocator.release(removed);
    return removed;
  }
}

function hasFinalizers(obj: Obj): boolean {
  return Array.isArray(obj.metadata.finalizers) && obj.metadata.finalizers.length > 0;
}

function isDryRun(req: ResourceRequest): boolean {
  return req.query.get('dryRun') === 'All';
}

function keyOf(o: Obj): string {
  return `${String(o.metadata.namespace ?? '')}/${String(o.metadata.name)}`;
}

/** "tapir-lab-apiserver (Service default/web): spec.ports[0].port: 70000 is out of range" to a cause. */
function toCause(problem: string): Cause {
  const rest = problem.replace(/^tapir-lab-apiserver( \([^)]*\))?: /, '');
  const colon = rest.indexOf(': ');
  const field = colon > 0 && !rest.slice(0, colon).includes(' ') ? rest.slice(0, colon) : '';
  return { reason: 'FieldValueInvalid', message: field === '' ? rest : `Invalid value: ${rest.slice(colon + 2)}`, field };
}

// The compiled ClusterView and its consumers: every subscriber gets the same view; the
// view holds every Service (headless and ExternalName ones too, with endpoint
// hostnames) while the proxy's snapshot holds only what the proxy programs; a failing
// consumer neither stops the others nor loses its view (the sync is retried); and the
// controller works on any ObjectSource, publishing nothing before every kind it
// compiles has synced (what a Kubernetes API source reports kind by kind).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ServiceController, ServiceSyncError } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { ObjectHandler, ObjectSource } from '../src/k8s/object-source.ts';
import { Kind, objectKey, type K8sObject } from '../src/k8s/objects.ts';
import type { ClusterView } from '../src/model/cluster-view.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { ipv4ToString, parseCidr } from '../src/wire/address.ts';
import { waitFor } from './helpers/netns.ts';

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: search}
spec:
  type: ExternalName
  externalName: search.example.com
`;

function pod(name: string, app: string, ip: string, extra = ''): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, labels: {app: ${app}}}
spec:
  nodeName: node-1${extra}
  containers: [{name: c, ports: [{containerPort: 8080}, {containerPort: 5432}]}]
status:
  podIP: ${ip}
  conditions: [{type: Ready, status: "True"}]
---
`;
}

const PODS = pod('web-1', 'web', '10.244.1.2') + pod('db-0', 'db', '10.244.1.9', '\n  hostname: db-0\n  subdomain: db');

function manifestDir(t: { after(fn: () => void): void }, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-view-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function controller(t: { after(fn: () => void): void }, source: ObjectSource, more: { onSnapshot?(s: ServiceSnapshot): void; errors?: Error[] } = {}): ServiceController {
  const c = new ServiceController({
    source,
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    minSyncIntervalMs: 10,
    retryIntervalMs: 20,
    ...(more.onSnapshot !== undefined ? { onSnapshot: more.onSnapshot } : {}),
    onError: (e) => more.errors?.push(e),
  });
  t.after(() => c.stop());
  return c;
}

test('two consumers both receive the same view, and every new one', async (t) => {
  const dir = manifestDir(t, { 'svc.yaml': SERVICES, 'pods.yaml': PODS });
  const c = controller(t, new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 }));
  const a: ClusterView[] = [];
  const b: ClusterView[] = [];
  c.subscribe((v) => { a.push(v); });
  c.subscribe(async (v) => { await new Promise((r) => setTimeout(r, 5)); b.push(v); });
  await c.start();
  assert.equal(a.length, 1);
  assert.equal(b.length, 1);
  assert.equal(a[0], b[0], 'one view object for all consumers');
  assert.equal(c.view, a[0]);
  assert.equal(c.snapshot, a[0]!.snapshot);
  assert.ok(Object.isFrozen(a[0]) && Object.isFrozen(a[0]!.services) && Object.isFrozen(a[0]!.services[0]) && Object.isFrozen(a[0]!.services[0]!.endpoints));

  writeFileSync(join(dir, 'pods.yaml'), PODS + pod('web-2', 'web', '10.244.1.3'));
  await c.flush();
  assert.equal(a.length, 2);
  assert.equal(b.length, 2);
  assert.equal(a[1], b[1]);
  assert.ok(a[1]!.generation > a[0]!.generation);
  assert.deepEqual(a[1]!.services.find((s) => s.name === 'web')!.endpoints.map((e) => ipv4ToString(e.ip)), ['10.244.1.2', '10.244.1.3']);
  const db = (v: ClusterView) => v.services.find((s) => s.name === 'db');
  assert.equal(db(a[1]!), db(a[0]!), 'an untouched service keeps its view object');
  // A late subscriber gets the current view at the next sync.
  const late: ClusterView[] = [];
  c.subscribe((v) => { late.push(v); });
  await waitFor(() => late.length === 1, 5000, 5);
  assert.equal(late[0], a[1]);
  assert.equal(a.length, 2, 'the others already have it');
});

test('headless and ExternalName services are in the view, not in the proxy snapshot', async (t) => {
  const dir = manifestDir(t, { 'svc.yaml': SERVICES, 'pods.yaml': PODS });
  const snapshots: ServiceSnapshot[] = [];
  const c = controller(t, new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 }), { onSnapshot: (s) => snapshots.push(s) });
  await c.start();
  const view = c.view!;
  assert.equal(view.nodeName, 'node-1');
  assert.deepEqual(view.services.map((s) => s.key), ['default/db', 'default/search', 'default/web']);
  assert.deepEqual(view.snapshot.ports.map((p) => p.key), ['default/web:http']);

  const db = view.services.find((s) => s.name === 'db')!;
  assert.equal(db.headless, true);
  assert.equal(db.clusterIP, 0);
  assert.equal(db.proxied, false);
  assert.deepEqual(db.ports, [{ name: 'pg', protocol: 6, port: 5432, targetPort: 5432, nodePort: 0 }]);
  assert.deepEqual(db.endpoints.map((e) => ({ ip: ipv4ToString(e.ip), hostname: e.hostname, nodeName: e.nodeName, ready: e.ready, ports: e.ports })),
    [{ ip: '10.244.1.9', hostname: 'db-0', nodeName: 'node-1', ready: true, ports: [{ name: 'pg', protocol: 6, port: 5432 }] }]);

  const search = view.services.find((s) => s.name === 'search')!;
  assert.equal(search.type, 'ExternalName');
  assert.equal(search.externalName, 'search.example.com');
  assert.equal(search.clusterIP, 0);
  assert.equal(search.proxied, false);

  const web = view.services.find((s) => s.name === 'web')!;
  assert.equal(web.proxied, true);
  assert.equal(web.clusterIP, view.snapshot.ports[0]!.clusterIP);
  assert.equal(web.endpoints[0]!.hostname, '', 'no hostname without a subdomain naming the service');

  // A change that only the headless service sees: a new view, the same snapshot.
  writeFileSync(join(dir, 'pods.yaml'), PODS + pod('db-1', 'db', '10.244.1.10', '\n  hostname: db-1\n  subdomain: db'));
  await c.flush();
  assert.notEqual(c.view, view);
  assert.deepEqual(c.view!.services.find((s) => s.name === 'db')!.endpoints.map((e) => e.hostname), ['db-0', 'db-1']);
  assert.equal(c.snapshot, view.snapshot);
  assert.equal(snapshots.length, 1, 'onSnapshot is not called for a view whose snapshot did not change');
});

test('a failing consumer does not stop the others; the sync is retried until it takes the view', async (t) => {
  const dir = manifestDir(t, { 'svc.yaml': SERVICES, 'pods.yaml': PODS });
  const errors: Error[] = [];
  const c = controller(t, new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 }), { errors });
  let failures = 2;
  const flaky: ClusterView[] = [];
  const steady: ClusterView[] = [];
  c.subscribe((v) => {
    if (failures > 0) {
      failures--;
      throw new Error('iptables-restore failed');
    }
    flaky.push(v);
  });
  c.subscribe((v) => { steady.push(v); });
  await c.start();
  assert.equal(steady.length, 1, 'the other consumer got the view at once');
  await waitFor(() => flaky.length === 1, 5000, 5);
  assert.equal(flaky[0], steady[0], 'the retry hands over the same view');
  assert.equal(steady.length, 1, 'a consumer that has the view does not get it again');
  assert.equal(errors.length, 2);
  for (const e of errors) {
    assert.ok(e instanceof ServiceSyncError);
    assert.equal(e.code, 'TAPIR_SERVICE_SYNC_FAILED');
    assert.match(e.message, /retrying with a full sync\): iptables-restore failed/);
  }
});

/** An ObjectSource in memory whose kinds sync one by one, as informers of the API do. */
class MemorySource implements ObjectSource {
  readonly kinds: readonly Kind[] = [Kind.SERVICE, Kind.ENDPOINT_SLICE, Kind.POD, Kind.NODE];
  readonly #objects = new Map<string, K8sObject>();
  readonly #synced = new Set<Kind>();
  readonly #handlers = new Set<ObjectHandler>();
  stopped = false;

  watch(handler: ObjectHandler): () => void {
    for (const current of this.#objects.values()) handler.onChange({ previous: undefined, current });
    for (const kind of this.#synced) handler.onSynced(kind);
    this.#handlers.add(handler);
    return () => { this.#handlers.delete(handler); };
  }
  start(): Promise<void> { return Promise.resolve(); }
  stop(): void { this.stopped = true; }
  list(): K8sObject[] { return [...this.#objects.values()]; }
  hasSynced(kind: Kind): boolean { return this.#synced.has(kind); }
  resync(): Promise<void> { return Promise.resolve(); }

  put(obj: K8sObject): void {
    const previous = this.#objects.get(objectKey(obj));
    this.#objects.set(objectKey(obj), obj);
    for (const h of this.#handlers) h.onChange({ previous, current: obj });
  }
  sync(kind: Kind): void {
    this.#synced.add(kind);
    for (const h of this.#handlers) h.onSynced(kind);
  }
}

test('any ObjectSource: nothing is published before every compiled kind has synced', async (t) => {
  const source = new MemorySource();
  const objects = parseManifest(SERVICES + '---\n' + PODS, 'memory.yaml');
  assert.deepEqual(objects.problems, []);
  const views: ClusterView[] = [];
  const c = controller(t, source);
  c.subscribe((v) => { views.push(v); });
  const started = c.start();
  for (const obj of objects.objects) source.put(obj);
  source.sync(Kind.SERVICE);
  source.sync(Kind.POD);
  source.sync(Kind.NODE);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(views.length, 0, 'EndpointSlices have not synced yet');
  source.sync(Kind.ENDPOINT_SLICE);
  await started;
  assert.equal(views.length, 1);
  assert.deepEqual(views[0]!.services.map((s) => s.key), ['default/db', 'default/search', 'default/web']);
  assert.equal(views[0]!.snapshot.ports.length, 1);
  c.stop();
  assert.equal(source.stopped, true, 'the controller stops the source it was handed');
});

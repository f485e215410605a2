// The lab API server's parts without a network: label and field selectors, the three
// patch formats and server-side apply, RBAC evaluation and its Forbidden wording, the
// store's history (410 after compaction, journal replay), and the object verbs' rules
// (AlreadyExists, Conflict, Invalid with field causes, allocation, graceful deletion).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyConfig } from '../src/lab/apiserver/apply.ts';
import { ServiceAllocator } from '../src/lab/apiserver/defaults.ts';
import { ObjectHandlers, type ResourceRequest } from '../src/lab/apiserver/handlers.ts';
import { jsonPatch, mergePatch, strategicMergePatch } from '../src/lab/apiserver/patch.ts';
import { forbiddenMessage, RbacAuthorizer, readTokenFile, type UserInfo } from '../src/lab/apiserver/rbac.ts';
import { resourceAt } from '../src/lab/apiserver/resources.ts';
import { matchesFields, matchesLabels, parseFieldSelector, parseLabelSelector } from '../src/lab/apiserver/selectors.ts';
import { ApiError } from '../src/lab/apiserver/status.ts';
import { Store, type Change, type Obj } from '../src/lab/apiserver/store.ts';
import { parseCidr } from '../src/wire/address.ts';

test('label selectors: equality, inequality, existence, set-based, and their parse errors', () => {
  const labels = { app: 'web', tier: 'front', n: '5' };
  const cases: [string, boolean][] = [
    ['', true],
    ['app=web', true],
    ['app==web', true],
    ['app=db', false],
    ['app!=db', true],
    ['missing!=x', true],
    ['app', true],
    ['!app', false],
    ['!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless', true],
    ['app in (web, db)', true],
    ['app in (db)', false],
    ['app notin (db),tier', true],
    ['missing notin (x)', true],
    ['tier in (front),app=web', true],
    ['n>4', true],
    ['n<5', false],
  ];
  for (const [selector, expected] of cases) assert.equal(matchesLabels(parseLabelSelector(selector), labels), expected, selector);
  for (const bad of ['a=b,,c', 'a in b', '=x', 'n>x']) assert.throws(() => parseLabelSelector(bad), (e: unknown) => e instanceof ApiError && e.reason === 'BadRequest', bad);
});

test('field selectors: the fields each kind supports, = and !=, unsupported fields refused', () => {
  const pod = { metadata: { name: 'a', namespace: 'ns' }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } };
  assert.equal(matchesFields(parseFieldSelector('spec.nodeName=n1,status.phase!=Failed', 'pods'), pod), true);
  assert.equal(matchesFields(parseFieldSelector('metadata.name==b', 'pods'), pod), false);
  assert.equal(matchesFields(parseFieldSelector('spec.nodeName=', 'pods'), { metadata: { name: 'x' } }), true);
  assert.throws(() => parseFieldSelector('spec.nodeName=n1', 'services'), /field label not supported: spec.nodeName/);
});

test('merge patch (RFC 7386) and JSON patch (RFC 6902)', () => {
  assert.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] }, { b: { c: null, e: 4 }, l: [3] }), { a: 1, b: { d: 3, e: 4 }, l: [3] });
  const doc = { metadata: { labels: { 'a/b': 'x' } }, spec: { ports: [{ port: 80 }] } };
  const out = jsonPatch(doc, [
    { op: 'add', path: '/spec/ports/-', value: { port: 81 } },
    { op: 'replace', path: '/metadata/labels/a~1b', value: 'y' },
    { op: 'test', path: '/spec/ports/0/port', value: 80 },
    { op: 'copy', from: '/spec/ports/0', path: '/spec/first' },
    { op: 'remove', path: '/spec/ports/0' },
  ]);
  assert.deepEqual(out, { metadata: { labels: { 'a/b': 'y' } }, spec: { ports: [{ port: 81 }], first: { port: 80 } } });
  assert.deepEqual(doc.spec.ports, [{ port: 80 }], 'the original is untouched');
  assert.throws(() => jsonPatch(doc, [{ op: 'test', path: '/spec/ports/0/port', value: 1 }]), (e: unknown) => e instanceof ApiError && e.reason === 'Invalid');
  assert.throws(() => jsonPatch(doc, [{ op: 'replace', path: '/nope/x', value: 1 }]), (e: unknown) => e instanceof ApiError && e.reason === 'Invalid');
});

test('strategic merge patch: lists merged on their keys, directives as kubectl apply sends them', () => {
  const pods = resourceAt('', 'v1', 'pods')!.mergeKeys;
  const pod = {
    metadata: { finalizers: ['a'] },
    spec: {
      containers: [
        { name: 'web', image: 'v1', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 81 }] },
        { name: 'side', image: 's' },
      ],
      tolerations: [{ key: 'x' }],
    },
  };
  const patch = {
    metadata: { finalizers: ['b'] },
    spec: {
      $setElementOrder: undefined,
      '$setElementOrder/containers': [{ name: 'side' }, { name: 'web' }],
      containers: [
        { name: 'web', image: 'v2', ports: [{ containerPort: 81, $patch: 'delete' }, { containerPort: 82 }] },
        { name: 'side', $patch: 'delete' },
        { name: 'new', image: 'n' },
      ],
      tolerations: [{ key: 'y' }],
    },
  };
  delete (patch.spec as Record<string, unknown>).$setElementOrder;
  const out = strategicMergePatch(pod, patch, pods) as typeof pod;
  assert.deepEqual(out.metadata.finalizers, ['a', 'b'], 'a set of scalars is merged');
  assert.deepEqual(out.spec.containers.map((c) => c.name), ['web', 'new']);
  assert.deepEqual(out.spec.containers[0], { name: 'web', image: 'v2', ports: [{ containerPort: 80, protocol: 'TCP' }, { containerPort: 82 }] });
  assert.deepEqual(out.spec.tolerations, [{ key: 'y' }], 'a list without a merge key is replaced');
  const services = resourceAt('', 'v1', 'services')!.mergeKeys;
  const replaced = strategicMergePatch({ spec: { ports: [{ port: 80 }], selector: { a: 'b', c: 'd' } } }, { spec: { ports: [{ port: 90 }, { $patch: 'replace' }], selector: { $patch: 'replace', x: 'y' }, $retainKeys: ['ports', 'selector'] } }, services);
  assert.deepEqual(replaced, { spec: { ports: [{ port: 90 }], selector: { x: 'y' } } });
  const fromPrimitive = strategicMergePatch({ metadata: { finalizers: ['a', 'b'] } }, { metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] } }, pods);
  assert.deepEqual(fromPrimitive, { metadata: { finalizers: ['b'] } });
});

test('server-side apply removes what the same manager applied before and no longer applies', () => {
  const keys = resourceAt('', 'v1', 'services')!.mergeKeys;
  const config1 = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: '1', b: '2' } }, spec: { ports: [{ port: 80 }, { port: 81 }] } } as Obj;
  const first = applyConfig(undefined, config1, 'kubectl', keys, 'v1');
  // Another writer adds a label; the next apply must keep it.
  (first.metadata.labels as Record<string, string>).other = 'x';
  const config2 = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', labels: { a: '1' } }, spec: { ports: [{ port: 81, name: 'b' }] } } as Obj;
  const second = applyConfig(first, config2, 'kubectl', keys, 'v1');
  assert.deepEqual(second.metadata.labels, { a: '1', other: 'x' });
  assert.deepEqual((second.spec as { ports: unknown[] }).ports, [{ port: 81, name: 'b' }]);
  const managed = second.metadata.managedFields as { manager: string; operation: string; fieldsV1: Record<string, unknown> }[];
  assert.equal(managed.length, 1);
  assert.equal(managed[0]!.operation, 'Apply');
  assert.deepEqual(Object.keys((managed[0]!.fieldsV1['f:spec'] as Record<string, Record<string, unknown>>)['f:ports']!), ['k:{"port":81}']);
});

function rbacStore(): Store {
  const store = new Store();
  store.put('clusterroles.rbac.authorization.k8s.io', { metadata: { name: 'reader' }, rules: [
    { apiGroups: [''], resources: ['services', 'pods/status'], verbs: ['get', 'list', 'watch'] },
    { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list'], resourceNames: [] },
    { apiGroups: [''], resources: ['configmaps'], verbs: ['get'], resourceNames: ['cfg'] },
  ] });
  store.put('clusterrolebindings.rbac.authorization.k8s.io', { metadata: { name: 'reader' }, roleRef: { kind: 'ClusterRole', name: 'reader' }, subjects: [{ kind: 'ServiceAccount', name: 'tapir', namespace: 'kube-system' }] });
  store.put('roles.rbac.authorization.k8s.io', { metadata: { name: 'edit', namespace: 'apps' }, rules: [{ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }] });
  store.put('rolebindings.rbac.authorization.k8s.io', { metadata: { name: 'edit', namespace: 'apps' }, roleRef: { kind: 'Role', name: 'edit' }, subjects: [{ kind: 'Group', name: 'devs' }] });
  return store;
}

test('RBAC: bindings to service accounts and groups, subresources, resourceNames, namespaces, masters', () => {
  const rbac = new RbacAuthorizer(rbacStore());
  const sa: UserInfo = { name: 'system:serviceaccount:kube-system:tapir', uid: '1', groups: ['system:serviceaccounts', 'system:authenticated'] };
  const dev: UserInfo = { name: 'ann', uid: '2', groups: ['devs', 'system:authenticated'] };
  const admin: UserInfo = { name: 'root', uid: '3', groups: ['system:masters'] };
  const r = (verb: string, resource: string, namespace = '', name = '', subresource = '', group = '') => ({ verb, resource: { group, resource, subresource, name, namespace } });
  assert.equal(rbac.allowed(sa, r('list', 'services')), true);
  assert.equal(rbac.allowed(sa, r('delete', 'services', 'default', 'web')), false);
  assert.equal(rbac.allowed(sa, r('list', 'endpointslices', '', '', '', 'discovery.k8s.io')), true);
  assert.equal(rbac.allowed(sa, r('watch', 'endpointslices', '', '', '', 'discovery.k8s.io')), false);
  assert.equal(rbac.allowed(sa, r('get', 'pods', 'default', 'p', 'status')), true);
  assert.equal(rbac.allowed(sa, r('get', 'pods', 'default', 'p')), false);
  assert.equal(rbac.allowed(sa, r('get', 'configmaps', 'default', 'cfg')), true);
  assert.equal(rbac.allowed(sa, r('get', 'configmaps', 'default', 'other')), false);
  assert.equal(rbac.allowed(sa, r('list', 'configmaps', 'default')), false, 'resourceNames never grant a list');
  assert.equal(rbac.allowed(dev, r('delete', 'pods', 'apps', 'x')), true);
  assert.equal(rbac.allowed(dev, r('delete', 'pods', 'default', 'x')), false);
  assert.equal(rbac.allowed(dev, { verb: 'get', path: '/apis/discovery.k8s.io/v1' }), true, 'discovery for every authenticated user');
  assert.equal(rbac.allowed(admin, r('deletecollection', 'nodes')), true);
  assert.equal(forbiddenMessage(sa, r('list', 'pods', 'default')), 'pods is forbidden: User "system:serviceaccount:kube-system:tapir" cannot list resource "pods" in API group "" in the namespace "default"');
  assert.equal(forbiddenMessage(sa, r('watch', 'endpointslices', '', '', '', 'discovery.k8s.io')), 'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:kube-system:tapir" cannot watch resource "endpointslices" in API group "discovery.k8s.io" at the cluster scope');
  assert.equal(forbiddenMessage(sa, r('update', 'pods', 'ns', 'p', 'status')), 'pods "p" is forbidden: User "system:serviceaccount:kube-system:tapir" cannot update resource "pods/status" in API group "" in the namespace "ns"');
});

test('token file: users, service accounts with their groups, malformed lines named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-apiserver-'));
  try {
    const file = join(dir, 'tokens.csv');
    writeFileSync(file, 'tok1,kubernetes-admin,u1,"system:masters"\n# comment\ntok2,system:serviceaccount:kube-system:tapir,u2\n');
    const tokens = readTokenFile(file);
    assert.deepEqual(tokens.get('tok1'), { name: 'kubernetes-admin', uid: 'u1', groups: ['system:masters', 'system:authenticated'] });
    assert.deepEqual(tokens.get('tok2')!.groups, ['system:serviceaccounts', 'system:serviceaccounts:kube-system', 'system:authenticated']);
    writeFileSync(file, 'tok1\n');
    assert.throws(() => readTokenFile(file), /tokens.csv: line 1: expected token,user,uid/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('store: history for resuming watches, 410 after compaction, journal replay keeps objects and versions', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-apiserver-'));
  try {
    const journal = join(dir, 'journal.jsonl');
    const store = new Store(journal);
    const seen: Change[] = [];
    store.addWatcher({ res: 'pods', deliver: (c) => seen.push(c), close: () => {}, stall: () => {} });
    store.put('pods', { metadata: { name: 'a', namespace: 'ns' } });
    store.put('services', { metadata: { name: 's', namespace: 'ns' } });
    store.put('pods', { metadata: { name: 'a', namespace: 'ns', labels: { x: 'y' } } });
    store.remove('pods', 'ns', 'a');
    assert.deepEqual(seen.map((c) => `${c.type} ${c.rv}`), ['ADDED 1', 'MODIFIED 3', 'DELETED 4']);
    assert.deepEqual(store.changesSince('pods', 1)!.map((c) => c.rv), [3, 4]);
    store.compact();
    assert.equal(store.changesSince('pods', 3), undefined, 'compacted: 410 Gone');
    assert.deepEqual(store.changesSince('pods', 4), []);
    store.put('pods', { metadata: { name: 'b', namespace: 'ns' } });
    // A torn last line (a crash mid-write) is ignored on replay.
    writeFileSync(journal, '{"rv":99,"res":"po', { flag: 'a' });
    const again = new Store(journal);
    assert.equal(again.resourceVersion, 5);
    assert.deepEqual(again.list('pods').map((o) => o.metadata.name), ['b']);
    assert.equal(again.get('services', 'ns', 's')!.metadata.resourceVersion, '2');
    assert.equal(again.changesSince('pods', 4), undefined, 'a restarted server has no history');
    // The start rewrote the journal: one put per live object and the counter.
    assert.equal(readFileSync(journal, 'utf8').trim().split('\n').length, 3);
    again.remove('pods', 'ns', 'b');
    again.close();
    const third = new Store(journal);
    assert.equal(third.resourceVersion, 6, 'the counter survives a delete as the newest change');
    assert.deepEqual(third.list('pods'), []);
    third.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function handlers(): ObjectHandlers {
  const store = new Store();
  const h = new ObjectHandlers(store, new ServiceAllocator(parseCidr('10.96.0.0/24')!, { min: 30000, max: 30002 }));
  h.create(req('namespaces', ''), { metadata: { name: 'default' } });
  return h;
}

function req(resource: string, namespace = 'default', name = '', subresource = '', query = ''): ResourceRequest {
  const info = resourceAt(resource === 'endpointslices' ? 'discovery.k8s.io' : '', 'v1', resource)!;
  return { info, namespace, name, subresource, query: new URLSearchParams(query) };
}

function reasonOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ApiError) return `${err.reason}: ${err.message}`;
    throw err;
  }
  return 'no error';
}

test('verbs: create defaults and allocates, AlreadyExists, Conflict on a stale resourceVersion, Invalid with causes', () => {
  const h = handlers();
  const svc = h.create(req('services'), { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { type: 'NodePort', selector: { app: 'web' }, ports: [{ port: 80 }] } });
  const spec = svc.spec as { clusterIP: string; ports: { nodePort: number; targetPort: number; protocol: string }[] };
  assert.match(spec.clusterIP, /^10\.96\.0\.\d+$/);
  assert.notEqual(spec.clusterIP, '10.96.0.1', 'the first address is the kubernetes Service\'s');
  assert.ok(spec.ports[0]!.nodePort >= 30000 && spec.ports[0]!.nodePort <= 30002);
  assert.equal(spec.ports[0]!.targetPort, 80);
  assert.equal(spec.ports[0]!.protocol, 'TCP');
  assert.match(String(svc.metadata.uid), /^[0-9a-f-]{36}$/);
  assert.match(reasonOf(() => h.create(req('services'), { metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } })), /^AlreadyExists: services "web" already exists$/);
  assert.match(reasonOf(() => h.create(req('services', 'nope'), { metadata: { name: 'x' }, spec: { ports: [{ port: 80 }] } })), /^NotFound: namespaces "nope" not found$/);
  const stale = { ...svc, metadata: { ...svc.metadata, resourceVersion: '1' } };
  assert.match(reasonOf(() => h.update(req('services', 'default', 'web'), stale)), /^Conflict: Operation cannot be fulfilled on services "web": the object has been modified/);
  const invalid = reasonOf(() => h.create(req('services'), { metadata: { name: 'bad' }, spec: { ports: [{ port: 70000 }] } }));
  assert.match(invalid, /^Invalid: Service "bad" is invalid: spec.ports\[0\].port: /);
  // Two more node ports exhaust the range of three: the third request fails, and nothing leaks.
  h.create(req('services'), { metadata: { name: 'two' }, spec: { type: 'NodePort', ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] } });
  assert.match(reasonOf(() => h.create(req('services'), { metadata: { name: 'three' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } })), /nodePort: Internal error: range is full/);
  h.delete(req('services', 'default', 'two'), undefined);
  h.create(req('services'), { metadata: { name: 'three' }, spec: { type: 'NodePort', ports: [{ port: 80 }] } });
  // generateName.
  const gen = h.create(req('configmaps'), { metadata: { generateName: 'cfg-' }, data: {} });
  assert.match(String(gen.metadata.name), /^cfg-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
  // An update that changes nothing keeps the resourceVersion (no event for watches).
  const current = h.get(req('services', 'default', 'web'));
  assert.equal(h.update(req('services', 'default', 'web'), current).metadata.resourceVersion, current.metadata.resourceVersion);
});

test('verbs: graceful pod deletion, finalizers, binding, status subresource, list pages', async () => {
  const h = handlers();
  const pod = { metadata: { name: 'p' }, spec: { containers: [{ name: 'c' }] } };
  h.create(req('pods'), pod);
  assert.equal(h.get(req('pods', 'default', 'p')).metadata.generation, 1);
  h.create(req('pods', 'default', 'p', 'binding'), { target: { kind: 'Node', name: 'n1' } });
  assert.equal((h.get(req('pods', 'default', 'p')).spec as { nodeName: string }).nodeName, 'n1');
  assert.match(reasonOf(() => h.create(req('pods', 'default', 'p', 'binding'), { target: { name: 'n2' } })), /already assigned to node "n1"/);
  h.update(req('pods', 'default', 'p', 'status'), { ...h.get(req('pods', 'default', 'p')), status: { phase: 'Running', podIP: '10.244.0.5' } });
  const main = h.get(req('pods', 'default', 'p'));
  h.update(req('pods', 'default', 'p'), { ...main, status: { phase: 'Failed' } });
  assert.equal((h.get(req('pods', 'default', 'p')).status as { phase: string }).phase, 'Running', 'the main resource does not write status');
  // Graceful: marked first, gone after the grace period.
  const marked = h.delete(req('pods', 'default', 'p', '', 'gracePeriodSeconds=1'), undefined);
  assert.equal(typeof marked.metadata.deletionTimestamp, 'string');
  assert.equal(marked.metadata.deletionGracePeriodSeconds, 1);
  assert.notEqual(h.store.get('pods', 'default', 'p'), undefined);
  await new Promise((r) => setTimeout(r, 1300));
  assert.equal(h.store.get('pods', 'default', 'p'), undefined);
  // The kubelet's confirmation (grace 0) removes at once.
  h.create(req('pods'), { ...pod, spec: { ...pod.spec, nodeName: 'n1' } });
  h.delete(req('pods', 'default', 'p'), undefined);
  h.delete(req('pods', 'default', 'p'), { gracePeriodSeconds: 0 });
  assert.equal(h.store.get('pods', 'default', 'p'), undefined);
  // Finalizers hold an object until they are removed.
  h.create(req('configmaps'), { metadata: { name: 'held', finalizers: ['example.com/x'] } });
  h.delete(req('configmaps', 'default', 'held'), undefined);
  const held = h.get(req('configmaps', 'default', 'held'));
  assert.equal(typeof held.metadata.deletionTimestamp, 'string');
  h.patch(req('configmaps', 'default', 'held'), 'application/merge-patch+json', { metadata: { finalizers: null } });
  assert.equal(h.store.get('configmaps', 'default', 'held'), undefined);
  // Pages.
  for (const n of ['a', 'b', 'c', 'd', 'e']) h.create(req('configmaps'), { metadata: { name: n, labels: { keep: n === 'c' ? 'no' : 'yes' } } });
  const names: string[] = [];
  let token = '';
  for (let i = 0; i < 5; i++) {
    const page = h.list(req('configmaps', 'default', '', '', `limit=2&labelSelector=keep%3Dyes${token === '' ? '' : `&continue=${token}`}`));
    names.push(...page.items.map((o) => String(o.metadata.name)));
    token = page.continueToken;
    if (token === '') break;
  }
  assert.deepEqual(names, ['a', 'b', 'd', 'e']);
});

test('deleting a namespace deletes what is in it, and only that', () => {
  const h = handlers();
  h.create(req('namespaces', ''), { metadata: { name: 'apps' } });
  h.create(req('configmaps', 'apps'), { metadata: { name: 'a' } });
  h.create(req('pods', 'apps'), { metadata: { name: 'p' }, spec: { nodeName: 'n1', containers: [{ name: 'c' }] } });
  h.create(req('configmaps'), { metadata: { name: 'a' } });
  h.delete(req('namespaces', '', 'apps'), undefined);
  assert.equal(h.store.get('namespaces', '', 'apps'), undefined);
  assert.deepEqual(h.store.list('configmaps').map((o) => `${o.metadata.namespace}/${o.metadata.name}`), ['default/a']);
  assert.deepEqual(h.store.list('pods'), []);
});

test('EndpointSlice controller: slices follow Services and their pods; quiet when nothing changed; hand-written slices stay', async () => {
  const { EndpointSliceController } = await import('../src/lab/apiserver/controllers.ts');
  const h = handlers();
  const controller = new EndpointSliceController(h);
  const settle = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(r)));
  try {
    h.create(req('nodes', ''), { metadata: { name: 'n1', labels: { 'topology.kubernetes.io/zone': 'z1' } } });
    h.create(req('services'), { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } });
    const pod = (name: string, ip: string, ready: boolean) => ({
      metadata: { name, labels: { app: 'web' } },
      spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
      status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
    });
    h.create(req('pods'), pod('web-1', '10.244.1.5', true));
    h.create(req('pods'), pod('web-2', '10.244.1.4', false));
    h.create(req('pods'), { ...pod('other', '10.244.1.9', true), metadata: { name: 'other', labels: { app: 'db' } } });
    await settle();
    const slices = (): Obj[] => h.store.list('endpointslices.discovery.k8s.io', 'default');
    assert.equal(slices().length, 1);
    const slice = slices()[0]!;
    assert.deepEqual(slice.metadata.labels, { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' });
    assert.deepEqual(slice.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    assert.deepEqual((slice.endpoints as { addresses: string[]; conditions: { ready: boolean }; zone: string }[]).map((e) => `${e.addresses[0]} ${e.conditions.ready} ${e.zone}`), ['10.244.1.4 false z1', '10.244.1.5 true z1']);
    // A change elsewhere syncs again, but an unchanged slice keeps its version.
    const rv = slice.metadata.resourceVersion;
    h.create(req('configmaps'), { metadata: { name: 'unrelated' } });
    h.patch(req('services', 'default', 'web'), 'application/merge-patch+json', { metadata: { labels: { touched: 'yes' } } });
    await settle();
    assert.equal(slices()[0]!.metadata.resourceVersion, rv);
    // web-2 turns ready; web-1 goes.
    h.update(req('pods', 'default', 'web-2', 'status'), { ...h.get(req('pods', 'default', 'web-2')), status: pod('web-2', '10.244.1.4', true).status });
    h.delete(req('pods', 'default', 'web-1', '', 'gracePeriodSeconds=0'), undefined);
    await settle();
    assert.deepEqual((slices()[0]!.endpoints as { addresses: string[]; conditions: { ready: boolean } }[]).map((e) => `${e.addresses[0]} ${e.conditions.ready}`), ['10.244.1.4 true']);
    // A hand-written slice of a selectorless Service stays; the controller's go with their Service.
    h.create(req('services'), { metadata: { name: 'manual' }, spec: { ports: [{ port: 80 }] } });
    h.create(req('endpointslices'), { metadata: { name: 'manual-1', labels: { 'kubernetes.io/service-name': 'manual' } }, addressType: 'IPv4', endpoints: [{ addresses: ['192.0.2.1'] }], ports: [{ port: 80 }] });
    h.delete(req('services', 'default', 'web'), undefined);
    await settle();
    assert.deepEqual(slices().map((s) => s.metadata.name), ['manual-1']);
  } finally {
    controller.stop();
  }
});

test('scheduler: pending pods go to the least loaded schedulable node whose taints they tolerate', async () => {
  const { Scheduler } = await import('../src/lab/apiserver/controllers.ts');
  const h = handlers();
  const settle = (): Promise<void> => new Promise((r) => setImmediate(() => setImmediate(r)));
  h.create(req('nodes', ''), { metadata: { name: 'n1' } });
  h.create(req('nodes', ''), { metadata: { name: 'n2' } });
  h.create(req('nodes', ''), { metadata: { name: 'n3' }, spec: { unschedulable: true } });
  h.create(req('nodes', ''), { metadata: { name: 'n4' }, spec: { taints: [{ key: 'gpu', value: 'yes', effect: 'NoSchedule' }] } });
  const pod = (name: string, extra: Record<string, unknown> = {}) => ({ metadata: { name }, spec: { containers: [{ name: 'c' }], ...extra } });
  h.create(req('pods'), pod('bound-a', { nodeName: 'n1' }));
  h.create(req('pods'), pod('bound-b', { nodeName: 'n1' }));
  const scheduler = new Scheduler(h);
  try {
    h.create(req('pods'), pod('p1'));
    await settle();
    h.create(req('pods'), pod('p2'));
    h.create(req('pods'), pod('gpu', { tolerations: [{ key: 'gpu', operator: 'Equal', value: 'yes', effect: 'NoSchedule' }] }));
    await settle();
    const nodeOf = (name: string): string => String((h.get(req('pods', 'default', name)).spec as { nodeName?: string }).nodeName);
    assert.equal(nodeOf('p1'), 'n2', 'n1 runs two pods already');
    assert.equal(nodeOf('p2'), 'n2', 'n1 has 2, n2 has 1: still n2');
    assert.equal(nodeOf('gpu'), 'n4', 'the only node with nothing on it that it tolerates');
    h.patch(req('nodes', '', 'n1'), 'application/merge-patch+json', { spec: { unschedulable: true } });
    h.patch(req('nodes', '', 'n2'), 'application/merge-patch+json', { spec: { unschedulable: true } });
    h.create(req('pods'), pod('stuck'));
    await settle();
    assert.equal(nodeOf('stuck'), 'undefined', 'no node fits: it stays pending');
  } finally {
    scheduler.stop();
  }
});

test('allocation keeps the static bands (KEP-3070, KEP-3668): random picks stay above them until the rest is taken', () => {
  const store = new Store();
  // A /24: 254 host addresses, the first 16 offsets static; node ports 30000-30099: 16 static.
  const h = new ObjectHandlers(store, new ServiceAllocator(parseCidr('10.96.0.0/24')!, { min: 30000, max: 30099 }));
  h.create(req('namespaces', ''), { metadata: { name: 'default' } });
  const ips: number[] = [];
  const ports: number[] = [];
  for (let i = 0; i < 238; i++) {
    const svc = h.create(req('services'), { metadata: { name: `s${i}` }, spec: { ...(i < 84 ? { type: 'NodePort' } : {}), ports: [{ port: 80 }] } });
    const spec = svc.spec as { clusterIP: string; ports: { nodePort?: number }[] };
    ips.push(Number(spec.clusterIP.split('.')[3]));
    if (i < 84) ports.push(spec.ports[0]!.nodePort!);
  }
  // 2..16 and 30000..30015 are left while anything above is free (offset 1 is the kubernetes Service's).
  assert.ok(ips.every((o) => o > 16), `random picks above the static band: ${ips.filter((o) => o <= 16).join(', ')}`);
  assert.ok(ports.every((p) => p >= 30016), `node ports above the static band: ${ports.filter((p) => p < 30016).join(', ')}`);
  // A Service that asks for a static address by name gets it.
  const named = h.create(req('services'), { metadata: { name: 'named' }, spec: { clusterIP: '10.96.0.7', type: 'NodePort', ports: [{ port: 80, nodePort: 30005 }] } });
  assert.equal((named.spec as { clusterIP: string }).clusterIP, '10.96.0.7');
  // The dynamic band is full (offsets 17-254 taken): the next random pick falls back to the static band.
  const next = h.create(req('services'), { metadata: { name: 'overflow' }, spec: { ports: [{ port: 80 }] } });
  const offset = Number((next.spec as { clusterIP: string }).clusterIP.split('.')[3]);
  assert.ok(offset >= 2 && offset <= 16 && offset !== 7, `from the static band once the rest is taken: ${offset}`);
});

// The lab API server against real clients: kubectl 1.34 (discovery, OpenAPI, get with
// server-side tables, apply client-side then server-side, delete, watch, auth can-i, RBAC
// errors) and a raw HTTPS client for watch semantics (resourceVersion, bookmarks, 410
// Gone), fault injection and a restart from the journal. The server runs as `tapir lab
// apiserver` in a child process on 127.0.0.1 (one listener inherited from this process).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ApiServerProcess } from './helpers/apiserver.ts';

const api = new ApiServerProcess();
before(async () => { await api.start(); });
after(async () => { await api.cleanup(); });

const NODES = `
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {topology.kubernetes.io/zone: zone-a}
spec: {podCIDR: 10.244.1.0/24, podCIDRs: [10.244.1.0/24]}
status:
  addresses: [{type: InternalIP, address: 192.168.50.1}]
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Node
metadata: {name: node-b}
spec: {podCIDR: 10.244.2.0/24}
status:
  addresses: [{type: InternalIP, address: 192.168.50.2}]
  conditions: [{type: Ready, status: "False"}]
`;

function web(port: number, labels: string, extraPort = ''): string {
  return `
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {${labels}}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: ${port}, targetPort: 8080}
${extraPort}---
apiVersion: v1
kind: Pod
metadata:
  name: web-1
  labels: {app: web}
spec:
  nodeName: node-a
  containers:
  - name: web
    image: tapir/echo
    ports: [{containerPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
  nodeName: node-a
ports: [{name: http, port: 8080, protocol: TCP}]
`;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function getJson(args: string[]): Promise<any> {
  return JSON.parse(await api.ok([...args, '-o', 'json']));
}

test('kubectl: version, discovery, nodes and pods -o wide from server-side tables', async () => {
  assert.match(await api.ok(['version']), /Server Version: v1\.34\.0-tapir-lab/);
  const resources = await api.ok(['api-resources']);
  assert.match(resources, /^endpointslices\s+discovery\.k8s\.io\/v1\s+true\s+EndpointSlice$/m);
  assert.match(resources, /^pods\s+po\s+v1\s+true\s+Pod$/m);
  assert.match(resources, /^clusterroles\s+rbac\.authorization\.k8s\.io\/v1\s+false\s+ClusterRole$/m);
  assert.match(await api.ok(['apply', '-f', '-'], NODES), /node\/node-a created\nnode\/node-b created/);
  const nodes = await api.ok(['get', 'nodes', '-o', 'wide']);
  assert.match(nodes, /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP/);
  assert.match(nodes, /^node-a\s+Ready\s+<none>\s+\d+s\s+192\.168\.50\.1/m);
  assert.match(nodes, /^node-b\s+NotReady\s/m);
  assert.match(await api.ok(['get', 'ns']), /^kube-system\s+Active/m);
});

test('kubectl apply: client-side, a change re-applied, then --server-side; get, endpointslices, delete', async () => {
  assert.match(await api.ok(['apply', '-f', '-'], web(80, 'app: web, tier: front')), /service\/web created\npod\/web-1 created\nendpointslice.discovery.k8s.io\/web-abcde created/);
  const svc = await getJson(['get', 'svc', 'web']);
  assert.match(svc.spec.clusterIP, /^10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+$/, 'allocated from 10.96.0.0/12');
  const nodePort = svc.spec.ports[0].nodePort;
  assert.ok(nodePort >= 30000 && nodePort <= 32767);
  const pods = await api.ok(['get', 'pods', '-o', 'wide']);
  assert.match(pods, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\s+IP\s+NODE/);
  assert.match(pods, /^web-1\s+0\/1\s+Pending\s+0\s+\d+s\s+<none>\s+node-a/m);
  assert.match(await api.ok(['get', 'endpointslices']), /^web-abcde\s+IPv4\s+8080\s+10\.244\.1\.5\s/m);

  // Changed port, one label less, one port more: kubectl sends a strategic merge patch.
  const changed = await api.ok(['apply', '-f', '-'], web(81, 'app: web', '  - {name: metrics, port: 9090}\n'));
  assert.match(changed, /service\/web configured\npod\/web-1 unchanged\nendpointslice.discovery.k8s.io\/web-abcde unchanged/);
  const svc2 = await getJson(['get', 'svc', 'web']);
  assert.deepEqual(svc2.spec.ports.map((p: { port: number }) => p.port), [81, 9090]);
  assert.deepEqual(svc2.metadata.labels, { app: 'web' });
  assert.equal(svc2.spec.clusterIP, svc.spec.clusterIP, 'the cluster IP stays');
  assert.notEqual(svc2.metadata.resourceVersion, svc.metadata.resourceVersion);

  const ssa = await api.ok(['apply', '--server-side', '-f', '-'], web(82, 'app: web, tier: back'));
  assert.match(ssa, /service\/web serverside-applied/);
  const svc3 = await getJson(['get', 'svc', 'web', '--show-managed-fields']);
  assert.deepEqual(svc3.spec.ports.map((p: { port: number }) => p.port), [82], 'the dropped port is removed');
  assert.deepEqual(svc3.metadata.labels, { app: 'web', tier: 'back' });
  assert.ok(svc3.metadata.managedFields.some((m: { manager: string; operation: string }) => m.manager === 'kubectl' && m.operation === 'Apply'));

  // Invalid objects are refused with the field.
  const bad = await api.kubectl(['apply', '-f', '-'], 'admin', 'apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: 70000}]}\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /The Service "bad" is invalid: spec\.ports\[0\]\.port: /);

  // A scheduled pod is deleted gracefully: Terminating until its kubelet confirms (grace 0).
  assert.match(await api.ok(['delete', 'pod', 'web-1', '--wait=false']), /pod "web-1" deleted/);
  assert.match(await api.ok(['get', 'pod', 'web-1']), /^web-1\s+0\/1\s+Terminating/m);
  await api.ok(['delete', 'pod', 'web-1', '--grace-period=0', '--force']);
  assert.match((await api.kubectl(['get', 'pod', 'web-1'])).stderr, /pods "web-1" not found/);
  assert.match(await api.ok(['delete', 'svc', 'web']), /service "web" deleted/);
  assert.match((await api.kubectl(['get', 'svc', 'web'])).stderr, /Error from server \(NotFound\): services "web" not found/);
});

test('kubectl patch (JSON, merge, strategic), cordon, taint, replace, describe, get all, wait', async () => {
  await api.ok(['apply', '-f', '-'], web(80, 'app: web'));
  assert.match(await api.ok(['patch', 'svc', 'web', '--type=json', '-p', '[{"op":"replace","path":"/spec/ports/0/port","value":99}]']), /service\/web patched/);
  await api.ok(['patch', 'svc', 'web', '--type=merge', '-p', '{"metadata":{"labels":{"m":"1"}}}']);
  await api.ok(['patch', 'svc', 'web', '-p', '{"spec":{"type":"LoadBalancer"}}']);
  const svc = await getJson(['get', 'svc', 'web']);
  assert.equal(svc.spec.ports[0].port, 99);
  assert.equal(svc.metadata.labels.m, '1');
  assert.equal(svc.spec.type, 'LoadBalancer');
  assert.ok(svc.spec.ports[0].nodePort >= 30000, 'a LoadBalancer Service keeps its node port');
  assert.match(await api.ok(['get', 'svc', 'web']), /^web\s+LoadBalancer\s+\S+\s+<pending>\s+99:\d+\/TCP/m);
  assert.match(await api.ok(['wait', '--for=jsonpath={.spec.type}=LoadBalancer', 'svc/web', '--timeout=10s']), /condition met/);
  await api.ok(['cordon', 'node-a']);
  await api.ok(['taint', 'nodes', 'node-a', 'dedicated=lab:NoSchedule']);
  const node = await getJson(['get', 'node', 'node-a']);
  assert.equal(node.spec.unschedulable, true);
  assert.deepEqual(node.spec.taints, [{ key: 'dedicated', value: 'lab', effect: 'NoSchedule' }]);
  assert.match(await api.ok(['get', 'node', 'node-a']), /^node-a\s+Ready,SchedulingDisabled\s/m);
  await api.ok(['uncordon', 'node-a']);
  assert.match(await api.ok(['replace', '-f', '-'], web(80, 'app: web')), /service\/web replaced/);
  assert.match(await api.ok(['describe', 'svc', 'web']), /Selector:\s+app=web[\s\S]*Port:\s+http\s+80\/TCP/);
  const all = await api.ok(['get', 'all']);
  assert.match(all, /^pod\/web-1\s/m);
  assert.match(all, /^service\/web\s/m);
  assert.doesNotMatch(all, /namespace\//, 'only Pods and Services are in the "all" category');
  await api.ok(['delete', '-f', '-', '--grace-period=0', '--force'], web(80, 'app: web'));
});

test('kubectl get -w sees changes as they happen', async () => {
  await api.ok(['create', 'configmap', 'watched', '--from-literal=a=1']);
  const env = { ...process.env, KUBECONFIG: `${api.dir}/admin.kubeconfig`, HOME: api.dir };
  const { spawn } = await import('node:child_process');
  const { KUBECTL } = await import('./helpers/apiserver.ts');
  const watcher = spawn(KUBECTL, ['get', 'configmaps', '-w', '--output-watch-events'], { env });
  let out = '';
  watcher.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  try {
    const until = async (re: RegExp): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`kubectl get -w: no ${re} in ${JSON.stringify(out)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until(/ADDED\s+watched\s+1\s/);
    await api.ok(['label', 'configmap', 'watched', 'x=y']);
    await until(/MODIFIED\s+watched\s/);
    await api.ok(['delete', 'configmap', 'watched']);
    await until(/DELETED\s+watched\s/);
  } finally {
    watcher.kill();
  }
});

test('RBAC: the shipped ClusterRole allows what the agent needs, the rest is Forbidden in Kubernetes\' words', async () => {
  assert.equal((await api.kubectl(['get', 'services', '-A'], 'tapir')).code, 0);
  assert.equal((await api.kubectl(['get', 'endpointslices', '-A'], 'tapir')).code, 0);
  assert.equal((await api.kubectl(['get', 'nodes'], 'tapir')).code, 0);
  const pods = await api.kubectl(['get', 'pods'], 'tapir');
  assert.equal(pods.stderr.trim(), 'Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:kube-system:tapir" cannot list resource "pods" in API group "" in the namespace "default"');
  const nobody = await api.kubectl(['get', 'services'], 'nobody');
  assert.match(nobody.stderr, /services is forbidden: User "system:serviceaccount:default:nobody" cannot list resource "services" in API group "" in the namespace "default"/);
  assert.equal((await api.kubectl(['auth', 'can-i', 'watch', 'endpointslices.discovery.k8s.io'], 'tapir')).stdout.trim(), 'yes');
  assert.equal((await api.kubectl(['auth', 'can-i', 'get', 'endpointslices.discovery.k8s.io'], 'tapir')).stdout.trim(), 'no');
  assert.equal((await api.kubectl(['auth', 'can-i', 'create', 'events'], 'tapir')).stdout.trim(), 'yes');
  assert.match(await api.ok(['auth', 'whoami']), /kubernetes-admin[\s\S]*system:masters/);
  const wrong = await api.kubectl(['get', 'pods'], 'wrong');
  assert.match(wrong.stderr, /You must be logged in to the server \(Unauthorized\)/);
  // A rule added through the API takes effect at once.
  await api.ok(['create', 'role', 'pod-reader', '--verb=list', '--resource=pods']);
  await api.ok(['create', 'rolebinding', 'tapir-pods', '--role=pod-reader', '--serviceaccount=kube-system:tapir']);
  assert.equal((await api.kubectl(['get', 'pods'], 'tapir')).code, 0);
});

test('watch: resume from a resourceVersion, selectors, bookmarks, 410 Gone after compaction', async () => {
  const list = await api.api('GET', '/api/v1/namespaces/default/configmaps');
  const rv = String((list.body.metadata as { resourceVersion: string }).resourceVersion);
  const sel = api.watch(`/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${rv}&labelSelector=app%3Dweb&allowWatchBookmarks=true`);
  const all = api.watch(`/api/v1/watch/namespaces/default/configmaps?resourceVersion=${rv}`);
  try {
    const created = await api.api('POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'w1', labels: { app: 'web' } } });
    assert.equal(created.status, 201);
    await api.api('POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'w2', labels: { app: 'db' } } });
    await api.api('PATCH', '/api/v1/namespaces/default/configmaps/w1', { metadata: { labels: { app: 'other' } } }, undefined, 'application/merge-patch+json');
    await all.until((w) => w.events.length >= 3, 'three events');
    assert.deepEqual(all.events.map((e) => `${e.type} ${e.object.metadata?.name}`), ['ADDED w1', 'ADDED w2', 'MODIFIED w1']);
    // The selected watch sees w1 leave its selection as a DELETED, and a bookmark.
    await sel.until((w) => w.names('DELETED').length === 1 && w.events.some((e) => e.type === 'BOOKMARK'), 'DELETED and BOOKMARK');
    assert.deepEqual(sel.events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.object.metadata?.name}`), ['ADDED w1', 'DELETED w1']);
    // A watch from before the compaction is answered with a 410 Expired ERROR event.
    assert.deepEqual(Object.keys(await api.fault('compact')), ['compactedTo']);
    const old = api.watch(`/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${rv}`);
    await old.until((w) => w.ended, 'the end of a compacted watch');
    assert.equal(old.status, 200);
    assert.equal(old.events.length, 1);
    assert.equal(old.events[0]!.type, 'ERROR');
    assert.equal(old.events[0]!.object.code, 410);
    assert.equal(old.events[0]!.object.reason, 'Expired');
    // Watching without a version lists the current objects as ADDED first.
    const fresh = api.watch('/api/v1/namespaces/default/configmaps?watch=true&fieldSelector=metadata.name%3Dw2');
    await fresh.until((w) => w.events.length === 1, 'the initial ADDED');
    assert.deepEqual(fresh.names('ADDED'), ['w2']);
    fresh.close();
  } finally {
    sel.close();
    all.close();
  }
});

test('faults: close watches, 410 for the next watch, stall without closing, refuse connections for a while', async () => {
  const base = '/api/v1/namespaces/default/configmaps?watch=1';
  const open = api.watch(base);
  await open.until((w) => w.status === 200, 'the watch\'s headers');
  assert.ok(((await api.fault('close-watches')).closed as number) >= 1);
  await open.until((w) => w.ended, 'the closed watch');

  await api.fault('expire-next-watch');
  const expired = api.watch(base);
  await expired.until((w) => w.ended, 'the expired watch');
  assert.equal(expired.events[0]!.object.code, 410);
  const after = api.watch(base);
  await after.until((w) => w.names('ADDED').length > 0, 'a normal watch after the expired one');

  const version = async (): Promise<string> => String(((await api.api('GET', '/api/v1/namespaces/default/configmaps')).body.metadata as { resourceVersion: string }).resourceVersion);
  const stalled = api.watch(`${base}&resourceVersion=${await version()}`);
  await stalled.until((w) => w.status === 200, 'the stalled watch\'s headers');
  await api.fault('stall-watches');
  const live = api.watch(`${base}&resourceVersion=${await version()}`);
  await live.until((w) => w.status === 200, 'the live watch\'s headers');
  await api.api('POST', '/api/v1/namespaces/default/configmaps', { metadata: { name: 'during-stall' } });
  await live.until((w) => w.names('ADDED').includes('during-stall'), 'the event on a new watch');
  // The store delivers to every watch in one go: the stalled one had its chance and stayed silent, and open.
  assert.deepEqual(stalled.names('ADDED'), []);
  assert.equal(stalled.ended, false);
  stalled.close();
  live.close();
  after.close();

  await api.fault('refuse', { seconds: 3 });
  // The server's own listener is closed: refused, as a server that is down. The inherited
  // one (kubectl's) cannot be closed and reopened: it resets connections instead.
  await assert.rejects(api.api('GET', '/version'), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
  // (A write: client-go retries a GET on a reset connection until the refusal is over.)
  const during = await api.kubectl(['create', 'configmap', 'during-refusal']);
  assert.notEqual(during.code, 0);
  assert.match(during.stderr, /connection reset by peer|EOF/);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      assert.equal((await api.api('GET', '/version')).status, 200);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
});

test('restart: objects and versions survive in the journal; watches from before get 410', async () => {
  await api.ok(['create', 'configmap', 'kept', '--from-literal=k=v']);
  const before = await getJson(['get', 'configmap', 'kept']);
  await api.stop();
  await api.start();
  const after = await getJson(['get', 'configmap', 'kept']);
  assert.equal(after.metadata.uid, before.metadata.uid);
  assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion);
  assert.deepEqual(after.data, { k: 'v' });
  const old = api.watch(`/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=${Number(before.metadata.resourceVersion) - 1}`);
  await old.until((w) => w.ended, 'the end of a pre-restart watch');
  assert.equal(old.events[0]!.object.code, 410);
  // RBAC objects were bootstrapped once, not duplicated.
  assert.match(await api.ok(['get', 'clusterrolebinding', 'tapir']), /^tapir\s+ClusterRole\/tapir/m);
});

test('@kubernetes/client-node with in-cluster config: informers list, watch, and relist after a compacted restart of their watch', async () => {
  const { KubeConfig, CoreV1Api, DiscoveryV1Api, makeInformer } = await import('@kubernetes/client-node');
  const { writeServiceAccountFiles } = await import('../src/lab/apiserver/kubeconfig.ts');
  const { TOKENS } = await import('./helpers/apiserver.ts');
  const root = `${api.dir}/pod-root`;
  writeServiceAccountFiles(root, TOKENS.tapir, api.caFile, 'kube-system');
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
  process.env.KUBERNETES_SERVICE_PORT = new URL(api.server).port;
  const kc = new KubeConfig();
  try {
    kc.loadFromCluster(root);
  } finally {
    process.env.KUBERNETES_SERVICE_HOST = saved.host;
    process.env.KUBERNETES_SERVICE_PORT = saved.port;
    if (saved.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    if (saved.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
  }
  const core = kc.makeApiClient(CoreV1Api);
  const discovery = kc.makeApiClient(DiscoveryV1Api);
  // kube-proxy's selector on Services and EndpointSlices.
  const selector = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';
  const services = makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces({ labelSelector: selector }), selector);
  const slices = makeInformer(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => discovery.listEndpointSliceForAllNamespaces({ labelSelector: selector }), selector);
  const errors: unknown[] = [];
  services.on('error', (err) => errors.push(err));
  slices.on('error', (err) => errors.push(err));
  const names = (): string[] => services.list().map((s) => `${s.metadata?.namespace}/${s.metadata?.name}`).sort();
  const until = async (what: string, done: () => boolean): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while (!done()) {
      if (Date.now() > deadline) throw new Error(`informer: timed out waiting for ${what}; services: ${names().join(' ')}; errors: ${errors.map(String).join('; ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await services.start();
  await slices.start();
  try {
    await api.ok(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: {name: inf-a}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: inf-other, labels: {service.kubernetes.io/service-proxy-name: other}}\nspec: {ports: [{port: 80}]}\n');
    await until('inf-a', () => names().includes('default/inf-a'));
    assert.ok(!names().includes('default/inf-other'), 'services of another proxy are not selected');
    // The watches end and history is gone: the informers must relist (410) and catch up.
    await api.fault('compact');
    await api.fault('expire-next-watch', { count: 2 });
    await api.fault('close-watches');
    await api.ok(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: {name: inf-b}\nspec: {ports: [{port: 80}]}\n');
    await api.ok(['delete', 'service', 'inf-a']);
    await until('inf-b without inf-a', () => names().includes('default/inf-b') && !names().includes('default/inf-a'));
    assert.deepEqual(errors, []);
  } finally {
    await services.stop();
    await slices.stop();
  }
});

test('the lab\'s client: create, server-side apply, delete, errors with the server\'s message', async () => {
  const { LabApiClient } = await import('../src/lab/apiserver/client.ts');
  const { TOKENS } = await import('./helpers/apiserver.ts');
  const client = new LabApiClient(api.server, api.caFile, TOKENS.admin);
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'client-cm', namespace: 'default' }, data: { a: '1' } };
  assert.equal(await client.create(cm), true);
  assert.equal(await client.create(cm), false, 'AlreadyExists');
  const applied = await client.apply({ ...cm, data: { b: '2' } }, 'tapir-lab');
  assert.deepEqual(applied.data, { a: '1', b: '2' }, 'the first apply of a manager removes nothing it did not apply');
  const again = await client.apply({ ...cm, data: { c: '3' } }, 'tapir-lab');
  assert.deepEqual(again.data, { a: '1', c: '3' }, 'the manager\'s own b is removed, a stays');
  assert.equal(await client.delete(cm), true);
  assert.equal(await client.delete(cm), false);
  await assert.rejects(client.must('GET', '/api/v1/namespaces/default/configmaps/client-cm'), /404 configmaps "client-cm" not found/);
  const sa = new LabApiClient(api.server, api.caFile, TOKENS.tapir);
  await assert.rejects(sa.create(cm), /403 configmaps is forbidden/);
  assert.equal((await client.request('GET', '/api/v1/namespaces/%zz/pods')).status, 400);
});

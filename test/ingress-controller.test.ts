// The Ingress controller (src/ingress/controller.ts) on its real sources: a manifest
// directory written as `lab apply` writes it, and the lab's Kubernetes API server (a
// child process, real kubectl). The proxy is a recording sink here (the proxy itself is
// tested with real clients in the lab tests): every configuration it is handed, in order.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { formatStatus } from '../src/cli/ingress.ts';
import { IngressController, type ControllerStatus } from '../src/ingress/controller.ts';
import { StatusServer } from '../src/ingress/status-server.ts';
import type { IngressConfig } from '../src/ingress/model.ts';
import { ApiServerProcess } from './helpers/apiserver.ts';
import { waitFor } from './helpers/netns.ts';

const tmp = mkdtempSync(join(tmpdir(), 'ting-controller-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(tmp, 'tls.key'),
  '-out', join(tmp, 'tls.crt'), '-days', '30', '-subj', '/CN=web.example.test', '-addext', 'subjectAltName=DNS:web.example.test'], { stdio: 'ignore' });
const b64 = (f: string): string => readFileSync(join(tmp, f)).toString('base64');

class Recorder {
  configs: IngressConfig[] = [];
  logs: string[] = [];
  setConfig(c: IngressConfig): void { this.configs.push(c); }
  get last(): IngressConfig { return this.configs.at(-1)!; }
  log = (level: string, m: string): void => { this.logs.push(`${level}: ${m}`); };
  routes(): string[] {
    return this.last.hosts.flatMap((h) => h.paths.map((p) => `${h.host} ${p.path} -> ${p.backend.name} ${p.backend.endpoints.map((e) => `${e.ip}:${e.port}`).join(',')}`));
  }
}

const CLASS = `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: tapir, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: tapir.dev/ingress-controller}
`;
const SERVICE = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {clusterIP: 10.96.0.100, selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
`;
const SLICE = (ips: string[]): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [${ips.map((ip) => `{addresses: [${ip}]}`).join(', ')}]
`;
const INGRESS = (name: string, host: string, path: string, extra = ''): string => `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ${name}, namespace: default}
spec:
${extra}  rules:
    - host: ${host}
      http:
        paths: [{path: "${path}", pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]
`;
const SECRET = `apiVersion: v1
kind: Secret
metadata: {name: web-tls, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64('tls.crt')}, tls.key: ${b64('tls.key')}}
`;

test('manifest mode: the first configuration after the first read; Ingress, endpoint and Secret changes apply without a restart; a bad Ingress is logged once while the rest serves', async () => {
  const dir = mkdtempSync(join(tmp, 'manifests-'));
  const write = (file: string, text: string): void => {
    writeFileSync(join(dir, `.${file}`), text);
    renameSync(join(dir, `.${file}`), join(dir, file));
  };
  write('class.yaml', CLASS);
  // Manifest mode derives endpoints from Pods as the agent does; a hand-written slice also counts.
  write('web.yaml', `${SERVICE}---\n${SLICE(['10.244.1.2'])}`);
  write('ing.yaml', INGRESS('web', 'web.example.test', '/'));
  const rec = new Recorder();
  // HeapTrim is told of every configuration the proxy gets, and stopped with the controller.
  const trim = { syncs: 0, stopped: 0, afterSync(): void { assert.equal(this.syncs + 1, rec.configs.length, 'after the sink has it'); this.syncs++; }, stop(): void { this.stopped++; } };
  const c = new IngressController({ source: { manifests: dir }, className: 'tapir', publishService: null, sink: rec, log: rec.log, heapTrim: trim });
  try {
    await c.start();
    assert.deepEqual(rec.routes(), ['web.example.test / -> default/web:80 10.244.1.2:8080']);
    assert.equal(rec.configs.length, 1, 'one configuration at start');

    write('web.yaml', `${SERVICE}---\n${SLICE(['10.244.1.2', '10.244.2.3'])}`);
    await waitFor(() => rec.routes()[0]!.endsWith('10.244.1.2:8080,10.244.2.3:8080'), 10_000);

    write('ing.yaml', `${INGRESS('web', 'web.example.test', '/', '  tls: [{hosts: [web.example.test], secretName: web-tls}]\n')}---\n${INGRESS('bad', 'web.example.test', 'nope')}`);
    await waitFor(() => rec.logs.some((l) => /\(Ingress default\/bad\): spec\.rules\[0\]\.http\.paths\[0\]\.path: "nope" must start with "\/"/.test(l)), 10_000);
    await waitFor(() => rec.logs.some((l) => /Secret default\/web-tls does not exist/.test(l)), 10_000);
    assert.equal(rec.last.hosts[0]!.tls, null);
    write('secret.yaml', SECRET);
    await waitFor(() => rec.last.hosts[0]!.tls === 'default/web-tls', 10_000);
    assert.equal(rec.last.certificates.get('default/web-tls')!.certPem, readFileSync(join(tmp, 'tls.crt'), 'utf8'));
    assert.equal(rec.last.hosts[0]!.paths[0]!.options.sslRedirect, true);
    await c.flush();
    assert.equal(rec.logs.filter((l) => l.includes('"nope" must start')).length, 1, 'a problem is logged once while it lasts');

    // The controller's own endpoints, and what `tapir ingress status` prints of them.
    const server = new StatusServer({ status: () => c.status(), healthy: () => c.status().configAt > 0 });
    await server.listen(0, '127.0.0.1');
    try {
      const base = `http://127.0.0.1:${server.port}`;
      assert.equal((await fetch(`${base}/healthz`)).status, 200);
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /^tapir_ingress_controller_ingresses\{served="true"\} 2$/m);
      assert.match(metrics, /^tapir_ingress_controller_problems 1$/m);
      const text = formatStatus(await (await fetch(`${base}/status`)).json() as ControllerStatus);
      assert.match(text, /^default\/bad\s+yes\s+-\n {4}ing\.yaml: document 2 \(Ingress default\/bad\): spec\.rules\[0\]\.http\.paths\[0\]\.path: "nope" must start with "\/"/m, text);
    } finally {
      await server.close();
    }
    const s = c.status();
    assert.equal(s.synced, true);
    assert.deepEqual(s.ingresses.map((i) => [i.name, i.ours, i.problems.length]), [['default/bad', true, 1], ['default/web', true, 0]]);
    const generations = rec.configs.map((x) => x.generation);
    assert.deepEqual(generations, [...generations].sort((a, b) => a - b), 'generations increase');
    assert.deepEqual(rec.logs.filter((l) => /forbidden|cannot write|cannot record/i.test(l)), [], 'nothing was refused');
    assert.equal(trim.syncs, rec.configs.length, 'HeapTrim heard of every configuration');
  } finally {
    await c.stop();
  }
  assert.equal(trim.stopped, 1);
});

const api = new ApiServerProcess();
before(async () => { await api.start(); });
after(async () => { await api.cleanup(); });

test('cluster mode (with the RBAC of deploy/kubernetes/ingress): Ingresses from the API server, status.loadBalancer.ingress from the published Service (kubectl shows the address), an Event for a bad Ingress, a change applied without restart', async () => {
  await api.ok(['apply', '-f', '-'], `${CLASS}---\n${SERVICE}---\n${SLICE(['10.244.1.2'])}---
apiVersion: v1
kind: Namespace
metadata: {name: ingress-tapir}
---
apiVersion: v1
kind: Service
metadata: {name: ingress-tapir-controller, namespace: ingress-tapir}
spec: {type: LoadBalancer, selector: {app: ingress-tapir}, ports: [{name: http, port: 80}, {name: https, port: 443}]}
---
${INGRESS('web', 'web.example.test', '/')}---
${INGRESS('other-class', 'other.example.test', '/', '  ingressClassName: nginx\n')}`);
  // What the lab's load-balancer controller does.
  const lb = await api.api('PATCH', '/api/v1/namespaces/ingress-tapir/services/ingress-tapir-controller/status', { status: { loadBalancer: { ingress: [{ ip: '172.30.0.201' }] } } }, undefined, 'application/merge-patch+json');
  assert.equal(lb.status, 200, JSON.stringify(lb.body));

  // The controller runs with exactly the ClusterRole deploy/kubernetes/ingress ships (bound
  // to a service account of its own here): a rule missing there fails this test.
  const role = readFileSync(new URL('../deploy/kubernetes/ingress/ingress.yaml', import.meta.url), 'utf8').split(/^---$/m).find((d) => /^kind: ClusterRole$/m.test(d))!;
  await api.ok(['apply', '-f', '-'], `${role}---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ingress-tapir-test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ingress-tapir}
subjects: [{kind: ServiceAccount, name: nobody, namespace: default}]
`);
  // Two replicas, as one per node: both serve, one (the Lease's holder) writes.
  const replica = (identity: string, rec: Recorder): IngressController => new IngressController({
    source: { kubernetes: { kubeconfig: join(api.dir, 'nobody.kubeconfig') } }, className: 'tapir', publishService: 'ingress-tapir/ingress-tapir-controller', sink: rec, log: rec.log,
    election: { namespace: 'ingress-tapir', name: 'ingress-tapir-tapir', identity, leaseDurationMs: 3000, retryMs: 200 },
  });
  const rec = new Recorder();
  const other = new Recorder();
  const c = replica('one', rec);
  const c2 = replica('two', other);
  try {
    await c.start();
    await c2.start();
    await waitFor(() => c.status().leader !== c2.status().leader, 15_000);
    assert.deepEqual(other.routes(), rec.routes(), 'both replicas serve the same configuration');
    assert.deepEqual(rec.routes(), ['web.example.test / -> default/web:80 10.244.1.2:8080']);
    await waitFor(async () => (await api.ok(['get', 'ingress', 'web', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'])) === '172.30.0.201', 15_000);
    const table = await api.ok(['get', 'ingress']);
    assert.match(table, /web\s+<none>\s+web\.example\.test\s+172\.30\.0\.201\s+80/, table);
    assert.equal(await api.ok(['get', 'ingress', 'other-class', '-o', 'jsonpath={.status.loadBalancer.ingress}']), '', 'another class\'s Ingress gets no address');

    const t0 = performance.now();
    await api.ok(['apply', '-f', '-'], INGRESS('web', 'web.example.test', '/v2'));
    await waitFor(() => rec.routes()[0] === 'web.example.test /v2 -> default/web:80 10.244.1.2:8080', 15_000);
    console.log(`# an Ingress change (kubectl apply) to the proxy's new configuration: ${(performance.now() - t0).toFixed(0)} ms (kubectl included)`);

    await api.ok(['apply', '-f', '-'], INGRESS('broken', 'web.example.test', '/x', '').replace('name: web, port', 'name: missing, port'));
    await waitFor(async () => /Service default\/missing does not exist/.test(await api.ok(['get', 'events', '--field-selector', 'involvedObject.name=broken', '-o', 'jsonpath={.items[*].message}'])), 15_000);
    assert.deepEqual(rec.routes(), ['web.example.test /v2 -> default/web:80 10.244.1.2:8080', 'web.example.test /x -> default/missing:80 '], 'the bad rule is a 503 backend, the rest serves');
    await waitFor(() => other.routes().length === 2, 15_000);
    await c2.flush();
    await c.flush();
    const events = JSON.parse(await api.ok(['get', 'events', '--field-selector', 'involvedObject.name=broken', '-o', 'json'])) as { items: { message: string; reason: string; type: string }[] };
    assert.deepEqual(events.items.map((e) => [e.type, e.reason]), [['Warning', 'IngressProblem']], 'one Event for the problem, from the leader only');

    // The leader stops: the other replica takes the Lease over and does the writes from now on.
    const [leader, follower] = c.status().leader ? [c, c2] : [c2, c];
    await leader.stop();
    await waitFor(() => follower.status().leader, 15_000);
    // The class's default flag off: an Ingress without a class is no longer ours, and its address goes.
    await api.ok(['annotate', 'ingressclass', 'tapir', 'ingressclass.kubernetes.io/is-default-class=false', '--overwrite']);
    await waitFor(async () => (await api.ok(['get', 'ingress', 'web', '-o', 'jsonpath={.status.loadBalancer.ingress}'])) === '', 15_000);
    await waitFor(() => (follower === c ? rec : other).last.hosts.length === 0, 15_000);
    assert.deepEqual([...rec.logs, ...other.logs].filter((l) => /forbidden|cannot write|cannot record|leader election: (?!\w+ (leads|no longer leads))/i.test(l)), [], 'nothing was refused');
  } finally {
    await c.stop();
    await c2.stop();
  }
});

test('manifest mode: the published Service\'s load-balancer addresses of both families are the Ingresses\' addresses', async () => {
  const dir = mkdtempSync(join(tmp, 'manifests-dual-'));
  writeFileSync(join(dir, 'all.yaml'), `${CLASS}---\n${SERVICE}---\n${INGRESS('web', 'web.example.test', '/')}---
apiVersion: v1
kind: Service
metadata: {name: ingress-tapir-controller, namespace: ingress-tapir}
spec: {type: LoadBalancer, ipFamilyPolicy: PreferDualStack, selector: {app: ingress-tapir}, ports: [{name: http, port: 80}]}
status: {loadBalancer: {ingress: [{ip: "fd00:30::201"}, {ip: 172.30.0.201}]}}
`);
  const rec = new Recorder();
  const c = new IngressController({ source: { manifests: dir }, className: 'tapir', publishService: 'ingress-tapir/ingress-tapir-controller', sink: rec, log: rec.log });
  try {
    await c.start();
    const s = c.status();
    assert.deepEqual(s.addresses, ['172.30.0.201', 'fd00:30::201']);
    assert.deepEqual(s.ingresses.map((i) => [i.name, i.addresses]), [['default/web', ['172.30.0.201', 'fd00:30::201']]]);
  } finally {
    await c.stop();
  }
});

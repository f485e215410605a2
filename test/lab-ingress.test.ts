// The Ingress controller end to end in one lab (cluster mode, `tapir lab up --ingress`):
// real kubectl writes Ingresses, Secrets and Services into the lab API server; the
// controller Pods (`tapir ingress`, one per node) compile them and serve them; the lab's
// client sends real curl and openssl requests to the LoadBalancer address of
// ingress-tapir/ingress-tapir-controller, so every request crosses the agents' service
// NAT to a controller Pod and from there goes to an endpoint Pod. The built-in echo
// names the Pod that answered, which tells which rule matched: each backend Service
// here has exactly one endpoint Pod.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, request as undiciRequest } from 'undici';
import { parse as parseYaml } from 'yaml';
import { KUBECTL } from './helpers/apiserver.ts';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

const lab = new Lab('ting');
const home = mkdtempSync(join(tmpdir(), 'ting-ingress-'));
let lbIP = '';

function kubectl(...args: string[]): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}
function apply(yaml: string): void {
  execFileSync(KUBECTL, ['apply', '-f', '-'], { input: yaml, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

function certificate(name: string): { crt: string; key: string } {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(home, `${name}.key`),
    '-out', join(home, `${name}.crt`), '-days', '30', '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`], { stdio: 'ignore' });
  return { crt: readFileSync(join(home, `${name}.crt`), 'utf8'), key: readFileSync(join(home, `${name}.key`), 'utf8') };
}

interface Answer { code: number; pod: string; location: string; body: string }

/** One request from the lab's client to the controller's load-balancer address. */
function request(host: string, path: string, extra: string[] = []): Answer {
  const r = lab.run('client', 'curl', '-sS', '--max-time', '5', '-o', '-', '-w', '\n%{http_code} %{redirect_url}', '-H', `Host: ${host}`, ...extra, `http://${lbIP}${path}`);
  assert.equal(r.status, 0, `curl ${host}${path}: ${r.stderr}`);
  const nl = r.stdout.lastIndexOf('\n');
  const body = r.stdout.slice(0, nl);
  const [code, location] = r.stdout.slice(nl + 1).split(' ');
  let pod = '';
  try { pod = (JSON.parse(body) as { pod: string }).pod; } catch { /* not the echo */ }
  return { code: Number(code), pod, location: location ?? '', body };
}

/** Polls until `check` holds (a configuration reached the proxies); bounded. */
async function eventually(what: string, check: () => boolean, timeoutMs = 20_000): Promise<number> {
  const start = performance.now();
  for (;;) {
    if (check()) return performance.now() - start;
    if (performance.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A selector-less Service whose one endpoint is the named Pod's HTTP echo (8080). */
function backend(name: string, pod: string): string {
  return `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${name}-1, namespace: default, labels: {kubernetes.io/service-name: ${name}}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [${lab.ips[pod]}], conditions: {ready: true}}]
---
`;
}

function ingress(name: string, spec: string, annotations = ''): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ${name}, namespace: default${annotations === '' ? '' : `, annotations: {${annotations}}`}}
spec:
${spec}
---
`;
}
const path = (p: string, pathType: string, service: string): string => `{path: "${p}", pathType: ${pathType}, backend: {service: {name: ${service}, port: {number: 80}}}}`;

before(() => {
  const up = lab.up('--ingress');
  assert.match(up.stderr, /Ingress controller: 2 pods in ingress-tapir/);
  const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
  assert.equal(config.status, 0, config.stderr);
  writeFileSync(join(home, 'config'), config.stdout);
  const status = lab.status();
  const svc = (status.services as { namespace: string; name: string; loadBalancerIPs: string[] }[]).find((s) => s.namespace === 'ingress-tapir' && s.name === 'ingress-tapir-controller');
  lbIP = svc!.loadBalancerIPs[0]!;
  assert.match(lbIP, /^172\.30\.0\.\d+$/);
  apply(backend('b-1a', 'web-1a') + backend('b-1b', 'web-1b') + backend('b-2a', 'web-2a') + backend('b-2b', 'web-2b'));
});
after(() => {
  const r = lab.down();
  rmSync(home, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
});

test('lab up --ingress: the demo Ingress serves through the LoadBalancer address; its status holds the address (kubectl get ingress, lab status)', () => {
  const a = request('web.example.test', '/hello');
  assert.equal(a.code, 200, a.body);
  assert.match(a.pod, /^web-[12][ab]$/);
  assert.equal(kubectl('get', 'ingress', 'web', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}'), lbIP);
  assert.match(kubectl('get', 'ingress', 'web'), new RegExp(`web\\s+tapir\\s+web\\.example\\.test\\s+${lbIP.replace(/\./g, '\\.')}\\s+80`));
  const text = tapir(['lab', 'status', '--name', lab.name]).stdout;
  assert.match(text, new RegExp(`default/web\\s+tapir\\s+web\\.example\\.test\\s+${lbIP.replace(/\./g, '\\.')}`));
  // No rule for the host and no default backend: 404.
  assert.equal(request('nothing.example.test', '/').code, 404);
});

test('conformance: Exact, Prefix by path element, trailing slash, longest match, Exact over Prefix, case, one-label wildcard hosts, default backend', async () => {
  apply(ingress('conf', `  rules:
    - host: conf.example.test
      http:
        paths: [${path('/', 'Prefix', 'b-1a')}, ${path('/foo', 'Exact', 'b-1b')}, ${path('/foo', 'Prefix', 'b-2a')}, ${path('/aaa/', 'Prefix', 'b-2b')}, ${path('/impl', 'ImplementationSpecific', 'b-2b')}]
    - host: "*.wild.example.test"
      http:
        paths: [${path('/', 'Prefix', 'b-1b')}]`));
  await eventually('the conformance Ingress is served', () => request('conf.example.test', '/foo').pod === 'web-1b');
  const cases: [string, string, number, string][] = [
    ['conf.example.test', '/foo', 200, 'web-1b'],       // Exact wins over Prefix on the same path
    ['conf.example.test', '/foo/', 200, 'web-2a'],      // Exact /foo does not match /foo/; Prefix /foo does
    ['conf.example.test', '/foo/bar', 200, 'web-2a'],
    ['conf.example.test', '/FOO', 200, 'web-1a'],       // case-sensitive: only / matches
    ['conf.example.test', '/foobar', 200, 'web-1a'],    // Prefix matches whole path elements
    ['conf.example.test', '/aaa', 200, 'web-2b'],       // a trailing slash in a Prefix rule is ignored
    ['conf.example.test', '/aaa/bbb', 200, 'web-2b'],
    ['conf.example.test', '/aaaccc', 200, 'web-1a'],
    ['conf.example.test', '/impl/x', 200, 'web-2b'],    // ImplementationSpecific: as Prefix
    ['bar.wild.example.test', '/', 200, 'web-1b'],      // *.wild.example.test: one label
    ['baz.bar.wild.example.test', '/', 404, ''],        // not two
    ['wild.example.test', '/', 404, ''],                // not none
  ];
  for (const [host, p, code, pod] of cases) {
    const a = request(host, p);
    assert.deepEqual([host, p, a.code, a.pod], [host, p, code, pod], a.body);
  }
  apply(ingress('catch-all', '  defaultBackend: {service: {name: b-2a, port: {number: 80}}}'));
  await eventually('the default backend catches unknown hosts', () => request('baz.bar.wild.example.test', '/').pod === 'web-2a');
  assert.equal(request('conf.example.test', '/foo').pod, 'web-1b', 'rules still win over the default backend');
  kubectl('delete', 'ingress', 'catch-all');
  await eventually('no default backend: 404 again', () => request('unknown.example.test', '/').code === 404);
});

test('several Ingresses on one host merge; the same path in a newer Ingress loses and is reported as an Event', async () => {
  // The older Ingress sorts after the newer by name: its age, not its name, must win.
  apply(ingress('merge-b', `  rules:
    - host: merge.example.test
      http:
        paths: [${path('/shop', 'Prefix', 'b-1a')}]`));
  await eventually('merge-b served', () => request('merge.example.test', '/shop').pod === 'web-1a');
  // creationTimestamp has whole seconds: the newer Ingress is created in a later one.
  const created = Date.parse(kubectl('get', 'ingress', 'merge-b', '-o', 'jsonpath={.metadata.creationTimestamp}'));
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, created + 1100 - Date.now())));
  apply(ingress('merge-a', `  rules:
    - host: merge.example.test
      http:
        paths: [${path('/blog', 'Prefix', 'b-2b')}, ${path('/shop/', 'Prefix', 'b-2a')}]`));
  await eventually('merge-a\'s /blog served beside merge-b', () => request('merge.example.test', '/blog').pod === 'web-2b');
  assert.equal(request('merge.example.test', '/shop/x').pod, 'web-1a', 'the older Ingress keeps /shop');
  await eventually('the conflict is an Event on merge-a', () => /already routed by the older Ingress default\/merge-b/.test(kubectl('get', 'events', '--field-selector', 'involvedObject.name=merge-a', '-o', 'jsonpath={.items[*].message}')));
});

test('TLS: two Secrets chosen by SNI, the default certificate for other names, HTTP redirected to HTTPS; a certificate change without a restart', async () => {
  const a = certificate('a.tls.test');
  const b = certificate('b.tls.test');
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const secret = (name: string, c: { crt: string; key: string }): string => `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: default}
type: kubernetes.io/tls
data: {tls.crt: ${b64(c.crt)}, tls.key: ${b64(c.key)}}
---
`;
  apply(secret('a-tls', a) + secret('b-tls', b) + ingress('tls', `  tls: [{hosts: [a.tls.test], secretName: a-tls}, {hosts: [b.tls.test], secretName: b-tls}]
  rules:
    - host: a.tls.test
      http: {paths: [${path('/', 'Prefix', 'b-1a')}]}
    - host: b.tls.test
      http: {paths: [${path('/', 'Prefix', 'b-1b')}]}`));
  const subject = (name: string): string => lab.exec('client', 'sh', '-c', `openssl s_client -connect ${lbIP}:443 -servername ${name} </dev/null 2>/dev/null | openssl x509 -noout -subject`).trim();
  await eventually('a.tls.test has its certificate', () => subject('a.tls.test') === 'subject=CN = a.tls.test');
  assert.equal(subject('b.tls.test'), 'subject=CN = b.tls.test');
  assert.match(subject('other.tls.test'), /Fake Certificate/, 'no Secret for the name: the default certificate');
  // The client trusts each Secret's certificate: a verified HTTPS request, over HTTP/2.
  writeFileSync(join(home, 'a.pem'), a.crt);
  const https = lab.exec('client', 'curl', '-sS', '--max-time', '5', '--http2', '--cacert', join(home, 'a.pem'), '--resolve', `a.tls.test:443:${lbIP}`, '-w', '\n%{http_version}', 'https://a.tls.test/x');
  assert.match(https, /"pod":"web-1a"[\s\S]*\n2$/);
  const redirect = request('a.tls.test', '/path?q=1');
  assert.equal(redirect.code, 308);
  assert.equal(redirect.location, 'https://a.tls.test/path?q=1');
  // A new certificate in the same Secret is served without a restart.
  const renewed = certificate('a.tls.test');
  apply(secret('a-tls', renewed));
  const fingerprint = (pem: string): string => execFileSync('openssl', ['x509', '-noout', '-fingerprint', '-sha256'], { input: pem, encoding: 'utf8' }).trim();
  await eventually('the renewed certificate is served', () => lab.exec('client', 'sh', '-c', `openssl s_client -connect ${lbIP}:443 -servername a.tls.test </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`).trim() === fingerprint(renewed.crt));
});

test('a bad Ingress (invalid path, unknown Service, missing Secret) is reported clearly while the rest serves', async () => {
  apply(ingress('bad', `  tls: [{hosts: [bad.example.test], secretName: no-such-secret}]
  rules:
    - host: bad.example.test
      http:
        paths: [${path('nope', 'Prefix', 'b-1a')}, ${path('/missing', 'Prefix', 'no-such-service')}, ${path('/ok', 'Prefix', 'b-2b')}]`));
  await eventually('the rest of the bad Ingress serves', () => request('bad.example.test', '/ok').pod === 'web-2b');
  const missing = request('bad.example.test', '/missing');
  assert.equal(missing.code, 503, missing.body);
  assert.match(missing.body, /default\/no-such-service:80/);
  const events = () => kubectl('get', 'events', '--field-selector', 'involvedObject.name=bad', '-o', 'jsonpath={range .items[*]}{.message}{"\\n"}{end}');
  await eventually('three Warning Events', () => events().split('\n').filter(Boolean).length >= 3);
  const text = events();
  assert.match(text, /spec\.rules\[0\]\.http\.paths\[0\]\.path: "nope" must start with "\/"/);
  assert.match(text, /spec\.rules\[0\]\.http\.paths\[1\]\.backend\.service\.name: Service default\/no-such-service does not exist/);
  assert.match(text, /spec\.tls\[0\]\.secretName: Secret default\/no-such-secret does not exist/);
  const status = lab.exec('ingress-tapir/controller-node-1', 'bin/tapir', 'ingress', 'status');
  assert.match(status, /^default\/bad\s+yes\s+/m);
  assert.match(status, /"nope" must start with "\/"/);
  assert.equal(request('conf.example.test', '/foo').pod, 'web-1b', 'other Ingresses are unaffected');
});

test('100 configuration changes under a steady client load: no request fails', async () => {
  // The changes: the demo Ingress's read timeout and an extra path, alternately, each a
  // new configuration for every controller (written straight to the API, as fast as it takes them).
  const config = parseYaml(readFileSync(join(home, 'config'), 'utf8')) as { clusters: { cluster: { server: string; 'certificate-authority-data': string } }[]; users: { user: { token: string } }[] };
  const server = config.clusters[0]!.cluster.server;
  const ca = Buffer.from(config.clusters[0]!.cluster['certificate-authority-data'], 'base64');
  const dispatcher = new Agent({ connect: { ca } });
  const patch = async (body: unknown): Promise<void> => {
    const r = await undiciRequest(`${server}/apis/networking.k8s.io/v1/namespaces/default/ingresses/web`, {
      method: 'PATCH', dispatcher, body: JSON.stringify(body),
      headers: { authorization: `Bearer ${config.users[0]!.user.token}`, 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(r.statusCode, 200, await r.body.text());
    await r.body.dump();
  };
  const stop = join(home, 'stop-load');
  const codes = join(home, 'load-codes');
  // Keep-alive connections across the swaps: 50 requests per curl on one connection, one
  // status code per line; bounded by time (60 s) as well as by the stop file.
  const load = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, 'client', '--', 'sh', '-c',
    `end=$(($(date +%s) + 60)); while [ ! -e ${stop} ] && [ $(date +%s) -lt $end ]; do
       curl -s --max-time 10 -H 'Host: web.example.test' -w '%{stderr}%{http_code}\\n' $(seq -f 'http://${lbIP}/load%g' 1 50) >/dev/null 2>>${codes}
     done; echo "$(grep -c '^200$' ${codes}) $(grep -vc '^200$' ${codes})"`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  load.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const done = new Promise<number | null>((resolve) => load.once('exit', resolve));
  const generation = (): number => (JSON.parse(lab.exec('ingress-tapir/controller-node-1', 'curl', '-s', 'http://127.0.0.1:10254/status')) as { generation: number }).generation;
  const before = generation();
  const start = performance.now();
  for (let i = 0; i < 100; i++) {
    if (i % 2 === 0) await patch({ metadata: { annotations: { 'tapir.dev/proxy-read-timeout': String(30 + i) } } });
    else await patch({ spec: { rules: [{ host: 'web.example.test', http: { paths: [
      { path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } },
      { path: `/extra-${i}`, pathType: 'Prefix', backend: { service: { name: 'b-2a', port: { number: 80 } } } },
    ] } }] } });
    await new Promise((resolve) => setTimeout(resolve, 60)); // each change is its own configuration (the controller coalesces within 50 ms)
  }
  const changesMs = performance.now() - start;
  await new Promise((resolve) => setTimeout(resolve, 1000));
  writeFileSync(stop, '');
  assert.equal(await done, 0);
  await dispatcher.close();
  const [ok, fail] = out.trim().split(' ').map(Number);
  const after = generation();
  console.log(`# 100 Ingress changes in ${(changesMs / 1000).toFixed(1)} s under load: ${ok} requests answered 200, ${fail} failed; controller-node-1 took ${after - before} new configurations`);
  assert.equal(fail, 0, `${fail} of ${ok! + fail!} requests failed`);
  assert.ok(ok! > 0);
  assert.ok(after - before >= 50, `the proxy got ${after - before} new configurations, fewer than the changes that could not coalesce`);
});

test('an Ingress change to the first request it routes (kubectl apply, then curl in a loop from the client)', async () => {
  // The client polls (curl every 10 ms, bounded by timeout) and prints the wall clock of
  // the first answer from the new backend; the same clock as this process's.
  const loop = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, 'client', '--', 'timeout', '30', 'sh', '-c',
    `until curl -s --max-time 1 -H 'Host: fresh.example.test' http://${lbIP}/ | grep -q '"pod":"web-2a"'; do sleep 0.01; done; date +%s%N`], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  loop.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  const done = new Promise<number | null>((resolve) => loop.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, 1000)); // the loop runs (404s) before the change
  const startNs = BigInt(Date.now()) * 1_000_000n;
  apply(ingress('fresh', `  rules:
    - host: fresh.example.test
      http: {paths: [${path('/', 'Prefix', 'b-2a')}]}`));
  const appliedMs = Number(BigInt(Date.now()) * 1_000_000n - startNs) / 1e6;
  assert.equal(await done, 0, 'the new Ingress routed within the loop\'s 30 s');
  const ms = Number(BigInt(out.trim()) - startNs) / 1e6;
  console.log(`# Ingress change to its first routed request: ${ms.toFixed(0)} ms from kubectl apply's start, ${(ms - appliedMs).toFixed(0)} ms after kubectl returned (kubectl itself ${appliedMs.toFixed(0)} ms); client curl every 10 ms`);
  assert.ok(ms > 0);
});

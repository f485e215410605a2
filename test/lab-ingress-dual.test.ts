// The Ingress over IPv6 end to end: a dual-stack lab with the Ingress controller
// (`tapir lab up --ip-family dual --ingress`). The controller Service is PreferDualStack,
// so it has an IPv6 cluster IP and its node ports answer on every node's IPv6 address;
// the controllers' proxies listen on both families. Real curl (-6, with --resolve or a
// Host header) and h2load from the lab's client namespace and from a pod, through the
// agents' NAT66 to a controller Pod and from there to the demo Service web (IPv4
// endpoints) and to web-v6 (IPv6-only: IPv6 endpoints) by an Ingress applied with
// kubectl. The built-in echo reports the address it saw the proxy connect from, which
// tells the upstream's family.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { KUBECTL } from './helpers/apiserver.ts';
import { Lab, tapir, type HttpEcho } from './helpers/lab.ts';
import { parseH2load } from './helpers/ingress-lab.ts';

const lab = new Lab('ti6');
const home = mkdtempSync(join(tmpdir(), 'ti6-ingress-'));

interface PodStatus { name: string; namespace?: string; ips?: string[] }
interface NodeStatus { name: string; underlayIP6?: string; gateway6?: string }
interface ServiceJson { spec: { ipFamilies: string[]; ipFamilyPolicy: string; clusterIPs: string[]; ports: { name: string; nodePort: number }[] }; status: { loadBalancer: { ingress?: { ip: string }[] } } }

let nodes: NodeStatus[] = [];
/** IPv6 address of each pod by name (the controller pods' too). */
let v6: Record<string, string> = {};
let controller: ServiceJson;
let httpNodePort = 0;
let httpsNodePort = 0;

function kubectl(args: string[], input?: string): string {
  return execFileSync(KUBECTL, args, { input, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

/** One curl in a lab namespace; the echo's answer (status 200 asserted). */
function curl(from: string, args: string[]): HttpEcho & { version: string } {
  const r = lab.run(from, 'curl', '-sS', '-g', '--max-time', '5', '-w', '\n%{http_code} %{http_version}', ...args);
  assert.equal(r.status, 0, `curl ${args.join(' ')} from ${from}: ${r.stderr}`);
  const nl = r.stdout.lastIndexOf('\n');
  const [code, version] = r.stdout.slice(nl + 1).split(' ');
  assert.equal(code, '200', `curl ${args.join(' ')} from ${from}: ${r.stdout}`);
  return { ...(JSON.parse(r.stdout.slice(0, nl)) as HttpEcho), version: version! };
}

/** The address part of the echo's "client" (a.b.c.d:port or an IPv6 address:port, unbracketed). */
const clientIP = (e: HttpEcho): string => e.client.replace(/^\[/, '').replace(/\]?:\d+$/, '');

const controllerIPs6 = (): string[] => ['controller-node-1', 'controller-node-2'].map((p) => v6[p]!);

before(() => {
  const up = lab.up('--ip-family', 'dual', '--ingress');
  assert.match(up.stderr, /Ingress controller: 2 pods in ingress-tapir/);
  const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
  assert.equal(config.status, 0, config.stderr);
  writeFileSync(join(home, 'config'), config.stdout);
  const status = lab.status();
  nodes = status.nodes as NodeStatus[];
  v6 = Object.fromEntries((status.pods as PodStatus[]).map((p) => [p.name, (p.ips ?? []).find((a) => a.includes(':')) ?? '']));
  controller = JSON.parse(kubectl(['get', 'svc', '-n', 'ingress-tapir', 'ingress-tapir-controller', '-o', 'json'])) as ServiceJson;
  httpNodePort = controller.spec.ports.find((p) => p.name === 'http')!.nodePort;
  httpsNodePort = controller.spec.ports.find((p) => p.name === 'https')!.nodePort;
  kubectl(['apply', '-f', '-'], `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web-v6, namespace: default}
spec:
  ingressClassName: tapir
  rules: [{host: web-v6.example.test, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web-v6, port: {number: 80}}}}]}}]
`);
});

after(() => {
  const r = lab.down();
  rmSync(home, { recursive: true, force: true });
  assert.equal(r.status, 0, r.stderr);
});

/** Polls until `check` holds (a configuration reached the proxies); bounded. */
async function eventually(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const start = performance.now();
  for (;;) {
    if (check()) return;
    if (performance.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

test('the controller Service is dual-stack (PreferDualStack): an IPv6 cluster IP, both families of controller endpoints', () => {
  assert.equal(controller.spec.ipFamilyPolicy, 'PreferDualStack');
  assert.deepEqual(controller.spec.ipFamilies, ['IPv4', 'IPv6']);
  assert.match(controller.spec.clusterIPs[1]!, /^fd00:10:96::/);
  const slices = JSON.parse(kubectl(['get', 'endpointslices', '-n', 'ingress-tapir', '-l', 'kubernetes.io/service-name=ingress-tapir-controller', '-o', 'json'])) as { items: { addressType: string; endpoints: { addresses: string[] }[] }[] };
  const six = slices.items.filter((s) => s.addressType === 'IPv6').flatMap((s) => s.endpoints.flatMap((e) => e.addresses)).sort();
  assert.deepEqual(six, controllerIPs6().sort());
});

test('curl -6 from the client to the node ports on each node\'s IPv6 address: the demo web Service (IPv4 upstreams) and web-v6 (IPv6 upstreams)', async () => {
  for (const node of nodes) {
    assert.ok(node.underlayIP6, `${node.name} has an IPv6 address`);
    // --resolve: the name as a browser would send it.
    const web = curl('client', ['-6', '--resolve', `web.example.test:${httpNodePort}:[${node.underlayIP6}]`, `http://web.example.test:${httpNodePort}/via-${node.name}`]);
    assert.match(web.pod, /^web-[12][ab]$/);
    assert.ok(!clientIP(web).includes(':'), `web is IPv4 single-stack: the proxy connects over IPv4 (${web.client})`);
    // Cluster policy: the proxy sees the node's IPv6 gateway, and says so to the upstream.
    assert.equal(web.headers['x-real-ip'], node.gateway6);
    assert.equal(web.headers['x-forwarded-for'], node.gateway6);
  }
  // The web-v6 Ingress was applied in before(): wait until the proxies serve it.
  const node = nodes[0]!;
  const ask = (): ReturnType<typeof lab.run> => lab.run('client', 'curl', '-sS', '-g', '-6', '--max-time', '3', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Host: web-v6.example.test', `http://[${node.underlayIP6}]:${httpNodePort}/`);
  await eventually('the web-v6 Ingress served', () => ask().stdout === '200');
  const seen = new Set<string>();
  // Random balancing over four endpoints: 80 tries miss one with probability 4·(3/4)^80 < 1e-9
  // (24 missed one in a CI run).
  for (let i = 0; i < 80 && seen.size < 4; i++) {
    const r = curl('client', ['-6', '-H', 'Host: web-v6.example.test', `http://[${nodes[i % 2]!.underlayIP6}]:${httpNodePort}/v6`]);
    assert.match(r.server, /^fd00:10:244:/, `an IPv6 endpoint answered: ${r.server}`);
    assert.ok(controllerIPs6().includes(clientIP(r)), `the proxy connected from a controller Pod's IPv6 address: ${r.client}`);
    seen.add(r.pod);
  }
  assert.deepEqual([...seen].sort(), ['web-1a', 'web-1b', 'web-2a', 'web-2b'], 'every IPv6 endpoint is used');
});

test('from a pod: the controller Service\'s IPv6 cluster IP (the pod\'s own address forwarded), and an IPv4 client reaching the IPv6-only backend', () => {
  const vip6 = controller.spec.clusterIPs.find((a) => a.includes(':'))!;
  for (const from of ['web-1a', 'web-2b']) {
    const web = curl(from, ['-6', '-H', 'Host: web.example.test', `http://[${vip6}]/from-pod`]);
    assert.match(web.pod, /^web-[12][ab]$/);
    assert.equal(web.headers['x-real-ip'], v6[from], 'the pod\'s IPv6 address, kept by NAT66 on the way to the controller');
    const six = curl(from, ['-6', '--resolve', `web-v6.example.test:80:[${vip6}]`, 'http://web-v6.example.test/from-pod']);
    assert.match(six.server, /^fd00:10:244:/);
  }
  // Families cross inside the proxy: an IPv4 client (the controller's IPv4 cluster IP) to IPv6 endpoints.
  const vip4 = controller.spec.clusterIPs.find((a) => !a.includes(':'))!;
  const cross = curl('web-1b', ['-4', '-H', 'Host: web-v6.example.test', `http://${vip4}/cross`]);
  assert.match(cross.server, /^fd00:10:244:/);
  assert.equal(cross.headers['x-real-ip'], lab.ips['web-1b'], 'an IPv4 client is forwarded as IPv4 (not ::ffff:)');
});

test('TLS over IPv6: curl --http2 and h2load to the HTTPS node port, to web and web-v6', () => {
  const node = nodes[1]!;
  const h2 = curl('client', ['-6', '-k', '--http2', '--resolve', `web.example.test:${httpsNodePort}:[${node.underlayIP6}]`, `https://web.example.test:${httpsNodePort}/tls`]);
  assert.equal(h2.version, '2');
  assert.match(h2.pod, /^web-[12][ab]$/);
  assert.equal(h2.headers['x-forwarded-proto'], 'https');
  for (const host of ['web.example.test', 'web-v6.example.test']) {
    const r = lab.run('client', 'h2load', '-n', '200', '-c', '4', '-m', '10', '-H', `:authority: ${host}`, `https://[${node.underlayIP6}]:${httpsNodePort}/h2load`);
    assert.equal(r.status, 0, r.stderr);
    const load = parseH2load(r.stdout);
    assert.equal(load.succeeded, 200, load.raw);
    assert.equal(load.s2xx, 200, load.raw);
    assert.match(load.raw, /Application protocol: h2/);
  }
});

test('status.loadBalancer.ingress: the controller Service\'s addresses of both families (the lab\'s IPv4 and IPv6 pools), shown by kubectl', async () => {
  const get = (): string => kubectl(['get', 'ingress', 'web-v6', '-o', 'jsonpath={.status.loadBalancer.ingress[*].ip}']);
  const service = (): string[] => kubectl(['get', 'svc', '-n', 'ingress-tapir', 'ingress-tapir-controller', '-o', 'jsonpath={.status.loadBalancer.ingress[*].ip}']).split(' ').filter(Boolean);
  await eventually('an address of each family on the controller Service', () => service().length === 2);
  const lb = service();
  const lb4 = lb.find((a) => !a.includes(':'))!;
  const lb6 = lb.find((a) => a.includes(':'))!;
  assert.match(lb4, /^172\.30\.0\.\d+$/);
  assert.match(lb6, /^fd00:172:30::/);
  await eventually('both addresses on the Ingresses', () => get() === `${lb4} ${lb6}`);
  assert.match(kubectl(['get', 'ingress', 'web']), new RegExp(`web\\s+tapir\\s+web\\.example\\.test\\s+${lb4.replace(/\./g, '\\.')},${lb6}\\s+80`));
  // And the Ingress answers on its IPv6 load-balancer address from the lab's client.
  await eventually('the Ingress over its IPv6 load-balancer address', () => lab.run('client', 'curl', '-sS', '-g', '--max-time', '2', '-H', 'Host: web.example.test', `http://[${lb6}]/`).status === 0);
});

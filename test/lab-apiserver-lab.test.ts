// `tapir lab up` (cluster mode, the default) end to end: the lab API server in the
// underlay namespace and on a loopback port of the host; the agents as the DaemonSet
// runs them (in-cluster credentials in their own mount namespace, NODE_NAME, the
// ConfigMap's config), reading Services, EndpointSlices and Nodes from the API; the lab
// playing scheduler and kubelet through the API. Real kubectl from .tapir/bin drives it.
// Then the API's faults (closed, expired, compacted and stalled watches, a server that
// refuses connections for a while, a ClusterRole missing a rule): the agents keep
// forwarding with their last tables, recover without a restart, and end with the
// tables of a fresh agent.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { KUBECTL } from './helpers/apiserver.ts';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

const lab = new Lab('lta');
const home = mkdtempSync(join(tmpdir(), 'tapir-lab-kubectl-'));
const NODE_IPS = { 'node-1': '172.30.0.11', 'node-2': '172.30.0.12' } as const;

interface NodeStatus { name: string; underlayIP: string; podCIDR: string; agent: { pid: number; restarts: number; answers: boolean } }

before(() => {
  lab.up();
  const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
  assert.equal(config.status, 0, config.stderr);
  writeFileSync(join(home, 'config'), config.stdout);
});
after(() => {
  lab.down();
  rmSync(home, { recursive: true, force: true });
});

function kubectl(...args: string[]): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

function kubectlApply(yaml: string): string {
  return execFileSync(KUBECTL, ['apply', '-f', '-'], { input: yaml, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

function nodes(): NodeStatus[] {
  return lab.status().nodes as NodeStatus[];
}

/** Processes whose command line names `text`. */
function pidsNaming(text: string): number[] {
  return readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text); } catch { return false; }
  }).map(Number);
}

function stateDir(): string {
  return `/run/tapir/lab/${lab.name}`;
}

/** POST /tapir-lab/faults/FAULT as the lab's admin, with curl from the host. */
function fault(name: string): unknown {
  const config = readFileSync(join(home, 'config'), 'utf8');
  const server = /server: (\S+)/.exec(config)![1]!;
  const token = /token: (\S+)/.exec(config)![1]!;
  return JSON.parse(execFileSync('curl', ['-sS', '--max-time', '5', '--cacert', `${stateDir()}/apiserver/tls/ca.crt`, '-H', `Authorization: Bearer ${token}`, '-X', 'POST', `${server}/tapir-lab/faults/${name}`], { encoding: 'utf8' }));
}

/** HTTP status of a request from `from` (000: no answer), never throws. */
function httpCode(from: string, url: string, seconds = 2): string {
  return lab.run(from, 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', String(seconds), url).stdout.trim();
}

async function eventually<T>(timeoutMs: number, probe: () => T, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let value = probe();
  while (!done(value) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 250));
    value = probe();
  }
  return value;
}

/**
 * Requests to `url` from `from`, one every 200 ms for `seconds` (bounded), in the
 * background; resolves with each request's HTTP status.
 */
function requestLoop(from: string, url: string, seconds: number): Promise<string[]> {
  const script = `end=$(($(date +%s) + ${seconds})); while [ $(date +%s) -lt $end ]; do curl -s -o /dev/null -w '%{http_code}\\n' --max-time 1 '${url}'; sleep 0.2; done`;
  return new Promise((resolve, reject) => {
    const child = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, from, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.on('error', reject);
    child.on('exit', () => resolve(out.trim().split('\n').filter((l) => l !== '')));
  });
}

function metric(node: string, name: string): number {
  const text = lab.exec(node, 'curl', '-sS', '--max-time', '3', 'http://127.0.0.1:10249/metrics');
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

function service(name: string, port: number, extra = ''): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}${extra} }
spec:
  selector: { app: web }
  ports: [{ name: http, port: ${port}, targetPort: http }]
`;
}

function clusterIP(name: string): string {
  return kubectl('get', 'svc', name, '-o', 'jsonpath={.spec.clusterIP}').trim();
}

test('kubectl on the host works against the lab: nodes with pod CIDRs and zones, pods bound and Ready, slices', () => {
  const status = lab.status();
  const nodeTable = kubectl('get', 'nodes', '-o', 'wide');
  for (const node of status.nodes as NodeStatus[]) {
    assert.match(nodeTable, new RegExp(`^${node.name}\\s+Ready\\s+<none>\\s+\\S+\\s+\\S*\\s*${node.underlayIP.replaceAll('.', '\\.')}\\s`, 'm'));
  }
  const nodeObjects = JSON.parse(kubectl('get', 'nodes', '-o', 'json')) as { items: { metadata: { name: string; labels: Record<string, string> }; spec: { podCIDR: string } }[] };
  assert.deepEqual(nodeObjects.items.map((n) => `${n.metadata.name} ${n.spec.podCIDR} ${n.metadata.labels['topology.kubernetes.io/zone']}`).sort(),
    (status.nodes as { name: string; podCIDR: string; zone: string }[]).map((n) => `${n.name} ${n.podCIDR} ${n.zone}`).sort());
  assert.match(kubectl('get', 'svc', 'kubernetes'), /^kubernetes\s+ClusterIP\s+10\.96\.0\.1\s/m);
  assert.match(kubectl('get', 'clusterrole', 'tapir'), /^tapir\s/m);

  // The kubelet's part: every pod Running, 1/1 ready, with its IP and node.
  const pods = kubectl('get', 'pods', '-o', 'wide');
  for (const pod of status.pods as { name: string; ip: string; node: string }[]) {
    assert.match(pods, new RegExp(`^${pod.name}\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${pod.ip.replaceAll('.', '\\.')}\\s+${pod.node}\\s`, 'm'));
  }
  assert.match(kubectl('wait', '--for=condition=Ready', 'pod/web-1a', 'pod/web-2b', '--timeout=20s'), /pod\/web-1a condition met/);
  const podJson = JSON.parse(kubectl('get', 'pod', 'web-2a', '-o', 'json')) as { status: { hostIP: string; podIPs: { ip: string }[]; phase: string } };
  assert.equal(podJson.status.hostIP, NODE_IPS['node-2']);
  assert.equal(podJson.status.phase, 'Running');
  assert.deepEqual(podJson.status.podIPs, [{ ip: lab.ips['web-2a'] }]);

  // The EndpointSlice controller wrote the demo Services' slices from the Pods.
  const slices = kubectl('get', 'endpointslices', '-l', 'kubernetes.io/service-name=web');
  assert.match(slices, /^web-\S+\s+IPv4\s+8080\s+10\.244\./m);
  // From a node's namespace, the `kubernetes` Service's endpoint answers (the CA is the lab's).
  const k = JSON.parse(kubectl('get', 'endpointslice', 'kubernetes', '-o', 'json')) as { endpoints: { addresses: string[] }[]; ports: { port: number }[] };
  const version = JSON.parse(lab.exec('node-1', 'curl', '-sS', '--max-time', '5', '--cacert', `${stateDir()}/apiserver/tls/ca.crt`, `https://${k.endpoints[0]!.addresses[0]}:${k.ports[0]!.port}/version`)) as { gitVersion: string };
  assert.equal(version.gitVersion, 'v1.34.0-tapir-lab');
});

test('the agents run as the DaemonSet would: in-cluster credentials in their own mount namespace, NODE_NAME, the ConfigMap config', () => {
  for (const node of nodes()) {
    const pid = node.agent.pid;
    const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8');
    assert.match(mounts, / \/run\/secrets\/kubernetes\.io\/serviceaccount rw/, 'the token directory is bind-mounted where the in-cluster loader reads it');
    const env = Object.fromEntries(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.equal(env.NODE_NAME, node.name);
    assert.equal(env.KUBERNETES_SERVICE_HOST, '172.30.0.1');
    assert.equal(env.KUBERNETES_SERVICE_PORT, '6443');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    assert.ok(cmdline.includes('--kubernetes'), cmdline.join(' '));
    const config = readFileSync(cmdline[cmdline.indexOf('--config') + 1]!, 'utf8');
    assert.match(config, /kind: KubeProxyConfiguration/);
    assert.doesNotMatch(config, /podCIDR|underlay|nodeName|manifests|zone/, 'no per-node field: those come from the Node object');
    const log = readFileSync(`${stateDir()}/nodes/${node.name}/agent.log`, 'utf8');
    assert.match(log, /service port\(s\) from the Kubernetes API/);
    assert.match(log, new RegExp(`node ${node.name}: pods ${node.podCIDR.replaceAll('.', '\\.')}`));
  }
  // The host sees only the (empty) mount point, never the token.
  assert.deepEqual(readdirSync('/run/secrets/kubernetes.io/serviceaccount'), []);
});

test('Services created, changed and deleted with kubectl are programmed by the agents and answer', async () => {
  assert.match(kubectlApply(service('kc-web', 81)), /service\/kc-web created/);
  const ip = clusterIP('kc-web');
  assert.match(ip, /^10\.96\./);
  const answered = await eventually(10_000, () => [httpCode('web-1a', `http://${ip}:81/`), httpCode('web-2b', `http://${ip}:81/`), httpCode('node-1', `http://${ip}:81/`)], (c) => c.every((x) => x === '200'));
  assert.deepEqual(answered, ['200', '200', '200']);
  const echo = JSON.parse(lab.exec('web-1a', 'curl', '-sS', '--max-time', '3', `http://${ip}:81/who`)) as { pod: string; client: string };
  assert.match(echo.pod, /^web-/);
  // The client's own address, or its gateway when it reached itself (hairpin).
  assert.equal(echo.client.split(':')[0], echo.pod === 'web-1a' ? '10.244.1.1' : lab.ips['web-1a']);

  // Changed: the port moves from 81 to 82.
  assert.match(kubectlApply(service('kc-web', 82)), /service\/kc-web configured/);
  const moved = await eventually(10_000, () => [httpCode('web-2a', `http://${ip}:82/`), httpCode('web-2a', `http://${ip}:81/`, 1)], ([now, old]) => now === '200' && old === '000');
  assert.deepEqual(moved, ['200', '000']);

  assert.match(kubectl('delete', 'service', 'kc-web'), /service "kc-web" deleted/);
  const gone = await eventually(10_000, () => httpCode('web-1b', `http://${ip}:82/`, 1), (c) => c === '000');
  assert.equal(gone, '000');
});

test('tapir lab apply/delete speak to the API: an unscheduled Pod is bound, started, Ready, and served', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-apply-'));
  try {
    const file = join(dir, 'extra.yaml');
    writeFileSync(file, `apiVersion: v1
kind: Pod
metadata: { name: extra, labels: { app: extra } }
spec:
  containers: [{ name: echo, ports: [{ containerPort: 8080, name: http }] }]
---
apiVersion: v1
kind: Service
metadata: { name: extra }
spec:
  selector: { app: extra }
  ports: [{ port: 80, targetPort: http }]
`);
    const applied = tapir(['lab', 'apply', '--name', lab.name, '-f', file]);
    assert.equal(applied.status, 0, applied.stderr);
    assert.equal(applied.stdout, 'pod/extra created\nservice/extra created\n');
    assert.match(kubectl('wait', '--for=condition=Ready', 'pod/extra', '--timeout=20s'), /condition met/);
    const pod = JSON.parse(kubectl('get', 'pod', 'extra', '-o', 'json')) as { spec: { nodeName: string }; status: { podIP: string; hostIP: string } };
    assert.ok(pod.spec.nodeName in NODE_IPS, `bound by the scheduler: ${pod.spec.nodeName}`);
    assert.equal(pod.status.hostIP, NODE_IPS[pod.spec.nodeName as keyof typeof NODE_IPS]);
    const ip = clusterIP('extra');
    const reply = await eventually(10_000, () => lab.run('web-2a', 'curl', '-sS', '--max-time', '2', `http://${ip}/`).stdout, (out) => out.includes('"pod":"extra"'));
    assert.match(reply, /"pod":"extra"/);
    assert.match(reply, new RegExp(`"server":"${pod.status.podIP.replaceAll('.', '\\.')}:8080"`));

    // A file with a problem changes nothing, and says file, document and field.
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `${service('bad-svc', 87)}---
apiVersion: v1
kind: Pod
metadata: { name: bad-pod }
spec:
  nodeName: node-9
  containers: [{ name: echo, ports: [{ containerPort: 8080 }] }]
`);
    const refused = tapir(['lab', 'apply', '--name', lab.name, '-f', bad]);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /bad\.yaml: document 2 \(Pod default\/bad-pod\): spec\.nodeName: "node-9" is not a node of this lab/);
    assert.doesNotMatch(kubectl('get', 'svc,pods'), /bad-/);

    const deleted = tapir(['lab', 'delete', '--name', lab.name, '-f', file]);
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.match(kubectl('get', 'pods'), /^web-1a/m);
    assert.doesNotMatch(kubectl('get', 'pods,svc'), /extra/);
    assert.ok(!(lab.status().pods as { name: string }[]).some((p) => p.name === 'extra'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a Pod created with kubectl is bound, started by its node daemon, Ready and served; kubectl delete stops it', async () => {
  assert.match(kubectlApply(`apiVersion: v1
kind: Pod
metadata: { name: kc-pod, labels: { app: kc-pod } }
spec:
  terminationGracePeriodSeconds: 1
  containers: [{ name: echo, ports: [{ containerPort: 8080, name: http }] }]
---
apiVersion: v1
kind: Service
metadata: { name: kc-pod }
spec:
  selector: { app: kc-pod }
  ports: [{ port: 80, targetPort: http }]
`), /pod\/kc-pod created/);
  assert.match(kubectl('wait', '--for=condition=Ready', 'pod/kc-pod', '--timeout=60s'), /pod\/kc-pod condition met/);
  const pod = JSON.parse(kubectl('get', 'pod', 'kc-pod', '-o', 'json')) as { spec: { nodeName: string }; status: { phase: string; podIP: string; podIPs: { ip: string }[]; hostIP: string } };
  assert.ok(pod.spec.nodeName in NODE_IPS, `bound by the scheduler: ${pod.spec.nodeName}`);
  assert.equal(pod.status.phase, 'Running');
  assert.match(pod.status.podIP, /^10\.244\./);
  assert.deepEqual(pod.status.podIPs, [{ ip: pod.status.podIP }]);
  assert.equal(pod.status.hostIP, NODE_IPS[pod.spec.nodeName as keyof typeof NODE_IPS]);
  assert.match(kubectl('get', 'pod', 'kc-pod', '-o', 'wide'), new RegExp(`^kc-pod\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${pod.status.podIP.replaceAll('.', '\\.')}\\s+${pod.spec.nodeName}\\s`, 'm'));
  // Its namespace is the host's (the daemon adds it in the host's mount namespace), and lab status knows it.
  const netns = `tl-${lab.name}-pod.default.kc-pod`;
  assert.ok(readdirSync('/run/netns').includes(netns), `${netns} is on the host`);
  assert.ok((lab.status().pods as { name: string }[]).some((p) => p.name === 'kc-pod'));
  // A Service selecting it answers from a pod on another node and from one on its own.
  const ip = clusterIP('kc-pod');
  for (const from of ['web-1a', 'web-2a']) {
    const reply = await eventually(15_000, () => lab.run(from, 'curl', '-sS', '--max-time', '2', `http://${ip}/`).stdout, (out) => out.includes('"pod":"kc-pod"'));
    assert.match(reply, new RegExp(`"server":"${pod.status.podIP.replaceAll('.', '\\.')}:8080"`), `from ${from}`);
  }

  assert.match(kubectl('delete', 'pod', 'kc-pod', '--timeout=60s'), /pod "kc-pod" deleted/);
  const gone = await eventually(20_000, () => readdirSync('/run/netns').includes(netns), (present) => !present);
  assert.equal(gone, false, `${netns} removed after the grace period`);
  assert.doesNotMatch(kubectl('get', 'pods'), /kc-pod/);
  assert.ok(!(lab.status().pods as { name: string }[]).some((p) => p.name === 'kc-pod'));
  assert.deepEqual(pidsNaming('/pods/default.kc-pod.'), [], 'no process of the pod is left');
  kubectl('delete', 'service', 'kc-pod');
});

test('a LoadBalancer Service created with kubectl gets an address from the pool that answers the lab\'s client', async () => {
  kubectlApply(service('kc-lb', 80).replace('spec:\n', 'spec:\n  type: LoadBalancer\n'));
  const lbIP = await eventually(15_000, () => kubectl('get', 'svc', 'kc-lb', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}').trim(), (v) => v !== '');
  assert.match(lbIP, /^172\.30\.0\.(2\d\d)$/, 'from the lab\'s pool');
  const taken = (JSON.parse(kubectl('get', 'svc', '-o', 'json')) as { items: { metadata: { name: string }; status?: { loadBalancer?: { ingress?: { ip: string }[] } } }[] }).items
    .filter((s) => s.metadata.name !== 'kc-lb').flatMap((s) => s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip);
  assert.ok(!taken.includes(lbIP), `${lbIP} is no other Service's (${taken.join(', ')})`);
  assert.match(kubectl('get', 'svc', 'kc-lb'), new RegExp(`^kc-lb\\s+LoadBalancer\\s+\\S+\\s+${lbIP.replaceAll('.', '\\.')}\\s`, 'm'));
  assert.equal(await eventually(15_000, () => httpCode('client', `http://${lbIP}/`), (c) => c === '200'), '200');
  kubectl('delete', 'service', 'kc-lb');
  assert.equal(await eventually(15_000, () => httpCode('client', `http://${lbIP}/`, 1), (c) => c === '000'), '000', 'the address goes with the Service');
});

test('healthz answers on the node address :10256 and metrics on 127.0.0.1:10249 inside each node', () => {
  for (const [node, address] of Object.entries(NODE_IPS)) {
    const body = JSON.parse(lab.exec(node, 'curl', '-sS', '--max-time', '3', `http://${address}:10256/healthz`)) as Record<string, unknown>;
    assert.equal(body.healthy, true);
    assert.equal(body.nodeEligible, true);
    assert.ok(metric(node, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') > 0);
  }
});

test('watch faults: closed, expired, compacted and stalled watches cost no request; changes after them are programmed without an agent restart', async () => {
  const before = nodes().map((n) => n.agent.pid);
  const restartsBefore = metric('node-1', 'tapir_watch_restarts_total');
  const loop = requestLoop('web-2a', 'http://10.96.0.100/', 50);
  try {
    fault('close-watches');
    fault('expire-next-watch?count=6');
    fault('close-watches');
    kubectlApply(service('after-close', 83));
    const ip1 = clusterIP('after-close');
    assert.equal(await eventually(15_000, () => httpCode('web-1a', `http://${ip1}:83/`), (c) => c === '200'), '200', 'a Service applied after closed and expired watches');

    fault('compact');
    fault('close-watches');
    kubectlApply(service('after-compact', 84));
    const ip2 = clusterIP('after-compact');
    assert.equal(await eventually(15_000, () => httpCode('web-2b', `http://${ip2}:84/`), (c) => c === '200'), '200', 'a Service applied after a compacted history');

    // A stalled watch says nothing; the watchdog (30 s in the lab) notices and restarts it.
    fault('stall-watches');
    kubectlApply(service('after-stall', 85));
    const ip3 = clusterIP('after-stall');
    assert.equal(await eventually(60_000, () => httpCode('web-1b', `http://${ip3}:85/`), (c) => c === '200'), '200', 'a Service applied during a stall');
  } finally {
    const codes = await loop;
    assert.ok(codes.length > 50, `the loop ran: ${codes.length} requests`);
    assert.deepEqual(codes.filter((c) => c !== '200'), [], 'every request through the cluster IP answered during the faults');
  }
  assert.deepEqual(nodes().map((n) => n.agent.pid), before, 'no agent was restarted');
  assert.ok(metric('node-1', 'tapir_watch_restarts_total{kind="Service",reason="gone"}') >= 1, 'a 410 was counted');
  assert.ok(metric('node-1', 'tapir_watch_restarts_total{kind="Service",reason="stalled"}') >= 1, 'the stall was counted');
  assert.ok(metric('node-1', 'tapir_watch_restarts_total') > restartsBefore);
  kubectl('delete', 'service', 'after-close', 'after-compact', 'after-stall');
});

test('an unreachable API server: the agents forward with their last tables, healthz turns 503 after 2 x the sync period and 200 after', async () => {
  const before = nodes().map((n) => n.agent.pid);
  const healthz = (node: keyof typeof NODE_IPS = 'node-2'): string => httpCode(node, `http://${NODE_IPS[node]}:10256/healthz`);
  assert.equal(healthz(), '200');
  const loop = requestLoop('web-1a', 'http://10.96.0.100/', 34);
  fault('refuse?seconds=30');
  // The sync period is 5 s in the lab's config: 503 after 10 s without the API.
  const down = await eventually(15_000, healthz, (c) => c === '503');
  assert.equal(down, '503');
  const body = JSON.parse(lab.exec('node-2', 'curl', '-s', '--max-time', '2', `http://${NODE_IPS['node-2']}:10256/healthz`)) as { healthy: boolean; status: string };
  assert.equal(body.healthy, false);
  assert.match(body.status, /API server has not answered/);
  const codes = await loop;
  assert.deepEqual(codes.filter((c) => c !== '200'), [], 'the cluster IP answered throughout');
  // The reflectors' back-off reaches a few seconds: healthy again within 45 s of the end.
  assert.deepEqual(await eventually(45_000, () => [healthz('node-1'), healthz('node-2')], (c) => c.every((x) => x === '200')), ['200', '200']);
  kubectlApply(service('after-refuse', 86));
  const ip = clusterIP('after-refuse');
  const codes2 = await eventually(40_000, () => [httpCode('web-1a', `http://${ip}:86/`), httpCode('web-2b', `http://${ip}:86/`)], (c) => c.every((x) => x === '200'));
  assert.deepEqual(codes2, ['200', '200'], 'both agents program a change made after the outage');
  assert.deepEqual(nodes().map((n) => n.agent.pid), before, 'no agent was restarted');
});

test('the API server crashes and comes back with its journal: objects survive, watches recover, no request fails, no agent restarts', async () => {
  const before = nodes().map((n) => n.agent.pid);
  const { loadState } = await import('../src/lab/state.ts');
  const { restartLabControlPlane } = await import('../src/lab/apiserver/lab-control-plane.ts');
  const state = loadState(lab.name)!;
  const oldPid = state.apiServer!.pid;
  const loop = requestLoop('web-1a', 'http://10.96.0.100/', 10);
  await new Promise((r) => setTimeout(r, 2000));
  const pid = await restartLabControlPlane(state);
  assert.notEqual(pid, oldPid);
  assert.throws(() => process.kill(oldPid, 0), 'the old server is gone');
  const codes = await loop;
  assert.ok(codes.length > 20, `the loop ran: ${codes.length} requests`);
  assert.deepEqual(codes.filter((c) => c !== '200'), [], 'every request through the cluster IP answered across the restart');
  // kubectl on the host reaches the new server on the same port; the objects are its journal's.
  assert.match(kubectl('get', 'service', 'web', '-o', 'name'), /service\/web/);
  kubectlApply(service('after-restart', 87));
  const ip = clusterIP('after-restart');
  const codes2 = await eventually(40_000, () => [httpCode('web-1a', `http://${ip}:87/`), httpCode('web-2b', `http://${ip}:87/`)], (c) => c.every((x) => x === '200'));
  assert.deepEqual(codes2, ['200', '200'], 'both agents program a change made after the restart');
  assert.deepEqual(nodes().map((n) => n.agent.pid), before, 'no agent was restarted');
  kubectl('delete', 'service', 'after-restart');
});

test('a Node joining and leaving updates the overlay\'s routes without an agent restart (its pod CIDR over VXLAN to its InternalIP)', async () => {
  const before = nodes().map((n) => n.agent.pid);
  const route = (): string => {
    const r = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', '10.244.7.9:8080', '--proto', 'tcp', '--json']);
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  assert.doesNotMatch(route(), /172\.30\.0\.17/);
  kubectlApply(`apiVersion: v1
kind: Node
metadata: {name: node-7, labels: {topology.kubernetes.io/zone: zone-c}}
spec: {podCIDR: 10.244.7.0/24, podCIDRs: [10.244.7.0/24]}
`);
  kubectl('patch', 'node', 'node-7', '--subresource=status', '--type=merge', '-p', '{"status":{"addresses":[{"type":"InternalIP","address":"172.30.0.17"}]}}');
  const joined = await eventually(15_000, route, (t) => /172\.30\.0\.17/.test(t));
  assert.match(joined, /172\.30\.0\.17/, 'node-1 sends node-7\'s pod CIDR over VXLAN to its InternalIP');
  kubectl('delete', 'node', 'node-7');
  const left = await eventually(15_000, route, (t) => !/172\.30\.0\.17/.test(t));
  assert.doesNotMatch(left, /172\.30\.0\.17/, 'gone with its Node');
  assert.deepEqual(nodes().map((n) => n.agent.pid), before, 'no agent was restarted');
});

test('after the faults an agent has the tables of a fresh one (tapir trace of every frontend)', async () => {
  const frontends = ['10.96.0.100:80', `${clusterIP('after-refuse')}:86`, `${clusterIP('web-affinity')}:80`, `${clusterIP('echo-udp')}:9000`];
  const trace = (): string => frontends.map((dst) => {
    const proto = dst.endsWith(':9000') ? 'udp' : 'tcp';
    const r = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', dst, '--proto', proto, '--json']);
    assert.equal(r.status, 0, r.stderr);
    // The snapshot's generation counts this agent's syncs; everything else must match.
    return r.stdout.replace(/"generation":\s*\d+,?/g, '').replace(/snapshot generation \d+/g, 'snapshot generation N');
  }).join('\n');
  const longLived = trace();
  assert.match(longLived, /10\.244\.2\.\d+/, 'the trace names endpoints');
  const old = nodes()[0]!;
  process.kill(old.agent.pid, 'SIGKILL');
  const fresh = await eventually(30_000, () => nodes()[0]!.agent, (a) => a.pid !== old.agent.pid && a.answers);
  assert.ok(fresh.answers, 'the supervisor started a fresh agent');
  // Its first sync follows its first full list.
  const freshTrace = await eventually(15_000, trace, (t) => t === longLived);
  assert.equal(freshTrace, longLived);
  kubectl('delete', 'service', 'after-refuse');
});

test('RBAC: without the endpointslices rule a restarted agent fails loudly (403 in its log and in lab status); with it back it recovers', async () => {
  const role = JSON.parse(kubectl('get', 'clusterrole', 'tapir', '-o', 'json')) as { rules: { resources: string[] }[]; metadata: Record<string, unknown> };
  const index = role.rules.findIndex((r) => r.resources.includes('endpointslices'));
  assert.ok(index >= 0);
  kubectl('patch', 'clusterrole', 'tapir', '--type=json', '-p', JSON.stringify([{ op: 'remove', path: `/rules/${index}` }]));
  try {
    const node = nodes()[1]!;
    process.kill(node.agent.pid, 'SIGKILL');
    const problems = await eventually(30_000, () => (lab.status().problems as string[]).join('\n'), (p) => /cannot list resource "endpointslices"/.test(p));
    assert.match(problems, /node-2: .*cannot list resource "endpointslices" in API group "discovery\.k8s\.io"/);
    assert.match(readFileSync(`${stateDir()}/nodes/node-2/agent.log`, 'utf8'), /403 Forbidden: endpointslices\.discovery\.k8s\.io is forbidden/);
    // node-1's agent, already running, is not affected; node-2's pods keep their eth0. (A
    // retry: on a loaded machine one request may meet node-2's agent still restarting.)
    assert.equal(await eventually(15_000, () => httpCode('web-1a', 'http://10.96.0.100/'), (c) => c === '200'), '200');
  } finally {
    delete role.metadata.resourceVersion;
    delete role.metadata.managedFields;
    execFileSync(KUBECTL, ['replace', '-f', '-'], { input: JSON.stringify(role), encoding: 'utf8', env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
  }
  // The supervisor's back-off is at most 30 s.
  const back = await eventually(60_000, () => nodes()[1]!.agent, (a) => a.answers);
  assert.ok(back.answers);
  assert.equal(await eventually(15_000, () => httpCode('web-2a', 'http://10.96.0.100/'), (c) => c === '200'), '200');
});

test('lab down stops the API server and removes its state', () => {
  const saved = JSON.parse(readFileSync(`${stateDir()}/state.json`, 'utf8')) as { apiServer?: { pid: number } };
  const pid = saved.apiServer?.pid;
  assert.equal(typeof pid, 'number');
  const down = lab.down();
  assert.equal(down.status, 0, down.stderr);
  const left = lab.leftovers();
  assert.deepEqual(left, { netns: [], pids: [], dir: false });
  // Gone, or a zombie waiting for a reaper (lab up, its parent, exited long ago).
  let state = 'gone';
  try { state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]!; } catch { /* gone */ }
  assert.ok(state === 'gone' || state === 'Z', `the API server (pid ${pid}) is still running: state ${state}`);
});

// End to end: `tapir lab up --dataplane kernel --ip-family dual`, the kernel baseline
// of the IPv6 benchmarks (the default topology: 2 nodes x 2 pods and a client). Every
// pod gets podCIDRv6 ::2 + j beside its IPv4 address; cni0 holds the IPv6 gateway,
// vxlan0 carries the other node's /64 over the IPv4 underlay. ping -6, curl -g and
// iperf3 over IPv6 on one node and across nodes (the server must see the caller's own
// IPv6 address: no NAT), the node to its pods, a pod added with `lab apply` (its Pod's
// podIPs in the API: both families), and nothing of it in the root namespace.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KUBECTL } from './helpers/apiserver.ts';
import { Lab, TAPIR, tapir, type HttpEcho } from './helpers/lab.ts';

const lab = new Lab('ltk6');

/** The root namespace's IPv6 forwarding and routes before the lab: the lab must leave both alone. */
const rootForwarding = readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8');
const rootRoutes6 = (): string => spawnSync('ip', ['-6', 'route', 'show', 'table', 'all'], { encoding: 'utf8' }).stdout;
let rootRoutesBefore = '';

/** Pod name -> IPv6 address, as state.json records it (PodState.ip6). */
function podIps6(): Record<string, string> {
  const state = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/state.json`, 'utf8')) as { pods: { name: string; ip6?: string | null }[] };
  return Object.fromEntries(state.pods.map((p) => [p.name, p.ip6 ?? '']));
}

let ip6: Record<string, string> = {};
const home = mkdtempSync(join(tmpdir(), 'tapir-lab-kernel-dual-'));

function kubectl(...args: string[]): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

function httpEcho6(from: string, to: string): HttpEcho {
  return JSON.parse(lab.exec(from, 'curl', '-sS', '-g', '--max-time', '5', `http://[${to}]:8080/v6`)) as HttpEcho;
}

before(() => {
  rootRoutesBefore = rootRoutes6();
  const up = lab.up('--dataplane', 'kernel', '--ip-family', 'dual');
  assert.match(up.stderr, /ready: \d+ traffic checks passed/);
  ip6 = podIps6();
  const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
  assert.equal(config.status, 0, config.stderr);
  writeFileSync(join(home, 'config'), config.stdout);
});

after(() => {
  rmSync(home, { recursive: true, force: true });
  const down = lab.down();
  assert.equal(down.status, 0, down.stderr);
  assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  assert.equal(readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8'), rootForwarding, 'the root namespace keeps its IPv6 forwarding setting');
  assert.equal(rootRoutes6(), rootRoutesBefore, 'the root namespace keeps its IPv6 routes');
});

test('every pod has podCIDRv6 ::2 + j of its node beside its IPv4 address', () => {
  assert.deepEqual(ip6, { 'web-1a': 'fd00:10:244:1::2', 'web-1b': 'fd00:10:244:1::3', 'web-2a': 'fd00:10:244:2::2', 'web-2b': 'fd00:10:244:2::3' });
  const s = lab.status();
  assert.equal(s.dataplane, 'kernel');
  assert.equal(s.phase, 'ready');
  assert.deepEqual(lab.ips, { 'web-1a': '10.244.1.2', 'web-1b': '10.244.1.3', 'web-2a': '10.244.2.2', 'web-2b': '10.244.2.3' });
});

test('the pod side: eth0 holds its IPv6 address (/64) and ::/0 goes via the gateway', () => {
  assert.match(lab.exec('web-2b', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'), /inet6 fd00:10:244:2::3\/64 /);
  assert.match(lab.exec('web-2b', 'ip', '-6', 'route', 'show', 'default'), /^default via fd00:10:244:2::1 dev eth0/m);
});

test('the node side: the gateway on cni0, ::0 on vxlan0, the other /64 via its ::0 onlink, forwarding in the node namespace only', () => {
  assert.match(lab.exec('node-1', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'cni0', 'scope', 'global'), /inet6 fd00:10:244:1::1\/64 /);
  assert.match(lab.exec('node-1', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'vxlan0', 'scope', 'global'), /inet6 fd00:10:244:1::\/128 /);
  assert.match(lab.exec('node-1', 'ip', '-6', 'route', 'show', 'fd00:10:244:2::/64'), /via fd00:10:244:2:: dev vxlan0 .*onlink/);
  assert.match(lab.exec('node-1', 'ip', '-6', 'neigh', 'show', 'dev', 'vxlan0'), /fd00:10:244:2:: lladdr 0e:74:6c:00:00:02 PERMANENT/);
  assert.equal(lab.exec('node-2', 'cat', '/proc/sys/net/ipv6/conf/all/forwarding').trim(), '1');
  assert.equal(readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8'), rootForwarding);
});

test('ping -6 between pods on one node and across nodes, and from a node to its pods and the other node\'s', () => {
  assert.match(lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', ip6['web-1b']!), / 0% packet loss/);
  assert.match(lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', ip6['web-2b']!), / 0% packet loss/);
  assert.match(lab.exec('web-2a', 'ping', '-6', '-c', '2', '-W', '2', ip6['web-1b']!), / 0% packet loss/);
  assert.match(lab.exec('node-1', 'ping', '-6', '-c', '1', '-W', '2', ip6['web-1a']!), / 0% packet loss/);
  assert.match(lab.exec('node-1', 'ping', '-6', '-c', '1', '-W', '2', ip6['web-2a']!), / 0% packet loss/);
  // A full-size packet of the pod MTU (1450 - 40 - 8 bytes of payload) crosses the overlay whole.
  assert.match(lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', '1402', ip6['web-2a']!), / 0% packet loss/);
});

test('curl -g over IPv6: same node and across nodes, the server sees the caller\'s own IPv6 address', () => {
  const same = httpEcho6('web-1a', ip6['web-1b']!);
  assert.equal(same.pod, 'web-1b');
  assert.equal(same.node, 'node-1');
  assert.equal(same.client.slice(0, same.client.lastIndexOf(':')), ip6['web-1a']);
  assert.equal(same.server, `${ip6['web-1b']}:8080`);
  const across = httpEcho6('web-2b', ip6['web-1a']!);
  assert.equal(across.pod, 'web-1a');
  assert.equal(across.node, 'node-1');
  assert.equal(across.client.slice(0, across.client.lastIndexOf(':')), ip6['web-2b']);
  // IPv4 still goes as before beside it.
  assert.equal(lab.httpEcho('web-1a', lab.ips['web-2a']!).client.split(':')[0], lab.ips['web-1a']);
});

test('an iperf3 TCP stream over IPv6 across nodes', async () => {
  const port = String(5300 + Math.floor(Math.random() * 500));
  // The server ends after one test (-1), or after 20 s whatever happens.
  const server = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, 'web-2b', '--', 'timeout', '20', 'iperf3', '-s', '-1', '--forceflush', '-p', port], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ended = new Promise<number | null>((resolve) => server.on('close', resolve));
  try {
    let listening = false;
    server.stdout.on('data', (d: Buffer) => { if (d.toString().includes('Server listening')) listening = true; });
    for (const deadline = Date.now() + 10_000; !listening && Date.now() < deadline;) await new Promise((res) => setTimeout(res, 100));
    assert.ok(listening, 'iperf3 -s started in web-2b');
    const out = JSON.parse(lab.exec('web-1a', 'iperf3', '-6', '-c', ip6['web-2b']!, '-p', port, '-t', '1', '-J', '--connect-timeout', '3000')) as {
      start: { connected: { local_host: string; remote_host: string }[] }; end: { sum_received: { bytes: number } };
    };
    assert.equal(out.start.connected[0]!.local_host, ip6['web-1a']);
    assert.equal(out.start.connected[0]!.remote_host, ip6['web-2b']);
    assert.ok(out.end.sum_received.bytes > 0, 'the server received the stream');
    assert.equal(await ended, 0);
  } finally {
    server.kill();
  }
});

test('lab apply: a new pod gets the first free IPv6 address of its node and is reached over IPv6', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-kernel-dual-'));
  const file = join(dir, 'extra.yaml');
  writeFileSync(file, `apiVersion: v1
kind: Pod
metadata: { name: extra6, labels: { app: extra6 } }
spec:
  nodeName: node-2
  containers: [{ name: echo, ports: [{ containerPort: 8080, name: http }] }]
`);
  try {
    const applied = tapir(['lab', 'apply', '--name', lab.name, '-f', file]);
    assert.equal(applied.status, 0, applied.stderr);
    // The node daemon (the lab's kubelet) starts it and writes its status.
    let podIPs: { ip: string }[] = [];
    for (const deadline = Date.now() + 30_000; podIPs.length === 0;) {
      const out = kubectl('get', 'pod', 'extra6', '-o', 'jsonpath={.status.podIPs}');
      if (out !== '') podIPs = JSON.parse(out) as { ip: string }[];
      else if (Date.now() > deadline) assert.fail('pod extra6 has no podIPs after 30 s');
      else await new Promise((res) => setTimeout(res, 200));
    }
    assert.deepEqual(podIPs, [{ ip: '10.244.2.4' }, { ip: 'fd00:10:244:2::4' }]);
    let echo: HttpEcho | undefined;
    for (const deadline = Date.now() + 10_000; echo === undefined;) {
      const r = lab.run('web-1a', 'curl', '-sS', '-g', '--max-time', '2', 'http://[fd00:10:244:2::4]:8080/new');
      if (r.status === 0) echo = JSON.parse(r.stdout) as HttpEcho;
      else if (Date.now() > deadline) assert.fail(`extra6 not reached over IPv6: ${r.stderr}`);
      else await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(echo.pod, 'extra6');
    assert.equal(echo.client.slice(0, echo.client.lastIndexOf(':')), ip6['web-1a']);
    const deleted = tapir(['lab', 'delete', '--name', lab.name, '-f', file]);
    assert.equal(deleted.status, 0, deleted.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

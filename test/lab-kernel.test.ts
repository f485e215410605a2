// End to end: `tapir lab up --dataplane kernel` (the default topology: 2 nodes x 2 pods
// and a client), driven through the CLI as a user would. Pod-to-pod traffic on one node
// and across nodes (VXLAN) with ping, HTTP echo (the server must see the caller's own
// pod IP: no NAT) and UDP/TCP echo; node -> pod; status --json; exec; down.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Lab, tapir as runTapir, type CliResult, type HttpEcho } from './helpers/lab.ts';

const lab = new Lab('ltk');
const LAB = lab.name;

function tapir(...args: string[]): CliResult {
  return runTapir(args);
}

/** `tapir lab exec LAB TARGET -- argv`; fails the test unless it exits 0. */
function exec(target: string, ...argv: string[]): string {
  return lab.exec(target, ...argv);
}

function httpEcho(from: string, ip: string, path = '/hello'): HttpEcho {
  return lab.httpEcho(from, ip, path, ['-H', 'x-test: 1']);
}

function udpEcho(from: string, ip: string, payload: string): string {
  return lab.udpEcho(from, ip, payload);
}

function labNamespaces(): string[] {
  return lab.leftovers().netns;
}

function labProcesses(): number[] {
  return lab.leftovers().pids;
}

let ips: Record<string, string> = {};

before(() => {
  const up = tapir('lab', 'up', '--name', LAB, '--dataplane', 'kernel');
  assert.equal(up.status, 0, up.stderr);
  assert.match(up.stdout, /web-2b\s+node-2\s+10\.244\.2\.3/);
  assert.match(up.stderr, /ready: \d+ traffic checks passed/);
  const status = JSON.parse(tapir('lab', 'status', '--name', LAB, '--json').stdout) as { pods: { name: string; ip: string }[] };
  ips = Object.fromEntries(status.pods.map((p) => [p.name, p.ip]));
});

after(() => {
  const down = tapir('lab', 'down', '--name', LAB);
  assert.equal(down.status, 0, down.stderr);
});

test('status --json describes nodes, pods and client', () => {
  const r = tapir('lab', 'status', '--name', LAB, '--json');
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.name, LAB);
  assert.equal(s.dataplane, 'kernel');
  assert.equal(s.phase, 'ready');
  assert.deepEqual(s.nodes.map((n: { name: string; underlayIP: string; podCIDR: string; netns: string }) => [n.name, n.underlayIP, n.podCIDR, n.netns]), [
    ['node-1', '172.30.0.11', '10.244.1.0/24', `tl-${LAB}-node.node-1`],
    ['node-2', '172.30.0.12', '10.244.2.0/24', `tl-${LAB}-node.node-2`],
  ]);
  assert.equal(s.pods.length, 4);
  for (const pod of s.pods) {
    assert.equal(pod.namespace, 'default');
    assert.deepEqual(pod.labels, { app: 'web' });
    assert.equal(pod.netns, `tl-${LAB}-pod.default.${pod.name}`);
    assert.equal(pod.running, true);
    assert.match(pod.ip, /^10\.244\.[12]\.\d+$/);
    // Every address of the pod, as the Pod object's podIPs name them.
    assert.deepEqual(pod.ips, [pod.ip]);
  }
  // Services with clusterIPs and ipFamilies as the Kubernetes API names them (an IPv4-only lab).
  assert.ok(s.services.length > 0);
  for (const svc of s.services as { type: string; clusterIP: string; clusterIPs: string[]; ipFamilies: string[] }[]) {
    if (svc.type === 'ExternalName') assert.deepEqual([svc.clusterIPs, svc.ipFamilies], [[], []]);
    else {
      assert.equal(svc.clusterIPs[0], svc.clusterIP);
      assert.equal(svc.ipFamilies[0], 'IPv4');
      if (svc.clusterIP !== 'None') assert.deepEqual([svc.clusterIPs.length, svc.ipFamilies], [1, ['IPv4']]);
    }
  }
  assert.deepEqual(s.client, { name: 'client', netns: `tl-${LAB}-client.client`, ip: '172.30.0.100' });
  assert.deepEqual(s.addressing, { underlayCIDR: '172.30.0.0/24', clusterCIDR: '10.244.0.0/16', serviceCIDR: '10.96.0.0/16', loadBalancerPool: '172.30.0.200-172.30.0.250', vni: 4242, mtu: 1500, podMTU: 1450 });
});

test('the pod side matches the plan: eth0 with its IP, MTU 1450, default route via the gateway', () => {
  const link = exec('web-1a', 'ip', '-o', 'link', 'show', 'eth0');
  assert.match(link, /mtu 1450/);
  assert.match(exec('web-1a', 'ip', '-o', '-4', 'addr', 'show', 'eth0'), new RegExp(`inet ${ips['web-1a']!.replaceAll('.', '\\.')}/24`));
  assert.match(exec('web-1a', 'ip', 'route', 'show', 'default'), /default via 10\.244\.1\.1 dev eth0/);
  assert.match(exec('node-1', 'ip', '-d', 'link', 'show', 'vxlan0'), /vxlan id 4242 local 172\.30\.0\.11 .*dstport 4789 nolearning/);
});

test('ping between pods on one node and across nodes', () => {
  exec('web-1a', 'ping', '-c', '1', '-W', '2', ips['web-1b']!);
  exec('web-1a', 'ping', '-c', '1', '-W', '2', ips['web-2a']!);
  exec('web-2b', 'ping', '-c', '1', '-W', '2', ips['web-1b']!);
});

test('HTTP echo: the server sees the caller pod\'s real IP, same node and across nodes', () => {
  const same = httpEcho('web-1a', ips['web-1b']!);
  assert.equal(same.pod, 'web-1b');
  assert.equal(same.node, 'node-1');
  assert.ok(same.client.startsWith(`${ips['web-1a']}:`), same.client);
  assert.equal(same.method, 'GET');
  assert.equal(same.path, '/hello');
  assert.equal(same.headers['x-test'], '1');
  const cross = httpEcho('default/web-1a', ips['web-2b']!, '/cross?x=1');
  assert.equal(cross.pod, 'web-2b');
  assert.equal(cross.node, 'node-2');
  assert.ok(cross.client.startsWith(`${ips['web-1a']}:`), cross.client);
  assert.equal(cross.path, '/cross?x=1');
});

test('full pod-MTU packets cross the overlay: DF ping of 1450 bytes, 1 MB through the TCP echo', () => {
  // 1422 + 8 (ICMP) + 20 (IP) = 1450 = pod MTU; VXLAN adds 50 and must fit underlay 1500.
  exec('web-2a', 'ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1422', ips['web-1b']!);
  const out = exec('web-2a', 'timeout', '10', 'bash', '-c',
    `exec 3<>/dev/tcp/${ips['web-1b']}/9000; (head -c 1000000 <&3 | wc -c) & head -c 1000000 /dev/zero >&3; wait`);
  assert.equal(out.trim(), '1000000');
});

test('UDP echo between pods on one node and across nodes', () => {
  assert.equal(udpEcho('web-1b', ips['web-1a']!, 'same-node'), 'same-node');
  assert.equal(udpEcho('web-1b', ips['web-2a']!, 'cross-node'), 'cross-node');
});

test('node namespace reaches pods on its own and the other node; the client reaches nodes', () => {
  exec('node-1', 'ping', '-c', '1', '-W', '2', ips['web-1a']!);
  exec('node-1', 'ping', '-c', '1', '-W', '2', ips['web-2a']!);
  assert.equal(httpEcho('node-2', ips['web-1b']!).pod, 'web-1b');
  exec('client', 'ping', '-c', '1', '-W', '2', '172.30.0.12');
});

test('exec passes the exit status and stdio through and rejects unknown targets', () => {
  const r = tapir('lab', 'exec', '--name', LAB, 'web-2a', '--', 'sh', '-c', 'echo out; echo err >&2; exit 7');
  assert.equal(r.status, 7);
  assert.equal(r.stdout, 'out\n');
  assert.equal(r.stderr, 'err\n');
  assert.equal(tapir('lab', 'exec', '--name', LAB, 'node-2', '--', 'true').status, 0);
  const unknown = tapir('lab', 'exec', '--name', LAB, 'nope', '--', 'true');
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /has no node, pod or client "nope"/);
  assert.equal(tapir('lab', 'exec', '--name', LAB, 'web-2a').status, 2, 'no command is a usage error');
});

test('workloads outlive `lab up` and run inside their pod namespaces', () => {
  const s = JSON.parse(tapir('lab', 'status', '--name', LAB, '--json').stdout);
  for (const pod of s.pods) {
    const ns = readFileSync(`/proc/${pod.pid}/cmdline`, 'utf8');
    assert.match(ns, /workloads\/main\.ts/);
    const podNs = spawnSync('ip', ['netns', 'identify', String(pod.pid)], { encoding: 'utf8' }).stdout.trim();
    assert.equal(podNs, pod.netns);
  }
});

// Runs last (node:test keeps file order): `after` then finds nothing and must still exit 0.
test('down removes every namespace, process and file; down twice is fine', () => {
  assert.equal(labNamespaces().length, 8, `underlay, 2 nodes, client, 4 pods: ${labNamespaces().join(', ')}`);
  assert.equal(labProcesses().length, 12, '4 workloads, 2 node daemons, the API server, the upstream DNS (nsd: main, xfrd, one server) and tapir dns on each node');
  const first = tapir('lab', 'down', '--name', LAB);
  assert.equal(first.status, 0, first.stderr);
  assert.deepEqual(labNamespaces(), []);
  assert.deepEqual(labProcesses(), []);
  assert.equal(existsSync(`/run/tapir/lab/${LAB}`), false);
  assert.equal(spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout.includes(`tl-${LAB}`), false);
  const second = tapir('lab', 'down', '--name', LAB);
  assert.equal(second.status, 0);
  assert.match(second.stderr, /does not exist/);
});

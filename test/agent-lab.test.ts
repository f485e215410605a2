// The Tapir agent end to end: the default lab wired by Tapir agents (pod TAPs, host
// TUN, VXLAN underlay), pods created by tapir-cni, real clients in real namespaces.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';
import { run } from './helpers/netns.ts';

const lab = new Lab('lta');
const dir = mkdtempSync(join(tmpdir(), 'tapir-agent-lab-'));

before(() => {
  const up = lab.up('--dataplane', 'tapir');
  assert.match(up.stderr, /ready: \d+ traffic checks passed/);
});

after(() => {
  const down = lab.down();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(down.status, 0, down.stderr);
  assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
});

test('ping between pods on one node and across nodes, and to the gateway', () => {
  assert.match(lab.exec('web-1a', 'ping', '-c', '2', '-i', '0.2', '-W', '2', lab.ips['web-1b']!), /2 received/);
  const cross = lab.exec('web-1a', 'ping', '-c', '2', '-i', '0.2', '-W', '2', lab.ips['web-2b']!);
  assert.match(cross, /2 received/);
  assert.match(cross, /ttl=62/, 'two routed hops: the agent on each node');
  assert.match(lab.exec('web-2a', 'ping', '-c', '1', '-W', '2', '10.244.2.1'), /1 received/);
});

test('HTTP across nodes and on one node: the server sees the client pod\'s own address (no NAT)', () => {
  const cross = lab.httpEcho('web-1a', lab.ips['web-2a']!);
  assert.equal(cross.pod, 'web-2a');
  assert.equal(cross.client.split(':')[0], lab.ips['web-1a']);
  const local = lab.httpEcho('web-2b', lab.ips['web-2a']!);
  assert.equal(local.client.split(':')[0], lab.ips['web-2b']);
});

test('UDP echo on one node and across nodes', () => {
  assert.equal(lab.udpEcho('web-1b', lab.ips['web-1a']!, 'same-node'), 'same-node');
  assert.equal(lab.udpEcho('web-1b', lab.ips['web-2a']!, 'cross-node'), 'cross-node');
});

test('the node reaches local and remote pods through the host port, as its underlay address', () => {
  assert.equal(lab.httpEcho('node-1', lab.ips['web-1a']!).client.split(':')[0], '172.30.0.11');
  assert.equal(lab.httpEcho('node-1', lab.ips['web-2b']!).client.split(':')[0], '172.30.0.11');
  assert.match(lab.exec('node-2', 'ping', '-c', '1', '-W', '2', lab.ips['web-1b']!), /1 received/);
});

test('large transfers across nodes: iperf3 TCP (TSO frames whole to the kernel as UDP-tunnel super-frames where it segments them, else segmented onto VXLAN and coalesced into the pod)', () => {
  const received = lab.iperf3('web-1a', 'web-2b', 5211);
  assert.ok(received > 10_000_000, `received ${received} bytes`);
  const sender = agentStats('node-1');
  const receiver = agentStats('node-2');
  // Linux 6.17+ takes UDP-tunnel super-frames from a TAP (the lab's nodes forward IPv4).
  const [major, minor] = release().split('.').map(Number) as [number, number];
  assert.equal(sender.tunnelOffload.on, major > 6 || (major === 6 && minor >= 17), `tunnel offload on node-1 with kernel ${release()}`);
  if (sender.tunnelOffload.on) {
    assert.ok(sender.tunnelOffload.sent > 0, `node-1 handed super-frames to its kernel: ${JSON.stringify(sender.tunnelOffload)}`);
    // Over veth nothing segments them: node-2 receives them whole and hands them on as TSO frames.
    assert.ok(receiver.tunnelOffload.received > 0, `node-2 received super-frames whole: ${JSON.stringify(receiver.tunnelOffload)}`);
  } else {
    assert.ok(receiver.coalescedSegments > 0, 'node-2 coalesced TCP segments into TSO frames for the pod');
  }
});

// Sends 64 MiB of seeded bytes to a TCP echo and reads them back at the same time;
// prints the sha256 of what went and of what came back.
const ECHO_64MIB = `
import hashlib, socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
total = 64 * 1024 * 1024
block = hashlib.sha512(b'tapir').digest() * 1024  # 64 KiB, repeated with a counter below
s = socket.create_connection((host, port), timeout=30)
sent, got = hashlib.sha256(), hashlib.sha256()
def send():
    n = 0
    while n < total:
        chunk = n.to_bytes(8, 'big') + block[8:]
        s.sendall(chunk)
        sent.update(chunk)
        n += len(chunk)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
received = 0
while True:
    data = s.recv(1 << 20)
    if not data:
        break
    got.update(data)
    received += len(data)
t.join()
print(received, sent.hexdigest(), got.hexdigest())
`;

test('64 MiB across nodes, straight and through a Service, arrive intact (sha256 both ways)', () => {
  const server = lab.ips['web-2b']!;
  // A selectorless Service whose one endpoint is web-2b's TCP echo: the Service path is
  // across nodes for certain.
  const manifest = join(dir, 'echo-svc.yaml');
  writeFileSync(manifest, `apiVersion: v1
kind: Service
metadata: { name: echo-2b }
spec:
  clusterIP: 10.96.0.77
  ports: [{ name: echo, port: 9900, targetPort: 9000 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-2b-1
  labels: { kubernetes.io/service-name: echo-2b }
addressType: IPv4
endpoints:
  - addresses: [${server}]
    nodeName: node-2
ports: [{ name: echo, port: 9000, protocol: TCP }]
`);
  const applied = tapir(['lab', 'apply', '--name', lab.name, '-f', manifest]);
  assert.equal(applied.status, 0, applied.stderr);
  try {
    for (const [what, host, port] of [['straight', server, '9000'], ['through the Service', '10.96.0.77', '9900']] as const) {
      const r = lab.run('web-1a', 'timeout', '120', 'python3', '-c', ECHO_64MIB, host, port);
      assert.equal(r.status, 0, `${what}: ${r.stderr}`);
      const [received, sent, got] = r.stdout.trim().split(' ');
      assert.equal(received, String(64 * 1024 * 1024), `${what}: every byte came back`);
      assert.equal(got, sent, `${what}: the bytes that came back are the bytes sent`);
    }
  } finally {
    tapir(['lab', 'delete', '--name', lab.name, '-f', manifest]);
  }
  // Where the kernel takes super-frames, its forwarding of them was checked by now (once a
  // second) and found working: the offload is still on for both nodes.
  const [major, minor] = release().split('.').map(Number) as [number, number];
  if (major > 6 || (major === 6 && minor >= 17)) {
    for (const node of ['node-1', 'node-2']) assert.equal(agentStats(node).tunnelOffload.on, true, `${node}: ${readFileSync(`/run/tapir/lab/${lab.name}/nodes/${node}/agent.log`, 'utf8')}`);
  }
});

test('MTU: full-size DF packets cross; a pod with a too-large MTU is told the path MTU', () => {
  // Pod MTU 1450 = underlay 1500 - 50 (VXLAN): 1422 bytes of ICMP payload fill it exactly.
  assert.match(lab.exec('web-1a', 'ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1422', lab.ips['web-2a']!), /1 received/);
  lab.exec('web-1b', 'ip', 'link', 'set', 'eth0', 'mtu', '1500');
  try {
    const r = lab.run('web-1b', 'ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1472', lab.ips['web-2a']!);
    assert.match(r.stdout, /From 10\.244\.1\.1 .*Frag needed and DF set \(mtu = 1450\)/i, r.stdout);
  } finally {
    lab.exec('web-1b', 'ip', 'link', 'set', 'eth0', 'mtu', '1450');
  }
});

test('tapir capture writes a pcap of the underlay that tshark decodes as VXLAN carrying the pods\' HTTP', async () => {
  const file = join(dir, 'underlay.pcap');
  const capture = spawn(TAPIR, ['capture', '--lab', lab.name, '--node', 'node-1', 'underlay', '-w', file]);
  const closed = new Promise((r) => capture.on('close', r));
  let stderr = '';
  capture.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  await waitForText(() => stderr, /capturing/);
  lab.httpEcho('web-1a', lab.ips['web-2a']!, '/captured');
  capture.kill('SIGINT');
  await closed;
  assert.match(stderr, /[1-9]\d* frames written/);
  assert.ok(statSync(file).size > 24);
  const fields = run('tshark', ['-r', file, '-Y', 'http.request', '-T', 'fields', '-e', 'vxlan.vni', '-e', 'ip.src', '-e', 'http.request.uri']);
  assert.match(fields, new RegExp(`4242\\s+172\\.30\\.0\\.11,${lab.ips['web-1a']!.replace(/\./g, '\\.')}\\s+/captured`));
});

test('a pod capture holds its Ethernet frames; stats count frames and drops per port', async () => {
  const file = join(dir, 'pod.pcap');
  const capture = spawn(TAPIR, ['capture', '--lab', lab.name, 'web-2a', '-w', file, '--seconds', '3']);
  const closed = new Promise((r) => capture.on('close', r));
  let stderr = '';
  capture.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  await waitForText(() => stderr, /capturing/);
  lab.exec('web-2b', 'ping', '-c', '2', '-i', '0.2', lab.ips['web-2a']!);
  await closed;
  const echo = run('tshark', ['-r', file, '-Y', 'icmp', '-T', 'fields', '-e', 'eth.src', '-e', 'ip.src', '-e', 'icmp.type']);
  // Pods of one node resolve each other by ARP, so the request is switched: the
  // sender's own MAC (0a:58 + its address) arrives unchanged.
  const senderMac = `0a:58:${lab.ips['web-2b']!.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
  assert.match(echo, new RegExp(`${senderMac}\\s+${lab.ips['web-2b']!.replace(/\./g, '\\.')}\\s+8`), echo);
  // An address of node-2's pod CIDR that no pod has: web-2b's ARP for it is dropped on
  // web-2b's own port, by reason.
  const podCidr = lab.status().nodes.find((n: { name: string }) => n.name === 'node-2').podCIDR as string;
  const nobody = podCidr.replace(/\.0\/\d+$/, '.250');
  lab.run('web-2b', 'ping', '-c', '1', '-W', '1', nobody);
  const stats = agentStats('node-2');
  assert.ok(stats.ports.find((p) => p.kind === 'underlay')!.rxFrames > 0);
  assert.equal(stats.ports.filter((p) => p.kind === 'pod').length, 2);
  const port2b = stats.ports.find((p) => p.kind === 'pod' && p.rxFrames > 0 && (p.drops['arp-unknown-target'] ?? 0) > 0);
  assert.ok(port2b !== undefined, `a pod port counted the ARP for ${nobody} as arp-unknown-target: ${JSON.stringify(stats.ports)}`);
  const human = tapir(['stats', '--lab', lab.name, '--node', 'node-2']);
  assert.equal(human.status, 0, human.stderr);
  assert.match(human.stdout, /PORT\s+KIND\s+RX FRAMES/);
});

interface AgentStats {
  ports: { name: string; kind: string; rxFrames: number; drops: Record<string, number> }[];
  coalescedSegments: number;
  tunnelOffload: { on: boolean; sent: number; received: number };
}

function agentStats(node: string): AgentStats {
  const r = tapir(['stats', '--lab', lab.name, '--node', node, '--json']);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as AgentStats;
}

async function waitForText(get: () => string, re: RegExp): Promise<void> {
  for (let i = 0; i < 100 && !re.test(get()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.match(get(), re);
}

test('tapir trace asks the running agent: service, endpoint, NAT and the egress port', () => {
  const r = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', '10.96.0.100:80', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const t = JSON.parse(r.stdout) as { verdict: string; servicePort: string; endpoint: string; egress: string; steps: string[] };
  assert.equal(t.verdict, 'nated');
  assert.match(t.servicePort, /^default\/web:/);
  const endpointIp = t.endpoint.split(':')[0]!;
  assert.ok(Object.values(lab.ips).includes(endpointIp), `endpoint ${t.endpoint} is a pod`);
  // The egress follows from where that endpoint lives: a pod port here, or VXLAN to node-2.
  assert.match(t.egress, endpointIp.startsWith('10.244.1.') ? /^pod port tp[0-9a-f]{8}/ : /^VXLAN \(VNI 4242\) to node-2 at 172\.30\.0\.12$/);
  assert.match(t.steps.at(-1)!, /^egress: /);
  const none = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', '10.96.0.100:81']);
  assert.equal(none.status, 0, none.stderr);
  assert.match(none.stdout, /verdict: reject-tcp-rst/);
});

test('every lab agent answers /healthz on its node address and /metrics on 127.0.0.1 inside its namespace', () => {
  for (const [node, address] of [['node-1', '172.30.0.11'], ['node-2', '172.30.0.12']] as const) {
    const health = JSON.parse(lab.exec(node, 'curl', '-sS', '--max-time', '3', `http://${address}:10256/healthz`)) as { healthy: boolean; nodeEligible: boolean };
    assert.deepEqual([health.healthy, health.nodeEligible], [true, true], node);
    const metrics = lab.exec(node, 'curl', '-sS', '--max-time', '3', 'http://127.0.0.1:10249/metrics');
    assert.match(metrics, /^kubeproxy_sync_proxy_rules_last_timestamp_seconds [1-9]/m, node);
    assert.match(metrics, /^tapir_port_rx_frames_total\{port="tp[0-9a-f]+",kind="pod"\} [1-9]/m, `${node}: its pods' frames were counted`);
  }
});

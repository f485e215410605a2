// Services in the lab with the Tapir dataplane and proxy mode: the same suite as the
// kernel proxy modes (test/helpers/lab-services.ts), served by the agents from the lab's
// manifest directory (agent.yaml: manifests, zone, nodePortAddresses). Never skipped:
// a skip that hangs on the source text could switch the suite off with CI green.
// Then what the node's own processes reach through their agent (policy routing into the
// host TUN, src/agent/local-steering.ts): node ports on the node's address and on
// 127.0.0.1, load-balancer and external IPs, UDP, and what is not a service left alone.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { downSuite, eventually, getMany, serviceSuite, udpExchange } from './helpers/lab-services.ts';
import { tapir } from './helpers/lab.ts';

const lab = serviceSuite('lst', ['--dataplane', 'tapir', '--proxy-mode', 'tapir']);

const NODE_1 = '172.30.0.11';
const NODE_2 = '172.30.0.12';
const dir = mkdtempSync(join(tmpdir(), 'lab-node-own-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the node\'s own processes reach node ports on its address and on 127.0.0.1, and the load-balancer and external IPs, through its agent', () => {
  // The agent's rules stand in front of the local table.
  const rules = lab.exec('node-1', 'ip', 'rule', 'show');
  assert.match(rules, /^0:\s+from all to 172\.30\.0\.11 iif lo ipproto tcp dport 30000-\d+ lookup 8277$/m);
  assert.match(rules, /^0:\s+from all to 127\.0\.0\.1 iif lo ipproto tcp dport 30000-\d+ lookup 8277$/m);
  assert.match(rules, /^1:\s+from all lookup local$/m);
  // 172.30.0.200 and .150 go to node-1, which holds them (a /32 on its eth0), .201 is
  // externalTrafficPolicy Local: from the node itself, cluster endpoints, masqueraded
  // (kube-proxy: "masquerade LOCAL traffic", "route LOCAL traffic to cluster endpoints").
  for (const url of [`http://${NODE_1}:30080/own`, 'http://127.0.0.1:30080/lo', 'http://172.30.0.200/lb', 'http://172.30.0.201/local', 'http://172.30.0.150/ext']) {
    const replies = getMany(lab, 'node-1', url, 16);
    for (const r of replies) {
      assert.match(r.pod, /^web-/, url);
      // Only the agent's DNAT turns the node's own address into a pod's.
      assert.match(r.server, /^10\.244\.[12]\.\d+:8080$/, url);
      assert.ok(r.client.startsWith(`${NODE_1}:`), `${url}: the node's own traffic is masqueraded to its address: ${r.client}`);
    }
    assert.deepEqual([...new Set(replies.map((r) => r.node))].sort(), ['node-1', 'node-2'], `${url}: spread over every endpoint`);
  }
  // node-2 does not hold 172.30.0.200, yet its own agent answers it (kube-proxy does the
  // same from every node): masqueraded to node-2's address, never over the wire to node-1.
  for (const r of getMany(lab, 'node-2', 'http://172.30.0.200/', 4)) assert.ok(r.client.startsWith(`${NODE_2}:`), r.client);
  for (const r of getMany(lab, 'node-2', 'http://127.0.0.1:30080/', 4)) assert.ok(r.client.startsWith(`${NODE_2}:`), r.client);
});

test('UDP to a node port from the node, on its address and on 127.0.0.1', async () => {
  const file = join(dir, 'udp-np.yaml');
  writeFileSync(file, 'apiVersion: v1\nkind: Service\nmetadata: { name: echo-udp-np }\nspec:\n  type: NodePort\n  selector: { app: web }\n  ports: [{ name: udp, port: 9000, protocol: UDP, targetPort: udp-echo, nodePort: 30090 }]\n');
  assert.equal(tapir(['lab', 'apply', '--name', lab.name, '-f', file]).status, 0);
  try {
    const answered = (ip: string): boolean => lab.run('node-1', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${ip}/30090; printf ping >&3; head -c 4 <&3`).stdout === 'ping';
    await eventually(() => answered(NODE_1), 'the agent to serve node port 30090/udp');
    assert.deepEqual(udpExchange(lab, 'node-1', NODE_1, 30090, 3), ['q0', 'q1', 'q2']);
    assert.deepEqual(udpExchange(lab, 'node-1', '127.0.0.1', 30090, 3), ['q0', 'q1', 'q2']);
    assert.deepEqual(udpExchange(lab, 'node-2', '127.0.0.1', 30090, 2), ['q0', 'q1']);
  } finally {
    assert.equal(tapir(['lab', 'delete', '--name', lab.name, '-f', file]).status, 0);
  }
});

test('what is no service stays the node\'s: listeners outside and inside the node-port range, the health-check node port, a free node port refused at once', () => {
  const health = (lab.status().services as { name: string; healthCheckNodePort: number }[]).find((s) => s.name === 'web-local')!.healthCheckNodePort;
  // A process of the node's own on 8000 and on 30998 (a node port no service has), bounded in time.
  const server = [
    'import http.server, threading, time',
    'class H(http.server.BaseHTTPRequestHandler):',
    '    def do_GET(self): self.send_response(200); self.end_headers(); self.wfile.write(b"node-1 itself")',
    '    def log_message(self, *a): pass',
    'for p in (8000, 30998): threading.Thread(target=http.server.ThreadingHTTPServer(("0.0.0.0", p), H).serve_forever, daemon=True).start()',
    'time.sleep(60)',
  ].join('\n');
  const start = 'timeout 60 python3 -c "$0" </dev/null >/dev/null 2>&1 & echo $!; for i in $(seq 100); do ss -ltn | grep -q ":30998 " && exit 0; sleep 0.1; done; exit 1';
  const pid = lab.exec('node-1', 'sh', '-c', start, server).trim();
  try {
    const get = (from: string, url: string): string => lab.run(from, 'curl', '-sS', '--max-time', '3', url).stdout;
    for (const url of ['http://127.0.0.1:8000/', `http://${NODE_1}:8000/`, 'http://127.0.0.1:30998/', `http://${NODE_1}:30998/`]) assert.equal(get('node-1', url), 'node-1 itself', url);
    // From outside too: steered to the agent, and handed back to the node's stack.
    assert.equal(get('client', `http://${NODE_1}:30998/`), 'node-1 itself');
    // The health-check node port is the agent's listener in the node's stack, not steered.
    for (const ip of ['127.0.0.1', NODE_1]) assert.match(get('node-1', `http://${ip}:${health}/`), /"name":"web-local"/);
    // Nothing listens on 30999 and no service has it: refused at once (a reset), not left to time out.
    for (const ip of ['127.0.0.1', NODE_1]) {
      const r = lab.run('node-1', 'curl', '-sS', '--max-time', '3', `http://${ip}:30999/`);
      assert.equal(r.status, 7, `curl exit 7 (connection refused): ${r.stderr}`);
    }
  } finally {
    lab.run('node-1', 'kill', pid);
  }
});

// A TCP SYN from web-1a's eth0 (AF_PACKET: the pod's own stack would keep 127.0.0.1 on its lo) to its gateway MAC, for 127.0.0.1:10249.
const SYN_TO_LOOPBACK = `
import socket, struct, sys
src, mymac, gwmac = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), bytes.fromhex(sys.argv[3].replace(':', ''))
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
a, d = socket.inet_aton(src), socket.inet_aton('127.0.0.1')
tcp = struct.pack('!HHIIBBHHH', 40000, 10249, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
tcp = tcp[:16] + struct.pack('!H', csum(a + d + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)) + tcp[18:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, a, d)
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
for _ in range(3): s.send(gwmac + mymac + b'\\x08\\x00' + ip + tcp)
`;

test('a pod cannot reach the node\'s 127.0.0.1 through its gateway (route_localnet is on the host TUN): dropped and counted', () => {
  const drops = (): number => {
    const stats = JSON.parse(tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']).stdout) as { ports: { drops: Record<string, number> }[] };
    return stats.ports.reduce((n, p) => n + (p.drops['loopback-destination'] ?? 0), 0);
  };
  const status = lab.status();
  const pod = status.pods.find((p: { name: string }) => p.name === 'web-1a');
  const gateway = status.nodes.find((n: { name: string }) => n.name === 'node-1').gateway as string;
  const mac = (ip: string): string => `0a:58:${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
  const before = drops();
  lab.exec('web-1a', 'python3', '-c', SYN_TO_LOOPBACK, pod.ip, mac(pod.ip), mac(gateway));
  assert.equal(drops() - before, 3, 'each SYN to 127.0.0.1 dropped by the agent as loopback-destination');
});

downSuite(lab);

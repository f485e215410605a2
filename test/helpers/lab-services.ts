// End-to-end Service checks against a running lab, shared by the proxy modes
// (test/lab-services-iptables.test.ts, -nftables, -tapir): the default topology's demo
// Services from pods on both nodes, from a node and from the external client, then
// `lab apply` / `lab delete` of a Pod and a Service, bad manifests, and `lab down`.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Lab, TAPIR, tapir, type HttpEcho } from './lab.ts';

export interface ServiceView {
  name: string; namespace: string; type: string; clusterIP: string; externalIPs: string[]; loadBalancerIPs: string[]; healthCheckNodePort: number;
  ports: { name: string; port: number; protocol: string; targetPort: number | string; nodePort: number }[];
  endpoints: { ip: string; node: string; ready: boolean; serving: boolean; terminating: boolean }[];
}

const CLIENT_IP = '172.30.0.100';
const NODE_IPS = { 'node-1': '172.30.0.11', 'node-2': '172.30.0.12' } as const;

export function services(lab: Lab): Map<string, ServiceView> {
  return new Map((lab.status().services as ServiceView[]).map((s) => [`${s.namespace}/${s.name}`, s]));
}

export function get(lab: Lab, from: string, url: string): HttpEcho {
  const out = lab.exec(from, 'curl', '-sS', '--max-time', '3', url);
  return JSON.parse(out) as HttpEcho;
}

/** `count` requests in one exec (one process start instead of `count`). */
export function getMany(lab: Lab, from: string, url: string, count: number): HttpEcho[] {
  const out = lab.exec(from, 'sh', '-c', `for i in $(seq ${count}); do curl -sS --max-time 3 '${url}' || exit 1; done`);
  return out.trim().split('\n').map((line) => JSON.parse(line) as HttpEcho);
}

export async function eventually(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Everything `lab apply` could have touched: the manifest files and the lab's pods. */
function fingerprint(lab: Lab): string {
  const dir = `/run/tapir/lab/${lab.name}/manifests`;
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(join(dir, file)));
  const state = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/state.json`, 'utf8')) as { pods: unknown[] };
  hash.update(JSON.stringify(state.pods));
  return hash.digest('hex');
}

const DEMO = `apiVersion: v1
kind: Namespace
metadata: { name: demo }
---
apiVersion: v1
kind: Pod
metadata: { name: api-1, namespace: demo, labels: { app: api } }
spec:
  nodeName: node-2
  containers:
    - name: api
      ports: [{ name: web, containerPort: 8181 }]
      readinessProbe: { httpGet: { port: web, path: /ready }, periodSeconds: 1 }
---
apiVersion: v1
kind: Pod
metadata: { name: cmd-1, namespace: demo, labels: { app: cmd } }
spec:
  containers:
    - name: files
      command: [python3, -m, http.server, "7000", --bind, 0.0.0.0, --directory, READY_DIR]
      ports: [{ containerPort: 7000 }]
      readinessProbe: { httpGet: { port: 7000, path: /ready }, periodSeconds: 1, failureThreshold: 1 }
---
apiVersion: v1
kind: Service
metadata: { name: api, namespace: demo }
spec:
  type: LoadBalancer
  selector: { app: api }
  ports: [{ name: http, port: 8080, targetPort: web }]
`;

const BAD: Record<string, { text: string; expect: RegExp }> = {
  'wrong-kind.yaml': { text: 'apiVersion: v1\nkind: Deployment\nmetadata: { name: x }\n', expect: /wrong-kind\.yaml: document 1 \(Deployment default\/x\): kind: "Deployment" is not supported/ },
  'missing.yaml': { text: 'apiVersion: v1\nkind: Service\nmetadata: { name: nope }\nspec: { selector: { app: web } }\n', expect: /missing\.yaml: document 1 \(Service default\/nope\): spec\.ports: required field is missing/ },
  'range.yaml': { text: 'apiVersion: v1\nkind: Namespace\nmetadata: { name: ok-first }\n---\napiVersion: v1\nkind: Service\nmetadata: { name: big }\nspec: { ports: [{ port: 70000 }] }\n', expect: /range\.yaml: document 2 \(Service default\/big\): spec\.ports\[0\]\.port: 70000 is out of range 1-65535/ },
  'ip.yaml': { text: 'apiVersion: v1\nkind: Service\nmetadata: { name: ext }\nspec: { externalIPs: [172.30.0.999], ports: [{ port: 80 }] }\n', expect: /ip\.yaml: document 1 \(Service default\/ext\): spec\.externalIPs\[0\]: "172\.30\.0\.999" must be a valid IP address \(such as 10\.0\.0\.10 or fd00::10\)/ },
  'garbage.yaml': { text: 'kind: [Service\n  metadata: {{{\n', expect: /garbage\.yaml: document 1: YAML syntax error/ },
  'node.yaml': { text: 'apiVersion: v1\nkind: Node\nmetadata: { name: node-9 }\n', expect: /node\.yaml: document 1 \(Node node-9\): kind: Nodes belong to the lab/ },
  'immutable.yaml': {
    text: 'apiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec: { clusterIP: 10.96.0.99, selector: { app: web }, ports: [{ name: http, port: 80, targetPort: http }] }\n',
    expect: /immutable\.yaml: document 1 \(Service default\/web\): spec\.clusterIP: field is immutable \(it is 10\.96\.0\.100\)/,
  },
};

/** Registers the whole suite for one lab (`up` arguments select dataplane and proxy mode). */
export function serviceSuite(prefix: string, upArgs: string[], options: { skip?: string } = {}): Lab {
  const lab = new Lab(prefix);
  const dir = mkdtempSync(join(tmpdir(), 'lab-services-'));
  const skip = options.skip;
  let svc = new Map<string, ServiceView>();

  before(() => {
    if (skip !== undefined) return;
    // The manifest mode (clusterless): the suite reads and fingerprints the manifest
    // directory; the cluster mode's apply and delete are test/lab-apiserver-lab.test.ts's.
    const up = lab.up('--source', 'manifests', ...upArgs);
    assert.match(up.stderr, /service\/web-local created/);
    svc = services(lab);
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
    if (skip === undefined) lab.down();
  });

  test('status --json lists the demo services with allocations and endpoints', { skip }, () => {
    assert.deepEqual([...svc.keys()].sort(), ['default/echo-udp', 'default/web', 'default/web-affinity', 'default/web-ext', 'default/web-lb', 'default/web-local', 'default/web-nodeport', 'kube-system/kube-dns']);
    // The lab's DNS addon holds the cluster DNS address; its endpoints are the nodes.
    assert.equal(svc.get('kube-system/kube-dns')!.clusterIP, '10.96.0.10');
    const web = svc.get('default/web')!;
    assert.equal(web.clusterIP, '10.96.0.100');
    assert.deepEqual(web.ports, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'http', nodePort: 0 }]);
    assert.equal(web.endpoints.length, 4);
    assert.ok(web.endpoints.every((e) => e.ready && e.serving && !e.terminating), JSON.stringify(web.endpoints));
    assert.deepEqual(web.endpoints.map((e) => e.node).sort(), ['node-1', 'node-1', 'node-2', 'node-2']);
    assert.equal(svc.get('default/web-nodeport')!.ports[0]!.nodePort, 30080);
    assert.deepEqual(svc.get('default/web-lb')!.loadBalancerIPs, ['172.30.0.200']);
    const local = svc.get('default/web-local')!;
    assert.deepEqual(local.loadBalancerIPs, ['172.30.0.201']);
    assert.ok(local.healthCheckNodePort >= 30000 && local.healthCheckNodePort <= 32767);
    assert.deepEqual(svc.get('default/web-ext')!.externalIPs, ['172.30.0.150']);
    assert.match(svc.get('default/echo-udp')!.clusterIP, /^10\.96\.\d+\.\d+$/);
    const s = lab.status();
    assert.deepEqual(s.nodes.map((n: { zone: string }) => n.zone), ['zone-a', 'zone-b']);
    assert.ok(s.pods.every((p: { ready: boolean }) => p.ready));
  });

  test('cluster IP from a pod on each node and from a node reaches pods on both nodes, unmasqueraded', { skip }, () => {
    for (const from of ['web-1a', 'web-2b']) {
      const seen = new Set<string>();
      for (const reply of getMany(lab, from, 'http://10.96.0.100/svc', 16)) {
        seen.add(reply.pod);
        assert.equal(reply.path, '/svc');
        // Pod to service keeps the pod's address, except a pod reaching itself (hairpin SNAT).
        if (reply.pod !== from) assert.ok(reply.client.startsWith(`${lab.ips[from]}:`), `${from} -> ${reply.pod}: ${reply.client}`);
      }
      assert.ok(seen.size >= 2, `${from} reached only ${[...seen].join(', ')}`);
    }
    assert.match(get(lab, 'node-2', 'http://10.96.0.100/').pod, /^web-/);
    const udp = svc.get('default/echo-udp')!.clusterIP;
    assert.equal(lab.exec('web-1b', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${udp}/9000; printf svc-udp >&3; head -c 7 <&3`), 'svc-udp');
  });

  test('node port and load-balancer IPs from the external client: Cluster masquerades, Local keeps the source', { skip }, () => {
    for (const ip of Object.values(NODE_IPS)) {
      const reply = get(lab, 'client', `http://${ip}:30080/np`);
      assert.match(reply.pod, /^web-/);
      assert.ok(!reply.client.startsWith(`${CLIENT_IP}:`), `externalTrafficPolicy Cluster masquerades: ${reply.client}`);
    }
    const lb = get(lab, 'client', 'http://172.30.0.200/');
    assert.ok(!lb.client.startsWith(`${CLIENT_IP}:`), lb.client);
    // Local: node-1 announces (first node with a ready local endpoint) and serves it itself.
    for (const reply of getMany(lab, 'client', 'http://172.30.0.201/', 6)) {
      assert.equal(reply.node, 'node-1');
      assert.ok(reply.client.startsWith(`${CLIENT_IP}:`), `Local keeps the client address: ${reply.client}`);
    }
    assert.deepEqual(lab.status().nodes.map((n: { daemon: { announced: string[] } }) => n.daemon.announced), [['172.30.0.150', '172.30.0.200', '172.30.0.201'], []]);
    assert.match(get(lab, 'client', 'http://172.30.0.150/').pod, /^web-/);
  });

  test('externalTrafficPolicy Local: the health-check node port answers with the local endpoint count', { skip }, () => {
    const port = svc.get('default/web-local')!.healthCheckNodePort;
    for (const ip of Object.values(NODE_IPS)) {
      const r = lab.run('client', 'curl', '-sS', '--max-time', '3', '-w', ' %{http_code}', `http://${ip}:${port}/`);
      assert.equal(r.status, 0, r.stderr);
      const [body, code] = [r.stdout.slice(0, r.stdout.lastIndexOf(' ')), r.stdout.slice(r.stdout.lastIndexOf(' ') + 1)];
      assert.equal(code, '200');
      const health = JSON.parse(body) as { service: { namespace: string; name: string }; localEndpoints: number };
      assert.deepEqual(health.service, { namespace: 'default', name: 'web-local' });
      assert.equal(health.localEndpoints, 2);
    }
  });

  test('ClientIP session affinity keeps one client on one endpoint', { skip }, () => {
    const ip = svc.get('default/web-affinity')!.clusterIP;
    const pods = new Set(getMany(lab, 'web-2a', `http://${ip}/`, 12).map((r) => r.pod));
    assert.equal(pods.size, 1, [...pods].join(', '));
    // Without affinity the same client spreads over the endpoints.
    assert.ok(new Set(getMany(lab, 'web-2a', 'http://10.96.0.100/', 12).map((r) => r.pod)).size >= 2);
  });

  test('a bad manifest is rejected naming file, document and field, and the lab stays as it was', { skip }, () => {
    const before = fingerprint(lab);
    for (const [file, { text, expect }] of Object.entries(BAD)) {
      writeFileSync(join(dir, file), text);
      const r = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, file)]);
      assert.equal(r.status, 1, `${file}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, expect);
      assert.match(r.stderr, /nothing was changed/);
      assert.equal(r.stdout, '');
    }
    assert.equal(fingerprint(lab), before, 'manifests and pods unchanged');
  });

  test('apply Pods and a Service: scheduled, ready, reachable by exec and through the service', { skip }, async () => {
    writeFileSync(join(dir, 'demo.yaml'), DEMO.replace('READY_DIR', dir));
    const r = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'demo.yaml')]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['namespace/demo created', 'pod/api-1 created', 'pod/cmd-1 created', 'service/api created']);
    await eventually(() => services(lab).get('demo/api')?.endpoints.some((e) => e.ready) === true, 'demo/api-1 ready');
    const pod = lab.status().pods.find((p: { name: string }) => p.name === 'api-1');
    assert.equal(pod.node, 'node-2');
    assert.match(pod.ip, /^10\.244\.2\.\d+$/);
    assert.equal(lab.exec('demo/api-1', 'ip', '-4', '-o', 'addr', 'show', 'eth0').includes(pod.ip), true);
    assert.equal(lab.exec('api-1', 'cat', '/proc/net/tcp').includes(':1FF5 '), true, 'the echo listens on 8181 (0x1FF5)');
    const api = services(lab).get('demo/api')!;
    const reply = get(lab, 'web-1a', `http://${api.clusterIP}:8080/hi`);
    assert.equal(reply.pod, 'api-1');
    assert.equal(reply.server, `${pod.ip}:8181`);
    const again = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'demo.yaml')]);
    assert.deepEqual(again.stdout.trim().split('\n'), ['namespace/demo unchanged', 'pod/api-1 unchanged', 'pod/cmd-1 unchanged', 'service/api unchanged']);
    // The lab plays the cloud: an address from the pool, announced by the first node.
    assert.deepEqual(api.loadBalancerIPs, ['172.30.0.202']);
    await eventually(() => lab.status().nodes[0].daemon.announced.includes('172.30.0.202'), 'node-1 to announce 172.30.0.202');
    assert.equal(get(lab, 'client', 'http://172.30.0.202:8080/').pod, 'api-1');
  });

  test('healthCheckNodePort: 200 on the node with a local endpoint, 503 where there is none', { skip }, async () => {
    // demo/api-1 runs on node-2 only: a Local service of it is healthy there alone.
    writeFileSync(join(dir, 'hc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: api-local, namespace: demo }\nspec:\n  type: LoadBalancer\n  externalTrafficPolicy: Local\n  selector: { app: api }\n  ports: [{ name: http, port: 8080, targetPort: web }]\n');
    assert.equal(tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'hc.yaml')]).status, 0);
    try {
      await eventually(() => (services(lab).get('demo/api-local')?.healthCheckNodePort ?? 0) > 0, 'a health-check node port for demo/api-local');
      const port = services(lab).get('demo/api-local')!.healthCheckNodePort;
      const check = (ip: string): { code: string; localEndpoints: number } => {
        const r = lab.run('client', 'curl', '-sS', '--max-time', '3', '-w', ' %{http_code}', `http://${ip}:${port}/`);
        assert.equal(r.status, 0, r.stderr);
        const at = r.stdout.lastIndexOf(' ');
        return { code: r.stdout.slice(at + 1), localEndpoints: (JSON.parse(r.stdout.slice(0, at)) as { localEndpoints: number }).localEndpoints };
      };
      await eventually(() => check(NODE_IPS['node-2']!).code === '200', 'node-2 healthy for demo/api-local');
      assert.deepEqual(check(NODE_IPS['node-2']!), { code: '200', localEndpoints: 1 });
      assert.deepEqual(check(NODE_IPS['node-1']!), { code: '503', localEndpoints: 0 });
    } finally {
      assert.equal(tapir(['lab', 'delete', '--name', lab.name, '-f', join(dir, 'hc.yaml')]).status, 0);
    }
  });

  test('a container\'s command runs in the pod; its readinessProbe decides when it is Ready', { skip }, async () => {
    const ready = (): boolean => lab.status().pods.find((p: { name: string }) => p.name === 'cmd-1')?.ready === true;
    const pod = lab.status().pods.find((p: { name: string }) => p.name === 'cmd-1');
    assert.equal(pod.node, 'node-1', 'scheduled on the node with the fewest pods (api-1 went to node-2)');
    // The server answers (404 for /ready), so it runs in the pod's namespace, yet it is not Ready.
    assert.equal(lab.run('web-2a', 'curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '3', `http://${pod.ip}:7000/ready`).stdout, '404');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(ready(), false, 'httpGet /ready fails: not Ready');
    writeFileSync(join(dir, 'ready'), 'ok\n');
    await eventually(ready, 'cmd-1 to turn Ready once /ready exists', 5000);
    rmSync(join(dir, 'ready'));
    await eventually(() => !ready(), 'cmd-1 to turn NotReady again (failureThreshold 1)', 5000);
  });

  test('delete the Pod: terminating (serving, not ready) for its grace period, then gone; its service rejects', { skip }, async () => {
    writeFileSync(join(dir, 'pod.yaml'), DEMO.split('---\n')[1]!);
    const child = spawn(TAPIR, ['lab', 'delete', '--name', lab.name, '-f', join(dir, 'pod.yaml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await eventually(() => {
      const ep = services(lab).get('demo/api')?.endpoints[0];
      return ep !== undefined && ep.terminating && ep.serving && !ep.ready;
    }, 'the endpoint to turn terminating', 5000);
    assert.equal(lab.status().pods.find((p: { name: string }) => p.name === 'api-1').terminating, true);
    assert.equal(await exited, 0);
    assert.equal(stdout, 'pod "api-1" deleted\n');
    const status = lab.status();
    assert.equal(status.pods.some((p: { name: string }) => p.name === 'api-1'), false);
    assert.deepEqual(services(lab).get('demo/api')!.endpoints, []);
    assert.equal(lab.leftovers().netns.some((n) => n.endsWith('.demo.api-1')), false);
    // No endpoints: the connection is refused at once (REJECT), not left to time out.
    const r = lab.run('web-1a', 'curl', '-sS', '--max-time', '3', `http://${services(lab).get('demo/api')!.clusterIP}:8080/`);
    assert.equal(r.status, 7, `curl exit 7 (connection refused): ${r.stderr}`);
    // The rest goes, and with the Service its load-balancer address.
    const rest = tapir(['lab', 'delete', '--name', lab.name, '-f', join(dir, 'demo.yaml')]);
    assert.equal(rest.status, 1, 'api-1 is gone already: nothing is deleted');
    assert.match(rest.stderr, /demo\.yaml: document 2 \(Pod demo\/api-1\): metadata\.name: not found/);
    writeFileSync(join(dir, 'rest.yaml'), DEMO.replace('READY_DIR', dir).split('---\n').filter((d) => !d.includes('name: api-1')).join('---\n'));
    const done = tapir(['lab', 'delete', '--name', lab.name, '-f', join(dir, 'rest.yaml')]);
    assert.equal(done.status, 0, done.stderr);
    assert.equal(services(lab).has('demo/api'), false);
    await eventually(() => !lab.status().nodes[0].daemon.announced.includes('172.30.0.202'), '172.30.0.202 to be withdrawn');
    assert.equal(lab.exec('node-1', 'ip', '-4', 'addr', 'show', 'dev', 'eth0').includes('172.30.0.202'), false);
  });

  return lab;
}

/**
 * Kernel proxy modes: like kube-proxy, the lab deletes the UDP conntrack entries of an
 * endpoint that went away, so a UDP client is not left sending into a deleted pod.
 */
export function conntrackSuite(lab: Lab): void {
  test('UDP conntrack entries to a deleted endpoint are removed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-services-'));
    try {
      const pod = 'apiVersion: v1\nkind: Pod\nmetadata: { name: dns-1, labels: { app: dns } }\nspec:\n  nodeName: node-1\n  terminationGracePeriodSeconds: 0\n  containers: [{ name: dns, ports: [{ name: dns, containerPort: 5353, protocol: UDP }] }]\n';
      const service = 'apiVersion: v1\nkind: Service\nmetadata: { name: dns }\nspec:\n  clusterIP: 10.96.0.53\n  selector: { app: dns }\n  ports: [{ port: 53, protocol: UDP, targetPort: dns }]\n';
      writeFileSync(join(dir, 'pod.yaml'), pod);
      writeFileSync(join(dir, 'all.yaml'), `${pod}---\n${service}`);
      assert.equal(tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'all.yaml')]).status, 0);
      await eventually(() => services(lab).get('default/dns')?.endpoints[0]?.ready === true, 'dns-1 ready');
      const send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 40053)); s.settimeout(2); s.sendto(b'q', ('10.96.0.53', 53)); print(s.recv(10).decode())";
      assert.equal(lab.exec('web-2a', 'python3', '-c', send).trim(), 'q');
      const entries = (): string[] => lab.exec('node-2', 'conntrack', '-L', '-p', 'udp', '--orig-dst', '10.96.0.53').split('\n').filter((l) => l.includes('sport=40053'));
      assert.equal(entries().length, 1, 'the client\'s flow is tracked on its node');
      assert.equal(tapir(['lab', 'delete', '--name', lab.name, '-f', join(dir, 'pod.yaml')]).status, 0);
      await eventually(() => entries().length === 0, 'the stale UDP entry to be deleted', 5000);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Last test of a file: `lab down` removes every namespace, process and file. */
export function downSuite(lab: Lab, skip?: string): void {
  test('down leaves nothing', { skip }, () => {
    const r = lab.down();
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  });
}

/**
 * A container command answering each UDP datagram on `port` with "POD_NAME CLIENT_IP:PORT
 * PAYLOAD", so a UDP test sees which endpoint served it and what source it saw (the
 * built-in UDP echo only mirrors the payload).
 */
export function udpWhoAmI(port: number): string[] {
  return ['python3', '-c', [
    'import os, socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    `s.bind(('0.0.0.0', ${port}))`,
    'while True:',
    '    d, a = s.recvfrom(2048)',
    "    s.sendto(('%s %s:%d ' % (os.environ['POD_NAME'], a[0], a[1])).encode() + d, a)",
  ].join('\n')];
}

/**
 * Python sending `count` datagrams from one connected UDP socket (source port
 * `sourcePort`, 0: any) to ip:port, one at a time; it prints one line per datagram: the
 * answer, "refused" (an ICMP port unreachable came back: a connected socket reports it
 * as ECONNREFUSED) or "timeout".
 */
export function udpScript(ip: string, port: number, count: number, sourcePort = 0): string {
  return [
    'import socket, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
    `s.bind(('0.0.0.0', ${sourcePort}))`,
    `s.connect(('${ip}', ${port}))`,
    's.settimeout(3)',
    `for i in range(${count}):`,
    "    s.send(b'q%d' % i)",
    '    try: print(s.recv(2048).decode(), flush=True)',
    "    except ConnectionRefusedError: print('refused', flush=True)",
    "    except socket.timeout: print('timeout', flush=True)",
  ].join('\n');
}

/** Runs udpScript in `from`; returns its lines. */
export function udpExchange(lab: Lab, from: string, ip: string, port: number, count: number, sourcePort = 0): string[] {
  return lab.exec(from, 'python3', '-c', udpScript(ip, port, count, sourcePort)).trim().split('\n');
}

/**
 * The ServiceSnapshot a node's agent compiles, as `tapir trace --snapshot` reads it: the
 * same control code (ServiceController) over the lab's API server (cluster mode) or its
 * manifest directory, with the node options src/agent/service-sync.ts derives. The agent has no
 * call that hands out its own snapshot, so this is a recompilation, not a copy.
 */
export async function nodeSnapshotJson(lab: Lab, node: string): Promise<string> {
  const { loadAgentConfig } = await import('../../src/agent/config-file.ts');
  const { ServiceController } = await import('../../src/control/service-controller.ts');
  const { ManifestDir } = await import('../../src/k8s/manifest-dir.ts');
  const { serviceSnapshotToJson } = await import('../../src/model/snapshot-json.ts');
  const { ipv4ToString } = await import('../../src/wire/address.ts');
  const { KubernetesSource, PROXY_LABEL_SELECTOR } = await import('../../src/k8s/api-source.ts');
  const { Kind } = await import('../../src/k8s/objects.ts');
  const state = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/state.json`, 'utf8')) as { objectStore?: string; apiServer?: { hostKubeconfig: string }; nodes: { name: string; zone: string; underlayIP: string }[] };
  let json: string | undefined;
  const problems: string[] = [];
  let options;
  if (state.objectStore === 'kubernetes') {
    // Cluster mode: what the agent reads from the API (kinds and selectors of
    // src/agent/service-sync.ts), its node's fields as its Node object gives them.
    const n = state.nodes.find((x) => x.name === node)!;
    options = {
      source: new KubernetesSource({
        api: { kubeconfig: state.apiServer!.hostKubeconfig },
        kinds: [{ kind: Kind.SERVICE, labelSelector: PROXY_LABEL_SELECTOR }, { kind: Kind.ENDPOINT_SLICE, labelSelector: PROXY_LABEL_SELECTOR }, { kind: Kind.NODE }],
      }),
      cluster: true,
      node: { name: n.name, zone: n.zone, nodePortAddresses: [n.underlayIP] },
    };
  } else {
    const c = loadAgentConfig(`/run/tapir/lab/${lab.name}/nodes/${node}/agent.yaml`);
    options = {
      source: new ManifestDir({ dir: c.manifests! }),
      node: { name: c.nodeName, ...(c.zone !== '' ? { zone: c.zone } : {}), nodePortAddresses: c.nodePortAddresses.map(ipv4ToString) },
      serviceCIDR: c.serviceCIDR,
      nodePortRange: c.nodePortRange,
    };
  }
  const controller = new ServiceController({
    ...options,
    onSnapshot: (s) => { json = serviceSnapshotToJson(s); },
    onError: (err) => { problems.push(err.message); },
  });
  try {
    await controller.start();
  } finally {
    controller.stop();
  }
  assert.ok(json !== undefined, `no snapshot compiled for ${node}: ${problems.join('; ')}`);
  return json;
}

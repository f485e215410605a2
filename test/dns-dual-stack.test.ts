// Cluster DNS for dual-stack Services, end to end: the lab API server with two service
// CIDRs (10.96.0.0/16,fd00:10:96::/112) and its EndpointSlice controller hold the
// Services and pods (kubectl applies them, the pods' podIPs carry both families);
// `tapir dns --kubeconfig` serves them on 127.0.0.1 (a port of this test's; nothing
// leaves the host's loopback); dig asks for AAAA, A, PTR in ip6.arpa and SRV, and a raw
// query's answer is decoded with dns-packet.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { ApiServerProcess } from './helpers/apiserver.ts';
import { waitFor } from './helpers/netns.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const NODE = join(ROOT, 'scripts/node');
const MAIN = join(ROOT, 'src/cli/main.ts');
const run = promisify(execFile);

const api = new ApiServerProcess(['--service-cidr', '10.96.0.0/16,fd00:10:96::/112', '--controllers']);
let dns: ChildProcess | undefined;
let port = 0;
let output = '';

const OBJECTS = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilyPolicy: PreferDualStack
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: six}
spec:
  ipFamilies: [IPv6]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ipFamilyPolicy: RequireDualStack
  selector: {app: db}
  ports: [{name: pg, port: 5432}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, image: tapir/echo, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {name: db-0, labels: {app: db}}
spec:
  nodeName: node-a
  hostname: db-0
  subdomain: db
  containers: [{name: db, image: tapir/echo, ports: [{containerPort: 5432}]}]
`;

async function podStatus(name: string, v4: string, v6: string): Promise<void> {
  const status = { status: { phase: 'Running', podIP: v4, podIPs: [{ ip: v4 }, { ip: v6 }], conditions: [{ type: 'Ready', status: 'True' }] } };
  const r = await api.api('PATCH', `/api/v1/namespaces/default/pods/${name}/status`, status, undefined, 'application/merge-patch+json');
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function clusterIPs(name: string): Promise<string[]> {
  return (JSON.parse(await api.ok(['get', 'svc', name, '-o', 'json'])) as { spec: { clusterIPs: string[] } }).spec.clusterIPs;
}

before(async () => {
  await api.start();
  await api.ok(['apply', '-f', '-'], OBJECTS);
  await podStatus('web-1', '10.244.1.5', 'fd00:10:244:1::5');
  await podStatus('db-0', '10.244.1.9', 'fd00:10:244:1::9');
  // A free port on the loopback for both UDP and TCP (the server binds both).
  const probe = createSocket('udp4');
  await new Promise<void>((resolve) => probe.bind(0, '127.0.0.1', resolve));
  port = probe.address().port;
  probe.close();
  const corefile = join(api.dir, 'Corefile');
  writeFileSync(corefile, `.:${port} {\n    kubernetes cluster.local in-addr.arpa ip6.arpa {\n       pods insecure\n       ttl 30\n    }\n}\n`);
  dns = spawn(NODE, [MAIN, 'dns', '--corefile', corefile, '--kubeconfig', join(api.dir, 'admin.kubeconfig'), '--bind', '127.0.0.1', '--udp', 'dgram', '--node', 'node-a'], { stdio: ['ignore', 'pipe', 'pipe'] });
  dns.stdout!.on('data', (d: Buffer) => { output += d.toString(); });
  dns.stderr!.on('data', (d: Buffer) => { output += d.toString(); });
  await waitFor(() => /serving .* \(udp, tcp\)/.test(output) || dns!.exitCode !== null, 30_000);
  assert.equal(dns.exitCode, null, `tapir dns exited: ${output}`);
});

after(async () => {
  if (dns !== undefined && dns.exitCode === null) {
    dns.kill('SIGTERM');
    await new Promise((resolve) => dns!.once('exit', resolve));
  }
  await api.cleanup();
});

async function dig(...args: string[]): Promise<string> {
  return (await run('dig', ['@127.0.0.1', '-p', String(port), '+time=2', '+tries=1', ...args], { timeout: 10_000 })).stdout;
}

/** dig until the answer is what the API server's objects say (the slices come from its controller). */
async function digUntil(expected: string, ...args: string[]): Promise<void> {
  let last = '';
  await waitFor(async () => (last = (await dig('+short', ...args)).trim()) === expected, 15_000, 100).catch(() => {});
  assert.equal(last, expected, `dig ${args.join(' ')}`);
}

test('dig: AAAA and A of a dual-stack Service, NODATA for the family an IPv6-only one lacks, ip6.arpa PTR', async () => {
  const [web4, web6] = await clusterIPs('web');
  assert.ok(web4 !== undefined && web6 !== undefined && web6.startsWith('fd00:10:96::'), `${web4} ${web6}`);
  await digUntil(web6!, 'AAAA', 'web.default.svc.cluster.local');
  await digUntil(web4!, 'A', 'web.default.svc.cluster.local');
  const [six] = await clusterIPs('six');
  await digUntil(six!, 'AAAA', 'six.default.svc.cluster.local');
  const nodata = await dig('A', 'six.default.svc.cluster.local');
  assert.match(nodata, /status: NOERROR/);
  assert.match(nodata, /ANSWER: 0, AUTHORITY: 1/);
  assert.match(nodata, /cluster\.local\.\s+30\s+IN\s+SOA\s+ns\.dns\.cluster\.local\./);
  await digUntil('web.default.svc.cluster.local.', '-x', web6!);
  await digUntil('six.default.svc.cluster.local.', '-x', six!);
  await digUntil('web.default.svc.cluster.local.', '-x', web4!);
});

test('dig: a headless dual-stack Service answers its pod\'s addresses of both families, by hostname too, and PTR', async () => {
  await digUntil('fd00:10:244:1::9', 'AAAA', 'db.default.svc.cluster.local');
  await digUntil('10.244.1.9', 'A', 'db.default.svc.cluster.local');
  await digUntil('fd00:10:244:1::9', 'AAAA', 'db-0.db.default.svc.cluster.local');
  await digUntil('db-0.db.default.svc.cluster.local.', '-x', 'fd00:10:244:1::9');
  // A ClusterIP Service's ready endpoint without a hostname: the dashed IPv6 name.
  await digUntil('fd00:10:244:1::5', 'AAAA', 'fd00-10-244-1--5.web.default.svc.cluster.local');
});

test('SRV decoded with dns-packet: targets with their A and AAAA records in the additional section', async () => {
  await digUntil('0 100 5432 db-0.db.default.svc.cluster.local.', 'SRV', '_pg._tcp.db.default.svc.cluster.local');
  const socket = createSocket('udp4');
  try {
    const query = dnsPacket.encode({ type: 'query', id: 77, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: 'SRV', name: '_http._tcp.web.default.svc.cluster.local' }] });
    const reply = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from tapir dns')), 5000);
      socket.once('message', (m) => { clearTimeout(timer); resolve(m); });
      socket.send(query, port, '127.0.0.1');
    });
    const r = dnsPacket.decode(reply);
    const [web4, web6] = await clusterIPs('web');
    assert.equal(r.id, 77);
    const rrs = (list: dnsPacket.Answer[] | undefined) => (list ?? []) as unknown as { name: string; type: string; data: unknown }[];
    assert.deepEqual(rrs(r.answers).map((a) => [a.type, a.data]), [['SRV', { priority: 0, weight: 100, port: 80, target: 'web.default.svc.cluster.local' }]]);
    assert.deepEqual(rrs(r.additionals).map((a) => [a.name, a.type, a.data]), [
      ['web.default.svc.cluster.local', 'A', web4],
      ['web.default.svc.cluster.local', 'AAAA', web6],
    ]);
  } finally {
    socket.close();
  }
});

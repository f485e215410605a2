// The DNS server for real: `tapir dns` in a network namespace this test creates
// (tdns-*), fed from a manifest directory, asked by dig and kdig over UDP and TCP, its
// forwarder aimed at NSD serving example.test in a second namespace over a veth pair;
// bad datagrams, the truncated-then-TCP case, health, ready and metrics with curl, the
// reload of a changed Corefile, loop detection, a Corefile with an unsupported plugin.
// Plus the ready/lameduck sequence of a DnsServer in this process on 127.0.0.1.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, waitFor } from './helpers/netns.ts';
import { parseCorefile } from '../src/dns/corefile.ts';
import { DnsServer } from '../src/dns/server.ts';
import type { ClusterView } from '../src/model/cluster-view.ts';
import { NO_DUAL_STACK_FIELDS } from '../src/model/cluster-view.ts';
import dnsPacket from 'dns-packet';

const execFileAsync = promisify(execFile);
const ROOT = new URL('..', import.meta.url).pathname;
const NODE = join(ROOT, 'scripts/node');
const MAIN = join(ROOT, 'src/cli/main.ts');
const RAW_CLIENT = join(ROOT, 'test/helpers/dns-raw-client.ts');
const TCP_CLIENT = join(ROOT, 'test/helpers/dns-tcp-client.ts');

const tag = randomBytes(3).toString('hex');
const NS = `tdns-${tag}`;
const UPSTREAM_NS = `tdns-${tag}-up`;
const VETH = `tdns${tag}a`;
const VETH_UP = `tdns${tag}b`;
const SERVER_IP = '10.251.53.1';
const UPSTREAM_IP = '10.251.53.2';
/** On the veth's subnet, held by no one: ARP goes unanswered, so queries to it time out. */
const UNREACHABLE_IP = '10.251.53.3';
const dir = mkdtempSync(join(tmpdir(), 'tdns-'));
const children: ChildProcess[] = [];

function inNs(ns: string, cmd: string, args: string[], timeoutMs = 15_000): string {
  return run('ip', ['netns', 'exec', ns, cmd, ...args], { timeoutMs });
}

function dig(args: string[]): string {
  return inNs(NS, 'dig', ['@127.0.0.1', '+tries=1', '+time=3', ...args]);
}

/** A `tapir dns` inside NS; resolves once it printed its serving line. */
class DnsProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(args: string[], ns = NS) {
    this.child = spawn('ip', ['netns', 'exec', ns, NODE, MAIN, 'dns', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(this.child);
    this.child.stdout!.on('data', (d: Buffer) => { this.stdout += d.toString(); });
    this.child.stderr!.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }
  async serving(count = 1): Promise<void> {
    await waitFor(() => (this.stdout.match(/serving .* \(udp, tcp\)/g)?.length ?? 0) >= count || this.child.exitCode !== null, 30_000);
    assert.equal(this.child.exitCode, null, `tapir dns exited: ${this.stderr}${this.stdout}`);
  }
}

const NSD_ZONE = `$ORIGIN example.test.
$TTL 300
@ IN SOA ns.example.test. hostmaster.example.test. 1 7200 3600 1209600 60
@ IN NS ns.example.test.
ns IN A ${UPSTREAM_IP}
www IN A 192.0.2.80
${Array.from({ length: 40 }, (_, i) => `big IN A 192.0.2.${i + 1}`).join('\n')}
`;

const MANIFESTS = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  clusterIP: 10.96.0.20
  ports: [{ name: http, port: 80 }]
---
apiVersion: v1
kind: Service
metadata: { name: many, namespace: default }
spec:
  clusterIP: None
  ports: [{ name: http, port: 80 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: many-1
  namespace: default
  labels: { kubernetes.io/service-name: many }
addressType: IPv4
ports: [{ name: http, port: 80, protocol: TCP }]
endpoints:
${Array.from({ length: 60 }, (_, i) => `  - addresses: [10.244.1.${i + 1}]`).join('\n')}
`;

/** kubeadm's Corefile with log, a short lameduck and reload, the forwarder aimed at NSD. */
const corefile = (extra = ''): string => `.:53 {
    errors
    log
    health {
       lameduck 1s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . ${UPSTREAM_IP} {
       max_concurrent 1000
    }
    cache 30 {
       disable success cluster.local
       disable denial cluster.local
    }
    loop
    reload 2s 1s
    loadbalance
}
unreachable.test:53 {
    errors
    forward . ${UNREACHABLE_IP}
}
${extra}`;

let server: DnsProcess;

before(async () => {
  run('ip', ['netns', 'add', NS]);
  run('ip', ['netns', 'add', UPSTREAM_NS]);
  run('ip', ['link', 'add', VETH, 'netns', NS, 'type', 'veth', 'peer', 'name', VETH_UP, 'netns', UPSTREAM_NS]);
  for (const [ns, dev, ip] of [[NS, VETH, SERVER_IP], [UPSTREAM_NS, VETH_UP, UPSTREAM_IP]] as const) {
    inNs(ns, 'ip', ['link', 'set', 'lo', 'up']);
    inNs(ns, 'ip', ['addr', 'add', `${ip}/24`, 'dev', dev]);
    inNs(ns, 'ip', ['link', 'set', dev, 'up']);
  }
  writeFileSync(join(dir, 'example.test.zone'), NSD_ZONE);
  writeFileSync(join(dir, 'nsd.conf'), `server:
  ip-address: ${UPSTREAM_IP}
  port: 53
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  zonelistfile: "${dir}/zone.list"
  database: ""
  pidfile: "${dir}/nsd.pid"
  xfrdfile: "${dir}/xfrd.state"
  xfrdir: "${dir}"
  logfile: "${dir}/nsd.log"
  server-count: 1
remote-control:
  control-enable: no
zone:
  name: example.test
  zonefile: "${dir}/example.test.zone"
`);
  const nsd = spawn('ip', ['netns', 'exec', UPSTREAM_NS, 'nsd', '-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
  children.push(nsd);
  await waitFor(() => {
    try { return inNs(UPSTREAM_NS, 'dig', [`@${UPSTREAM_IP}`, '+short', '+tries=1', '+time=1', 'www.example.test']).trim() === '192.0.2.80'; } catch { return false; }
  }, 20_000, 200);
  run('mkdir', ['-p', join(dir, 'manifests')]);
  writeFileSync(join(dir, 'manifests', 'services.yaml'), MANIFESTS);
  writeFileSync(join(dir, 'Corefile'), corefile());
  server = new DnsProcess(['--corefile', join(dir, 'Corefile'), '--manifests', join(dir, 'manifests'), '--node', 'node-1']);
  await server.serving();
});

after(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const ns of [NS, UPSTREAM_NS]) {
    try { for (const pid of run('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    try { run('ip', ['netns', 'delete', ns]); } catch { /* gone */ }
  }
  rmSync(dir, { recursive: true, force: true });
});

test('tapir dns announces what it serves', () => {
  assert.match(server.stdout, /tapir dns: serving \. unreachable\.test\. on 0\.0\.0\.0:53 \(udp, tcp\)/);
});

test('a Service\'s A record over UDP and TCP, with dig and kdig', () => {
  assert.equal(dig(['+short', 'web.default.svc.cluster.local']).trim(), '10.96.0.20');
  assert.equal(dig(['+short', '+tcp', 'WEB.Default.svc.cluster.local.']).trim(), '10.96.0.20');
  const kdig = inNs(NS, 'kdig', ['@127.0.0.1', '+tcp', '+short', 'web.default.svc.cluster.local']);
  assert.equal(kdig.trim(), '10.96.0.20');
  const full = dig(['web.default.svc.cluster.local']);
  assert.match(full, /status: NOERROR/);
  assert.match(full, /flags: qr aa rd;/);
  assert.match(full, /web\.default\.svc\.cluster\.local\.\s+30\s+IN\s+A\s+10\.96\.0\.20/);
  const missing = dig(['nope.default.svc.cluster.local']);
  assert.match(missing, /status: NXDOMAIN/);
  assert.match(missing, /AUTHORITY SECTION:\n.*cluster\.local\.\s+\d+\s+IN\s+SOA/);
});

test('TCP: three queries on one connection, their frames cut across segments, each answered', () => {
  const query = (id: number, name: string): string => dnsPacket.encode({ type: 'query', id, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type: 'A' }] }).toString('hex');
  const out = inNs(NS, NODE, [TCP_CLIENT, '127.0.0.1', '53', query(1, 'web.default.svc.cluster.local'), query(2, 'nope.default.svc.cluster.local'), query(3, 'many.default.svc.cluster.local')]);
  const answers = out.trim().split('\n').map((h) => dnsPacket.decode(Buffer.from(h, 'hex')));
  assert.deepEqual(answers.map((a) => a.id).sort(), [1, 2, 3]);
  const byId = new Map(answers.map((a) => [a.id, a]));
  assert.deepEqual(byId.get(1)!.answers?.map((r) => (r as { data: unknown }).data), ['10.96.0.20']);
  assert.equal((byId.get(2) as { rcode?: string }).rcode, 'NXDOMAIN');
  assert.equal(byId.get(3)!.answers?.length, 60, 'no truncation over TCP');
});

test('an answer too large for UDP comes back truncated; dig retries over TCP and gets all of it', () => {
  const udpOnly = dig(['+ignore', '+noedns', 'many.default.svc.cluster.local']);
  assert.match(udpOnly, /flags: qr aa tc rd;/);
  assert.match(udpOnly, /ANSWER: 0,/);
  const retried = dig(['+noedns', 'many.default.svc.cluster.local']);
  assert.match(retried, /Truncated, retrying in TCP mode/);
  assert.match(retried, /ANSWER: 60,/);
  assert.equal(dig(['+short', '+tcp', 'many.default.svc.cluster.local']).trim().split('\n').length, 60);
});

test('names outside the cluster are forwarded to the upstream (NSD) and cached', () => {
  assert.equal(dig(['+short', 'www.example.test']).trim(), '192.0.2.80');
  assert.match(dig(['nothing.example.test']), /status: NXDOMAIN/);
  // 40 records fit the client's EDNS size of 1232 and are cached; a client without EDNS
  // (512) gets the cached answer cut to header + question with TC, then asks over TCP.
  assert.equal(dig(['+short', 'big.example.test']).trim().split('\n').length, 40);
  const small = dig(['+ignore', '+noedns', 'big.example.test']);
  assert.match(small, /flags:[^;]*\btc\b/);
  assert.match(small, /ANSWER: 0,/);
  assert.match(dig(['+noedns', 'big.example.test']), /ANSWER: 40,/);
});

test('the most specific server block: a zone with a dead upstream gets SERVFAIL and an errors line, the rest still resolves', async () => {
  const r = await execFileAsync('ip', ['netns', 'exec', NS, 'dig', '@127.0.0.1', '+tries=1', '+time=10', 'www.unreachable.test']);
  assert.match(r.stdout, /status: SERVFAIL/);
  await waitFor(() => /\[ERROR\] plugin\/errors: 2 www\.unreachable\.test\. A: /.test(server.stdout), 5000);
  assert.equal(dig(['+short', 'www.example.test']).trim(), '192.0.2.80');
});

test('garbage gets FORMERR, another opcode NOTIMP, a runt datagram nothing', () => {
  const raw = (hex: string): string => inNs(NS, NODE, [RAW_CLIENT, '127.0.0.1', '53', hex]).trim();
  // Two questions claimed, one half-written.
  const formerr = raw('abcd0100000200000000000003777777');
  assert.notEqual(formerr, 'timeout');
  const f = Buffer.from(formerr, 'hex');
  assert.equal(f.readUInt16BE(0), 0xabcd);
  assert.equal(f[2]! & 0x80, 0x80, 'QR set');
  assert.equal(f[3]! & 15, 1, 'FORMERR');
  // Opcode 2 (STATUS) with a proper question.
  const notimp = Buffer.from(raw('beef1000000100000000000003777777076578616d706c65047465737400000100 01'.replace(' ', '')), 'hex');
  assert.equal(notimp[3]! & 15, 4, 'NOTIMP');
  assert.equal(raw('0102030405'), 'timeout');
  // Still serving.
  assert.equal(dig(['+short', 'web.default.svc.cluster.local']).trim(), '10.96.0.20');
});

test('the query log: one CoreDNS-format line per query', async () => {
  dig(['+short', 'web.default.svc.cluster.local']);
  await waitFor(() => /\[INFO\] 127\.0\.0\.1:\d+ - \d+ "A IN web\.default\.svc\.cluster\.local\. udp \d+ false \d+" NOERROR qr,aa,rd \d+ [\d.]+s/.test(server.stdout), 5000);
});

test('health, ready and metrics with curl', () => {
  const curl = (url: string): string => inNs(NS, 'curl', ['-s', '-w', ' %{http_code}', url]);
  assert.equal(curl('http://127.0.0.1:8080/health'), 'OK 200');
  assert.equal(curl('http://127.0.0.1:8181/ready'), 'OK 200');
  assert.match(curl('http://127.0.0.1:8080/nothing'), / 404$/);
  const metrics = curl(`http://${SERVER_IP}:9153/metrics`);
  assert.match(metrics, / 200$/);
  const value = (re: RegExp): number => {
    const m = re.exec(metrics);
    assert.ok(m !== null, `no ${re} in\n${metrics}`);
    return Number(m[1]);
  };
  assert.ok(value(/^coredns_dns_requests_total\{server="dns:\/\/:53",zone="\.",view="",proto="udp",family="1",type="A"\} (\d+)$/m) >= 5);
  assert.ok(value(/^coredns_dns_requests_total\{server="dns:\/\/:53",zone="\.",view="",proto="tcp",family="1",type="A"\} (\d+)$/m) >= 2);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="\.",view="",rcode="NOERROR",plugin="kubernetes"\} (\d+)$/m) >= 5);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="\.",view="",rcode="NXDOMAIN",plugin="kubernetes"\} (\d+)$/m) >= 1);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="\.",view="",rcode="NOERROR",plugin="forward"\} (\d+)$/m) >= 2);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="\.",view="",rcode="NOERROR",plugin="cache"\} (\d+)$/m) >= 2);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="\.",view="",rcode="FORMERR",plugin=""\} (\d+)$/m) >= 1);
  assert.ok(value(/^coredns_dns_request_duration_seconds_count\{server="dns:\/\/:53",zone="\.",view="",type="A"\} (\d+)$/m) >= 5);
  assert.match(metrics, /^coredns_dns_request_duration_seconds_bucket\{server="dns:\/\/:53",zone="\.",view="",type="A",le="0.00025"\} \d+$/m);
  assert.ok(value(/^coredns_dns_response_size_bytes_count\{server="dns:\/\/:53",zone="\.",view="",proto="udp"\} (\d+)$/m) >= 5);
  assert.ok(value(/^coredns_dns_request_size_bytes_sum\{server="dns:\/\/:53",zone="\.",view="",proto="tcp"\} (\d+)$/m) > 0);
  assert.ok(value(/^coredns_cache_hits_total\{server="dns:\/\/:53",type="success",zones="\.",view=""\} (\d+)$/m) >= 2);
  assert.ok(value(/^coredns_cache_misses_total\{server="dns:\/\/:53",zones="\.",view=""\} (\d+)$/m) >= 2);
  assert.ok(value(/^coredns_cache_entries\{server="dns:\/\/:53",type="success",zones="\.",view=""\} (\d+)$/m) >= 2);
  assert.ok(value(new RegExp(`^coredns_forward_requests_total\\{to="${UPSTREAM_IP}:53"\\} (\\d+)$`, 'm')) >= 3);
  assert.ok(value(/^coredns_forward_responses_total\{rcode="NXDOMAIN"\} (\d+)$/m) >= 1);
  assert.equal(value(/^coredns_panics_total (\d+)$/m), 0);
  assert.ok(value(/^tapir_dns_dropped_queries_total (\d+)$/m) >= 1);
  assert.ok(value(/^coredns_dns_responses_total\{server="dns:\/\/:53",zone="unreachable\.test\.",view="",rcode="SERVFAIL",plugin="forward"\} (\d+)$/m) >= 1);
  assert.ok(value(new RegExp(`^tapir_dns_forward_failures_total\\{to="${UNREACHABLE_IP}:53"\\} (\\d+)$`, 'm')) >= 1);
  assert.match(metrics, /^coredns_build_info\{version="[^"]+",revision="tapir",goversion="node[^"]+"\} 1$/m);
  for (const p of ['errors', 'log', 'health', 'ready', 'kubernetes', 'prometheus', 'forward', 'cache', 'loop', 'reload', 'loadbalance']) {
    assert.match(metrics, new RegExp(`^coredns_plugin_enabled\\{server="dns://:53",zone="\\.",view="",name="${p}"\\} 1$`, 'm'));
  }
});

test('reload: a changed Corefile is served; one with an error is reported and the running one stays', async () => {
  const count = (server.stdout.match(/serving .* \(udp, tcp\)/g) ?? []).length;
  writeFileSync(join(dir, 'Corefile'), corefile(`example.internal:5353 {\n  kubernetes example.internal\n}\n`));
  await server.serving(count + 2);
  assert.match(server.stdout, /Corefile changed: reloading/);
  assert.match(server.stdout, /serving example\.internal\. on 0\.0\.0\.0:5353 \(udp, tcp\)/);
  assert.equal(inNs(NS, 'dig', ['@127.0.0.1', '-p', '5353', '+short', '+tries=1', 'web.default.svc.example.internal']).trim(), '10.96.0.20');
  assert.equal(dig(['+short', 'web.default.svc.cluster.local']).trim(), '10.96.0.20');
  writeFileSync(join(dir, 'Corefile'), corefile('broken {\n  rewrite name a b\n}\n'));
  await waitFor(() => /Corefile changed but cannot be used, the running configuration stays: .*Corefile:\d+: plugin "rewrite" is not supported by Tapir/.test(server.stdout), 10_000);
  assert.equal(dig(['+short', 'web.default.svc.cluster.local']).trim(), '10.96.0.20');
  assert.equal(inNs(NS, 'dig', ['@127.0.0.1', '-p', '5353', '+short', '+tries=1', 'web.default.svc.example.internal']).trim(), '10.96.0.20');
});

test('SIGTERM: the lameduck keeps answering, then tapir dns exits 0', async () => {
  server.child.kill('SIGTERM');
  // ip netns exec passes the signal on to node by exec, so the process is the server.
  await waitFor(() => /SIGTERM: stopping/.test(server.stdout), 5000);
  assert.equal(dig(['+short', 'web.default.svc.cluster.local']).trim(), '10.96.0.20');
  assert.equal(await server.exited, 0);
});

test('a Corefile with an unsupported plugin is rejected with its line', () => {
  const bad = join(dir, 'Corefile.bad');
  writeFileSync(bad, '.:53 {\n    errors\n    health\n    rewrite name foo.example.com bar.example.com\n    forward . 10.0.0.2\n}\n');
  const r = spawnSync(NODE, [MAIN, 'dns', '--corefile', bad], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), `tapir: ${bad}:4: plugin "rewrite" is not supported by Tapir (DNS_COREFILE)`);
});

test('loop: forwarding to itself is detected and tapir dns exits', async () => {
  const file = join(dir, 'Corefile.loop');
  writeFileSync(file, '.:5300 {\n  loop\n  forward . 127.0.0.1:5300\n}\n');
  const looping = new DnsProcess(['--corefile', file]);
  // It may find the loop and exit before a serving() check could see it running.
  const timeout = setTimeout(() => looping.child.kill('SIGKILL'), 20_000);
  assert.equal(await looping.exited, 1, looping.stdout);
  clearTimeout(timeout);
  assert.match(looping.stdout, /serving \. on 0\.0\.0\.0:5300 \(udp, tcp\)/);
  assert.match(looping.stdout, /\[FATAL\] plugin\/loop: Loop \(127\.0\.0\.1:\d+ -> :5300\) detected for zone "\.", see https:\/\/coredns\.io\/plugins\/loop#troubleshooting\. Query: "HINFO \d+\.\d+\."/);
  assert.match(looping.stderr, /DNS_LOOP_DETECTED/);
});

test('in process: /ready is 503 until the first view, the lameduck answers with /ready 503, then all closes', async () => {
  const corefile = parseCorefile(`.:0 {
    bind 127.0.0.1
    health 127.0.0.1:0 {
      lameduck 1s
    }
    ready 127.0.0.1:0
    kubernetes cluster.local
    forward . 127.0.0.1:9
  }`);
  const logs: string[] = [];
  const server = new DnsServer({ corefile, log: (m) => logs.push(m) });
  await server.start();
  try {
    const port = server.addresses[0]!.port;
    const endpoints = endpointPorts(server);
    const ready = async (): Promise<string> => { const r = await fetch(`http://127.0.0.1:${endpoints.ready}/ready`); return `${r.status} ${await r.text()}`; };
    const health = async (): Promise<string> => { const r = await fetch(`http://127.0.0.1:${endpoints.health}/health`); return `${r.status} ${await r.text()}`; };
    assert.equal(await ready(), '503 kubernetes');
    assert.equal(await health(), '200 OK');
    server.setView(view());
    assert.equal(await ready(), '200 OK');
    // Asynchronously: the server runs in this process.
    const digLocal = async (): Promise<string> => (await execFileAsync('dig', ['@127.0.0.1', '-p', String(port), '+short', '+tries=1', '+time=1', 'web.default.svc.cluster.local'])).stdout.trim();
    assert.equal(await digLocal(), '10.96.0.20');
    // The data path's answerer: the same answer from a payload in the middle of a buffer;
    // a name that would be forwarded is passed on (0) to reach the socket.
    const answerer = server.localAnswerer('127.0.0.1', port)!;
    assert.ok(answerer !== null);
    assert.equal(server.localAnswerer('127.0.0.1', port + 1), null);
    assert.equal(server.localAnswerer('10.96.0.10', port), null, 'the block binds 127.0.0.1 only');
    const frame = Buffer.alloc(2048);
    const out = Buffer.alloc(65507);
    const query = dnsPacket.encode({ type: 'query', id: 4242, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }] });
    query.copy(frame, 42);
    const n = answerer.answer(frame, 42, query.length, out, (10 << 24 | 244 << 16 | 1 << 8 | 5) >>> 0);
    assert.ok(n > 0);
    const answer = dnsPacket.decode(out.subarray(0, n));
    assert.equal(answer.id, 4242);
    assert.deepEqual(answer.answers?.map((a) => (a as { data: unknown }).data), ['10.96.0.20']);
    const external = dnsPacket.encode({ type: 'query', id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'www.example.test', type: 'A' }] });
    external.copy(frame, 42);
    assert.equal(answerer.answer(frame, 42, external.length, out, 1), 0);
    const stopping = server.stop();
    assert.equal(await ready(), '503 lameduck');
    assert.equal(await health(), '200 OK');
    assert.equal(await digLocal(), '10.96.0.20');
    await stopping;
    assert.ok(logs.some((l) => /lameduck/.test(l)));
    await assert.rejects(fetch(`http://127.0.0.1:${endpoints.health}/health`));
  } finally {
    await server.stop({ lameduck: false });
  }
});

test('in process: the data path\'s IPv6 answerer (an IPv6 cluster DNS address) answers from the zone and logs the client\'s IPv6 address', async () => {
  const corefile = parseCorefile(`.:0 {
    bind ::1
    log
    kubernetes cluster.local
    forward . 127.0.0.1:9
  }`);
  const logs: string[] = [];
  const server = new DnsServer({ corefile, log: (m) => logs.push(m) });
  await server.start();
  try {
    server.setView(view());
    const port = server.addresses[0]!.port;
    assert.equal(server.localAnswerer('::1', port), null, 'no IPv4 answerer for an IPv6 address');
    assert.equal(server.localAnswerer6('fd00::a', port), null, 'the block binds ::1 only');
    const answerer = server.localAnswerer6('::1', port)!;
    assert.ok(answerer !== null);
    // The query in the middle of a frame, the client's 16 bytes elsewhere in it (as the IPv6 header holds them).
    const frame = Buffer.alloc(2048);
    const out = Buffer.alloc(65507);
    Buffer.from([0xfd, 0, 0, 0x10, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5]).copy(frame, 22);
    const query = dnsPacket.encode({ type: 'query', id: 4343, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'web.default.svc.cluster.local', type: 'A' }] });
    query.copy(frame, 62);
    const n = answerer.answer(frame, 62, query.length, out, 22);
    assert.ok(n > 0);
    const answer = dnsPacket.decode(out.subarray(0, n));
    assert.equal(answer.id, 4343);
    assert.deepEqual(answer.answers?.map((a) => (a as { data: unknown }).data), ['10.96.0.20']);
    assert.ok(logs.some((l) => l.includes('fd00:10:244:1::5')), `the query log names the IPv6 client: ${logs.join(' | ')}`);
    const external = dnsPacket.encode({ type: 'query', id: 8, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: 'www.example.test', type: 'A' }] });
    external.copy(frame, 62);
    assert.equal(answerer.answer(frame, 62, external.length, out, 22), 0, 'a forwarded name is passed on to the socket');
  } finally {
    await server.stop({ lameduck: false });
  }
});

function endpointPorts(server: DnsServer): { health: number; ready: number } {
  const bound = server.endpoints;
  return { health: bound.find((b) => b.paths.includes('/health'))!.port, ready: bound.find((b) => b.paths.includes('/ready'))!.port };
}

function view(): ClusterView {
  return {
    generation: 1, nodeName: 'node-1', snapshot: {} as ClusterView['snapshot'],
    services: [{
      key: 'default/web', namespace: 'default', name: 'web', type: 'ClusterIP', clusterIP: (10 << 24 | 96 << 16 | 20) >>> 0, headless: false, externalName: '',
      proxied: true, ports: [{ name: 'http', protocol: 6 as never, port: 80, targetPort: 80, nodePort: 0 }], externalIPs: [], loadBalancerIngress: [],
      externalTrafficPolicy: '', healthCheckNodePort: 0, publishNotReadyAddresses: false, endpoints: [], problems: [], ...NO_DUAL_STACK_FIELDS,
    }],
  };
}

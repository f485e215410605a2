// The agent's health, metrics and configuration endpoints end to end: a real `tapir
// agent` in a node namespace made as the lab makes one (an underlay interface with the
// node's address, the host TUN, a manifest directory with this node's Node and a
// Service), started from a two-document config (KubeProxyConfiguration +
// TapirAgentConfiguration), asked with curl from inside the namespace on the configured
// addresses. Traffic from the node's stack to a cluster IP moves the metrics; a sync
// fault (the agent's test hook) turns /healthz and /livez 503 after twice the sync
// period and 200 again once syncs succeed; a Node being deleted fails /healthz only.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ChildProcess } from 'node:child_process';
import { SYNC_FAULT_ENV } from '../src/agent/service-sync.ts';
import { TAPIR } from './helpers/lab.ts';
import { Netns, uniqueName, vethPair, waitFor } from './helpers/netns.ts';

const NODE_IP = '172.31.7.11';
const CLUSTER_IP = '10.96.7.50';
const dir = mkdtempSync(join(tmpdir(), 'tapir-agent-endpoints-'));
const manifests = join(dir, 'manifests');
const fault = join(dir, 'sync-fault');
let ns: Netns;
let peer: Netns;
let agent: ChildProcess;
let stderr = '';

const NODE = (extra = ''): string => `apiVersion: v1
kind: Node
metadata: {name: node-1${extra}}
status: {addresses: [{type: InternalIP, address: ${NODE_IP}}]}
`;
const SERVICE = (name: string, ip: string): string => `apiVersion: v1
kind: Service
metadata: {name: ${name}}
spec:
  clusterIP: ${ip}
  selector: {app: ${name}}
  ports: [{port: 80, targetPort: 8080}]
`;

before(async () => {
  ns = new Netns('ae');
  // The underlay: a veth to a second namespace standing for the rest of the network.
  peer = new Netns('aep');
  const [underlay, other] = vethPair(ns, peer, 'aeu');
  ns.exec('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', underlay]);
  peer.exec('ip', ['addr', 'add', '172.31.7.12/24', 'dev', other]);
  mkdirSync(manifests);
  writeFileSync(join(manifests, 'node.yaml'), NODE());
  writeFileSync(join(manifests, 'web.yaml'), SERVICE('web', CLUSTER_IP));
  const config = join(dir, 'agent.yaml');
  writeFileSync(config, `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.244.0.0/16
healthzBindAddress: ${NODE_IP}:10256
metricsBindAddress: 127.0.0.1:10249
iptables:
  masqueradeBit: 14
  syncPeriod: 2s
  minSyncPeriod: 50ms
ipvs:
  scheduler: rr
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 2h
---
apiVersion: tapir.dev/v1alpha1
kind: TapirAgentConfiguration
nodeName: node-1
underlay: {interface: ${underlay}, address: ${NODE_IP}}
podCIDR: 10.244.1.0/24
stateDir: ${join(dir, 'state')}
hostTun: ${uniqueName('aet', 15)}
manifests: ${manifests}
conntrackSize: 4096
`);
  agent = ns.spawn(TAPIR, ['agent', '--config', config, '--v', '4'], { env: { ...process.env, [SYNC_FAULT_ENV]: fault } });
  agent.stderr!.setEncoding('utf8');
  agent.stderr!.on('data', (d: string) => { stderr += d; });
  // The endpoints listen before the agent starts; "ready" is logged once it runs.
  // A bound, not a timing check: a loaded machine with a cold compile cache is slow to start.
  await waitFor(() => stderr.includes('"msg":"ready') || agent.exitCode !== null, 90_000);
  assert.equal(agent.exitCode, null, stderr);
});

after(async () => {
  if (agent !== undefined && agent.exitCode === null) {
    agent.kill('SIGTERM');
    await new Promise((r) => { agent.once('exit', r); setTimeout(r, 5000); });
  }
  ns?.destroy();
  peer?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

/** curl inside the node namespace: status code (0 when nothing answered) and body. */
function curl(url: string): { code: number; body: string } {
  try {
    const out = ns.exec('curl', ['-sS', '--max-time', '3', '-w', '\n%{http_code}', url]);
    const cut = out.lastIndexOf('\n');
    return { code: Number(out.slice(cut + 1)), body: out.slice(0, cut) };
  } catch {
    return { code: 0, body: '' };
  }
}

function metric(text: string, line: string): number {
  const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
  assert.ok(hit !== undefined, `no "${line}" in the metrics:\n${text}`);
  return Number(hit.slice(line.length + 1));
}

test('healthz and livez on the configured healthz address, kube-proxy\'s body; not on other addresses', () => {
  const healthz = curl(`http://${NODE_IP}:10256/healthz`);
  assert.equal(healthz.code, 200, healthz.body);
  const body = JSON.parse(healthz.body) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body), ['lastUpdated', 'currentTime', 'nodeEligible', 'healthy', 'status']);
  assert.equal(body.nodeEligible, true);
  assert.equal(body.healthy, true);
  assert.ok(Math.abs(Date.parse(String(body.currentTime)) - Date.now()) < 60_000);
  const livez = curl(`http://${NODE_IP}:10256/livez`);
  assert.equal(livez.code, 200);
  assert.equal('nodeEligible' in JSON.parse(livez.body), false);
  assert.equal(curl('http://127.0.0.1:10256/healthz').code, 0, 'healthz is bound to the node address only');
  assert.equal(curl(`http://${NODE_IP}:10249/metrics`).code, 0, 'metrics is bound to 127.0.0.1 only');
});

test('/proxyMode and /configz on the metrics address: the effective configuration', () => {
  assert.deepEqual(curl('http://127.0.0.1:10249/proxyMode'), { code: 200, body: 'tapir' });
  const configz = curl('http://127.0.0.1:10249/configz');
  assert.equal(configz.code, 200);
  const c = JSON.parse(configz.body) as Record<string, Record<string, unknown>>;
  const kp = c['kubeproxy.config.k8s.io']!;
  assert.equal(kp.kind, 'KubeProxyConfiguration');
  assert.equal(kp.healthzBindAddress, `${NODE_IP}:10256`);
  assert.equal(kp.syncPeriod, '2s');
  assert.equal(kp.minSyncPeriod, '50ms');
  assert.deepEqual(kp.conntrack, { maxPerCore: 0, min: 131072, tcpEstablishedTimeout: '2h0m0s', tcpCloseWaitTimeout: '1h0m0s', tcpBeLiberal: true, udpTimeout: '30s', udpStreamTimeout: '2m0s' });
  assert.deepEqual(kp.logging, { format: 'json', verbosity: 4 });
  const tapir = c['tapir.dev']!;
  assert.equal(tapir.nodeName, 'node-1');
  assert.equal(tapir.conntrackSize, 4096);
});

test('metrics: the names are there and the data plane\'s values move with traffic', async () => {
  const before = curl('http://127.0.0.1:10249/metrics');
  assert.equal(before.code, 200);
  for (const name of [
    'kubeproxy_sync_proxy_rules_duration_seconds_bucket', 'kubeproxy_network_programming_duration_seconds_count',
    'kubeproxy_sync_proxy_rules_last_timestamp_seconds', 'kubeproxy_sync_proxy_rules_service_changes_total',
    'kubeproxy_sync_proxy_rules_endpoint_changes_pending', 'kubeproxy_sync_proxy_rules_no_local_endpoints_total',
    'tapir_port_rx_frames_total', 'tapir_drops_total', 'tapir_conntrack_entries', 'tapir_conntrack_inserts_total',
    'tapir_conntrack_evictions_total', 'tapir_conntrack_source_limited_total', 'tapir_rx_batch_frames_bucket',
    'tapir_service_nat_packets_total', 'tapir_watch_restarts_total', 'process_resident_memory_bytes',
  ]) assert.match(before.body, new RegExp(`^(# TYPE )?${name}`, 'm'), name);
  assert.ok(metric(before.body, 'kubeproxy_sync_proxy_rules_service_changes_total') >= 1);
  assert.equal(metric(before.body, 'tapir_conntrack_capacity'), 4096);
  const hostPort = before.body.match(/^tapir_port_rx_frames_total\{port="([^"]+)",kind="host"\}/m)?.[1];
  assert.ok(hostPort !== undefined, before.body);
  const rx = (text: string): number => metric(text, `tapir_port_rx_frames_total{port="${hostPort}",kind="host"}`);
  const rejects = (text: string): number => metric(text, 'tapir_service_nat_packets_total{verdict="reject-tcp-rst"}');

  // The node's own stack connects to a Service without endpoints: the agent answers
  // each SYN with a reset (curl: connection refused), through the host TUN.
  for (let i = 0; i < 3; i++) assert.equal(curl(`http://${CLUSTER_IP}/`).code, 0);
  const after = curl('http://127.0.0.1:10249/metrics').body;
  assert.ok(rx(after) >= rx(before.body) + 3, `host TUN frames ${rx(before.body)} -> ${rx(after)}`);
  assert.ok(rejects(after) >= rejects(before.body) + 3, `service NAT rejects ${rejects(before.body)} -> ${rejects(after)}`);
  assert.ok(metric(after, `tapir_rx_batches_total{port="${hostPort}",kind="host"}`) >= 3);
  // The test's event loop reads the agent's stderr between awaits.
  await waitFor(() => /"level":"debug".*"msg":"synced"/.test(stderr), 5000);
});

test('a stuck sync turns healthz and livez 503 after twice the sync period; they recover when syncs succeed', async () => {
  writeFileSync(fault, '');
  writeFileSync(join(manifests, 'api.yaml'), SERVICE('api', '10.96.7.51'));
  // The change waits (every sync fails); the limit is 2 x 2 s.
  await waitFor(() => curl(`http://${NODE_IP}:10256/livez`).code === 503, 15_000);
  const stuck = curl(`http://${NODE_IP}:10256/healthz`);
  assert.equal(stuck.code, 503);
  const body = JSON.parse(stuck.body) as Record<string, unknown>;
  assert.equal(body.healthy, false);
  assert.match(String(body.status), /without a successful sync \(limit 4s\)/);
  const metrics = curl('http://127.0.0.1:10249/metrics').body;
  assert.ok(metric(metrics, 'tapir_sync_proxy_rules_failures_total') >= 1);
  assert.ok(metric(metrics, 'kubeproxy_proxy_livez_total{code="503"}') >= 1);
  rmSync(fault);
  await waitFor(() => curl(`http://${NODE_IP}:10256/healthz`).code === 200, 10_000);
  assert.equal(curl(`http://${NODE_IP}:10256/livez`).code, 200);
  await waitFor(() => /"msg":"proxy unhealthy: a change has waited[^\n]*\n[^]*"msg":"proxy healthy again/.test(stderr), 5000);
});

test('a Node being deleted fails healthz (not livez); the ignored fields were logged once', async () => {
  writeFileSync(join(manifests, 'node.yaml'), NODE(', deletionTimestamp: "2026-01-01T00:00:00Z"'));
  await waitFor(() => curl(`http://${NODE_IP}:10256/healthz`).code === 503, 10_000);
  const body = JSON.parse(curl(`http://${NODE_IP}:10256/healthz`).body) as Record<string, unknown>;
  assert.equal(body.nodeEligible, false);
  assert.equal(body.status, 'the Node is being deleted');
  assert.equal(curl(`http://${NODE_IP}:10256/livez`).code, 200);
  writeFileSync(join(manifests, 'node.yaml'), NODE());
  await waitFor(() => curl(`http://${NODE_IP}:10256/healthz`).code === 200, 10_000);

  await new Promise((r) => setTimeout(r, 200));
  const lines = stderr.split('\n').filter((l) => l !== '');
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
  const ignored = lines.filter((l) => l.includes('ignored'));
  assert.equal(ignored.length, 1, ignored.join('\n'));
  assert.deepEqual((JSON.parse(ignored[0]!) as { ignored: string[] }).ignored, ['iptables.masqueradeBit', 'ipvs.scheduler']);
});

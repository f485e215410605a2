// The proxy's health (kube-proxy's ProxyHealthServer semantics) and the agent's metrics,
// below the end-to-end test (agent-endpoints.test.ts): a fake clock for the health
// timeout, the ServiceController telling its observer of queued changes, syncs and the
// Node, and the metrics read from a datapath's counters when scraped.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseAgentConfigDocuments } from '../src/agent/config-file.ts';
import { createLogger } from '../src/agent/log.ts';
import { AgentMetrics, noLocalEndpoints } from '../src/agent/metrics.ts';
import { AgentObservability, BindAddressError } from '../src/agent/observability.ts';
import { ProxyHealth, ProxyHealthServer, TO_BE_DELETED_TAINT } from '../src/control/proxy-health.ts';
import { ServiceController } from '../src/control/service-controller.ts';
import type { NodeState, SyncObserver, SyncResult } from '../src/control/sync-observer.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { snapshot } from '../src/model/synthetic.ts';
import { parseCidr } from '../src/wire/address.ts';
import { buildPacket } from '../src/wire/index.ts';
import { GATEWAY_MAC, MAC_A, POD_A, POD_B, MAC_B, Rig, withVnet } from './helpers/datapath.ts';
import { waitFor } from './helpers/netns.ts';

class Clock {
  t = 1_700_000_000_000;
  now = (): number => this.t;
}

test('health: healthy at start and while synced; 503 once a queued change waited the timeout; 200 after a sync', () => {
  const clock = new Clock();
  const h = new ProxyHealth(60_000, clock.now);
  let a = h.answer('livez');
  assert.equal(a.code, 200);
  assert.equal(a.body.lastUpdated, new Date(clock.t).toISOString(), 'healthy: lastUpdated is now, as kube-proxy reports it');
  h.changeQueued();
  clock.t += 30_000;
  h.changeQueued(); // the clock runs from the oldest change
  clock.t += 29_999;
  assert.equal(h.answer('healthz').code, 200);
  clock.t += 1;
  a = h.answer('livez');
  assert.equal(a.code, 503);
  assert.equal(a.body.lastUpdated, '0001-01-01T00:00:00Z', 'never synced: Go\'s zero time');
  assert.equal(a.body.healthy, false);
  assert.match(String(a.body.status), /waited 60\.0s without a successful sync \(limit 60s\)/);
  assert.equal(h.answer('healthz').code, 503);
  h.synced({ ok: false });
  assert.equal(h.answer('livez').code, 503, 'a failed sync leaves the change waiting');
  const syncedAt = clock.t;
  h.synced({ ok: true });
  clock.t += 5000;
  assert.deepEqual(h.answer('livez'), { code: 200, body: { lastUpdated: new Date(clock.t).toISOString(), currentTime: new Date(clock.t).toISOString(), healthy: true, status: 'synced' } });
  h.changeQueued();
  clock.t += 60_000;
  assert.equal(h.answer('livez').body.lastUpdated, new Date(syncedAt).toISOString(), 'unhealthy: the last successful sync');
  assert.deepEqual(h.answers, { healthz: { 200: 1, 503: 1 }, livez: { 200: 2, 503: 3 } });
});

test('health: /healthz also fails while the Node is missing, being deleted or tainted for deletion; /livez does not', () => {
  const clock = new Clock();
  const h = new ProxyHealth(60_000, clock.now);
  const cases: [NodeState | null, boolean, string][] = [
    [null, false, 'the Node object of this node is missing'],
    [{ deleting: false, taints: [] }, true, 'synced'],
    [{ deleting: true, taints: [] }, false, 'the Node is being deleted'],
    [{ deleting: false, taints: ['node.kubernetes.io/unschedulable', TO_BE_DELETED_TAINT] }, false, `the Node is tainted ${TO_BE_DELETED_TAINT}`],
    [{ deleting: false, taints: ['node.kubernetes.io/unschedulable'] }, true, 'synced'],
  ];
  for (const [node, eligible, status] of cases) {
    h.nodeChanged(node);
    const healthz = h.answer('healthz');
    assert.equal(healthz.code, eligible ? 200 : 503, JSON.stringify(node));
    assert.equal(healthz.body.nodeEligible, eligible);
    assert.equal(healthz.body.status, status);
    assert.equal(h.answer('livez').code, 200);
    assert.equal('nodeEligible' in h.answer('livez').body, false);
  }
});

test('health: cluster mode turns unhealthy once the API server has not answered for the timeout, healthy when it answers', () => {
  const clock = new Clock();
  const h = new ProxyHealth(10_000, clock.now);
  h.apiReachable(false);
  clock.t += 5000;
  h.apiReachable(false); // the clock runs from the first failure
  clock.t += 4999;
  assert.equal(h.answer('healthz').code, 200);
  clock.t += 1;
  const down = h.answer('healthz');
  assert.equal(down.code, 503);
  assert.match(String(down.body.status), /API server has not answered for 10\.0s \(limit 10s\); forwarding with the last tables/);
  assert.equal(h.answer('livez').code, 503);
  h.synced({ ok: true }); // a periodic sync over the cached objects does not make it fresh
  assert.equal(h.answer('livez').code, 503);
  h.apiReachable(true);
  assert.equal(h.answer('healthz').code, 200);
  clock.t += 60_000;
  assert.equal(h.answer('healthz').code, 200, 'reachable: no clock runs');
});

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('health over HTTP: kube-proxy\'s paths, codes, JSON body and headers; 404 elsewhere', async () => {
  const clock = new Clock();
  const h = new ProxyHealth(1000, clock.now);
  const server = await ProxyHealthServer.listen(h, '127.0.0.1', 0);
  try {
    const ok = await get(server.port, '/healthz');
    assert.equal(ok.status, 200);
    assert.equal(ok.type, 'application/json');
    assert.deepEqual(Object.keys(JSON.parse(ok.body)), ['lastUpdated', 'currentTime', 'nodeEligible', 'healthy', 'status']);
    h.nodeChanged(null);
    assert.equal((await get(server.port, '/healthz')).status, 503);
    assert.equal((await get(server.port, '/livez?verbose')).status, 200);
    assert.equal((await get(server.port, '/metrics')).status, 404);
  } finally {
    await server.close();
  }
});

const SVC = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`;
const slice = (name: string, trigger: string): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${name}
  labels: {kubernetes.io/service-name: manual}
  annotations: {endpoints.kubernetes.io/last-change-trigger-time: "${trigger}"}
addressType: IPv4
endpoints: [{addresses: [10.244.1.9], conditions: {ready: true}}]
ports: [{port: 8080}]
`;
const node = (extra = ''): string => `apiVersion: v1
kind: Node
metadata: {name: node-1${extra}}
`;

test('ServiceController tells its observer of queued changes, syncs with their latency, and this node\'s Node', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-observer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'svc.yaml'), SVC);
  const events: string[] = [];
  const syncs: SyncResult[] = [];
  const observer: SyncObserver = {
    changeQueued: (kind) => events.push(`queued ${kind}`),
    synced: (r) => { syncs.push(r); events.push(`synced ${r.ok}`); },
    nodeChanged: (n) => events.push(`node ${n === null ? 'missing' : JSON.stringify(n)}`),
  };
  const controller = new ServiceController({
    source: new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 20 }),
    node: { name: 'node-1', nodePortAddresses: ['10.0.0.1'] },
    serviceCIDR: parseCidr('10.96.0.0/16')!,
    minSyncIntervalMs: 20,
    onError: () => {},
    observer,
  });
  t.after(() => controller.stop());
  const startedAt = Date.now();
  await controller.start();
  assert.ok(events.includes('queued Service'), events.join('\n'));
  assert.ok(events.includes('node missing'), 'no Node object once Nodes synced');
  assert.equal(events.at(-1), 'synced true');
  assert.deepEqual(syncs[0]!.programmingLatencies, [], 'the initial list is start-up, not network programming');
  assert.deepEqual(controller.pendingChanges(), { services: 0, endpoints: 0 });

  writeFileSync(join(dir, 'node.yaml'), node());
  await waitFor(() => events.includes('node {"deleting":false,"taints":[]}'), 5000);
  writeFileSync(join(dir, 'node.yaml'), node(', deletionTimestamp: "2026-01-01T00:00:00Z"'));
  await waitFor(() => events.includes('node {"deleting":true,"taints":[]}'), 5000);
  rmSync(join(dir, 'node.yaml'));
  await waitFor(() => events.filter((e) => e === 'node missing').length === 2, 5000);

  // A Service added later: latency from when the agent saw it.
  const before = syncs.length;
  writeFileSync(join(dir, 'svc2.yaml'), SVC.replace('name: web', 'name: api'));
  await waitFor(() => syncs.slice(before).some((s) => s.programmingLatencies.length > 0), 5000);
  assert.ok(syncs.slice(before).flatMap((s) => s.programmingLatencies).every((l) => l >= 0 && l < 5));
  // A trigger time from before the agent started is not this agent's work: left out.
  const old = syncs.length;
  writeFileSync(join(dir, 'old.yaml'), slice('old-1', new Date(Date.now() - 3_600_000).toISOString()));
  await waitFor(() => syncs.length > old && syncs.at(-1)!.ok, 5000);
  assert.deepEqual(syncs.slice(old).flatMap((s) => s.programmingLatencies), []);
  // An EndpointSlice with kube-proxy's trigger-time annotation: latency from that moment.
  // After the controller's start (which it takes first thing in start()), before now.
  const triggerAt = startedAt + 50;
  while (Date.now() < triggerAt + 100) await new Promise((r) => setTimeout(r, 20));
  const atLeast = (Date.now() - triggerAt) / 1000;
  writeFileSync(join(dir, 'slice.yaml'), slice('manual-1', new Date(triggerAt).toISOString()));
  await waitFor(() => syncs.some((s) => s.programmingLatencies.some((l) => l >= atLeast && l < atLeast + 10)), 5000);
});

test('metrics: kube-proxy\'s names, the data plane\'s counters read when scraped, no stale port labels', async (t) => {
  const rig = new Rig();
  t.after(() => rig.close());
  const health = new ProxyHealth(60_000);
  let pending = { services: 2, endpoints: 3 };
  let snap = snapshot([]);
  const metrics = new AgentMetrics({
    datapath: () => rig.datapath,
    pendingChanges: () => pending,
    serviceSnapshot: () => snap,
    health,
    configz: () => ({}),
  });
  // Pod A pings pod B: one frame in on pod-a, out on pod-b.
  const ping = withVnet(buildPacket({
    eth: { dst: GATEWAY_MAC, src: MAC_A },
    ipv4: { src: POD_A, dst: POD_B, ttl: 64, ident: 1 },
    icmp: { type: 8, code: 0, restOfHeader: 0x10001 },
    payload: new Uint8Array(56),
  }));
  await rig.send(rig.podA, ping, ping, ping);
  // A frame with a spoofed source MAC: dropped and counted by reason.
  await rig.send(rig.podA, withVnet(buildPacket({ eth: { dst: GATEWAY_MAC, src: MAC_B }, ipv4: { src: POD_A, dst: POD_B, ttl: 64, ident: 2 }, icmp: { type: 8, code: 0, restOfHeader: 0x10002 }, payload: new Uint8Array(8) })));
  metrics.changeQueued('Service');
  metrics.changeQueued('EndpointSlice');
  metrics.synced({ ok: true, startedAt: Date.now(), durationSeconds: 0.004, periodic: false, programmingLatencies: [0.3, 1.5], view: undefined });
  metrics.synced({ ok: false, startedAt: Date.now(), durationSeconds: 0.002, periodic: false, programmingLatencies: [], view: undefined });
  metrics.watchRestarted('EndpointSlice', 'stalled');
  health.answer('healthz');

  const text = await metrics.text();
  const value = (line: string): number => {
    const hit = text.split('\n').find((l) => l.startsWith(`${line} `));
    assert.ok(hit !== undefined, `no "${line}" in:\n${text}`);
    return Number(hit.slice(line.length + 1));
  };
  assert.equal(value('kubeproxy_sync_proxy_rules_service_changes_total'), 1);
  assert.equal(value('kubeproxy_sync_proxy_rules_endpoint_changes_total'), 1);
  assert.equal(value('kubeproxy_sync_proxy_rules_service_changes_pending'), 2);
  assert.equal(value('kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 3);
  assert.equal(value('kubeproxy_sync_proxy_rules_duration_seconds_count'), 2);
  assert.equal(value('kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.004"}'), 2);
  assert.equal(value('kubeproxy_network_programming_duration_seconds_count'), 2);
  assert.equal(value('kubeproxy_network_programming_duration_seconds_bucket{le="0.5"}'), 1);
  assert.ok(Math.abs(value('kubeproxy_sync_proxy_rules_last_timestamp_seconds') - Date.now() / 1000) < 60);
  assert.ok(value('kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds') > 0);
  assert.equal(value('kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}'), 0);
  assert.equal(value('kubeproxy_proxy_healthz_total{code="200"}'), 1);
  assert.equal(value('tapir_sync_proxy_rules_failures_total'), 1);
  assert.equal(value('tapir_watch_restarts_total{kind="EndpointSlice",reason="stalled"}'), 1);
  assert.equal(value('tapir_port_rx_frames_total{port="pod-a",kind="pod"}'), 4);
  assert.equal(value('tapir_port_tx_frames_total{port="pod-b",kind="pod"}'), 3);
  assert.ok(value('tapir_port_rx_bytes_total{port="pod-a",kind="pod"}') > 4 * 60);
  assert.equal(value('tapir_port_rx_frames_total{port="underlay",kind="underlay"}'), 0);
  assert.equal(value('tapir_drops_total{port="pod-a",kind="pod",reason="spoofed-mac"}'), 1);
  const batches = value('tapir_rx_batches_total{port="pod-a",kind="pod"}');
  assert.ok(batches >= 2 && batches <= 4, `pod-a read ${batches} batches`);
  // Only pod-a received: the pods' histogram is pod-a's batches.
  assert.equal(value('tapir_rx_batch_frames_count{kind="pod"}'), batches);
  assert.equal(value('tapir_rx_batch_frames_sum{kind="pod"}'), 4);
  assert.equal(value('tapir_rx_batch_frames_bucket{kind="pod",le="+Inf"}'), batches);
  assert.equal(value('tapir_rx_batch_frames_bucket{kind="pod",le="1"}') + value('tapir_rx_batch_frames_bucket{kind="pod",le="3"}') > 0, true);
  // Rendered a family at a time, the text is prom-client's own rendering.
  const steady = (t: string): string => t.replace(/^process_(cpu_seconds_total|resident_memory_bytes) .*$/gm, '');
  assert.equal(steady(await metrics.text()), steady(await metrics.registry.metrics()));
  assert.equal(value('tapir_conntrack_entries'), 0, 'no service NAT installed');
  assert.ok(value('process_resident_memory_bytes') > 1e6);

  // Scraped again after a port left and traffic moved: values move, the port's labels go.
  await rig.send(rig.podA, ping);
  rig.datapath.removePort(rig.portB);
  pending = { services: 0, endpoints: 0 };
  snap = snapshot([]);
  const again = await metrics.text();
  assert.match(again, /^tapir_port_rx_frames_total\{port="pod-a",kind="pod"\} 5$/m);
  assert.doesNotMatch(again, /port="pod-b"/);
  assert.match(again, /^kubeproxy_sync_proxy_rules_service_changes_pending 0$/m);
});

test('no_local_endpoints counts service ports with a Local policy and no endpoint for it', () => {
  const base = snapshot([]);
  const port = (over: Record<string, unknown>): (typeof base.ports)[number] => ({
    key: 'default/a:', namespace: 'default', name: 'a', portName: '', protocol: 6, clusterIP: 1, port: 80, nodePort: 0, externalIPs: [], loadBalancerIPs: [],
    loadBalancerSourceRanges: [], affinityTimeoutSeconds: 0, lb: 'random', externalLocal: false, internalLocal: false, healthCheckNodePort: 0,
    allEndpoints: [], clusterEndpoints: [], externalEndpoints: [], localReadyEndpoints: 0, ...over,
  } as (typeof base.ports)[number]);
  assert.deepEqual(noLocalEndpoints({ ...base, ports: [
    port({ internalLocal: true }),
    port({ externalLocal: true, nodePort: 30080 }),
    port({ externalLocal: true }), // not reachable from outside: not counted
    port({ internalLocal: true, clusterIP: 0 }), // headless
  ] }), { internal: 1, external: 1 });
  assert.deepEqual(noLocalEndpoints(null), { internal: 0, external: 0 });
});

test('a bind address in use: logged and retried until free (kube-proxy\'s wait.Until); with bindAddressHardFail, an error', async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as AddressInfo).port;
  const lines: string[] = [];
  const logger = createLogger({ verbosity: 0, format: 'json', destination: { write: (l: string) => { lines.push(l); } } });
  const config = (hard: boolean) => parseAgentConfigDocuments([
    { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16', healthzBindAddress: `127.0.0.1:${port}`, metricsBindAddress: '', bindAddressHardFail: hard },
    { apiVersion: 'tapir.dev/v1alpha1', kind: 'TapirAgentConfiguration', nodeName: 'n', underlay: { interface: 'eth0', address: '172.30.0.11' }, podCIDR: '10.244.1.0/24' },
  ], 'agent.yaml');

  const hard = new AgentObservability(config(true), logger, { verbosity: 0, format: 'json' });
  await assert.rejects(hard.listen(), (e: unknown) => e instanceof BindAddressError && /cannot serve healthzBindAddress 127\.0\.0\.1:\d+: .*EADDRINUSE.*bindAddressHardFail is set/.test(e.message));
  await hard.close();

  const soft = new AgentObservability(config(false), logger, { verbosity: 0, format: 'json' });
  t.after(() => soft.close());
  await soft.listen();
  assert.match(lines.join(''), /"level":"error".*cannot serve healthzBindAddress 127\.0\.0\.1:\d+: .*EADDRINUSE.*retrying every 5s/);
  await new Promise<void>((r) => blocker.close(() => r()));
  await waitFor(async () => (await get(port, '/healthz').catch(() => ({ status: 0 }))).status === 200, 12_000);
  assert.match(lines.join(''), /healthz on 127\.0\.0\.1:\d+ \(after 1 failed attempt\(s\)\)/);
});

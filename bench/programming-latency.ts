// Network programming latency and agent memory in cluster mode (issue 9, "Figures").
//
// Standalone, no `tapir lab`: a namespace for the lab API server (`tapir lab apiserver`,
// started as the lab starts it, kubectl reaching it on a loopback port of the host), a
// node namespace joined to it by a veth (the node's underlay), a real `tapir agent
// --kubeconfig` in the node namespace with the agent's own service-account token (the
// shipped ClusterRole), and two pods on the node (namespaces attached through the
// agent's control socket, as tapir-cni does) running a UDP responder that names itself.
//
// Per change, the node's own stack probes the change's cluster IP through the host TUN
// every --interval-ms, each datagram from a new source port:
//   create: `kubectl apply -f` of a new Service (its clusterIP fixed in the file) with an
//           EndpointSlice to pod A; seen when the cluster IP first answers;
//   move:   `kubectl patch endpointslice` moving a Service's one endpoint from pod A to
//           pod B (and back on the next change); seen when B (A) first answers.
// t0 is taken just before kubectl is started (so kubectl's own start, discovery and
// request are inside the figure, as for a user); t1 is the send time of the first probe
// datagram the change answered. A watch of the bench's own on the API server records
// when the change was committed there (tW), so the figure is also split into kubectl
// (tW - t0) and API-to-data-plane (t1 - tW), the part kube-proxy's SLI measures.
// p50/p99 over --changes changes per kind, with --sizes Services preloaded (bulk-loaded
// through the API with keep-alive HTTPS, not kubectl; each with an EndpointSlice of 10
// endpoints on other nodes). Alongside: what the agent's own
// kubeproxy_network_programming_duration_seconds histogram says for the same changes,
// and the agent's memory (VmRSS, V8 heap) at the largest size, compared with the same
// agent in manifest mode over the same objects (--no-manifest-compare skips that).
// With --after-delete, the load Services and slices are then deleted and the agent's
// memory read again: once the deletes are programmed, and after the agent's next
// memory-reducing collection (src/control/heap-trim.ts: at most one per 5 minutes, so
// this waits up to 6 minutes), to show what it gives back.
// kube-proxy is not available here; the reference is its SLO: 1 s at p99.
//
//   node bench/programming-latency.ts [--sizes 1000,10000] [--changes 100] [--interval-ms 2] [--after-delete] [--json FILE]
//
// Needs root (namespaces); everything it makes is named tp<tag>... and removed at the
// end, on failure and on Ctrl-C; every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { ControlClient } from '../src/agent/control-client.ts';
import type { StatsInfo } from '../src/agent/protocol.ts';
import { LabApiClient } from '../src/lab/apiserver/client.ts';
import { startControlPlane, type ControlPlane } from '../src/lab/apiserver/control-plane.ts';
import { kubeconfig } from '../src/lab/apiserver/kubeconfig.ts';
import { Netns, vethPair } from '../test/helpers/netns.ts';
import type { ProbeResult } from './lib/programming-probe.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { cleanUpOnSignal, percentile } from './lib/tools.ts';

const { values } = parseArgs({ options: {
  sizes: { type: 'string', default: '1000,10000' },
  changes: { type: 'string', default: '100' },
  'interval-ms': { type: 'string', default: '2' },
  'no-manifest-compare': { type: 'boolean', default: false },
  'after-delete': { type: 'boolean', default: false },
  json: { type: 'string' },
} });
const out = new BenchJsonWriter('programming-latency', 'tapir', []);
const SIZES = values.sizes.split(',').map(Number);
const CHANGES = Number(values.changes);
const INTERVAL_MS = Number(values['interval-ms']);
if (!SIZES.every((n) => Number.isInteger(n) && n > 0) || SIZES.some((n, i) => i > 0 && n <= SIZES[i - 1]!) || !(CHANGES >= 1 && CHANGES <= 250) || !(INTERVAL_MS >= 1)) {
  console.error('usage: node bench/programming-latency.ts [--sizes 1000,10000 (increasing)] [--changes 100 (1-250)] [--interval-ms 2] [--no-manifest-compare]');
  process.exit(2);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TAPIR = join(ROOT, 'bin/tapir');
const NODE = process.execPath;
const KUBECTL = join(ROOT, '.tapir/bin/kubectl');
const PROBE = join(ROOT, 'bench/lib/programming-probe.ts');

const API_IP = '172.31.90.1';
const NODE_IP = '172.31.90.2';
const CLUSTER_CIDR = '10.224.0.0/12';
const POD_CIDR = '10.224.1.0/24';
const POD = { A: '10.224.1.10', B: '10.224.1.11' } as const;
const POD_PORT = 8080;
/** Every probe round gives up after this: a change not seen by then counts as lost. */
const PROBE_TIMEOUT_MS = 15_000;
/** Bulk-load connections. */
const CONCURRENCY = 8;
const PROGRAMMING = 'kubeproxy_network_programming_duration_seconds';
const SLO_MS = 1000;

const wallNow = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, timeoutMs: number, check: () => T | undefined | false | Promise<T | undefined | false>, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(everyMs);
  }
}

// ---- what must go at the end, whatever happens ----
const namespaces: Netns[] = [];
const children = new Set<ChildProcess>();
let work = '';
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  for (const c of children) try { c.kill('SIGKILL'); } catch { /* gone */ }
  for (const ns of namespaces.reverse()) ns.destroy();
  if (work !== '') rmSync(work, { recursive: true, force: true });
}
cleanUpOnSignal(cleanup);

function nsNamed(tag: string): Netns {
  const ns = new Netns(tag);
  namespaces.push(ns);
  return ns;
}

function spawnIn(ns: Netns, argv: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string } {
  const child = ns.spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env } });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let text = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { text += d; });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => { text += d; });
  return { child, output: () => text };
}

// ---- the bench's own API client (admin, keep-alive) ----
class Api {
  /** Requests (kept-alive, a request lost to a connection the server was closing sent again); the watches have their own. */
  readonly #client: LabApiClient;
  readonly #ca: Buffer;
  readonly #url: URL;
  readonly #token: string;
  constructor(cp: ControlPlane) {
    this.#url = new URL(cp.hostServer);
    this.#token = cp.adminToken;
    this.#ca = readFileSync(cp.caFile);
    this.#client = new LabApiClient(cp.hostServer, cp.caFile, cp.adminToken);
  }
  call(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: Record<string, unknown> }> {
    return this.#client.request(method, path, body, contentType);
  }
  /**
   * Addresses in `prefix` (three octets, "10.100.2") that no Service holds: the API
   * server allocates the load Services' addresses at random over the whole service
   * CIDR, so a fixed address of the bench's may already be taken.
   */
  async freeAddresses(prefix: string, n: number): Promise<string[]> {
    const r = await this.call('GET', '/api/v1/services');
    const used = new Set(((r.body.items ?? []) as { spec?: { clusterIPs?: string[] } }[]).flatMap((s) => s.spec?.clusterIPs ?? []));
    const out: string[] = [];
    for (let i = 1; i < 255 && out.length < n; i++) if (!used.has(`${prefix}.${i}`)) out.push(`${prefix}.${i}`);
    if (out.length < n) throw new Error(`fewer than ${n} free addresses in ${prefix}.0/24`);
    return out;
  }
  async create(path: string, body: unknown): Promise<void> {
    const r = await this.call('POST', path, body);
    if (r.status !== 201 && !(r.status === 409 && r.body.reason === 'AlreadyExists')) throw new Error(`POST ${path}: ${r.status} ${String(r.body.message)}`);
  }
  /** Calls `onEvent(type, object, wallTime)` for every event of a watch from now until `stop()`. */
  async watch(path: string, onEvent: (type: string, obj: Record<string, any>, at: number) => void): Promise<() => void> {
    const list = await this.call('GET', `${path}?limit=1`);
    const rv = (list.body.metadata as { resourceVersion: string }).resourceVersion;
    const req = request({ host: this.#url.hostname, port: this.#url.port, path: `${path}?watch=1&resourceVersion=${rv}`, agent: false, ca: this.#ca, headers: { authorization: `Bearer ${this.#token}` } }, (res) => {
      let buffered = '';
      res.setEncoding('utf8').on('data', (c: string) => {
        const at = wallNow();
        buffered += c;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const e = JSON.parse(buffered.slice(0, nl)) as { type: string; object: Record<string, any> };
          buffered = buffered.slice(nl + 1);
          onEvent(e.type, e.object, at);
        }
      });
    });
    req.on('error', () => { /* ended by stop() or the server; a change it missed is reported as such */ });
    req.end();
    return () => req.destroy();
  }
  close(): void { this.#client.close(); }
}

// ---- objects ----
/** The k-th preloaded endpoint: a pod address of the cluster CIDR outside this node's pod CIDR, on one of 20 other nodes. */
function endpointAddress(k: number): string {
  return `10.${225 + Math.floor(k / 64000)}.${Math.floor(k / 250) % 256}.${(k % 250) + 2}`;
}
function loadService(i: number): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `load-${i}`, namespace: 'default' }, spec: { ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] } };
}
function loadSlice(i: number): Record<string, unknown> {
  const endpoints = Array.from({ length: 10 }, (_, j) => ({ addresses: [endpointAddress(i * 10 + j)], conditions: { ready: true }, nodeName: `node-${2 + ((i + j) % 20)}` }));
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `load-${i}-a`, namespace: 'default', labels: { 'kubernetes.io/service-name': `load-${i}` } }, addressType: 'IPv4', endpoints, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] };
}
function udpService(name: string, clusterIP: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP, ports: [{ name: 'probe', port: 80, protocol: 'UDP', targetPort: POD_PORT }] } };
}
function udpSlice(service: string, address: string): Record<string, unknown> {
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${service}-a`, namespace: 'default', labels: { 'kubernetes.io/service-name': service } }, addressType: 'IPv4', endpoints: [{ addresses: [address], conditions: { ready: true }, nodeName: 'node-1' }], ports: [{ name: 'probe', port: POD_PORT, protocol: 'UDP' }] };
}

async function bulkDelete(api: Api, to: number): Promise<number> {
  const t = performance.now();
  let next = 0;
  const del = async (path: string): Promise<void> => {
    const r = await api.call('DELETE', path);
    if (r.status !== 200 && r.status !== 202 && r.status !== 404) throw new Error(`DELETE ${path}: ${r.status} ${String(r.body.message)}`);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < to) {
      const i = next++;
      await del(`/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/load-${i}-a`);
      await del(`/api/v1/namespaces/default/services/load-${i}`);
    }
  }));
  return performance.now() - t;
}

/**
 * Deletes the load objects; the agent's memory once that is programmed, and once its
 * heap trim has collected (its "memory-reducing collection" log line after the deletes;
 * given up after 400 s). Its other memory log lines (trims of the C heap alone) are shown.
 */
async function afterDelete(api: Api, agent: AgentRun, node: Netns, size: number): Promise<void> {
  const memoryLines = (): string[] => agent.output().split('\n').filter((l) => l.includes('"msg":"memory: '));
  const base = changesRecorded(node);
  const linesBefore = memoryLines().length;
  const ms = await bulkDelete(api, size);
  const syncMs = await waitSynced(node, base, 2 * size, 600_000);
  await sleep(5000);
  const sample = async (): Promise<{ rss: number; text: string }> => {
    const rss = vmRss(agent.pid);
    const stats = (await agent.control.request({ op: 'stats' })) as StatsInfo;
    return { rss, text: `VmRSS ${(rss / 1e6).toFixed(0)} MB, V8 heap used ${(stats.memory.heapUsed / 1e6).toFixed(0)} MB of ${(stats.memory.heapTotal / 1e6).toFixed(0)} MB` };
  };
  const first = await sample();
  console.log(`\n## agent memory after deleting the ${size} load Services and their slices (${(ms / 1000).toFixed(1)} s over HTTPS; programmed ${(syncMs / 1000).toFixed(1)} s after the last delete)`);
  console.log(`programmed + 5 s: ${first.text}`);
  out.push({ section: 'agent memory', row: `${size} services deleted`, metric: 'VmRSS after the deletes were programmed', unit: 'MB', mode: 'tapir', better: 'lower' }, first.rss / 1e6);
  const t0 = performance.now();
  await waitFor('the agent\'s heap trim', 400_000, () => memoryLines().slice(linesBefore).some((l) => l.includes('memory-reducing collection')), 1000).catch(() => undefined);
  await sleep(2000);
  const last = await sample();
  for (const line of memoryLines().slice(linesBefore)) console.log(`  agent: ${(JSON.parse(line) as { msg: string }).msg}`);
  console.log(`${((performance.now() - t0) / 1000 + 5).toFixed(0)} s after: ${last.text}`);
  out.push({ section: 'agent memory', row: `${size} services deleted`, metric: 'VmRSS after the heap trim', unit: 'MB', mode: 'tapir', better: 'lower' }, last.rss / 1e6);
}

async function bulkLoad(api: Api, from: number, to: number): Promise<number> {
  const t = performance.now();
  let next = from;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < to) {
      const i = next++;
      await api.create('/api/v1/namespaces/default/services', loadService(i));
      await api.create('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', loadSlice(i));
    }
  }));
  return performance.now() - t;
}

// ---- the node's metrics and memory ----
function scrape(node: Netns): string {
  return node.exec('curl', ['-sS', '--max-time', '10', 'http://127.0.0.1:10249/metrics'], { timeoutMs: 15_000 });
}
function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}
/** The histogram's cumulative buckets (le -> count), count and sum. */
function histogram(text: string, name: string): { buckets: Map<number, number>; count: number; sum: number } {
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return { buckets, count: metricValue(text, `${name}_count`), sum: metricValue(text, `${name}_sum`) };
}
/**
 * The upper bound of the bucket holding the p-quantile of the observations between two
 * scrapes: kube-proxy's buckets for this histogram are coarse (0.25 s, 0.5 s, then whole seconds),
 * so an interpolated value would be invented precision.
 */
function histogramBound(before: ReturnType<typeof histogram>, after: ReturnType<typeof histogram>, p: number): number {
  const total = after.count - before.count;
  if (!(total > 0)) return NaN;
  for (const le of [...after.buckets.keys()].sort((a, b) => a - b)) {
    if (after.buckets.get(le)! - (before.buckets.get(le) ?? 0) >= p * total) return le;
  }
  return NaN;
}

function vmRss(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return m === null ? NaN : Number(m[1]) * 1024;
}

interface AgentRun { child: ChildProcess; output: () => string; control: ControlClient; pid: number }

async function startAgent(node: Netns, config: string, extra: string[], env: Record<string, string>, socket: string): Promise<AgentRun> {
  const { child, output } = spawnIn(node, [TAPIR, 'agent', '--config', config, '--log-format', 'json', ...extra], env);
  await waitFor('the agent to start', 120_000, () => {
    if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}):\n${output().slice(-3000)}`);
    return output().includes('"msg":"ready');
  });
  const control = new ControlClient(socket, { timeoutMs: 30_000 });
  const { pid } = await control.status();
  return { child, output, control, pid };
}

async function stopAgent(a: AgentRun): Promise<void> {
  if (a.child.exitCode !== null) return;
  a.child.kill('SIGTERM');
  await Promise.race([new Promise((r) => a.child.once('exit', r)), sleep(15_000)]);
  if (a.child.exitCode === null) a.child.kill('SIGKILL');
}

/** Waits until the agent has no change pending and has recorded at least `changes` since `base`. */
async function waitSynced(node: Netns, base: number, changes: number, timeoutMs: number): Promise<number> {
  const t = performance.now();
  await waitFor(`the agent to program ${changes} changes`, timeoutMs, () => {
    const m = scrape(node);
    const recorded = metricValue(m, 'kubeproxy_sync_proxy_rules_service_changes_total') + metricValue(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_total');
    const pending = metricValue(m, 'kubeproxy_sync_proxy_rules_service_changes_pending') + metricValue(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_pending');
    return recorded - base >= changes && pending === 0;
  }, 250);
  return performance.now() - t;
}
function changesRecorded(node: Netns): number {
  const m = scrape(node);
  return metricValue(m, 'kubeproxy_sync_proxy_rules_service_changes_total') + metricValue(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_total');
}

// ---- the prober ----
class Prober {
  readonly #child: ChildProcess;
  readonly #waiters = new Map<string, (v: any) => void>();
  constructor(node: Netns) {
    this.#child = spawnIn(node, [NODE, PROBE, 'probe']).child;
    createInterface({ input: this.#child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { op: string; id?: number; message?: string };
      if (msg.op === 'error') throw new Error(`prober: ${msg.message}`);
      const key = msg.op === 'clock' ? 'clock' : `${msg.op}:${msg.id}`;
      const w = this.#waiters.get(key);
      this.#waiters.delete(key);
      w?.(msg);
    });
  }
  #expect<T>(key: string, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#waiters.delete(key); reject(new Error(`prober: no ${key} within ${timeoutMs} ms`)); }, timeoutMs);
      this.#waiters.set(key, (v) => { clearTimeout(timer); resolve(v as T); });
    });
  }
  /** The prober's wall clock minus ours, from the exchange with the shortest round trip. */
  async offset(): Promise<number> {
    let best = { rtt: Infinity, offset: 0 };
    for (let i = 0; i < 20; i++) {
      const sent = wallNow();
      const reply = this.#expect<{ now: number }>('clock', 10_000);
      this.#child.stdin!.write('{"op":"clock"}\n');
      const { now } = await reply;
      const back = wallNow();
      if (back - sent < best.rtt) best = { rtt: back - sent, offset: now - (sent + back) / 2 };
    }
    return best.offset;
  }
  /** Starts a round; resolves once its first datagram is out, with the round's result to come
   * (wrapped: an async function returning a promise would wait for it). */
  async start(id: number, ip: string, expect: string): Promise<{ result: Promise<ProbeResult> }> {
    const started = this.#expect('started:' + id, 10_000);
    const result = this.#expect<ProbeResult>('result:' + id, PROBE_TIMEOUT_MS + 10_000);
    this.#child.stdin!.write(`${JSON.stringify({ op: 'probe', id, ip, port: 80, expect, intervalMs: INTERVAL_MS, timeoutMs: PROBE_TIMEOUT_MS })}\n`);
    await started;
    return { result };
  }
}

interface Sample { total: number; kubectl: number; apiToDataplane: number }

function runKubectl(env: Record<string, string>, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(KUBECTL, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => { clearTimeout(timer); children.delete(child); resolve({ code, out }); });
  });
}

let probeId = 0;

async function measure(kind: 'create' | 'move', size: number, scaleIndex: number, ctx: { api: Api; prober: Prober; offset: number; kubectlEnv: Record<string, string>; node: Netns }): Promise<{ samples: Sample[]; lost: number; agent: { p50: number; p99: number; count: number; mean: number } }> {
  // When the API server committed each change, as a watch of the bench's own sees it.
  const servicesAdded = new Map<string, number>();
  const sliceEvents: { name: string; address: string | undefined; at: number }[] = [];
  const stops = [
    await ctx.api.watch('/api/v1/namespaces/default/services', (type, o, at) => { if (type === 'ADDED' && !servicesAdded.has(o.metadata.name)) servicesAdded.set(o.metadata.name, at); }),
    await ctx.api.watch('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', (type, o, at) => {
      if (type === 'ADDED' || type === 'MODIFIED') sliceEvents.push({ name: o.metadata.name, address: (o.endpoints as { addresses: string[] }[] | undefined)?.[0]?.addresses[0], at });
    }),
  ];
  const sliceCommitted = (name: string, address: string, after: number): number => sliceEvents.find((e) => e.name === name && e.address === address && e.at >= after)?.at ?? NaN;
  // The moving Service exists before the round, answered by A.
  const moving = `move-${scaleIndex}`;
  // Fixed addresses for the round: one per new Service, or the moving one's.
  const ips = await ctx.api.freeAddresses(kind === 'create' ? `10.100.${scaleIndex}` : `10.101.${scaleIndex}`, kind === 'create' ? CHANGES : 1);
  const movingIP = ips[0]!;
  let current: 'A' | 'B' = 'A';
  if (kind === 'move') {
    await ctx.api.create('/api/v1/namespaces/default/services', udpService(moving, movingIP));
    await ctx.api.create('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', udpSlice(moving, POD.A));
    const check = await (await ctx.prober.start(++probeId, movingIP, 'A')).result;
    if (check.seenAt === null) throw new Error(`${moving} (${movingIP}) never answered from pod A`);
  }
  const before = histogram(scrape(ctx.node), PROGRAMMING);
  const samples: Sample[] = [];
  let lost = 0;
  const dir = join(work, `changes-${size}-${kind}`);
  mkdirSync(dir, { recursive: true });
  for (let c = 0; c < CHANGES; c++) {
    let ip: string, expect: string, args: string[], commitTime: (t0: number) => number;
    if (kind === 'create') {
      const name = `new-${scaleIndex}-${c}`;
      ip = ips[c]!;
      expect = 'A';
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, `${stringify(udpService(name, ip))}---\n${stringify(udpSlice(name, POD.A))}`);
      args = ['apply', '-f', file];
      commitTime = (t0) => Math.max(servicesAdded.get(name) ?? NaN, sliceCommitted(`${name}-a`, POD.A, t0));
    } else {
      const to: 'A' | 'B' = current === 'A' ? 'B' : 'A';
      ip = movingIP;
      expect = to;
      const patch = { endpoints: [{ addresses: [POD[to]], conditions: { ready: true }, nodeName: 'node-1' }] };
      args = ['patch', 'endpointslice', `${moving}-a`, '--type=merge', '-p', JSON.stringify(patch)];
      commitTime = (t0) => sliceCommitted(`${moving}-a`, POD[to], t0);
      current = to;
    }
    const result = await ctx.prober.start(++probeId, ip, expect);
    const t0 = wallNow();
    const k = await runKubectl(ctx.kubectlEnv, args);
    if (k.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${k.out}`);
    const r = await result.result;
    if (r.seenAt === null) {
      lost++;
      console.log(`  ${kind} ${c}: not seen within ${PROBE_TIMEOUT_MS / 1000} s (${r.sent} probes, ${r.otherReplies} answered by the other endpoint)`);
      continue;
    }
    const t1 = r.seenAt - ctx.offset;
    if (t1 < t0) throw new Error(`${kind} ${c}: a probe sent ${(t0 - t1).toFixed(1)} ms before kubectl started already saw the change: the probe is broken`);
    const tw = commitTime(t0);
    samples.push({ total: t1 - t0, kubectl: tw - t0, apiToDataplane: t1 - tw });
  }
  for (const stop of stops) stop();
  // The agent's histogram counts these changes once their sync ends: wait for it.
  await sleep(500);
  const after = histogram(scrape(ctx.node), PROGRAMMING);
  return {
    samples, lost,
    agent: { p50: histogramBound(before, after, 0.5) * 1000, p99: histogramBound(before, after, 0.99) * 1000, count: after.count - before.count, mean: ((after.sum - before.sum) / (after.count - before.count)) * 1000 },
  };
}

function fmt(ms: number): string {
  return Number.isFinite(ms) ? ms.toFixed(1) : '-';
}

async function main(): Promise<void> {
  work = mkdtempSync(join(tmpdir(), 'tapir-bench-proglat-'));
  const api = nsNamed('plapi');
  const node = nsNamed('plnode');
  const [apiIf, nodeIf] = vethPair(api, node, 'plu');
  api.exec('ip', ['addr', 'add', `${API_IP}/24`, 'dev', apiIf]);
  node.exec('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', nodeIf]);

  console.log(`# network programming latency, cluster mode (${new Date().toISOString()})`);
  const cp = await startControlPlane({ dir: join(work, 'apiserver'), netns: api.name, address: API_IP, serviceCIDR: '10.96.0.0/12', nodePortRange: { min: 30000, max: 32767 }, tapirBin: TAPIR, rbacFile: join(ROOT, 'deploy/kubernetes/rbac.yaml') });
  const client = new Api(cp);
  try {
    await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } });
    await client.create('/api/v1/nodes', {
      apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'kubernetes.io/hostname': 'node-1' } },
      spec: { podCIDR: POD_CIDR, podCIDRs: [POD_CIDR] }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] },
    });
    const kubectlEnv = { KUBECONFIG: cp.hostKubeconfig, HOME: join(work, 'home') };
    mkdirSync(kubectlEnv.HOME);

    // The agent: the service account's token (the shipped ClusterRole), on the lab address.
    const agentKubeconfig = join(work, 'agent.kubeconfig');
    writeFileSync(agentKubeconfig, kubeconfig('bench', cp.labServer, cp.caFile, cp.agentToken), { mode: 0o600 });
    const stateDir = join(work, 'state');
    const socket = join(stateDir, 'agent.sock');
    const tapirDoc = (manifests?: string): string => `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: ${CLUSTER_CIDR}
healthzBindAddress: ${NODE_IP}:10256
metricsBindAddress: 127.0.0.1:10249
---
apiVersion: tapir.dev/v1alpha1
kind: TapirAgentConfiguration
nodeName: node-1
underlay: {interface: ${nodeIf}, address: ${NODE_IP}}
podCIDR: ${POD_CIDR}
stateDir: ${stateDir}
hostTun: ${node.name.replace(/^tp/, 'tt')}
${manifests === undefined ? '' : `manifests: ${manifests}\n`}`;
    const config = join(work, 'agent.yaml');
    writeFileSync(config, tapirDoc());
    let agent = await startAgent(node, config, ['--kubeconfig', agentKubeconfig], { NODE_NAME: 'node-1' }, socket);
    console.log(`agent (pid ${agent.pid}) in ${node.name}, cluster mode on ${cp.labServer} as system:serviceaccount:kube-system:tapir`);

    // Two pods on the node, attached as tapir-cni attaches them.
    for (const [name, ip] of Object.entries(POD)) {
      const pod = nsNamed(`plp${name.toLowerCase()}`);
      await agent.control.request({ op: 'addPort', containerId: `bench-${name}`, ifName: 'eth0', netns: `/run/netns/${pod.name}`, ip, prefixLength: 24, gateway: '10.224.1.1', podName: `pod-${name}`, podNamespace: 'default' });
      const r = spawnIn(pod, [NODE, PROBE, 'serve', '--name', name, '--port', String(POD_PORT)]);
      await waitFor(`pod ${name}'s responder`, 60_000, () => r.output().includes('ready'));
    }
    const prober = new Prober(node);
    const offset = await prober.offset();
    const ctx = { api: client, prober, offset, kubectlEnv, node };
    console.log(`prober clock offset ${offset.toFixed(3)} ms; probes every ${INTERVAL_MS} ms, each from a new source port; ${CHANGES} changes per kind`);
    // kubectl's discovery cache, warmed as a user's would be.
    await runKubectl(kubectlEnv, ['get', 'svc', 'kubernetes']);

    const startRss = vmRss(agent.pid);
    const rows: string[] = [];
    let loaded = 0;
    for (const [scaleIndex, size] of SIZES.entries()) {
      const base = changesRecorded(node);
      const loadMs = await bulkLoad(client, loaded, size);
      const syncMs = await waitSynced(node, base, 2 * (size - loaded), 600_000);
      console.log(`\n## ${size} Services preloaded (${size * 10} endpoints): ${size - loaded} Services + slices created over HTTPS in ${(loadMs / 1000).toFixed(1)} s; agent programmed them ${(syncMs / 1000).toFixed(1)} s after the last create`);
      loaded = size;
      for (const kind of ['create', 'move'] as const) {
        const m = await measure(kind, size, scaleIndex, ctx);
        const col = (f: (s: Sample) => number, p: number): string => fmt(percentile(m.samples.map(f), p));
        const within = m.samples.filter((s) => s.total <= SLO_MS).length;
        console.log(`${kind}: kubectl -> first packet p50 ${col((s) => s.total, 0.5)} ms, p99 ${col((s) => s.total, 0.99)} ms, max ${col((s) => s.total, 1)} ms; API commit -> first packet p50 ${col((s) => s.apiToDataplane, 0.5)} ms, p99 ${col((s) => s.apiToDataplane, 0.99)} ms; kubectl start -> API commit p50 ${col((s) => s.kubectl, 0.5)} ms; lost ${m.lost}; agent histogram (${m.agent.count} observations): p50 <= ${fmt(m.agent.p50)} ms, p99 <= ${fmt(m.agent.p99)} ms, mean ${fmt(m.agent.mean)} ms`);
        for (const [metric, f] of [['kubectl -> first packet', (x: Sample) => x.total], ['API commit -> first packet', (x: Sample) => x.apiToDataplane]] as const) {
          for (const p of [0.5, 0.99]) out.push({ section: 'cluster mode programming latency', row: `${size} services`, x: size, metric: `${kind}: ${metric} p${p * 100}`, unit: 'ms', mode: 'tapir', better: 'lower' }, percentile(m.samples.map(f), p));
        }
        rows.push(`| ${size} | ${kind} | ${col((s) => s.total, 0.5)} | ${col((s) => s.total, 0.99)} | ${col((s) => s.apiToDataplane, 0.5)} | ${col((s) => s.apiToDataplane, 0.99)} | ${col((s) => s.kubectl, 0.5)} | <= ${fmt(m.agent.p50)} / <= ${fmt(m.agent.p99)}, mean ${fmt(m.agent.mean)} (${m.agent.count}) | ${within}/${m.samples.length + m.lost} | ${(percentile(m.samples.map((s) => s.total), 0.99) / SLO_MS).toFixed(2)}x |`);
      }
    }
    console.log(`\n| Services | change | kubectl->packet p50 (ms) | p99 | API->packet p50 | p99 | kubectl->API p50 | agent histogram p50 / p99 bucket, mean (n) | within 1 s | p99 / SLO |`);
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);

    // Memory with the largest size watched.
    const top = SIZES.at(-1)!;
    await sleep(5000);
    const clusterStats = (await agent.control.request({ op: 'stats' })) as StatsInfo;
    const clusterRss = vmRss(agent.pid);
    out.push({ section: 'agent memory', row: `${top} services`, metric: 'VmRSS, cluster mode', unit: 'MB', mode: 'tapir', better: 'lower' }, clusterRss / 1e6);
    console.log(`\n## agent memory, ${top} load Services with ${top * 10} endpoints (+ ${SIZES.length * (CHANGES + 1)} probe Services), after 5 s idle`);
    console.log(`at start, before any load Service: VmRSS ${(startRss / 1e6).toFixed(0)} MB`);
    console.log(`cluster mode:  VmRSS ${(clusterRss / 1e6).toFixed(0)} MB, V8 heap used ${(clusterStats.memory.heapUsed / 1e6).toFixed(0)} MB of ${(clusterStats.memory.heapTotal / 1e6).toFixed(0)} MB, external ${(clusterStats.memory.external / 1e6).toFixed(0)} MB (array buffers ${(clusterStats.memory.arrayBuffers / 1e6).toFixed(0)} MB)`);
    if (values['after-delete']) await afterDelete(client, agent, node, top);
    if (!values['no-manifest-compare']) {
      // The same objects from a manifest directory: the same agent without the API client.
      const dir = join(work, 'manifests');
      mkdirSync(dir);
      const list = async (path: string): Promise<Record<string, any>[]> => ((await client.call('GET', path)).body.items as Record<string, any>[]);
      const strip = (o: Record<string, any>, apiVersion: string, kind: string): Record<string, unknown> => {
        const { metadata: m, status: _s, ...rest } = o;
        return { apiVersion, kind, metadata: { name: m.name, namespace: m.namespace, ...(m.labels === undefined ? {} : { labels: m.labels }) }, ...rest };
      };
      const services = (await list('/api/v1/namespaces/default/services')).filter((s) => s.metadata.name !== 'kubernetes').map((s) => strip(s, 'v1', 'Service'));
      const slices = (await list('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices')).filter((s) => s.metadata.name !== 'kubernetes').map((s) => strip(s, 'discovery.k8s.io/v1', 'EndpointSlice'));
      writeFileSync(join(dir, 'node.yaml'), stringify({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, spec: { podCIDR: POD_CIDR }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } }));
      const perFile = 1000;
      for (let f = 0; f * perFile < services.length; f++) {
        const docs = [...services.slice(f * perFile, (f + 1) * perFile), ...slices.filter((s) => services.slice(f * perFile, (f + 1) * perFile).some((v) => (v.metadata as { name: string }).name === (s.metadata as { labels: Record<string, string> }).labels['kubernetes.io/service-name']))];
        writeFileSync(join(dir, `objects-${f}.yaml`), docs.map((d) => stringify(d)).join('---\n'));
      }
      await stopAgent(agent);
      writeFileSync(config, tapirDoc(dir));
      agent = await startAgent(node, config, [], {}, socket);
      await waitFor('the manifest-mode agent to program every Service', 600_000, () => {
        const m = scrape(node);
        return metricValue(m, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') > 0 && metricValue(m, 'kubeproxy_sync_proxy_rules_service_changes_pending') === 0 && metricValue(m, 'kubeproxy_sync_proxy_rules_endpoint_changes_pending') === 0;
      }, 500);
      await sleep(5000);
      const manifestStats = (await agent.control.request({ op: 'stats' })) as StatsInfo;
      const manifestRss = vmRss(agent.pid);
      out.push({ section: 'agent memory', row: `${top} services`, metric: 'VmRSS, manifest mode', unit: 'MB', mode: 'tapir', better: 'lower' }, manifestRss / 1e6);
      console.log(`manifest mode: VmRSS ${(manifestRss / 1e6).toFixed(0)} MB, V8 heap used ${(manifestStats.memory.heapUsed / 1e6).toFixed(0)} MB of ${(manifestStats.memory.heapTotal / 1e6).toFixed(0)} MB (${services.length} Services, ${slices.length} EndpointSlices from ${Math.ceil(services.length / perFile)} files); cluster/manifest RSS ${(clusterRss / manifestRss).toFixed(2)}x, heap ${(clusterStats.memory.heapUsed / manifestStats.memory.heapUsed).toFixed(2)}x`);
    }
    await stopAgent(agent);
    if (values.json !== undefined) out.write(values.json);
  } finally {
    client.close();
    try { process.kill(cp.pid, 'SIGTERM'); } catch { /* gone */ }
  }
}

try {
  await main();
} finally {
  cleanup();
}

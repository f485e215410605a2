// The lab API server at the scales the cluster-mode benchmarks use (1k and 10k Services,
// each with an EndpointSlice of 10 endpoints, so 100k endpoints at 10k): creates per
// second over HTTPS against the same creates through the object handlers in-process
// (the baseline: no TLS, HTTP or JSON), the time of a full LIST of Services and of
// EndpointSlices with kube-proxy's selector, how long a change takes to reach 20
// watches (20 agents), and the server's RSS. It runs in this process on 127.0.0.1.
// Run: node bench/lab-apiserver.ts [N...]   (default 1000 10000; take the median of runs)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServiceAllocator } from '../src/lab/apiserver/defaults.ts';
import { ObjectHandlers } from '../src/lab/apiserver/handlers.ts';
import { writeTokenFile } from '../src/lab/apiserver/kubeconfig.ts';
import { resourceAt } from '../src/lab/apiserver/resources.ts';
import { LabApiServer } from '../src/lab/apiserver/server.ts';
import { Store } from '../src/lab/apiserver/store.ts';
import { parseCidr } from '../src/wire/address.ts';

const TOKEN = 'bench-admin-token';
const SELECTOR = encodeURIComponent('!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless');
const CONCURRENCY = 8;
const WATCHERS = 20;
const CHANGES = 200;

function service(i: number): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${i}`, namespace: 'default' }, spec: { selector: { app: `a${i}` }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } };
}

function slice(i: number): Record<string, unknown> {
  const endpoints = Array.from({ length: 10 }, (_, j) => ({ addresses: [`10.${(i >> 8) & 255}.${i & 255}.${j + 2}`], conditions: { ready: true }, nodeName: `node-${j}` }));
  return { apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `svc-${i}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${i}` } }, addressType: 'IPv4', endpoints, ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] };
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))]!;
}

async function main(): Promise<void> {
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  for (const n of sizes.length > 0 ? sizes : [1000, 10000]) await run(n);
}

async function run(n: number): Promise<void> {
  // Baseline: the handlers alone.
  {
    const store = new Store();
    const h = new ObjectHandlers(store, new ServiceAllocator(parseCidr('10.96.0.0/12')!, { min: 30000, max: 32767 }));
    h.create({ info: resourceAt('', 'v1', 'namespaces')!, namespace: '', name: '', subresource: '', query: new URLSearchParams() }, { metadata: { name: 'default' } });
    const svcInfo = resourceAt('', 'v1', 'services')!;
    const sliceInfo = resourceAt('discovery.k8s.io', 'v1', 'endpointslices')!;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      h.create({ info: svcInfo, namespace: 'default', name: '', subresource: '', query: new URLSearchParams() }, service(i));
      h.create({ info: sliceInfo, namespace: 'default', name: '', subresource: '', query: new URLSearchParams() }, slice(i));
    }
    const rate = (2 * n) / ((performance.now() - t0) / 1000);
    console.log(`${n} services + ${n} slices (${n * 10} endpoints): in-process creates ${rate.toFixed(0)} objects/s (baseline)`);
    h.close();
    baselineRate = rate;
  }
  const dir = mkdtempSync(join(tmpdir(), 'tapir-bench-apiserver-'));
  writeTokenFile(join(dir, 'tokens.csv'), [{ token: TOKEN, user: 'bench', groups: ['system:masters'] }]);
  let server: LabApiServer;
  try {
    server = new LabApiServer({ dir: join(dir, 'state'), tokenFile: join(dir, 'tokens.csv'), serviceCIDR: parseCidr('10.96.0.0/12')!, nodePortRange: { min: 30000, max: 32767 }, listeners: [{ host: '127.0.0.1', port: 0 }] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const [address] = await server.start();
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY, ca: readFileSync(server.tls.caCert) });
  const call = (method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; text: string }> => new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: address!.port, path, method, agent, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': contentType } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
  try {
    const t0 = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) {
        const i = next++;
        const a = await call('POST', '/api/v1/namespaces/default/services', service(i));
        const b = await call('POST', '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', slice(i));
        if (a.status !== 201 || b.status !== 201) throw new Error(`create ${i}: ${a.status} ${b.status} ${a.text} ${b.text}`);
      }
    }));
    const rate = (2 * n) / ((performance.now() - t0) / 1000);
    console.log(`  HTTPS creates (${CONCURRENCY} connections): ${rate.toFixed(0)} objects/s, ${(rate / baselineRate).toFixed(2)}x the baseline`);
    for (const [what, path] of [['Services', `/api/v1/services?labelSelector=${SELECTOR}`], ['EndpointSlices', `/apis/discovery.k8s.io/v1/endpointslices?labelSelector=${SELECTOR}`]] as const) {
      const times: number[] = [];
      let bytes = 0;
      for (let r = 0; r < 5; r++) {
        const t = performance.now();
        const res = await call('GET', path);
        times.push(performance.now() - t);
        bytes = res.text.length;
      }
      console.log(`  LIST all ${what}: ${percentile(times, 0.5).toFixed(0)} ms (median of 5), ${(bytes / 1e6).toFixed(1)} MB`);
    }
    // 20 watches on Services from now; each change is a label patch on one service.
    const rv = JSON.parse((await call('GET', '/api/v1/services?limit=1')).text).metadata.resourceVersion as string;
    const arrivals: Map<string, number>[] = [];
    const watchReqs = [];
    for (let w = 0; w < WATCHERS; w++) {
      const seen = new Map<string, number>();
      arrivals.push(seen);
      let buffered = '';
      watchReqs.push(request({ host: '127.0.0.1', port: address!.port, path: `/api/v1/services?watch=1&resourceVersion=${rv}&labelSelector=${SELECTOR}`, agent: false, ca: agent.options.ca, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        res.on('data', (c: Buffer) => {
          buffered += c.toString();
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const event = JSON.parse(buffered.slice(0, nl)) as { object: { metadata: { labels?: Record<string, string> } } };
            buffered = buffered.slice(nl + 1);
            const mark = event.object.metadata.labels?.change;
            if (mark !== undefined) seen.set(mark, performance.now());
          }
        });
      }).end());
    }
    await new Promise((r) => setTimeout(r, 300));
    const latencies: number[] = [];
    for (let c = 0; c < CHANGES; c++) {
      const t = performance.now();
      await call('PATCH', `/api/v1/namespaces/default/services/svc-${c % n}`, { metadata: { labels: { change: String(c) } } }, 'application/merge-patch+json');
      const deadline = Date.now() + 10_000;
      while (!arrivals.every((s) => s.has(String(c))) && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      latencies.push(Math.max(...arrivals.map((s) => s.get(String(c)) ?? Infinity)) - t);
    }
    console.log(`  a change reaches all ${WATCHERS} watches: p50 ${percentile(latencies, 0.5).toFixed(2)} ms, p99 ${percentile(latencies, 0.99).toFixed(2)} ms (${CHANGES} changes)`);
    for (const r of watchReqs) r.destroy();
    console.log(`  RSS of this process (server and bench client): ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
  } finally {
    agent.destroy();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

let baselineRate = 1;
await main();

// Cluster DNS (issue 10, "Figures"): dnsperf against `tapir dns` and against NSD, a C
// authoritative server from Debian, serving the same records, in the same run.
//
//   node bench/dns.ts [--services 1000] [--endpoints 1] [--external 1000] [--runs 3] [--seconds 5]
//                     [--clients 4] [--outstanding 100] [--latency-qps 5000] [--servers nsd,tapir]
//                     [--mixes cluster,search,external] [--json FILE]
//   the big run: --services 10000 --endpoints 10 (10k Services, 100k endpoints)
//
// Three namespaces of its own (tbdns-<tag>-cli, -srv, -up), veths between them, nothing
// in the root namespace:
//   cli 172.31.53.1  --veth--  srv 172.31.53.2 (NSD), 172.31.53.3 (tapir dns); 172.31.54.1  --veth--  up 172.31.54.2
// dnsperf runs in cli pinned to CPU 0; in srv both servers run pinned to CPU 1, idle
// but for the one being measured (the runs alternate between them, so drift on this
// shared 2-core machine hits both alike):
//   NSD: authoritative for cluster.local, 10.in-addr.arpa (the cluster IPs' PTRs) and
//        example.test, from zone files holding the records Tapir serves for the same
//        Services (bench/lib/dns-data.ts); one serving process, rate limiting off.
//   tapir dns --corefile F --manifests DIR: kubeadm's Corefile with `bind 172.31.53.3`
//        and `forward . 172.31.54.2`, over a manifest directory of the Services and
//        EndpointSlices.
// up runs a second NSD (CPU 0), authoritative for example.test: Tapir's upstream.
//
// The query mixes (dnsperf -d), each run once through before every measured run (that
// pass fills Tapir's cache for the external names):
//   cluster:  the A record of every Service, `svc-NNNNN.ns-K.svc.cluster.local`.
//   search:   a ClusterFirst pod in `default` (ndots:5) resolving the same names: glibc
//             tries the three search domains first, so each name costs 3 NXDOMAIN and
//             1 NOERROR: 75% of the queries are misses. (For a short name `svc-NNNNN`
//             of the pod's own namespace the first query hits; for an external name
//             with fewer than 5 dots, 3 misses come first as here; this mix is the
//             FQDN-without-trailing-dot case, the one that dominates real clusters.)
//   external: `www-I.example.test` A. Tapir answers them from its cache (forward +
//             cache 30: filled by the warm-up pass from the upstream NSD); NSD answers
//             them as the authority itself. What is compared is a cached answer in Tapir
//             with an authoritative one in NSD: no C caching resolver (Unbound) is
//             installed here, and NSD does not forward.
// Per mix and server: queries/s, average, p50 and p99 latency (dnsperf's -v lines), lost
// queries, the server's CPU (fraction of one core; below 100% the one dnsperf thread,
// not the server, set the rate: then queries per CPU second is the fairer comparison),
// and the response codes, which must be what a correct server answers (a run with other
// codes is reported as a problem).
// Each figure is the median of --runs runs of --seconds, with the range. dnsperf keeps
// --outstanding queries in flight, so the latencies of those runs are a saturated
// server's (mostly queueing: about outstanding / rate); each is followed by a run at a
// fixed --latency-qps (dnsperf -Q, below both servers' capacity; 0 skips it) whose
// latencies are the servers' own.
// Before the runs, a sample of every mix is asked of both servers with dig and the
// answers compared (rcode and answer records without TTL); after them again, each query
// asked of tapir dns twice so that the second answer is its cache's (dnsperf checks no
// answer's name or records: a wrong answer only shows here, and then the figures are
// marked NOT VALID). Memory: tapir dns's RSS after
// its first sync and after a full GC (through its inspector), NSD's PSS with the same
// zones. References: CoreDNS's published 33,669 QPS for internal names with both vCPUs
// of a GCE n1-standard-2 pegged (16.8k per vCPU), and its memory estimate, both from
// coredns/deployment kubernetes/Scaling_CoreDNS.md.
//
// Needs root (namespaces). Everything is removed at the end, on failure and on Ctrl-C;
// every step is bounded in time, and the runs stop when the time budget is spent.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { expectedRcodes, MIXES, queryLines, serviceFqdn, writeManifests, writeQueries, writeZones, type DnsData, type Mix } from './lib/dns-data.ts';
import { parseSummary, verboseLatencies, type DnsperfResult } from './lib/dnsperf.ts';
import { BenchNetns, collectGarbage, INSPECT_PORT, killAll, memoryOf, pidsNamed, runIn, startIn, writeNsdConfig, type Memory, type Proc } from './lib/dns-servers.ts';
import { cleanUpOnSignal, cpuSeconds, median } from './lib/tools.ts';

const { values } = parseArgs({ options: {
  services: { type: 'string', default: '1000' },
  endpoints: { type: 'string', default: '1' },
  external: { type: 'string', default: '1000' },
  runs: { type: 'string', default: '3' },
  seconds: { type: 'string', default: '5' },
  clients: { type: 'string', default: '4' },
  outstanding: { type: 'string', default: '100' },
  'latency-qps': { type: 'string', default: '5000' },
  servers: { type: 'string', default: 'nsd,tapir' },
  mixes: { type: 'string', default: MIXES.join(',') },
  json: { type: 'string' },
} });
const DATA: DnsData = { services: Number(values.services), endpointsPerService: Number(values.endpoints), externalNames: Number(values.external), ttl: 30 };
const RUNS = Number(values.runs), SECONDS = Number(values.seconds), CLIENTS = Number(values.clients), OUTSTANDING = Number(values.outstanding);
const LATENCY_QPS = Number(values['latency-qps']);
type Server = 'nsd' | 'tapir';
const SERVERS = values.servers.split(',') as Server[];
const MIX_LIST = values.mixes.split(',') as Mix[];
const int = (n: number, lo: number, hi: number): boolean => Number.isInteger(n) && n >= lo && n <= hi;
if (!int(DATA.services, 1, 60000) || !int(DATA.endpointsPerService, 0, 100) || !int(DATA.externalNames, 1, 9000) || !int(RUNS, 1, 20) || !int(SECONDS, 1, 120)
  || !int(CLIENTS, 1, 64) || !int(OUTSTANDING, 1, 10000) || !int(LATENCY_QPS, 0, 1_000_000) || !SERVERS.every((s) => s === 'nsd' || s === 'tapir') || !MIX_LIST.every((m) => MIXES.includes(m))) {
  console.error('usage: node bench/dns.ts [--services 1000 (1-60000)] [--endpoints 1 (0-100)] [--external 1000 (1-9000)] [--runs 3] [--seconds 5] [--clients 4] [--outstanding 100] [--latency-qps 5000] [--servers nsd,tapir] [--mixes cluster,search,external] [--json FILE]');
  process.exit(2);
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TAPIR = join(ROOT, 'bin/tapir');
const ADDR = { client: '172.31.53.1', nsd: '172.31.53.2', tapir: '172.31.53.3', srvUp: '172.31.54.1', upstream: '172.31.54.2' };
/** coredns/deployment kubernetes/Scaling_CoreDNS.md: 33,669 QPS internal names, 2 vCPUs pegged (~1900m). */
const COREDNS_QPS_PER_VCPU = 33669 / 2;
/** The same page's memory estimate with default settings (a full 30 MB cache included). */
const corednsMemoryMB = (podsAndServices: number): number => podsAndServices * 0.000858 + 49.1;
/** Setup, the servers' start (tapir dns with 100k endpoints), and per measured run its warm-up, the run and a margin. */
const RUN_MS = ((LATENCY_QPS > 0 ? 2 : 1) * SECONDS + 30) * 1000;
const BUDGET_MS = (240 + DATA.services / 50) * 1000 + RUNS * MIX_LIST.length * SERVERS.length * RUN_MS;
const t0 = Date.now();
const problems: string[] = [];
let tapirProc: Proc | null = null;
/** A sample query tapir dns answered otherwise than NSD (or an rcode share off): its figures measure wrong answers. */
let wrongAnswers = false;

// ---- cleanup, whatever happens ----
const tag = randomBytes(2).toString('hex');
const namespaces: BenchNetns[] = [];
let work = '';
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  killAll();
  for (const ns of namespaces.reverse()) ns.destroy();
  if (work !== '') rmSync(work, { recursive: true, force: true });
}
cleanUpOnSignal(cleanup);

function netns(role: string): BenchNetns {
  const ns = new BenchNetns(tag, role);
  namespaces.push(ns);
  return ns;
}

/** A veth between two of the bench's namespaces, created inside them (never in the root namespace). */
function link(a: BenchNetns, aAddrs: string[], b: BenchNetns, bAddrs: string[], letter: string): void {
  const ifA = `tbdns-${tag}${letter}a`, ifB = `tbdns-${tag}${letter}b`;
  execFileSync('ip', ['link', 'add', ifA, 'netns', a.name, 'type', 'veth', 'peer', 'name', ifB, 'netns', b.name]);
  for (const [ns, ifName, addrs] of [[a, ifA, aAddrs], [b, ifB, bAddrs]] as const) {
    for (const addr of addrs) ns.exec(['ip', 'addr', 'add', `${addr}/24`, 'dev', ifName]);
    ns.exec(['ip', 'link', 'set', ifName, 'up']);
  }
}

/** dig from `ns`: the rcode and the answer records (owner, type, data; TTL left out), sorted. */
async function ask(ns: BenchNetns, server: string, name: string, type = 'A'): Promise<string> {
  const r = await runIn(ns, ['dig', `@${server}`, '+tries=1', '+time=2', '+noall', '+comments', '+answer', name, type], 10_000);
  const status = /status: ([A-Z]+)/.exec(r.output)?.[1] ?? 'no answer';
  const answers = r.output.split('\n').filter((l) => l.trim() !== '' && !l.startsWith(';')).map((l) => {
    const [owner, , cls, rtype, ...data] = l.trim().split(/\s+/);
    return `${owner!.toLowerCase()} ${cls} ${rtype} ${data.join(' ')}`;
  }).sort();
  return [status, ...answers].join(' | ');
}

async function waitAnswer(ns: BenchNetns, server: string, name: string, timeoutMs: number, proc: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await ask(ns, server, name)).startsWith('NOERROR |')) return;
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`${server} does not answer ${name} (${proc.child.exitCode !== null ? `exited ${proc.child.exitCode}` : `${timeoutMs / 1000} s`}): ${proc.output().slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A saturated run, and the run at LATENCY_QPS after it (null when skipped). */
type RunFigure = DnsperfResult & { cpu: number; fixed: DnsperfResult | null };

function rcodesWrong(mix: Mix, r: DnsperfResult): string {
  const expected = expectedRcodes(mix);
  const wrong: string[] = [];
  for (const [code, count] of Object.entries(r.rcodes)) {
    const share = count / Math.max(1, r.completed);
    if (!(code in expected)) wrong.push(`${count} ${code}`);
    else if (Math.abs(share - expected[code]!) > 0.01 + 4 / Math.max(1, r.completed)) wrong.push(`${code} ${(share * 100).toFixed(1)}% instead of ${expected[code]! * 100}%`);
  }
  return wrong.join(', ');
}

/** One warm-up pass through the file, then the measured runs; the server's CPU over the saturated run. */
async function measure(cli: BenchNetns, server: string, file: string, serverPids: () => number[]): Promise<RunFigure> {
  const dnsperf = (extra: string[]): string[] => ['taskset', '-c', '0', 'dnsperf', '-s', server, '-d', file, '-c', String(CLIENTS), '-q', String(OUTSTANDING), '-t', '2', ...extra];
  const warm = await runIn(cli, dnsperf(['-n', '1', '-l', '60']), 90_000);
  if (!warm.ok) throw new Error(`dnsperf warm-up against ${server}: ${warm.timedOut ? 'timed out' : warm.output.slice(-800)}`);
  const out = join(work, 'dnsperf.out');
  const verbose = async (extra: string[]): Promise<DnsperfResult> => {
    const r = await runIn(cli, dnsperf(['-l', String(SECONDS), '-v', ...extra]), (SECONDS + 30) * 1000, out);
    if (!r.ok) throw new Error(`dnsperf against ${server}: ${r.timedOut ? 'timed out' : r.output.slice(-800)}`);
    const text = readFileSync(out, 'latin1');
    const summary = parseSummary(text.slice(text.lastIndexOf('Statistics:')));
    const lat = verboseLatencies(out);
    return { ...summary, p50Ms: lat.p50Ms, p99Ms: lat.p99Ms };
  };
  const pids = serverPids();
  const c0 = pids.reduce((s, p) => s + cpuSeconds(p), 0), w0 = performance.now();
  const saturated = await verbose([]);
  const cpu = (pids.reduce((s, p) => s + cpuSeconds(p), 0) - c0) / ((performance.now() - w0) / 1000);
  const fixed = LATENCY_QPS > 0 ? await verbose(['-Q', String(LATENCY_QPS)]) : null;
  return { ...saturated, cpu, fixed };
}

/**
 * The same answers from both, or the figures compare different work: the first 20 queries
 * of every mix, rcode and answer records. dnsperf checks neither the question nor the
 * records of a response, so a server that answers the wrong name (a cache entry
 * overwritten after it was stored, say) shows only here: after the runs each query goes
 * to tapir dns twice, and the second answer is the cache's.
 */
async function compareAnswers(cli: BenchNetns, when: string): Promise<void> {
  const samples = MIX_LIST.flatMap((mix) => queryLines(mix, DATA).slice(0, 20).map((line) => ({ mix, name: line.split(' ')[0]!, type: line.split(' ')[1]! })));
  const twice = when.startsWith('after');
  if (twice) for (const q of samples) await ask(cli, ADDR.tapir, q.name, q.type);
  let different = 0;
  for (const q of samples) {
    const [a, b] = await Promise.all([ask(cli, ADDR.nsd, q.name, q.type), ask(cli, ADDR.tapir, q.name, q.type)]);
    if (a === b) continue;
    different++;
    wrongAnswers = true;
    problems.push(`${when}, ${q.mix}: ${q.name} ${q.type}: NSD says "${a}", tapir dns says "${b}"`);
  }
  console.log(`answers compared ${when} for ${samples.length} sample queries: ${different === 0 ? 'the same' : `${different} differ (see the problems)`}`);
}

const mib = (bytes: number): string => (Number.isFinite(bytes) ? `${(bytes / 1048576).toFixed(1)} MiB` : '-');

async function main(): Promise<void> {
  for (const tool of ['nsd', 'dnsperf', 'dig', 'taskset']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { throw new Error(`${tool} is not installed (scripts/setup.sh installs nsd, dnsperf and dig)`); }
  }
  if (SERVERS.includes('tapir') && !existsSync(join(ROOT, 'src/cli/dns.ts'))) {
    problems.push('tapir dns is not on this branch yet (src/cli/dns.ts): only NSD was measured');
    SERVERS.splice(SERVERS.indexOf('tapir'), 1);
  }
  work = mkdtempSync(join(tmpdir(), 'tapir-bench-dns-'));
  const tg = performance.now();
  writeManifests(join(work, 'manifests'), DATA);
  const zones = writeZones(join(work, 'zones'), DATA);
  const queries = writeQueries(join(work, 'queries'), DATA);
  console.log(`# cluster DNS: dnsperf against NSD and tapir dns (${new Date().toISOString()}, load average ${loadavg().map((l) => l.toFixed(2)).join(' ')} on ${availableParallelism()} CPUs)`);
  console.log(`${DATA.services} Services (${DATA.services * DATA.endpointsPerService} endpoints), ${DATA.externalNames} external names; data written in ${((performance.now() - tg) / 1000).toFixed(1)} s to ${work}`);

  const cli = netns('cli'), srv = netns('srv'), up = netns('up');
  link(cli, [ADDR.client], srv, [ADDR.nsd, ADDR.tapir], 'c');
  link(srv, [ADDR.srvUp], up, [ADDR.upstream], 'u');

  const upstream = startIn(up, ['taskset', '-c', '0', 'nsd', '-d', '-c', writeNsdConfig(work, 'nsd-upstream', ADDR.upstream, join(work, 'zones'), zones.filter((z) => z.zone === 'example.test'))]);
  await waitAnswer(srv, ADDR.upstream, 'www-0.example.test', 30_000, upstream);

  const pids: Record<Server, () => number[]> = { nsd: () => pidsNamed(srv, 'nsd'), tapir: () => [] };
  const memory: Record<string, unknown> = {};
  if (SERVERS.includes('nsd')) {
    const t = performance.now();
    const nsd = startIn(srv, ['taskset', '-c', '1', 'nsd', '-d', '-c', writeNsdConfig(work, 'nsd', ADDR.nsd, join(work, 'zones'), zones)]);
    await waitAnswer(cli, ADDR.nsd, serviceFqdn(DATA.services - 1), 120_000, nsd);
    const m = memoryOf(pids.nsd());
    const largestRss = Math.max(...pids.nsd().map((p) => memoryOf([p]).rss));
    memory.nsd = { startMs: performance.now() - t, ...m, largestRss };
    console.log(`NSD (pids ${pids.nsd().join(', ')}) answering after ${((performance.now() - t) / 1000).toFixed(1)} s; PSS of its processes ${mib(m.pss)}, RSS of the largest ${mib(largestRss)}`);
  }
  if (SERVERS.includes('tapir')) {
    const corefile = join(work, 'Corefile');
    writeFileSync(corefile, `.:53 {
    bind ${ADDR.tapir}
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl ${DATA.ttl}
    }
    prometheus :9153
    forward . ${ADDR.upstream}
    cache 30
    loop
    reload
    loadbalance
}
`);
    const t = performance.now();
    const tapir = tapirProc = startIn(srv, ['taskset', '-c', '1', TAPIR, 'dns', '--corefile', corefile, '--manifests', join(work, 'manifests')], { env: { NODE_OPTIONS: `--inspect-port=127.0.0.1:${INSPECT_PORT}` } });
    if (!(await tapir.waitFor(/tapir dns: serving/, 300_000 + DATA.services * 30))) throw new Error(`tapir dns did not start serving: ${tapir.output().slice(-3000)}`);
    const startMs = performance.now() - t;
    const pid = tapir.child.pid!;
    pids.tapir = () => [pid];
    await waitAnswer(cli, ADDR.tapir, serviceFqdn(DATA.services - 1), 30_000, tapir);
    const synced = memoryOf([pid]);
    let afterGc: Memory = { rss: NaN, pss: NaN };
    let heap: NodeJS.MemoryUsage | null = null;
    try {
      heap = await collectGarbage(srv, pid);
      afterGc = memoryOf([pid]);
    } catch (err) {
      problems.push(`tapir dns memory after GC not measured: ${(err as Error).message}`);
    }
    memory.tapir = { startMs, afterFirstSync: synced, afterGc, heap };
    console.log(`tapir dns (pid ${pid}) serving after ${(startMs / 1000).toFixed(1)} s: RSS ${mib(synced.rss)} after the first sync, ${mib(afterGc.rss)} after a GC`);
  }

  if (SERVERS.length === 2) await compareAnswers(cli, 'before the runs');

  const results = new Map<string, RunFigure[]>();
  const key = (mix: Mix, server: Server): string => `${mix}|${server}`;
  runs: for (let run = 0; run < RUNS; run++) {
    for (const mix of MIX_LIST) {
      for (const server of SERVERS) {
        if (Date.now() - t0 > BUDGET_MS - RUN_MS) {
          problems.push(`time budget of ${(BUDGET_MS / 1000).toFixed(0)} s spent: stopped before run ${run + 1} of ${mix} on ${server}`);
          break runs;
        }
        try {
          const f = await measure(cli, ADDR[server], queries[mix], pids[server]);
          for (const [what, r] of [['', f], [` at ${LATENCY_QPS} q/s`, f.fixed]] as const) {
            const wrong = r === null ? '' : rcodesWrong(mix, r);
            if (wrong !== '') problems.push(`run ${run + 1}, ${mix} on ${server}${what}: ${wrong}`);
            if (wrong !== '' && server === 'tapir') wrongAnswers = true;
          }
          results.set(key(mix, server), [...(results.get(key(mix, server)) ?? []), f]);
          console.log(`run ${run + 1}/${RUNS} ${mix.padEnd(8)} ${server.padEnd(5)} ${f.qps.toFixed(0).padStart(7)} q/s, avg ${f.avgMs.toFixed(3)} ms, p99 ${f.p99Ms.toFixed(3)} ms, lost ${f.lost}, server CPU ${(f.cpu * 100).toFixed(0)}%${f.fixed === null ? '' : `; at ${LATENCY_QPS} q/s: avg ${f.fixed.avgMs.toFixed(3)} ms, p99 ${f.fixed.p99Ms.toFixed(3)} ms, lost ${f.fixed.lost}`}`);
        } catch (err) {
          problems.push(`run ${run + 1}, ${mix} on ${server}: ${(err as Error).message}`);
        }
      }
    }
  }
  if (SERVERS.length === 2) await compareAnswers(cli, 'after the runs, each asked twice (the second answer from the cache)');
  const unsaturated = [...results.entries()].filter(([, runs]) => median(runs.map((r) => r.cpu)) < 0.9).map(([k]) => k.replace('|', ' on '));
  if (unsaturated.length > 0) problems.push(`the server used less than 90% of its core in the saturated runs of ${unsaturated.join(', ')}: dnsperf or other processes on the machine (load average now ${loadavg().map((l) => l.toFixed(2)).join(' ')}) set the rate there, not the server; queries per server CPU second compares them better`);
  if (tapirProc !== null && tapirProc.child.exitCode !== null) problems.push(`tapir dns exited (${tapirProc.child.exitCode}) during the bench: ${tapirProc.output().slice(-3000)}`);
  report(results, key, memory);
}

function report(results: Map<string, RunFigure[]>, key: (mix: Mix, server: Server) => string, memory: Record<string, unknown>): void {
  const stat = (mix: Mix, server: Server, f: (r: RunFigure) => number): { median: number; min: number; max: number } => {
    const xs = (results.get(key(mix, server)) ?? []).map(f).filter(Number.isFinite);
    return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
  };
  type Metric = [string, (r: RunFigure) => number, (v: number) => string];
  const ms = (v: number): string => v.toFixed(3);
  const saturated: Metric[] = [
    ['queries/s', (r) => r.qps, (v) => v.toFixed(0)],
    ['avg ms', (r) => r.avgMs, ms],
    ['p50 ms', (r) => r.p50Ms, ms],
    ['p99 ms', (r) => r.p99Ms, ms],
    ['lost', (r) => r.lost, (v) => v.toFixed(0)],
    ['server CPU', (r) => r.cpu * 100, (v) => `${v.toFixed(0)}%`],
    ['queries/CPU-s', (r) => r.qps / r.cpu, (v) => v.toFixed(0)],
    ['response B', (r) => r.responseBytes, (v) => v.toFixed(0)],
  ];
  const fixed: Metric[] = [
    ['queries/s', (r) => r.fixed?.qps ?? NaN, (v) => v.toFixed(0)],
    ['avg ms', (r) => r.fixed?.avgMs ?? NaN, ms],
    ['p50 ms', (r) => r.fixed?.p50Ms ?? NaN, ms],
    ['p99 ms', (r) => r.fixed?.p99Ms ?? NaN, ms],
    ['lost', (r) => r.fixed?.lost ?? NaN, (v) => v.toFixed(0)],
  ];
  const noRatio = new Set(['lost', 'server CPU']);
  const cell = (st: { median: number; min: number; max: number }, fmt: (v: number) => string): string => (Number.isFinite(st.median) ? `${fmt(st.median)} (${fmt(st.min)}-${fmt(st.max)})` : '-');
  const json: Record<string, Record<string, unknown>> = Object.fromEntries(MIX_LIST.map((m) => [m, { runs: Object.fromEntries(SERVERS.map((sv) => [sv, results.get(key(m, sv)) ?? []])) }]));
  const table = (title: string, name: string, metrics: Metric[]): void => {
    console.log(`\n## ${title}`);
    console.log(`| mix | server | ${metrics.map((m) => m[0]).join(' | ')} |`);
    console.log(`|---|---|${metrics.map(() => '---').join('|')}|`);
    for (const mix of MIX_LIST) {
      const figures: Record<string, unknown> = {};
      for (const server of SERVERS) {
        console.log(`| ${mix} | ${server} | ${metrics.map(([, f, fmt]) => cell(stat(mix, server, f), fmt)).join(' | ')} |`);
        figures[server] = Object.fromEntries(metrics.map(([m, f]) => [m, stat(mix, server, f)]));
      }
      if (SERVERS.length === 2) {
        const ratio = (f: (r: RunFigure) => number): number => stat(mix, 'tapir', f).median / stat(mix, 'nsd', f).median;
        console.log(`| ${mix} | tapir/nsd | ${metrics.map(([m, f]) => (noRatio.has(m) || !Number.isFinite(ratio(f)) ? '' : `${ratio(f).toFixed(2)}x`)).join(' | ')} |`);
        figures['tapir/nsd'] = Object.fromEntries(metrics.filter(([m]) => !noRatio.has(m)).map(([m, f]) => [m, ratio(f)]));
      }
      json[mix]![name] = figures;
    }
  };
  table(`dnsperf, saturated: median (min-max) of ${RUNS} run(s) of ${SECONDS} s; dnsperf -c ${CLIENTS} -q ${OUTSTANDING} on CPU 0, the server on CPU 1 (2 cores shared with whatever else runs); for latencies a ratio above 1x means tapir is slower`, 'saturated', saturated);
  if (LATENCY_QPS > 0) table(`dnsperf at a fixed ${LATENCY_QPS} queries/s (-Q): the servers' latency below saturation, median (min-max) of ${RUNS} run(s) of ${SECONDS} s`, 'fixedRate', fixed);
  const tapirCluster = stat('cluster', 'tapir', (r) => r.qps).median;
  const nsdCluster = stat('cluster', 'nsd', (r) => r.qps).median;
  const tapirPerCpu = stat('cluster', 'tapir', (r) => r.qps / r.cpu).median;
  const nsdPerCpu = stat('cluster', 'nsd', (r) => r.qps / r.cpu).median;
  const x = (a: number, b: number): string => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}x` : '-');
  const verdict = (met: boolean, v: number): string => (!Number.isFinite(v) ? 'not measured' : met ? 'met' : 'missed');
  console.log(`\nCoreDNS reference (coredns/deployment kubernetes/Scaling_CoreDNS.md): 33,669 QPS for internal names with both vCPUs of an n1-standard-2 pegged = ${COREDNS_QPS_PER_VCPU.toFixed(0)} QPS per vCPU`);
  if (MIX_LIST.includes('cluster') && SERVERS.includes('tapir')) {
    if (wrongAnswers) console.log('NOT VALID: tapir dns gave wrong answers (see the problems), so its figures are not of the work NSD did');
    console.log(`targets, cluster names: tapir/NSD ${x(tapirCluster, nsdCluster)} (>= 1.0x: ${verdict(tapirCluster >= nsdCluster, tapirCluster / nsdCluster)}); tapir on one core / CoreDNS per vCPU ${x(tapirCluster, COREDNS_QPS_PER_VCPU)} (> 1x: ${verdict(tapirCluster > COREDNS_QPS_PER_VCPU, tapirCluster)})`);
    console.log(`  the same per server CPU second (what a shared machine does not blur): tapir ${tapirPerCpu.toFixed(0)} queries/CPU-s = ${x(tapirPerCpu, nsdPerCpu)} NSD's, ${x(tapirPerCpu, COREDNS_QPS_PER_VCPU)} CoreDNS's per vCPU`);
  }
  const endpoints = DATA.services * DATA.endpointsPerService;
  console.log(`\n## memory, ${DATA.services} Services with ${endpoints} endpoints`);
  const t = memory.tapir as { startMs: number; afterFirstSync: Memory; afterGc: Memory; heap: NodeJS.MemoryUsage | null } | undefined;
  const n = memory.nsd as (Memory & { largestRss: number }) | undefined;
  // RSS counts the pages a process shares (the node or nsd binary and libraries with every
  // other process running them; NSD's three processes share the zone data they forked
  // with), PSS divides each shared page among its sharers: the ratio is of PSS.
  if (t !== undefined) console.log(`tapir dns: serving ${(t.startMs / 1000).toFixed(1)} s after its start; after the first sync RSS ${mib(t.afterFirstSync.rss)} (PSS ${mib(t.afterFirstSync.pss)}); after a GC RSS ${mib(t.afterGc.rss)} (PSS ${mib(t.afterGc.pss)}), V8 heap used ${mib(t.heap?.heapUsed ?? NaN)} of ${mib(t.heap?.heapTotal ?? NaN)}, array buffers ${mib(t.heap?.arrayBuffers ?? NaN)}`);
  if (n !== undefined) console.log(`NSD with the same zones: PSS of its processes ${mib(n.pss)} (RSS summed ${mib(n.rss)}, of the largest ${mib(n.largestRss)})${t !== undefined ? `; tapir after GC / NSD, PSS: ${(t.afterGc.pss / n.pss).toFixed(2)}x` : ''}`);
  console.log(`CoreDNS's estimate (same page, default settings, a full cache included): (pods + services) * 0.000858 + 49.1 MB = ${corednsMemoryMB(endpoints + DATA.services).toFixed(0)} MB taking each endpoint as a pod`);
  if (problems.length > 0) {
    console.log('\nProblems:');
    for (const p of problems) console.log(`- ${p}`);
  }
  if (values.json !== undefined) {
    writeFileSync(values.json, `${JSON.stringify({
      date: new Date().toISOString(), options: { ...DATA, runs: RUNS, seconds: SECONDS, clients: CLIENTS, outstanding: OUTSTANDING, servers: SERVERS, mixes: MIX_LIST },
      mixes: json, memory, reference: { corednsQpsPerVcpu: COREDNS_QPS_PER_VCPU, corednsMemoryEstimateMB: corednsMemoryMB(endpoints + DATA.services), source: 'coredns/deployment kubernetes/Scaling_CoreDNS.md' },
      problems, tapirAnswersWrong: wrongAnswers,
    }, null, 2)}\n`);
    console.log(`\nJSON written to ${values.json}`);
  }
}

try {
  await main();
} catch (err) {
  console.error(`bench/dns.ts: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  cleanup();
}

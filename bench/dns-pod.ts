// Cluster DNS as a pod sees it (issue 10, "Figures": "dnsperf from a pod against Tapir
// and against a C authoritative server (NSD) serving the same records, each given one
// core"). bench/dns.ts measures the servers in bare namespaces; here the queries leave a
// lab pod and cross the node's data plane:
//
//   node bench/dns-pod.ts [--services 1000] [--endpoints 1] [--runs 3] [--seconds 5] [--clients 4]
//                         [--outstanding 100] [--cases tapir,nsd,kernel-dns] [--mixes cluster,search] [--json FILE]
//   the big run: --services 10000 --endpoints 10
//
// Two labs of one node, one after the other, each with a pod `perf` (dnsperf, pinned to
// CPU 0) and the N Services of bench/lib/dns-data.ts (selectorless, with EndpointSlices)
// applied with `tapir lab apply -f` (--source manifests):
//   tapir:      Tapir data plane lab (bdp-t-<tag>); perf -> 10.96.0.10, answered by the
//               node's agent in its data path (Datapath.setLocalUdpService) from the zone.
//               The agent (every thread) pinned to CPU 1. The agent's
//               tapir_dns_datapath_queries_total{result} before and after each run shows
//               where the answers came from (answered in place vs passed to the socket).
//   nsd:        kernel data plane lab (bdp-k-<tag>, --proxy-mode iptables): perf -> a pod
//               `nsd` on the same node running NSD (pinned to CPU 1) with the zone files
//               holding the same records (bench/lib/dns-data.ts); the kernel's veth and
//               bridge forward between the pods.
//   kernel-dns: the same kernel lab, perf -> 10.96.0.10, which iptables DNATs to the
//               node's `tapir dns` (the CoreDNS-style deployment of
//               src/lab/network/kernel-dns.ts), pinned to CPU 1.
// In the kernel lab the runs of nsd and kernel-dns alternate, so drift of this shared
// machine hits both alike; the tapir lab's runs come before them (two labs up at once
// would put an idle agent beside the kernel figures).
//
// Mixes (dnsperf -d, each file played once before every measured run): `cluster`, the A
// record of every Service by its FQDN; `search`, the same names as a ClusterFirst pod's
// resolver sends them with ndots:5 (3 NXDOMAIN search-path misses, then the hit).
// Per case and mix: queries/s, average and p99 latency (dnsperf -v lines), lost queries,
// the answering process's CPU (from /proc/PID/stat over dnsperf's run time), queries per
// CPU-second, the response codes (which must be a correct server's), and the ratios
// against NSD; CoreDNS's published 16.8k QPS per vCPU as the reference. Before the runs
// 20 names of each mix are asked with dig and the answers compared with the records
// the data says (a wrong answer marks the figures NOT VALID: dnsperf checks no record).
// Memory: RSS of the agent (and of the kernel lab's tapir dns) with the N Services.
// What the answering CPU holds differs by data plane: the agent reads and writes the
// pod's TAP itself, so its figure includes moving the packets; NSD and tapir dns are
// charged the kernel's work on their replies (softirq run inline in their sendmsg is
// their system time under tick accounting), while the queries' forwarding over veth and
// bridge is charged to dnsperf on CPU 0 (which makes the kernel lab's dnsperf slower).
// Queries per CPU-second of the answering process is the comparison; queries/s on a
// 2-core machine is partly dnsperf's.
//
// Needs root. Everything lives in the labs' namespaces; each lab is taken down at its
// end, on failure and on Ctrl-C; every step is bounded in time.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { availableParallelism, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { clusterIP, expectedRcodes, queryLines, serviceFqdn, serviceNamespace, writeManifests, writeQueries, writeZones, type DnsData, type Mix } from './lib/dns-data.ts';
import { parseSummary, verboseLatencies, type DnsperfResult } from './lib/dnsperf.ts';
import { memoryOf, writeNsdConfig } from './lib/dns-servers.ts';
import { BenchLab, downLabsOnSignal, run, runOk, sleep, TAPIR, type Background } from './lib/lab.ts';
import { cpuSeconds, median } from './lib/tools.ts';

const { values } = parseArgs({ options: {
  services: { type: 'string', default: '1000' },
  endpoints: { type: 'string', default: '1' },
  runs: { type: 'string', default: '3' },
  seconds: { type: 'string', default: '5' },
  clients: { type: 'string', default: '4' },
  outstanding: { type: 'string', default: '100' },
  cases: { type: 'string', default: 'tapir,nsd,kernel-dns' },
  mixes: { type: 'string', default: 'cluster,search' },
  json: { type: 'string' },
} });
type Case = 'tapir' | 'nsd' | 'kernel-dns';
const CASES: Case[] = ['tapir', 'nsd', 'kernel-dns'];
const DATA: DnsData = { services: Number(values.services), endpointsPerService: Number(values.endpoints), externalNames: 1, ttl: 30 };
const RUNS = Number(values.runs), SECONDS = Number(values.seconds), CLIENTS = Number(values.clients), OUTSTANDING = Number(values.outstanding);
const CASE_LIST = values.cases.split(',') as Case[];
const MIX_LIST = values.mixes.split(',') as Mix[];
const int = (n: number, lo: number, hi: number): boolean => Number.isInteger(n) && n >= lo && n <= hi;
if (!int(DATA.services, 1, 20000) || !int(DATA.endpointsPerService, 0, 20) || !int(RUNS, 1, 20) || !int(SECONDS, 1, 120) || !int(CLIENTS, 1, 64)
  || !int(OUTSTANDING, 1, 10000) || !CASE_LIST.every((c) => CASES.includes(c)) || !MIX_LIST.every((m) => m === 'cluster' || m === 'search')) {
  console.error('usage: node bench/dns-pod.ts [--services 1000 (1-20000)] [--endpoints 1 (0-20)] [--runs 3] [--seconds 5] [--clients 4] [--outstanding 100] [--cases tapir,nsd,kernel-dns] [--mixes cluster,search] [--json FILE]');
  process.exit(2);
}

const CLUSTER_DNS = '10.96.0.10';
/** coredns/deployment kubernetes/Scaling_CoreDNS.md: 33,669 QPS internal names, 2 vCPUs pegged. */
const COREDNS_QPS_PER_VCPU = 33669 / 2;
const METRICS = 'http://127.0.0.1:10249/metrics';
const tag = randomBytes(2).toString('hex');
const problems: string[] = [];
let wrongAnswers = false;
let work = '';
const cleanupWork = (): void => { if (work !== '') rmSync(work, { recursive: true, force: true }); };
downLabsOnSignal(cleanupWork);

interface StatusJson {
  nodes: { name: string; netns: string; agent: { pid: number | null } | null }[];
  pods: { name: string; netns: string; ip: string | null }[];
}

/** One measured run: dnsperf's figures, the answering process's CPU share, and (tapir) the data path's answer counts. */
type Figure = DnsperfResult & { cpu: number; datapath: { answered: number; passed: number } | null };

const lab = {
  status: async (l: BenchLab): Promise<StatusJson> => JSON.parse(await runOk([TAPIR, 'lab', 'status', '--name', l.name, '--json'], 60_000)) as StatusJson,
  netnsExec: (netns: string, argv: string[], timeoutMs: number) => run(['ip', 'netns', 'exec', netns, ...argv], timeoutMs),
};

/** dig from the perf pod: the rcode and the answer records without TTL, as bench/dns.ts compares them. */
async function ask(l: BenchLab, server: string, name: string): Promise<string> {
  const r = await run([TAPIR, 'lab', 'exec', '--name', l.name, 'perf', '--', 'dig', `@${server}`, '+tries=1', '+time=2', '+noall', '+comments', '+answer', name, 'A'], 20_000);
  const status = /status: ([A-Z]+)/.exec(r.stdout)?.[1] ?? 'no answer';
  const answers = r.stdout.split('\n').filter((line) => line.trim() !== '' && !line.startsWith(';')).map((line) => {
    const [owner, , cls, rtype, ...rdata] = line.trim().split(/\s+/);
    return `${owner!.toLowerCase()} ${cls} ${rtype} ${rdata.join(' ')}`;
  }).sort();
  return [status, ...answers].join(' | ');
}

/** What a correct server answers for a line of a query file: the Service's A record, or NXDOMAIN for a search-path miss. */
function expectedAnswer(name: string): string {
  const m = /^svc-(\d+)\.ns-\d+\.svc\.cluster\.local$/.exec(name);
  return m === null ? 'NXDOMAIN' : `NOERROR | ${name}. IN A ${clusterIP(Number(m[1]))}`;
}

/** Until the last Service's name resolves (the sync has all N), at most timeoutMs. */
async function waitForServices(l: BenchLab, server: string, timeoutMs: number): Promise<number> {
  const t = performance.now(), last = serviceFqdn(DATA.services - 1);
  for (;;) {
    if ((await ask(l, server, last)) === expectedAnswer(last)) return performance.now() - t;
    if (performance.now() - t > timeoutMs) throw new Error(`${server} in lab ${l.name} does not answer ${last} after ${timeoutMs / 1000} s`);
    await sleep(500);
  }
}

async function compareAnswers(l: BenchLab, server: string, what: Case): Promise<void> {
  let different = 0, asked = 0;
  for (const mix of MIX_LIST) {
    for (const line of queryLines(mix, DATA).slice(0, 20)) {
      const name = line.split(' ')[0]!;
      const [got, want] = [await ask(l, server, name), expectedAnswer(name)];
      asked++;
      if (got === want) continue;
      different++;
      wrongAnswers = true;
      problems.push(`${what}, ${mix}: ${name} A: expected "${want}", got "${got}"`);
    }
  }
  console.log(`${what}: ${asked} sample answers ${different === 0 ? 'as the records say' : `WRONG in ${different} (see the problems)`}`);
}

/** The agent's tapir_dns_datapath_queries_total, read from the node's namespace. */
async function datapathCounts(netns: string): Promise<{ answered: number; passed: number }> {
  const r = await lab.netnsExec(netns, ['curl', '-sS', '--max-time', '5', METRICS], 15_000);
  const count = (result: string): number => Number(new RegExp(`^tapir_dns_datapath_queries_total\\{result="${result}"\\} (\\d+)`, 'm').exec(r.stdout)?.[1] ?? NaN);
  return { answered: count('answered'), passed: count('passed') };
}

/** Pins every thread of the processes to CPU 1 (libuv's and V8's threads too). */
function pin(pids: number[]): void {
  for (const pid of pids) execFileSync('taskset', ['-a', '-pc', '1', String(pid)], { stdio: 'ignore' });
}

/** Processes in `netns` whose command line has every one of `words` as an argument. */
function pidsIn(netns: string, words: string[]): number[] {
  return netnsPids(netns).filter((pid) => {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
      return words.every((w) => argv.includes(w));
    } catch { return false; }
  });
}

/** Processes in `netns` whose name (comm) starts with `comm`: NSD's are "nsd: main", "nsd: server 1", "nsd: xfrd" (not the `timeout` around them). */
function pidsNamed(netns: string, comm: string): number[] {
  return netnsPids(netns).filter((pid) => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith(comm); } catch { return false; } });
}

function netnsPids(netns: string): number[] {
  return execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
}

/** A warm-up pass through the file, then a measured run; the answering processes' CPU over dnsperf's run time. */
async function measure(l: BenchLab, server: string, file: string, answerers: number[], nodeNetns: string | null): Promise<Figure> {
  const out = join(work, `dnsperf-${l.name}.out`);
  const dnsperf = (extra: string): string => `taskset -c 0 dnsperf -s ${server} -d ${file} -c ${CLIENTS} -q ${OUTSTANDING} -t 2 ${extra} > ${out} 2>&1`;
  const inPod = (cmd: string, timeoutMs: number) => run([TAPIR, 'lab', 'exec', '--name', l.name, 'perf', '--', 'sh', '-c', cmd], timeoutMs);
  const warm = await inPod(dnsperf('-n 1 -l 60'), 90_000);
  if (warm.code !== 0) throw new Error(`dnsperf warm-up against ${server}: ${warm.timedOut ? 'timed out' : readFileSync(out, 'latin1').slice(-800)}`);
  const before = nodeNetns === null ? null : await datapathCounts(nodeNetns);
  const c0 = answerers.reduce((s, p) => s + cpuSeconds(p), 0);
  const r = await inPod(dnsperf(`-l ${SECONDS} -v`), (SECONDS + 60) * 1000);
  const c1 = answerers.reduce((s, p) => s + cpuSeconds(p), 0);
  const after = nodeNetns === null ? null : await datapathCounts(nodeNetns);
  const text = readFileSync(out, 'latin1');
  if (r.code !== 0) throw new Error(`dnsperf against ${server}: ${r.timedOut ? 'timed out' : text.slice(-800)}`);
  const summary = parseSummary(text.slice(text.lastIndexOf('Statistics:')));
  const lat = verboseLatencies(out);
  return {
    ...summary, p50Ms: lat.p50Ms, p99Ms: lat.p99Ms,
    // The processes' CPU between the two reads (dnsperf's start and end in the pod are
    // outside its run time, but nothing asks the server then).
    cpu: (c1 - c0) / summary.runSeconds,
    datapath: before === null || after === null ? null : { answered: after.answered - before.answered, passed: after.passed - before.passed },
  };
}

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

const results = new Map<string, Figure[]>();
const memory: Record<string, { rssMiB: number; pid: number }> = {};
const mib = (bytes: number): number => bytes / 1048576;

/** Brings a lab up with the perf pod (and the nsd pod), applies the Services, runs `cases` alternating, takes it down. */
async function labRuns(dataplane: 'tapir' | 'kernel', cases: Case[], queries: Record<Mix, string>, servicesFile: string, zones: { zone: string; file: string }[]): Promise<void> {
  const topology = join(work, `topology-${dataplane}.yaml`);
  writeFileSync(topology, `nodes:\n  - name: node-1\n    pods:\n      - { name: perf, workload: none }\n${cases.includes('nsd') ? '      - { name: nsd, workload: none }\n' : ''}client: null\n`);
  const l = new BenchLab(dataplane, dataplane === 'kernel' ? 'iptables' : undefined, { name: `bdp-${dataplane[0]}-${tag}`, topology, source: 'manifests' });
  let nsd: Background | null = null;
  try {
    let t = performance.now();
    await l.up(300_000);
    console.log(`lab ${l.name} (${dataplane}${dataplane === 'kernel' ? ', iptables' : ''}) up in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    t = performance.now();
    const applied = await l.apply(servicesFile, 120_000 + DATA.services * 60);
    if (applied.code !== 0) throw new Error(`lab apply of ${DATA.services} Services: ${applied.timedOut ? 'timed out' : applied.stderr.trim().slice(-1500)}`);
    const applyMs = performance.now() - t;
    const status = await lab.status(l);
    const node = status.nodes[0]!;
    const servers: Partial<Record<Case, { address: string; pids: number[]; nodeNetns: string | null }>> = {};
    if (cases.includes('tapir')) {
      const pid = node.agent?.pid ?? 0;
      if (pid <= 0) throw new Error(`lab ${l.name}: no agent pid in lab status`);
      servers.tapir = { address: CLUSTER_DNS, pids: [pid], nodeNetns: node.netns };
    }
    if (cases.includes('kernel-dns')) {
      const pids = pidsIn(node.netns, ['dns', '--corefile']);
      if (pids.length === 0) throw new Error(`lab ${l.name}: no tapir dns process in ${node.netns}`);
      servers['kernel-dns'] = { address: CLUSTER_DNS, pids, nodeNetns: null };
    }
    const synced = await waitForServices(l, CLUSTER_DNS, 120_000 + DATA.services * 30);
    console.log(`${DATA.services} Services applied in ${(applyMs / 1000).toFixed(1)} s; ${serviceFqdn(DATA.services - 1)} answered on ${CLUSTER_DNS} ${(synced / 1000).toFixed(1)} s after`);
    for (const [c, s] of Object.entries(servers)) {
      const rss = memoryOf(s.pids).rss;
      memory[c === 'tapir' ? 'agent' : 'kernel tapir dns'] = { rssMiB: mib(rss), pid: s.pids[0]! };
      console.log(`${c === 'tapir' ? 'agent' : 'tapir dns'} (pid ${s.pids.join(', ')}): RSS ${mib(rss).toFixed(1)} MiB with ${DATA.services} Services, ${DATA.services * DATA.endpointsPerService} endpoints`);
    }
    if (cases.includes('nsd')) {
      const pod = status.pods.find((p) => p.name === 'nsd');
      if (pod?.ip == null) throw new Error(`lab ${l.name}: the nsd pod has no address`);
      const conf = writeNsdConfig(work, 'nsd', pod.ip, join(work, 'zones'), zones);
      nsd = l.background('nsd', RUNS * MIX_LIST.length * cases.length * (SECONDS + 120) + 600, ['taskset', '-c', '1', 'nsd', '-d', '-c', conf]);
      const last = serviceFqdn(DATA.services - 1);
      for (let deadline = performance.now() + 120_000; (await ask(l, pod.ip, last)) !== expectedAnswer(last);) {
        if (performance.now() > deadline) throw new Error(`NSD in pod nsd does not answer ${last}: ${nsd.output().slice(-1500)}`);
        await sleep(500);
      }
      const pids = pidsNamed(pod.netns, 'nsd');
      servers.nsd = { address: pod.ip, pids, nodeNetns: null };
      memory.nsd = { rssMiB: mib(memoryOf(pids).rss), pid: pids[0]! };
      console.log(`NSD in pod nsd (${pod.ip}, pids ${pids.join(', ')}) answering`);
    }
    for (const c of cases) {
      pin(servers[c]!.pids);
      await compareAnswers(l, servers[c]!.address, c);
    }
    for (let run = 0; run < RUNS; run++) {
      for (const mix of MIX_LIST) {
        for (const c of cases) {
          const s = servers[c]!;
          const f = await measure(l, s.address, queries[mix], s.pids, s.nodeNetns);
          const wrong = rcodesWrong(mix, f);
          if (wrong !== '') { problems.push(`run ${run + 1}, ${mix} on ${c}: ${wrong}`); wrongAnswers = true; }
          if (f.datapath !== null && f.datapath.answered < f.completed) problems.push(`run ${run + 1}, ${mix} on ${c}: the data path answered ${f.datapath.answered} of ${f.completed} queries (passed ${f.datapath.passed})`);
          results.set(`${c}|${mix}`, [...(results.get(`${c}|${mix}`) ?? []), f]);
          console.log(`run ${run + 1}/${RUNS} ${mix.padEnd(7)} ${c.padEnd(10)} ${f.qps.toFixed(0).padStart(7)} q/s, avg ${f.avgMs.toFixed(3)} ms, p99 ${f.p99Ms.toFixed(3)} ms, lost ${f.lost}, answering CPU ${(f.cpu * 100).toFixed(0)}%${f.datapath === null ? '' : `, data path answered ${f.datapath.answered} passed ${f.datapath.passed}`}`);
        }
      }
    }
  } finally {
    if (nsd !== null) await nsd.stop(100);
    await l.down();
  }
}

function report(machine: Record<string, unknown>): void {
  type Metric = [string, (r: Figure) => number, (v: number) => string];
  const ms = (v: number): string => v.toFixed(3);
  const metrics: Metric[] = [
    ['queries/s', (r) => r.qps, (v) => v.toFixed(0)],
    ['avg ms', (r) => r.avgMs, ms],
    ['p99 ms', (r) => r.p99Ms, ms],
    ['lost', (r) => r.lost, (v) => v.toFixed(0)],
    ['answering CPU', (r) => r.cpu * 100, (v) => `${v.toFixed(0)}%`],
    ['queries/CPU-s', (r) => r.qps / r.cpu, (v) => v.toFixed(0)],
  ];
  const stat = (c: Case, mix: Mix, f: (r: Figure) => number): { median: number; min: number; max: number } => {
    const xs = (results.get(`${c}|${mix}`) ?? []).map(f).filter(Number.isFinite);
    return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
  };
  const cell = (s: { median: number; min: number; max: number }, fmt: (v: number) => string): string => (Number.isFinite(s.median) ? `${fmt(s.median)} (${fmt(s.min)}-${fmt(s.max)})` : '-');
  const json: Record<string, unknown> = {};
  console.log(`\n## dnsperf from a pod (-c ${CLIENTS} -q ${OUTSTANDING}, CPU 0), the answering process on CPU 1: median (min-max) of ${RUNS} run(s) of ${SECONDS} s, ${DATA.services} Services`);
  console.log(`| mix | case | ${metrics.map((m) => m[0]).join(' | ')} |`);
  console.log(`|---|---|${metrics.map(() => '---').join('|')}|`);
  for (const mix of MIX_LIST) {
    const figures: Record<string, unknown> = {};
    for (const c of CASE_LIST) {
      console.log(`| ${mix} | ${c} | ${metrics.map(([, f, fmt]) => cell(stat(c, mix, f), fmt)).join(' | ')} |`);
      figures[c] = { ...Object.fromEntries(metrics.map(([m, f]) => [m, stat(c, mix, f)])), runs: results.get(`${c}|${mix}`) ?? [] };
    }
    if (CASE_LIST.includes('nsd')) {
      for (const c of CASE_LIST.filter((x) => x !== 'nsd')) {
        const ratio = (f: (r: Figure) => number): number => stat(c, mix, f).median / stat('nsd', mix, f).median;
        console.log(`| ${mix} | ${c}/nsd | ${metrics.map(([m, f]) => (m === 'lost' || m === 'answering CPU' || !Number.isFinite(ratio(f)) ? '' : `${ratio(f).toFixed(2)}x`)).join(' | ')} |`);
        figures[`${c}/nsd`] = Object.fromEntries(metrics.filter(([m]) => m !== 'lost' && m !== 'answering CPU').map(([m, f]) => [m, ratio(f)]));
      }
    }
    json[mix] = figures;
  }
  const dp = (results.get('tapir|cluster') ?? []).concat(results.get('tapir|search') ?? []).map((r) => r.datapath).filter((d) => d !== null);
  if (dp.length > 0) {
    const answered = dp.reduce((s, d) => s + d.answered, 0), passed = dp.reduce((s, d) => s + d.passed, 0);
    console.log(`\ntapir: tapir_dns_datapath_queries_total over the measured runs: answered ${answered}, passed ${passed} (the data path answered ${((answered / Math.max(1, answered + passed)) * 100).toFixed(1)}% of the pods' UDP queries itself)`);
  }
  console.log(`CoreDNS reference (coredns/deployment kubernetes/Scaling_CoreDNS.md): 33,669 QPS for internal names with both vCPUs of an n1-standard-2 pegged = ${COREDNS_QPS_PER_VCPU.toFixed(0)} QPS per vCPU`);
  if (MIX_LIST.includes('cluster')) for (const c of CASE_LIST) {
    const perCpu = stat(c, 'cluster', (r) => r.qps / r.cpu).median;
    if (Number.isFinite(perCpu)) console.log(`  cluster names, ${c}: ${stat(c, 'cluster', (r) => r.qps).median.toFixed(0)} q/s, ${perCpu.toFixed(0)} queries per CPU-second of the answering process = ${(perCpu / COREDNS_QPS_PER_VCPU).toFixed(2)}x CoreDNS's per vCPU`);
  }
  if (wrongAnswers) console.log('NOT VALID: wrong answers or response codes (see the problems)');
  console.log(`\n## memory with ${DATA.services} Services, ${DATA.services * DATA.endpointsPerService} endpoints (RSS after the sync)`);
  for (const [who, m] of Object.entries(memory)) console.log(`${who} (pid ${m.pid}): ${m.rssMiB.toFixed(1)} MiB${who === 'nsd' ? ' (summed over its processes, shared pages counted in each)' : ''}`);
  const end = { loadavg: loadavg().map((x) => Number(x.toFixed(2))), at: new Date().toISOString() };
  console.log(`\nload average at the end ${end.loadavg.join(' ')} (${end.at})`);
  if (problems.length > 0) {
    console.log('\nProblems:');
    for (const p of problems) console.log(`- ${p}`);
  }
  if (values.json !== undefined) {
    writeFileSync(values.json, `${JSON.stringify({
      machine: { ...machine, end }, options: { ...DATA, runs: RUNS, seconds: SECONDS, clients: CLIENTS, outstanding: OUTSTANDING, cases: CASE_LIST, mixes: MIX_LIST },
      mixes: json, memory, reference: { corednsQpsPerVcpu: COREDNS_QPS_PER_VCPU, source: 'coredns/deployment kubernetes/Scaling_CoreDNS.md' }, problems, notValid: wrongAnswers,
    }, null, 2)}\n`);
    console.log(`\nJSON written to ${values.json}`);
  }
}

async function main(): Promise<void> {
  for (const tool of ['nsd', 'dnsperf', 'dig', 'taskset', 'curl']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { throw new Error(`${tool} is not installed (scripts/setup.sh installs nsd, dnsperf and dig)`); }
  }
  work = mkdtempSync(join(tmpdir(), 'tapir-bench-dns-pod-'));
  writeManifests(join(work, 'manifests'), DATA);
  // The lab has its own kubernetes and kube-dns Services (cluster.yaml is for tapir dns alone).
  const servicesFile = join(work, 'services.yaml');
  // The lab checks that a namespace exists: dns-data spreads the Services over ns-0..ns-9.
  const namespaces = [...new Set(Array.from({ length: Math.min(DATA.services, 10) }, (_, i) => serviceNamespace(i)))].map((ns) => `apiVersion: v1\nkind: Namespace\nmetadata: { name: ${ns} }\n`);
  writeFileSync(servicesFile, [...namespaces, ...readdirSync(join(work, 'manifests')).filter((f) => f.startsWith('services-')).sort().map((f) => readFileSync(join(work, 'manifests', f), 'utf8'))].join('---\n'));
  const zones = writeZones(join(work, 'zones'), DATA).filter((z) => z.zone !== 'example.test');
  const queries = writeQueries(join(work, 'queries'), DATA);
  const machine = { cores: availableParallelism(), kernel: release(), loadavg: loadavg().map((x) => Number(x.toFixed(2))), at: new Date().toISOString() };
  console.log(`# cluster DNS from a pod: ${CASE_LIST.join(', ')} (${machine.at}; ${machine.cores} CPUs, kernel ${machine.kernel}, load average ${machine.loadavg.join(' ')})`);
  console.log(`${DATA.services} Services (${DATA.services * DATA.endpointsPerService} endpoints); files in ${work}`);
  const tapirCases = CASE_LIST.filter((c) => c === 'tapir'), kernelCases = CASE_LIST.filter((c) => c !== 'tapir');
  for (const [dataplane, cases] of [['tapir', tapirCases], ['kernel', kernelCases]] as const) {
    if (cases.length === 0) continue;
    try {
      await labRuns(dataplane, cases, queries, servicesFile, zones);
    } catch (err) {
      problems.push(`${dataplane} lab: ${(err as Error).message}`);
      console.error(`${dataplane} lab: ${(err as Error).message}`);
    }
  }
  report(machine);
}

try {
  await main();
} catch (err) {
  console.error(`bench/dns-pod.ts: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  cleanupWork();
}

// Service proxy modes compared on one lab topology, in one run (issue 4, "Benchmark"):
// the Tapir agents' TypeScript service proxy (--dataplane tapir) against the kernel
// rules the lab generates from the same compiled service tables the way kube-proxy's
// iptables and nftables modes write them (--dataplane kernel --proxy-mode …).
//
// 1. Pod -> ClusterIP -> pod, client web-1a: TCP Gbit/s (iperf3, one stream), UDP
//    64-byte packets/s received, TCP connections/s, HTTP request latency p50/p99 (one
//    connection per request). Two services: endpoints on both nodes (perf-1 on node-1,
//    perf-2 on node-2), and a single endpoint on the other node (perf-2). The iperf3
//    service has ClientIP affinity: iperf3 opens a control and a data connection, which
//    must reach the same server.
// 2. With N selectorless Services (+ EndpointSlices to web-2a and web-2b) for each
//    --services size, in a lab of their own after the first: time to program them all,
//    time to apply one endpoint change, first-packet (connect) latency to services
//    nothing has used yet. See bench/lib/service-scale.ts for what each figure spans.
//
// 3. IPv6 (--sections ipv6): the paths of 1. in a dual-stack lab (--ip-family dual) to
//    IPv6-only Services over the same pods: TCP Gbit/s and connections/s to the IPv6
//    cluster IP, for every mode in the same invocation (the kernel modes through
//    kube-proxy's IPv6 proxier: ip6tables, `table ip6`; Tapir through its NAT66). A row
//    whose service does not answer over IPv6 prints "n/a (why)" and the bench goes on.
//
// Mode tapir-busy-poll is Tapir with its agents busy-polling --busy-poll microseconds
// (default 200) after traffic (busyPollMicros), compared with the kernel modes as tapir is.
//
// --cpus LIST (taskset's list, e.g. 0) pins the bench and all it starts (labs, agents,
// pods' workloads, load tools) to those CPUs: with --cpus 0 no wakeup crosses CPUs, in
// any mode (what that removes: bench/lab.ts, bench/device.ts).
//
// The labs run one after the other (2 cores: never two at once); every step is bounded
// in time and a step that does not finish prints "-" with the reason below the tables.
// Every lab is taken down at the end, on error and on Ctrl-C.
//
//   node bench/proxy-modes.ts [--seconds 3] [--runs 1] [--services 1000,10000] [--busy-poll 200]
//        [--modes iptables,nftables,tapir,tapir-busy-poll] [--sections traffic,ipv6,scale] [--program-timeout 120] [--cpus LIST] [--json FILE]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAX_BUSY_POLL_MICROS } from '../src/device/busy-poll.ts';
import { BenchLab, checkInterrupted, downLabsOnSignal, type ProxyMode } from './lib/lab.ts';
import { connectionRate, httpLatency, tcpThroughput, udpRate, type Figure } from './lib/load.ts';
import { firstConnects, freeClusterIPs, scaleServiceName, settle, sliceManifestFile, timeChange, writeScaleManifest, writeSliceManifest, type ChangeTiming } from './lib/service-scale.ts';
import { printTables, type Results } from './lib/proxy-modes-report.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { buildCTools, pinToCpus } from './lib/tools.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '1' },
    services: { type: 'string', default: '1000,10000' },
    modes: { type: 'string', default: 'iptables,nftables,tapir' },
    sections: { type: 'string', default: 'traffic,ipv6,scale' },
    'program-timeout': { type: 'string', default: '120' },
    'busy-poll': { type: 'string', default: '200' },
    cpus: { type: 'string' },
    json: { type: 'string' },
  },
});
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);
const SIZES = values.services.split(',').filter((s) => s !== '').map(Number).sort((a, b) => a - b);
/** The proxy modes, and Tapir with its agents busy-polling (tapir-busy-poll, --busy-poll US). */
type Mode = ProxyMode | 'tapir-busy-poll';
const MODES = values.modes.split(',') as Mode[];
const BUSY_POLL = Number(values['busy-poll']);
const SECTIONS = new Set(values.sections.split(','));
const PROGRAM_TIMEOUT_S = Number(values['program-timeout']);
// A proxy that has not applied one endpoint change after 45 s is reported as such;
// settling (node daemons caught up) is only waited for so that one step's work does
// not spill into the next one's figures.
const CHANGE_TIMEOUT_S = 45;
const SETTLE_TIMEOUT_MS = 30_000;
const FIRST_PACKET_SERVICES = 30;
const CLIENT = 'web-1a';
/** With --cpus: the CPUs everything runs on, as the kernel took the list. */
const PINNED = values.cpus === undefined ? undefined : pinToCpus(values.cpus);
const PINNED_SUFFIX = PINNED === undefined ? '' : `, all on CPU ${PINNED}`;

if (![SECONDS, RUNS, PROGRAM_TIMEOUT_S, ...SIZES].every((x) => Number.isFinite(x) && x > 0) || !MODES.every((m) => ['tapir', 'iptables', 'nftables', 'tapir-busy-poll'].includes(m))
  || !(Number.isInteger(BUSY_POLL) && BUSY_POLL >= 1 && BUSY_POLL <= MAX_BUSY_POLL_MICROS)) {
  console.error(`usage: node bench/proxy-modes.ts [--seconds 3] [--runs 1] [--services 1000,10000] [--modes iptables,nftables,tapir,tapir-busy-poll] [--sections traffic,ipv6,scale] [--program-timeout 120] [--busy-poll 1..${MAX_BUSY_POLL_MICROS}] [--cpus LIST]`);
  process.exit(2);
}

// perf-1 and perf-2 serve HTTP on 8080 (the built-in echo, which also makes them Ready);
// the other servers are started in them for each test, on the services' target ports.
const BENCH_PODS = `${['node-1', 'node-2'].map((node, i) => `apiVersion: v1
kind: Pod
metadata: { name: perf-${i + 1}, labels: { bench: proxy-modes, bench-node: ${node} } }
spec:
  nodeName: ${node}
  containers: [{ name: echo, ports: [{ name: http, containerPort: 8080 }] }]
`).join('---\n')}`;

/** The bench Services; `suffix` "6" with `ipFamilies` [IPv6]: the IPv6-only ones of the ipv6 section. */
const benchServices = (suffix: string, families: string): string => `apiVersion: v1
kind: Service
metadata: { name: bench-both${suffix} }
spec:${families}
  selector: { bench: proxy-modes }
  ports:
    - { name: http, port: 80, targetPort: 8080 }
    - { name: conn, port: 7000, targetPort: 7000 }
    - { name: udp, port: 6000, protocol: UDP, targetPort: 6000 }
---
apiVersion: v1
kind: Service
metadata: { name: bench-both${suffix}-iperf }
spec:${families}
  selector: { bench: proxy-modes }
  sessionAffinity: ClientIP
  ports: [{ name: iperf, port: 5201, targetPort: 5201 }]
---
apiVersion: v1
kind: Service
metadata: { name: bench-remote${suffix} }
spec:${families}
  selector: { bench-node: node-2 }
  ports:
    - { name: http, port: 80, targetPort: 8080 }
    - { name: conn, port: 7000, targetPort: 7000 }
    - { name: udp, port: 6000, protocol: UDP, targetPort: 6000 }
    - { name: iperf, port: 5201, targetPort: 5201 }
`;
const BENCH_MANIFEST = `${BENCH_PODS}---\n${benchServices('', '')}`;
const BENCH_MANIFEST6 = `${BENCH_PODS}---\n${benchServices('6', '\n  ipFamilies: [IPv6]')}`;

const PATHS = {
  'both nodes (2 endpoints)': { service: 'bench-both', iperfService: 'bench-both-iperf', servers: ['perf-1', 'perf-2'] },
  'other node (1 endpoint)': { service: 'bench-remote', iperfService: 'bench-remote', servers: ['perf-2'] },
} as const;
type PathName = keyof typeof PATHS;
/** The IPv6 section's rows: the same paths to the IPv6-only Services. */
const PATHS6 = {
  'IPv6: both nodes (2 endpoints)': { service: 'bench-both6', iperfService: 'bench-both6-iperf', servers: ['perf-1', 'perf-2'] },
  'IPv6: other node (1 endpoint)': { service: 'bench-remote6', iperfService: 'bench-remote6', servers: ['perf-2'] },
} as const;
/** How long an IPv6 cluster IP may take to answer after the apply before its rows are n/a. */
const IPV6_ANSWER_TIMEOUT_MS = 30_000;

const STARTED = Date.now();
const LOAD_AT_START = loadavg();
/** Progress on stderr, each line with the seconds since the start. */
function progress(line: string): void {
  process.stderr.write(`[${((Date.now() - STARTED) / 1000).toFixed(1).padStart(6)}] ${line}`);
}

const results: Results = { values: new Map(), notes: new Map(), errors: new Map(), problems: [] };
function record(key: string, value: number, note = ''): void {
  results.values.set(key, [...(results.values.get(key) ?? []), value]);
  if (note !== '') results.notes.set(key, [...(results.notes.get(key) ?? []), note]);
}
function problem(mode: Mode, step: string, err: unknown): void {
  const message = `${mode}: ${step}: ${(err as Error).message ?? String(err)}`;
  results.problems.push(message);
  progress(`  ! ${message}\n`);
}

async function traffic(lab: BenchLab, mode: Mode, work: string): Promise<void> {
  const applied = await lab.apply(join(work, 'bench.yaml'), 90_000);
  if (applied.code !== 0) throw new Error(`lab apply of the bench pods and services: ${applied.stderr.trim()}`);
  await lab.refresh();
  progress(`${mode}: pods perf-1, perf-2 and the bench services applied\n`);
  for (const [path, p] of Object.entries(PATHS) as [PathName, (typeof PATHS)[PathName]][]) {
    const ip = lab.serviceIPs.get(p.service)!, iperfIP = lab.serviceIPs.get(p.iperfService)!;
    const servers = [...p.servers];
    const steps: [string, () => Promise<Figure>][] = [
      ['tcp', () => tcpThroughput(lab, CLIENT, servers, { ip: iperfIP, port: 5201 }, 5201, SECONDS)],
      ['udp', () => udpRate(lab, CLIENT, servers, { ip, port: 6000 }, 6000, SECONDS)],
      ['conn', () => connectionRate(lab, CLIENT, servers, { ip, port: 7000 }, 7000, SECONDS)],
    ];
    for (const [metric, step] of steps) {
      checkInterrupted();
      try {
        const fig = await step();
        const served = fig.servedBy.map((s) => lab.pods.get(s)?.node ?? s).join('+');
        record(`${mode}|${path}|${metric}`, fig.value, servers.length > 1 ? served : '');
        record(`${mode}|${path}|${metric}|cpu`, fig.cpu);
        progress(`  ${path} ${metric}: ${fig.value.toFixed(metric === 'tcp' ? 2 : 0)}${served === '' ? '' : ` via ${served}`} (agents ${Math.round(fig.cpu * 100)}% CPU)\n`);
      } catch (err) {
        problem(mode, `${path} ${metric}`, err);
      }
    }
    checkInterrupted();
    try {
      const lat = await httpLatency(lab, CLIENT, { ip, port: 80 }, SECONDS);
      record(`${mode}|${path}|p50`, lat.p50.value);
      record(`${mode}|${path}|p99`, lat.p99.value);
      record(`${mode}|${path}|p50|cpu`, lat.p50.cpu);
      record(`${mode}|${path}|p99|cpu`, lat.p50.cpu);
      progress(`  ${path} http ${ip}:80: p50 ${lat.p50.value} µs p99 ${lat.p99.value} µs over ${lat.requests} requests, ${lat.failed} failed\n`);
    } catch (err) {
      problem(mode, `${path} latency`, err);
    }
  }
}

/**
 * The IPv6 rows: a dual-stack lab, the bench pods and IPv6-only Services, TCP throughput
 * and connections/s to each IPv6 cluster IP. A row that fails is recorded as n/a with
 * its reason (the table prints it) and the next one runs.
 */
async function traffic6(lab: BenchLab, mode: Mode, work: string): Promise<void> {
  const applied = await lab.apply(join(work, 'bench6.yaml'), 90_000);
  if (applied.code !== 0) throw new Error(`lab apply of the bench pods and IPv6 services: ${applied.stderr.trim()}`);
  await lab.refresh();
  progress(`${mode}: pods perf-1, perf-2 and the IPv6 bench services applied\n`);
  for (const [path, p] of Object.entries(PATHS6) as [keyof typeof PATHS6, (typeof PATHS6)[keyof typeof PATHS6]][]) {
    const ip = lab.serviceIPs6.get(p.service), iperfIP = lab.serviceIPs6.get(p.iperfService);
    const servers = [...p.servers];
    const steps: [string, () => Promise<Figure>][] = [
      ['tcp', () => tcpThroughput(lab, CLIENT, servers, { ip: iperfIP!, port: 5201 }, 5201, SECONDS)],
      ['conn', () => connectionRate(lab, CLIENT, servers, { ip: ip!, port: 7000 }, 7000, SECONDS)],
    ];
    let unusable = ip === undefined || iperfIP === undefined ? `no IPv6 cluster IP for ${p.service} in lab status` : '';
    if (unusable === '') unusable = await answers6(lab, ip!);
    for (const [metric, step] of steps) {
      checkInterrupted();
      const key = `${mode}|${path}|${metric}`;
      try {
        if (unusable !== '') throw new Error(unusable);
        const fig = await step();
        if (!Number.isFinite(fig.value)) throw new Error('no figure (the client measured nothing)');
        const served = fig.servedBy.map((s) => lab.pods.get(s)?.node ?? s).join('+');
        record(key, fig.value, servers.length > 1 ? served : '');
        record(`${key}|cpu`, fig.cpu);
        progress(`  ${path} ${metric}: ${fig.value.toFixed(metric === 'tcp' ? 2 : 0)}${served === '' ? '' : ` via ${served}`} (agents ${Math.round(fig.cpu * 100)}% CPU)\n`);
      } catch (err) {
        results.errors.set(key, (err as Error).message ?? String(err));
        problem(mode, `${path} ${metric}`, err);
      }
    }
  }
}

/** '' once HTTP to the IPv6 cluster IP answers from CLIENT, else why not (bounded by IPV6_ANSWER_TIMEOUT_MS). */
async function answers6(lab: BenchLab, ip: string): Promise<string> {
  let last = '';
  for (const deadline = Date.now() + IPV6_ANSWER_TIMEOUT_MS; Date.now() < deadline;) {
    checkInterrupted();
    try {
      await lab.exec(CLIENT, ['curl', '-6', '-sS', '-g', '--max-time', '2', '-o', '/dev/null', `http://[${ip}]:80/`], 10_000);
      return '';
    } catch (err) {
      const text = (err as Error).message ?? String(err);
      last = /curl: \(\d+\)[^\n]*/.exec(text)?.[0] ?? text.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop() ?? '';
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  return `[${ip}]:80 did not answer over IPv6 within ${IPV6_ANSWER_TIMEOUT_MS / 1000} s (${last})`;
}

async function scale(lab: BenchLab, mode: Mode, n: number, work: string): Promise<void> {
  const prefix = `s${n}`;
  const key = (figure: string): string => `${mode}|${n}|${figure}`;
  const node = (pod: string): { ip: string; node: string } => ({ ip: lab.podIP(pod), node: lab.pods.get(pod)!.node });
  const ips = freeClusterIPs(n, new Set(lab.serviceIPs.values()));
  const file = join(work, `${prefix}.yaml`);
  writeScaleManifest(file, prefix, ips, [node('web-2a'), node('web-2b')]);

  progress(`  ${n} services: applying (poll ${ips[n - 1]}, ${scaleServiceName(prefix, n - 1)})\n`);
  const program = await timeChange(lab, CLIENT, file, sliceManifestFile(prefix, n - 1), ips[n - 1]!, '"pod":', PROGRAM_TIMEOUT_S);
  report(mode, n, 'program', program);
  if (!Number.isFinite(program.forwardMs)) {
    problem(mode, `${n} services`, new Error(`the last service did not answer within ${PROGRAM_TIMEOUT_S} s; later steps skipped`));
    return;
  }
  if (!(await settle(lab, SETTLE_TIMEOUT_MS))) problem(mode, `${n} services`, new Error(`node daemons still behind the manifests after ${SETTLE_TIMEOUT_MS / 1000} s`));

  const mid = n >> 1;
  const sliceFile = join(work, `${prefix}-slice.yaml`);
  writeSliceManifest(sliceFile, prefix, mid, [node('web-1b')]);
  const change = await timeChange(lab, CLIENT, sliceFile, sliceManifestFile(prefix, mid), ips[mid]!, '"pod":"web-1b"', CHANGE_TIMEOUT_S);
  report(mode, n, 'change', change);
  if (!(await settle(lab, SETTLE_TIMEOUT_MS))) problem(mode, `${n} services`, new Error(`node daemons still behind the manifests after ${SETTLE_TIMEOUT_MS / 1000} s`));

  // Spread over the list (iptables mode walks KUBE-SERVICES in order), none used before.
  const picks = Array.from({ length: FIRST_PACKET_SERVICES }, (_, i) => Math.floor(((i + 0.5) * n) / FIRST_PACKET_SERVICES)).filter((i) => i !== mid && i !== n - 1);
  const first = await firstConnects(lab, CLIENT, picks.map((i) => ips[i]!), `${lab.podIP('web-2a')}:8080`);
  record(key('first'), first.p50);
  record(key('first-p90'), first.p90);
  record(key('first-baseline'), first.baselineP50);
  progress(`  ${n} services: first connect p50 ${first.p50.toFixed(0)} µs, p90 ${first.p90.toFixed(0)} µs, max ${first.max.toFixed(0)} µs, ${first.failed} failed of ${picks.length}; straight to web-2a p50 ${first.baselineP50.toFixed(0)} µs\n`);
  if (first.failed > 0) problem(mode, `${n} services first packet`, new Error(`${first.failed} of ${picks.length} connects failed`));
}

function report(mode: Mode, n: number, what: 'program' | 'change', t: ChangeTiming): void {
  const key = (figure: string): string => `${mode}|${n}|${figure}`;
  record(key(what), t.forwardMs);
  record(key(`${what}-written`), t.forwardMs - t.writtenMs);
  record(key(`${what}-apply`), t.applyMs, t.applyExit === 'ok' ? '' : t.applyExit.split(':')[0]!);
  record(key(`${what}-agents-cpu`), t.agentsCpu);
  record(key(`${what}-daemons-cpu`), t.daemonsCpu);
  if (t.applyExit !== 'ok') problem(mode, `${n} services, ${what}: tapir lab apply`, new Error(t.applyExit));
  progress(`  ${what}: answered ${(t.forwardMs / 1000).toFixed(2)} s after apply start, ${((t.forwardMs - t.writtenMs) / 1000).toFixed(2)} s after the objects were written (${(t.writtenMs / 1000).toFixed(2)} s); apply ${(t.applyMs / 1000).toFixed(1)} s (${t.applyExit}); CPU s agents ${t.agentsCpu.toFixed(1)} daemons ${t.daemonsCpu.toFixed(1)}\n`);
}

async function runMode(mode: Mode, work: string): Promise<void> {
  const dataplane = mode === 'tapir' || mode === 'tapir-busy-poll' ? 'tapir' : 'kernel';
  let lab: BenchLab | null = null;
  const fresh = async (ipFamily?: 'dual'): Promise<BenchLab> => {
    await lab?.down();
    if (lab !== null) progress(`${mode}: lab ${(lab as BenchLab).name} down\n`);
    lab = new BenchLab(dataplane, mode === 'tapir-busy-poll' ? 'tapir' : mode, { ...(ipFamily === undefined ? {} : { ipFamily }), ...(mode === 'tapir-busy-poll' ? { agent: { busyPollMicros: BUSY_POLL } } : {}) });
    progress(`${mode}: lab ${lab.name} up\n`);
    await lab.up();
    progress(`${mode}: lab ${lab.name} ready\n`);
    return lab;
  };
  try {
    // Each section in a lab of its own (IPv6: a dual-stack one); every scale size too.
    if (SECTIONS.has('traffic')) {
      const current = await fresh();
      try {
        await traffic(current, mode, work);
      } catch (err) {
        problem(mode, 'traffic', err);
      }
    }
    if (SECTIONS.has('ipv6')) {
      checkInterrupted();
      try {
        await traffic6(await fresh('dual'), mode, work);
      } catch (err) {
        if ((err as { code?: string }).code === 'BENCH_INTERRUPTED') throw err;
        for (const path of Object.keys(PATHS6)) for (const metric of ['tcp', 'conn']) if (!results.values.has(`${mode}|${path}|${metric}`)) results.errors.set(`${mode}|${path}|${metric}`, (err as Error).message ?? String(err));
        problem(mode, 'ipv6', err);
      }
    }
    if (SECTIONS.has('scale')) {
      for (const n of SIZES) {
        checkInterrupted();
        const current = await fresh();
        try {
          await scale(current, mode, n, work);
        } catch (err) {
          problem(mode, `${n} services`, err);
        }
      }
    }
  } finally {
    await (lab as BenchLab | null)?.down();
  }
}

async function main(): Promise<void> {
  buildCTools(['udpblast', 'connrate', 'httplat']);
  const work = mkdtempSync(join(tmpdir(), 'tapir-proxy-modes-'));
  downLabsOnSignal(() => rmSync(work, { recursive: true, force: true }));
  writeFileSync(join(work, 'bench.yaml'), BENCH_MANIFEST);
  writeFileSync(join(work, 'bench6.yaml'), BENCH_MANIFEST6);
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const mode of MODES) {
        progress(`run ${run + 1}/${RUNS}, mode ${mode}\n`);
        try {
          await runMode(mode, work);
        } catch (err) {
          if ((err as { code?: string }).code === 'BENCH_INTERRUPTED') throw err;
          problem(mode, 'lab', err);
        }
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`\nnode bench/proxy-modes.ts ${process.argv.slice(2).join(' ')}`.trimEnd());
  console.log(`load average (1, 5, 15 min) at the start ${load(LOAD_AT_START)}, at the end ${load(loadavg())} on ${cpus().length} CPUs${PINNED === undefined ? '' : ` (everything pinned to CPU ${PINNED})`}: anything else running skews the figures`);
  printTables(results, { modes: MODES, sizes: SIZES, seconds: SECONDS, runs: RUNS, paths: Object.keys(PATHS), paths6: Object.keys(PATHS6), sections: SECTIONS, ...(PINNED === undefined ? {} : { pinned: PINNED }) });
  console.log(`\n(whole run ${((Date.now() - STARTED) / 1000).toFixed(0)} s)`);
  if (values.json !== undefined) writeJson(values.json);
}

const JSON_TRAFFIC: Record<string, [string, string, 'higher' | 'lower']> = {
  tcp: ['TCP Gbit/s (1 stream)', 'Gbit/s', 'higher'], udp: ['UDP 64 B pkt/s received', 'pkt/s', 'higher'], conn: ['TCP connections/s', 'conn/s', 'higher'],
  p50: ['HTTP latency p50', 'us', 'lower'], p99: ['HTTP latency p99', 'us', 'lower'],
};
const JSON_SCALE: Record<string, [string, string]> = {
  program: ['program all services', 'ms'], 'program-written': ['program all, after objects written', 'ms'], change: ['one endpoint change', 'ms'],
  'change-written': ['one endpoint change, after slice written', 'ms'], first: ['first-packet latency p50', 'us'], 'first-p90': ['first-packet latency p90', 'us'],
  'first-baseline': ['connect straight to the endpoint p50', 'us'], 'program-agents-cpu': ['agents CPU s while programming', 'CPU s'],
};

/** The figures of the tables as bench/lib/bench-json.ts data: one value per run. */
function writeJson(file: string): void {
  const out = new BenchJsonWriter('proxy-modes', 'tapir', MODES.filter((m) => m !== 'tapir' && m !== 'tapir-busy-poll'));
  out.problems.push(...results.problems);
  for (const [key, vals] of results.values) {
    const [mode, where, figure, cpu] = key.split('|') as [string, string, string, string?];
    // The kernel modes have no agents: their agents-CPU figure is a 0 the tables leave out too.
    if (cpu !== undefined || (figure.endsWith('agents-cpu') && !mode.startsWith('tapir'))) continue;
    const t = JSON_TRAFFIC[figure], sc = JSON_SCALE[figure];
    if (t !== undefined) out.add({ section: `${where.startsWith('IPv6') ? 'pod to ClusterIP over IPv6' : 'pod to ClusterIP'}${PINNED_SUFFIX}`, row: where, metric: t[0], unit: t[1], mode, better: t[2], values: vals, cpu: results.values.get(`${key}|cpu`) });
    else if (sc !== undefined) out.add({ section: `services at scale${PINNED_SUFFIX}`, row: `${where} services`, x: Number(where), metric: sc[0], unit: sc[1], mode, better: 'lower', values: vals });
  }
  out.write(file);
}

await main();

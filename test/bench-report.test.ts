// The benchmark report's summary and plots (bench/lib/report-summary.ts, bench/lib/svg.ts)
// over canned bench JSON: no bench runs here.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BenchJson, Machine } from '../bench/lib/bench-json.ts';
import { readBenchJson } from '../bench/lib/bench-json.ts';
import { cpuPerGbit, fromDnsPod, fromIngress, mergeRuns, plots, spread, summaryMarkdown, type BenchOutcome } from '../bench/lib/report-summary.ts';
import { barChart, lineChart, niceTicks } from '../bench/lib/svg.ts';

const MACHINE: Machine = { cores: 2, cpuModel: 'AMD EPYC', kernel: '6.18.0', node: 'v24.21.0', commit: '0123456789abcdef', loadavg: [0.5, 0.4, 0.3], at: '2026-12-06T17:00:00.000Z' };

/** One invocation of bench/lab.ts --json: tapir and kernel, one run each. */
function labRun(kernelGbit: number, tapirGbit: number, tapirCpu: number, kernelConn: number, tapirConn: number): BenchJson {
  return {
    bench: 'lab', argv: ['--seconds', '1'], subject: 'tapir', baselines: ['kernel'], machineAtStart: MACHINE, machineAtEnd: { ...MACHINE, loadavg: [1.5, 0.6, 0.3] }, problems: [],
    figures: [
      { section: 'pod to pod', row: 'same node', metric: 'TCP Gbit/s', unit: 'Gbit/s', mode: 'kernel', better: 'higher', values: [kernelGbit], cpu: [0] },
      { section: 'pod to pod', row: 'same node', metric: 'TCP Gbit/s', unit: 'Gbit/s', mode: 'tapir', better: 'higher', values: [tapirGbit], cpu: [tapirCpu] },
      { section: 'pod to pod', row: 'same node', metric: 'TCP connections/s', unit: 'conn/s', mode: 'kernel', better: 'higher', values: [kernelConn] },
      { section: 'pod to pod', row: 'same node', metric: 'TCP connections/s', unit: 'conn/s', mode: 'tapir', better: 'higher', values: [tapirConn] },
    ],
  };
}

function scaleRun(first1k: number, first10k: number, ipt1k: number, ipt10k: number): BenchJson {
  const fig = (mode: string, n: number, v: number) => ({ section: 'services at scale', row: `${n} services`, x: n, metric: 'first-packet latency p50', unit: 'us', mode, better: 'lower' as const, values: [v] });
  return { bench: 'proxy-modes', argv: [], subject: 'tapir', baselines: ['iptables'], machineAtStart: MACHINE, machineAtEnd: MACHINE, problems: ['iptables: 10000 services: slow'], figures: [fig('tapir', 1000, first1k), fig('tapir', 10000, first10k), fig('iptables', 1000, ipt1k), fig('iptables', 10000, ipt10k)] };
}

function outcome(name: string, docs: BenchJson[], failed = false): BenchOutcome {
  return {
    name, command: `node bench/${name}.ts --json FILE`, status: failed ? 'failed' : 'ok', errors: failed ? ['run 2: timed out after 600 s (raw/lab-2.txt)'] : [],
    invocations: docs.map(() => ({ seconds: 30, loadAtStart: [0.5, 0.4, 0.3], loadAtEnd: [1.5, 0.6, 0.3], exit: 'ok' })), result: mergeRuns(docs),
  };
}

/** Well-formed enough for a viewer: one root, every element closed, no NaN in any attribute, text escaped. */
function assertWellFormedSvg(svg: string): void {
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.ok(svg.trimEnd().endsWith('</svg>'));
  assert.doesNotMatch(svg, /NaN|Infinity|undefined/);
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-z]+)[^>]*?(\/?)>/g)) {
    if (m[1] === '/') assert.equal(stack.pop(), m[2], `</${m[2]}> closes <${stack.at(-1)}>`);
    else if (m[3] !== '/') stack.push(m[2]!);
  }
  assert.deepEqual(stack, []);
  // Every & starts an entity: raw ampersands or angle brackets in text would break XML.
  assert.doesNotMatch(svg.replace(/&(lt|gt|amp|quot|apos);/g, ''), /&/);
}

test('runs of separate invocations merge figure by figure; medians and spreads come from all of them', () => {
  const merged = mergeRuns([labRun(10, 8, 0.9, 12000, 7000), labRun(12, 9, 1.0, 11000, 8000), labRun(11, 20, 1.1, 13000, 6000)])!;
  assert.equal(merged.figures.length, 4);
  const tapirTcp = merged.figures.find((f) => f.mode === 'tapir' && f.unit === 'Gbit/s')!;
  assert.deepEqual(tapirTcp.values, [8, 9, 20]);
  assert.deepEqual(tapirTcp.cpu, [0.9, 1.0, 1.1]);
  assert.deepEqual(spread(tapirTcp.values), { median: 9, min: 8, max: 20 });
  assert.deepEqual(spread([NaN, 4, 2]), { median: 3, min: 2, max: 4 });
  assert.ok(Number.isNaN(spread([]).median));
  assert.equal(mergeRuns([]), null);
});

test('summary.md: machine, load, medians with spreads, ratios against the baselines of the same run, failures', () => {
  const lab = outcome('lab', [labRun(10, 8, 0.8, 12000, 7000), labRun(12, 9, 0.9, 11000, 8000), labRun(11, 10, 1.0, 13000, 6000)], true);
  const scale = outcome('proxy-modes-scale', [scaleRun(300, 310, 350, 700)]);
  // Host steal weighted by each invocation's time: (0.1 x 10 + 0.4 x 30) / 40 = 0.325.
  scale.invocations = [{ seconds: 10, loadAtStart: [1, 1, 1], loadAtEnd: [1, 1, 1], stealCores: 0.1, exit: 'ok' }, { seconds: 30, loadAtStart: [1, 1, 1], loadAtEnd: [2, 1, 1], stealCores: 0.4, exit: 'ok' }];
  const broken: BenchOutcome = { name: 'dns-pod', command: 'node bench/dns-pod.ts', status: 'failed', errors: ['run 1: exit 1 (raw/dns-pod-1.txt)'], invocations: [{ seconds: 3, loadAtStart: [1, 1, 1], loadAtEnd: [1, 1, 1], exit: 'exit 1' }], result: null };
  const md = summaryMarkdown({ command: 'scripts/bench.sh --quick', quick: true, machineAtStart: MACHINE, machineAtEnd: { ...MACHINE, loadavg: [2, 1, 0.5], at: '2026-12-06T17:09:00.000Z' }, seconds: 540 }, [lab, scale, broken], ['lab--pod-to-pod--tcp-gbit-s.svg']);
  assert.match(md, /2 cores, AMD EPYC, kernel 6\.18\.0, Node v24\.21\.0, commit 0123456789ab/);
  assert.match(md, /at the start 0\.50 0\.40 0\.30, at the end 2\.00 1\.00 0\.50/);
  assert.match(md, /\(9\.0 min\)/);
  // Medians 11 (kernel) and 9 (tapir) Gbit/s: 0.82x; connections 12000 vs 7000: 0.58x.
  assert.match(md, /\| same node \| TCP Gbit\/s \| 11 Gbit\/s \(10-12, n=3\) \| 9 Gbit\/s \(8-10, n=3\) \| 0\.82x \|/);
  assert.match(md, /\| same node \| TCP connections\/s \| 12,000 conn\/s \(11,000-13,000, n=3\) \| 7,000 conn\/s \(6,000-8,000, n=3\) \| 0\.58x \|/);
  assert.match(md, /\| tapir\/kernel \|/);
  // CPU per Gbit/s: 0.8/8, 0.9/9, 1.0/10 = 0.1 each.
  assert.match(md, /\| pod to pod \| same node \| 0\.1 \(0\.1-0\.1, n=3\) \|/);
  // Lower-is-better ratios say so: 310 vs 700 us.
  assert.match(md, /\| 10000 services \| first-packet latency p50 \| 310 us \(n=1\) \| 700 us \(n=1\) \| 0\.44x \(lower is better\) \|/);
  assert.match(md, /\| lab \| \*\*failed\*\*: run 2: timed out after 600 s/);
  assert.match(md, /\| proxy-modes-scale \| ok \| 2 \| 40 \| 1\.00 1\.00 1\.00 \| 2\.00 1\.00 1\.00 \| 0\.33 \|/);
  // Invocations recorded before steal was: no figure rather than a made-up 0.
  assert.match(md, /\| dns-pod \| \*\*failed\*\*: run 1: exit 1 \(raw\/dns-pod-1\.txt\) \| 1 \| 3 \| 1\.00 1\.00 1\.00 \| 1\.00 1\.00 1\.00 \| - \|/);
  assert.match(md, /\| dns-pod \| \*\*failed\*\*: run 1: exit 1/);
  assert.match(md, /- iptables: 10000 services: slow/);
  assert.match(md, /!\[lab--pod-to-pod--tcp-gbit-s\.svg\]\(lab--pod-to-pod--tcp-gbit-s\.svg\)/);
});

test('plots: bars per path and mode, lines against the number of services, CPU per Gbit/s; all well-formed', () => {
  const lab = outcome('lab', [labRun(10, 8, 0.8, 12000, 7000), labRun(12, 9, 0.9, 11000, 8000)]);
  const scale = outcome('proxy-modes-scale', [scaleRun(300, 310, 350, 700), scaleRun(320, NaN, 360, 720)]);
  const micro = outcome('micro', [{ ...labRun(1, 1, 1, 1, 1), bench: 'micro' }]);
  const svgs = plots([lab, scale, micro]);
  assert.deepEqual(svgs.map((p) => p.file), [
    'lab--pod-to-pod--tcp-gbit-s.svg', 'lab--pod-to-pod--tcp-connections-s.svg', 'lab--cpu-per-gbit.svg',
    'proxy-modes-scale--services-at-scale--first-packet-latency-p50.svg',
  ]);
  for (const p of svgs) assertWellFormedSvg(p.svg);
  const tcp = svgs[0]!.svg;
  assert.equal((tcp.match(/<rect [^>]*fill="#(0072B2|E69F00)"><title>/g) ?? []).length, 2, 'one bar per mode');
  assert.match(tcp, /<title>tapir, same node: 8\.5 Gbit\/s \(8-9\)<\/title>/);
  assert.match(tcp, /<path d="M/, 'error bars');
  assert.match(tcp, /font-size="10">8\.5<\/text>/, 'the median written over its bar');
  const line = svgs[3]!.svg;
  assert.equal((line.match(/<polyline/g) ?? []).length, 2);
  assert.match(line, /<title>tapir, 10k: 310 us \(310-310\)<\/title>/);
  assert.deepEqual(cpuPerGbit(lab.result!).map((c) => c.row), ['same node']);
  // One data plane over the number of services: one chart per unit, a line per metric; a metric with no value at all gets no chart.
  const one = (metric: string, unit: string, v: number, n: number) => ({ section: 'service tables', row: `${n} services`, x: n, metric, unit, mode: 'tapir', better: 'lower' as const, values: [v] });
  const services = outcome('services', [{ ...labRun(1, 1, 1, 1, 1), bench: 'services', figures: [one('build', 'ms', 15, 1000), one('build', 'ms', 75, 10000), one('swap', 'ms', 25, 1000), one('swap', 'ms', 65, 10000), one('first packet', 'ns', 1600, 1000), one('lost', 'ns', NaN, 1000)] }]);
  const grouped = plots([services]);
  assert.deepEqual(grouped.map((p) => p.file), ['services--service-tables--ms.svg', 'services--service-tables--ns.svg']);
  assert.equal((grouped[0]!.svg.match(/<polyline/g) ?? []).length, 2);
  for (const p of grouped) assertWellFormedSvg(p.svg);
});

test('svg: escapes text, leaves NaN out, and the axis covers the largest error bar', () => {
  const bar = barChart({ title: 'a <b> & "c"', unit: 'req/s', categories: ['x & y', 'z'], series: [{ name: 'tapir', values: [{ median: 5, min: 4, max: 23 }, { median: NaN, min: NaN, max: NaN }] }] });
  assertWellFormedSvg(bar);
  assert.match(bar, /a &lt;b&gt; &amp; &quot;c&quot;/);
  assert.match(bar, />25<\/text>/, 'ticks reach past 23');
  assert.equal((bar.match(/<rect [^>]*fill="#0072B2"><title>/g) ?? []).length, 1, 'no bar for NaN');
  assert.deepEqual(niceTicks(23), [0, 5, 10, 15, 20, 25]);
  // A spread below 0 (a figure with a baseline subtracted) stops at the x axis (y = 310).
  const dips = barChart({ title: 't', unit: 'ns', categories: ['a'], series: [{ name: 'tapir', values: [{ median: 5, min: -3, max: 6 }] }] });
  const ys = [...dips.matchAll(/V(-?[\d.]+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(ys, [310]);
  assert.deepEqual(niceTicks(0.7), [0, 0.2, 0.4, 0.6, 0.8]);
  assertWellFormedSvg(lineChart({ title: 't', xLabel: 'services', unit: 'ms', logX: true, series: [{ name: 'a', points: [{ x: 1000, y: { median: NaN, min: NaN, max: NaN } }] }] }));
});

test('bench JSON: NaN runs survive the round trip as null', () => {
  const text = JSON.stringify({ ...labRun(1, 2, 3, 4, 5), figures: [{ ...labRun(1, 2, 3, 4, 5).figures[0]!, values: [1, null, 3] }] });
  assert.deepEqual(readBenchJson(text).figures[0]!.values, [1, NaN, 3]);
});

test('dns-pod and ingress JSON become figures against their baselines', () => {
  const run = (qps: number) => ({ qps, avgMs: 0.5, p99Ms: 2, lost: 0, cpu: 0.9 });
  const dns = fromDnsPod({
    machine: { ...MACHINE, end: { loadavg: [1, 1, 1], at: 'later' } }, options: { services: 1000, cases: ['tapir', 'nsd', 'kernel-dns'] }, problems: [],
    mixes: { cluster: { tapir: { runs: [run(50000), run(52000)] }, nsd: { runs: [run(100000)] }, 'kernel-dns': { runs: [run(30000)] }, 'tapir/nsd': {} } },
  }, ['--runs', '2']);
  assert.deepEqual(dns.baselines, ['nsd', 'kernel-dns']);
  assert.deepEqual(dns.figures.find((f) => f.mode === 'tapir' && f.metric === 'queries/s')!.values, [50000, 52000]);
  assert.equal(dns.figures.length, 9);
  const s = (v: number) => ({ median: v, min: v, max: v });
  const r = (rps: number) => ({ rps: s(rps), p50ms: s(1), p99ms: s(3), cpu: s(0.95), rpsPerCore: s(rps / 0.95) });
  const ingress = fromIngress({ loadAtStart: [1, 1, 1], loadAtEnd: [2, 2, 2], results: { direct: { 'keep-alive': r(90000) }, nginx: { 'keep-alive': r(40000) }, tapir: { 'keep-alive': r(20000) } }, configChange: { setConfigToServingMs: s(42) } }, [], MACHINE);
  assert.deepEqual(ingress.baselines, ['nginx']);
  assert.equal(ingress.figures.filter((f) => f.metric === 'requests/s per core of the proxy').length, 2, 'none for direct');
  const md = summaryMarkdown({ command: 'x', quick: false, machineAtStart: MACHINE, machineAtEnd: MACHINE, seconds: 60, reruns: [{ command: 'scripts/bench.sh --merge --out D --only dns-pod', commit: 'fedcba9876543210', at: '2026-12-07T06:30:00.000Z', benches: ['dns-pod'] }] }, [outcome('ingress', [ingress]), outcome('dns-pod', [dns])], []);
  assert.match(md, /Run again later into this report: dns-pod, by `scripts\/bench\.sh --merge --out D --only dns-pod` at commit fedcba987654, 2026-12-07T06:30:00\.000Z/);
  assert.match(md, /\| keep-alive \| requests\/s \| 90,000 req\/s \(n=1\) \| 40,000 req\/s \(n=1\) \| 20,000 req\/s \(n=1\) \| 0\.50x \|/);
  assert.match(md, /\| cluster names \| queries\/s \| 51,000 q\/s \(50,000-52,000, n=2\) \| 100,000 q\/s \(n=1\) \| 30,000 q\/s \(n=1\) \| 0\.51x \| 1\.70x \|/);
});

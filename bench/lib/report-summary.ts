// The benchmark report's pure half (bench/report.ts runs the benches): the JSON of
// bench/dns-pod.ts and bench/ingress.ts turned into bench/lib/bench-json.ts figures,
// the runs of one bench merged, summary.md, and the SVG plots. No bench runs here, so
// test/bench-report.test.ts feeds it canned JSON.
import type { BenchFigure, BenchJson, Machine } from './bench-json.ts';
import { barChart, lineChart, type Spread } from './svg.ts';
import { median } from './tools.ts';

/** One bench of the suite as the runner saw it: its invocations merged, or why it failed. */
export interface BenchOutcome {
  name: string;
  command: string;
  status: 'ok' | 'failed';
  /** Why it failed (exit code, timeout, no JSON), per failed invocation. */
  errors: string[];
  /** stealCores: CPU the host took from the VM during the invocation, in cores (hostStealSeconds over its seconds). */
  invocations: { seconds: number; loadAtStart: number[]; loadAtEnd: number[]; stealCores?: number; exit: string }[];
  result: BenchJson | null;
}

export interface ReportMeta {
  command: string;
  quick: boolean;
  machineAtStart: Machine;
  machineAtEnd: Machine;
  seconds: number;
  /** Benches run again into the report's directory later (bench/report.ts --merge). */
  reruns?: { command: string; commit: string; at: string; benches: string[] }[];
}

export function spread(values: number[]): Spread {
  const xs = values.filter(Number.isFinite);
  if (xs.length === 0) return { median: NaN, min: NaN, max: NaN };
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** Concatenates the runs of separate invocations of one bench, figure by figure. */
export function mergeRuns(docs: BenchJson[]): BenchJson | null {
  if (docs.length === 0) return null;
  const first = docs[0]!;
  const merged: BenchJson = { ...first, figures: [], problems: [], machineAtEnd: docs[docs.length - 1]!.machineAtEnd };
  const key = (f: BenchFigure): string => `${f.section}|${f.row}|${f.metric}|${f.mode}|${f.x ?? ''}`;
  const byKey = new Map<string, BenchFigure>();
  for (const doc of docs) {
    merged.problems.push(...doc.problems);
    for (const f of doc.figures) {
      const have = byKey.get(key(f));
      if (have === undefined) {
        const copy: BenchFigure = { ...f, values: [...f.values], ...(f.cpu === undefined ? {} : { cpu: [...f.cpu] }) };
        byKey.set(key(f), copy);
        merged.figures.push(copy);
      } else {
        have.values.push(...f.values);
        if (f.cpu !== undefined) (have.cpu ??= []).push(...f.cpu);
      }
    }
  }
  return merged;
}

// ---- adapters for the benches that had their own JSON before this report --------------

type DnsRun = { qps: number; avgMs: number; p99Ms: number; lost: number; cpu: number };
/** bench/dns-pod.ts --json: mixes[mix][case].runs are the raw runs. */
export function fromDnsPod(doc: { machine: Machine & { end: { loadavg: number[]; at: string } }; options: { services: number; cases: string[] }; mixes: Record<string, Record<string, { runs?: DnsRun[] }>>; problems: string[] }, argv: string[]): BenchJson {
  const figures: BenchFigure[] = [];
  const metrics: [string, string, 'higher' | 'lower', (r: DnsRun) => number][] = [
    ['queries/s', 'q/s', 'higher', (r) => r.qps], ['average latency', 'ms', 'lower', (r) => r.avgMs], ['p99 latency', 'ms', 'lower', (r) => r.p99Ms],
  ];
  for (const [mix, cases] of Object.entries(doc.mixes)) {
    for (const [c, fig] of Object.entries(cases)) {
      if (fig.runs === undefined) continue; // the "tapir/nsd" ratio entries
      for (const [metric, unit, better, f] of metrics) {
        figures.push({ section: `cluster DNS from a pod, ${doc.options.services} services`, row: `${mix} names`, metric, unit, mode: c, better, values: fig.runs.map(f), cpu: fig.runs.map((r) => r.cpu) });
      }
    }
  }
  const end: Machine = { ...doc.machine, loadavg: doc.machine.end.loadavg, at: doc.machine.end.at };
  return { bench: 'dns-pod', argv, subject: 'tapir', baselines: doc.options.cases.filter((c) => c !== 'tapir'), machineAtStart: doc.machine, machineAtEnd: end, figures, problems: doc.problems };
}

type IngressSummary = { rps: Spread; p50ms: Spread; p99ms: Spread; cpu: Spread; rpsPerCore: Spread };
/** bench/ingress.ts --json (stdout), run with --runs 1: each invocation's medians are its one run. */
export function fromIngress(doc: { loadAtStart: number[]; loadAtEnd: number[]; results: Record<string, Record<string, IngressSummary>>; configChange: { setConfigToServingMs: Spread } | null }, argv: string[], machineNow: Machine): BenchJson {
  const figures: BenchFigure[] = [];
  for (const [proxy, loads] of Object.entries(doc.results)) {
    for (const [load, r] of Object.entries(loads)) {
      const base = { section: 'ingress proxies', row: load, mode: proxy } as const;
      figures.push({ ...base, metric: 'requests/s', unit: 'req/s', better: 'higher', values: [r.rps.median], ...(proxy === 'direct' ? {} : { cpu: [r.cpu.median] }) });
      figures.push({ ...base, metric: 'latency p50', unit: 'ms', better: 'lower', values: [r.p50ms.median] });
      figures.push({ ...base, metric: 'latency p99', unit: 'ms', better: 'lower', values: [r.p99ms.median] });
      if (proxy !== 'direct') figures.push({ ...base, metric: 'requests/s per core of the proxy', unit: 'req/s', better: 'higher', values: [r.rpsPerCore.median] });
    }
  }
  if (doc.configChange !== null) figures.push({ section: 'ingress configuration change', row: '1,000 hosts, 2,000 paths', metric: 'setConfig to served', unit: 'ms', mode: 'tapir', better: 'lower', values: [doc.configChange.setConfigToServingMs.median] });
  return {
    bench: 'ingress', argv, subject: 'tapir', baselines: ['nginx', 'haproxy'].filter((p) => p in doc.results),
    machineAtStart: { ...machineNow, loadavg: doc.loadAtStart }, machineAtEnd: { ...machineNow, loadavg: doc.loadAtEnd }, figures, problems: [],
  };
}

// ---- summary.md ----------------------------------------------------------------------

export function formatValue(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '-';
  const a = Math.abs(v);
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : 3;
  return `${Number(v.toFixed(digits)).toLocaleString('en-US', { maximumFractionDigits: digits })}${unit === '' ? '' : ` ${unit}`}`;
}

export function formatSpread(s: Spread, unit: string, n: number): string {
  if (!Number.isFinite(s.median)) return '-';
  if (n === 1) return `${formatValue(s.median, unit)} (n=1)`;
  return `${formatValue(s.median, unit)} (${formatValue(s.min, '')}-${formatValue(s.max, '')}, n=${n})`;
}

/** subject/baseline of the medians, with which way is better said for lower-is-better figures. */
export function ratioCell(subject: number, baseline: number, better: 'higher' | 'lower'): string {
  if (!Number.isFinite(subject) || !Number.isFinite(baseline) || baseline <= 0) return '-';
  const r = subject / baseline;
  return better === 'lower' ? `${r.toFixed(2)}x (lower is better)` : `${r.toFixed(2)}x`;
}

const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');

/** The figures of one section as a table: a column per mode, then subject/baseline ratios. */
function sectionTable(doc: BenchJson, section: string): string[] {
  const figs = doc.figures.filter((f) => f.section === section);
  const modes = [...new Set(figs.map((f) => f.mode))];
  const baselines = modes.includes(doc.subject) ? doc.baselines.filter((b) => modes.includes(b)) : [];
  // Row by row, each row's metrics in the order the bench gave them.
  const metrics = [...new Set(figs.map((f) => f.metric))];
  const rows = [...new Set(figs.map((f) => f.row))].flatMap((row) => metrics.filter((m) => figs.some((f) => f.row === row && f.metric === m)).map((m) => `${row}\u0000${m}`));
  const out = [`| ${['', 'metric', ...modes, ...baselines.map((b) => `${doc.subject}/${b}`)].join(' | ')} |`, `|${['', '', ...modes, ...baselines].map(() => '---').join('|')}|`];
  for (const rm of rows) {
    const [row, metric] = rm.split('\u0000') as [string, string];
    const of = (mode: string): BenchFigure | undefined => figs.find((f) => f.row === row && f.metric === metric && f.mode === mode);
    const cells = modes.map((m) => {
      const f = of(m);
      return f === undefined ? '' : formatSpread(spread(f.values), f.unit, f.values.filter(Number.isFinite).length);
    });
    const subject = of(doc.subject);
    const ratios = baselines.map((b) => {
      const base = of(b);
      return subject === undefined || base === undefined ? '-' : ratioCell(spread(subject.values).median, spread(base.values).median, subject.better);
    });
    out.push(`| ${[row, metric, ...cells, ...ratios].join(' | ')} |`);
  }
  return out;
}

/** Agent CPU per Gbit/s: the subject's CPU (cores) over its Gbit/s, run by run, for every Gbit/s figure that has CPU. */
export function cpuPerGbit(doc: BenchJson): { row: string; section: string; perGbit: Spread; n: number }[] {
  return doc.figures
    .filter((f) => f.unit === 'Gbit/s' && f.mode === doc.subject && f.cpu !== undefined)
    .map((f) => {
      const xs = f.values.map((v, i) => (v > 0 ? f.cpu![i]! / v : NaN)).filter(Number.isFinite);
      return { row: f.row, section: f.section, perGbit: spread(xs), n: xs.length };
    })
    .filter((r) => r.n > 0);
}

export function summaryMarkdown(meta: ReportMeta, outcomes: BenchOutcome[], plots: string[]): string {
  const plotted = new Set<string>();
  const m = meta.machineAtStart;
  const lines = [
    '# Tapir benchmark report',
    '',
    `\`${meta.command}\`${meta.quick ? ' (quick: fewer runs and shorter windows than the full report)' : ''}, ${m.at} to ${meta.machineAtEnd.at} (${(meta.seconds / 60).toFixed(1)} min)`,
    '',
    `Machine: ${m.cores} cores, ${m.cpuModel}, kernel ${m.kernel}, Node ${m.node}, commit ${m.commit.slice(0, 12)}.`,
    `Load average (1, 5, 15 min) at the start ${load(m.loadavg)}, at the end ${load(meta.machineAtEnd.loadavg)}: anything else running skews the figures.`,
    ...(meta.reruns ?? []).map((r) => `Run again later into this report: ${r.benches.join(', ')}, by \`${r.command}\` at commit ${r.commit.slice(0, 12)}, ${r.at} (their results replace the first run's).`),
    '',
    'Each cell: median (min-max, n = runs with a figure). Ratios are of the medians, taken against the baselines measured in the same run.',
    '',
    '"host steal": CPU the host gave to others while this VM had work, in cores over the bench\'s time (a quiet host: 0.00).',
    '',
    '| bench | status | runs | seconds | load at start | load at end | host steal |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const o of outcomes) {
    const inv = o.invocations;
    const seconds = inv.reduce((a, i) => a + i.seconds, 0);
    const steal = inv.every((i) => i.stealCores !== undefined) && seconds > 0 ? (inv.reduce((a, i) => a + i.stealCores! * i.seconds, 0) / seconds).toFixed(2) : '-';
    lines.push(`| ${o.name} | ${o.status === 'ok' ? 'ok' : `**failed**: ${o.errors.join('; ').replace(/\|/g, '/')}`} | ${inv.length} | ${seconds.toFixed(0)} | ${load(inv[0]?.loadAtStart ?? [])} | ${load(inv[inv.length - 1]?.loadAtEnd ?? [])} | ${steal} |`);
  }
  for (const o of outcomes) {
    lines.push('', `## ${o.name}`, '', `\`${o.command}\``);
    if (o.status === 'failed') lines.push('', `Failed: ${o.errors.join('; ')}`);
    if (o.result === null) continue;
    for (const section of [...new Set(o.result.figures.map((f) => f.section))]) lines.push('', `### ${section}`, '', ...sectionTable(o.result, section));
    const cpu = cpuPerGbit(o.result);
    if (cpu.length > 0) {
      lines.push('', `### ${o.result.subject} CPU per Gbit/s (cores busy per Gbit/s of TCP)`, '', '| section | row | cores per Gbit/s |', '|---|---|---|');
      for (const c of cpu) lines.push(`| ${c.section} | ${c.row} | ${formatSpread(c.perGbit, '', c.n)} |`);
    }
    if (o.result.problems.length > 0) lines.push('', 'Problems the bench reported:', '', ...[...new Set(o.result.problems)].map((p) => `- ${p}`));
    const mine = plots.filter((p) => p.startsWith(`${slug(o.name)}--`));
    for (const p of mine) plotted.add(p);
    if (mine.length > 0) lines.push('', ...mine.map((p) => `![${p}](${p})`));
  }
  const rest = plots.filter((p) => !plotted.has(p));
  if (rest.length > 0) lines.push('', '## Other plots', '', ...rest.map((p) => `![${p}](${p})`));
  return `${lines.join('\n')}\n`;
}

// ---- plots ---------------------------------------------------------------------------

const slug = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');

/** Benches whose figures are plotted (micro's rows are a table, not a picture). */
const PLOTTED = new Set(['lab', 'proxy-modes', 'proxy-modes-scale', 'programming-latency', 'dns-pod', 'ingress', 'device', 'services']);

/** One chart per bench, section and metric: bars over rows, or lines over x where the figures have one. */
export function plots(outcomes: BenchOutcome[]): { file: string; svg: string }[] {
  const out: { file: string; svg: string }[] = [];
  for (const o of outcomes) {
    const doc = o.result;
    if (doc === null || !PLOTTED.has(o.name)) continue;
    const sections = [...new Set(doc.figures.map((f) => f.section))];
    for (const section of sections) {
      const figs = doc.figures.filter((f) => f.section === section);
      const hasValue = (fs: BenchFigure[]): boolean => fs.some((f) => f.values.some(Number.isFinite));
      const modesHere = [...new Set(figs.map((f) => f.mode))];
      if (modesHere.length === 1 && figs.every((f) => f.x !== undefined)) {
        // One data plane against the number of services: one chart per unit, a line per metric.
        for (const unit of [...new Set(figs.map((f) => f.unit))]) {
          const uf = figs.filter((f) => f.unit === unit);
          if (!hasValue(uf)) continue;
          const metrics = [...new Set(uf.map((f) => f.metric))];
          out.push({
            file: `${slug(o.name)}--${slug(section)}--${slug(unit)}.svg`,
            svg: lineChart({ title: `${section} (${modesHere[0]})`, xLabel: 'services', unit, logX: true, series: metrics.map((metric) => ({ name: metric, points: uf.filter((f) => f.metric === metric).map((f) => ({ x: f.x!, y: spread(f.values) })) })) }),
          });
        }
        continue;
      }
      for (const metric of [...new Set(figs.map((f) => f.metric))]) {
        const mf = figs.filter((f) => f.metric === metric);
        if (!hasValue(mf)) continue;
        const modes = [...new Set(mf.map((f) => f.mode))];
        const unit = mf[0]!.unit;
        const title = `${section}: ${metric}`;
        const file = `${slug(o.name)}--${slug(section)}--${slug(metric)}.svg`;
        if (mf.every((f) => f.x !== undefined)) {
          out.push({ file, svg: lineChart({ title, xLabel: 'services', unit, logX: true, series: modes.map((mode) => ({ name: mode, points: mf.filter((f) => f.mode === mode).map((f) => ({ x: f.x!, y: spread(f.values) })) })) }) });
        } else {
          const rows = [...new Set(mf.map((f) => f.row))];
          out.push({ file, svg: barChart({ title, unit, categories: rows, series: modes.map((mode) => ({ name: mode, values: rows.map((row) => spread(mf.find((f) => f.mode === mode && f.row === row)?.values ?? [])) })) }) });
        }
      }
    }
    const cpu = cpuPerGbit(doc);
    if (cpu.length > 0) {
      out.push({ file: `${slug(o.name)}--cpu-per-gbit.svg`, svg: barChart({ title: `${o.name}: ${doc.subject} CPU per Gbit/s`, unit: 'cores per Gbit/s', categories: cpu.map((c) => c.row), series: [{ name: doc.subject, values: cpu.map((c) => c.perGbit) }] }) });
    }
  }
  return out;
}

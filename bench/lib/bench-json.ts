// The `--json FILE` output the benchmarks share, read by bench/report.ts: one flat list
// of figures, each one number per run, so that the report can take medians and spreads
// over runs of separate invocations and put ratios against the baselines measured in the
// same run. The text a bench prints stays as it was; this is the same figures as data.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';

export interface BenchFigure {
  /** A table of its own in the summary (e.g. "pod to pod", "services at scale"). */
  section: string;
  /** What is measured inside the section (a path, a header, a service count). */
  row: string;
  metric: string;
  unit: string;
  /** The data plane / implementation measured: tapir, kernel, iptables, nsd, C, TS ... */
  mode: string;
  /** One value per run; NaN (written as null) where a run did not get a figure. */
  values: number[];
  /** Which way is better, for the ratio's reading. */
  better: 'higher' | 'lower';
  /** The x coordinate of a line plot (e.g. the number of Services). */
  x?: number;
  /** CPU of the measured data plane over the same window, cores (1 = one core busy), per run. */
  cpu?: number[];
}

export interface Machine {
  cores: number;
  cpuModel: string;
  kernel: string;
  node: string;
  commit: string;
  loadavg: number[];
  at: string;
}

export interface BenchJson {
  bench: string;
  argv: string[];
  /** Ratios are taken of `subject` against every mode in `baselines`, row by row. */
  subject: string;
  baselines: string[];
  machineAtStart: Machine;
  machineAtEnd: Machine;
  figures: BenchFigure[];
  problems: string[];
}

export function machine(): Machine {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { /* not a checkout */ }
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel;
  } catch { /* not Linux */ }
  return { cores: cpus().length, cpuModel, kernel: release(), node: process.version, commit, loadavg: loadavg().map((x) => Number(x.toFixed(2))), at: new Date().toISOString() };
}

/** Collects figures while a bench runs and writes them on `write()`. */
export class BenchJsonWriter {
  readonly figures: BenchFigure[] = [];
  readonly problems: string[] = [];
  private readonly start = machine();
  readonly bench: string;
  readonly subject: string;
  readonly baselines: string[];
  constructor(bench: string, subject: string, baselines: string[]) {
    this.bench = bench;
    this.subject = subject;
    this.baselines = baselines;
  }

  add(f: BenchFigure): void {
    this.figures.push(f);
  }

  /** Appends one run's value to the figure of that section/row/metric/mode (creating it). */
  push(f: Omit<BenchFigure, 'values' | 'cpu'>, value: number, cpu?: number): void {
    let fig = this.figures.find((g) => g.section === f.section && g.row === f.row && g.metric === f.metric && g.mode === f.mode && g.x === f.x);
    if (fig === undefined) {
      fig = { ...f, values: [] };
      this.figures.push(fig);
    }
    fig.values.push(value);
    if (cpu !== undefined) (fig.cpu ??= []).push(cpu);
  }

  write(file: string): void {
    const doc: BenchJson = { bench: this.bench, argv: process.argv.slice(2), subject: this.subject, baselines: this.baselines, machineAtStart: this.start, machineAtEnd: machine(), figures: this.figures, problems: this.problems };
    writeFileSync(file, `${JSON.stringify(doc, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  }
}

/** Reads a bench's JSON back, nulls as NaN. */
export function readBenchJson(text: string): BenchJson {
  const doc = JSON.parse(text) as BenchJson;
  for (const f of doc.figures) {
    f.values = f.values.map((v) => (v === null ? NaN : v));
    if (f.cpu !== undefined) f.cpu = f.cpu.map((v) => (v === null ? NaN : v));
  }
  return doc;
}

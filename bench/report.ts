// The benchmark report (issue 12): runs the suite, each bench bounded in time, and writes
// a directory with
//   raw/<bench>-<n>.json|.txt  each invocation's --json output and its printed text,
//   <bench>.json               the invocations merged (one value per run per figure),
//   machine.json               cores, CPU model, kernel, Node, commit, load at start/end,
//   summary.md                 per bench the medians (min-max) and the ratios against the
//                              kernel / peer baselines measured in the same run,
//   *.svg                      the plots (bench/lib/svg.ts).
// A bench that fails or times out is recorded as failed in the summary; the others go on.
//
//   node bench/report.ts [--quick] [--out DIR] [--only lab,proxy-modes,...]
//   node bench/report.ts --render DIR   summary.md and plots again from DIR's JSON
//   node bench/report.ts --merge --out DIR --only B,...   runs B again into an earlier
//        report's DIR: B's results are replaced, the other benches' kept, and summary.md
//        names each later run with its commit and time (each bench's own load averages
//        stay in its row)
//   (scripts/bench.sh and `tapir bench` call this)
//
// Every invocation runs alone (2 cores: never two benches at once). Where a bench takes
// its runs inside one invocation (dns-pod) the report asks it for them; elsewhere the
// report invokes it once per run and merges, so that each run's load average is known.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machine, readBenchJson, type BenchJson, type Machine } from './lib/bench-json.ts';
import { fromDnsPod, fromIngress, mergeRuns, plots, summaryMarkdown, type BenchOutcome } from './lib/report-summary.ts';
import { hostStealSeconds } from './lib/tools.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface BenchSpec {
  name: string;
  script: string;
  /** The arguments, given the file the bench writes its JSON to. */
  args: (json: string) => string[];
  env?: Record<string, string>;
  invocations: number;
  timeoutS: number;
  /** How the bench hands over its JSON: --json FILE (default) or on stdout. */
  stdoutJson?: boolean;
  /** For benches with a JSON of their own: turn it into figures. */
  adapt?: (raw: unknown, argv: string[]) => BenchJson;
}

/**
 * The suite. quick: one run of the lab benches with short windows (the whole report in
 * under 10 minutes on a 2-core VM); full: at least 3 runs of everything, the issue's
 * service counts. 30,000 services is left out: 25k already took 419 MB in the agent and
 * the kernel modes' rule loads take minutes at that size on 2 cores.
 */
export function suite(quick: boolean): BenchSpec[] {
  const runs = quick ? 1 : 3;
  const s = quick ? '1' : '3';
  return [
    { name: 'micro', script: 'bench/micro.ts', args: (j) => ['--json', j], env: { BENCH_TIME_MS: quick ? '100' : '1000' }, invocations: 3, timeoutS: 300 },
    { name: 'services', script: 'bench/services.ts', args: (j) => ['--json', j], invocations: 3, timeoutS: 300 },
    { name: 'device', script: 'bench/device.ts', args: (j) => ['--seconds', s, '--json', j], invocations: quick ? 1 : 3, timeoutS: 300 },
    // Dual-stack labs: every pod-to-pod row over IPv4 and IPv6, against the kernel's paths of
    // each family; Tapir also without the kernel's UDP tunnel segmentation (what it buys).
    { name: 'lab', script: 'bench/lab.ts', args: (j) => ['--seconds', s, '--ip-family', 'dual', '--dataplanes', 'kernel,tapir,tapir-busy-poll,tapir-software-gso', '--json', j], invocations: runs, timeoutS: 800 },
    { name: 'proxy-modes', script: 'bench/proxy-modes.ts', args: (j) => ['--sections', 'traffic,ipv6', '--modes', 'iptables,nftables,tapir,tapir-busy-poll', '--seconds', s, '--json', j], invocations: runs, timeoutS: 900 },
    // What limits connections/s and request latency: the same figures with everything on
    // one CPU, where no wakeup crosses CPUs (bench/device.ts measures what one costs).
    { name: 'lab-one-cpu', script: 'bench/lab.ts', args: (j) => ['--seconds', s, '--dataplanes', 'kernel,tapir', '--metrics', 'conn', '--cpus', '0', '--json', j], invocations: runs, timeoutS: 400 },
    { name: 'proxy-modes-one-cpu', script: 'bench/proxy-modes.ts', args: (j) => ['--sections', 'traffic', '--modes', 'iptables,tapir', '--seconds', s, '--cpus', '0', '--json', j], invocations: runs, timeoutS: 600 },
    {
      name: 'proxy-modes-scale', script: 'bench/proxy-modes.ts', invocations: runs, timeoutS: quick ? 600 : 3600,
      args: (j) => ['--sections', 'scale', '--services', quick ? '1000' : '1000,5000,10000', '--program-timeout', '120', '--json', j],
    },
    {
      name: 'programming-latency', script: 'bench/programming-latency.ts', invocations: runs, timeoutS: quick ? 300 : 2400,
      args: (j) => [...(quick ? ['--sizes', '1000', '--changes', '10', '--no-manifest-compare'] : ['--sizes', '1000,5000,10000', '--changes', '50']), '--json', j],
    },
    // Issue 12's memory row: the agent at 25k Services with 250k endpoints, and after deleting them all.
    ...(quick ? [] : [{
      name: 'agent-memory-25k', script: 'bench/programming-latency.ts', invocations: runs, timeoutS: 900,
      args: (j: string) => ['--sizes', '25000', '--changes', '5', '--no-manifest-compare', '--after-delete', '--json', j],
    }]),
    {
      name: 'dns-pod', script: 'bench/dns-pod.ts', invocations: 1, timeoutS: quick ? 400 : 1800,
      args: (j) => ['--services', '1000', '--runs', String(quick ? 1 : 3), '--seconds', quick ? '2' : '5', ...(quick ? ['--mixes', 'cluster'] : []), '--json', j],
      adapt: (raw, argv) => fromDnsPod(raw as Parameters<typeof fromDnsPod>[0], argv),
    },
    {
      name: 'ingress', script: 'bench/ingress.ts', invocations: runs, timeoutS: quick ? 300 : 900, stdoutJson: true,
      // tapir-node-h2: the same proxy with node:http2 for h2, to show what the addon's session changes.
      args: () => ['--runs', '1', '--seconds', quick ? '2' : '5', '--warmup', quick ? '1' : '2', '--proxies', 'nginx,haproxy,tapir,tapir-node-h2', '--json'],
      adapt: (raw, argv) => fromIngress(raw as Parameters<typeof fromIngress>[0], argv, machine()),
    },
  ];
}

// The running bench is in a process group of its own (so that a timeout can end all of
// it), which the terminal's Ctrl-C does not reach: the report passes SIGINT/SIGTERM on,
// waits for the bench to take its labs down, and writes what it has.
let current: ReturnType<typeof spawn> | null = null;
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    interrupted = true;
    current?.kill('SIGINT');
  });
}

/** Runs one invocation with its output to `textFile`; SIGINT at the timeout (the benches take their labs down on it), SIGKILL to the group 60 s later. */
function invoke(spec: BenchSpec, args: string[], textFile: string): Promise<{ exit: string; stdout: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [join(ROOT, spec.script), ...args], { cwd: ROOT, env: { ...process.env, ...spec.env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    current = child;
    let text = '', stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; text += d; });
    child.stderr.on('data', (d: Buffer) => { text += d; process.stderr.write(`  ${spec.name}: ${d}`); });
    let timedOut = false;
    let kill: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGINT');
      kill = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } }, 60_000);
    }, spec.timeoutS * 1000);
    child.on('close', (code, signal) => {
      current = null;
      clearTimeout(timer);
      if (kill !== undefined) clearTimeout(kill);
      writeFileSync(textFile, text);
      done({ exit: timedOut ? `timed out after ${spec.timeoutS} s` : interrupted ? 'interrupted' : code === 0 ? 'ok' : `exit ${code ?? signal}`, stdout });
    });
  });
}

async function runBench(spec: BenchSpec, dir: string): Promise<BenchOutcome> {
  const docs: BenchJson[] = [];
  const outcome: BenchOutcome = { name: spec.name, command: '', status: 'ok', errors: [], invocations: [], result: null };
  for (let i = 1; i <= spec.invocations && !interrupted; i++) {
    const jsonFile = join(dir, 'raw', `${spec.name}-${i}.json`);
    const args = spec.args(jsonFile);
    outcome.command = `${Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v} `).join('')}node ${spec.script} ${spec.args('FILE').join(' ')}`;
    process.stderr.write(`[report] ${spec.name} ${i}/${spec.invocations}: ${outcome.command}\n`);
    const loadAtStart = loadavg();
    const steal0 = hostStealSeconds();
    const t0 = performance.now();
    const r = await invoke(spec, args, join(dir, 'raw', `${spec.name}-${i}.txt`));
    const seconds = (performance.now() - t0) / 1000;
    outcome.invocations.push({ seconds, loadAtStart, loadAtEnd: loadavg(), stealCores: (hostStealSeconds() - steal0) / seconds, exit: r.exit });
    if (r.exit !== 'ok') outcome.errors.push(`run ${i}: ${r.exit} (raw/${spec.name}-${i}.txt)`);
    try {
      let raw: unknown;
      if (spec.stdoutJson) {
        const start = r.stdout.indexOf('{');
        if (start < 0) throw new Error('no JSON on stdout');
        raw = JSON.parse(r.stdout.slice(start, r.stdout.lastIndexOf('}') + 1));
        writeFileSync(jsonFile, `${JSON.stringify(raw, null, 2)}\n`);
      } else {
        if (!existsSync(jsonFile)) throw new Error('wrote no JSON');
        raw = spec.adapt === undefined ? readBenchJson(readFileSync(jsonFile, 'utf8')) : JSON.parse(readFileSync(jsonFile, 'utf8'));
      }
      docs.push(spec.adapt === undefined ? (raw as BenchJson) : spec.adapt(raw, args));
    } catch (err) {
      if (r.exit === 'ok') outcome.errors.push(`run ${i}: ${(err as Error).message}`);
    }
  }
  outcome.result = mergeRuns(docs);
  if (outcome.errors.length > 0) outcome.status = 'failed';
  if (outcome.result !== null) writeFileSync(join(dir, `${spec.name}.json`), `${JSON.stringify(outcome.result, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`);
  return outcome;
}

export async function runReport(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { quick: { type: 'boolean', default: false }, out: { type: 'string' }, only: { type: 'string' }, render: { type: 'string' }, merge: { type: 'boolean', default: false } } });
  if (values.render !== undefined) return render(resolve(values.render));
  const earlier = values.merge ? earlierRecord(values.out, values.only) : null;
  if (earlier instanceof Error) {
    console.error(`bench report: ${earlier.message}`);
    return 2;
  }
  const all = suite(values.quick);
  const only = values.only?.split(',').filter((x) => x !== '');
  const unknown = (only ?? []).filter((n) => !all.some((s) => s.name === n));
  if (unknown.length > 0) {
    console.error(`bench report: no bench named ${unknown.join(', ')}; the suite is ${all.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const specs = only === undefined ? all : all.filter((s) => only.includes(s.name));
  const start = machine();
  const dir = resolve(values.out ?? join('/tmp', `tapir-bench-${start.at.replace(/[:.]/g, '-')}`));
  mkdirSync(join(dir, 'raw'), { recursive: true });
  const t0 = performance.now();
  const outcomes: BenchOutcome[] = [];
  for (const spec of specs) {
    if (interrupted) break;
    outcomes.push(await runBench(spec, dir));
  }
  const end = machine();
  const command = `scripts/bench.sh ${argv.join(' ')}`.trimEnd();
  const seconds = (performance.now() - t0) / 1000;
  const benches = outcomes.map((o) => ({ name: o.name, command: o.command, status: o.status, errors: o.errors, invocations: o.invocations }));
  let record: RunRecord = { command, quick: values.quick, seconds, start, end, benches };
  if (earlier !== null) {
    // The earlier run's record, with these benches in place of its own (in suite order).
    const kept = earlier.benches.filter((b) => !benches.some((n) => n.name === b.name));
    const order = (name: string): number => all.findIndex((x) => x.name === name);
    record = {
      ...earlier, seconds: earlier.seconds + seconds, end,
      benches: [...kept, ...benches].sort((a, b) => order(a.name) - order(b.name)),
      reruns: [...(earlier.reruns ?? []), { command, commit: start.commit, at: start.at, benches: benches.map((b) => b.name) }],
    };
    outcomes.splice(0, outcomes.length, ...outcomesOf(dir, record));
  }
  writeFileSync(join(dir, 'machine.json'), `${JSON.stringify(record, null, 2)}\n`);
  write(dir, record, outcomes);
  return interrupted ? 130 : 0;
}

/** machine.json: the run as a whole, enough to render the summary again from the directory. */
interface RunRecord {
  command: string;
  quick: boolean;
  seconds: number;
  start: Machine;
  end: Machine;
  benches: Omit<BenchOutcome, 'result'>[];
  /** Benches run again into the directory later (--merge), in order. */
  reruns?: { command: string; commit: string; at: string; benches: string[] }[];
}

/** --merge: the record of the report in --out, which --only's benches will replace. */
function earlierRecord(out: string | undefined, only: string | undefined): RunRecord | Error {
  if (out === undefined || only === undefined) return new Error('--merge needs --out DIR (an earlier report) and --only (the benches to run again)');
  const file = join(resolve(out), 'machine.json');
  if (!existsSync(file)) return new Error(`--merge: ${file} does not exist (no earlier report there)`);
  return JSON.parse(readFileSync(file, 'utf8')) as RunRecord;
}

/** The record's benches with their merged results read back from the directory. */
function outcomesOf(dir: string, record: RunRecord): BenchOutcome[] {
  return record.benches.map((b): BenchOutcome => {
    const file = join(dir, `${b.name}.json`);
    return { ...b, result: existsSync(file) ? readBenchJson(readFileSync(file, 'utf8')) : null };
  });
}

function write(dir: string, record: RunRecord, outcomes: BenchOutcome[]): void {
  const svgs = plots(outcomes);
  for (const p of svgs) writeFileSync(join(dir, p.file), p.svg);
  writeFileSync(join(dir, 'summary.md'), summaryMarkdown({ command: record.command, quick: record.quick, machineAtStart: record.start, machineAtEnd: record.end, seconds: record.seconds, reruns: record.reruns ?? [] }, outcomes, svgs.map((p) => p.file)));
  console.log(`report written to ${dir} (summary.md, ${svgs.length} plots); ${outcomes.filter((o) => o.status === 'failed').length} of ${outcomes.length} benches failed`);
}

/** --render DIR: summary.md and the plots again from a report directory's JSON (after a change to this code), no bench run. */
function render(dir: string): number {
  const record = JSON.parse(readFileSync(join(dir, 'machine.json'), 'utf8')) as RunRecord;
  write(dir, record, outcomesOf(dir, record));
  return 0;
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await runReport(process.argv.slice(2));

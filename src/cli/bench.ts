// `tapir bench`: the benchmark report of bench/report.ts (the same code scripts/bench.sh
// runs). The benches live in the checkout, not in the agent's package, so this runs
// bench/report.ts as a child with the same Node rather than importing it: src/ never
// depends on bench/.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const HELP = `Usage: tapir bench [--quick] [--out DIR] [--only micro,services,device,lab,proxy-modes,proxy-modes-scale,programming-latency,dns-pod,ingress]
       tapir bench --render DIR

Runs the benchmark suite, every bench bounded in time, and writes DIR (default
/tmp/tapir-bench-<time>) with the raw JSON, summary.md (medians, spreads and ratios
against the kernel and peer baselines of the same run) and SVG plots. --quick: one run
of the lab benches with short windows. --render DIR writes summary.md and the plots
again from DIR's JSON without running anything. Needs root and a checkout (bench/).`;

export async function run(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  const report = fileURLToPath(new URL('../../bench/report.ts', import.meta.url));
  if (!existsSync(report)) {
    console.error(`tapir bench: ${report} is missing; the benchmarks run from a Tapir checkout (scripts/bench.sh)`);
    return 1;
  }
  const child = spawn(process.execPath, [report, ...args], { stdio: 'inherit' });
  // Ctrl-C reaches the child through the terminal's process group; wait for its cleanup.
  process.on('SIGINT', () => {});
  return await new Promise<number>((done) => child.on('close', (code) => done(code ?? 1)));
}

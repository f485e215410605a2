// Shared by the benchmarks: the C load tools in bench/c (built on demand with gcc into
// bench/c/build), CPU accounting from /proc, medians and percentiles.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cDir = fileURLToPath(new URL('../c', import.meta.url));
export const C_BUILD_DIR = `${cDir}/build`;

/** Compiles bench/c/NAME.c for each name whose binary is missing or older than its source or a header of bench/c. */
export function buildCTools(names: string[]): void {
  mkdirSync(C_BUILD_DIR, { recursive: true });
  const headers = Math.max(0, ...readdirSync(cDir).filter((f) => f.endsWith('.h')).map((f) => statSync(`${cDir}/${f}`).mtimeMs));
  for (const name of names) {
    const src = `${cDir}/${name}.c`, out = `${C_BUILD_DIR}/${name}`;
    if (existsSync(out) && statSync(out).mtimeMs >= Math.max(statSync(src).mtimeMs, headers)) continue;
    execFileSync('gcc', ['-O2', '-Wall', '-o', out, src], { stdio: 'inherit' });
  }
}

const clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** User + system CPU seconds a process has used so far (0 if it is gone). */
export function cpuSeconds(pid: number): number {
  try {
    // Fields after the ")" that closes comm: utime is field 14, stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return 0;
  }
}

/** Times a process has gone to sleep of its own accord (voluntary context switches of its main thread; 0 if it is gone): a forwarder's sleeps, each ended by a wakeup. */
export function voluntarySleeps(pid: number): number {
  try {
    return Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Pins this process, every thread of it, to the CPUs of `list` (taskset's list: "0",
 * "0,1"): whatever it starts from then on inherits the mask (labs, their agents and
 * pods' workloads, the load tools). Returns the list as the kernel now has it.
 */
export function pinToCpus(list: string): string {
  execFileSync('taskset', ['-a', '-c', '-p', list, String(process.pid)], { stdio: 'ignore' });
  return /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? list;
}

/**
 * Jiffies of every core together since boot, from /proc/stat's first line: busy (not
 * idle, iowait or steal), steal (time a vCPU had work and the host ran something else:
 * a VM's noisy neighbours; 0 on bare metal) and their total.
 */
export function machineJiffies(): { busy: number; steal: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is counted in user already)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]! - f[7]!, steal: f[7]!, total };
}

/** CPU seconds the host has taken from this VM since boot, every vCPU summed. */
export function hostStealSeconds(): number {
  return machineJiffies().steal / clockTicks;
}

/** cpuSeconds plus the CPU of its children that have ended and been waited for (cutime, cstime). */
export function cpuSecondsWithChildren(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / clockTicks;
  } catch {
    return 0;
  }
}

/** The p-quantile (0..1) by nearest rank of the sorted finite values; NaN when there are none. */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
}

export function median(xs: number[]): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s.length % 2 === 1 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-';
}

/** On SIGINT or SIGTERM: says so, runs `cleanup` (namespaces, processes, files) and exits 130. */
export function cleanUpOnSignal(cleanup: () => void): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      process.stderr.write(`\n${signal}: cleaning up\n`);
      cleanup();
      process.exit(130);
    });
  }
}

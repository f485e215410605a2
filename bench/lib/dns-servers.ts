// The pieces bench/dns.ts runs: network namespaces named tbdns-<tag>-<role> (the
// bench's own prefix, so a leftover is recognisable and never taken for a test's),
// processes started inside them in their own process group and ended with it, NSD's
// configuration, and a process's memory: RSS and PSS from /proc (NSD forks, and its
// processes share pages, so their RSS would count those pages twice; PSS does not), and
// a full GC of a Node process through its inspector (SIGUSR1 opens it on the port that
// NODE_OPTIONS=--inspect-port gave, on the namespace's loopback; a small client in the
// same namespace asks for HeapProfiler.collectGarbage, then process.memoryUsage()).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class BenchNetns {
  readonly name: string;
  constructor(tag: string, role: string) {
    this.name = `tbdns-${tag}-${role}`;
    execFileSync('ip', ['netns', 'add', this.name], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.exec(['ip', 'link', 'set', 'lo', 'up']);
  }
  /** A short command inside the namespace; throws with its stderr. */
  exec(argv: string[], timeoutMs = 30_000): string {
    try {
      return execFileSync('ip', ['netns', 'exec', this.name, ...argv], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`in ${this.name}: ${argv.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  }
  /** Every process still in the namespace is killed, then the namespace (and its devices) removed. */
  destroy(): void {
    try {
      for (const pid of execFileSync('ip', ['netns', 'pids', this.name], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
      }
    } catch { /* already gone */ }
    try { execFileSync('ip', ['netns', 'delete', this.name], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
}

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Resolves once the output matches (false when the process ended or timeoutMs passed). */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<boolean>;
  /** SIGTERM to its group, SIGKILL after graceMs; resolves when it ended. */
  stop(graceMs: number): Promise<void>;
  exited: Promise<number | null>;
}

const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try { process.kill(-child.pid, signal); } catch { /* gone */ }
}

/** Ends every process this module started (the bench's cleanup and signal handler). */
export function killAll(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
}

/** argv inside `ns` (its own process group); stdout and stderr kept together, or stdout into `stdoutFile`. */
export function startIn(ns: BenchNetns, argv: string[], opts: { env?: Record<string, string>; stdoutFile?: string } = {}): Proc {
  let out = '';
  const waiters: (() => void)[] = [];
  const fd = opts.stdoutFile === undefined ? null : openSync(opts.stdoutFile, 'w');
  const child = spawn('ip', ['netns', 'exec', ns.name, ...argv], { detached: true, env: { ...process.env, ...opts.env }, stdio: ['ignore', fd ?? 'pipe', 'pipe'] });
  if (fd !== null) closeSync(fd);
  live.add(child);
  const onData = (d: Buffer): void => { out += d.toString(); for (const w of waiters.splice(0)) w(); };
  child.stdout?.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (err) => { out += `\n${err.message}`; });
    child.on('close', (code) => { live.delete(child); for (const w of waiters.splice(0)) w(); resolve(code); });
  });
  let ended = false;
  void exited.then(() => { ended = true; });
  return {
    child, exited,
    output: () => out,
    async waitFor(pattern, timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (ended || performance.now() > deadline) return false;
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 100))]);
      }
      return true;
    },
    async stop(graceMs) {
      killGroup(child, 'SIGTERM');
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs argv in `ns` to its end, at most timeoutMs; the output, and whether it ended by itself with 0. */
export async function runIn(ns: BenchNetns, argv: string[], timeoutMs: number, stdoutFile?: string): Promise<{ ok: boolean; output: string; timedOut: boolean }> {
  const p = startIn(ns, argv, stdoutFile === undefined ? {} : { stdoutFile });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; void p.stop(3000); }, timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  return { ok: code === 0 && !timedOut, output: p.output(), timedOut };
}

/** NSD in the foreground: one serving process, no privilege drop or chroot, no response rate limiting (it would throttle the bench's one client). */
export function writeNsdConfig(dir: string, name: string, address: string, zonesDir: string, zones: { zone: string; file: string }[]): string {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, `server:
  ip-address: ${address}
  port: 53
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "${zonesDir}"
  pidfile: "${dir}/${name}.pid"
  xfrdfile: "${dir}/${name}.xfrd"
  zonelistfile: "${dir}/${name}.zonelist"
  database: ""
  logfile: "${dir}/${name}.log"
  verbosity: 1
  rrl-ratelimit: 0
  # Answers without the apex NS in the authority section, as CoreDNS's kubernetes plugin answers.
  minimal-responses: yes
remote-control:
  control-enable: no
${zones.map((z) => `zone:\n  name: ${z.zone}\n  zonefile: ${z.file}\n`).join('')}`);
  return file;
}

export interface Memory { rss: number; pss: number }

/** RSS and PSS (bytes) summed over the processes; NaN when none could be read. */
export function memoryOf(pids: number[]): Memory {
  let rss = 0, pss = 0, read = 0;
  for (const pid of pids) {
    try {
      const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
      rss += Number(/^Rss:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN) * 1024;
      pss += Number(/^Pss:\s+(\d+) kB/m.exec(text)?.[1] ?? NaN) * 1024;
      read++;
    } catch { /* gone */ }
  }
  return read === 0 ? { rss: NaN, pss: NaN } : { rss, pss };
}

/** The pids of the processes inside `ns` whose name (comm) starts with `comm` (NSD's are "nsd: main", "nsd: server 1", "nsd: xfrd"). */
export function pidsNamed(ns: BenchNetns, comm: string): number[] {
  let pids: number[] = [];
  try { pids = execFileSync('ip', ['netns', 'pids', ns.name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number); } catch { return []; }
  return pids.filter((pid) => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith(comm); } catch { return false; } });
}

const GC_CLIENT = `
const port = process.argv[1];
let list;
for (let i = 0; i < 50 && list === undefined; i++) {
  try { list = await (await fetch('http://127.0.0.1:' + port + '/json/list')).json(); } catch { await new Promise((r) => setTimeout(r, 100)); }
}
if (list === undefined) throw new Error('no inspector on 127.0.0.1:' + port);
const ws = new WebSocket(list[0].webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('inspector websocket failed')); });
const pending = new Map();
let id = 0;
ws.onmessage = (e) => { const m = JSON.parse(e.data); pending.get(m.id)?.(m); };
const call = (method, params = {}) => new Promise((r) => { pending.set(++id, r); ws.send(JSON.stringify({ id, method, params })); });
await call('HeapProfiler.collectGarbage');
await call('HeapProfiler.collectGarbage');
const r = await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
console.log(r.result.result.value);
ws.close();
`;

export const INSPECT_PORT = 9229;

/** Opens the inspector of `pid` (a Node process started with NODE_OPTIONS=--inspect-port=127.0.0.1:INSPECT_PORT in `ns`), collects garbage, returns its process.memoryUsage(). */
export async function collectGarbage(ns: BenchNetns, pid: number): Promise<NodeJS.MemoryUsage> {
  process.kill(pid, 'SIGUSR1');
  const r = await runIn(ns, [process.execPath, '--input-type=module', '-e', GC_CLIENT, String(INSPECT_PORT)], 30_000);
  if (!r.ok) throw new Error(`garbage collection through the inspector failed: ${r.output.trim().slice(-500)}`);
  return JSON.parse(r.output.trim().split('\n').at(-1)!) as NodeJS.MemoryUsage;
}

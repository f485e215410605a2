// Pod-to-pod through Tapir against the kernel (Linux bridge + kernel VXLAN) on the same
// lab topology, in the same run: TCP Gbit/s (iperf3, one stream), UDP packets/s received
// (64-byte payloads, bench/c/udpblast with sendmmsg/recvmmsg), TCP connections/s
// (bench/c/connrate: connect + RST, one in flight). Same node (web-1a -> web-1b) and
// across nodes (web-1a -> web-2a). The labs run one after the other, so they never
// compete for the 2 cores; each measurement is bounded in time.
//
//   node bench/lab.ts [--seconds 3] [--runs 1]
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildCTools, C_BUILD_DIR, cpuSeconds, median, ratio } from './lib/tools.ts';

const TAPIR = fileURLToPath(new URL('../bin/tapir', import.meta.url));
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, runs: { type: 'string', default: '1' } } });
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);

type Dataplane = 'tapir' | 'kernel';
interface Figure { value: number; cpu: number }
const METRICS = ['tcp', 'udp', 'conn'] as const;
type Metric = (typeof METRICS)[number];
const PATHS = { 'same node': ['web-1a', 'web-1b'], 'across nodes': ['web-1a', 'web-2a'] } as const;
type PathName = keyof typeof PATHS;

function tapir(...args: string[]): string {
  return execFileSync(TAPIR, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
}

class BenchLab {
  readonly name: string;
  readonly dataplane: Dataplane;
  ips: Record<string, string> = {};
  agentPids: number[] = [];

  constructor(dataplane: Dataplane) {
    this.dataplane = dataplane;
    this.name = `bench-${dataplane}-${randomBytes(2).toString('hex')}`;
  }

  up(): void {
    tapir('lab', 'up', '--name', this.name, '--dataplane', this.dataplane);
    const status = JSON.parse(tapir('lab', 'status', '--name', this.name, '--json')) as { pods: { name: string; ip: string }[] };
    this.ips = Object.fromEntries(status.pods.map((p) => [p.name, p.ip]));
    const state = JSON.parse(readFileSync(`/run/tapir/lab/${this.name}/state.json`, 'utf8')) as { nodes: { agent: { pid: number | null } | null }[] };
    this.agentPids = state.nodes.map((n) => n.agent?.pid ?? 0).filter((p) => p > 0);
  }

  down(): void {
    try { tapir('lab', 'down', '--name', this.name); } catch { /* reported by the caller's output */ }
  }

  exec(pod: string, ...argv: string[]): string {
    return tapir('lab', 'exec', '--name', this.name, pod, '--', ...argv);
  }

  /** Runs `work` while measuring the agents' CPU (fraction of one core, all agents summed). */
  async measured(work: () => Promise<number> | number): Promise<Figure> {
    const c0 = this.agentPids.reduce((s, p) => s + cpuSeconds(p), 0);
    const t0 = performance.now();
    const value = await work();
    const wall = (performance.now() - t0) / 1000;
    const c1 = this.agentPids.reduce((s, p) => s + cpuSeconds(p), 0);
    return { value, cpu: (c1 - c0) / wall };
  }

  /**
   * Starts a server in a pod, bounded by `timeout` so it ends by itself; `stop()` waits
   * for it (at most `graceMs`) and returns what it printed.
   */
  background(pod: string, limitSeconds: number, ...argv: string[]): { stop(graceMs?: number): Promise<string> } {
    const child = spawn(TAPIR, ['lab', 'exec', '--name', this.name, pod, '--', 'timeout', '-s', 'INT', String(limitSeconds), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    const closed = new Promise<string>((r) => child.on('close', () => r(out)));
    return { stop: (graceMs = (limitSeconds + 2) * 1000) => Promise.race([closed, sleep(graceMs).then(() => out)]) };
  }

  async tcp(from: string, to: string): Promise<Figure> {
    const port = String(5400 + Math.floor(Math.random() * 500));
    const server = this.background(to, SECONDS + 10, 'iperf3', '-s', '-1', '-p', port);
    await sleep(300);
    const fig = await this.measured(() => {
      const out = this.exec(from, 'iperf3', '-c', this.ips[to]!, '-p', port, '-t', String(SECONDS), '-J');
      return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
    });
    await server.stop();
    return fig;
  }

  async udp(from: string, to: string): Promise<Figure> {
    const port = String(6400 + Math.floor(Math.random() * 500));
    const recv = this.background(to, SECONDS + 10, `${C_BUILD_DIR}/udpblast`, 'recv', '0.0.0.0', port, String(SECONDS));
    await sleep(300);
    const fig = await this.measured(async () => {
      this.exec(from, `${C_BUILD_DIR}/udpblast`, 'send', this.ips[to]!, port, String(SECONDS + 0.5), '64');
      const out = await recv.stop(2000);
      const m = /received (\d+) seconds ([\d.]+)/.exec(out);
      return m === null ? NaN : Number(m[1]) / Number(m[2]);
    });
    return fig;
  }

  async conn(from: string, to: string): Promise<Figure> {
    const port = String(7400 + Math.floor(Math.random() * 500));
    const server = this.background(to, SECONDS + 1, `${C_BUILD_DIR}/connrate`, 'server', '0.0.0.0', port);
    await sleep(300);
    const fig = await this.measured(() => {
      const out = this.exec(from, `${C_BUILD_DIR}/connrate`, 'client', this.ips[to]!, port, String(SECONDS));
      const m = /connections (\d+) seconds ([\d.]+)/.exec(out);
      return m === null ? NaN : Number(m[1]) / Number(m[2]);
    });
    await server.stop();
    return fig;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function main(): Promise<void> {
  buildCTools(['udpblast', 'connrate']);
  const results = new Map<string, Figure[]>();
  const key = (dp: Dataplane, path: PathName, m: Metric): string => `${dp}|${path}|${m}`;
  for (let run = 0; run < RUNS; run++) {
    for (const dp of ['kernel', 'tapir'] as const) {
      const lab = new BenchLab(dp);
      try {
        process.stderr.write(`run ${run + 1}/${RUNS}: ${dp} lab ${lab.name}\n`);
        lab.up();
        for (const [path, [from, to]] of Object.entries(PATHS) as [PathName, readonly [string, string]][]) {
          for (const m of METRICS) {
            const fig = await lab[m](from, to);
            process.stderr.write(`  ${path} ${m}: ${fig.value.toFixed(m === 'tcp' ? 2 : 0)} (agents ${Math.round(fig.cpu * 100)}% CPU)\n`);
            const k = key(dp, path, m);
            results.set(k, [...(results.get(k) ?? []), fig]);
          }
        }
      } finally {
        lab.down();
      }
    }
  }
  const fmt = (m: Metric, v: number): string => (!Number.isFinite(v) ? '-' : m === 'tcp' ? `${v.toFixed(2)} Gbit/s` : m === 'udp' ? `${(v / 1000).toFixed(0)} kpps` : `${(v / 1000).toFixed(1)}k/s`);
  console.log(`\nPod to pod, Tapir vs kernel (bridge + VXLAN), median of ${RUNS} run(s) of ${SECONDS} s; 2 cores shared by load and data plane`);
  console.log('| path | metric | kernel | tapir | tapir/kernel | tapir agents CPU |');
  console.log('|---|---|---|---|---|---|');
  for (const path of Object.keys(PATHS) as PathName[]) {
    for (const m of METRICS) {
      const k = median((results.get(key('kernel', path, m)) ?? []).map((f) => f.value));
      const t = median((results.get(key('tapir', path, m)) ?? []).map((f) => f.value));
      const cpu = median((results.get(key('tapir', path, m)) ?? []).map((f) => f.cpu));
      const name = m === 'tcp' ? 'TCP Gbit/s' : m === 'udp' ? 'UDP 64 B pkt/s received' : 'TCP conn/s';
      console.log(`| ${path} | ${name} | ${fmt(m, k)} | ${fmt(m, t)} | ${ratio(t, k)} | ${Number.isFinite(cpu) ? `${Math.round(cpu * 100)}%` : '-'} |`);
    }
  }
}

await main();

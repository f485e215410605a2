// Traffic measurements between lab pods, shared by bench/lab.ts (pod to pod) and
// bench/proxy-modes.ts (pod to a service's cluster IP): TCP Gbit/s (iperf3, one
// stream), UDP 64-byte packets/s received (bench/c/udpblast), TCP connections/s
// (bench/c/connrate: connect + RST, one in flight), HTTP request latency (bench/c/httplat,
// one connection per request). The client talks to `target`; the servers listen on
// `serverPort` in every pod of `servers` (a service may pick any of its endpoints), and
// `servedBy` says which of them got the traffic of a one-flow test. An IPv6 target
// (a dual-stack lab) is measured the same way, the servers on [::]. Every step is
// bounded in time; the CPU figure is the lab's agents' (fraction of one core, summed).
import { cpus } from 'node:os';
import type { BenchLab } from './lab.ts';
import { C_BUILD_DIR, machineJiffies } from './tools.ts';

export interface Target { ip: string; port: number }

/** The wildcard address servers bind for a target of that family (:: takes IPv4 too, but only where the pod has IPv6). */
function anyAddress(target: Target): string {
  return target.ip.includes(':') ? '::' : '0.0.0.0';
}
/**
 * A measurement: `cpu` is the lab's agents' CPU (cores, summed), `machine` the whole
 * machine's busy CPU in the same interval (cores: load, kernel and agents together, on
 * every CPU, pinned or not), `steal` the cores' time the host gave to others while they
 * had work (a VM's noisy neighbours: a figure taken with steal above a few hundredths of
 * a core is not from a quiet machine), `agentSleeps` the agents' sleeps per second over
 * it (NaN with no agent).
 */
export interface Figure { value: number; cpu: number; machine: number; steal: number; agentSleeps: number; servedBy: string[] }

/** Runs `work` while measuring the agents' CPU and the machine's. */
async function measured(lab: BenchLab, work: () => Promise<number>): Promise<Omit<Figure, 'servedBy'>> {
  const c0 = lab.cpu().agents;
  const s0 = lab.agentSleeps();
  const m0 = machineJiffies();
  const t0 = performance.now();
  const value = await work();
  const wall = (performance.now() - t0) / 1000;
  const m1 = machineJiffies();
  const cores = cpus().length;
  const agentSleeps = lab.agentPids.length === 0 ? NaN : (lab.agentSleeps() - s0) / wall;
  const share = (d: number): number => (m1.total === m0.total ? NaN : (d / (m1.total - m0.total)) * cores);
  return { value, cpu: (lab.cpu().agents - c0) / wall, agentSleeps, machine: share(m1.busy - m0.busy), steal: share(m1.steal - m0.steal) };
}

/** Servers on every pod of `servers`, each ended by `timeout` after limitSeconds at the latest. */
async function startServers(lab: BenchLab, servers: string[], limitSeconds: number, argv: string[], ready: RegExp) {
  const started = servers.map((pod) => ({ pod, server: lab.background(pod, limitSeconds, argv) }));
  for (const { pod, server } of started) {
    if (!(await server.waitFor(ready, 10_000))) {
      await Promise.all(started.map((s) => s.server.stop(0)));
      throw new Error(`${argv[0]} did not start in pod ${pod}: ${server.output().trim()}`);
    }
  }
  return started;
}

export async function tcpThroughput(lab: BenchLab, client: string, servers: string[], target: Target, serverPort: number, seconds: number): Promise<Figure> {
  const started = await startServers(lab, servers, seconds + 20, ['iperf3', '-s', '-1', '--forceflush', '-p', String(serverPort)], /Server listening/);
  try {
    const fig = await measured(lab, async () => {
      const family = target.ip.includes(':') ? ['-6'] : [];
      const out = await lab.exec(client, ['iperf3', ...family, '-c', target.ip, '-p', String(target.port), '-t', String(seconds), '-J'], (seconds + 20) * 1000);
      return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9;
    });
    const outputs = await Promise.all(started.map(async ({ pod, server }) => ({ pod, out: await server.stop(1500) })));
    return { ...fig, servedBy: outputs.filter((o) => /Accepted connection/.test(o.out)).map((o) => o.pod) };
  } finally {
    await Promise.all(started.map((s) => s.server.stop(0)));
  }
}

export async function udpRate(lab: BenchLab, client: string, servers: string[], target: Target, serverPort: number, seconds: number): Promise<Figure> {
  // The receiver counts for `seconds` from its first datagram; the sender runs a little longer.
  const started = await startServers(lab, servers, seconds + 15, [`${C_BUILD_DIR}/udpblast`, 'recv', anyAddress(target), String(serverPort), String(seconds)], /ready/);
  try {
    const servedBy: string[] = [];
    const fig = await measured(lab, async () => {
      await lab.exec(client, [`${C_BUILD_DIR}/udpblast`, 'send', target.ip, String(target.port), String(seconds + 0.5), '64'], (seconds + 20) * 1000);
      let rate = 0;
      const outputs = await Promise.all(started.map(async ({ pod, server }) => ({ pod, out: await server.stop(1500) })));
      for (const { pod, out } of outputs) {
        const m = /received (\d+) seconds ([\d.]+)/.exec(out);
        if (m === null || Number(m[1]) === 0) continue;
        rate += Number(m[1]) / Number(m[2]);
        servedBy.push(pod);
      }
      return servedBy.length === 0 ? NaN : rate;
    });
    return { ...fig, servedBy };
  } finally {
    await Promise.all(started.map((s) => s.server.stop(0)));
  }
}

export async function connectionRate(lab: BenchLab, client: string, servers: string[], target: Target, serverPort: number, seconds: number): Promise<Figure> {
  const started = await startServers(lab, servers, seconds + 20, [`${C_BUILD_DIR}/connrate`, 'server', anyAddress(target), String(serverPort)], /ready/);
  try {
    const fig = await measured(lab, async () => {
      const out = await lab.exec(client, [`${C_BUILD_DIR}/connrate`, 'client', target.ip, String(target.port), String(seconds)], (seconds + 20) * 1000);
      const m = /connections (\d+) seconds ([\d.]+)/.exec(out);
      return m === null ? NaN : Number(m[1]) / Number(m[2]);
    });
    return { ...fig, servedBy: [] };
  } finally {
    await Promise.all(started.map((s) => s.server.stop(0)));
  }
}

/** Sequential HTTP requests (a new connection each) to a running HTTP server; p50 and p99 in µs. */
export async function httpLatency(lab: BenchLab, client: string, target: Target, seconds: number): Promise<{ p50: Figure; p99: Figure; requests: number; failed: number }> {
  let p99 = NaN, requests = 0, failed = 0;
  const fig = await measured(lab, async () => {
    const out = await lab.exec(client, [`${C_BUILD_DIR}/httplat`, 'latency', target.ip, String(target.port), String(seconds), '200000'], (seconds + 20) * 1000);
    const m = /requests (\d+) failed (\d+) seconds [\d.]+ p50_us ([\d.-]+) p99_us ([\d.-]+)/.exec(out);
    if (m === null || Number(m[1]) === 0) return NaN;
    requests = Number(m[1]);
    failed = Number(m[2]);
    p99 = Number(m[4]);
    return Number(m[3]);
  });
  return { p50: { ...fig, servedBy: [] }, p99: { ...fig, value: p99, servedBy: [] }, requests, failed };
}

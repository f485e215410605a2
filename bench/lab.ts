// Pod-to-pod through Tapir against the kernel (Linux bridge + kernel VXLAN) on the same
// lab topology, in the same run: TCP Gbit/s (iperf3, one stream), UDP packets/s received
// (64-byte payloads, bench/c/udpblast with sendmmsg/recvmmsg), TCP connections/s
// (bench/c/connrate: connect + RST, one in flight). Same node (web-1a -> web-1b) and
// across nodes (web-1a -> web-2a). The labs run one after the other, so they never
// compete for the 2 cores; each measurement is bounded in time.
//
//   node bench/lab.ts [--seconds 3] [--runs 1] [--json FILE]
import { parseArgs } from 'node:util';
import { BenchLab, downLabsOnSignal, type Dataplane } from './lib/lab.ts';
import { connectionRate, tcpThroughput, udpRate, type Figure } from './lib/load.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { buildCTools, median, ratio } from './lib/tools.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, runs: { type: 'string', default: '1' }, json: { type: 'string' } } });
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);

const METRICS = ['tcp', 'udp', 'conn'] as const;
type Metric = (typeof METRICS)[number];
const PATHS = { 'same node': ['web-1a', 'web-1b'], 'across nodes': ['web-1a', 'web-2a'] } as const;
type PathName = keyof typeof PATHS;

/** One pod-to-pod measurement; ports vary so that nothing left from a previous test is in the way. */
function measure(lab: BenchLab, m: Metric, from: string, to: string): Promise<Figure> {
  const port = (base: number): number => base + Math.floor(Math.random() * 500);
  const target = (p: number): { ip: string; port: number } => ({ ip: lab.podIP(to), port: p });
  switch (m) {
    case 'tcp': { const p = port(5400); return tcpThroughput(lab, from, [to], target(p), p, SECONDS); }
    case 'udp': { const p = port(6400); return udpRate(lab, from, [to], target(p), p, SECONDS); }
    case 'conn': { const p = port(7400); return connectionRate(lab, from, [to], target(p), p, SECONDS); }
  }
}

async function main(): Promise<void> {
  downLabsOnSignal();
  buildCTools(['udpblast', 'connrate']);
  const results = new Map<string, Figure[]>();
  const key = (dp: Dataplane, path: PathName, m: Metric): string => `${dp}|${path}|${m}`;
  for (let run = 0; run < RUNS; run++) {
    for (const dp of ['kernel', 'tapir'] as const) {
      const lab = new BenchLab(dp);
      try {
        process.stderr.write(`run ${run + 1}/${RUNS}: ${dp} lab ${lab.name}\n`);
        await lab.up();
        for (const [path, [from, to]] of Object.entries(PATHS) as [PathName, readonly [string, string]][]) {
          for (const m of METRICS) {
            const fig = await measure(lab, m, from, to);
            process.stderr.write(`  ${path} ${m}: ${fig.value.toFixed(m === 'tcp' ? 2 : 0)} (agents ${Math.round(fig.cpu * 100)}% CPU)\n`);
            const k = key(dp, path, m);
            results.set(k, [...(results.get(k) ?? []), fig]);
          }
        }
      } finally {
        await lab.down();
      }
    }
  }
  if (values.json !== undefined) {
    const out = new BenchJsonWriter('lab', 'tapir', ['kernel']);
    const UNITS = { tcp: ['TCP Gbit/s', 'Gbit/s'], udp: ['UDP 64 B pkt/s received', 'pkt/s'], conn: ['TCP connections/s', 'conn/s'] } as const;
    for (const [k, figs] of results) {
      const [mode, path, m] = k.split('|') as [Dataplane, PathName, Metric];
      out.add({ section: 'pod to pod', row: path, metric: UNITS[m][0], unit: UNITS[m][1], mode, better: 'higher', values: figs.map((f) => f.value), cpu: figs.map((f) => f.cpu) });
    }
    out.write(values.json);
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

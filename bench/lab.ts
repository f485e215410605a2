// Pod-to-pod through Tapir against the kernel (Linux bridge + kernel VXLAN) on the same
// lab topology, in the same run: TCP Gbit/s (iperf3, one stream), UDP packets/s received
// (64-byte payloads, bench/c/udpblast with sendmmsg/recvmmsg), TCP connections/s
// (bench/c/connrate: connect + RST, one in flight). Same node (web-1a -> web-1b) and
// across nodes (web-1a -> web-2a). The labs run one after the other, so they never
// compete for the 2 cores; each measurement is bounded in time.
//
// --ip-family dual: both labs dual-stack, and every path measured over IPv6 too, to
// the pod's IPv6 address (rows "same node (IPv6)", "across nodes (IPv6)"): the kernel's
// IPv6 bridge and VXLAN paths against Tapir's in the same run. --dataplanes picks
// which labs run (the kernel baseline alone: --dataplanes kernel).
//
// --underlay ipv6: both labs carry the overlay over the nodes' IPv6 underlay addresses
// (`lab up --underlay ipv6`, so dual-stack: --ip-family dual is implied): Tapir's IPv6
// UDP socket against the kernel VXLAN device with IPv6 local and remote ends, both at
// the pod MTU of 1430. The across-nodes rows are the ones the underlay changes.
//
// Dataplane tapir-busy-poll: Tapir with the agents busy-polling --busy-poll
// microseconds (default 200) after traffic (busyPollMicros in the agent config, through
// the default topology with an `agent:` section), measured beside the others.
// Dataplane tapir-software-gso: Tapir with the kernel's UDP tunnel segmentation off
// (tunnelOffload: false), every TSO frame for the other node cut and checksummed in
// TypeScript as on kernels before 6.17: what the offload buys, in the same run.
//
// Where a connection's time goes: with each TCP connections/s figure, the agents' CPU
// and their sleeps per connection (voluntary context switches of the agents' main
// threads over the window: every sleep is a wakeup some frame waited for). With each
// TCP Gbit/s figure, the agents' sleeps per MB carried (how much one wakeup moves).
// --cpus LIST (taskset's list, e.g. 0) pins the bench and all it starts (the labs'
// agents, pods' workloads and the load tools) to those CPUs: with --cpus 0 no wakeup
// crosses CPUs, for either dataplane. bench/device.ts measures what one costs.
// --metrics picks the figures (default tcp,udp,conn).
//
//   node bench/lab.ts [--seconds 3] [--runs 1] [--ip-family ipv4|dual] [--underlay ipv4|ipv6] [--dataplanes kernel,tapir,tapir-busy-poll,tapir-software-gso] [--busy-poll US]
//        [--cpus LIST] [--metrics tcp,udp,conn] [--json FILE]
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { MAX_BUSY_POLL_MICROS } from '../src/device/busy-poll.ts';
import type { LabAgentSettings } from '../src/lab/topology.ts';
import { BenchLab, downLabsOnSignal, type Dataplane } from './lib/lab.ts';
import { connectionRate, tcpThroughput, udpRate, type Figure } from './lib/load.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { buildCTools, median, pinToCpus, ratio } from './lib/tools.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' }, runs: { type: 'string', default: '1' }, json: { type: 'string' },
    'ip-family': { type: 'string', default: 'ipv4' }, underlay: { type: 'string', default: 'ipv4' }, dataplanes: { type: 'string', default: 'kernel,tapir' },
    'busy-poll': { type: 'string', default: '200' }, cpus: { type: 'string' }, metrics: { type: 'string', default: 'tcp,udp,conn' },
  },
});
const BUSY_POLL = Number(values['busy-poll']);
if (!Number.isInteger(BUSY_POLL) || BUSY_POLL < 1 || BUSY_POLL > MAX_BUSY_POLL_MICROS) throw new Error(`--busy-poll must be 1..${MAX_BUSY_POLL_MICROS} microseconds, not ${values['busy-poll']}`);
/** kernel, tapir, and Tapir with busy polling or without the tunnel offload (the default topology with an `agent:` section). */
type Mode = Dataplane | 'tapir-busy-poll' | 'tapir-software-gso';
const MODES: readonly Mode[] = ['kernel', 'tapir', 'tapir-busy-poll', 'tapir-software-gso'];
const AGENT_SETTINGS: Partial<Record<Mode, LabAgentSettings>> = {
  'tapir-busy-poll': { busyPollMicros: BUSY_POLL },
  'tapir-software-gso': { tunnelOffload: false },
};
const TITLES: Partial<Record<Mode, string>> = {
  'tapir-busy-poll': `Tapir with its agents busy-polling ${BUSY_POLL} µs after traffic`,
  'tapir-software-gso': 'Tapir segmenting in software (tunnelOffload: false)',
};
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);
const UNDERLAY = values.underlay;
if (UNDERLAY !== 'ipv4' && UNDERLAY !== 'ipv6') throw new Error(`--underlay must be ipv4 or ipv6, not ${UNDERLAY}`);
// An IPv6 underlay is a dual-stack lab's: the nodes' IPv6 addresses carry it.
const IP_FAMILY = UNDERLAY === 'ipv6' ? 'dual' : values['ip-family'];
if (IP_FAMILY !== 'ipv4' && IP_FAMILY !== 'dual') throw new Error(`--ip-family must be ipv4 or dual, not ${IP_FAMILY}`);
const DATAPLANES = values.dataplanes.split(',').filter((d) => d !== '') as Mode[];
for (const d of DATAPLANES) if (!MODES.includes(d)) throw new Error(`--dataplanes: ${d} is not one of ${MODES.join(', ')}`);

const ALL_METRICS = ['tcp', 'udp', 'conn'] as const;
type Metric = (typeof ALL_METRICS)[number];
const METRICS = values.metrics.split(',').filter((m) => m !== '') as Metric[];
for (const m of METRICS) if (!ALL_METRICS.includes(m)) throw new Error(`--metrics: ${m} is not one of ${ALL_METRICS.join(', ')}`);
/** With --cpus: the CPUs everything runs on, as the kernel took the list. */
const PINNED = values.cpus === undefined ? undefined : pinToCpus(values.cpus);
const SECTION = `pod to pod${UNDERLAY === 'ipv6' ? ' (IPv6 underlay)' : ''}${PINNED === undefined ? '' : `, all on CPU ${PINNED}`}`;
const PATHS = { 'same node': ['web-1a', 'web-1b'], 'across nodes': ['web-1a', 'web-2a'] } as const;
type PathName = keyof typeof PATHS;
type Family = 4 | 6;
const FAMILIES: Family[] = IP_FAMILY === 'dual' ? [4, 6] : [4];
/** The row of a path in one family: IPv4 rows keep their names from before dual-stack. */
const rowName = (path: PathName, family: Family): string => (family === 4 ? path : `${path} (IPv6)`);

/** One pod-to-pod measurement; ports vary so that nothing left from a previous test is in the way. */
function measure(lab: BenchLab, m: Metric, from: string, to: string, family: Family): Promise<Figure> {
  const port = (base: number): number => base + Math.floor(Math.random() * 500);
  const target = (p: number): { ip: string; port: number } => ({ ip: family === 4 ? lab.podIP(to) : lab.podIP6(to), port: p });
  switch (m) {
    case 'tcp': { const p = port(5400); return tcpThroughput(lab, from, [to], target(p), p, SECONDS); }
    case 'udp': { const p = port(6400); return udpRate(lab, from, [to], target(p), p, SECONDS); }
    case 'conn': { const p = port(7400); return connectionRate(lab, from, [to], target(p), p, SECONDS); }
  }
}

/** Agents' sleeps per MB (10^6 bytes) of a TCP Gbit/s figure: sleeps per second over MB per second. */
function sleepsPerMb(f: Figure): number {
  return f.agentSleeps / (f.value * 1e9 / 8 / 1e6);
}

async function main(): Promise<void> {
  downLabsOnSignal();
  buildCTools(['udpblast', 'connrate']);
  const results = new Map<string, Figure[]>();
  const key = (dp: Mode, row: string, m: Metric): string => `${dp}|${row}|${m}`;
  for (let run = 0; run < RUNS; run++) {
    for (const dp of DATAPLANES) {
      const lab = new BenchLab(dp === 'kernel' ? 'kernel' : 'tapir', undefined, {
        ...(IP_FAMILY === 'dual' ? { ipFamily: 'dual' } : {}), ...(UNDERLAY === 'ipv6' ? { underlay: 'ipv6' } : {}),
        ...(AGENT_SETTINGS[dp] === undefined ? {} : { agent: AGENT_SETTINGS[dp] }),
      } as const);
      try {
        process.stderr.write(`run ${run + 1}/${RUNS}: ${dp}${dp === 'tapir-busy-poll' ? ` (${BUSY_POLL} µs)` : ''} lab ${lab.name}${IP_FAMILY === 'dual' ? ' (dual-stack)' : ''}${UNDERLAY === 'ipv6' ? ' over an IPv6 underlay' : ''}\n`);
        await lab.up();
        for (const [path, [from, to]] of Object.entries(PATHS) as [PathName, readonly [string, string]][]) {
          for (const family of FAMILIES) {
            for (const m of METRICS) {
              const fig = await measure(lab, m, from, to, family);
              const row = rowName(path, family);
              const perConn = !Number.isFinite(fig.agentSleeps) ? ''
                : m === 'conn' ? `, ${(fig.agentSleeps / fig.value).toFixed(2)} agent sleeps per connection`
                : m === 'tcp' ? `, ${sleepsPerMb(fig).toFixed(2)} agent sleeps per MB` : '';
              process.stderr.write(`  ${row} ${m}: ${fig.value.toFixed(m === 'tcp' ? 2 : 0)} (agents ${Math.round(fig.cpu * 100)}% CPU, machine ${fig.machine.toFixed(2)} cores busy, ${fig.steal.toFixed(2)} stolen by the host${perConn})\n`);
              const k = key(dp, row, m);
              results.set(k, [...(results.get(k) ?? []), fig]);
            }
          }
        }
      } finally {
        await lab.down();
      }
    }
  }
  const rows = (Object.keys(PATHS) as PathName[]).flatMap((path) => FAMILIES.map((family) => rowName(path, family)));
  if (values.json !== undefined) {
    const out = new BenchJsonWriter('lab', 'tapir', ['kernel']);
    const UNITS = { tcp: ['TCP Gbit/s', 'Gbit/s'], udp: ['UDP 64 B pkt/s received', 'pkt/s'], conn: ['TCP connections/s', 'conn/s'] } as const;
    for (const [k, figs] of results) {
      const [mode, row, m] = k.split('|') as [Mode, string, Metric];
      out.add({ section: SECTION, row, metric: UNITS[m][0], unit: UNITS[m][1], mode, better: 'higher', values: figs.map((f) => f.value), cpu: figs.map((f) => f.cpu) });
      if (m === 'tcp' && mode !== 'kernel') {
        out.add({ section: SECTION, row, metric: 'agents sleeps per MB of TCP', unit: 'sleeps', mode, better: 'lower', values: figs.map(sleepsPerMb) });
      }
      if (m === 'conn' && mode !== 'kernel') {
        out.add({ section: SECTION, row, metric: 'agents sleeps per connection', unit: 'sleeps', mode, better: 'lower', values: figs.map((f) => f.agentSleeps / f.value) });
        out.add({ section: SECTION, row, metric: 'agents CPU per connection', unit: 'us', mode, better: 'lower', values: figs.map((f) => (f.cpu / f.value) * 1e6) });
      }
    }
    out.write(values.json);
  }
  const fmt = (m: Metric, v: number): string => (!Number.isFinite(v) ? '-' : m === 'tcp' ? `${v.toFixed(2)} Gbit/s` : m === 'udp' ? `${(v / 1000).toFixed(0)} kpps` : `${(v / 1000).toFixed(1)}k/s`);
  const subjects = DATAPLANES.filter((dp) => dp !== 'kernel');
  for (const dp of subjects) {
    const title = TITLES[dp] ?? 'Tapir';
    const where = PINNED === undefined ? `${cpus().length} cores shared by load and data plane` : `everything (load, pods, data plane) on CPU ${PINNED} of ${cpus().length}`;
    console.log(`\nPod to pod, ${title} vs kernel (bridge + VXLAN${UNDERLAY === 'ipv6' ? ' over an IPv6 underlay' : ''}), median of ${RUNS} run(s) of ${SECONDS} s; ${where}`);
    // "per agent core": the figure divided by the agents' CPU (cores), the data path's
    // efficiency; "machine busy": cores busy in the whole machine (load generators, kernel
    // and agents), which says whether a second data-path thread would have had a core.
    console.log(`| path | metric | kernel | ${dp} | ${dp}/kernel | agents CPU | per agent core | machine busy, kernel / ${dp} (cores) |`);
    console.log('|---|---|---|---|---|---|---|---|');
    for (const row of rows) {
      for (const m of METRICS) {
        const figs = (mode: Mode): Figure[] => results.get(key(mode, row, m)) ?? [];
        const k = median(figs('kernel').map((f) => f.value));
        const t = median(figs(dp).map((f) => f.value));
        const cpu = median(figs(dp).map((f) => f.cpu));
        const busy = (mode: Mode): string => {
          const v = median(figs(mode).map((f) => f.machine)), s = median(figs(mode).map((f) => f.steal));
          return Number.isFinite(v) ? `${v.toFixed(2)}${s >= 0.01 ? ` (+${s.toFixed(2)} stolen)` : ''}` : '-';
        };
        const name = m === 'tcp' ? 'TCP Gbit/s' : m === 'udp' ? 'UDP 64 B pkt/s received' : 'TCP conn/s';
        console.log(`| ${row} | ${name} | ${fmt(m, k)} | ${fmt(m, t)} | ${ratio(t, k)} | ${Number.isFinite(cpu) ? `${Math.round(cpu * 100)}%` : '-'} | ${cpu > 0 ? fmt(m, t / cpu) : '-'} | ${busy('kernel')} / ${busy(dp)} |`);
      }
    }
    if (!METRICS.includes('conn')) continue;
    // One connection in flight: its time is 1 / rate. What the agents' sleeps cost is
    // measured apart (bench/device.ts, sleep and wakeup round trip on one CPU and on two).
    console.log(`\nWhere a connection's time goes (connect + RST, one in flight), ${dp}: medians`);
    console.log(`| path | kernel µs per connection | ${dp} µs per connection | difference | agents CPU µs per connection | agents sleeps per connection |`);
    console.log('|---|---|---|---|---|---|');
    for (const row of rows) {
      const figs = (mode: Mode): Figure[] => results.get(key(mode, row, 'conn')) ?? [];
      const k = 1e6 / median(figs('kernel').map((f) => f.value));
      const t = 1e6 / median(figs(dp).map((f) => f.value));
      const cpuPer = median(figs(dp).map((f) => (f.cpu / f.value) * 1e6));
      const sleeps = median(figs(dp).map((f) => f.agentSleeps / f.value));
      const us = (v: number): string => (Number.isFinite(v) ? v.toFixed(1) : '-');
      console.log(`| ${row} | ${us(k)} | ${us(t)} | ${us(t - k)} | ${us(cpuPer)} | ${Number.isFinite(sleeps) ? sleeps.toFixed(2) : '-'} |`);
    }
  }
}

await main();

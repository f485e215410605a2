// What an agent restart costs the traffic through Services (issue 8, "flows survive the
// agent"). In a two-node Tapir lab, web-1b (node-1) keeps, through cluster IPs:
//   - an iperf3 TCP stream to perf-2 (node-2), reported every 100 ms;
//   - a keep-alive HTTP connection with a request every 20 ms, and a loop of requests on
//     new connections (test/helpers/flow-probe.ts);
// while an agent is stopped: kill -9 of the client's node agent, SIGTERM of it (an
// upgrade's restart), and kill -9 of the endpoint's node agent. The lab's node daemon
// restarts it, as the kubelet restarts a DaemonSet pod. Prints per case: the time from
// the signal to the new agent answering, the longest silence of the stream (100 ms
// iperf3 intervals without a byte), whether the stream and the keep-alive connection
// survived, and the failed requests.
//   node bench/agent-restart.ts [--seconds 12] [--runs 1]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { agentStatusAt } from '../src/lab/network/agent-control.ts';
import { FLOW_PROBE, type FlowProbeResult } from '../test/helpers/flow-probe.ts';
import { BenchLab, downLabsOnSignal, runOk, sleep, TAPIR } from './lib/lab.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '12' }, runs: { type: 'string', default: '1' } } });
const SECONDS = Number(values.seconds);
const RUNS = Number(values.runs);
if (!(SECONDS >= 6) || !(RUNS >= 1)) {
  console.error('usage: node bench/agent-restart.ts [--seconds 12 (>= 6)] [--runs 1]');
  process.exit(2);
}
/** The signal comes this long after the traffic starts. */
const KILL_AT_S = 3;

const MANIFEST = `apiVersion: v1
kind: Pod
metadata: { name: perf-2, labels: { bench: restart } }
spec:
  nodeName: node-2
  containers: [{ name: echo, ports: [{ name: http, containerPort: 8080 }] }]
---
apiVersion: v1
kind: Service
metadata: { name: restart-iperf }
spec:
  selector: { bench: restart }
  ports: [{ name: iperf, port: 5201, targetPort: 5201 }]
`;

interface Case { name: string; node: 'node-1' | 'node-2'; signal: NodeJS.Signals }
const CASES: Case[] = [
  { name: 'kill -9, client\'s node', node: 'node-1', signal: 'SIGKILL' },
  { name: 'kill -9, endpoint\'s node', node: 'node-2', signal: 'SIGKILL' },
  { name: 'SIGTERM, client\'s node', node: 'node-1', signal: 'SIGTERM' },
];
/** The lab's supervisor restarts at once only an agent that ran well this long (its back-off reset), as the kubelet does. */
const BACKOFF_RESET_MS = 62_000;

interface Outcome {
  restartMs: number;
  streamGapMs: number;
  streamOk: boolean;
  streamGbps: number;
  probe: FlowProbeResult;
}

async function agentOf(lab: BenchLab, node: string): Promise<{ pid: number; socket: string }> {
  const status = JSON.parse(await runOk([TAPIR, 'lab', 'status', '--name', lab.name, '--json'], 60_000)) as { nodes: { name: string; agent: { pid: number; controlSocket: string } }[] };
  const n = status.nodes.find((x) => x.name === node)!;
  return { pid: n.agent.pid, socket: n.agent.controlSocket };
}

async function once(lab: BenchLab, c: Case, iperfIP: string, webIP: string): Promise<Outcome> {
  const agent = await agentOf(lab, c.node);
  const limit = SECONDS + 30;
  const iperf = lab.background('web-1b', limit, ['iperf3', '-c', iperfIP, '-p', '5201', '-t', String(SECONDS), '-i', '0.1', '--json']);
  const probe = lab.background('web-1b', limit, ['python3', '-c', FLOW_PROBE, `http://${webIP}/`, String(SECONDS)]);
  await sleep(KILL_AT_S * 1000);
  const killedAt = performance.now();
  process.kill(agent.pid, c.signal);
  // The old agent's socket may answer until it is gone; wait for a new pid's answer.
  let restartMs = NaN;
  while (performance.now() - killedAt < 20_000) {
    const s = await agentStatusAt(agent.socket, 200);
    if (s !== null && s.pid !== agent.pid) {
      restartMs = performance.now() - killedAt;
      break;
    }
    await sleep(10);
  }
  const iperfOut = await iperf.stop((SECONDS + 20) * 1000);
  const probeOut = await probe.stop((SECONDS + 20) * 1000);
  const report = JSON.parse(iperfOut.slice(iperfOut.indexOf('{'))) as { intervals?: { sum: { bytes: number; seconds: number } }[]; end?: { sum_received?: { bits_per_second: number } }; error?: string };
  let gap = 0;
  let longest = 0;
  for (const i of report.intervals ?? []) {
    gap = i.sum.bytes === 0 ? gap + i.sum.seconds : 0;
    longest = Math.max(longest, gap);
  }
  return {
    restartMs,
    streamGapMs: longest * 1000,
    streamOk: report.error === undefined && (report.intervals?.length ?? 0) >= SECONDS * 10 - 1,
    streamGbps: (report.end?.sum_received?.bits_per_second ?? 0) / 1e9,
    probe: JSON.parse(probeOut.trim().split('\n').at(-1)!) as FlowProbeResult,
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'tapir-bench-restart-'));
  downLabsOnSignal(() => rmSync(work, { recursive: true, force: true }));
  const lab = new BenchLab('tapir');
  try {
    await lab.up();
    writeFileSync(join(work, 'bench.yaml'), MANIFEST);
    const applied = await lab.apply(join(work, 'bench.yaml'), 90_000);
    if (applied.code !== 0) throw new Error(`lab apply: ${applied.stderr}`);
    await lab.refresh();
    const iperfIP = lab.serviceIPs.get('restart-iperf')!;
    const webIP = lab.serviceIPs.get('web')!;
    const server = lab.background('perf-2', (SECONDS + 40) * CASES.length * RUNS + 60, ['iperf3', '-s', '-p', '5201']);
    await sleep(500);
    console.log(`| case | agent back after (ms) | stream: longest silence (ms) | stream survived | stream Gbit/s | keep-alive: longest gap (ms) | keep-alive survived, one endpoint | loop: failed / ok | loop: slowest (ms) |`);
    console.log(`|---|---|---|---|---|---|---|---|---|`);
    const lastKill = new Map<string, number>();
    for (let run = 0; run < RUNS; run++) {
      for (const c of CASES) {
        const since = performance.now() - (lastKill.get(c.node) ?? -Infinity);
        if (since < BACKOFF_RESET_MS) await sleep(BACKOFF_RESET_MS - since);
        lastKill.set(c.node, performance.now());
        const o = await once(lab, c, iperfIP, webIP);
        const s = o.probe.stream;
        console.log(`| ${c.name} | ${o.restartMs.toFixed(0)} | ${o.streamGapMs.toFixed(0)} | ${o.streamOk ? 'yes' : 'NO'} | ${o.streamGbps.toFixed(2)} | ${s.maxGapMs} | ${s.error === null && s.pods.length === 1 ? 'yes' : `NO (${s.error ?? s.pods.join(',')})`} | ${o.probe.loop.failed} / ${o.probe.loop.ok} | ${o.probe.loop.maxMs} |`);
      }
    }
    await server.stop(2000);
  } finally {
    await lab.down();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();

// One pod floods a ClusterIP with new flows while another pod on the same node keeps
// asking the same Services (issue 8, finding 9: a flood from one pod used to make every
// pod's new service connections fail). Two floods, each bounded in time:
//   syn: TCP SYNs to the web Service (port 80), a new source port each (raw socket);
//   udp: a UDP source-port sweep at the echo-udp Service (port 9000): one datagram
//        from each source port, which the endpoints' echo answers.
// Per phase it prints the other pod's requests (a new HTTP connection and a UDP echo
// from a fresh port each time) that failed before, during and after the flood, the
// conntrack counters the phase moved, service refusals by reason, and agent RSS.
//   node bench/conntrack-flood.ts [--seconds 30] [--mode syn|udp|both]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FLOOD } from './lib/flood.ts';
import { BenchLab, downLabsOnSignal, runOk, sleep, TAPIR } from './lib/lab.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' }, mode: { type: 'string', default: 'both' } } });
const SECONDS = Number(values.seconds);
const MODE = values.mode!;
if (!(SECONDS > 0 && SECONDS <= 600) || !['syn', 'udp', 'both'].includes(MODE)) {
  console.error('usage: bench/conntrack-flood.ts [--seconds 1..600] [--mode syn|udp|both]');
  process.exit(2);
}

// One HTTP GET (a new TCP connection) and one UDP echo from a fresh port, 1 s timeout
// each, in a loop; prints "httpOk httpFailed udpOk udpFailed" per second.
const CLIENT = `
import socket, sys, time, urllib.request
web, udp, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
end, tick = time.time() + seconds, time.time() + 1
c = [0, 0, 0, 0]
while time.time() < end:
    try:
        urllib.request.urlopen('http://%s/' % web, timeout=1).read(); c[0] += 1
    except Exception:
        c[1] += 1
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1)
    try:
        u.sendto(b'ping', (udp, 9000))
        ok = u.recv(64) == b'ping'
    except Exception:
        ok = False
    u.close()
    c[2 if ok else 3] += 1
    if time.time() >= tick:
        print(*c, flush=True); c = [0, 0, 0, 0]; tick += 1
print(*c, flush=True)
`;

interface Stats {
  conntrack: { entries: number; capacity: number; maxUnassuredPerSource: number; counters: Record<string, number> } | null;
  natRefusals: Record<string, number>;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

function delta(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) !== 0) out[k] = v - (before[k] ?? 0);
  return out;
}

async function phase(lab: BenchLab, kind: 'syn' | 'udp'): Promise<void> {
  const stats = async (): Promise<Stats> => JSON.parse(await runOk([TAPIR, 'stats', '--lab', lab.name, '--node', 'node-1', '--json'], 30_000)) as Stats;
  const vip = lab.serviceIPs.get(kind === 'syn' ? 'web' : 'echo-udp')!;
  const agent = lab.agentPids[0]!;
  const quiet = Math.max(3, Math.round(SECONDS / 3));
  const s0 = await stats();
  const rssBefore = rssMiB(agent);
  // The client runs through all three phases: quiet, flood, quiet again.
  const total = quiet * 2 + SECONDS;
  const client = lab.background('web-1b', total + 15, ['python3', '-c', CLIENT, lab.serviceIPs.get('web')!, lab.serviceIPs.get('echo-udp')!, String(total)]);
  await sleep(quiet * 1000);
  let rssPeak = rssBefore;
  let entriesPeak = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      rssPeak = Math.max(rssPeak, rssMiB(agent));
      entriesPeak = Math.max(entriesPeak, (await stats()).conntrack?.entries ?? 0);
      await sleep(1000);
    }
  })();
  const flood = (await lab.exec('web-1a', ['python3', '-c', FLOOD, kind, lab.podIP('web-1a'), vip, kind === 'syn' ? '80' : '9000', String(SECONDS)], (SECONDS + 60) * 1000)).trim().split(' ').map(Number);
  sampling = false;
  await sampler;
  const sFlood = await stats();
  const rssAfterFlood = rssMiB(agent);
  await sleep(quiet * 1000);
  const lines = (await client.stop(30_000)).trim().split('\n').map((l) => l.split(' ').map(Number));
  const s1 = await stats();
  const rssEnd = rssMiB(agent);
  const sum = (from: number, to: number): number[] => {
    const c = [0, 0, 0, 0];
    for (const line of lines.slice(from, to)) for (let i = 0; i < 4; i++) c[i]! += line[i] ?? 0;
    return c;
  };
  const rows: [string, number[]][] = [
    [`before (${quiet} s)`, sum(0, quiet)],
    [`during the flood (${SECONDS} s)`, sum(quiet, quiet + SECONDS)],
    [`after (${lines.length - quiet - SECONDS} s)`, sum(quiet + SECONDS, lines.length)],
  ];
  const [sent, t0, t1] = flood;
  console.log(`\n## ${kind === 'syn' ? 'SYN flood' : 'UDP source-port sweep'} from web-1a to ${vip}:${kind === 'syn' ? 80 : 9000} for ${SECONDS} s: ${sent} packets (${Math.round(sent! / (t1! - t0!))}/s)`);
  console.log('| phase | HTTP ok from web-1b | HTTP failed | UDP echo ok | UDP echo failed |');
  console.log('|---|---|---|---|---|');
  for (const [name, c] of rows) console.log(`| ${name} | ${c.join(' | ')} |`);
  const ct0 = s0.conntrack!;
  console.log(`node-1 conntrack: capacity ${ct0.capacity}, at most ${ct0.maxUnassuredPerSource} unanswered per source; entries ${ct0.entries} before, peak ${entriesPeak} during (sampled each second), ${sFlood.conntrack!.entries} when the flood ended, ${s1.conntrack!.entries} at the end`);
  console.log(`node-1 conntrack counters moved during the flood: ${JSON.stringify(delta(sFlood.conntrack!.counters, ct0.counters))}`);
  console.log(`node-1 conntrack counters moved after it:       ${JSON.stringify(delta(s1.conntrack!.counters, sFlood.conntrack!.counters))}`);
  console.log(`node-1 service refusals by reason during the flood: ${JSON.stringify(delta(sFlood.natRefusals, s0.natRefusals))}; after it: ${JSON.stringify(delta(s1.natRefusals, sFlood.natRefusals))}`);
  console.log(`node-1 agent RSS: ${rssBefore.toFixed(0)} MiB before, peak ${rssPeak.toFixed(0)} MiB during (sampled), ${rssAfterFlood.toFixed(0)} MiB when the flood ended, ${rssEnd.toFixed(0)} MiB at the end`);
}

async function main(): Promise<void> {
  downLabsOnSignal();
  const lab = new BenchLab('tapir');
  try {
    await lab.up();
    // UDP first: the SYN flood's unanswered entries stay charged to web-1a until they
    // time out, so a sweep after it would only measure the per-source bound again.
    if (MODE !== 'syn') await phase(lab, 'udp');
    if (MODE !== 'udp') await phase(lab, 'syn');
  } finally {
    await lab.down();
  }
}

await main();

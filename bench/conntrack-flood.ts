// One pod floods a ClusterIP with SYNs (new source ports, raw socket, bounded in time)
// while another pod on the same node keeps asking the same Service over HTTP (issue 8,
// finding 9: a flood from one pod used to make every pod's new service connections
// fail). Prints the other pod's failed requests before, during and after the flood,
// the agent's conntrack counters and its RSS.
//   node bench/conntrack-flood.ts [--seconds 30]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { BenchLab, downLabsOnSignal, runOk, sleep, TAPIR } from './lib/lab.ts';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '30' } } });
const SECONDS = Number(values.seconds);

// SYNs from this pod's own address (anti-spoofing drops anything else) to VIP:80, a new
// source port each, as fast as Python writes them, for the given seconds.
const SYN_FLOOD = `
import socket, struct, sys, time
src, dst, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
sent, sport, end = 0, 1024, time.time() + seconds
while time.time() < end:
    for _ in range(256):
        sport = 1024 + (sport - 1023) % 64000
        tcp = struct.pack('!HHIIBBHHH', sport, port, sent, 0, 5 << 4, 0x02, 64240, 0, 0)
        tcp = tcp[:16] + struct.pack('!H', csum(sa + da + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)) + tcp[18:]
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0x4000, 64, 6, 0, sa, da)
        s.sendto(ip + tcp, (dst, 0))
        sent += 1
print(sent)
`;

// HTTP GETs to the Service, one at a time, 1 s timeout each; prints "ok failed" per second.
const CLIENT = `
import sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
end, tick, ok, bad = time.time() + seconds, time.time() + 1, 0, 0
while time.time() < end:
    try:
        urllib.request.urlopen(url, timeout=1).read(); ok += 1
    except Exception:
        bad += 1
    if time.time() >= tick:
        print(ok, bad, flush=True); ok = bad = 0; tick += 1
print(ok, bad, flush=True)
`;

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

async function main(): Promise<void> {
  downLabsOnSignal();
  const lab = new BenchLab('tapir');
  try {
    await lab.up();
    const vip = lab.serviceIPs.get('web')!;
    const agent = lab.agentPids[0]!;
    const quiet = SECONDS / 3;
    const rssBefore = rssMiB(agent);
    // The client runs through all three phases: quiet, flood, quiet again.
    const client = lab.background('web-1b', Math.ceil(quiet * 2 + SECONDS + 15), ['python3', '-c', CLIENT, `http://${vip}/`, String(quiet * 2 + SECONDS)]);
    await sleep(quiet * 1000);
    const flood = await lab.exec('web-1a', ['python3', '-c', SYN_FLOOD, lab.podIP('web-1a'), vip, '80', String(SECONDS)], (SECONDS + 60) * 1000);
    const rssDuring = rssMiB(agent);
    await sleep(quiet * 1000);
    const lines = (await client.stop(30_000)).trim().split('\n').map((l) => l.split(' ').map(Number));
    const stats = JSON.parse(await runOk([TAPIR, 'stats', '--lab', lab.name, '--node', 'node-1', '--json'], 30_000)) as { conntrack: { entries: number; capacity: number; maxUnassuredPerSource: number; counters: Record<string, number> } | null; natRefusals: Record<string, number> };
    const phase = (from: number, to: number): [number, number] => {
      let ok = 0;
      let bad = 0;
      for (const line of lines.slice(from, to)) { ok += line[0] ?? 0; bad += line[1] ?? 0; }
      return [ok, bad];
    };
    const q = Math.round(quiet);
    const [ok0, bad0] = phase(0, q);
    const [ok1, bad1] = phase(q, q + SECONDS);
    const [ok2, bad2] = phase(q + SECONDS, lines.length);
    console.log(`SYN flood from web-1a to ${vip}:80 for ${SECONDS} s: ${flood.trim()} SYNs sent`);
    console.log(`| phase | requests ok from web-1b | failed |`);
    console.log(`|---|---|---|`);
    console.log(`| before (${q} s) | ${ok0} | ${bad0} |`);
    console.log(`| during the flood (${SECONDS} s) | ${ok1} | ${bad1} |`);
    console.log(`| after (${lines.length - q - SECONDS} s) | ${ok2} | ${bad2} |`);
    console.log(`node-1 agent RSS: ${rssBefore.toFixed(0)} MiB before, ${rssDuring.toFixed(0)} MiB right after the flood`);
    console.log(`node-1 conntrack: ${JSON.stringify(stats.conntrack)}`);
    console.log(`node-1 service refusals: ${JSON.stringify(stats.natRefusals)}`);
  } finally {
    await lab.down();
  }
}

await main();

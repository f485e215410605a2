// Device benchmark: a TUN-pair forwarder in TypeScript on the native addon
// (src/device/relay.ts over TunDevice) against the same forwarder in plain C
// (bench/c/tunfwd.c), in the same run, plain and with the virtio-net header.
//
//   node bench/device.ts [--seconds 3] [--rounds 1] [--batch 64] [--pin] [--headers plain,vnet] [--json FILE]
//
// Client and server live in two network namespaces; the forwarder runs in the root
// namespace holding one TUN in each (moved there with moveLinkToNetns, as the agent
// does with pod TAPs). Per forwarder: iperf3 TCP (1 stream), UDP 64-byte-payload
// packets/s (bench/c/udpblast.c: sendmmsg blaster, recvmmsg counter), and short TCP
// connections/s (bench/c/connrate.c: connect + RST close, one in flight). With each
// figure, the forwarder's CPU (user+sys from /proc/<pid>/stat) over the same window.
// --pin puts the forwarder on CPU 1 and the load on CPU 0.
//
// Then what a sleep and a wakeup cost on this machine, the price a forwarder pays per
// hop of request/response traffic: two threads handing a token back and forth through
// eventfds (bench/c/wakelat.c), on one CPU and on two (a wakeup across CPUs sends an
// IPI; on a VM whose idle vCPUs halt, the host has to run the halted vCPU again).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Netns, uniqueName } from '../test/helpers/netns.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../src/device/tun.ts';
import { moveLinkToNetns } from '../src/device/netlink.ts';
import { FrameRelay } from '../src/device/relay.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { buildCTools, C_BUILD_DIR, cpuSeconds, median } from './lib/tools.ts';

const CLIENT_IP = '10.77.0.1', SERVER_IP = '10.77.1.1';
const VNET_SLOT = 65536 + 16; // a TSO super-packet plus its 10-byte header, as in tunfwd.c

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

// ---- the TypeScript forwarder (a child process, so its CPU can be read alone) --------

function runForwarder(nameA: string, nameB: string, vnet: boolean, batch: number): void {
  const offloads = vnet ? TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 : 0;
  const a = TunDevice.open({ mode: 'tun', name: nameA, vnetHdr: vnet, offloads });
  const b = TunDevice.open({ mode: 'tun', name: nameB, vnetHdr: vnet, offloads });
  const relay = new FrameRelay(a, b, { batchFrames: batch, slotSize: vnet ? VNET_SLOT : 2048 });
  process.on('SIGTERM', () => {
    relay.stop();
    const c = relay.counts;
    process.stdout.write(`frames ${c.aToB} ${c.bToA} batches ${c.batches} dropped ${c.dropped}\n`);
    a.close();
    b.close();
    process.exit(0);
  });
  // SIGUSR2: frames read so far and batches, as tunfwd.c prints them (SIGUSR1 belongs
  // to Node's inspector).
  process.on('SIGUSR2', () => {
    const c = relay.counts;
    process.stdout.write(`counts ${c.aToB + c.bToA + c.dropped} ${c.batches}\n`);
  });
  process.stdout.write('ready\n');
}

// ---- orchestration ---------------------------------------------------------------------

/**
 * What one sleep and wakeup costs, the price a forwarder pays per hop when traffic is
 * request/response: bench/c/wakelat's eventfd ping-pong between two threads, on one
 * CPU and on two. p50 of the round trips, µs.
 */
function wakeupRoundTrips(seconds: number): { sameCpu: number; otherCpu: number } {
  const p50 = (a: number, b: number): number => {
    const out = execFileSync(`${C_BUILD_DIR}/wakelat`, [String(a), String(b), String(seconds)], { encoding: 'utf8', timeout: (seconds + 10) * 1000 });
    const m = /p50_us ([\d.]+)/.exec(out);
    return m === null ? NaN : Number(m[1]);
  };
  return { sameCpu: p50(0, 0), otherCpu: cpus().length > 1 ? p50(0, 1) : NaN };
}

interface Started {
  child: ChildProcess;
  ready: Promise<void>;
  output: Promise<string>;
  /** Resolves with the next stdout line that starts with `prefix`. */
  nextLine(prefix: string): Promise<string>;
}

/** Starts a process and resolves `ready` at its first "ready" line. */
function start(cmd: string, args: string[], ns?: Netns): Started {
  const child = ns ? ns.spawn(cmd, args) : spawn(cmd, args, { stdio: 'pipe' });
  let out = '', err = '', partial = '';
  const waiting: { prefix: string; resolve: (line: string) => void }[] = [];
  let markReady: () => void, fail: (e: Error) => void;
  const ready = new Promise<void>((res, rej) => { markReady = res; fail = rej; });
  ready.catch(() => undefined); // only callers that await `ready` care that it never came
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (/^ready$/m.test(out)) markReady();
    partial += d.toString();
    for (let nl = partial.indexOf('\n'); nl >= 0; nl = partial.indexOf('\n')) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const w = waiting.findIndex((x) => line.startsWith(x.prefix));
      if (w >= 0) waiting.splice(w, 1)[0]!.resolve(line);
    }
  });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const output = new Promise<string>((res) => child.on('close', (code) => {
    fail(new Error(`${cmd} ${args.join(' ')} exited ${code} before ready: ${err}`));
    res(out);
  }));
  const nextLine = (prefix: string): Promise<string> => new Promise((resolve) => waiting.push({ prefix, resolve }));
  return { child, ready, output, nextLine };
}

/** One measured figure and what the forwarder spent on it. */
interface Figure {
  value: number;
  cpu: number; // forwarder CPU, fraction of one core
  usPerFrame: number; // forwarder CPU microseconds per frame read
  framesPerBatch: number;
}

async function frameCounts(fwd: Started): Promise<[number, number]> {
  const line = fwd.nextLine('counts ');
  fwd.child.kill('SIGUSR2');
  const [, frames, batches] = (await line).split(' ');
  return [Number(frames), Number(batches)];
}

async function measured(fwd: Started, work: () => Promise<number>): Promise<Figure> {
  const pid = fwd.child.pid!;
  const [f0, b0] = await frameCounts(fwd);
  const c0 = cpuSeconds(pid), t0 = performance.now();
  const value = await work();
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - c0;
  const [f1, b1] = await frameCounts(fwd);
  return { value, cpu: cpu / wall, usPerFrame: f1 > f0 ? (cpu * 1e6) / (f1 - f0) : NaN, framesPerBatch: b1 > b0 ? (f1 - f0) / (b1 - b0) : NaN };
}

function exited(child: ChildProcess): Promise<string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  return new Promise((res) => child.on('close', () => res(out)));
}

type Variant = { lang: 'C' | 'TS'; vnet: boolean };
const allVariants: Variant[] = [{ lang: 'C', vnet: false }, { lang: 'TS', vnet: false }, { lang: 'C', vnet: true }, { lang: 'TS', vnet: true }];
type Row = { tcp: Figure; udp: Figure; conn: Figure };

async function measureVariant(v: Variant, client: Netns, server: Netns, seconds: number, batch: number, pin: boolean): Promise<Row> {
  const nameA = uniqueName('bd', 15), nameB = uniqueName('bd', 15);
  const fwdArgs = v.lang === 'C'
    ? [`${C_BUILD_DIR}/tunfwd`, nameA, nameB, ...(v.vnet ? ['--vnet'] : []), '--batch', String(batch)]
    : [process.execPath, fileURLToPath(import.meta.url), '--forwarder', nameA, nameB, v.vnet ? 'vnet' : 'plain', String(batch)];
  const fwd = pin ? start('taskset', ['-c', '1', ...fwdArgs]) : start(fwdArgs[0]!, fwdArgs.slice(1));
  const load = (cmd: string, args: string[]): [string, string[]] => (pin ? ['taskset', ['-c', '0', cmd, ...args]] : [cmd, args]);
  try {
    await fwd.ready;
    moveLinkToNetns(nameA, `/var/run/netns/${client.name}`, 'tun0');
    moveLinkToNetns(nameB, `/var/run/netns/${server.name}`, 'tun0');
    client.exec('ip', ['link', 'set', 'tun0', 'up']);
    client.exec('ip', ['route', 'add', `${SERVER_IP}/32`, 'dev', 'tun0', 'src', CLIENT_IP]);
    server.exec('ip', ['link', 'set', 'tun0', 'up']);
    server.exec('ip', ['route', 'add', `${CLIENT_IP}/32`, 'dev', 'tun0', 'src', SERVER_IP]);
    client.exec('ping', ['-c', '1', '-W', '2', SERVER_IP]); // fails fast if the path is broken

    const tcp = await measured(fwd, async () => {
      const [cmd, args] = load('iperf3', ['-c', SERVER_IP, '-t', String(seconds), '-J']);
      const json = JSON.parse(await exited(client.spawn(cmd, args))) as { end: { sum_received: { bits_per_second: number } } };
      return json.end.sum_received.bits_per_second / 1e9;
    });
    const rx = start(...load(`${C_BUILD_DIR}/udpblast`, ['recv', SERVER_IP, '9000', String(seconds)]), server);
    await rx.ready;
    const udp = await measured(fwd, async () => {
      const tx = exited(client.spawn(...load(`${C_BUILD_DIR}/udpblast`, ['send', SERVER_IP, '9000', String(seconds + 1), '64'])));
      const m = /received (\d+) seconds ([\d.]+)/.exec(await rx.output);
      await tx;
      return m && Number(m[2]) > 0 ? Number(m[1]) / Number(m[2]) / 1000 : 0;
    });
    const conn = await measured(fwd, async () => {
      const out = await exited(client.spawn(...load(`${C_BUILD_DIR}/connrate`, ['client', SERVER_IP, '7000', String(seconds)])));
      const m = /connections (\d+) seconds ([\d.]+)/.exec(out);
      return m ? Number(m[1]) / Number(m[2]) / 1000 : 0;
    });
    return { tcp, udp, conn };
  } finally {
    fwd.child.kill('SIGTERM');
    await fwd.output;
  }
}

function pct(cpu: number): string { return `${Math.round(cpu * 100)}%`; }

async function main(): Promise<void> {
  const seconds = flag('--seconds', 3), rounds = flag('--rounds', 1), batch = flag('--batch', 64);
  const pin = process.argv.includes('--pin');
  const hi = process.argv.indexOf('--headers');
  const headers = hi >= 0 ? process.argv[hi + 1]!.split(',') : ['plain', 'vnet'];
  buildCTools(['tunfwd', 'udpblast', 'connrate', 'wakelat']);
  const client = new Netns('bd');
  const server = new Netns('bd');
  const servers: ChildProcess[] = [];
  const results = new Map<string, Row[]>();
  const wakeups: { sameCpu: number; otherCpu: number }[] = [];
  try {
    client.exec('ip', ['addr', 'add', `${CLIENT_IP}/32`, 'dev', 'lo']);
    server.exec('ip', ['addr', 'add', `${SERVER_IP}/32`, 'dev', 'lo']);
    const iperf = start('iperf3', ['-s', '-B', SERVER_IP], server);
    servers.push(iperf.child);
    const conn = start(`${C_BUILD_DIR}/connrate`, ['server', SERVER_IP, '7000'], server);
    servers.push(conn.child);
    await conn.ready;
    await new Promise((r) => setTimeout(r, 200)); // iperf3 prints no ready line

    const variants = allVariants.filter((v) => headers.includes(v.vnet ? 'vnet' : 'plain'));
    for (let r = 0; r < rounds; r++) {
      for (const v of variants) {
        const key = `${v.lang}${v.vnet ? '+vnet' : ''}`;
        process.stderr.write(`round ${r + 1}/${rounds}: ${key} ... `);
        const row = await measureVariant(v, client, server, seconds, batch, pin);
        process.stderr.write(`tcp ${row.tcp.value.toFixed(2)} Gbit/s, udp ${row.udp.value.toFixed(0)} kpps, ${row.conn.value.toFixed(1)}k conn/s\n`);
        results.set(key, [...(results.get(key) ?? []), row]);
      }
      const w = wakeupRoundTrips(1);
      process.stderr.write(`round ${r + 1}/${rounds}: wakeup round trip p50 ${w.sameCpu.toFixed(1)} µs on one CPU, ${w.otherCpu.toFixed(1)} µs across two\n`);
      wakeups.push(w);
    }
  } finally {
    for (const c of servers) c.kill('SIGKILL');
    client.destroy();
    server.destroy();
  }

  const ji = process.argv.indexOf('--json');
  if (ji >= 0) {
    const out = new BenchJsonWriter('device', 'TS', ['C']);
    const names = { tcp: ['TCP Gbit/s (1 stream)', 'Gbit/s'], udp: ['UDP 64 B pkt/s received', 'kpps'], conn: ['TCP connections/s (1 in flight)', 'kconn/s'] } as const;
    for (const [key, rows] of results) {
      const [lang, vnet] = key.split('+');
      for (const m of ['tcp', 'udp', 'conn'] as const) {
        out.add({ section: 'TUN-pair forwarder', row: vnet === undefined ? 'plain' : 'vnet', metric: names[m][0], unit: names[m][1], mode: lang!, better: 'higher', values: rows.map((x) => x[m].value), cpu: rows.map((x) => x[m].cpu) });
      }
    }
    for (const [row, pick] of [['two threads on one CPU', (w: (typeof wakeups)[0]) => w.sameCpu], ['two threads on two CPUs', (w: (typeof wakeups)[0]) => w.otherCpu]] as const) {
      out.add({ section: 'sleep and wakeup (eventfd ping-pong)', row, metric: 'round trip p50', unit: 'us', mode: 'C', better: 'lower', values: wakeups.map(pick) });
    }
    out.write(process.argv[ji + 1]!);
  }
  const pick = (key: string, metric: keyof Row): Figure => {
    const rows = results.get(key)!;
    const med = (f: (x: Figure) => number): number => median(rows.map((x) => f(x[metric])));
    return { value: med((x) => x.value), cpu: med((x) => x.cpu), usPerFrame: med((x) => x.usPerFrame), framesPerBatch: med((x) => x.framesPerBatch) };
  };
  const metrics: [keyof Row, string][] = [['tcp', 'TCP Gbit/s (1 stream)'], ['udp', 'UDP 64 B kpps received'], ['conn', 'TCP kconn/s (1 in flight)']];
  console.log(`\nTUN-pair forwarder, ${seconds} s per figure, median of ${rounds} round(s), batch ${batch}${pin ? ', forwarder pinned to CPU 1, load on CPU 0' : ''}`);
  console.log('CPU: forwarder user+sys over the window, % of one core; us/frame: forwarder CPU per frame read (includes the');
  console.log('kernel work a TUN write does for the receiving namespace); f/b: frames per batch. TS/C = TS figure / C figure;');
  console.log('per CPU = (TS figure / TS CPU) / (C figure / C CPU): work done per forwarder CPU second, TS relative to C.\n');
  console.log('| header | metric | C | CPU | us/frame | f/b | TS | CPU | us/frame | f/b | TS/C | per CPU |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const fig = (f: Figure): string => `${f.value.toFixed(2)} | ${pct(f.cpu)} | ${f.usPerFrame.toFixed(2)} | ${f.framesPerBatch.toFixed(1)}`;
  for (const vnet of [false, true]) {
    if (!headers.includes(vnet ? 'vnet' : 'plain')) continue;
    for (const [m, label] of metrics) {
      const c = pick(vnet ? 'C+vnet' : 'C', m), t = pick(vnet ? 'TS+vnet' : 'TS', m);
      console.log(`| ${vnet ? 'vnet' : 'plain'} | ${label} | ${fig(c)} | ${fig(t)} | ${(t.value / c.value).toFixed(2)}x | ${(t.value / t.cpu / (c.value / c.cpu)).toFixed(2)}x |`);
    }
  }
  const same = median(wakeups.map((w) => w.sameCpu)), other = median(wakeups.map((w) => w.otherCpu));
  console.log(`\nSleep and wakeup round trip (bench/c/wakelat: two threads, eventfd ping-pong), p50, median of ${rounds} round(s):`);
  console.log(`two threads on one CPU ${same.toFixed(1)} µs, on two CPUs ${other.toFixed(1)} µs (${(other / same).toFixed(1)}x); a wakeup across CPUs costs about half the latter.`);
}

if (process.argv[2] === '--forwarder') {
  runForwarder(process.argv[3]!, process.argv[4]!, process.argv[5] === 'vnet', Number(process.argv[6] ?? 64));
} else {
  await main();
}

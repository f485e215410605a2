// Micro-benchmarks of the wire layer's hot path: per-packet parse, 5-tuple
// extraction and DNAT with incremental checksums, for TCP and UDP over IPv4 (and the
// NAT66 DNAT over IPv6, the tuple left out: its conntrack key is the tables' job); plus
// the measurements behind two design choices (byte reads vs DataView, checksum
// word loop threshold) and the heap growth over 1,000,000 packets.
// Run: node bench/micro.ts [--json FILE]   (quick: BENCH_TIME_MS=300 node bench/micro.ts)
import { Bench } from 'tinybench';
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { BenchJsonWriter } from './lib/bench-json.ts';
import {
  LinkType, PacketInfo, TcpFlags, buildPacket, decodeFrame, get16, get32, natRewriteDst4, natRewriteDst6, ipv4, loadIpv6Words,
  parseIpv6, sumBytes, sumWords, type PacketRepr,
} from '../src/wire/index.ts';

const BATCH = 256; // frames per task run, like one device read batch
const SLOT = 2048;
const TIME_MS = Number(process.env.BENCH_TIME_MS ?? 1000);

// A slab of BATCH frames, one per slot, as a device read would leave them: distinct
// clients (addresses both sides of 2^31) talking to one cluster IP.
function slabOf(protocol: 'tcp' | 'udp'): Uint8Array {
  const slab = new Uint8Array(BATCH * SLOT);
  for (let i = 0; i < BATCH; i++) {
    const r: PacketRepr = {
      eth: { dst: 0x02000000000b, src: 0x02000000000a },
      ipv4: { src: (i & 1 ? ipv4('192.168.0.0') : ipv4('10.244.0.0')) + i, dst: ipv4('10.96.0.10'), ttl: 64, dontFragment: true },
      payload: new Uint8Array(protocol === 'tcp' ? 64 : 32),
    };
    if (protocol === 'tcp') r.tcp = { srcPort: 30000 + i, dstPort: 80, seq: 0x9d2daf0b + i, ack: 0x627c2b5f, flags: TcpFlags.ACK | TcpFlags.PSH, window: 502 };
    else r.udp = { srcPort: 30000 + i, dstPort: 53 };
    slab.set(buildPacket(r), i * SLOT);
  }
  return slab;
}

const frameLength = (slab: Uint8Array, i: number) => 14 + get16(slab, i * SLOT + 16);

// The same over IPv6: distinct clients in a pod range to one IPv6 cluster IP.
function slab6Of(protocol: 'tcp' | 'udp'): Uint8Array {
  const slab = new Uint8Array(BATCH * SLOT);
  for (let i = 0; i < BATCH; i++) {
    const src = parseIpv6(`fd00:10:244:${i & 1 ? 'f001' : '1'}::${(i + 1).toString(16)}`)!;
    const r: PacketRepr = {
      eth: { dst: 0x02000000000b, src: 0x02000000000a },
      ipv6: { src, dst: parseIpv6('fd00:10:96::a')!, hopLimit: 64 },
      payload: new Uint8Array(protocol === 'tcp' ? 64 : 32),
    };
    if (protocol === 'tcp') r.tcp = { srcPort: 30000 + i, dstPort: 80, seq: 0x9d2daf0b + i, ack: 0x627c2b5f, flags: TcpFlags.ACK | TcpFlags.PSH, window: 502 };
    else r.udp = { srcPort: 30000 + i, dstPort: 53 };
    slab.set(buildPacket(r), i * SLOT);
  }
  return slab;
}

const frameLength6 = (slab: Uint8Array, i: number) => 14 + 40 + get16(slab, i * SLOT + 18);

const info = new PacketInfo();
// The flow key a conntrack lookup would hash: protocol, addresses, ports.
const key = new Float64Array(5);
const endpoints = [ipv4('10.244.1.17'), ipv4('10.244.2.33')];
let round = 0;

function parseTupleDnat(slab: Uint8Array, lengths: Int32Array): void {
  const endpoint = endpoints[round++ & 1]!;
  for (let i = 0; i < BATCH; i++) {
    decodeFrame(info, slab, i * SLOT, lengths[i]!, LinkType.ETHERNET);
    key[0] = info.protocol;
    key[1] = info.src4;
    key[2] = info.dst4;
    key[3] = info.srcPort;
    key[4] = info.dstPort;
    natRewriteDst4(info, slab, endpoint, 8080, false);
  }
}

// Two endpoints as int32 words (the second with its top bits set), as the tables keep them.
const endpoints6 = new Int32Array(8);
loadIpv6Words(endpoints6, 0, parseIpv6('fd00:10:244:2::11')!, 0);
loadIpv6Words(endpoints6, 4, parseIpv6('fd00:ffff:8000:3::21')!, 0);

function parseDnat6(slab: Uint8Array, lengths: Int32Array): void {
  const at = (round++ & 1) << 2;
  for (let i = 0; i < BATCH; i++) {
    decodeFrame(info, slab, i * SLOT, lengths[i]!, LinkType.ETHERNET);
    natRewriteDst6(info, slab, endpoints6, at, 8080, false);
  }
}

function parseOnly(slab: Uint8Array, lengths: Int32Array): void {
  for (let i = 0; i < BATCH; i++) decodeFrame(info, slab, i * SLOT, lengths[i]!, LinkType.ETHERNET);
}

// Reading the 5-tuple two ways, for the "bytes or DataView" question.
let sink = 0;
function tupleBytes(slab: Uint8Array): void {
  for (let i = 0; i < BATCH; i++) {
    const o = i * SLOT + 14;
    key[1] = get32(slab, o + 12); key[2] = get32(slab, o + 16);
    key[3] = get16(slab, o + 20); key[4] = get16(slab, o + 22);
    sink = (sink + key[3]) | 0;
  }
}
let dvFor: Uint8Array | null = null;
let dv: DataView<ArrayBufferLike> = new DataView(new ArrayBuffer(0));
function tupleDataView(slab: Uint8Array): void {
  if (slab !== dvFor) { dvFor = slab; dv = new DataView(slab.buffer, slab.byteOffset, slab.byteLength); }
  for (let i = 0; i < BATCH; i++) {
    const o = i * SLOT + 14;
    key[1] = dv.getUint32(o + 12); key[2] = dv.getUint32(o + 16);
    key[3] = dv.getUint16(o + 20); key[4] = dv.getUint16(o + 22);
    sink = (sink + key[3]) | 0;
  }
}

function lengthsOf(slab: Uint8Array, length = frameLength): Int32Array {
  const l = new Int32Array(BATCH);
  for (let i = 0; i < BATCH; i++) l[i] = length(slab, i);
  return l;
}

const tcpSlab = slabOf('tcp');
const udpSlab = slabOf('udp');
const tcpLengths = lengthsOf(tcpSlab);
const udpLengths = lengthsOf(udpSlab);
const tcp6Slab = slab6Of('tcp');
const udp6Slab = slab6Of('udp');
const tcp6Lengths = lengthsOf(tcp6Slab, frameLength6);
const udp6Lengths = lengthsOf(udp6Slab, frameLength6);
const sumBuf = new Uint8Array(4096).map((_, i) => (i * 31) & 0xff);

const bench = new Bench({ time: TIME_MS, warmupTime: 200 });
// [name, per-op unit count] — BATCH packets per op, or 1 checksum per op.
const units = new Map<string, number>();
function add(name: string, perOp: number, fn: () => void): void {
  units.set(name, perOp);
  bench.add(name, fn);
}
add('parse + 5-tuple + DNAT, TCP/IPv4', BATCH, () => parseTupleDnat(tcpSlab, tcpLengths));
add('parse + 5-tuple + DNAT, UDP/IPv4', BATCH, () => parseTupleDnat(udpSlab, udpLengths));
add('parse only (decodeFrame), TCP/IPv4', BATCH, () => parseOnly(tcpSlab, tcpLengths));
add('parse + DNAT66, TCP/IPv6', BATCH, () => parseDnat6(tcp6Slab, tcp6Lengths));
add('parse + DNAT66, UDP/IPv6', BATCH, () => parseDnat6(udp6Slab, udp6Lengths));
add('parse only (decodeFrame), TCP/IPv6', BATCH, () => parseOnly(tcp6Slab, tcp6Lengths));
add('read 5-tuple: byte reads', BATCH, () => tupleBytes(tcpSlab));
add('read 5-tuple: DataView', BATCH, () => tupleDataView(tcpSlab));
// 64 sums per op so the harness's own per-op cost does not swamp a 20-byte sum.
const SUMS = 64;
for (const n of [20, 40, 64, 128, 1460]) {
  add(`checksum ${n} B: byte pairs`, SUMS, () => { for (let k = 0; k < SUMS; k++) sink = (sink + sumBytes(sumBuf, 2 + k, n)) | 0; });
  add(`checksum ${n} B: 32-bit words`, SUMS, () => { for (let k = 0; k < SUMS; k++) sink = (sink + sumWords(sumBuf, 2 + k, n)) | 0; });
}

await bench.run();

const rows: string[][] = [['task', 'ns/unit', 'M units/s', '±%']];
for (const task of bench.tasks) {
  const r = task.result;
  if (r.state !== 'completed') { rows.push([task.name, r.state, '', '']); continue; }
  const perOp = units.get(task.name) ?? 1;
  const ns = (r.latency.mean * 1e6) / perOp;
  rows.push([task.name, ns.toFixed(1), (1e3 / ns).toFixed(2), r.latency.rme.toFixed(1)]);
}

// Heap growth and garbage collections over 1,000,000 packets of parse + DNAT.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
let gcs = 0;
const observer = new PerformanceObserver((list) => { gcs += list.getEntries().length; });
observer.observe({ entryTypes: ['gc'] });
gc();
await new Promise((r) => setTimeout(r, 10));
gcs = 0;
const before = getHeapStatistics().used_heap_size;
const batches = Math.ceil(1_000_000 / BATCH);
for (let b = 0; b < batches; b++) parseTupleDnat(b & 1 ? udpSlab : tcpSlab, b & 1 ? udpLengths : tcpLengths);
const growth = getHeapStatistics().used_heap_size - before;
await new Promise((r) => setTimeout(r, 10));
observer.disconnect();

const width = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(width[c]!) : cell.padStart(width[c]!))).join('  '));
console.log('(unit = one packet for the first eight rows, one checksum sum for the rest)');
console.log(`heap growth over ${batches * BATCH} packets (parse + 5-tuple + DNAT): ${growth} bytes (${(growth / (batches * BATCH)).toFixed(3)} B/packet), GCs during the loop: ${gcs}`);
if (sink === 42) console.log('');
if (process.argv.includes('--json')) {
  const out = new BenchJsonWriter('micro', 'tapir', []);
  for (const task of bench.tasks) {
    if (task.result.state !== 'completed') continue;
    out.push({ section: 'wire hot path', row: task.name, metric: 'ns per unit', unit: 'ns', mode: 'tapir', better: 'lower' }, (task.result.latency.mean * 1e6) / (units.get(task.name) ?? 1));
  }
  out.push({ section: 'allocation', row: 'parse + 5-tuple + DNAT', metric: 'heap growth per packet', unit: 'B', mode: 'tapir', better: 'lower' }, growth / (batches * BATCH));
  out.write(process.argv[process.argv.indexOf('--json') + 1]!);
}

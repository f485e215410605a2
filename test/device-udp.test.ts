// The batched UDP socket between two namespaces joined by a veth pair, over IPv4 and over
// IPv6 (an AF_INET6 socket: four address words per datagram). A socket belongs to the
// namespace it was opened in, so each end runs as a child process (this same file, with
// TAPIR_UDP_ROLE set) started with `ip netns exec`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Netns, vethPair } from './helpers/netns.ts';
import { UdpBatchSocket } from '../src/device/udp.ts';

type Family = 4 | 6;
const ADDRESSES = {
  4: { sender: '10.253.0.1', receiver: '10.253.0.2', unrouted: '10.99.0.1', prefix: 24 },
  6: { sender: 'fd00:253::1', receiver: 'fd00:253::2', unrouted: 'fd00:99::1', prefix: 64 },
} as const;
const SENDER_PORT = 40001;

function ipv4ToUint32(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

/** The socket's address words: one for IPv4, the four big-endian words of an IPv6 address. */
function addressWords(ip: string): number[] {
  if (!ip.includes(':')) return [ipv4ToUint32(ip)];
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t].map((g) => parseInt(g, 16));
  return [0, 1, 2, 3].map((w) => (groups[2 * w]! * 0x10000 + groups[2 * w + 1]!) >>> 0);
}

// Payload of datagram (or GSO segment) `seq`: the sequence number in the first two
// bytes, then bytes that depend on it, so a misplaced or mangled byte is caught.
function fillPayload(buf: Uint8Array, at: number, length: number, seq: number): void {
  buf[at] = seq >> 8; buf[at + 1] = seq & 0xff;
  for (let j = 2; j < length; j++) buf[at + j] = (seq * 7 + j) & 0xff;
}

function payloadSeq(buf: Uint8Array, at: number, length: number): number {
  const seq = (buf[at]! << 8) | buf[at + 1]!;
  for (let j = 2; j < length; j++) if (buf[at + j] !== ((seq * 7 + j) & 0xff)) return -1;
  return seq;
}

type Scenario = 'batch' | 'gso' | 'unreachable';
interface Datagram { socket: number; length: number; src: number[]; srcPort: number; segSize: number; seqs: number[] }
interface ReceiverReport { ports: number[]; groEnabled: boolean; datagrams: Datagram[] }
interface SenderReport { sent: number; gsoSupported: boolean; stats: { txErrors: number; lastTxErrno: number; txDroppedFull: number } }

const BATCH_FRAMES = 32;
const GSO_SEGMENT = 1000, GSO_TOTAL = 9500; // 9 full segments and one of 500

// ---- child roles -------------------------------------------------------------------

async function receiver(family: Family, gro: boolean, expectSegments: number): Promise<void> {
  const sockets = [0, 1].map(() => UdpBatchSocket.open({ address: ADDRESSES[family].receiver, port: 0, gro }));
  const slotSize = 65536, slots = 8, words = family === 6 ? 4 : 1;
  const slab = new Uint8Array(slots * slotSize);
  const lengths = new Int32Array(slots), seg = new Int32Array(slots);
  const addrs = new Uint32Array(slots * words), ports = new Uint16Array(slots);
  const report: ReceiverReport = { ports: sockets.map((s) => s.localPort), groEnabled: sockets[0]!.groEnabled, datagrams: [] };
  let segments = 0;
  const done = new Promise<void>((resolve) => {
    sockets.forEach((sock, index) => sock.onReadable(() => {
      for (let n = sock.recvBatch(slab, slotSize, 16, lengths, addrs, ports, seg, slots); n > 0; n = sock.recvBatch(slab, slotSize, 16, lengths, addrs, ports, seg, slots)) {
        for (let i = 0; i < n; i++) {
          const at = i * slotSize + 16, length = lengths[i]!, step = seg[i]! > 0 ? seg[i]! : length;
          const seqs: number[] = [];
          for (let off = 0; off < length; off += step) seqs.push(payloadSeq(slab, at + off, Math.min(step, length - off)));
          report.datagrams.push({ socket: index, length, src: [...addrs.subarray(i * words, i * words + words)], srcPort: ports[i]!, segSize: seg[i]!, seqs });
          segments += seqs.length;
        }
      }
      if (segments >= expectSegments) resolve();
    }));
  });
  process.stdout.write(`ready ${JSON.stringify(report.ports)}\n`);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise((r) => { timer = setTimeout(r, 5000); })]);
  clearTimeout(timer);
  for (const s of sockets) s.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

function sender(family: Family, scenario: Scenario, ports: number[]): void {
  const { sender: SENDER_IP, receiver: RECEIVER_IP, unrouted } = ADDRESSES[family];
  const sock = UdpBatchSocket.open({ address: SENDER_IP, port: SENDER_PORT });
  assert.equal(sock.family, family);
  const slab = new Uint8Array(64 * 1024);
  const offsets = new Int32Array(BATCH_FRAMES), lengths = new Int32Array(BATCH_FRAMES);
  const words = family === 6 ? 4 : 1;
  const dst = new Uint32Array(BATCH_FRAMES * words), dstPorts = new Uint16Array(BATCH_FRAMES), gso = new Int32Array(BATCH_FRAMES);
  let count: number;
  if (scenario === 'batch') {
    let at = 0;
    for (let i = 0; i < BATCH_FRAMES; i++) {
      offsets[i] = at; lengths[i] = 100 + i * 13;
      fillPayload(slab, at, lengths[i]!, i);
      dst.set(addressWords(RECEIVER_IP), i * words); dstPorts[i] = ports[i % 2]!;
      at += lengths[i]! + 5; // frames need not be adjacent
    }
    count = BATCH_FRAMES;
  } else if (scenario === 'unreachable') {
    // The middle frame goes to an address with no route: sendmmsg stops there, the
    // frame is counted and skipped, and the batch carries on.
    for (let i = 0; i < 3; i++) {
      offsets[i] = i * 200; lengths[i] = 150;
      fillPayload(slab, i * 200, 150, i);
      dst.set(addressWords(i === 1 ? unrouted : RECEIVER_IP), i * words); dstPorts[i] = ports[0]!;
    }
    count = 3;
  } else {
    for (let k = 0; k * GSO_SEGMENT < GSO_TOTAL; k++) fillPayload(slab, k * GSO_SEGMENT, Math.min(GSO_SEGMENT, GSO_TOTAL - k * GSO_SEGMENT), k);
    offsets[0] = 0; lengths[0] = GSO_TOTAL; gso[0] = GSO_SEGMENT;
    dst.set(addressWords(RECEIVER_IP), 0); dstPorts[0] = ports[0]!;
    count = 1;
  }
  const sent = sock.sendBatch(slab, offsets, lengths, dst, dstPorts, gso, count);
  const report: SenderReport = { sent, gsoSupported: sock.gsoSupported, stats: sock.stats };
  sock.close();
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

// ---- the tests -----------------------------------------------------------------------

function lines(child: ChildProcess): { first: Promise<string>; all: Promise<string[]> } {
  let buffer = '';
  let resolveFirst: (line: string) => void;
  const first = new Promise<string>((r) => { resolveFirst = r; });
  child.stdout?.on('data', (d: Buffer) => {
    buffer += d.toString();
    if (buffer.includes('\n')) resolveFirst(buffer.slice(0, buffer.indexOf('\n')));
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  const all = new Promise<string[]>((resolve, reject) => child.on('close', (code) => {
    if (code === 0) resolve(buffer.trim().split('\n'));
    else reject(new Error(`child exited ${code}: ${stderr}`));
  }));
  all.catch(() => resolveFirst(''));
  return { first, all };
}

async function exchange(family: Family, scenario: Scenario, gro: boolean): Promise<{ rx: ReceiverReport; tx: SenderReport }> {
  const a = new Netns('du');
  const b = new Netns('du');
  try {
    const [ifA, ifB] = vethPair(a, b);
    const { sender: SENDER_IP, receiver: RECEIVER_IP, prefix } = ADDRESSES[family];
    // nodad: the address is usable at once, not after duplicate address detection.
    const extra = family === 6 ? ['nodad'] : [];
    a.exec('ip', ['addr', 'add', `${SENDER_IP}/${prefix}`, 'dev', ifA, ...extra]);
    b.exec('ip', ['addr', 'add', `${RECEIVER_IP}/${prefix}`, 'dev', ifB, ...extra]);
    const file = new URL(import.meta.url).pathname;
    const expect = scenario === 'batch' ? BATCH_FRAMES : scenario === 'unreachable' ? 2 : Math.ceil(GSO_TOTAL / GSO_SEGMENT);
    const rxChild = lines(b.spawn(process.execPath, [file], { env: { ...process.env, TAPIR_UDP_ROLE: JSON.stringify(['recv', family, gro, expect]) } }));
    const ready = await rxChild.first;
    assert.match(ready, /^ready /, 'receiver started');
    const ports = JSON.parse(ready.slice(6)) as number[];
    const txChild = lines(a.spawn(process.execPath, [file], { env: { ...process.env, TAPIR_UDP_ROLE: JSON.stringify(['send', family, scenario, ports]) } }));
    const tx = JSON.parse((await txChild.all).at(-1)!) as SenderReport;
    const rx = JSON.parse((await rxChild.all).at(-1)!) as ReceiverReport;
    return { rx, tx };
  } finally {
    a.destroy();
    b.destroy();
  }
}

const role = process.env.TAPIR_UDP_ROLE;
if (role !== undefined) {
  const [kind, family, x, y] = JSON.parse(role) as [string, Family, unknown, unknown];
  if (kind === 'recv') await receiver(family, x as boolean, y as number);
  else sender(family, x as Scenario, y as number[]);
} else for (const family of [4, 6] as const) {
  const SENDER_IP = ADDRESSES[family].sender;
  test(`IPv${family}: sendBatch/recvBatch: 32 datagrams to two ports, with source address and port`, async () => {
    const { rx, tx } = await exchange(family, 'batch', false);
    assert.equal(tx.sent, BATCH_FRAMES);
    assert.equal(rx.datagrams.length, BATCH_FRAMES, 'every datagram arrived');
    const seen = new Set<number>();
    for (const d of rx.datagrams) {
      assert.deepEqual(d.src, addressWords(SENDER_IP), 'source address, host-order words');
      assert.equal(d.srcPort, SENDER_PORT);
      assert.equal(d.segSize, 0, 'no GRO asked for');
      assert.equal(d.seqs.length, 1);
      const seq = d.seqs[0]!;
      assert.ok(seq >= 0, 'payload intact');
      assert.equal(d.length, 100 + seq * 13, 'length matches what was sent');
      assert.equal(d.socket, seq % 2, 'went to the destination port of its frame');
      seen.add(seq);
    }
    assert.equal(seen.size, BATCH_FRAMES);
  });

  test(`IPv${family}: UDP GSO: one 9500-byte send with segment size 1000 arrives as 10 datagrams`, async () => {
    const { rx, tx } = await exchange(family, 'gso', false);
    assert.ok(tx.gsoSupported, 'the kernel supports UDP_SEGMENT');
    assert.equal(tx.sent, 1);
    assert.deepEqual(rx.datagrams.map((d) => d.length), [1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 500]);
    assert.deepEqual(rx.datagrams.map((d) => d.seqs[0]), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test(`IPv${family}: UDP GSO into a GRO socket: the segments arrive intact, coalesced ones carry their segment size`, async () => {
    const { rx, tx } = await exchange(family, 'gso', true);
    assert.ok(rx.groEnabled, 'UDP_GRO accepted');
    assert.equal(tx.sent, 1);
    const seqs = rx.datagrams.flatMap((d) => d.seqs);
    assert.deepEqual(seqs, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'every segment, in order, intact');
    assert.equal(rx.datagrams.reduce((s, d) => s + d.length, 0), GSO_TOTAL);
    for (const d of rx.datagrams) if (d.seqs.length > 1) assert.equal(d.segSize, GSO_SEGMENT);
    // veth hands the GSO packet over whole, so GRO sees it as one coalesced datagram.
    assert.equal(rx.datagrams.length, 1, `coalesced: ${JSON.stringify(rx.datagrams.map((d) => [d.length, d.segSize]))}`);
  });

  test(`IPv${family}: a refused datagram mid-batch is counted and skipped; the rest are sent`, async () => {
    const { rx, tx } = await exchange(family, 'unreachable', false);
    assert.equal(tx.sent, 2);
    assert.equal(tx.stats.txErrors, 1);
    assert.equal(tx.stats.lastTxErrno, 101, 'ENETUNREACH');
    assert.equal(tx.stats.txDroppedFull, 0);
    assert.deepEqual(rx.datagrams.map((d) => d.seqs[0]), [0, 2]);
  });
}

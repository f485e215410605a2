// Busy polling after traffic (src/device/busy-poll.ts, native/src/readiness.cc): a
// UdpBatchSocket pings an echo process across a veth pair, one datagram in flight at a
// time, 300 times. With busy polling off no callback comes from a busy poll; with it on
// the answers are the same, in order and intact, and replies are picked up by the busy
// poll (an echo on the other core answers in well under the 1000 µs allowed, so the
// process need not sleep between a ping and its answer). Each side runs as a child in
// its own namespace (this file, with TAPIR_BUSY_POLL_ROLE set).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { ChildProcess } from 'node:child_process';
import { Netns, vethPair } from './helpers/netns.ts';
import { UdpBatchSocket } from '../src/device/udp.ts';
import { busyPollStats, MAX_BUSY_POLL_MICROS, setBusyPoll } from '../src/device/busy-poll.ts';

const PINGER = '10.252.0.1', ECHO = '10.252.0.2', ECHO_PORT = 40002;
const PINGS = 300;

function ipv4Word(ip: string): number {
  return ip.split('.').reduce((acc, part) => acc * 256 + Number(part), 0);
}

// ---- child roles -------------------------------------------------------------------

function echo(): void {
  const sock = createSocket('udp4');
  sock.on('message', (msg, from) => sock.send(msg, from.port, from.address));
  sock.bind(ECHO_PORT, ECHO, () => process.stdout.write('ready\n'));
}

async function pinger(micros: number): Promise<void> {
  assert.equal(setBusyPoll(micros), true);
  const sock = UdpBatchSocket.open({ address: PINGER, port: 0 });
  const slot = 2048;
  const tx = new Uint8Array(slot), rx = new Uint8Array(8 * slot);
  const offsets = new Int32Array([0]), lengths = new Int32Array([64]), dst = new Uint32Array([ipv4Word(ECHO)]), dstPorts = new Uint16Array([ECHO_PORT]), gso = new Int32Array(1);
  const rxLengths = new Int32Array(8), src = new Uint32Array(8), srcPorts = new Uint16Array(8), seg = new Int32Array(8);
  let sent = 0, answered = 0, wrong = 0;
  const send = (): void => {
    tx.fill(sent & 0xff, 0, 64);
    tx[0] = sent >> 8; tx[1] = sent & 0xff;
    sock.sendBatch(tx, offsets, lengths, dst, dstPorts, gso, 1);
    sent++;
  };
  const before = busyPollStats()!;
  await new Promise<void>((resolve) => {
    sock.onReadable(() => {
      const n = sock.recvBatch(rx, slot, 0, rxLengths, src, srcPorts, seg, 8);
      for (let i = 0; i < n; i++) {
        const at = i * slot;
        const seq = (rx[at]! << 8) | rx[at + 1]!;
        let intact = rxLengths[i] === 64 && seq === answered;
        for (let j = 2; j < 64 && intact; j++) intact = rx[at + j] === (seq & 0xff);
        if (!intact) wrong++;
        answered++;
      }
      if (answered >= PINGS) resolve();
      else if (n > 0) send();
    });
    send();
  });
  const after = busyPollStats()!;
  sock.close();
  process.stdout.write(`${JSON.stringify({ answered, wrong, spins: after.spins - before.spins, callbacks: after.callbacks - before.callbacks })}\n`);
}

// ---- the test ----------------------------------------------------------------------

function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '', err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before a line: ${err}`)));
  });
}

interface Report { answered: number; wrong: number; spins: number; callbacks: number }

async function pingPong(micros: number): Promise<Report> {
  const a = new Netns('dbp');
  const b = new Netns('dbp');
  try {
    const [va, vb] = vethPair(a, b, 'bp');
    a.exec('ip', ['addr', 'add', `${PINGER}/24`, 'dev', va]);
    b.exec('ip', ['addr', 'add', `${ECHO}/24`, 'dev', vb]);
    a.exec('ip', ['link', 'set', va, 'up']);
    b.exec('ip', ['link', 'set', vb, 'up']);
    const file = new URL(import.meta.url).pathname;
    const echoChild = b.spawn(process.execPath, [file], { env: { ...process.env, TAPIR_BUSY_POLL_ROLE: 'echo' } });
    assert.equal(await firstLine(echoChild), 'ready');
    const line = await firstLine(a.spawn(process.execPath, [file], { env: { ...process.env, TAPIR_BUSY_POLL_ROLE: `ping ${micros}` } }));
    return JSON.parse(line) as Report;
  } finally {
    a.destroy();
    b.destroy();
  }
}

const role = process.env.TAPIR_BUSY_POLL_ROLE;
if (role === 'echo') echo();
else if (role?.startsWith('ping ')) await pinger(Number(role.slice(5)));
else {
  test('busy polling off: every answer arrives, none through a busy poll', async () => {
    const r = await pingPong(0);
    assert.deepEqual([r.answered, r.wrong, r.spins, r.callbacks], [PINGS, 0, 0, 0]);
  });

  test('busy polling on: the same answers, and replies picked up by the busy poll instead of a wakeup', async () => {
    const r = await pingPong(MAX_BUSY_POLL_MICROS);
    assert.deepEqual([r.answered, r.wrong], [PINGS, 0]);
    assert.ok(r.spins > 0, `no busy poll ran: ${JSON.stringify(r)}`);
    assert.ok(r.callbacks > 0, `no reply came through a busy poll: ${JSON.stringify(r)}`);
  });

  test('setBusyPoll refuses what is not 0..MAX_BUSY_POLL_MICROS microseconds', () => {
    for (const bad of [-1, 1.5, MAX_BUSY_POLL_MICROS + 1, Number.NaN]) assert.throws(() => setBusyPoll(bad), RangeError);
  });
}

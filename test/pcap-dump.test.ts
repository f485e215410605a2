// `tapir pcap dump` on frames built byte by byte: wrong checksums at every layer (tshark,
// validating, agrees), an 802.1Q tag, frames that do not decode (the dump goes on),
// a frame cut by the snaplen, a truncated file, a file that is no pcap, usage errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapWriter } from '../src/pcap/index.ts';
import type { FrameJson } from '../src/pcap/decode.ts';
import { buildPacket, parseIpv6, type PacketRepr } from '../src/wire/index.ts';
import { tsharkFrames } from './fixtures/pcap/tshark.ts';

const TAPIR = new URL('../bin/tapir', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'tapir-pcap-dump-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function tapir(...args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(TAPIR, args, { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function jsonLines(stdout: string): FrameJson[] {
  return stdout.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as FrameJson);
}

const MAC_A = 0x02_00_00_00_00_0a;
const MAC_B = 0x02_00_00_00_00_0b;
const eth = { dst: MAC_B, src: MAC_A };
const A = 0x0a_01_00_01; // 10.1.0.1
const B = 0x0a_01_00_02;
const A6 = parseIpv6('fd00::a')!;
const B6 = parseIpv6('fd00::b')!;
const payload = new TextEncoder().encode('tapir');

const tcpSyn: PacketRepr = { eth, ipv4: { src: A, dst: B }, tcp: { srcPort: 40000, dstPort: 80, seq: 1000, ack: 0, flags: 0x02 } };
const udp4: PacketRepr = { eth, ipv4: { src: A, dst: B }, udp: { srcPort: 5000, dstPort: 53 }, payload };
const icmp4: PacketRepr = { eth, ipv4: { src: A, dst: B }, icmp: { type: 8, code: 0, restOfHeader: 0x00010001 }, payload };
const icmp6: PacketRepr = { eth, ipv6: { src: A6, dst: B6 }, icmp: { type: 128, code: 0, restOfHeader: 0x00020001 }, payload };
const udp6: PacketRepr = { eth, ipv6: { src: A6, dst: B6 }, udp: { srcPort: 5000, dstPort: 5001 }, payload };

// Flips one byte at `at` (a checksum byte or a covered byte).
function corrupt(frame: Uint8Array, at: number): Uint8Array {
  const f = frame.slice();
  f[at]! ^= 0x5a;
  return f;
}

const L3 = 14;
const L4 = 34;

interface Case { name: string; frame: Uint8Array; check: (f: FrameJson) => void }

function cases(): Case[] {
  const innerBad = corrupt(buildPacket({ ...tcpSyn, tcp: { ...tcpSyn.tcp!, flags: 0x12, ack: 77 } }), L4 + 16);
  const vxlanBadInner = buildPacket({ eth, ipv4: { src: A, dst: B }, udp: { srcPort: 33333, dstPort: 4789 }, vxlan: { vni: 7 }, payload: innerBad });
  const udp6NoChecksum = buildPacket(udp6);
  udp6NoChecksum[L3 + 40 + 6] = 0;
  udp6NoChecksum[L3 + 40 + 7] = 0;
  const truncatedTcp = buildPacket({ eth, ipv4: { src: A, dst: B, protocol: 6 }, payload: new Uint8Array(10) });
  return [
    { name: 'good TCP SYN', frame: buildPacket(tcpSyn), check: (f) => { assert.equal(f.checksumOk, true); assert.equal(f.tcp!.flags, 'S'); } },
    { name: 'bad TCP checksum', frame: corrupt(buildPacket(tcpSyn), L4 + 16), check: (f) => assert.equal(f.checksumOk, false) },
    { name: 'bad IPv4 header checksum', frame: corrupt(buildPacket(udp4), L3 + 10), check: (f) => assert.equal(f.checksumOk, false) },
    { name: 'bad UDP checksum (payload changed)', frame: corrupt(buildPacket(udp4), L4 + 8), check: (f) => assert.equal(f.checksumOk, false) },
    { name: 'UDP over IPv4 without checksum', frame: buildPacket({ ...udp4, l4Checksum: 'none' }), check: (f) => assert.equal(f.checksumOk, true) },
    { name: 'bad ICMP checksum', frame: corrupt(buildPacket(icmp4), L4 + 2), check: (f) => { assert.equal(f.checksumOk, false); assert.deepEqual(f.icmp, { type: 8, code: 0 }); } },
    { name: 'good ICMPv6 echo', frame: buildPacket(icmp6), check: (f) => { assert.equal(f.checksumOk, true); assert.equal(f.ip!.src, 'fd00::a'); } },
    { name: 'bad ICMPv6 checksum', frame: corrupt(buildPacket(icmp6), L3 + 40 + 3), check: (f) => assert.equal(f.checksumOk, false) },
    { name: 'UDP over IPv6 with checksum 0', frame: udp6NoChecksum, check: (f) => assert.equal(f.checksumOk, false) },
    {
      name: 'VXLAN, good outer, bad inner TCP checksum', frame: vxlanBadInner, check: (f) => {
        assert.deepEqual(f.vxlan, { vni: 7 });
        assert.equal(f.inner!.tcp!.flags, 'SA');
        assert.equal(f.inner!.checksumOk, false);
        assert.equal(f.checksumOk, false);
      },
    },
    { name: '802.1Q tagged UDP', frame: buildPacket({ ...udp4, eth: { ...eth, vlan: 100 } }), check: (f) => { assert.deepEqual(f.eth, { src: '02:00:00:00:00:0a', dst: '02:00:00:00:00:0b', type: 0x0800, vlan: 100 }); assert.equal(f.checksumOk, true); } },
    { name: 'TCP header cut short', frame: truncatedTcp, check: (f) => { assert.equal(f.error, 'truncated-tcp'); assert.equal(f.ip!.protocol, 6); assert.equal(f.tcp, undefined); } },
    { name: 'five bytes of garbage', frame: new Uint8Array([1, 2, 3, 4, 5]), check: (f) => { assert.equal(f.error, 'truncated-ethernet'); assert.equal(f.eth, undefined); } },
    { name: 'LLDP ethertype', frame: buildPacket({ eth, payload: new Uint8Array(30) }).fill(0x88, 12, 13).fill(0xcc, 13, 14), check: (f) => { assert.equal(f.error, 'unsupported-ethertype'); assert.equal(f.eth!.type, 0x88cc); } },
    { name: 'good ICMP after the bad frames', frame: buildPacket(icmp4), check: (f) => { assert.equal(f.checksumOk, true); assert.equal(f.error, undefined); } },
  ];
}

function writeCases(path: string, list: Case[], snaplen?: number): void {
  using w = PcapWriter.toFile(path, snaplen === undefined ? {} : { snaplen });
  list.forEach((c, i) => w.writeFrameAt(c.frame, 0, c.frame.length, 1_700_000_000, i * 1000));
}

test('checksums, VLAN tags and undecodable frames, checked against tshark', () => {
  const list = cases();
  const path = join(dir, 'cases.pcap');
  writeCases(path, list);
  const r = tapir('pcap', 'dump', path, '--json');
  assert.equal(r.status, 0, r.stderr);
  const frames = jsonLines(r.stdout);
  assert.equal(frames.length, list.length);
  const theirs = tsharkFrames(path);
  list.forEach((c, i) => {
    const f = frames[i]!;
    assert.equal(f.n, i + 1);
    assert.equal(f.time, `1700000000.${String(i).padStart(6, '0')}`);
    try {
      c.check(f);
      if (f.error === undefined) {
        // tshark, validating every checksum, reaches the same verdict and fields.
        const t = theirs[i]!.layers;
        assert.equal(f.checksumOk, t.checksumOk, 'tshark checksum verdict');
        assert.deepEqual(f.eth, t.eth);
        assert.deepEqual(f.ip, t.ip);
        assert.deepEqual(f.icmp, t.icmp);
        assert.deepEqual(f.udp, t.udp);
        if (f.inner) assert.equal(f.inner.checksumOk, t.inner!.checksumOk, 'tshark inner checksum verdict');
      }
    } catch (err) {
      (err as Error).message = `${c.name}: ${(err as Error).message}\n${JSON.stringify(f)}`;
      throw err;
    }
  });
  // The text form flags the same frames.
  const text = tapir('pcap', 'dump', path).stdout.trim().split('\n');
  assert.equal(text.length, list.length);
  text.forEach((line, i) => {
    assert.equal(line.includes('[bad checksum]'), !frames[i]!.checksumOk, line);
    assert.equal(line.includes('[error: '), frames[i]!.error !== undefined, line);
  });
  assert.match(text[10]!, /^11 1700000000\.000010 vlan 100 IP 10\.1\.0\.1\.5000 > 10\.1\.0\.2\.53: UDP length 13, length 51$/);
});

test('a frame cut by the snaplen says so in its error', () => {
  const path = join(dir, 'snap.pcap');
  writeCases(path, cases().slice(0, 1), 40);
  const [f] = jsonLines(tapir('pcap', 'dump', path, '--json').stdout);
  assert.equal(f!.caplen, 40);
  assert.equal(f!.len, 54);
  assert.match(f!.error!, /\(the capture kept 40 of 54 bytes\)$/);
  assert.equal(f!.eth!.type, 0x0800);
});

test('a truncated file prints the frames before the damage, then fails', () => {
  const list = cases();
  const path = join(dir, 'whole.pcap');
  writeCases(path, list);
  const cut = join(dir, 'cut.pcap');
  const bytes = readFileSync(path);
  writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
  for (const args of [['--json'], []]) {
    const r = tapir('pcap', 'dump', cut, ...args);
    assert.equal(r.status, 1);
    assert.equal(r.stdout.trim().split('\n').length, list.length - 1);
    assert.match(r.stderr, /^tapir: .*cut\.pcap: record 15 at byte \d+: the file ends after \d+ of \d+ captured bytes \(PCAP_TRUNCATED_RECORD\)\n$/);
  }
});

test('a file that is not a pcap, or is missing, fails with a message and no output', () => {
  const ng = join(dir, 'x.pcapng');
  writeFileSync(ng, Buffer.from('0a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff', 'hex'));
  let r = tapir('pcap', 'dump', ng, '--json');
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /not a pcap file: magic 0x0a0d0d0a \(this is a pcapng file.*\(PCAP_BAD_MAGIC\)/);
  const short = join(dir, 'short.pcap');
  writeFileSync(short, Buffer.from('d4c3b2a1020004', 'hex'));
  r = tapir('pcap', 'dump', short);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /PCAP_TRUNCATED_HEADER/);
  r = tapir('pcap', 'dump', join(dir, 'missing.pcap'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing\.pcap: no such file/);
});

test('usage: help, missing file, unknown options', () => {
  const help = tapir('pcap', 'dump', '--help');
  assert.equal(help.status, 0);
  for (const key of ['checksumOk', 'vxlan', 'RFC 5952', '"SA"', 'inner']) assert.ok(help.stdout.includes(key), key);
  assert.equal(tapir('pcap', 'dump').status, 2);
  assert.equal(tapir('pcap', 'dump', 'a', 'b').status, 2);
  const bad = tapir('pcap', 'dump', 'a', '--jsn');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /unknown option '--jsn'/);
  assert.equal(tapir('pcap', 'frobnicate').status, 2);
});

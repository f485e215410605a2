// Real captures: tcpdump records ARP, ping, ping -6, curl to an HTTP server, iperf3 UDP
// and VXLAN between two namespaces, in microsecond and nanosecond files. Our reader must
// read them as tshark does, and `tapir pcap dump --json` must give tshark's fields,
// frame by frame, including raw-IP copies of the same traffic written by our writer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapLinkType, PcapReader, PcapWriter, formatTimestamp } from '../src/pcap/index.ts';
import type { FrameJson, LayersJson } from '../src/pcap/decode.ts';
import { captureTraffic, type Captures } from './fixtures/pcap/lab.ts';
import { tsharkFrames, type Expected, type ExpectedLayers } from './fixtures/pcap/tshark.ts';

const TAPIR = new URL('../bin/tapir', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'tapir-pcap-capture-'));
let captures: Captures;

before(async () => { captures = await captureTraffic(dir); });
after(() => rmSync(dir, { recursive: true, force: true }));

function dumpJson(path: string): FrameJson[] {
  const out = execFileSync(TAPIR, ['pcap', 'dump', path, '--json'], { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 30_000 });
  return out.trim().split('\n').map((l) => JSON.parse(l) as FrameJson);
}

// Our layers in the shape of tshark's: `ack` only where tshark shows one, error dropped
// (asserted absent separately).
function comparable(l: LayersJson, expected: ExpectedLayers): ExpectedLayers {
  const r: ExpectedLayers = { checksumOk: l.checksumOk };
  if (l.eth) r.eth = l.eth;
  if (l.arp) r.arp = l.arp;
  if (l.ip) r.ip = l.ip;
  if (l.tcp) r.tcp = expected.tcp?.ack === undefined ? { srcPort: l.tcp.srcPort, dstPort: l.tcp.dstPort, flags: l.tcp.flags, seq: l.tcp.seq } : l.tcp;
  if (l.udp) r.udp = l.udp;
  if (l.icmp) r.icmp = l.icmp;
  if (l.vxlan) r.vxlan = l.vxlan;
  if (l.inner) r.inner = comparable(l.inner, expected.inner ?? { checksumOk: true });
  return r;
}

function assertSameAsTshark(ours: FrameJson[], theirs: Expected[], nanosecond: boolean): void {
  assert.equal(ours.length, theirs.length, 'frame count');
  for (let i = 0; i < ours.length; i++) {
    const o = ours[i]!;
    const t = theirs[i]!;
    assert.equal(o.error, undefined, `frame ${o.n}: ${o.error}`);
    assert.equal(o.n, t.n);
    assert.equal(nanosecond ? o.time : `${o.time}000`, t.time, `frame ${o.n} time`);
    assert.equal(o.len, t.len);
    assert.equal(o.caplen, t.caplen);
    assert.deepEqual(comparable(o, t.layers), t.layers, `frame ${o.n}`);
  }
}

// What the lab sent must be in the capture, or the comparisons prove little.
function assertTrafficPresent(frames: FrameJson[]): void {
  const has = (what: string, f: (x: FrameJson) => boolean) => assert.ok(frames.some(f), `capture has ${what}`);
  has('an ARP request', (x) => x.arp?.op === 1);
  has('an ARP reply', (x) => x.arp?.op === 2);
  has('an ICMP echo reply', (x) => x.ip?.version === 4 && x.icmp?.type === 0);
  has('an ICMPv6 echo reply', (x) => x.ip?.version === 6 && x.icmp?.type === 129);
  has('a TCP SYN-ACK from the HTTP server', (x) => x.tcp?.flags === 'SA' && x.tcp.srcPort === 8080);
  has('iperf3 UDP datagrams', (x) => x.udp?.dstPort === 5201 && x.udp.length === 1008);
  has('VXLAN carrying an ICMP echo', (x) => x.vxlan?.vni === 4242 && x.inner?.icmp?.type === 8 && x.inner.ip?.src === '10.234.0.1');
  has('VXLAN carrying ARP', (x) => x.inner?.arp !== undefined);
  assert.ok(frames.every((x) => x.checksumOk), 'offloads are off, so every checksum is right');
}

for (const nanosecond of [false, true]) {
  const label = nanosecond ? 'nanosecond' : 'microsecond';
  const file = () => (nanosecond ? captures.nano : captures.micro);

  test(`our reader reads tcpdump's ${label} file as tshark does`, () => {
    const theirs = tsharkFrames(file());
    using reader = PcapReader.open(file(), { chunkSize: 4096 });
    assert.equal(reader.header.nanosecond, nanosecond);
    assert.equal(reader.header.linkType, PcapLinkType.ETHERNET);
    const seen: string[] = [];
    for (const r of reader) seen.push(`${r.number} ${formatTimestamp(r.tsSec, r.tsFrac, nanosecond)} ${r.capturedLength} ${r.originalLength}`);
    assert.deepEqual(seen, theirs.map((t) => `${t.n} ${nanosecond ? t.time : t.time.slice(0, -3)} ${t.caplen} ${t.len}`));
    assert.ok(seen.length > 50, `${seen.length} frames`);
  });

  test(`tapir pcap dump --json agrees with tshark on tcpdump's ${label} file`, () => {
    const ours = dumpJson(file());
    assertTrafficPresent(ours);
    assertSameAsTshark(ours, tsharkFrames(file()), nanosecond);
  });
}

test('raw-IP copies of the capture (link types 101 and 228) decode as tshark decodes them', () => {
  const raw = join(dir, 'raw.pcap');
  const v4 = join(dir, 'ipv4.pcap');
  {
    using rawWriter = PcapWriter.toFile(raw, { linkType: PcapLinkType.RAW_IP, nanosecond: true });
    using v4Writer = PcapWriter.toFile(v4, { linkType: PcapLinkType.IPV4 });
    using reader = PcapReader.open(captures.nano);
    for (const r of reader) {
      const type = (r.buf[r.offset + 12]! << 8) | r.buf[r.offset + 13]!;
      if (type !== 0x0800 && type !== 0x86dd) continue;
      const ipLength = r.capturedLength - 14;
      rawWriter.writeFrameAt(r.buf, r.offset + 14, ipLength, r.tsSec, r.tsFrac);
      if (type === 0x0800) v4Writer.writeFrameAt(r.buf, r.offset + 14, ipLength, r.tsSec, r.tsFrac);
    }
  }
  const rawFrames = dumpJson(raw);
  assert.ok(rawFrames.every((f) => f.eth === undefined && f.ip !== undefined));
  assert.ok(rawFrames.some((f) => f.ip!.version === 6) && rawFrames.some((f) => f.inner?.eth !== undefined));
  assertSameAsTshark(rawFrames, tsharkFrames(raw), true);
  const v4Frames = dumpJson(v4);
  assert.ok(v4Frames.length > 0 && v4Frames.every((f) => f.ip!.version === 4));
  assertSameAsTshark(v4Frames, tsharkFrames(v4), false);
});

test('text output: one tcpdump-like line per frame', () => {
  const out = execFileSync(TAPIR, ['pcap', 'dump', captures.micro], { encoding: 'utf8', timeout: 30_000 }).trim().split('\n');
  const count = tsharkFrames(captures.micro).length;
  assert.equal(out.length, count);
  out.forEach((line, i) => assert.match(line, new RegExp(`^${i + 1} \\d+\\.\\d{6} .*, length \\d+$`)));
  const some = (re: RegExp) => assert.ok(out.some((l) => re.test(l)), `a line like ${re}`);
  // Either side may ask first: B's own VXLAN start-up traffic can resolve A before A's
  // ping does (the capture's ARP check, assertTrafficPresent, accepts either too).
  some(/ ARP request who-has 10\.233\.0\.[12] tell 10\.233\.0\.[12], length 42$/);
  some(/ IP 10\.233\.0\.1 > 10\.233\.0\.2: ICMP echo request, length 98$/);
  some(/ IP6 fd00:233::2 > fd00:233::1: ICMP6 echo reply, length 118$/);
  some(/ IP 10\.233\.0\.2\.8080 > 10\.233\.0\.1\.\d+: TCP \[SA\] seq \d+ ack \d+, length 74$/);
  some(/ IP 10\.233\.0\.1\.\d+ > 10\.233\.0\.2\.4789: UDP length \d+ VXLAN vni 4242 \| \S+ > \S+ IPv4 \(0x0800\) IP 10\.234\.0\.1 > 10\.234\.0\.2: ICMP echo request, length \d+$/);
});

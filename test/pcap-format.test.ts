// The pcap reader and writer on their own: round trips in every variant we write,
// streaming reads across chunk boundaries, and every malformed-file error code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { PerformanceObserver } from 'node:perf_hooks';
import { PcapLinkType, PcapError, PcapReader, PcapWriter, formatTimestamp, type PcapWriterOptions } from '../src/pcap/index.ts';
import { ipv4Udp, udpFrames } from './fixtures/pcap/frames.ts';

const dir = mkdtempSync(join(tmpdir(), 'tapir-pcap-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const BASE_SEC = 1_700_000_000;

interface Frame { bytes: Uint8Array; sec: number; nsec: number }

function frames(list: Uint8Array[]): Frame[] {
  return list.map((bytes, i) => ({ bytes, sec: BASE_SEC + i, nsec: (i * 123_456_789 + 987) % 1_000_000_000 }));
}

function writeFile(name: string, list: Frame[], options: PcapWriterOptions): string {
  const path = join(dir, name);
  using w = PcapWriter.toFile(path, options);
  // A frame inside a larger slab, at an odd offset, as the capture hot path will pass it.
  for (const f of list) {
    const slab = new Uint8Array(f.bytes.length + 100);
    slab.set(f.bytes, 37);
    w.writeFrameAt(slab, 37, f.bytes.length, f.sec, f.nsec);
  }
  assert.equal(w.framesWritten, list.length);
  return path;
}

function readAll(reader: PcapReader): { bytes: Uint8Array; sec: number; frac: number; orig: number; number: number }[] {
  const out = [];
  for (const r of reader) {
    out.push({ bytes: Uint8Array.from(r.buf.subarray(r.offset, r.offset + r.capturedLength)), sec: r.tsSec, frac: r.tsFrac, orig: r.originalLength, number: r.number });
  }
  return out;
}

function expectError(fn: () => unknown, code: string, message?: RegExp): PcapError {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  assert.ok(caught instanceof PcapError, `expected PcapError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  if (message) assert.match(caught.message, message);
  return caught;
}

for (const nanosecond of [false, true]) {
  for (const bigEndian of [false, true]) {
    for (const linkType of [PcapLinkType.ETHERNET, PcapLinkType.RAW_IP]) {
      const label = `${nanosecond ? 'ns' : 'µs'} ${bigEndian ? 'big' : 'little'}-endian link type ${linkType}`;
      test(`round trip: ${label}`, () => {
        const raw = udpFrames(50);
        const list = frames(linkType === PcapLinkType.ETHERNET ? raw : raw.map((f) => f.subarray(14)));
        const path = writeFile(`rt-${nanosecond}-${bigEndian}-${linkType}.pcap`, list, { nanosecond, bigEndian, linkType, bufferSize: 1024 });
        const bytes = readFileSync(path);
        // Magic in the file's byte order: d4 c3 b2 a1 little-endian µs, a1 b2 3c 4d big-endian ns...
        const magic = nanosecond ? 'a1b23c4d' : 'a1b2c3d4';
        const expectMagic = bigEndian ? magic : magic.match(/../g)!.reverse().join('');
        assert.equal(bytes.subarray(0, 4).toString('hex'), expectMagic);

        // In memory, and streamed with a chunk smaller than most records (compaction and growth).
        for (const reader of [PcapReader.fromBytes(bytes), PcapReader.open(path, { chunkSize: 64 })]) {
          using r = reader;
          assert.equal(r.header.nanosecond, nanosecond);
          assert.equal(r.header.littleEndian, !bigEndian);
          assert.equal(r.header.linkType, linkType);
          assert.equal(r.header.snaplen, 262144);
          const got = readAll(r);
          assert.equal(got.length, list.length);
          got.forEach((g, i) => {
            const f = list[i]!;
            assert.deepEqual(g.bytes, f.bytes, `frame ${i + 1} bytes`);
            assert.equal(g.sec, f.sec);
            assert.equal(g.frac, nanosecond ? f.nsec : Math.floor(f.nsec / 1000));
            assert.equal(g.orig, f.bytes.length);
            assert.equal(g.number, i + 1);
          });
        }
      });
    }
  }
}

test('writeFrame takes a nanosecond timestamp as a number or a bigint', () => {
  const [frame] = udpFrames(1);
  const path = join(dir, 'ts.pcap');
  const w = PcapWriter.toFile(path, { nanosecond: true });
  w.writeFrame(frame!, 0, frame!.length, 1_700_000_000_123_456_789n);
  w.writeFrame(frame!, 0, frame!.length, 1_500_000_000); // 1.5 s after the epoch: exact as a number
  w.writeFrame(frame!, 0, frame!.length, Date.UTC(2024, 0, 1) * 1e6 + 250_000_000);
  w.close();
  const got = readAll(PcapReader.fromBytes(readFileSync(path)));
  assert.deepEqual(got.slice(0, 2).map((g) => [g.sec, g.frac]), [[1_700_000_000, 123_456_789], [1, 500_000_000]]);
  // 1.7e18 as a double is a multiple of 256: the promised precision, no worse.
  assert.equal(got[2]!.sec, Date.UTC(2024, 0, 1) / 1000);
  assert.ok(Math.abs(got[2]!.frac - 250_000_000) <= 256, `fraction ${got[2]!.frac}`);
  assert.equal(formatTimestamp(got[0]!.sec, got[0]!.frac, true), '1700000000.123456789');
  assert.equal(formatTimestamp(5, 42, false), '5.000042');
});

test('the writer cuts frames at its snaplen and keeps the original length', () => {
  const [frame] = udpFrames(1);
  const path = join(dir, 'snap.pcap');
  const w = PcapWriter.toFile(path, { snaplen: 40 });
  w.writeFrame(frame!, 0, frame!.length, 0);
  w.writeFrameAt(frame!, 0, 30, 1, 0, 1500); // already cut by the caller
  w.close();
  const r = PcapReader.fromBytes(readFileSync(path));
  assert.equal(r.header.snaplen, 40);
  const got = readAll(r);
  assert.deepEqual(got[0]!.bytes, frame!.subarray(0, 40));
  assert.equal(got[0]!.orig, frame!.length);
  assert.equal(got[1]!.bytes.length, 30);
  assert.equal(got[1]!.orig, 1500);
});

test('a frame larger than the writer buffer is written straight from the caller', () => {
  const big = ipv4Udp('10.1.0.1', '10.1.0.2', 1, 2, new Uint8Array(3000).fill(7));
  const path = join(dir, 'big.pcap');
  const w = PcapWriter.toFile(path, { linkType: PcapLinkType.RAW_IP, bufferSize: 512 });
  w.writeFrame(big, 0, big.length, 0);
  w.writeFrame(big, 0, 100, 0);
  w.close();
  const got = readAll(PcapReader.open(path, { chunkSize: 256 }));
  assert.deepEqual(got.map((g) => g.bytes.length), [big.length, 100]);
  assert.deepEqual(got[0]!.bytes, big);
});

test('a writer to a stream gives each chunk its own copy', async () => {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const list = udpFrames(20);
  const w = PcapWriter.toStream(stream, { bufferSize: 300 });
  list.forEach((f, i) => w.writeFrame(f, 0, f.length, i * 1e9));
  w.close();
  stream.end();
  await new Promise((r) => stream.on('end', r));
  assert.ok(chunks.length > 2, 'several flushes');
  const got = readAll(PcapReader.fromBytes(Buffer.concat(chunks)));
  assert.deepEqual(got.map((g) => g.bytes), list);
  assert.throws(() => w.writeFrame(list[0]!, 0, 10, 0), { code: 'PCAP_WRITER_CLOSED' });
});

test('writer arguments are checked', () => {
  const path = join(dir, 'args.pcap');
  const w = PcapWriter.toFile(path);
  const f = new Uint8Array(10);
  expectError(() => w.writeFrame(f, 5, 6, 0), 'PCAP_BAD_ARGUMENT', /outside its buffer/);
  expectError(() => w.writeFrame(f, 0, 10, -1n), 'PCAP_BAD_ARGUMENT');
  expectError(() => w.writeFrameAt(f, 0, 10, 2 ** 32, 0), 'PCAP_BAD_ARGUMENT');
  w.close();
  expectError(() => PcapWriter.toFile(path, { linkType: 113 }), 'PCAP_BAD_ARGUMENT', /link type 113/);
  expectError(() => PcapWriter.toFile(path, { snaplen: 0 }), 'PCAP_BAD_ARGUMENT');
});

// A valid little-endian µs file of three frames to cut up for the malformed cases.
function threeFrameFile(): Uint8Array {
  const path = join(dir, 'three.pcap');
  writeFile('three.pcap', frames(udpFrames(3)), {});
  return new Uint8Array(readFileSync(path));
}

test('bad magic, pcapng, short header, bad version and link type are refused', () => {
  const good = threeFrameFile();
  const bad = good.slice();
  bad.set([0xde, 0xad, 0xbe, 0xef]);
  expectError(() => PcapReader.fromBytes(bad), 'PCAP_BAD_MAGIC', /magic 0xdeadbeef/);
  const ng = good.slice();
  ng.set([0x0a, 0x0d, 0x0d, 0x0a]);
  expectError(() => PcapReader.fromBytes(ng), 'PCAP_BAD_MAGIC', /pcapng/);
  expectError(() => PcapReader.fromBytes(good.subarray(0, 20)), 'PCAP_TRUNCATED_HEADER', /24 bytes, the file has 20/);
  expectError(() => PcapReader.fromBytes(new Uint8Array(0)), 'PCAP_TRUNCATED_HEADER');
  expectError(() => PcapReader.fromBytes(good.subarray(0, 2)), 'PCAP_TRUNCATED_HEADER');
  const v1 = good.slice();
  v1[4] = 1;
  expectError(() => PcapReader.fromBytes(v1), 'PCAP_BAD_VERSION');
  const sll = good.slice();
  sll[20] = 113; // LINKTYPE_LINUX_SLL
  expectError(() => PcapReader.fromBytes(sll), 'PCAP_UNSUPPORTED_LINK_TYPE', /113/);
  assert.equal(PcapReader.fromBytes(sll, { anyLinkType: true }).header.linkType, 113);
  // The same checks from a file, whose fd the reader must close again.
  const path = join(dir, 'short.pcap');
  writeFileSync(path, good.subarray(0, 10));
  expectError(() => PcapReader.open(path), 'PCAP_TRUNCATED_HEADER');
});

test('a truncated last record is reported after the records before it', () => {
  const good = threeFrameFile();
  const lastStart = good.length - (16 + udpFrames(3)[2]!.length);
  for (const [cut, message] of [[good.length - 5, /record 3 at byte \d+: the file ends after \d+ of \d+ captured bytes/], [lastStart + 9, /record 3 .*inside the record header \(9 of 16/]] as const) {
    const truncated = good.subarray(0, cut);
    const path = join(dir, 'trunc.pcap');
    writeFileSync(path, truncated);
    for (const reader of [PcapReader.fromBytes(truncated), PcapReader.open(path, { chunkSize: 50 })]) {
      const seen: number[] = [];
      const err = expectError(() => { for (const r of reader) seen.push(r.number); }, 'PCAP_TRUNCATED_RECORD', message);
      assert.deepEqual(seen, [1, 2]);
      assert.equal(err.recordNumber, 3);
      assert.equal(err.fileOffset, lastStart);
      assert.equal(reader.next(), null, 'the reader stays at its end after the error');
      reader.close();
    }
  }
  // Cut exactly between records: a clean end, not an error.
  assert.equal(readAll(PcapReader.fromBytes(good.subarray(0, lastStart))).length, 2);
});

test('a captured length past the snaplen is a corrupt file', () => {
  const good = threeFrameFile();
  const snap = good.slice();
  new DataView(snap.buffer).setUint32(16, 40, true); // snaplen 40, frames are longer
  const reader = PcapReader.fromBytes(snap);
  const err = expectError(() => reader.next(), 'PCAP_RECORD_TOO_LONG', /captured length \d+ is larger than the snaplen 40/);
  assert.equal(err.recordNumber, 1);
  // A huge length in a record header must not make the file reader allocate it.
  const huge = good.slice();
  new DataView(huge.buffer).setUint32(24 + 8, 0x7fffffff, true);
  const path = join(dir, 'huge.pcap');
  writeFileSync(path, huge);
  expectError(() => PcapReader.open(path).next(), 'PCAP_RECORD_TOO_LONG');
});

test('writing and reading frames allocates nothing per frame', async () => {
  // Counted as garbage collections: one short-lived object per frame (a subarray, a
  // record) costs ~100 MB over a million frames, about 100 scavenges (measured with a
  // subarray per frame). Warm-up before the loops are optimised and the test's own
  // bookkeeping may cause one or two, hence the margin.
  let collections = 0;
  const observer = new PerformanceObserver((list) => { collections += list.getEntries().length; });
  observer.observe({ entryTypes: ['gc'] });
  const slab = new Uint8Array(64 * 2048).fill(0xab);
  const FRAMES = 1_000_000;
  const path = join(dir, 'many.pcap');
  const settle = () => new Promise((r) => setTimeout(r, 20));
  try {
    const w = PcapWriter.toFile(path, { nanosecond: true, bufferSize: 1 << 20 });
    await settle();
    collections = 0;
    for (let i = 0; i < FRAMES; i++) w.writeFrameAt(slab, (i & 63) * 2048 + 50, 60, 1_700_000_000, i);
    w.close();
    await settle();
    assert.ok(collections < 10, `${collections} collections while writing`);
    const r = PcapReader.open(path, { chunkSize: 1 << 20 });
    await settle();
    collections = 0;
    let n = 0;
    let sum = 0;
    // Kept below 2^31 so the sum itself never needs a heap number.
    for (let rec = r.next(); rec !== null; rec = r.next()) { n++; sum = (sum + rec.tsFrac) % 1_000_003; }
    r.close();
    await settle();
    assert.ok(collections < 10, `${collections} collections while reading`);
    assert.equal(n, FRAMES);
    assert.equal(sum, ((FRAMES * (FRAMES - 1)) / 2) % 1_000_003);
  } finally {
    observer.disconnect();
    rmSync(path, { force: true });
  }
});

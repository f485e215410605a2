// Files our writer produces are read by tcpdump (libpcap) and tshark (Wireshark's own
// reader): frame count, timestamps to the file's precision, and decoded fields agree
// with the bytes we wrote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PcapLinkType, PcapWriter } from '../src/pcap/index.ts';
import { run } from './helpers/netns.ts';
import { udpFrames } from './fixtures/pcap/frames.ts';

const dir = mkdtempSync(join(tmpdir(), 'tapir-pcap-interop-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const COUNT = 25;

function write(name: string, nanosecond: boolean, linkType: number, bigEndian: boolean): string {
  const path = join(dir, name);
  using w = PcapWriter.toFile(path, { nanosecond, linkType, bigEndian, bufferSize: 2048 });
  const skip = linkType === PcapLinkType.ETHERNET ? 0 : 14;
  udpFrames(COUNT).forEach((f, i) => w.writeFrameAt(f, skip, f.length - skip, 1_700_000_000 + i, 123_456_789 + i));
  return path;
}

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0 && !l.startsWith('Running as user'));
}

for (const nanosecond of [false, true]) {
  for (const [linkType, bigEndian] of [[PcapLinkType.ETHERNET, false], [PcapLinkType.RAW_IP, true]] as const) {
    const label = `${nanosecond ? 'ns' : 'µs'} link type ${linkType}${bigEndian ? ' big-endian' : ''}`;

    test(`tcpdump reads our ${label} file`, () => {
      const path = write(`td-${nanosecond}-${linkType}.pcap`, nanosecond, linkType, bigEndian);
      const precision = nanosecond ? ['--time-stamp-precision=nano'] : [];
      const out = lines(run('tcpdump', ['-r', path, '-nn', '-tt', '-e', ...precision]));
      assert.equal(out.length, COUNT);
      const frac = nanosecond ? '123456789' : '123456';
      if (linkType === PcapLinkType.ETHERNET) {
        assert.equal(out[0], `1700000000.${frac} 02:00:00:00:00:01 > 02:00:00:00:00:02, ethertype IPv4 (0x0800), length 50: 10.1.0.1.1000 > 10.1.0.2.2000: UDP, length 8`);
      } else {
        assert.equal(out[0], `1700000000.${frac} ip: 10.1.0.1.1000 > 10.1.0.2.2000: UDP, length 8`);
      }
      assert.match(out[COUNT - 1]!, new RegExp(`^1700000024\\.${nanosecond ? '123456813' : '123456'} .*10\\.1\\.0\\.1\\.1024 > 10\\.1\\.0\\.2\\.2024: UDP, length \\d+$`));
    });

    test(`tshark reads our ${label} file`, () => {
      const path = write(`ts-${nanosecond}-${linkType}.pcap`, nanosecond, linkType, bigEndian);
      const out = lines(run('tshark', ['-r', path, '-T', 'fields', '-E', 'separator=,', '-e', 'frame.number', '-e', 'frame.time_epoch',
        '-e', 'frame.len', '-e', 'eth.src', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'udp.srcport', '-e', 'udp.dstport'], { timeoutMs: 20_000 }));
      assert.equal(out.length, COUNT);
      const frames = udpFrames(COUNT);
      out.forEach((line, i) => {
        const frac = nanosecond ? String(123_456_789 + i) : '123456000';
        const len = frames[i]!.length - (linkType === PcapLinkType.ETHERNET ? 0 : 14);
        const mac = linkType === PcapLinkType.ETHERNET ? '02:00:00:00:00:01' : '';
        assert.equal(line, `${i + 1},1700000${String(i).padStart(3, '0')}.${frac},${len},${mac},10.1.0.1,10.1.0.2,${1000 + i},${2000 + i}`);
      });
    });
  }
}

// The lab's echo workload is a pod: hostile or odd traffic must not end it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Netns } from './helpers/netns.ts';

const MAIN = new URL('../src/workloads/main.ts', import.meta.url).pathname;

// A UDP datagram from source port 0 (RFC 768: "no reply expected"), which no socket can
// bind, written on a raw socket.
const SEND_FROM_PORT_0 = `
import socket, struct
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src = dst = socket.inet_aton('127.0.0.1')
payload = b'from port zero'
udp = struct.pack('!HHHH', 0, 9000, 8 + len(payload), 0) + payload
c = csum(src + dst + struct.pack('!BBH', 0, 17, len(udp)) + udp)
udp = udp[:6] + struct.pack('!H', c or 0xffff) + udp[8:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + udp, ('127.0.0.1', 0))
`;

test('the UDP echo survives a datagram from source port 0 and keeps answering', async () => {
  const ns = new Netns('we');
  const dir = mkdtempSync(join(tmpdir(), 'tapir-echo-'));
  const ready = join(dir, 'ready');
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, MAIN, '--udp', '9000', '--ready', ready], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d; });
  try {
    for (let i = 0; i < 100 && !existsSync(ready); i++) await sleep(50);
    assert.ok(existsSync(ready), `the workload did not start: ${stderr}`);
    ns.exec('python3', ['-c', SEND_FROM_PORT_0]);
    await sleep(300);
    assert.equal(child.exitCode, null, `the workload exited: ${stderr}`);
    const echo = ns.exec('timeout', ['3', 'bash', '-c', "exec 3<>/dev/udp/127.0.0.1/9000; printf %s still-here >&3; head -c 10 <&3"]);
    assert.equal(echo, 'still-here');
  } finally {
    child.kill();
    ns.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
});

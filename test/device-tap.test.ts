// A TAP opened in the root namespace and moved into a test namespace as eth0, exactly as
// the agent hands a pod its interface: the kernel's frames (ARP, ICMP from ping) come
// up through readBatch, and hand-built replies written with writeBatch reach the
// kernel (its neighbour table learns our MAC, ping gets its answer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Netns, run, uniqueName, waitFor } from './helpers/netns.ts';
import { TunDevice } from '../src/device/tun.ts';
import { moveLinkToNetns } from '../src/device/netlink.ts';

const POD_IP = [10, 251, 0, 1];
const PEER_IP = [10, 251, 0, 2]; // answered by the test, from PEER_MAC
const PEER_MAC = [0x02, 0x54, 0x50, 0x00, 0x00, 0x02];
const ETHERTYPE_ARP = 0x0806, ETHERTYPE_IPV4 = 0x0800;

function exited(child: ChildProcess): Promise<{ code: number | null; stdout: string }> {
  let stdout = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout })));
}

function bytesEqual(a: Uint8Array, at: number, b: number[]): boolean {
  return b.every((v, i) => a[at + i] === v);
}

// Writes the ARP reply (RFC 826) to `request` at out[0..42): PEER_IP is at PEER_MAC.
function arpReply(request: Uint8Array, at: number, out: Uint8Array): number {
  out.set(request.subarray(at + 6, at + 12), 0); // to the requester's MAC
  out.set(PEER_MAC, 6);
  out[12] = 0x08; out[13] = 0x06;
  out.set([0, 1, 0x08, 0x00, 6, 4, 0, 2], 14); // Ethernet/IPv4, op 2 = reply
  out.set(PEER_MAC, 22);
  out.set(PEER_IP, 28);
  out.set(request.subarray(at + 22, at + 32), 32); // target = the requester's MAC and IP
  return 42;
}

// Turns an ICMP echo request into its reply in place: swap MACs and addresses, type 8
// becomes 0, and the checksum rises by 0x0800 (RFC 1624 incremental update).
function echoReplyInPlace(f: Uint8Array, at: number): void {
  for (let i = 0; i < 6; i++) { const t = f[at + i]!; f[at + i] = f[at + 6 + i]!; f[at + 6 + i] = t; }
  for (let i = 0; i < 4; i++) { const t = f[at + 26 + i]!; f[at + 26 + i] = f[at + 30 + i]!; f[at + 30 + i] = t; }
  const icmp = at + 14 + (f[at + 14]! & 0x0f) * 4;
  f[icmp] = 0;
  let sum = ((f[icmp + 2]! << 8) | f[icmp + 3]!) + 0x0800;
  sum = (sum & 0xffff) + (sum >> 16);
  f[icmp + 2] = sum >> 8; f[icmp + 3] = sum & 0xff;
}

test('TAP moved into a namespace: kernel ARP/ICMP arrive via readBatch, written replies reach the kernel', async () => {
  const ns = new Netns('dt');
  const tapName = uniqueName('dt', 15);
  let tap: TunDevice | undefined;
  try {
    tap = TunDevice.open({ mode: 'tap', name: tapName });
    assert.equal(tap.name, tapName);
    assert.equal(tap.vnetHdr, false);
    moveLinkToNetns(tap.name, `/var/run/netns/${ns.name}`, 'eth0');
    assert.doesNotMatch(run('ip', ['-o', 'link']), new RegExp(`\\b${tapName}\\b`), 'the TAP left the root namespace');
    ns.exec('ip', ['addr', 'add', `${POD_IP.join('.')}/24`, 'dev', 'eth0']);
    ns.exec('ip', ['link', 'set', 'eth0', 'up']);

    const slotSize = 2048, headroom = 64, slots = 32;
    const slab = new Uint8Array(slots * slotSize);
    const lengths = new Int32Array(slots);
    const out = new Uint8Array(slots * 64);
    const outOffsets = new Int32Array(slots);
    const outLengths = new Int32Array(slots);
    let arpRequests = 0, echoRequests = 0, written = 0;
    const device = tap;
    device.onReadable(() => {
      for (let n = device.readBatch(slab, slotSize, headroom, lengths, slots); n > 0; n = device.readBatch(slab, slotSize, headroom, lengths, slots)) {
        let count = 0;
        for (let i = 0; i < n; i++) {
          const at = i * slotSize + headroom;
          const ethertype = (slab[at + 12]! << 8) | slab[at + 13]!;
          if (ethertype === ETHERTYPE_ARP && slab[at + 21] === 1 && bytesEqual(slab, at + 38, PEER_IP)) {
            arpRequests++;
            outOffsets[count] = count * 64;
            outLengths[count] = arpReply(slab, at, out.subarray(count * 64));
            count++;
          } else if (ethertype === ETHERTYPE_IPV4 && slab[at + 23] === 1 && bytesEqual(slab, at + 30, PEER_IP)) {
            const icmp = at + 14 + (slab[at + 14]! & 0x0f) * 4;
            if (slab[icmp] !== 8) continue;
            echoRequests++;
            echoReplyInPlace(slab, at);
            out.set(slab.subarray(at, at + lengths[i]!), count * 64); // fits: ping -s 16
            outOffsets[count] = count * 64;
            outLengths[count] = lengths[i]!;
            count++;
          }
        }
        if (count > 0) written += device.writeBatch(out, outOffsets, outLengths, count);
      }
    });

    const ping = exited(ns.spawn('ping', ['-c', '1', '-W', '5', '-s', '16', PEER_IP.join('.')]));
    const { code, stdout } = await ping;
    assert.ok(arpRequests >= 1, 'the kernel ARP request (ethertype 0x0806) came through readBatch');
    assert.ok(echoRequests >= 1, 'the ICMP echo request came through readBatch');
    assert.equal(written, arpRequests + echoRequests, 'every reply was taken by the kernel');
    assert.equal(code, 0, `ping failed: ${stdout}`);
    assert.match(stdout, /1 received/);
    const neigh = ns.exec('ip', ['neigh', 'show', PEER_IP.join('.'), 'dev', 'eth0']);
    assert.match(neigh, new RegExp(PEER_MAC.map((b) => b.toString(16).padStart(2, '0')).join(':')));
    assert.deepEqual(device.stats, { rxTruncated: 0, txDroppedFull: 0, txErrors: 0, lastTxErrno: 0 });
  } finally {
    tap?.close();
    ns.destroy();
  }
  assert.doesNotMatch(run('ip', ['-o', 'link']), new RegExp(`\\b${tapName}\\b`));
});

test('a frame larger than its slot is dropped and counted, not split', async () => {
  const ns = new Netns('dt');
  let tap: TunDevice | undefined;
  try {
    tap = TunDevice.open({ mode: 'tap', name: uniqueName('dt', 15) });
    moveLinkToNetns(tap.name, `/var/run/netns/${ns.name}`, 'eth0');
    ns.exec('ip', ['addr', 'add', '10.251.1.1/24', 'dev', 'eth0']);
    ns.exec('ip', ['link', 'set', 'eth0', 'up']);
    // A static neighbour makes the kernel send the 1000-byte ping straight away.
    ns.exec('ip', ['neigh', 'add', '10.251.1.2', 'lladdr', '02:54:50:00:00:02', 'dev', 'eth0']);
    const slab = new Uint8Array(8 * 512);
    const lengths = new Int32Array(8);
    const seen: number[] = [];
    const device = tap;
    let truncatedSeen = 0, clobbered = 0;
    device.onReadable(() => {
      for (;;) {
        // The addon reads one byte past a slot to spot frames that do not fit (the next
        // slot's first headroom byte) and puts it back: headroom must stay as written.
        slab.fill(0xab);
        const n = device.readBatch(slab, 512, 16, lengths, 8);
        for (let i = 0; i < 8; i++) for (let j = 0; j < 16; j++) if (slab[i * 512 + j] !== 0xab) clobbered++;
        if (n === 0) break;
        for (let i = 0; i < n; i++) seen.push(lengths[i]!);
      }
      truncatedSeen = device.stats.rxTruncated;
    });
    ns.spawn('ping', ['-c', '1', '-W', '5', '-s', '1000', '10.251.1.2']);
    await waitFor(() => truncatedSeen >= 1 || seen.some((l) => l > 496), 5000).catch(() => undefined);
    assert.ok(truncatedSeen >= 1, `the 1042-byte frame was counted as truncated (stats ${JSON.stringify(device.stats)})`);
    assert.ok(seen.every((l) => l <= 496), `no delivered frame exceeds the slot: ${seen.join(',')}`);
    assert.equal(clobbered, 0, 'headroom bytes untouched');
  } finally {
    tap?.close();
    ns.destroy();
  }
});

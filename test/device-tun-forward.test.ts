// Two TUNs, one moved into a client namespace and one into a server namespace, joined
// by a FrameRelay in this process: iperf3 TCP must get through, with and without the
// virtio-net header. With the header and TSO, the client's super-packets must cross
// whole (gso_type set, longer than the MTU), header and all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { Netns, uniqueName, waitFor } from './helpers/netns.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../src/device/tun.ts';
import { moveLinkToNetns } from '../src/device/netlink.ts';
import { FrameRelay } from '../src/device/relay.ts';

const VIRTIO_NET_HDR_GSO_NONE = 0;

function exited(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

async function iperfThroughRelay(vnet: boolean): Promise<void> {
  const client = new Netns('df');
  const server = new Netns('df');
  const devices: TunDevice[] = [];
  let relay: FrameRelay | undefined;
  try {
    const offloads = vnet ? TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 : 0;
    const a = TunDevice.open({ mode: 'tun', name: uniqueName('df', 15), vnetHdr: vnet, offloads });
    devices.push(a);
    const b = TunDevice.open({ mode: 'tun', name: uniqueName('df', 15), vnetHdr: vnet, offloads });
    devices.push(b);
    assert.equal(a.offloads & offloads, offloads);
    moveLinkToNetns(a.name, `/var/run/netns/${client.name}`, 'tun0');
    moveLinkToNetns(b.name, `/var/run/netns/${server.name}`, 'tun0');
    for (const [ns, local, remote] of [[client, '10.252.0.1', '10.252.1.0/24'], [server, '10.252.1.1', '10.252.0.0/24']] as const) {
      ns.exec('ip', ['addr', 'add', `${local}/32`, 'dev', 'tun0']);
      ns.exec('ip', ['link', 'set', 'tun0', 'up']);
      ns.exec('ip', ['route', 'add', remote, 'dev', 'tun0']);
    }

    let frames = 0, gsoFrames = 0, longest = 0;
    const hdr = a.vnetHdrSize;
    relay = new FrameRelay(a, b, {
      slotSize: vnet ? 65536 + hdr : 2048,
      inspect: (slab, offsets, lengths, count) => {
        for (let i = 0; i < count; i++) {
          frames++;
          const ipLength = lengths[i]! - hdr;
          if (ipLength > longest) longest = ipLength;
          if (vnet && slab[offsets[i]! + 1] !== VIRTIO_NET_HDR_GSO_NONE) gsoFrames++;
        }
      },
    });

    server.spawn('iperf3', ['-s', '-1', '-B', '10.252.1.1']);
    await waitFor(() => server.exec('ss', ['-Hltn']).includes('10.252.1.1:5201'), 5000);
    const run = await exited(client.spawn('iperf3', ['-c', '10.252.1.1', '-t', '1', '-J']));
    assert.equal(run.code, 0, `iperf3 failed: ${run.stderr}${run.stdout.slice(0, 400)}`);
    const result = JSON.parse(run.stdout) as { end: { sum_sent: { bytes: number }; sum_received: { bytes: number } } };
    assert.ok(result.end.sum_sent.bytes > 0, 'iperf3 sent data');
    assert.ok(result.end.sum_received.bytes > 0, 'the server received data');
    const counts = relay.counts;
    assert.ok(counts.aToB > 0 && counts.bToA > 0, `frames crossed both ways: ${JSON.stringify(counts)}`);
    assert.equal(counts.dropped, 0);
    if (vnet) {
      assert.ok(gsoFrames > 0, `TSO super-packets crossed with their header (${gsoFrames} of ${frames})`);
      assert.ok(longest > 1500, `a frame longer than the MTU crossed whole (${longest})`);
    } else {
      assert.ok(longest <= 1500, `without offloads every frame fits the MTU (${longest})`);
    }
    for (const d of devices) assert.equal(d.stats.rxTruncated, 0);
  } finally {
    relay?.stop();
    for (const d of devices) d.close();
    client.destroy();
    server.destroy();
  }
}

test('iperf3 TCP through a TUN pair relay, plain frames', async () => {
  await iperfThroughRelay(false);
});

test('iperf3 TCP through a TUN pair relay, virtio-net header with CSUM|TSO4|TSO6', async () => {
  await iperfThroughRelay(true);
});

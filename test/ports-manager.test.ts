// PortManager in real namespaces: the TAP it opens ends up as the pod's eth0, frames
// written into its fd reach the pod's kernel and the pod's frames come out of it; ports
// survive an agent restart (re-attached or recreated); conflicts are refused cleanly.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { hostNameFor, PortManager, type AddPortParams, type PodPort } from '../src/agent/ports.ts';
import { ControlError, ControlErrorCode } from '../src/agent/protocol.ts';
import { VIRTIO_NET_HEADER_LENGTH } from '../src/wire/index.ts';
import { Netns, run, waitFor } from './helpers/netns.ts';
import { macToString } from '../src/wire/address.ts';

/** The six bytes of a 48-bit MAC, as they appear on the wire. */
const macBytes = (mac: number): number[] => [...Buffer.from(macToString(mac).replaceAll(':', ''), 'hex')];

const GATEWAY = 0x0af40101; // 10.244.1.1
const GATEWAY_MAC = [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01];
const stateRoot = mkdtempSync(join(tmpdir(), 'tapir-ports-'));
after(() => rmSync(stateRoot, { recursive: true, force: true }));

function manager(stateDir: string, events: string[] = []): PortManager {
  return new PortManager({
    stateDir, mtu: 1450, gateway: GATEWAY,
    onPortAdded: (p) => events.push(`added ${p.containerId}`),
    onPortRemoved: (p) => events.push(`removed ${p.containerId}`),
  });
}

function params(ns: Netns, containerId: string, lastOctet: number): AddPortParams {
  return { containerId, ifName: 'eth0', netns: `/var/run/netns/${ns.name}`, ip: (GATEWAY & ~0xff) + lastOctet, prefixLength: 24, gateway: GATEWAY };
}

function rxPackets(ns: Netns): number {
  const [link] = JSON.parse(ns.exec('ip', ['-j', '-s', 'link', 'show', 'dev', 'eth0'])) as { stats64: { rx: { packets: number } } }[];
  return link!.stats64.rx.packets;
}

/** An ARP request (RFC 826) from the gateway asking for `ip`, behind a zeroed virtio_net_hdr. */
function arpRequestFromGateway(ip: number): Uint8Array {
  const f = new Uint8Array(VIRTIO_NET_HEADER_LENGTH + 42);
  const e = VIRTIO_NET_HEADER_LENGTH;
  f.fill(0xff, e, e + 6);
  f.set(GATEWAY_MAC, e + 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1], e + 12);
  f.set(GATEWAY_MAC, e + 22);
  f.set([10, 244, 1, 1], e + 28);
  f.set([ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff], e + 38);
  return f;
}

const SLOT = 70_000, SLOTS = 8;
const slab = new Uint8Array(SLOT * SLOTS);
const lengths = new Int32Array(SLOTS);

/** Reads from the port's TAP until an ARP frame with operation `op` shows up; returns its bytes. */
async function readArp(port: PodPort, op: 1 | 2): Promise<Uint8Array> {
  let found: Uint8Array | null = null;
  await waitFor(() => {
    const n = port.device.readBatch(slab, SLOT, 0, lengths, SLOTS);
    for (let i = 0; i < n && found === null; i++) {
      const at = i * SLOT + VIRTIO_NET_HEADER_LENGTH;
      if (slab[at + 12] === 0x08 && slab[at + 13] === 0x06 && slab[at + 21] === op) found = slab.slice(at, at + 42);
    }
    return found !== null;
  }, 5000, 20);
  return found!;
}

function writeFrame(port: PodPort, frame: Uint8Array): void {
  slab.set(frame, 0);
  assert.equal(port.device.writeBatch(slab, Int32Array.of(0), Int32Array.of(frame.length), 1), 1);
}

const ipBytes = (ip: number): number[] => [ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff];

describe('PortManager with real TAPs', () => {
  it('addPort puts a configured TAP into the pod; frames flow both ways through its fd', async () => {
    const ns = new Netns('pm');
    const events: string[] = [];
    const pm = manager(join(stateRoot, 'a'), events);
    try {
      const port = await pm.addPort(params(ns, 'pod-a', 5));
      assert.equal(port.hostName, hostNameFor('pod-a', 'eth0'));
      assert.match(port.hostName, /^tp[0-9a-f]{8}$/);
      assert.equal(macToString(port.mac), '0a:58:0a:f4:01:05');
      assert.deepEqual(events, ['added pod-a']);
      const [link] = JSON.parse(ns.exec('ip', ['-j', '-d', 'addr', 'show', 'dev', 'eth0'])) as { address: string; mtu: number; flags: string[]; linkinfo: { info_kind: string }; addr_info: { family: string; local: string; prefixlen: number }[] }[];
      assert.equal(link!.address, '0a:58:0a:f4:01:05');
      assert.equal(link!.mtu, 1450);
      assert.equal(link!.linkinfo.info_kind, 'tun');
      assert.ok(link!.flags.includes('UP'));
      assert.deepEqual(link!.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`), ['10.244.1.5/24']);
      assert.match(ns.exec('ip', ['route', 'show', 'default']), /default via 10\.244\.1\.1 dev eth0/);
      assert.doesNotMatch(run('ip', ['-o', 'link']), new RegExp(port.hostName), 'nothing left in the root namespace');

      // Into the pod: an ARP request written into the fd is received by eth0 and answered.
      const rxBefore = rxPackets(ns);
      writeFrame(port, arpRequestFromGateway(port.ip));
      const reply = await readArp(port, 2);
      assert.ok(rxPackets(ns) > rxBefore, 'the pod counted the frame');
      assert.deepEqual([...reply.subarray(0, 6)], GATEWAY_MAC, 'the reply goes to the gateway MAC');
      assert.deepEqual([...reply.subarray(22, 32)], [...macBytes(port.mac), ...ipBytes(port.ip)], 'sender: the pod MAC and IP');

      // Out of the pod: a ping to an unresolved neighbour makes the pod ARP for it on eth0.
      const ping = execFile('ip', ['netns', 'exec', ns.name, 'ping', '-c', '2', '-i', '0.3', '-W', '1', '10.244.1.77'], () => {});
      try {
        const request = await readArp(port, 1);
        assert.deepEqual([...request.subarray(6, 12)], macBytes(port.mac), 'from the pod MAC');
        assert.deepEqual([...request.subarray(28, 32)], [10, 244, 1, 5], 'sender IP');
        assert.deepEqual([...request.subarray(38, 42)], [10, 244, 1, 77], 'target IP');
      } finally {
        ping.kill();
      }

      assert.equal(await pm.delPort('pod-a', 'eth0'), true);
      assert.equal(await pm.delPort('pod-a', 'eth0'), false, 'absent is fine');
      assert.deepEqual(events, ['added pod-a', 'removed pod-a']);
      assert.doesNotMatch(ns.exec('ip', ['-o', 'link']), /eth0/, 'closing the fd removed the TAP from the pod');
      assert.deepEqual(JSON.parse(readFileSync(join(stateRoot, 'a', 'ports.json'), 'utf8')).ports, []);
    } finally {
      await pm.close();
      ns.destroy();
    }
  });

  it('survives an agent restart: kept TAPs are re-attached, vanished ones recreated, gone pods dropped', async () => {
    const ns = new Netns('pm');
    const gone = new Netns('pm');
    const dir = join(stateRoot, 'b');
    let pm = manager(dir);
    try {
      const p1 = await pm.addPort(params(ns, 'pod-r', 6));
      await pm.addPort(params(gone, 'pod-gone', 7));
      const ifindex = JSON.parse(ns.exec('ip', ['-j', 'link', 'show', 'dev', 'eth0']))[0].ifindex as number;
      // The gateway's fixed MAC, so a restart (nobody answering ARP) cannot fail the pod's neighbour entry.
      assert.match(ns.exec('ip', ['neigh', 'show', 'dev', 'eth0']), /^10\.244\.1\.1 lladdr 0a:58:0a:f4:01:01 PERMANENT/m);
      assert.equal(p1.device.name, p1.hostName);

      // Something only an interface that never left the pod keeps (a move between
      // namespaces flushes addresses): the restore must take the TAP back in place.
      ns.exec('ip', ['addr', 'add', '10.244.1.250/32', 'dev', 'eth0']);
      await pm.close({ keepPorts: true });
      gone.destroy();
      assert.match(ns.exec('ip', ['-o', 'link', 'show', 'dev', 'eth0']), /0a:58:0a:f4:01:06/, 'the persistent TAP stayed in the pod');

      const events: string[] = [];
      pm = manager(dir, events);
      assert.deepEqual(await pm.restore(), { reattached: ['pod-r/eth0'], recreated: [], dropped: ['pod-gone/eth0'] });
      assert.deepEqual(events, ['added pod-r']);
      const again = pm.get('pod-r', 'eth0')!;
      assert.equal(JSON.parse(ns.exec('ip', ['-j', 'link', 'show', 'dev', 'eth0']))[0].ifindex, ifindex, 'the same device, not a new one');
      assert.match(ns.exec('ip', ['-o', 'addr', 'show', 'dev', 'eth0']), /10\.244\.1\.6\/24/);
      assert.match(ns.exec('ip', ['-o', 'addr', 'show', 'dev', 'eth0']), /10\.244\.1\.250\/32/, 'eth0 never left the pod');
      assert.equal(again.device.mac, '0a:58:0a:f4:01:06');
      writeFrame(again, arpRequestFromGateway(again.ip));
      await readArp(again, 2); // the new fd is the pod's eth0

      await pm.close(); // default: the TAPs vanish with the fd
      assert.doesNotMatch(ns.exec('ip', ['-o', 'link']), /eth0/);
      pm = manager(dir);
      assert.deepEqual(await pm.restore(), { reattached: [], recreated: ['pod-r/eth0'], dropped: [] });
      assert.match(ns.exec('ip', ['-o', 'addr', 'show', 'dev', 'eth0']), /10\.244\.1\.6\/24/);
      assert.match(ns.exec('ip', ['route', 'show', 'default']), /via 10\.244\.1\.1/);
    } finally {
      await pm.close();
      ns.destroy();
      gone.destroy();
    }
  });

  it('refuses conflicts, wrong gateways and missing namespaces, leaving no device behind', async () => {
    const ns = new Netns('pm');
    const busy = new Netns('pm');
    const pm = manager(join(stateRoot, 'c'));
    const refused = (code: string, pattern: RegExp) => (e: unknown) => e instanceof ControlError && e.code === code && pattern.test(e.message);
    try {
      const p = await pm.addPort(params(ns, 'pod-c', 9));
      assert.equal(await pm.addPort(params(ns, 'pod-c', 9)), p, 'same request: same port');
      await assert.rejects(pm.addPort(params(ns, 'pod-c', 10)), refused(ControlErrorCode.conflict, /already has a port with 10\.244\.1\.9/));
      await assert.rejects(pm.addPort({ ...params(busy, 'pod-d', 9) }), refused(ControlErrorCode.conflict, /10\.244\.1\.9 is in use by pod-c\/eth0/));
      await assert.rejects(pm.addPort({ ...params(busy, 'pod-d', 11), gateway: GATEWAY + 1 }), refused(ControlErrorCode.invalidField, /not this node's pod gateway/));
      await assert.rejects(pm.addPort({ ...params(busy, 'pod-d', 11), netns: '/var/run/netns/tp-no-such' }), refused(ControlErrorCode.netnsNotFound, /does not exist/));
      busy.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0peer']);
      await assert.rejects(pm.addPort(params(busy, 'pod-d', 11)), refused(ControlErrorCode.conflict, /already has an interface named eth0/));
      busy.exec('ip', ['link', 'del', 'eth0']);
      assert.doesNotMatch(run('ip', ['-o', 'link']), new RegExp(hostNameFor('pod-d', 'eth0')), 'the failed TAP was removed');
      assert.equal(pm.size, 1);

      await pm.checkPort('pod-c', 'eth0', p.ip);
      await assert.rejects(pm.checkPort('pod-c', 'eth0', p.ip + 1), refused(ControlErrorCode.mismatch, /has 10\.244\.1\.9/));
      await assert.rejects(pm.checkPort('pod-x', 'eth0', p.ip), refused(ControlErrorCode.notFound, /no port for pod-x/));
      ns.destroy(); // the pod's namespace goes away under the agent: the kernel deletes the TAP
      await assert.rejects(pm.checkPort('pod-c', 'eth0', p.ip), refused(ControlErrorCode.mismatch, /is gone/));
      assert.equal(await pm.delPort('pod-c', 'eth0'), true, 'deleting a port whose pod is gone still works');

      // A datapath that refuses the port: the TAP is removed again and nothing is recorded.
      const picky = new PortManager({ stateDir: join(stateRoot, 'd'), mtu: 1450, gateway: GATEWAY, onPortAdded: () => { throw new Error('no room'); }, onPortRemoved: () => {} });
      await assert.rejects(picky.addPort(params(busy, 'pod-e', 12)), /no room/);
      assert.equal(picky.size, 0);
      assert.doesNotMatch(busy.exec('ip', ['-o', 'link']), /0a:58:0a:f4:01:0c/);
    } finally {
      await pm.close();
      ns.destroy();
      busy.destroy();
    }
  });
});

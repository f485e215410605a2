// Failures of the device layer arrive as DeviceError with errno, code and syscall; and
// the device lifecycle (persist, re-attach, multi-queue, close) leaves nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { Netns, run, uniqueName } from './helpers/netns.ts';
import { DeviceError } from '../src/device/errors.ts';
import { TunDevice, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6 } from '../src/device/tun.ts';
import { UdpBatchSocket } from '../src/device/udp.ts';
import { linkIndex, moveLinkToNetns } from '../src/device/netlink.ts';

function assertDeviceError(fn: () => unknown, code: string, syscall: string): DeviceError {
  let caught: unknown;
  try { fn(); } catch (err) { caught = err; }
  assert.ok(caught instanceof DeviceError, `expected a DeviceError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.syscall, syscall, caught.message);
  assert.equal(typeof caught.errno, 'number');
  assert.ok(caught.errno > 0);
  return caught;
}

function linkExists(name: string): boolean {
  return run('ip', ['-o', 'link']).split('\n').some((l) => l.split(': ')[1]?.split('@')[0] === name);
}

test('opening with a bad name gives DeviceError EINVAL from TUNSETIFF', () => {
  const err = assertDeviceError(() => TunDevice.open({ mode: 'tap', name: 'bad/name' }), 'EINVAL', 'TUNSETIFF');
  assert.equal(err.errno, 22);
  assert.match(err.message, /bad\/name/);
  assert.throws(() => TunDevice.open({ mode: 'tap', name: 'x'.repeat(16) }), RangeError);
  assert.throws(() => TunDevice.open({ mode: 'tun', offloads: TUN_F_CSUM }), TypeError, 'offloads without the vnet header');
});

test('netlink errors name the failing step', () => {
  const ns = new Netns('de');
  try {
    assertDeviceError(() => linkIndex('tpde-none'), 'ENODEV', 'if_nametoindex');
    assert.equal(linkIndex('lo'), 1);
    assertDeviceError(() => moveLinkToNetns('tpde-none', `/var/run/netns/${ns.name}`), 'ENODEV', 'if_nametoindex');
    const tap = TunDevice.open({ mode: 'tap', name: uniqueName('de', 15) });
    try {
      assertDeviceError(() => moveLinkToNetns(tap.name, '/var/run/netns/tpde-missing'), 'ENOENT', 'open');
      assertDeviceError(() => moveLinkToNetns(tap.name, '/proc/self/ns/uts'), 'EINVAL', 'RTM_NEWLINK');
      // 'lo' is taken in every namespace: the rename in the same message must fail whole.
      // The kernel moves first and renames after, so the addon moves the link back.
      const clash = assertDeviceError(() => moveLinkToNetns(tap.name, `/var/run/netns/${ns.name}`, 'lo'), 'EEXIST', 'RTM_NEWLINK');
      assert.match(clash.message, /moved back/);
      assert.ok(linkExists(tap.name), 'a failed move leaves the link where it was');
      assert.doesNotMatch(ns.exec('ip', ['-o', 'link']), new RegExp(tap.name));
      moveLinkToNetns(tap.name, `/var/run/netns/${ns.name}`, 'eth0');
      assert.match(ns.exec('ip', ['-o', 'link', 'show', 'eth0']), /eth0/);
    } finally {
      tap.close();
    }
    assert.doesNotMatch(ns.exec('ip', ['-o', 'link']), /eth0/, 'closing the fd removed the moved TAP');
  } finally {
    ns.destroy();
  }
});

test('UDP bind to an address this namespace lacks gives EADDRNOTAVAIL from bind', () => {
  assertDeviceError(() => UdpBatchSocket.open({ address: '10.254.254.254', port: 0 }), 'EADDRNOTAVAIL', 'bind');
  assert.throws(() => UdpBatchSocket.open({ address: 'not-an-ip', port: 0 }), TypeError);
});

test('persistent device: survives close, re-attaches by name, is removed when persist is cleared', () => {
  const name = uniqueName('de', 15);
  try {
    const first = TunDevice.open({ mode: 'tun', name, persist: true });
    first.close();
    assert.ok(linkExists(name), 'a persistent device outlives its fd');
    // Re-attaching with the other mode is refused by the kernel.
    assertDeviceError(() => TunDevice.open({ mode: 'tap', name }), 'EINVAL', 'TUNSETIFF');
    const again = TunDevice.open({ mode: 'tun', name });
    assert.equal(again.name, name);
    again.setPersist(false);
    again.close();
    assert.ok(!linkExists(name), 'cleared persist + close removes the device');
  } finally {
    if (linkExists(name)) run('ip', ['link', 'del', name]);
  }
});

test('multi-queue: a second queue on the same name; a single-queue open of it is refused', () => {
  const name = uniqueName('de', 15);
  const q0 = TunDevice.open({ mode: 'tap', name, multiQueue: true });
  try {
    const q1 = TunDevice.open({ mode: 'tap', name, multiQueue: true });
    assert.notEqual(q1.fd, q0.fd);
    assert.equal(q1.name, name);
    q1.close();
    assertDeviceError(() => TunDevice.open({ mode: 'tap', name }), 'EINVAL', 'TUNSETIFF');
  } finally {
    q0.close();
  }
  assert.ok(!linkExists(name));
});

test('vnet header and offloads: what the kernel accepted is reported', () => {
  const dev = TunDevice.open({ mode: 'tun', vnetHdr: true, offloads: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6 });
  try {
    assert.equal(dev.vnetHdrSize, 10);
    assert.match(dev.name, /^tun\d+$/, 'kernel-chosen name');
    const base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    assert.ok(dev.offloads === base || dev.offloads === (base | TUN_F_USO4 | TUN_F_USO6), `offloads 0x${dev.offloads.toString(16)}`);
    // ethtool shows the features TUNSETOFFLOAD turned on.
    assert.match(run('ethtool', ['-k', dev.name]), /tcp-segmentation-offload: on/);
  } finally {
    dev.close();
  }
  const twelve = TunDevice.open({ mode: 'tap', vnetHdr: true, vnetHdrSize: 12 });
  assert.equal(twelve.vnetHdrSize, 12);
  assert.equal(twelve.offloads, 0);
  twelve.close();
});

test('a closed device refuses I/O with EBADF', () => {
  const dev = TunDevice.open({ mode: 'tun' });
  dev.close();
  assertDeviceError(() => dev.readBatch(new Uint8Array(2048), 2048, 0, new Int32Array(1), 1), 'EBADF', 'tun');
  dev.close(); // twice is harmless
});

test('slab bounds are checked before any I/O', () => {
  const dev = TunDevice.open({ mode: 'tun' });
  try {
    assert.throws(() => dev.readBatch(new Uint8Array(1000), 2048, 0, new Int32Array(1), 1), RangeError);
    assert.throws(() => dev.readBatch(new Uint8Array(4096), 2048, 0, new Int32Array(1), 2), RangeError);
    assert.throws(() => dev.readBatch(new Uint8Array(2048), 2048, 2048, new Int32Array(1), 1), RangeError);
    assert.throws(() => dev.writeBatch(new Uint8Array(100), Int32Array.of(90), Int32Array.of(20), 1), RangeError);
    assert.throws(() => dev.writeBatch(new Uint8Array(100), new Int32Array(1), new Int32Array(1), 2), RangeError);
    assert.throws(() => dev.readBatch(new Uint8Array(2048) as unknown as Uint8Array, 2048, 0, new Uint32Array(1) as unknown as Int32Array, 1), TypeError);
  } finally {
    dev.close();
  }
});

test('a worker that exits while watching a device tears down cleanly', () => {
  // libuv finishes closing a poll handle on a later loop turn; when a worker exits
  // Node unloads the addon, so a close still pending then used to crash the process.
  const tunUrl = new URL('../src/device/tun.ts', import.meta.url).href;
  const worker = `const { parentPort } = await import('node:worker_threads');
    const { TunDevice } = await import(${JSON.stringify(tunUrl)});
    const a = TunDevice.open({ mode: 'tun' }); a.onReadable(() => {});
    const b = TunDevice.open({ mode: 'tun' }); b.onReadable(() => {}); b.close();
    const c = TunDevice.open({ mode: 'tun' }); c.onReadable(() => {}); c.pause();
    parentPort.postMessage('open');`;
  const main = `import { Worker } from 'node:worker_threads';
    const w = new Worker(${JSON.stringify(worker)}, { eval: true, type: 'module' });
    w.on('message', async () => { await w.terminate(); console.log('terminated'); });`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', main], { encoding: 'utf8', timeout: 20_000 });
  assert.match(out, /terminated/);
});

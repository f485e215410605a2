// Flow tables that outlive the process (issue 8, "flows survive the agent"): conntrack
// and affinity in a flow store, taken over by a second table over the same memory as a
// restarted agent does; the header's checks; records torn by a process killed between
// two writes; and the native shared mapping itself (a real file, mapped twice).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Conntrack, ConntrackCounter, EntryStatus, TCP, UDP } from '../src/tables/conntrack.ts';
import { AFFINITY_DEFAULT_CAPACITY, AffinityTable } from '../src/tables/affinity.ts';
import { FLOW_STORE_VERSION, flowStoreBytes, openFlowStore, type FlowStore } from '../src/tables/flow-store.ts';
import { EntryPoint, LbChoice, Verdict } from '../src/services/nat-codes.ts';
import { endpoint, servicePort, snapshot } from '../src/model/synthetic.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { bootId, mapSharedFile } from '../src/device/shared-memory.ts';
import { makeNat, send, TcpFlags } from './services-helpers.ts';

const LAYOUT = { conntrackCapacity: 64, affinityCapacity: 16 };
const BOOT = new Uint8Array(16).fill(7);
const C = 0x0af40107 | 0; // 10.244.1.7
const VIP = 0x0a60000a; // 10.96.0.10
const EP = 0x0af40205; // 10.244.2.5

function store(buffer = new ArrayBuffer(flowStoreBytes(LAYOUT)), maybeOld = false, boot = BOOT): FlowStore {
  return openFlowStore(buffer, LAYOUT, boot, maybeOld);
}

function conntrackOver(s: FlowStore, seed: number): Conntrack {
  return new Conntrack({ capacity: s.conntrackCapacity, seed, memory: { buffer: s.buffer, byteOffset: s.conntrackOffset, restore: !s.fresh } });
}

test('conntrack taken over: every entry found both ways with its state, status, tag and expiry, under another seed', () => {
  const first = store();
  assert.equal(first.fresh, true);
  const a = conntrackOver(first, 1);
  const entries: number[] = [];
  for (let port = 40000; port < 40040; port++) {
    const e = a.insert(TCP, C, port, VIP, 80, EP, 8080, C, port, 100);
    a.update(e, 0, TcpFlags.SYN, 100);
    if (port % 2 === 0) {
      a.update(e, 1, TcpFlags.SYN | TcpFlags.ACK, 101);
      a.update(e, 0, TcpFlags.ACK, 101);
    }
    a.setTag(e, port - 40000);
    entries.push(e);
  }
  const u = a.insert(UDP, C, 5353, VIP, 53, EP, 53, C, 5353, 100);
  a.update(u, 0, 0, 100);

  const second = store(first.buffer, true);
  assert.equal(second.fresh, false);
  assert.equal(second.discarded, '');
  const b = conntrackOver(second, 99);
  assert.equal(b.restored, 41);
  assert.equal(b.size, 41);
  for (const [i, e] of entries.entries()) {
    const port = 40000 + i;
    assert.equal(b.lookup(TCP, C, port, VIP, 80, 102), e * 2, `original tuple of ${port}`);
    assert.equal(b.lookup(TCP, EP, 8080, C, port, 102), e * 2 + 1, `reply tuple of ${port}`);
    assert.equal(b.stateOf(e), a.stateOf(e));
    assert.equal(b.statusOf(e), a.statusOf(e));
    assert.equal(b.tagOf(e), i);
    assert.equal(b.expiresAt(e), a.expiresAt(e));
  }
  assert.equal(b.lookup(UDP, C, 5353, VIP, 53, 102), u * 2);
  // The per-source budget counts the taken-over non-assured entries (20 SYN_SENT + 1 UDP).
  assert.equal(b.unassuredOf(C), 21);
  // New entries go to free records, not over taken-over ones; removal and expiry work on them.
  const n = b.insert(TCP, C, 50000, VIP, 80, EP, 8080, C, 50000, 102);
  assert.ok(n >= 0 && !entries.includes(n) && n !== u);
  b.remove(entries[0]!);
  assert.equal(b.lookup(TCP, C, 40000, VIP, 80, 102), -1);
  assert.equal(b.expire(1e9, 64), 41);
  assert.equal(b.size, 0);
});

test('conntrack taken over: the per-source budget counts what the running table counted (an answered UDP datagram is not unanswered)', () => {
  const first = store();
  const a = conntrackOver(first, 1);
  const answered = a.insert(UDP, C, 5353, VIP, 53, EP, 53, C, 5353, 100);
  a.update(answered, 0, 0, 100);
  a.update(answered, 1, 0, 100); // one datagram and its answer: not assured, not charged
  const waiting = a.insert(UDP, C, 5354, VIP, 53, EP, 53, C, 5354, 100);
  a.update(waiting, 0, 0, 100);
  assert.equal(a.statusOf(answered) & EntryStatus.ASSURED, 0);
  assert.equal(a.unassuredOf(C), 1);
  const b = conntrackOver(store(first.buffer, true), 5);
  assert.equal(b.unassuredOf(C), 1, 'the same charge as before the restart');
  b.remove(answered);
  b.remove(waiting);
  assert.equal(b.unassuredOf(C), 0, 'and removal gives back exactly that (the count never wraps)');
});

test('records torn by a kill between two writes: duplicates and untrusted records are dropped, the rest indexed', () => {
  const s = store();
  const a = conntrackOver(s, 1);
  const e1 = a.insert(TCP, C, 1000, VIP, 80, EP, 8080, C, 1000, 5);
  const e2 = a.insert(TCP, C, 1001, VIP, 80, EP, 8080, C, 1001, 5);
  const e3 = a.insert(UDP, C, 1002, VIP, 80, EP, 8080, C, 1002, 5);
  // A process killed while replacing e1's flow: a second live record with e1's tuples.
  const words = new Uint32Array(s.buffer, s.conntrackOffset, 64 * 16);
  const bytes = new Uint8Array(s.buffer, s.conntrackOffset, 64 * 64);
  const spare = 10;
  words.copyWithin(spare * 16, e1 * 16, e1 * 16 + 16);
  // A record with a protocol no flow has (garbage, or a future layout's field).
  bytes[e3 * 64 + 24] = 99;
  // A live byte that is not 0 or 1.
  bytes[e2 * 64 + 27] = 7;
  const b = conntrackOver(store(s.buffer, true), 2);
  assert.equal(b.restored, 1);
  assert.equal(b.lookup(TCP, C, 1000, VIP, 80, 6), e1 * 2, 'the first record of a tuple wins');
  assert.equal(b.isLive(spare), false);
  assert.equal(b.isLive(e2), false);
  assert.equal(b.isLive(e3), false);
  assert.equal(b.size, 1);
  // The dropped records are free again.
  for (let port = 2000; port < 2063; port++) assert.ok(b.insert(UDP, C + port, port, VIP, 80, EP, 8080, C + port, port, 6) >= 0);
  assert.equal(b.size, 64);
  assert.equal(b.counters[ConntrackCounter.DROPPED_FULL], 0);
});

test('the header decides: another layout version, capacity or boot starts empty and says why', () => {
  const s = store();
  const a = conntrackOver(s, 1);
  a.insert(TCP, C, 1000, VIP, 80, EP, 8080, C, 1000, 5);

  const otherBoot = store(s.buffer, true, new Uint8Array(16).fill(8));
  assert.equal(otherBoot.fresh, true);
  assert.match(otherBoot.discarded, /before the last boot/);
  assert.equal(conntrackOver(otherBoot, 1).size, 0);

  conntrackOver(store(s.buffer), 1).insert(TCP, C, 1000, VIP, 80, EP, 8080, C, 1000, 5);
  new Uint32Array(s.buffer, 0, 16)[1] = FLOW_STORE_VERSION + 1;
  const newer = store(s.buffer, true);
  assert.equal(newer.fresh, true);
  assert.match(newer.discarded, new RegExp(`layout version is ${FLOW_STORE_VERSION + 1}, this agent's is ${FLOW_STORE_VERSION}`));
  assert.equal(conntrackOver(newer, 1).size, 0);

  conntrackOver(store(s.buffer), 1).insert(TCP, C, 1000, VIP, 80, EP, 8080, C, 1000, 5);
  new Uint32Array(s.buffer, 0, 16)[5] = 0; // killed while initialising
  assert.match(store(s.buffer, true).discarded, /being initialised/);

  const bigger = { conntrackCapacity: 128, affinityCapacity: 16 };
  const buf = new ArrayBuffer(flowStoreBytes(bigger));
  new Uint8Array(buf).set(new Uint8Array(s.buffer));
  assert.match(openFlowStore(buf, bigger, BOOT, true).discarded, /conntrack capacity is 64, this agent's is 128/);
  assert.throws(() => openFlowStore(s.buffer, bigger, BOOT, true), /buffer is \d+ bytes, this layout takes \d+/);
});

test('affinity taken over: slots as they were; a fresh store has none', () => {
  const s = store();
  const a = new AffinityTable(16, { buffer: s.buffer, byteOffset: s.affinityOffset, slots: s.affinitySlots, restore: false });
  a.record(3, C, EP, 8080, 500, 10);
  a.record(4, C, EP + 1, 8081, 500, 10);
  const b = new AffinityTable(16, { buffer: s.buffer, byteOffset: s.affinityOffset, slots: s.affinitySlots, restore: true });
  const slot = b.lookup(3, C, 20);
  assert.ok(slot >= 0);
  assert.equal(b.endpointIP[slot], EP);
  assert.equal(b.endpointPort[slot], 8080);
  assert.equal(b.liveEntries(20), 2);
  assert.equal(b.lookup(4, C, 500), -1, 'expired at its time');
  const fresh = new AffinityTable(16, { buffer: s.buffer, byteOffset: s.affinityOffset, slots: s.affinitySlots, restore: false });
  assert.equal(fresh.lookup(3, C, 20), -1);
  assert.equal(fresh.liveEntries(0), 0);
});

test('a ServiceNat over a taken-over store translates old flows as before, keeps affinity and the service ids', () => {
  const eps = [0, 1, 2, 3].map((k) => endpoint(`10.244.2.${10 + k}`, 8080));
  const web = servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: eps, affinityTimeoutSeconds: 600 });
  const dns = servicePort({ name: 'dns', clusterIP: '10.96.0.53', port: 53, protocol: 17, allEndpoints: [eps[0]!] });
  const snap = snapshot([dns, web]);
  const layout = { conntrackCapacity: 1024, affinityCapacity: 64 };
  const buffer = new ArrayBuffer(flowStoreBytes(layout));
  const first = makeNat(snap, { store: openFlowStore(buffer, layout, BOOT, false) });
  const out = send(first, { src: '10.244.1.7:40000', dst: '10.96.0.10:80' }, EntryPoint.POD, 10);
  send(first, { src: out.dst, dst: '10.244.1.7:40000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD, 10);
  send(first, { src: '10.244.1.7:40000', dst: '10.96.0.10:80', flags: TcpFlags.ACK }, EntryPoint.POD, 10);
  const ids = first.serviceIds();

  // The next process: an empty placeholder table, the old memory, the old ids.
  const second = makeNat(snapshot([]), { store: openFlowStore(buffer, layout, BOOT, true), serviceIds: ids });
  assert.equal(second.conntrack.restored, 1);
  // Before the first sync: the old flow is translated both ways, new flows are nobody's.
  const mid = send(second, { src: '10.244.1.7:40000', dst: '10.96.0.10:80', flags: TcpFlags.ACK }, EntryPoint.POD, 11);
  assert.equal(mid.verdict, Verdict.NATED);
  assert.equal(mid.dst, out.dst);
  const reply = send(second, { src: out.dst, dst: '10.244.1.7:40000', flags: TcpFlags.ACK }, EntryPoint.POD, 11);
  assert.equal(reply.src, '10.96.0.10:80');
  assert.equal(send(second, { src: '10.244.1.7:40001', dst: '10.96.0.10:80' }, EntryPoint.POD, 11).verdict, Verdict.PASS);
  // Services in a new order: each port keeps its id, so affinity still holds the client.
  second.setTable(buildServiceTable(snapshot([web, dns], [], 2)));
  assert.equal(second.serviceId(0), ids.byKey.get(web.key));
  assert.equal(second.serviceId(1), ids.byKey.get(dns.key));
  const again = send(second, { src: '10.244.1.7:40002', dst: '10.96.0.10:80' }, EntryPoint.POD, 12);
  assert.equal(again.dst, out.dst);
  assert.equal(second.result.lb, LbChoice.AFFINITY);
  assert.ok((second.conntrack.statusOf(second.result.entry) & EntryStatus.DST_NAT) !== 0);
});

test('the shared mapping: a second mapping of the file sees the first one\'s bytes; another size starts from zeros', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpt-flows-'));
  try {
    const path = join(dir, 'flow-tables');
    const one = mapSharedFile(path, 8192);
    assert.equal(one.fresh, true);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    new Uint32Array(one.buffer)[100] = 0xdeadbeef;
    const two = mapSharedFile(path, 8192);
    assert.equal(two.fresh, false);
    assert.equal(new Uint32Array(two.buffer)[100], 0xdeadbeef);
    new Uint32Array(two.buffer)[101] = 42;
    assert.equal(new Uint32Array(one.buffer)[101], 42, 'one memory, two views');
    const resized = mapSharedFile(path, 16384);
    assert.equal(resized.fresh, true);
    assert.equal(new Uint32Array(resized.buffer)[100], 0);
    assert.equal(bootId().length, 16);
    assert.throws(() => mapSharedFile(join(dir, 'missing', 'x'), 4096), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a fresh store over a new shared file is not read or written past its header: its pages come as flows use them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpt-flows-'));
  try {
    const path = join(dir, 'flow-tables');
    // The agent's default sizes: 14 MB.
    const layout = { conntrackCapacity: 131072, affinityCapacity: AFFINITY_DEFAULT_CAPACITY };
    const mapping = mapSharedFile(path, flowStoreBytes(layout));
    const s = openFlowStore(mapping.buffer, layout, BOOT, !mapping.fresh);
    assert.equal(s.fresh, true);
    const web = servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: [endpoint('10.244.2.10', 8080)] });
    const nat = makeNat(snapshot([web]), { store: s, conntrack: { capacity: s.conntrackCapacity } });
    assert.equal(nat.conntrack.capacity, 131072);
    // The mapping's resident pages (/proc/self/smaps: the block after its address line).
    const smaps = readFileSync('/proc/self/smaps', 'utf8');
    const block = smaps.slice(smaps.indexOf(path));
    const rssKiB = Number(/^Rss:\s+(\d+) kB/m.exec(block)![1]);
    // Before: the header check zeroed all of it and conntrack read every record's live byte.
    assert.ok(rssKiB * 1024 < flowStoreBytes(layout) / 8, `${rssKiB} KiB resident of ${(flowStoreBytes(layout) / 1048576).toFixed(0)} MiB`);
    // And the table works from its first entry.
    const out = send(nat, { src: '10.244.1.7:40000', dst: '10.96.0.10:80' }, EntryPoint.POD, 10);
    assert.equal(out.dst, '10.244.2.10:8080');
    assert.equal(nat.conntrack.size, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// IPv6 flows that outlive the process: the flow store's IPv6 conntrack (records and
// their addresses) and IPv6 affinity regions, taken over by a second table over the
// same memory under other seeds (the digests recomputed from the addresses), records
// torn by a kill, the regions kept apart from the IPv4 ones, and the header's checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Conntrack, ConntrackCounter, EntryStatus, TCP, UDP } from '../src/tables/conntrack.ts';
import { AffinityTable } from '../src/tables/affinity.ts';
import { FLOW_STORE_VERSION, flowStoreBytes, openFlowStore, type FlowStore, type FlowStoreLayout } from '../src/tables/flow-store.ts';
import { addressDigest6 } from '../src/tables/hash.ts';

const LAYOUT: FlowStoreLayout = { conntrackCapacity: 64, affinityCapacity: 16, conntrack6Capacity: 64, affinity6Capacity: 16 };
const BOOT = new Uint8Array(16).fill(7);
const SYN = 0x02, ACK = 0x10;
const C = [0xfd000010 | 0, 0x02440001, 0, 7];
const VIP = [0xfd000010 | 0, 0x00960000, 0, 0x0a];
const EP = [0xfd000010 | 0, 0x02440002, 0, 5];
const C4 = 0x0af40107 | 0;

function store(buffer = new ArrayBuffer(flowStoreBytes(LAYOUT)), maybeOld = false, layout = LAYOUT): FlowStore {
  return openFlowStore(buffer, layout, BOOT, maybeOld);
}

function conntrack6Over(s: FlowStore, seed: number, digestSeed: number): Conntrack {
  return new Conntrack({
    capacity: s.conntrack6Capacity, seed, digestSeed, family: 6,
    memory: { buffer: s.buffer, byteOffset: s.conntrack6Offset, addresses6Offset: s.addresses6Offset, restore: !s.fresh },
  });
}

function conntrack4Over(s: FlowStore, seed: number): Conntrack {
  return new Conntrack({ capacity: s.conntrackCapacity, seed, memory: { buffer: s.buffer, byteOffset: s.conntrackOffset, restore: !s.fresh } });
}

function tuple6(client: number[], port: number, endpoint = EP): Int32Array {
  return Int32Array.from([...client, ...VIP, (port << 16) | 80, ...endpoint, ...client, (8080 << 16) | port]);
}

function lookup(ct: Conntrack, protocol: number, src: number[], srcPort: number, dst: number[], dstPort: number, now: number): number {
  return ct.lookup6(protocol, Int32Array.from([...src, ...dst]), 0, srcPort, 4, dstPort, now);
}

test('IPv6 conntrack taken over: every entry found both ways with its state, status, tag and expiry, under other seeds', () => {
  const first = store();
  assert.equal(first.fresh, true);
  const a = conntrack6Over(first, 1, 11);
  const entries: number[] = [];
  for (let port = 40000; port < 40040; port++) {
    const e = a.insert6(TCP, tuple6(C, port), 100);
    a.update(e, 0, SYN, 100);
    if (port % 2 === 0) {
      a.update(e, 1, SYN | ACK, 101);
      a.update(e, 0, ACK, 101);
    }
    a.setTag(e, port - 40000);
    entries.push(e);
  }
  const u = a.insert6(UDP, tuple6(C, 5353), 100);
  a.update(u, 0, 0, 100);

  const second = store(first.buffer, true);
  assert.equal(second.fresh, false);
  assert.equal(second.discarded, '');
  // Another index seed and another digest seed: the records' digests are recomputed.
  const b = conntrack6Over(second, 99, 77);
  assert.equal(b.restored, 41);
  assert.equal(b.size, 41);
  for (const [i, e] of entries.entries()) {
    const port = 40000 + i;
    assert.equal(lookup(b, TCP, C, port, VIP, 80, 102), e * 2, `original tuple of ${port}`);
    assert.equal(lookup(b, TCP, EP, 8080, C, port, 102), e * 2 + 1, `reply tuple of ${port}`);
    assert.equal(b.stateOf(e), a.stateOf(e));
    assert.equal(b.statusOf(e), a.statusOf(e));
    assert.equal(b.tagOf(e), i);
    assert.equal(b.expiresAt(e), a.expiresAt(e));
  }
  assert.equal(b.words[entries[0]! * 16], addressDigest6(77, Int32Array.from(C), 0), 'the record holds this table\'s digest');
  assert.equal(lookup(b, UDP, C, 5353, VIP, 80, 102), u * 2);
  assert.deepEqual(b.tuple6(u * 2 + 1), { src: 'fd00:10:244:2::5', srcPort: 8080, dst: 'fd00:10:244:1::7', dstPort: 5353 });
  // The per-source budget counts the taken-over unanswered entries (20 SYN_SENT + 1 UDP).
  assert.equal(b.unassuredOf6(Int32Array.from(C), 0), 21);
  const n = b.insert6(TCP, tuple6(C, 50000), 102);
  assert.ok(n >= 0 && !entries.includes(n) && n !== u);
  b.remove(entries[0]!);
  assert.equal(lookup(b, TCP, C, 40000, VIP, 80, 102), -1);
  assert.equal(b.expire(1e9, 64), 41);
  assert.equal(b.size, 0);
  assert.equal(b.unassuredOf6(Int32Array.from(C), 0), 0, 'the count never wraps');
});

test('IPv6 records torn by a kill: duplicates and untrusted records are dropped, the rest indexed', () => {
  const s = store();
  const a = conntrack6Over(s, 1, 11);
  const e1 = a.insert6(TCP, tuple6(C, 1000), 5);
  const e2 = a.insert6(TCP, tuple6(C, 1001), 5);
  const e3 = a.insert6(UDP, tuple6(C, 1002), 5);
  const e4 = a.insert6(UDP, tuple6(C, 1003), 5);
  const words = new Int32Array(s.buffer, s.conntrack6Offset, 64 * 16);
  const bytes = new Uint8Array(s.buffer, s.conntrack6Offset, 64 * 64);
  const addresses = new Int32Array(s.buffer, s.addresses6Offset, 64 * 16);
  // A process killed while replacing e1's flow: a second live record with e1's tuples.
  const spare = 10;
  words.copyWithin(spare * 16, e1 * 16, e1 * 16 + 16);
  addresses.copyWithin(spare * 16, e1 * 16, e1 * 16 + 16);
  // The same record words as e4 but other addresses (the digests are the old table's
  // anyway): not a duplicate, it is indexed under its own addresses.
  const twin = 11;
  words.copyWithin(twin * 16, e4 * 16, e4 * 16 + 16);
  addresses.copyWithin(twin * 16, e4 * 16, e4 * 16 + 16);
  addresses[twin * 16 + 3] = 0x99; // its original source's last word
  addresses[twin * 16 + 15] = 0x99; // its reply destination's last word
  bytes[e3 * 64 + 24] = 99; // a protocol no flow has
  bytes[e2 * 64 + 27] = 7; // a live byte that is not 0 or 1
  const b = conntrack6Over(store(s.buffer, true), 2, 22);
  assert.equal(b.restored, 3);
  assert.equal(lookup(b, TCP, C, 1000, VIP, 80, 6), e1 * 2, 'the first record of a tuple wins');
  assert.equal(lookup(b, UDP, C, 1003, VIP, 80, 6), e4 * 2);
  const twinClient = [C[0]!, C[1]!, C[2]!, 0x99];
  assert.equal(lookup(b, UDP, twinClient, 1003, VIP, 80, 6), twin * 2);
  assert.equal(lookup(b, UDP, EP, 8080, twinClient, 1003, 6), twin * 2 + 1);
  assert.equal(b.isLive(spare), false);
  assert.equal(b.isLive(e2), false);
  assert.equal(b.isLive(e3), false);
  for (let port = 2000; port < 2061; port++) assert.ok(b.insert6(UDP, tuple6([C[0]!, C[1]!, 1, port], port), 6) >= 0);
  assert.equal(b.size, 64);
  assert.equal(b.counters[ConntrackCounter.DROPPED_FULL], 0);
});

test('the IPv4 and IPv6 regions are apart: both tables full, every flow of each found after a restart', () => {
  const s = store();
  const v4 = conntrack4Over(s, 1);
  const v6 = conntrack6Over(s, 2, 3);
  const aff4 = new AffinityTable(16, { buffer: s.buffer, byteOffset: s.affinityOffset, slots: s.affinitySlots, restore: false });
  const aff6 = new AffinityTable(16, { buffer: s.buffer, byteOffset: s.affinity6Offset, slots: s.affinity6Slots, restore: false }, 6);
  for (let port = 1; port <= 64; port++) {
    const e4 = v4.insert(TCP, C4, port, 0x0a60000a, 80, 0x0af40205, 8080, C4, port, 1);
    v4.update(e4, 0, SYN, 1); v4.update(e4, 1, SYN | ACK, 1); v4.update(e4, 0, ACK, 1);
    const e6 = v6.insert6(TCP, tuple6(C, port), 1);
    v6.update(e6, 0, SYN, 1); v6.update(e6, 1, SYN | ACK, 1); v6.update(e6, 0, ACK, 1);
    assert.ok((v4.statusOf(e4) & v6.statusOf(e6) & EntryStatus.ASSURED) !== 0);
  }
  for (let n = 0; n < 16; n++) {
    aff4.record(n, C4, 0x0af40205 + n, 8080, 1000, 1);
    aff6.record6(n, Int32Array.from(C), 0, 100 + n, 9090, 1000, 1);
  }
  const t = store(s.buffer, true);
  const v4b = conntrack4Over(t, 5);
  const v6b = conntrack6Over(t, 6, 7);
  assert.equal(v4b.restored, 64);
  assert.equal(v6b.restored, 64);
  const aff4b = new AffinityTable(16, { buffer: t.buffer, byteOffset: t.affinityOffset, slots: t.affinitySlots, restore: true });
  const aff6b = new AffinityTable(16, { buffer: t.buffer, byteOffset: t.affinity6Offset, slots: t.affinity6Slots, restore: true }, 6);
  for (let port = 1; port <= 64; port++) {
    assert.ok(v4b.lookup(TCP, C4, port, 0x0a60000a, 80, 2) >= 0, `IPv4 flow ${port}`);
    assert.ok(lookup(v6b, TCP, C, port, VIP, 80, 2) >= 0, `IPv6 flow ${port}`);
  }
  for (let n = 0; n < 16; n++) {
    assert.equal(aff4b.endpointIP[aff4b.lookup(n, C4, 2)], 0x0af40205 + n);
    const slot = aff6b.lookup6(n, Int32Array.from(C), 0, 2);
    assert.equal(aff6b.endpointIP[slot], 100 + n);
    assert.equal(aff6b.endpointPort[slot], 9090);
  }
  // Sections in order, 64-byte aligned, inside the buffer.
  const order = [t.conntrackOffset, t.affinityOffset, t.conntrack6Offset, t.addresses6Offset, t.affinity6Offset];
  for (let i = 1; i < order.length; i++) assert.ok(order[i]! > order[i - 1]! && order[i]! % 64 === 0);
  assert.ok(t.affinity6Offset + t.affinity6Slots * 34 <= t.buffer.byteLength);
});

test('IPv6 sizes: a quarter of the IPv4 ones, at least 1,024; another IPv6 capacity or an older layout starts empty and says why', () => {
  const plain = { conntrackCapacity: 131072, affinityCapacity: 65536 };
  const big = openFlowStore(new ArrayBuffer(flowStoreBytes(plain)), plain, BOOT, false);
  assert.equal(big.conntrack6Capacity, 32768);
  assert.equal(big.affinity6Slots, 16384);
  assert.ok(flowStoreBytes(plain) < 15 * 2 ** 20, `${flowStoreBytes(plain)} bytes`);
  const small = { conntrackCapacity: 64, affinityCapacity: 16 };
  const s = openFlowStore(new ArrayBuffer(flowStoreBytes(small)), small, BOOT, false);
  assert.equal(s.conntrack6Capacity, 1024);
  assert.equal(s.affinity6Slots, 1024);

  const first = store();
  conntrack6Over(first, 1, 1).insert6(TCP, tuple6(C, 1), 1);
  const other = { ...LAYOUT, conntrack6Capacity: 128 };
  const buf = new ArrayBuffer(flowStoreBytes(other));
  new Uint8Array(buf).set(new Uint8Array(first.buffer));
  const reopened = openFlowStore(buf, other, BOOT, true);
  assert.equal(reopened.fresh, true);
  assert.match(reopened.discarded, /IPv6 conntrack capacity is 64, this agent's is 128/);
  assert.equal(conntrack6Over(reopened, 1, 1).size, 0);

  // A store written by the previous layout (version 1: no IPv6 regions) is not read.
  conntrack6Over(store(first.buffer), 1, 1).insert6(TCP, tuple6(C, 1), 1);
  new Uint32Array(first.buffer, 0, 16)[1] = 1;
  const old = store(first.buffer, true);
  assert.equal(old.fresh, true);
  assert.match(old.discarded, new RegExp(`layout version is 1, this agent's is ${FLOW_STORE_VERSION}`));
  assert.equal(conntrack6Over(old, 1, 1).size, 0);
  assert.equal(FLOW_STORE_VERSION, 2);
});

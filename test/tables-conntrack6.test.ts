// Conntrack for IPv6 (family 6, the NAT66 engine's table): both tuples findable by
// their full addresses, expiry, the full-table policy, the per-source budget per full
// address, flushEndpoint6, addresses that share a digest told apart by the full
// compare (collisions found under a fixed digest seed, the test hook), the index
// against a Map model, and the families kept apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ADDRESS6_WORDS, Conntrack, ConntrackCounter, EntryStatus, INSERT6_WORDS, TCP, UDP } from '../src/tables/conntrack.ts';
import { addressDigest6 } from '../src/tables/hash.ts';
import { parseIpv6 } from '../src/wire/address.ts';
import { TcpState } from '../src/tables/tcp-state.ts';

const SYN = 0x02, ACK = 0x10;

/** An address as 4 big-endian int32 words. */
function words(text: string): number[] {
  const b = parseIpv6(text);
  assert.ok(b !== null, text);
  const v = new DataView(b.buffer, b.byteOffset, 16);
  return [0, 1, 2, 3].map((k) => v.getInt32(k * 4));
}

const C = words('fd00:10:244:1::7');
const VIP = words('fd00:10:96::a');
const EP = words('fd00:10:244:2::5');
const NODE = words('fd00:c0a8:1::a'); // first word above 2^31 as uint32: stored as int32

/** insert6's tuple. */
function tuple6(oSrc: number[], oSrcPort: number, oDst: number[], oDstPort: number, rSrc: number[], rSrcPort: number, rDst: number[], rDstPort: number): Int32Array {
  return Int32Array.from([...oSrc, ...oDst, (oSrcPort << 16) | oDstPort, ...rSrc, ...rDst, (rSrcPort << 16) | rDstPort]);
}

/** Two addresses side by side, for lookup6: src at 0, dst at 4. */
function pair(src: number[], dst: number[]): Int32Array {
  return Int32Array.from([...src, ...dst]);
}

function lookup(ct: Conntrack, protocol: number, src: number[], srcPort: number, dst: number[], dstPort: number, now: number): number {
  return ct.lookup6(protocol, pair(src, dst), 0, srcPort, 4, dstPort, now);
}

function flow(ct: Conntrack, cport: number, now: number, proto = TCP, client = C, snat = client): number {
  return ct.insert6(proto, tuple6(client, cport, VIP, 80, EP, 8080, snat, cport), now);
}

/** The client address with its last word changed. */
const clientNo = (n: number): number[] => [C[0]!, C[1]!, C[2]!, n];

test('IPv6: both tuples of an entry are found by their full addresses, each with its direction', () => {
  const ct = new Conntrack({ capacity: 16, seed: 1, family: 6 });
  assert.equal(ct.family, 6);
  const e = flow(ct, 40000, 0, TCP, C, NODE);
  assert.ok(e >= 0);
  assert.equal(lookup(ct, TCP, C, 40000, VIP, 80, 1), e * 2);
  assert.equal(lookup(ct, TCP, EP, 8080, NODE, 40000, 1), e * 2 + 1);
  // The addresses may sit anywhere in the caller's array (a packet's words, a tuple).
  const a = new Int32Array(32);
  a.set(EP, 11);
  a.set(NODE, 23);
  assert.equal(ct.lookup6(TCP, a, 11, 8080, 23, 40000, 1), e * 2 + 1);
  assert.equal(lookup(ct, UDP, C, 40000, VIP, 80, 1), -1, 'protocol is part of the tuple');
  assert.equal(lookup(ct, TCP, C, 40001, VIP, 80, 1), -1);
  assert.equal(lookup(ct, TCP, VIP, 80, C, 40000, 1), -1, 'a tuple reversed is not the reply tuple');
  for (let k = 0; k < 4; k++) {
    const other = [...C];
    other[k] = other[k]! ^ 1;
    assert.equal(lookup(ct, TCP, other, 40000, VIP, 80, 1), -1, `source differing in word ${k}`);
    const otherDst = [...VIP];
    otherDst[k] = otherDst[k]! ^ 0x100;
    assert.equal(lookup(ct, TCP, C, 40000, otherDst, 80, 1), -1, `destination differing in word ${k}`);
  }
  // The addresses, as stored and as text; the ports word.
  assert.deepEqual([...ct.addresses6.subarray(ct.address6At(e * 2 + 1, 1), ct.address6At(e * 2 + 1, 1) + 4)], NODE);
  assert.deepEqual([...ct.addresses6.subarray(ct.address6At(e * 2, 0), ct.address6At(e * 2, 0) + 4)], C);
  assert.deepEqual(ct.tuple6(e * 2), { src: 'fd00:10:244:1::7', srcPort: 40000, dst: 'fd00:10:96::a', dstPort: 80 });
  assert.deepEqual(ct.tuple6(e * 2 + 1), { src: 'fd00:10:244:2::5', srcPort: 8080, dst: 'fd00:c0a8:1::a', dstPort: 40000 });
  assert.equal(ct.portsAt(e * 2) >>> 16, 40000);
  assert.equal(ct.portsAt(e * 2 + 1) & 0xffff, 40000);
  assert.equal(ADDRESS6_WORDS, 16);
  assert.equal(INSERT6_WORDS, 18);
});

test('IPv6: TCP states, timeouts and expiry work on the same records; lookup6 removes what it finds expired', () => {
  const ct = new Conntrack({ capacity: 16, seed: 1, family: 6 });
  const e = flow(ct, 1, 0);
  assert.equal(ct.update(e, 0, SYN, 0), TcpState.SYN_SENT);
  assert.equal(ct.update(e, 1, SYN | ACK, 1), TcpState.SYN_RECV);
  assert.equal(ct.update(e, 0, ACK, 2), TcpState.ESTABLISHED);
  assert.ok((ct.statusOf(e) & EntryStatus.ASSURED) !== 0);
  assert.equal(ct.expiresAt(e), 2 + 86400);
  assert.equal(lookup(ct, TCP, C, 1, VIP, 80, ct.expiresAt(e) - 1), e * 2);
  assert.equal(lookup(ct, TCP, C, 1, VIP, 80, ct.expiresAt(e)), -1);
  assert.equal(ct.size, 0);
  assert.equal(ct.counters[ConntrackCounter.EXPIRED], 1);
  // expire() sweeps IPv6 entries as it does IPv4 ones.
  for (let i = 0; i < 10; i++) ct.update(flow(ct, 100 + i, 0, UDP), 0, 0, i % 2 === 0 ? 0 : 50);
  assert.equal(ct.expire(60, 16), 5);
  for (let i = 0; i < 10; i++) assert.equal(lookup(ct, UDP, C, 100 + i, VIP, 80, 60) >= 0, i % 2 === 1, `flow ${i}`);
});

test('IPv6 full table: the oldest unassured entry is evicted, an all-assured table drops the new flow', () => {
  const ct = new Conntrack({ capacity: 8, seed: 3, family: 6 });
  for (let i = 0; i < 8; i++) ct.update(flow(ct, i, i), 0, SYN, i);
  assert.ok(flow(ct, 100, 10) >= 0);
  assert.equal(ct.counters[ConntrackCounter.EVICTED], 1);
  assert.equal(lookup(ct, TCP, C, 0, VIP, 80, 10), -1);
  assert.ok(lookup(ct, TCP, C, 1, VIP, 80, 10) >= 0);
  assert.ok(lookup(ct, TCP, C, 100, VIP, 80, 10) >= 0, 'the new flow went into the evicted entry, addresses and all');
  for (const e of ct.entries()) { ct.update(e, 0, SYN, 11); ct.update(e, 1, SYN | ACK, 11); ct.update(e, 0, ACK, 11); }
  assert.equal(flow(ct, 101, 12), -1);
  assert.equal(ct.counters[ConntrackCounter.DROPPED_FULL], 1);
});

test('IPv6: a flooding source is held to its budget per full address; a neighbour in the same /64 is not', () => {
  const ct = new Conntrack({ capacity: 1024, seed: 3, family: 6, maxUnassuredPerSource: 128 });
  const flooder = clientNo(9);
  const neighbour = clientNo(10);
  let refused = 0;
  for (let port = 1024; port < 1024 + 1000; port++) {
    const e = flow(ct, port, 1, TCP, flooder);
    if (e < 0) refused++;
    else ct.update(e, 0, SYN, 1);
  }
  assert.equal(refused, 1000 - 128);
  assert.equal(ct.counters[ConntrackCounter.SOURCE_LIMITED], 1000 - 128);
  assert.equal(ct.unassuredOf6(Int32Array.from(flooder), 0), 128);
  for (let port = 40000; port < 40200; port++) {
    const e = flow(ct, port, 2, TCP, neighbour);
    assert.ok(e >= 0, `neighbour flow ${port}`);
    ct.update(e, 0, SYN, 2);
    ct.update(e, 1, SYN | ACK, 2);
    ct.update(e, 0, ACK, 2);
  }
  assert.equal(ct.unassuredOf6(Int32Array.from(neighbour), 0), 0, 'assured entries leave the budget');
  assert.equal(ct.expire(1 + 300, 1024), 128);
  assert.equal(ct.unassuredOf6(Int32Array.from(flooder), 0), 0);
});

test('IPv6 flushEndpoint6 removes the flows whose replies come from that endpoint, by protocol and tag', () => {
  const ct = new Conntrack({ capacity: 64, seed: 1, family: 6 });
  const other = [EP[0]! ^ 0x10000, EP[1]!, EP[2]!, EP[3]!]; // another endpoint, differing in the first word only
  for (let i = 0; i < 10; i++) {
    const u = ct.insert6(UDP, tuple6(C, i, VIP, 53, EP, 53, C, i), 0);
    ct.setTag(u, i % 2);
    ct.insert6(UDP, tuple6(C, i, VIP, 54, other, 53, C, i), 0);
    ct.insert6(TCP, tuple6(C, i, VIP, 53, EP, 53, C, i), 0);
  }
  const ep = Int32Array.from([0, ...EP]);
  assert.equal(ct.flushEndpoint6(ep, 1, 53, UDP, 1), 5, 'only tag 1');
  assert.equal(ct.flushEndpoint6(ep, 1, 53, UDP), 5);
  assert.equal(ct.size, 20);
  assert.equal(ct.flushEndpoint6(ep, 1, 54, TCP), 0, 'another port');
  assert.equal(ct.flushEndpoint6(ep, 1, 53, TCP), 10);
  assert.equal(ct.size, 10);
  assert.equal(ct.counters[ConntrackCounter.FLUSHED], 20);
  for (let i = 0; i < 10; i++) assert.ok(lookup(ct, UDP, C, i, VIP, 54, 1) >= 0, 'the other endpoint\'s flows stay');
});

/** Two client addresses (same /64, the last two words differ) whose digests under `seed` are equal. */
function collidingClients(seed: number): [number[], number[]] {
  const seen = new Map<number, number>();
  const a = new Int32Array(4);
  a.set(C);
  const client = (n: number): number[] => [C[0]!, C[1]!, n >>> 9, n & 511];
  // 2^18 addresses: about 8 colliding pairs expected among 32-bit digests (birthday
  // bound). Two words vary: with three fixed, the digest is a bijection of the fourth.
  for (let n = 0; n < 1 << 18; n++) {
    a.set(client(n));
    const d = addressDigest6(seed, a, 0);
    const other = seen.get(d);
    if (other !== undefined) return [client(other), client(n)];
    seen.set(d, n);
  }
  assert.fail('no colliding pair');
}

test('IPv6 addresses that share a digest (and so a hash and a record key) are told apart by the full compare', () => {
  const digestSeed = 0x1234;
  const [x, y] = collidingClients(digestSeed);
  assert.notDeepEqual(x, y);
  assert.equal(addressDigest6(digestSeed, Int32Array.from(x), 0), addressDigest6(digestSeed, Int32Array.from(y), 0));
  const ct = new Conntrack({ capacity: 64, seed: 5, digestSeed, family: 6, maxUnassuredPerSource: 1000 });
  const ex = flow(ct, 40000, 1, TCP, x);
  assert.equal(lookup(ct, TCP, y, 40000, VIP, 80, 1), -1, 'same digest, hash, ports and protocol: not the entry');
  assert.equal(lookup(ct, TCP, EP, 8080, y, 40000, 1), -1, 'nor its reply tuple');
  const ey = flow(ct, 40000, 1, TCP, y);
  assert.ok(ey >= 0 && ey !== ex);
  assert.equal(lookup(ct, TCP, x, 40000, VIP, 80, 1), ex * 2);
  assert.equal(lookup(ct, TCP, y, 40000, VIP, 80, 1), ey * 2);
  assert.equal(lookup(ct, TCP, EP, 8080, x, 40000, 1), ex * 2 + 1);
  assert.equal(lookup(ct, TCP, EP, 8080, y, 40000, 1), ey * 2 + 1);
  // Sharing a digest means sharing a budget (it errs on refusing): both are charged to it.
  assert.equal(ct.unassuredOf6(Int32Array.from(x), 0), 2);
  ct.remove(ex);
  assert.equal(lookup(ct, TCP, y, 40000, VIP, 80, 1), ey * 2, 'backward-shift deletion keeps the colliding tuple findable');
  assert.equal(lookup(ct, TCP, x, 40000, VIP, 80, 1), -1);
  // flushEndpoint6 compares the full endpoint address too: flows replied to by x's twin stay.
  const f = new Conntrack({ capacity: 64, seed: 5, digestSeed, family: 6 });
  f.insert6(UDP, tuple6(C, 1, VIP, 53, x, 53, C, 1), 0);
  f.insert6(UDP, tuple6(C, 1, VIP, 54, y, 53, C, 1), 0);
  assert.equal(f.flushEndpoint6(Int32Array.from(x), 0, 53, UDP), 1);
  assert.ok(lookup(f, UDP, y, 53, C, 1, 0) >= 0);
  assert.equal(lookup(f, UDP, x, 53, C, 1, 0), -1);
});

test('IPv6: the digest seed is random per table, and it is the seed that makes two addresses collide', () => {
  const [x, y] = collidingClients(0x1234);
  assert.notEqual(addressDigest6(0x4321, Int32Array.from(x), 0), addressDigest6(0x4321, Int32Array.from(y), 0));
  // Two tables built without seeds disagree on an address's digest (with 2^-31 odds of not).
  const a = new Conntrack({ capacity: 16, family: 6 });
  const b = new Conntrack({ capacity: 16, family: 6 });
  const ea = flow(a, 1, 0);
  const eb = flow(b, 1, 0);
  assert.notEqual(a.words[ea * 16], b.words[eb * 16]);
});

test('IPv6: the index matches a Map model through 10,000 random inserts, lookups and removals', () => {
  // digestSeed fixed: under some seeds an insert fails before the table is full (its probe
  // window holds only established flows, none to evict), which this model does not describe.
  const ct = new Conntrack({ capacity: 128, seed: 9, digestSeed: 9, family: 6 });
  const model = new Map<string, number>();
  const byEntry = new Map<number, [string, string]>();
  let s = 0x1234567;
  const rnd = (n: number) => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return (s >>> 0) % n;
  };
  const key = (src: number[], sp: number, dst: number[], dp: number) => `${src.join(',')}:${sp}/${dst.join(',')}:${dp}`;
  let hits = 0;
  for (let step = 0; step < 10000; step++) {
    const op = rnd(10);
    // A small key space in two words of the address, so lookups hit and digests are exercised.
    const a = [C[0]!, C[1]!, rnd(4), rnd(16)];
    const p = rnd(20);
    const k0 = key(a, p, VIP, 80);
    const k1 = key(EP, 8080, a, p);
    if (op < 5) {
      if (model.has(k0) || model.has(k1)) continue;
      const e = flow(ct, p, 0, TCP, a);
      if (e < 0) {
        assert.equal(byEntry.size, 128, 'insert fails only when every entry is taken');
        continue;
      }
      ct.update(e, 0, SYN, 0);
      ct.update(e, 1, SYN | ACK, 0);
      ct.update(e, 0, ACK, 0);
      model.set(k0, e * 2);
      model.set(k1, e * 2 + 1);
      byEntry.set(e, [k0, k1]);
    } else if (op < 8) {
      const want = model.get(k0) ?? -1;
      assert.equal(lookup(ct, TCP, a, p, VIP, 80, 1), want);
      assert.equal(lookup(ct, TCP, EP, 8080, a, p, 1), model.get(k1) ?? -1);
      if (want >= 0) hits++;
    } else if (byEntry.size > 0) {
      const entries = [...byEntry.keys()];
      const e = entries[rnd(entries.length)]!;
      ct.remove(e);
      for (const k of byEntry.get(e)!) model.delete(k);
      byEntry.delete(e);
    }
    assert.equal(ct.size, byEntry.size);
  }
  assert.ok(hits > 100, `${hits} hits`);
  for (const [e, [k0]] of byEntry) {
    const t = ct.tuple6(e * 2);
    assert.equal(model.get(k0), e * 2, `${t.src} ${t.srcPort}`);
  }
});

test('the families stay apart: insert6 on an IPv4 table throws, an IPv4 table has no side array', () => {
  const v4 = new Conntrack({ capacity: 16 });
  assert.equal(v4.family, 4);
  assert.equal(v4.addresses6.length, 0);
  assert.throws(() => v4.insert6(TCP, tuple6(C, 1, VIP, 80, EP, 8080, C, 1), 0), /insert6 on an IPv4 table/);
  assert.throws(() => new Conntrack({ family: 5 as 4 }), /family must be 4 or 6/);
  const buffer = new ArrayBuffer(16 * 64);
  assert.throws(() => new Conntrack({ capacity: 16, family: 6, memory: { buffer, byteOffset: 0, restore: false } }), /IPv6 addresses at byte undefined/);
});

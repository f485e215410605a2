// ClientIP affinity table: per (service port, client), expiry, and replacement when a
// probe window is full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AffinityTable } from '../src/tables/affinity.ts';

test('an entry holds until it expires, per service port and client', () => {
  const a = new AffinityTable(64);
  a.record(1, 0x0a000001, 0x0af40205, 8080, 110, 10);
  const s = a.lookup(1, 0x0a000001, 109);
  assert.ok(s >= 0);
  assert.equal(a.endpointIP[s], 0x0af40205);
  assert.equal(a.endpointPort[s], 8080);
  assert.equal(a.lookup(1, 0x0a000001, 110), -1, 'expired');
  assert.equal(a.lookup(2, 0x0a000001, 50), -1, 'other service port');
  assert.equal(a.lookup(1, 0x0a000002, 50), -1, 'other client');
  // Refreshing keeps one slot per key.
  a.record(1, 0x0a000001, 0x0af40206, 8081, 500, 200);
  assert.equal(a.endpointPort[a.lookup(1, 0x0a000001, 300)], 8081);
  const client = 0xc0a80001 | 0;
  a.record(1, client, 1, 2, 1000, 0);
  assert.ok(a.lookup(1, client, 1) >= 0, 'addresses above 2^31 as int32');
});

test('a full table replaces the entry expiring soonest (counted), never loses the newest', () => {
  const a = new AffinityTable(16);
  for (let c = 0; c < 200; c++) {
    a.record(7, c, c, 80, 1000 + c, 0);
    assert.ok(a.lookup(7, c, 1) >= 0, `client ${c} just recorded`);
  }
  assert.ok(a.evicted > 0);
  let live = 0;
  for (let c = 0; c < 200; c++) if (a.lookup(7, c, 1) >= 0) live++;
  assert.ok(live <= 16 && live >= 8, `${live} live`);
});

// IPv6 (family 6): keyed by the full client address, same rules.
const A6 = Int32Array.from([0xfd000010 | 0, 0x02440001, 0, 7, /* another client, last word differs */ 0xfd000010 | 0, 0x02440001, 0, 8]);

test('IPv6: an entry holds until it expires, per service port and full client address', () => {
  const a = new AffinityTable(64, undefined, 6);
  assert.equal(a.family, 6);
  a.record6(1, A6, 0, 17, 8080, 110, 10);
  const s = a.lookup6(1, A6, 0, 109);
  assert.ok(s >= 0);
  assert.equal(a.endpointIP[s], 17);
  assert.equal(a.endpointPort[s], 8080);
  assert.equal(a.lookup6(1, A6, 0, 110), -1, 'expired');
  assert.equal(a.lookup6(2, A6, 0, 50), -1, 'other service port');
  assert.equal(a.lookup6(1, A6, 4, 50), -1, 'other client (last word)');
  for (let k = 0; k < 4; k++) {
    const other = A6.slice(0, 4);
    other[k] = other[k]! ^ 0x40;
    assert.equal(a.lookup6(1, other, 0, 50), -1, `other client (word ${k})`);
  }
  a.record6(1, A6, 4, 18, 8081, 500, 10);
  assert.equal(a.endpointIP[a.lookup6(1, A6, 4, 50)], 18);
  assert.equal(a.endpointIP[a.lookup6(1, A6, 0, 50)], 17, 'each client its own endpoint');
  // Refreshing keeps one slot per key.
  a.record6(1, A6, 0, 19, 8082, 500, 200);
  assert.equal(a.endpointPort[a.lookup6(1, A6, 0, 300)], 8082);
  assert.equal(a.liveEntries(300), 2);
  const endpointAbove2to31 = 0xc0000001;
  a.record6(3, A6, 0, endpointAbove2to31, 1, 1000, 0);
  assert.equal(a.endpointIP[a.lookup6(3, A6, 0, 1)], endpointAbove2to31, 'a 32-bit endpoint id comes back as stored');
});

test('IPv6: a full table replaces the entry expiring soonest (counted), never loses the newest', () => {
  const a = new AffinityTable(16, undefined, 6);
  const c = new Int32Array(4);
  c[0] = 0xfd000010 | 0;
  for (let n = 0; n < 200; n++) {
    c[3] = n;
    a.record6(7, c, 0, n, 80, 1000 + n, 0);
    assert.ok(a.lookup6(7, c, 0, 1) >= 0, `client ${n} just recorded`);
  }
  assert.ok(a.evicted > 0);
  let live = 0;
  for (let n = 0; n < 200; n++) {
    c[3] = n;
    const s = a.lookup6(7, c, 0, 1);
    if (s >= 0) {
      live++;
      assert.equal(a.endpointIP[s], n, 'a live slot answers for its own client');
    }
  }
  assert.ok(live <= 16 && live >= 8, `${live} live`);
  assert.throws(() => new AffinityTable(16, undefined, 5 as 4), /family must be 4 or 6/);
});

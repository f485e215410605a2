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

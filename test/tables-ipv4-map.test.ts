import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ipv4Map } from '../src/tables/ipv4-map.ts';

test('Ipv4Map stores and finds addresses across the whole uint32 range', () => {
  const map = new Ipv4Map(300);
  const keys = [0, 1, 0x0af40105, 0xac1e000b, 0xffffffff, 0x80000000];
  for (let i = 0; i < 250; i++) keys.push((0x0af40000 + i * 257) >>> 0);
  keys.forEach((k, i) => map.set(k, i));
  keys.forEach((k, i) => assert.equal(map.get(k), i, `key ${k.toString(16)}`));
  assert.equal(map.size, keys.length);
  assert.equal(map.get(0x0af4ffff), -1);
});

test('Ipv4Map overwrites a key, refuses to overfill, and is read-only once frozen', () => {
  const map = new Ipv4Map(2);
  map.set(7, 1);
  map.set(7, 2);
  assert.equal(map.get(7), 2);
  assert.equal(map.size, 1);
  map.set(8, 3);
  map.set(9, 4);
  assert.throws(() => { for (let k = 10; k < 20; k++) map.set(k, 0); }, RangeError);
  map.freeze();
  assert.throws(() => map.set(1, 1), /frozen/);
});

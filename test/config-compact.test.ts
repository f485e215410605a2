// src/config/compact.ts: the helpers behind the services side's memory layout.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { flat, Interner, kept, keptEntries, ListInterner, NO_ENTRIES, NO_ITEMS } from '../src/config/compact.ts';

test('flat: the same text, whatever its length and characters', () => {
  for (const s of ['', 'a', 'default/web', 'default/some-longer-service-name:http', '10.224.123.234', 'ünïcödé "quoted" \\ back\nslash', '\u{1F600} and a lone \uD800']) {
    assert.equal(flat(s), s);
  }
  const parsed = (JSON.parse('{"k":"a-value-longer-than-thirteen"}') as { k: string }).k;
  assert.equal(flat(parsed), 'a-value-longer-than-thirteen');
});

test('kept: exact, frozen copies; one shared empty list; frozen lists shared as they are', () => {
  const grown: number[] = [];
  for (let i = 0; i < 3; i++) grown.push(i);
  const k = kept(grown);
  assert.deepEqual(k, [0, 1, 2]);
  assert.notEqual(k, grown);
  assert.ok(Object.isFrozen(k));
  assert.equal(kept(k), k, 'a kept list is not copied again');
  assert.equal(kept([]), NO_ITEMS);
  assert.equal(kept([] as string[]), kept([] as number[]));
  assert.throws(() => (NO_ITEMS as unknown[]).push(1), TypeError);
  assert.equal(keptEntries({}), NO_ENTRIES);
  const labels = { app: 'web' };
  assert.equal(keptEntries(labels), labels);
  assert.throws(() => { (NO_ENTRIES as Record<string, string>).x = 'y'; }, TypeError);
});

test('Interner: the first value per key is shared; past its bound values pass through', () => {
  const names = new Interner<string[]>(2);
  const a = names.get('a', ['a']);
  assert.equal(names.get('a', ['a']), a);
  const b = names.get('b', ['b']);
  assert.equal(names.get('b', ['b']), b);
  const c = ['c'];
  assert.equal(names.get('c', c), c, 'full: kept as it came');
  assert.notEqual(names.get('c', ['c']), c, 'and not remembered');
});

test('ListInterner: one frozen copy per list content; the empty list is NO_ITEMS', () => {
  const ports = new ListInterner<{ name: string; port: number }>(8);
  const a = ports.keep([{ name: 'http', port: 80 }]);
  assert.equal(ports.keep([{ name: 'http', port: 80 }]), a);
  assert.ok(Object.isFrozen(a) && Object.isFrozen(a[0]));
  assert.notEqual(ports.keep([{ name: 'http', port: 8080 }]), a);
  assert.equal(ports.keep([]), NO_ITEMS);
});


import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Netns, vethPair, run } from './helpers/netns.ts';

test('two namespaces joined by a veth pair ping each other, and teardown removes them', () => {
  const a = new Netns('h');
  const b = new Netns('h');
  try {
    const [ifA, ifB] = vethPair(a, b);
    a.exec('ip', ['addr', 'add', '10.250.0.1/30', 'dev', ifA]);
    b.exec('ip', ['addr', 'add', '10.250.0.2/30', 'dev', ifB]);
    const out = a.exec('ping', ['-c', '1', '-W', '2', '10.250.0.2']);
    assert.match(out, /1 received/);
  } finally {
    a.destroy();
    b.destroy();
  }
  const left = run('ip', ['netns', 'list']);
  assert.ok(!left.includes(a.name) && !left.includes(b.name), `namespaces left behind: ${left}`);
});

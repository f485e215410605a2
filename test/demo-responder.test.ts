// The foundation end to end: a TAP owned by this process, moved into a namespace, and a
// userspace ARP + ICMP responder built on src/wire make the kernel's ping succeed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { run } from './helpers/netns.ts';

const TAPIR = fileURLToPath(new URL('../bin/tapir', import.meta.url));

test('tapir demo: ping in a namespace is answered by the userspace responder over a TAP', () => {
  const before = run('ip', ['netns', 'list']);
  const r = spawnSync(TAPIR, ['demo', '--count', '3'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /3 packets transmitted, 3 received/);
  const counts = /responder: (\d+) ARP replies, (\d+) echo replies/.exec(r.stdout);
  assert.ok(counts, r.stdout);
  assert.ok(Number(counts[1]) >= 1, 'the kernel resolved 10.250.0.2 through our ARP reply');
  assert.equal(Number(counts[2]), 3);
  const ns = /namespace (tpdemo-[0-9a-f]+)/.exec(r.stdout)![1]!;
  assert.ok(before.includes(ns) === false && !run('ip', ['netns', 'list']).includes(ns), `${ns} was not removed`);
});

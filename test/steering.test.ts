import { test } from 'node:test';
import assert from 'node:assert/strict';
import { portBlocks, steeringBatch } from '../src/agent/steering.ts';
import { ipv4 } from '../src/wire/index.ts';

test('portBlocks covers a range exactly with aligned blocks', () => {
  for (const [lo, hi] of [[30000, 32767], [1, 1], [0, 65535], [80, 443], [30080, 30080]] as const) {
    const covered = new Set<number>();
    for (const b of portBlocks(lo, hi)) {
      const size = (~b.mask & 0xffff) + 1;
      assert.equal(b.value & ~b.mask & 0xffff, 0, 'block start is aligned to its size');
      for (let p = b.value; p < b.value + size; p++) covered.add(p);
    }
    assert.equal(covered.size, hi - lo + 1);
    assert.equal(Math.min(...covered), lo);
    assert.equal(Math.max(...covered), hi);
  }
});

test('steering rules: health checks pass first, node ports and service IPs go to the TUN', () => {
  const lines = steeringBatch('eth0', 'tapir0', {
    nodeIP: ipv4('172.30.0.11'), nodePortRange: { min: 30000, max: 30001 }, healthCheckPorts: [30001], serviceIPs: [ipv4('172.30.0.200'), ipv4('172.30.0.150')],
  });
  assert.deepEqual(lines, [
    'filter add dev eth0 ingress prio 10 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 6 0xff match ip dport 30001 0xffff classid :1',
    'filter add dev eth0 ingress prio 20 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 6 0xff match ip dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 20 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 17 0xff match ip dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 30 protocol ip u32 match ip dst 172.30.0.150/32 action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 30 protocol ip u32 match ip dst 172.30.0.200/32 action mirred egress redirect dev tapir0',
  ]);
});

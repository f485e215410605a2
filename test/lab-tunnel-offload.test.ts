// The kernel's UDP tunnel segmentation when the node's firewall drops what the agent
// forwards through it (src/agent/tunnel-egress.ts, ForwardingCheck): a FORWARD rule in
// node-1's namespace (this test's own lab) drops every datagram from tapir-egress, as a
// FORWARD policy of drop would. The agent sees the kernel forward none of its first
// super-frames, turns the offload off and says so, and bulk TCP across nodes goes on
// over the software path. The working case is test/agent-lab.test.ts.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { test } from 'node:test';
import { ForwardingCheck } from '../src/agent/tunnel-egress.ts';
import { Lab, tapir } from './helpers/lab.ts';
import { run } from './helpers/netns.ts';

test('ForwardingCheck: waits for 4 super-frames (a flow whose first ones are dropped sends few more), then working if the kernel forwarded as many, broken under half', () => {
  let sent = 100, forwarded = 5000;
  const check = new ForwardingCheck(() => sent, () => forwarded);
  assert.equal(check.verdict().state, 'waiting');
  sent += 3;
  assert.equal(check.verdict().state, 'waiting', '3 are not enough to judge');
  sent += 1;
  assert.deepEqual(check.verdict(), { state: 'broken', sent: 4, forwarded: 0 });
  forwarded += 2;
  assert.equal(check.verdict().state, 'waiting', '2 of 4: not clear either way');
  forwarded += 2;
  assert.deepEqual(check.verdict(), { state: 'working', sent: 4, forwarded: 4 });
  forwarded += 100;
  assert.equal(check.verdict().state, 'working', 'other forwarded traffic counts too');
});

const [major, minor] = release().split('.').map(Number) as [number, number];
const offloadKernel = major > 6 || (major === 6 && minor >= 17);

test('a FORWARD filter that drops the super-frames: the agent turns the offload off and iperf3 across nodes goes on', { skip: offloadKernel ? false : `kernel ${release()} has no UDP tunnel offload for TAPs`, timeout: 300_000 }, () => {
  const lab = new Lab('tof');
  try {
    lab.up('--dataplane', 'tapir');
    lab.exec('node-1', 'nft', 'add table ip tapir_test_fwd; add chain ip tapir_test_fwd forward_check { type filter hook forward priority 0; policy accept; }; add rule ip tapir_test_fwd forward_check iifname "tapir-egress" counter drop');
    const server = lab.run('web-2b', 'iperf3', '-s', '-D', '-p', '5214');
    assert.equal(server.status, 0, server.stderr);
    const received: number[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const r = lab.run('web-1a', 'iperf3', '-c', lab.ips['web-2b']!, '-p', '5214', '-t', '2', '-J');
      if (r.status === 0) received.push((JSON.parse(r.stdout) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes);
      else run('sleep', ['1']);
    }
    const log = readFileSync(`/run/tapir/lab/${lab.name}/nodes/node-1/agent.log`, 'utf8');
    assert.match(log, /tunnel offload: off: the kernel forwarded and sent \d+ packets while \d+ super-frames went to tapir-egress/);
    const stats = JSON.parse(tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']).stdout) as { tunnelOffload: { on: boolean; sent: number } };
    assert.equal(stats.tunnelOffload.on, false);
    const dropped = lab.exec('node-1', 'nft', 'list', 'chain', 'ip', 'tapir_test_fwd', 'forward_check');
    assert.match(dropped, /counter packets [1-9]\d* bytes \d+ drop/, 'the rule did drop super-frames');
    assert.ok(received.some((b) => b > 10_000_000), `a transfer after the switch moved data: ${JSON.stringify(received)}`);
  } finally {
    const r = lab.down();
    assert.equal(r.status, 0, r.stderr);
  }
});

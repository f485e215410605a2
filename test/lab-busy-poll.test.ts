// Agent settings from a lab topology (`agent:`), two of them in one lab:
// - busy polling (busyPollMicros): requests from a pod to the pod on the other node and
//   to the web Service's cluster IP all succeed, and the agents' metrics show busy polls
//   that picked up traffic (tapir_busy_poll_callbacks_total: reads that did not wait for
//   a wakeup). bench/lab.ts --busy-poll measures what it buys and costs;
// - the software path for TSO frames to other nodes (tunnelOffload: false, as on a kernel
//   before 6.17): an iperf3 transfer across nodes is cut into segments by the sender and
//   coalesced into TSO frames by the receiver, with no super-frame either way.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_TOPOLOGY_YAML } from '../src/lab/default-topology.ts';
import { Lab, tapir } from './helpers/lab.ts';

/** The default topology's web Service: port 80 to the pods' 8080. */
const WEB_CLUSTER_IP = '10.96.0.100';

function counter(metrics: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics);
  assert.ok(m !== null, `${name} in the agent's metrics`);
  return Number(m[1]);
}

test('busy-polling agents segmenting in software: pod to pod across nodes and through a cluster IP, busy polls picking up the answers, iperf3 across nodes', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-bp-'));
  const lab = new Lab('bp');
  try {
    writeFileSync(join(dir, 'topology.yaml'), `agent: { busyPollMicros: 300, tunnelOffload: false }\n${DEFAULT_TOPOLOGY_YAML}`);
    lab.up(join(dir, 'topology.yaml'));
    for (let i = 0; i < 20; i++) {
      assert.equal(lab.httpEcho('web-1a', lab.ips['web-2a']!).pod, 'web-2a');
      const viaService = JSON.parse(lab.exec('web-1a', 'curl', '-sS', '--max-time', '5', `http://${WEB_CLUSTER_IP}/hello`)) as { pod: string };
      assert.match(viaService.pod, /^web-[12][ab]$/);
    }
    const byNode = ['node-1', 'node-2'].map((node) => {
      const metrics = lab.exec(node, 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10249/metrics');
      return { node, polls: counter(metrics, 'tapir_busy_polls_total'), callbacks: counter(metrics, 'tapir_busy_poll_callbacks_total') };
    });
    for (const n of byNode) assert.ok(n.polls > 0, `${n.node} busy-polled: ${JSON.stringify(byNode)}`);
    assert.ok(byNode.some((n) => n.callbacks > 0), `a busy poll picked up traffic: ${JSON.stringify(byNode)}`);

    const received = lab.iperf3('web-1a', 'web-2b', 5213);
    assert.ok(received > 10_000_000, `received ${received} bytes`);
    const stats = (node: string): { coalescedSegments: number; tunnelOffload: { on: boolean; sent: number; received: number } } => {
      const r = tapir(['stats', '--lab', lab.name, '--node', node, '--json']);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as ReturnType<typeof stats>;
    };
    const [sender, receiver] = [stats('node-1'), stats('node-2')];
    assert.deepEqual([sender.tunnelOffload, receiver.tunnelOffload], [{ on: false, sent: 0, received: 0 }, { on: false, sent: 0, received: 0 }]);
    assert.ok(receiver.coalescedSegments > 0, 'node-2 coalesced the segments node-1 cut into TSO frames for the pod');
  } finally {
    const r = lab.down();
    rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
  }
});

// Faults a lab must ride out the way a cluster does: the node daemon is the kubelet
// (restarts a dead agent, with back-off) and the load balancer's speaker (an address
// leaves a node whose data plane is down), and neither dies of a long `lab apply`.
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { Lab, TAPIR } from './helpers/lab.ts';
import { FLOW_PROBE, STREAM_UP, type FlowProbeResult } from './helpers/flow-probe.ts';

interface NodeStatus {
  name: string;
  agent: { pid: number | null; running: boolean; answers: boolean; restarts: number };
  daemon: { pid: number | null; running: boolean; announced: string[] };
}

describe('lab faults: agent restarts, health-following announcements, a held manifest lock', () => {
  const lab = new Lab('tlf');
  // Manifest mode: one case holds the manifest directory's lock.
  before(() => { lab.up('--source', 'manifests'); });
  after(() => { lab.down(); });

  const node = (name: string): NodeStatus => (lab.status().nodes as NodeStatus[]).find((n) => n.name === name)!;

  /** Polls `check` every 200 ms for up to `ms`; returns its last value. */
  async function eventually<T>(ms: number, check: () => T, done: (value: T) => boolean): Promise<T> {
    const deadline = Date.now() + ms;
    let value = check();
    while (!done(value) && Date.now() < deadline) {
      await sleep(200);
      value = check();
    }
    return value;
  }

  /**
   * Runs the flow probe in `pod` against `url` for `seconds`, in the background:
   * `started` settles once its keep-alive connection has had its first answer, `result`
   * when it is done.
   */
  function probe(pod: string, url: string, seconds: number): { started: Promise<void>; result: Promise<FlowProbeResult> } {
    let up: () => void = () => undefined;
    const started = new Promise<void>((resolve) => { up = resolve; });
    const result = new Promise<FlowProbeResult>((resolve, reject) => {
      const child = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, pod, '--', 'timeout', String(seconds + 30), 'python3', '-c', FLOW_PROBE, url, String(seconds)]);
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes(STREAM_UP)) up();
      });
      child.on('close', (code) => {
        up();
        if (code !== 0) reject(new Error(`flow probe in ${pod} exited ${code}: ${err}${out}`));
        else resolve(JSON.parse(out) as FlowProbeResult);
      });
    });
    return { started, result };
  }

  it('kill -9 of an agent: restarted at once, its pods\' Service connections and requests carry on', async () => {
    const before = node('node-1');
    assert.ok(before.agent.answers);
    const web = (lab.status().services as { name: string; clusterIP: string }[]).find((s) => s.name === 'web')!;
    // web-1b (node-1) talks to the web Service throughout, and a client outside the
    // cluster to node-1's node port; node-1's agent dies in the middle.
    const nodeIP = (lab.status().nodes as { name: string; underlayIP: string }[]).find((n) => n.name === 'node-1')!.underlayIP;
    const running = probe('web-1b', `http://${web.clusterIP}/`, 8);
    const outside = probe('client', `http://${nodeIP}:30080/`, 8);
    // Kill only once both keep-alive connections are established and answered, so
    // node-1's agent tracks them (on a loaded machine the probes take a while to start;
    // a connection first tried while the agent is down tests nothing this case names),
    // and a moment later, so the new-connection loops are under way too.
    await Promise.all([running.started, outside.started]);
    await sleep(500);
    process.kill(before.agent.pid!, 'SIGKILL');
    const result = await running.result;
    const viaNodePort = await outside.result;
    const after = await eventually(15_000, () => node('node-1'), (n) => n.agent.answers && n.agent.restarts >= 1);
    assert.ok(after.agent.answers, 'the agent answers again');
    assert.equal(after.agent.restarts, 1);
    assert.notEqual(after.agent.pid, before.agent.pid);
    // Conntrack outlived the agent: the established connection went on, on its endpoint.
    assert.equal(result.stream.error, null, `the keep-alive connection through the cluster IP survived (${JSON.stringify(result.stream)})`);
    assert.equal(result.stream.pods.length, 1, `the connection stayed on one endpoint: ${result.stream.pods.join(', ')}`);
    assert.ok(result.stream.requests > 50, `requests went on after the restart (${result.stream.requests})`);
    assert.equal(result.loop.failed, 0, `no request failed: ${result.loop.errors.join('; ')}`);
    assert.ok(result.loop.ok > 20);
    // The same through the node port, whose flows are node-1's (steered in, NATed there).
    // (A reset here was once the node's stack answering a steered packet the restarting
    // agent read before its flows were back: the agent's log goes into the message.)
    const agentLog = (): string => readFileSync((lab.status().nodes as { name: string; agent: { log: string } }[]).find((n) => n.name === 'node-1')!.agent.log, 'utf8').split('\n').slice(-40).join('\n');
    assert.equal(viaNodePort.stream.error, null, `the keep-alive connection through the node port survived (${JSON.stringify(viaNodePort.stream)}); node-1's agent log ends:\n${viaNodePort.stream.error === null ? '' : agentLog()}`);
    assert.equal(viaNodePort.stream.pods.length, 1);
    assert.equal(viaNodePort.loop.failed, 0, `no request through the node port failed: ${viaNodePort.loop.errors.join('; ')}`);
    // The restarted agent re-attached the pods' TAPs: across nodes and on the node.
    lab.exec('web-1a', 'ping', '-c', '1', '-W', '3', lab.ips['web-2a']!);
    lab.exec('web-1a', 'ping', '-c', '1', '-W', '3', lab.ips['web-1b']!);
    const log = readFileSync((lab.status().nodes as { name: string; agent: { log: string } }[]).find((n) => n.name === 'node-1')!.agent.log, 'utf8');
    assert.match(log, /flows: took over [1-9]\d* conntrack entr/);
  });

  it('a second death within the back-off: status admits the dead agent until the delayed restart', async () => {
    const before = node('node-1');
    process.kill(before.agent.pid!, 'SIGKILL');
    const down = await eventually(3000, () => lab.status(), (s) => s.healthy === false);
    assert.equal(down.healthy, false, 'lab status admits the dead agent');
    const after = await eventually(15_000, () => node('node-1'), (n) => n.agent.answers && n.agent.restarts >= 2);
    assert.equal(after.agent.restarts, 2);
    assert.equal((await eventually(5000, () => lab.status(), (s) => s.healthy === true)).healthy, true);
  });

  it('a hung agent (SIGSTOP) loses its node\'s load-balancer addresses to a healthy node, and gets them back', async () => {
    const lbIP = (lab.status().services as { name: string; loadBalancerIPs?: string[]; externalIPs?: string[] }[])
      .find((s) => s.name === 'web-lb')?.loadBalancerIPs?.[0];
    assert.ok(lbIP !== undefined, 'web-lb has a load-balancer address');
    const announcer = (name: string): boolean => node(name).daemon.announced.includes(lbIP);
    assert.ok(announcer('node-1'), 'node-1, first in order, announces it');
    const { pid, restarts } = node('node-1').agent;
    process.kill(pid!, 'SIGSTOP');
    try {
      const moved = await eventually(8000, () => [announcer('node-1'), announcer('node-2')], ([one, two]) => one === false && two === true);
      assert.deepEqual(moved, [false, true], 'node-2 announces while node-1\'s agent does not answer');
      assert.equal(node('node-1').agent.restarts, restarts, 'a hung agent is not restarted: it still runs');
    } finally {
      process.kill(pid!, 'SIGCONT');
    }
    const back = await eventually(8000, () => [announcer('node-1'), announcer('node-2')], ([one, two]) => one === true && two === false);
    assert.deepEqual(back, [true, false], 'node-1 announces again once its agent answers');
  });

  it('a manifest lock held for 7 s (a long lab apply) costs the node daemons nothing; readiness is written after', async () => {
    const status = lab.status();
    const lock = join(status.stateDir as string, 'manifests.lock');
    const daemons = (status.nodes as NodeStatus[]).map((n) => n.daemon.pid!);
    const pod = (status.pods as { name: string; pid: number; ready: boolean }[]).find((p) => p.name === 'web-2b')!;
    assert.ok(pod.ready);
    // Hold the lock as a `lab apply` would (its file holds the owner's live PID).
    const fd = openSync(lock, 'wx');
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    try {
      process.kill(pod.pid, 'SIGKILL'); // the pod's workload dies: the prober's verdict turns
      await sleep(7000);
      for (const pid of daemons) assert.doesNotThrow(() => process.kill(pid, 0), `node daemon ${pid} still runs`);
    } finally {
      rmSync(lock, { force: true });
    }
    const ready = await eventually(10_000, () => (lab.status().pods as { name: string; ready: boolean }[]).find((p) => p.name === 'web-2b')!.ready, (r) => !r);
    assert.equal(ready, false, 'the NotReady verdict reaches the Pod once the lock is free');
  });
});

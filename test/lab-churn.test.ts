// A short run of bench/churn-soak.ts's churn (issue 8): Services created and deleted,
// ports added and removed, the tested Service's endpoints moving every 100 ms, one pod
// created and deleted, while a pod loops HTTP requests through the ClusterIP and the
// external client through the NodePort of both nodes. Every endpoint stays alive
// throughout, so no request may fail; afterwards the agents hold the fds they held
// before, and the lab the same TAPs, TUNs and namespaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, TAPIR } from './helpers/lab.ts';
import { Churn, churnPodManifest, HTTP_CLIENT, parseClient, sampleLab, SOAK_NODE_PORT, type ClientReport } from './helpers/churn.ts';

const CHURN_SECONDS = 25;
const RATE = 50;

function tapirAsync(args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(TAPIR, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function describe(name: string, r: ClientReport): string {
  return `${name}: ${r.ok} ok, ${r.failed} failed: ${r.failures.slice(0, 5).map(([, url, e]) => `${url} ${e}`).join('; ')}`;
}

test('churn every 100 ms: no request to a live endpoint fails, no fd, TAP or namespace leaks', async () => {
  const lab = new Lab('lch');
  const tmp = mkdtempSync(join(tmpdir(), 'lab-churn-'));
  try {
    // The churn writes the manifest directory directly (Churn in helpers/churn.ts).
    lab.up('--source', 'manifests');
    const churn = new Churn({ stateDir: `/run/tapir/lab/${lab.name}`, endpointPods: ['web-1a', 'web-2a', 'web-2b'], seed: 1 });
    await churn.setup();
    const nodePorts = ['172.30.0.11', '172.30.0.12'].map((ip) => `http://${ip}:${SOAK_NODE_PORT}/`);
    let ready = false;
    for (let i = 0; i < 30 && !ready; i++) {
      const a = await tapirAsync(['lab', 'exec', '--name', lab.name, 'web-1b', '--', 'curl', '-sf', '--max-time', '2', `http://${churn.clusterIP}/`], 10_000);
      const b = await tapirAsync(['lab', 'exec', '--name', lab.name, 'client', '--', 'curl', '-sf', '--max-time', '2', nodePorts[1]!], 10_000);
      ready = a.status === 0 && b.status === 0;
      if (!ready) await sleep(500);
    }
    assert.ok(ready, `service soak (${churn.clusterIP}, node port ${SOAK_NODE_PORT}) never answered`);
    const before = await sampleLab(lab.name);

    const limit = String(CHURN_SECONDS + 30);
    const client = (from: string, urls: string): Promise<{ stdout: string; stderr: string }> =>
      tapirAsync(['lab', 'exec', '--name', lab.name, from, '--', 'timeout', '--foreground', '-s', 'INT', limit, 'python3', '-c', HTTP_CLIENT, urls, String(CHURN_SECONDS), String(RATE)], (CHURN_SECONDS + 40) * 1000);
    const clients = Promise.all([client('web-1b', `http://${churn.clusterIP}/`), client('client', nodePorts.join(','))]);

    // One pod joins the Service and leaves it again (terminating, then gone) meanwhile.
    const podFile = join(tmp, 'soak-pod-0.yaml');
    writeFileSync(podFile, churnPodManifest('soak-pod-0', 'node-2'));
    // Its outcome is checked after the churn (an assertion in here would go unhandled).
    const podChurn = (async (): Promise<string[]> => {
      const applied = await tapirAsync(['lab', 'apply', '--name', lab.name, '-f', podFile], 60_000);
      await sleep(CHURN_SECONDS * 400);
      const deleted = await tapirAsync(['lab', 'delete', '--name', lab.name, '-f', podFile], 60_000);
      return [applied, deleted].filter((r) => r.status !== 0).map((r) => r.stderr);
    })();

    const end = performance.now() + CHURN_SECONDS * 1000;
    while (performance.now() < end) {
      const s = performance.now();
      await churn.step();
      await sleep(Math.max(0, 100 - (performance.now() - s)));
    }
    await churn.finish();
    assert.deepEqual(await podChurn, [], 'lab apply and delete of pod soak-pod-0');
    const [podOut, extOut] = await clients;
    const pod = parseClient(podOut.stdout);
    const ext = parseClient(extOut.stdout);

    assert.ok(pod.finished && ext.finished, `the clients did not run to their end: ${podOut.stderr} ${extOut.stderr}`);
    assert.ok(pod.ok > 0 && ext.ok > 0, `${describe('ClusterIP', pod)} / ${describe('NodePort', ext)}`);
    assert.equal(pod.failed, 0, describe('ClusterIP from web-1b', pod));
    assert.equal(ext.failed, 0, describe('NodePort from the client', ext));
    const c = churn.counts;
    assert.ok(c.endpointsIn > 0 && c.endpointsOut > 0 && c.servicesCreated > 0 && c.servicesDeleted > 0 && c.portsAdded > 0 && c.portsRemoved > 0, JSON.stringify(c));
    // Requests went to more than one endpoint: the endpoints really moved.
    assert.ok(Object.keys(pod.servedBy).length >= 2, JSON.stringify(pod.servedBy));

    const after = await sampleLab(lab.name);
    for (let i = 0; i < before.nodes.length; i++) {
      const [b, a] = [before.nodes[i]!, after.nodes[i]!];
      assert.equal(a.pid, b.pid, `${b.node}: the agent was restarted`);
      assert.equal(a.restarts, b.restarts, `${b.node}: agent restarts`);
      // No leak: the count may not grow. It may drop by an API connection the server closed idle meanwhile.
      assert.ok(a.fds <= b.fds, `${b.node}: the agent's open fds grew from ${b.fds} to ${a.fds}`);
    }
    assert.deepEqual({ taps: after.taps, tuns: after.tuns, netns: after.netns }, { taps: before.taps, tuns: before.tuns, netns: before.netns });
  } finally {
    lab.down();
    rmSync(tmp, { recursive: true, force: true });
  }
  assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
});

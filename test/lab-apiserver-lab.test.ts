// `tapir lab up` runs the lab API server: in the underlay namespace (reachable from every
// node), on a loopback port of the host for kubectl (`tapir lab kubeconfig`), with the
// lab's Nodes and Namespaces and the `kubernetes` Service; `lab down` stops it and
// removes its state.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { KUBECTL } from './helpers/apiserver.ts';
import { Lab, tapir } from './helpers/lab.ts';

const lab = new Lab('lta');
const home = mkdtempSync(join(tmpdir(), 'tapir-lab-kubectl-'));
before(() => { lab.up('--dataplane', 'kernel'); });
after(() => {
  lab.down();
  rmSync(home, { recursive: true, force: true });
});

function kubectl(...args: string[]): string {
  return execFileSync(KUBECTL, args, { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
}

test('kubectl on the host works against the lab; the nodes reach the API server on the underlay', () => {
  const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
  assert.equal(config.status, 0, config.stderr);
  assert.match(config.stdout, /server: https:\/\/127\.0\.0\.1:\d+/);
  writeFileSync(join(home, 'config'), config.stdout);
  const status = lab.status();
  const nodes = kubectl('get', 'nodes', '-o', 'wide');
  for (const node of status.nodes as { name: string; underlayIP: string }[]) {
    assert.match(nodes, new RegExp(`^${node.name}\\s+NotReady\\s+<none>\\s+\\S+\\s+\\S*\\s*${node.underlayIP.replaceAll('.', '\\.')}\\s`, 'm'));
  }
  const podCIDRs = JSON.parse(kubectl('get', 'nodes', '-o', 'json')) as { items: { metadata: { name: string }; spec: { podCIDR: string } }[] };
  assert.deepEqual(podCIDRs.items.map((n) => `${n.metadata.name} ${n.spec.podCIDR}`).sort(), (status.nodes as { name: string; podCIDR: string }[]).map((n) => `${n.name} ${n.podCIDR}`).sort());
  assert.match(kubectl('get', 'svc', 'kubernetes'), /^kubernetes\s+ClusterIP\s+10\.96\.0\.1\s/m);
  assert.match(kubectl('get', 'clusterrole', 'tapir'), /^tapir\s/m);

  // From a node's namespace, on the lab address (anonymous /version; the CA is the lab's).
  const slices = JSON.parse(kubectl('get', 'endpointslice', 'kubernetes', '-o', 'json')) as { endpoints: { addresses: string[] }[]; ports: { port: number }[] };
  const address = `${slices.endpoints[0]!.addresses[0]}:${slices.ports[0]!.port}`;
  const node = (status.nodes as { name: string }[])[0]!.name;
  const version = JSON.parse(lab.exec(node, 'curl', '-sS', '--max-time', '5', '--cacert', `/run/tapir/lab/${lab.name}/apiserver/tls/ca.crt`, `https://${address}/version`)) as { gitVersion: string };
  assert.equal(version.gitVersion, 'v1.34.0-tapir-lab');
});

test('lab down stops the API server and removes its state', () => {
  const saved = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/state.json`, 'utf8')) as { apiServer?: { pid: number } };
  const pid = saved.apiServer?.pid;
  assert.equal(typeof pid, 'number');
  const down = lab.down();
  assert.equal(down.status, 0, down.stderr);
  const left = lab.leftovers();
  assert.deepEqual(left, { netns: [], pids: [], dir: false });
  // Gone, or a zombie waiting for a reaper (lab up, its parent, exited long ago).
  let state = 'gone';
  try { state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0]!; } catch { /* gone */ }
  assert.ok(state === 'gone' || state === 'Z', `the API server (pid ${pid}) is still running: state ${state}`);
});

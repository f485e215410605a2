// The Vagrant testbed's host-side parts (vagrant/, scripts/vagrant-*.{sh,ts}): what can be
// checked without VMs. The testbed itself runs in scripts/vagrant-check.sh, which takes
// minutes and is not part of the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { conflistPlugin } from '../src/lab/network/tapir-dataplane.ts';

const ROOT = join(import.meta.dirname, '..');
const CLUSTER = join(ROOT, 'scripts/vagrant-cluster.ts');
const SCRIPTS = ['scripts/vagrant-check.sh', 'vagrant/prepare.sh', 'vagrant/build-box.sh'].map((f) => join(ROOT, f));

function run(cmd: string, args: string[]): { code: number; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

test('vagrant-cluster.ts prepare: the addressing and credentials every VM agrees on, kept on a second run', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-vagrant-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cluster = join(dir, 'cluster');
  const first = run(process.execPath, [CLUSTER, 'prepare', '--dir', cluster, '--nodes', '3', '--subnet', '10.123.45']);
  assert.equal(first.code, 0, first.out);
  const json = JSON.parse(readFileSync(join(cluster, 'cluster.json'), 'utf8')) as { nodes: { name: string; address: string; podCIDR: string }[]; apiServer: { server: string } };
  assert.deepEqual(json.nodes.map((n) => [n.name, n.address, n.podCIDR]), [
    ['node1', '10.123.45.11', '10.244.1.0/24'], ['node2', '10.123.45.12', '10.244.2.0/24'], ['node3', '10.123.45.13', '10.244.3.0/24'],
  ]);
  assert.equal(json.apiServer.server, 'https://10.123.45.11:6443');
  const kubeconfig = parseYaml(readFileSync(join(cluster, 'admin.kubeconfig'), 'utf8')) as { clusters: { cluster: { server: string; 'certificate-authority-data': string } }[]; users: { user: { token: string } }[] };
  assert.equal(kubeconfig.clusters[0]!.cluster.server, 'https://10.123.45.11:6443');
  assert.equal(Buffer.from(kubeconfig.clusters[0]!.cluster['certificate-authority-data'], 'base64').toString(), readFileSync(join(cluster, 'tls/ca.crt'), 'utf8'));
  const tokens = readFileSync(join(cluster, 'tokens.csv'), 'utf8');
  const admin = readFileSync(join(cluster, 'admin.token'), 'utf8');
  const agent = readFileSync(join(cluster, 'agent.token'), 'utf8');
  assert.equal(kubeconfig.users[0]!.user.token, admin);
  assert.match(tokens, new RegExp(`^${admin},kubernetes-admin,uid-1,"system:masters"$`, 'm'));
  assert.match(tokens, new RegExp(`^${agent},system:serviceaccount:kube-system:tapir,uid-2$`, 'm'));

  // A second run keeps the credentials (VMs already up keep working)...
  const again = run(process.execPath, [CLUSTER, 'prepare', '--dir', cluster, '--nodes', '3', '--subnet', '10.123.45']);
  assert.equal(again.code, 0, again.out);
  assert.equal(readFileSync(join(cluster, 'admin.token'), 'utf8'), admin);
  assert.equal(readFileSync(join(cluster, 'tokens.csv'), 'utf8'), tokens);
  // ...and refuses to turn the stage into another testbed.
  const other = run(process.execPath, [CLUSTER, 'prepare', '--dir', cluster, '--nodes', '2', '--subnet', '10.123.45']);
  assert.equal(other.code, 1);
  assert.match(other.out, /cluster\.json describes another testbed \(3 nodes on 10\.123\.45\.0\/24\)/);
  const bad = run(process.execPath, [CLUSTER, 'prepare', '--dir', join(dir, 'x'), '--subnet', '10.123']);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /--subnet 10\.123: expected the first three octets of a \/24/);
});

test("the lab's runtime passes the installed conflist's plugin, as a CNI runtime does", (t) => {
  assert.deepEqual(conflistPlugin(join(ROOT, 'deploy/cni/10-tapir.conflist')), {
    cniVersion: '1.0.0', name: 'tapir', type: 'tapir-cni', controlSocket: '/run/tapir/agent.sock',
    ipam: { type: 'tapir-ipam', dataDir: '/var/lib/cni/networks' },
  });
  const dir = mkdtempSync(join(tmpdir(), 'tapir-vagrant-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const two = join(dir, 'two.conflist');
  writeFileSync(two, JSON.stringify({ cniVersion: '1.0.0', name: 'x', plugins: [{ type: 'tapir-cni' }, { type: 'portmap' }] }));
  assert.throws(() => conflistPlugin(two), (err: Error) => err.message.includes(`${two}: the lab's runtime takes a conflist with name, cniVersion and exactly one plugin`));
  const broken = join(dir, 'broken.conflist');
  writeFileSync(broken, '{"cniVersion":');
  assert.throws(() => conflistPlugin(broken), (err: Error) => err.message.startsWith(`${broken}: `));
});

test('the scripts parse (bash -n) and pass shellcheck; the Vagrantfile parses (ruby -c)', (t) => {
  for (const script of SCRIPTS) {
    const r = run('bash', ['-n', script]);
    assert.equal(r.code, 0, `${script}: ${r.out}`);
  }
  if (has('shellcheck')) {
    const r = run('shellcheck', SCRIPTS);
    assert.equal(r.code, 0, r.out);
  } else {
    t.diagnostic('shellcheck is not installed: skipped');
  }
  if (has('ruby')) {
    const r = run('ruby', ['-c', join(ROOT, 'vagrant/Vagrantfile')]);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /Syntax OK/);
  } else {
    t.diagnostic('ruby is not installed: skipped');
  }
});

// The lab API server as the lab runs it: a detached process inside a network namespace
// (created here, its address on the namespace's loopback device), reachable there by in-cluster
// clients and on 127.0.0.1 of the host by kubectl through the socket handed down to it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { agentCredentials, startControlPlane, type ControlPlane } from '../src/lab/apiserver/control-plane.ts';
import { KUBECTL, RBAC_YAML } from './helpers/apiserver.ts';
import { TAPIR } from './helpers/lab.ts';
import { Netns } from './helpers/netns.ts';

const ADDRESS = '192.0.2.10';
const ns = new Netns('apis');
const dir = mkdtempSync(join(tmpdir(), 'tapir-apiserver-ns-'));
let cp: ControlPlane | undefined;
after(() => {
  if (cp !== undefined) try { process.kill(cp.pid, 'SIGKILL'); } catch { /* gone */ }
  ns.destroy();
  rmSync(dir, { recursive: true, force: true });
});

function kubectl(kubeconfig: string, args: string[], netns?: string): string {
  const argv = netns === undefined ? [KUBECTL, ...args] : ['ip', 'netns', 'exec', netns, KUBECTL, ...args];
  return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: kubeconfig, HOME: dir } });
}

test('started in a namespace: agents reach it there, kubectl on the host through 127.0.0.1', async () => {
  ns.exec('ip', ['addr', 'add', `${ADDRESS}/32`, 'dev', 'lo']);
  cp = await startControlPlane({ dir: join(dir, 'apiserver'), netns: ns.name, address: ADDRESS, serviceCIDR: '10.96.0.0/16', nodePortRange: { min: 30000, max: 32767 }, tapirBin: TAPIR, rbacFile: RBAC_YAML });
  assert.match(cp.hostServer, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(cp.labServer, `https://${ADDRESS}:6443`);

  // kubectl on the host: the kubernetes Service points at the server's lab address.
  assert.match(kubectl(cp.hostKubeconfig, ['get', 'svc', 'kubernetes']), /^kubernetes\s+ClusterIP\s+10\.96\.0\.1\s+<none>\s+443\/TCP/m);
  assert.match(kubectl(cp.hostKubeconfig, ['get', 'endpointslices', 'kubernetes']), new RegExp(`^kubernetes\\s+IPv4\\s+6443\\s+${ADDRESS.replaceAll('.', '\\.')}\\s`, 'm'));
  // kubectl inside the namespace, on the lab address (the certificate names it).
  assert.match(kubectl(cp.labKubeconfig, ['get', 'clusterrole', 'tapir'], ns.name), /^tapir\s/m);

  // An agent's in-cluster credentials: allowed what the ClusterRole grants, no more.
  const env = agentCredentials(cp, join(dir, 'node-a'), 'node-a');
  assert.deepEqual(env, { KUBERNETES_SERVICE_HOST: ADDRESS, KUBERNETES_SERVICE_PORT: '6443', NODE_NAME: 'node-a' });
  const sa = join(dir, 'node-a/var/run/secrets/kubernetes.io/serviceaccount');
  const curl = (path: string): string => ns.exec('curl', ['-sS', '--cacert', `${sa}/ca.crt`, '-H', `Authorization: Bearer ${readFileSync(`${sa}/token`, 'utf8')}`, `https://${env.KUBERNETES_SERVICE_HOST}:${env.KUBERNETES_SERVICE_PORT}${path}`]);
  const slices = JSON.parse(curl('/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes')) as { items: { endpoints: { addresses: string[] }[] }[] };
  assert.deepEqual(slices.items.map((s) => s.endpoints[0]!.addresses[0]), [ADDRESS]);
  const denied = JSON.parse(curl('/api/v1/secrets')) as { code: number; message: string };
  assert.equal(denied.code, 403);
  assert.equal(denied.message, 'secrets is forbidden: User "system:serviceaccount:kube-system:tapir" cannot list resource "secrets" in API group "" at the cluster scope');
});

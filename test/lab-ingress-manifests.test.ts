// The Ingress controller in the lab's manifest mode (`tapir lab up --source manifests
// --ingress`): the controller Pods read the manifest directory that `tapir lab apply`
// writes; no API server holds the objects, so no status is written: `tapir lab status`
// and `tapir ingress status` show the controller Service's address for the Ingresses of
// class tapir. Real curl from the lab's client through the LoadBalancer address.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

const lab = new Lab('ting');
let lbIP = '';

function request(host: string, path: string): { code: number; pod: string } {
  const r = lab.run('client', 'curl', '-sS', '--max-time', '5', '-w', '\n%{http_code}', '-H', `Host: ${host}`, `http://${lbIP}${path}`);
  assert.equal(r.status, 0, r.stderr);
  const nl = r.stdout.lastIndexOf('\n');
  let pod = '';
  try { pod = (JSON.parse(r.stdout.slice(0, nl)) as { pod: string }).pod; } catch { /* not the echo */ }
  return { code: Number(r.stdout.slice(nl + 1)), pod };
}

before(() => {
  lab.up('--source', 'manifests', '--ingress');
  const svc = (lab.status().services as { namespace: string; name: string; loadBalancerIPs: string[] }[]).find((s) => s.namespace === 'ingress-tapir' && s.name === 'ingress-tapir-controller');
  lbIP = svc!.loadBalancerIPs[0]!;
});
after(() => {
  const r = lab.down();
  assert.equal(r.status, 0, r.stderr);
});

test('manifest mode: the demo Ingress serves; an Ingress applied with tapir lab apply is routed; lab status and tapir ingress status show the address', async () => {
  const demo = request('web.example.test', '/');
  assert.equal(demo.code, 200);
  assert.match(demo.pod, /^web-[12][ab]$/);
  const applied = spawnSync(TAPIR, ['lab', 'apply', '--name', lab.name, '-f', '-'], { encoding: 'utf8', timeout: 60_000, input: `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: api, namespace: default}
spec:
  rules:
    - host: api.example.test
      http: {paths: [{path: /v1, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
` });
  assert.equal(applied.status, 0, applied.stderr);
  const start = performance.now();
  while (request('api.example.test', '/v1/x').code !== 200) {
    assert.ok(performance.now() - start < 20_000, 'the applied Ingress is routed within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(request('api.example.test', '/v2').code, 404);
  const status = tapir(['lab', 'status', '--name', lab.name]).stdout;
  assert.match(status, new RegExp(`default/api\\s+-\\s+api\\.example\\.test\\s+${lbIP.replace(/\./g, '\\.')}`));
  const controller = lab.exec('ingress-tapir/controller-node-2', 'bin/tapir', 'ingress', 'status');
  assert.match(controller, /^default\/api\s+yes\s+/m);
  assert.match(controller, new RegExp(`^address: ${lbIP.replace(/\./g, '\\.')} \\(Service ingress-tapir/ingress-tapir-controller\\)`, 'm'));
});

// The kernel dataplane's dual-stack plan (no namespaces needed): every pod's IPv6
// address decided up front like its IPv4 one (podCIDRv6 ::2 + j), a pod added later
// takes the first free one, and the lines that give a pod its IPv6 address and route.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseManifest } from '../src/k8s/manifest.ts';
import type { PodObject } from '../src/k8s/objects.ts';
import { podInterfaceLines6 } from '../src/lab/network/kernel-dataplane.ts';
import { planPod } from '../src/lab/network/pods.ts';
import { planLab } from '../src/lab/plan.ts';
import { defaultTopology, parseTopology } from '../src/lab/topology.ts';

function podObject(name: string): PodObject {
  const parsed = parseManifest(`apiVersion: v1\nkind: Pod\nmetadata: { name: ${name} }\nspec:\n  containers: [{ name: echo, ports: [{ containerPort: 8080 }] }]\n`, 'pod.yaml');
  assert.deepEqual(parsed.problems, []);
  return parsed.objects[0] as PodObject;
}

test('kernel dual-stack plan: every pod podCIDRv6 ::2 + j beside its IPv4 .2 + j', () => {
  const state = planLab(defaultTopology(), 'unit', 'kernel', undefined, 'dual');
  assert.equal(state.ipFamily, 'dual');
  assert.equal(state.proxyMode, 'iptables');
  assert.deepEqual(state.pods.map((p) => [p.name, p.ip, p.ip6, p.hostDevice]), [
    ['web-1a', '10.244.1.2', 'fd00:10:244:1::2', 'veth0'],
    ['web-1b', '10.244.1.3', 'fd00:10:244:1::3', 'veth1'],
    ['web-2a', '10.244.2.2', 'fd00:10:244:2::2', 'veth0'],
    ['web-2b', '10.244.2.3', 'fd00:10:244:2::3', 'veth1'],
  ]);
  assert.deepEqual(podInterfaceLines6(state.nodes[1]!, state.pods[3]!), [
    'addr add fd00:10:244:2::3/64 dev eth0 nodad',
    'route add ::/0 via fd00:10:244:2::1 dev eth0',
  ]);
  // An IPv4 lab: no IPv6 field at all, and no IPv6 lines.
  const v4 = planLab(defaultTopology(), 'unit', 'kernel');
  assert.ok(v4.pods.every((p) => !('ip6' in p)));
  assert.deepEqual(podInterfaceLines6(v4.nodes[0]!, v4.pods[0]!), []);
});

test('kernel dual-stack: a pod added later takes the first IPv6 address no pod of its node holds', () => {
  const state = planLab(defaultTopology(), 'unit', 'kernel', undefined, 'dual');
  const node = state.nodes[0]!;
  const added = planPod(state, node, podObject('extra'), state.pods);
  assert.deepEqual([added.ip, added.ip6, added.hostDevice], ['10.244.1.4', 'fd00:10:244:1::4', 'veth2']);
  // web-1a gone: its addresses are free again, the lowest first.
  const refill = planPod(state, node, podObject('refill'), state.pods.filter((p) => p.name !== 'web-1a'));
  assert.deepEqual([refill.ip, refill.ip6], ['10.244.1.2', 'fd00:10:244:1::2']);
});

test('kernel dual-stack: a full /120 podCIDRv6 is reported with the node and the pod', () => {
  const yaml = 'ipFamily: dual\nnodes:\n  - name: a\n    podCIDRv6: "fd00:10:244:7::/120"\n    pods: []\n';
  const state = planLab(parseTopology(yaml, 'inline'), 'unit', 'kernel');
  const node = state.nodes[0]!;
  // 254 pods hold ::2 .. ::ff (::0 and ::1 are vxlan0's and the gateway's): the range is full (their IPv4
  // addresses lie elsewhere, so that IPv4 has room and the IPv6 range is what runs out).
  const others = Array.from({ length: 254 }, (_, i) => ({ ...planPod(state, node, podObject(`p${i}`), []), ip: `10.244.${i}.9`, ip6: `fd00:10:244:7::${(i + 2).toString(16)}`, hostDevice: `veth${i}` }));
  assert.throws(() => planPod(state, node, podObject('late'), others), /node a: podCIDRv6 fd00:10:244:7::\/120 has no free address for pod default\/late/);
});

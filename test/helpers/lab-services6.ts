// IPv6 Services on the kernel proxy modes (kube-proxy's IPv6 proxier: ip6tables or
// `table ip6 kube-proxy`), end to end in a dual-stack lab: a dual-stack NodePort Service
// over the demo pods (two on each node), reached over IPv6 with curl -6 and a UDP client
// from pods on both nodes, its node port on a node's IPv6 address from the lab's client
// namespace, and the installed rules looked at. Every packet stays inside the lab's
// namespaces (the lab makes and removes them).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Lab, tapir, type HttpEcho } from './lab.ts';

const NODE_PORT = 30680;

const MANIFEST = `apiVersion: v1
kind: Service
metadata: { name: web6 }
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: { app: web }
  ports:
    - { name: http, port: 80, targetPort: 8080, nodePort: ${NODE_PORT} }
    - { name: udp, port: 9000, protocol: UDP, targetPort: udp-echo }
`;

interface LabState6 {
  nodes: { name: string; underlayIP6?: string }[];
  pods: { name: string; node: string; ip6?: string | null }[];
  client: { name: string; ip6?: string } | null;
}

export function services6Suite(prefix: string, mode: 'iptables' | 'nftables'): void {
  const lab = new Lab(prefix);
  let state: LabState6;
  let clusterIP6 = '';
  const dir = mkdtempSync(join(tmpdir(), `tapir-${prefix}-`));
  const ip6 = (pod: string): string => state.pods.find((p) => p.name === pod)!.ip6!;
  const nodeOf = (pod: string): string => state.pods.find((p) => p.name === pod)!.node;
  const curl6 = (from: string, url: string): HttpEcho => JSON.parse(lab.exec(from, 'curl', '-6', '-sS', '-g', '--max-time', '5', url)) as HttpEcho;
  const host = (address: string): string => address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '');

  before(async () => {
    lab.up('--dataplane', 'kernel', '--proxy-mode', mode, '--ip-family', 'dual');
    state = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/state.json`, 'utf8')) as LabState6;
    writeFileSync(join(dir, 'web6.yaml'), MANIFEST);
    const applied = tapir(['lab', 'apply', '--name', lab.name, '-f', join(dir, 'web6.yaml')]);
    assert.equal(applied.status, 0, applied.stderr);
    const services = lab.status().services as { name: string; clusterIPs?: string[] }[];
    clusterIP6 = services.find((s) => s.name === 'web6')?.clusterIPs?.[0] ?? '';
    assert.match(clusterIP6, /^fd00:10:96::/, 'web6 has an IPv6 cluster IP first');
    // The node daemons program the IPv6 rules once the IPv6 EndpointSlice is there: wait for an answer (bounded).
    for (const deadline = Date.now() + 60_000; ;) {
      const r = lab.run('web-1a', 'curl', '-6', '-sS', '-g', '--max-time', '2', `http://[${clusterIP6}]/`);
      if (r.status === 0) break;
      if (Date.now() > deadline) assert.fail(`http://[${clusterIP6}]/ from web-1a did not answer within 60 s: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
    const down = lab.down();
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  });

  test(`${mode}: curl -6 to the IPv6 cluster IP reaches endpoints on the same and the other node, with the pod's own source address`, () => {
    for (const client of ['web-1a', 'web-2b']) {
      const nodes = new Set<string>();
      // Random balancing over four endpoints, two per node: 40 tries miss a node with probability 2^-40.
      for (let i = 0; i < 40 && nodes.size < 2; i++) {
        const echo = curl6(client, `http://[${clusterIP6}]/v6`);
        assert.equal(nodeOf(echo.pod), echo.node);
        nodes.add(echo.node);
        // From a pod (inside the cluster CIDR): DNAT only, no masquerade; a pod that reached
        // itself (hairpin) is masqueraded to its node's gateway address.
        const gateway6 = `${ip6(client).slice(0, ip6(client).lastIndexOf(':'))}:1`;
        assert.equal(host(echo.client), echo.pod === client ? gateway6 : ip6(client), `${client} -> ${echo.pod}: the source the endpoint sees`);
        assert.equal(host(echo.server), ip6(echo.pod));
      }
      assert.deepEqual([...nodes].sort(), ['node-1', 'node-2'], `${client} reached endpoints on both nodes`);
    }
  });

  test(`${mode}: a UDP client reaches the IPv6 cluster IP from pods on both nodes`, () => {
    for (const client of ['web-1b', 'web-2a']) {
      const payload = `v6-${client}`;
      const out = lab.exec(client, 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${clusterIP6}/9000; printf %s '${payload}' >&3; head -c ${payload.length} <&3`);
      assert.equal(out, payload);
    }
  });

  test(`${mode}: the node port on each node's IPv6 address answers the lab's client, masqueraded`, () => {
    assert.ok(state.client?.ip6 !== undefined, 'the client has an IPv6 address');
    for (const node of state.nodes) {
      const echo = curl6(state.client!.name, `http://[${node.underlayIP6!}]:${NODE_PORT}/np6`);
      assert.match(echo.pod, /^web-/);
      // externalTrafficPolicy Cluster: the node masquerades, the endpoint never sees the client.
      assert.notEqual(host(echo.client), state.client!.ip6);
      assert.match(host(echo.client), /^fd00:10:244:/);
    }
  });

  test(`${mode}: the node namespaces hold the IPv6 rules (${mode === 'iptables' ? 'ip6tables' : 'table ip6 kube-proxy'})`, () => {
    if (mode === 'iptables') {
      const saved = lab.exec('node-2', 'ip6tables-save', '-t', 'nat');
      assert.match(saved, new RegExp(`-A KUBE-SERVICES -d ${clusterIP6}/128 -p tcp -m comment --comment "default/web6:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-`));
      assert.match(saved, new RegExp(`-A KUBE-SERVICES -d ${state.nodes[1]!.underlayIP6!}/128 .* -j KUBE-NODEPORTS`));
      assert.match(saved, /-j DNAT --to-destination \[fd00:10:244:1::2\]:8080/);
    } else {
      const listed = lab.exec('node-2', 'nft', 'list', 'table', 'ip6', 'kube-proxy');
      assert.match(listed, new RegExp(`${clusterIP6} \\. tcp \\. 80 : goto service-\\w+-default/web6/tcp/http`));
      assert.match(listed, /dnat to \[fd00:10:244:1::2\]:8080/);
    }
    const status = JSON.parse(readFileSync(`/run/tapir/lab/${lab.name}/nodes/node-1/daemon-status.json`, 'utf8')) as { proxy6?: { mode: string; ruleLines: number } };
    assert.equal(status.proxy6?.mode, mode);
    assert.ok((status.proxy6?.ruleLines ?? 0) > 0);
  });
}

// IPv6 Services end to end on the real agents (NAT66): a dual-stack lab's demo Services
// of each ipFamilyPolicy, reached over IPv6 with curl, a UDP client and iperf3: the
// cluster IP from pods on both nodes (client address kept) and from the node itself
// (masqueraded to its IPv6 gateway), a node port on every node's IPv6 underlay address
// from the client namespace under both external traffic policies, a reset for a Service
// without endpoints, and both families of one dual-stack Service side by side.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KUBECTL } from './helpers/apiserver.ts';
import { FLOW_PROBE, type FlowProbeResult } from './helpers/flow-probe.ts';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

interface PodStatus { name: string; ip: string; ips?: string[]; node: string }
interface NodeStatus { name: string; underlayIP6?: string; gateway6?: string }
interface ServiceStatus { name: string; clusterIPs?: string[]; ipFamilies?: string[]; loadBalancerIPs?: string[] }
interface HttpEcho { pod: string; node: string; client: string }

test('dual-stack lab: IPv6 Services through NAT66 (cluster IP, node port, policies, UDP, iperf3)', { timeout: 300_000 }, async (t) => {
  const lab = new Lab('s6');
  const home = mkdtempSync(join(tmpdir(), 'tapir-s6-kubectl-'));
  try {
    lab.up('--ip-family', 'dual');
    const status = lab.status();
    const pods = status.pods as PodStatus[];
    const nodes = status.nodes as NodeStatus[];
    const services = status.services as ServiceStatus[];
    const v6 = Object.fromEntries(pods.map((p) => [p.name, (p.ips ?? []).find((a) => a.includes(':'))!]));
    const podOf = new Map(pods.map((p) => [v6[p.name]!, p]));
    const svc = (name: string): ServiceStatus => {
      const s = services.find((x) => x.name === name);
      assert.ok(s, `service ${name} in lab status: ${services.map((x) => x.name).join(', ')}`);
      return s;
    };
    const six = (s: ServiceStatus): string => s.clusterIPs!.find((a) => a.includes(':'))!;
    const curl6 = (from: string, url: string): HttpEcho => JSON.parse(lab.exec(from, 'curl', '-sS', '-g', '--max-time', '5', url)) as HttpEcho;
    const node1 = nodes.find((n) => n.name === 'node-1')!;
    const node2 = nodes.find((n) => n.name === 'node-2')!;

    await t.test('the demo Services of each family policy got their addresses', () => {
      assert.deepEqual(svc('web-dual').ipFamilies, ['IPv4', 'IPv6']);
      assert.equal(svc('web-dual').clusterIPs?.length, 2);
      assert.deepEqual(svc('web-v6').ipFamilies, ['IPv6']);
      assert.match(six(svc('web-v6')), /^fd00:10:96::/);
      assert.deepEqual(svc('web-dual-nodeport').ipFamilies, ['IPv6', 'IPv4']);
      assert.deepEqual(svc('web').ipFamilies, ['IPv4'], 'the topology\'s own Services stay single-stack IPv4');
    });

    await t.test('IPv6 cluster IP from pods on both nodes: every endpoint reached, the client address kept', () => {
      const vip = six(svc('web-v6'));
      for (const from of ['web-1a', 'web-2b']) {
        const seen = new Set<string>();
        // Random balancing over four endpoints: 80 tries miss one with probability 4·(3/4)^80 < 1e-9
        // (24 missed one in a CI run).
        for (let i = 0; i < 80 && seen.size < 4; i++) {
          const r = curl6(from, `http://[${vip}]/v6`);
          seen.add(r.pod);
          // A pod reaching itself is masqueraded to its node's IPv6 gateway (hairpin); any other keeps its address.
          const node = nodes.find((n) => n.name === pods.find((p) => p.name === from)!.node)!;
          const expected = r.pod === from ? node.gateway6! : v6[from]!;
          assert.ok(r.client.startsWith(`${expected}:`) || r.client.startsWith(`[${expected}]:`), `${from} to ${r.pod}: client ${r.client}, expected ${expected}`);
        }
        assert.deepEqual([...seen].sort(), ['web-1a', 'web-1b', 'web-2a', 'web-2b'], `from ${from}`);
      }
    });

    await t.test('a dual-stack Service answers on both cluster IPs', () => {
      const [ip4, ip6] = [svc('web-dual').clusterIPs!.find((a) => !a.includes(':'))!, six(svc('web-dual'))];
      assert.match(curl6('web-1b', `http://${ip4}/`).pod, /^web-/);
      assert.match(curl6('web-1b', `http://[${ip6}]/`).pod, /^web-/);
    });

    await t.test('the node itself reaches the IPv6 cluster IP, masqueraded to its IPv6 gateway', () => {
      const r = curl6('node-1', `http://[${six(svc('web-v6'))}]/host`);
      assert.match(r.pod, /^web-/);
      assert.ok(r.client.includes(node1.gateway6!), `from the node's IPv6 gateway: ${r.client}`);
    });

    await t.test('UDP over the IPv6 cluster IP (echo)', () => {
      const vip = six(svc('echo-udp-v6'));
      assert.equal(lab.exec('web-2a', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${vip}/9000; printf nat66 >&3; head -c 5 <&3`), 'nat66');
    });

    await t.test('node port on each node\'s IPv6 address from the client namespace (externalTrafficPolicy Cluster)', () => {
      for (const n of [node1, node2]) {
        assert.ok(n.underlayIP6, `${n.name} has an IPv6 underlay address`);
        const r = curl6('client', `http://[${n.underlayIP6}]:30086/np`);
        assert.match(r.pod, /^web-/);
        // Cluster policy: the endpoint sees the node that took the flow in.
        assert.ok(r.client.includes(n.gateway6!), `masqueraded to ${n.name}'s IPv6 gateway: ${r.client}`);
      }
      // The node's own processes reach its IPv6 node port too (policy routing into the TUN, as IPv4's).
      const self = curl6('node-2', `http://[${node2.underlayIP6}]:30086/self`);
      assert.match(self.pod, /^web-/);
      // The IPv4 half of the RequireDualStack Service on the same node port.
      const v4 = JSON.parse(lab.exec('client', 'curl', '-sS', '--max-time', '5', `http://${(status.nodes as { underlayIP: string }[])[0]!.underlayIP}:30086/`)) as HttpEcho;
      assert.match(v4.pod, /^web-/);
    });

    await t.test('a dual-stack LoadBalancer Service gets an address per family; the client reaches both', async () => {
      let ips: string[] = [];
      for (let i = 0; i < 50 && ips.length < 2; i++) {
        ips = ((lab.status().services as ServiceStatus[]).find((s) => s.name === 'web-dual-lb')?.loadBalancerIPs) ?? [];
        if (ips.length < 2) await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const v6lb = ips.find((a) => a.includes(':'));
      assert.ok(v6lb !== undefined && ips.some((a) => !a.includes(':')), `an address of each family: ${JSON.stringify(ips)}`);
      assert.match(v6lb, /^fd00:172:30::/, 'from the lab\'s IPv6 pool, on the underlay');
      // The announcing node holds it as a /128; the client reaches it like the IPv4 one.
      let last = '';
      for (let i = 0; i < 50; i++) {
        const r = lab.run('client', 'curl', '-sS', '-g', '--max-time', '2', `http://[${v6lb}]/lb`);
        if (r.status === 0) {
          assert.match((JSON.parse(r.stdout) as HttpEcho).pod, /^web-/);
          const v4 = JSON.parse(lab.exec('client', 'curl', '-sS', '--max-time', '5', `http://${ips.find((a) => !a.includes(':'))}/lb`)) as HttpEcho;
          assert.match(v4.pod, /^web-/);
          return;
        }
        last = r.stderr;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.fail(`the IPv6 load-balancer address never answered: ${last}`);
    });

    const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
    assert.equal(config.status, 0, config.stderr);
    writeFileSync(join(home, 'config'), config.stdout);
    const kubectl = (args: string[], input?: string): string => execFileSync(KUBECTL, args, { input, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });

    await t.test('externalTrafficPolicy Local over IPv6: the client address kept, this node\'s endpoints only', async () => {
      kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: { name: web-v6-local, namespace: default }\nspec:\n  type: NodePort\n  ipFamilies: [IPv6]\n  externalTrafficPolicy: Local\n  selector: { app: web }\n  ports: [{ name: http, port: 80, targetPort: http, nodePort: 30087 }]\n');
      const client6 = (status.client as { ip6?: string }).ip6!;
      let last = '';
      for (let i = 0; i < 50; i++) {
        const r = lab.run('client', 'curl', '-sS', '-g', '--max-time', '2', `http://[${node2.underlayIP6}]:30087/local`);
        if (r.status === 0) {
          const e = JSON.parse(r.stdout) as HttpEcho;
          assert.ok(e.pod === 'web-2a' || e.pod === 'web-2b', `a node-2 endpoint: ${e.pod}`);
          assert.ok(e.client.includes(client6), `the client's own address: ${e.client}`);
          return;
        }
        last = r.stderr;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.fail(`node port 30087 over IPv6 never answered: ${last}`);
    });

    await t.test('an IPv6 Service with no endpoints answers with a reset (connection refused)', async () => {
      kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: { name: nobody-v6, namespace: default }\nspec:\n  ipFamilies: [IPv6]\n  selector: { app: nobody }\n  ports: [{ port: 80 }]\n');
      const vip = JSON.parse(kubectl(['get', 'svc', 'nobody-v6', '-o', 'json'])).spec.clusterIP as string;
      let last = '';
      for (let i = 0; i < 50; i++) {
        const r = lab.run('web-1a', 'curl', '-sS', '-g', '--max-time', '2', `http://[${vip}]/`);
        last = r.stderr;
        if (/Connection refused|Couldn't connect/.test(last)) return;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.fail(`expected a reset from ${vip}: ${last}`);
    });

    await t.test('iperf3 over an IPv6 cluster IP to a pod on the other node', async () => {
      kubectl(['apply', '-f', '-'], `apiVersion: v1\nkind: Service\nmetadata: { name: perf-v6, namespace: default }\nspec:\n  ipFamilies: [IPv6]\n  ports: [{ name: perf, port: 5201, targetPort: 5201 }]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: perf-v6-1\n  namespace: default\n  labels: { kubernetes.io/service-name: perf-v6 }\naddressType: IPv6\nports: [{ name: perf, port: 5201, protocol: TCP }]\nendpoints: [{ addresses: ["${v6['web-2b']}"], nodeName: node-2, conditions: { ready: true } }]\n`);
      const vip = JSON.parse(kubectl(['get', 'svc', 'perf-v6', '-o', 'json'])).spec.clusterIP as string;
      const server = lab.run('web-2b', 'iperf3', '-s', '-1', '-D', '-p', '5201');
      assert.equal(server.status, 0, server.stderr);
      let out = '';
      for (let i = 0; i < 30; i++) {
        const r = lab.run('web-1a', 'iperf3', '-6', '-c', vip, '-p', '5201', '-t', '1', '-J');
        if (r.status === 0) { out = r.stdout; break; }
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      assert.ok(out !== '', 'iperf3 through the IPv6 cluster IP ran');
      const bytes = (JSON.parse(out) as { end: { sum_received: { bytes: number } } }).end.sum_received.bytes;
      assert.ok(bytes > 1_000_000, `${bytes} bytes through NAT66`);
    });

    await t.test('the agents counted IPv6 service flows in their NAT66 conntrack', () => {
      const stats = tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']);
      assert.equal(stats.status, 0, stats.stderr);
      const answer = JSON.parse(stats.stdout) as { conntrack6?: { counters: Record<string, number> } | null };
      assert.ok((answer.conntrack6?.counters.inserted ?? 0) > 0, `IPv6 flows inserted: ${JSON.stringify(answer.conntrack6)}`);
      assert.equal(podOf.size, 4);
    });

    await t.test('kill -9 of an agent: IPv6 Service connections carry on, its IPv6 flows taken over from the flow store', async () => {
      const vip = six(svc('web-v6'));
      const probe = (pod: string, url: string, seconds: number): Promise<FlowProbeResult> => new Promise((resolve, reject) => {
        const child = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, pod, '--', 'timeout', String(seconds + 30), 'python3', '-c', FLOW_PROBE, url, String(seconds)]);
        let out = '';
        child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
        child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out) as FlowProbeResult) : reject(new Error(`flow probe exited ${code}: ${out}`))));
      });
      const agentOf = (): { pid: number | null; answers: boolean; restarts: number; log: string } => (lab.status().nodes as { name: string; agent: { pid: number | null; answers: boolean; restarts: number; log: string } }[]).find((n) => n.name === 'node-1')!.agent;
      const before = agentOf();
      const running = probe('web-1b', `http://[${vip}]/`, 8);
      // Kill once node-1's agent tracks the probe's IPv6 flows.
      for (let i = 0; i < 50; i++) {
        const r = tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']);
        if (r.status === 0 && ((JSON.parse(r.stdout) as { conntrack6?: { entries: number } | null }).conntrack6?.entries ?? 0) >= 2) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      process.kill(before.pid!, 'SIGKILL');
      const result = await running;
      let after = agentOf();
      for (let i = 0; i < 75 && !(after.answers && after.restarts > before.restarts); i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        after = agentOf();
      }
      assert.ok(after.answers && after.pid !== before.pid, 'the agent was restarted');
      assert.equal(result.stream.error, null, `the keep-alive connection through the IPv6 cluster IP survived (${JSON.stringify(result.stream)})`);
      assert.equal(result.stream.pods.length, 1, `it stayed on one endpoint: ${result.stream.pods.join(', ')}`);
      assert.equal(result.loop.failed, 0, `no new connection failed: ${result.loop.errors.join('; ')}`);
      assert.match(readFileSync(after.log, 'utf8'), /flows: took over [1-9]\d* IPv6 conntrack entr/);
    });
  } finally {
    rmSync(home, { recursive: true, force: true });
    lab.down();
  }
});

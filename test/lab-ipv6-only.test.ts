// An IPv6-only lab end to end (`tapir lab up --ip-family ipv6`, kind's `ipFamily: ipv6`),
// on both dataplanes (the kernel one's IPv6 proxier and `tapir dns` as the baseline):
// pods with one IPv6 address and no IPv4 one, the default topology's Services in the IPv6
// service range (web at fd00:10:96::64, kube-dns at fd00:10:96::a), names resolved by the
// node's agent over IPv6 (AAAA, UDP answered in the data path, TCP through the node's
// stack), curl to a Service by name, pod to pod across nodes with the client address
// kept, a node port and a load-balancer address on the nodes' IPv6 underlay from the
// client namespace, UDP echo through a Service, and `lab status`'s family fields.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab } from './helpers/lab.ts';

interface PodStatus { name: string; node: string; ip: string | null; ips: string[]; resolvConf: string[]; env: Record<string, string> }
interface NodeStatus { name: string; underlayIP: string; underlayIP6?: string; gateway6?: string; podCIDRv6?: string }
interface ServiceStatus { name: string; namespace: string; clusterIP: string; clusterIPs: string[]; ipFamilies: string[]; loadBalancerIPs: string[]; externalIPs: string[]; endpoints: { ip: string; ready: boolean }[] }
interface HttpEcho { pod: string; node: string; client: string }

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

for (const dataplane of ['tapir', 'kernel'] as const) {
test(`IPv6-only lab (${dataplane} dataplane): IPv6 pods, Services and cluster DNS; by-name curl and dig, pod to pod, node port, load balancer, UDP`, { timeout: 300_000 }, async (t) => {
  const lab = new Lab('v6o');
  try {
    const up = lab.up('--ip-family', 'ipv6', '--dataplane', dataplane);
    assert.match(up.stderr + up.stdout, /services fd00:10:96::\/112 \(IPv6-only\)/);
    const status = lab.status();
    const pods = status.pods as PodStatus[];
    const nodes = status.nodes as NodeStatus[];
    const services = status.services as ServiceStatus[];
    const svc = (name: string, namespace = 'default'): ServiceStatus => {
      const s = services.find((x) => x.name === name && x.namespace === namespace);
      assert.ok(s, `service ${namespace}/${name} in lab status: ${services.map((x) => x.name).join(', ')}`);
      return s;
    };
    const addressOf = Object.fromEntries(pods.map((p) => [p.name, p.ips[0]!]));
    const curl = (from: string, url: string): HttpEcho => JSON.parse(lab.exec(from, 'curl', '-sS', '-g', '--max-time', '5', url)) as HttpEcho;
    // Masquerade: the agent uses the node's IPv6 gateway (podCIDRv6 ::1); the kernel the address of the
    // interface the packet leaves by (cni0's gateway, or vxlan0's ::0): an address of the node's range either way.
    const masqueradedBy = (n: NodeStatus, client: string): boolean =>
      dataplane === 'tapir' ? client.startsWith(`${n.gateway6}:`) : client.startsWith(n.podCIDRv6!.replace(/::\/64$/, ':'));
    const node1 = nodes.find((n) => n.name === 'node-1')!;
    const node2 = nodes.find((n) => n.name === 'node-2')!;

    await t.test('lab status: ipFamily ipv6, each pod one IPv6 address and no IPv4 one, every Service IPv6', () => {
      assert.equal(status.ipFamily, 'ipv6');
      assert.equal(pods.length, 4);
      for (const p of pods) {
        assert.equal(p.ip, null, `${p.name} has no IPv4 address`);
        assert.equal(p.ips.length, 1, `${p.name}: ${JSON.stringify(p.ips)}`);
        assert.match(p.ips[0]!, /^fd00:10:244:[12]::/);
        assert.equal(p.env.POD_IP, p.ips[0], 'POD_IP is the primary (IPv6) address');
      }
      for (const s of services) {
        assert.deepEqual(s.ipFamilies, ['IPv6'], `${s.namespace}/${s.name}`);
        assert.equal(s.clusterIPs.length, 1);
        assert.match(s.clusterIP, /^fd00:10:96::/, `${s.namespace}/${s.name}`);
      }
      assert.equal(svc('web').clusterIP, 'fd00:10:96::64', 'the topology\'s 10.96.0.100 moved to the IPv6 range\'s ::100 (0x64)');
      assert.equal(svc('kube-dns', 'kube-system').clusterIP, 'fd00:10:96::a');
      assert.deepEqual(svc('web-ext').externalIPs, ['fd00:172:30::96']);
      assert.deepEqual(svc('kube-dns', 'kube-system').endpoints.map((e) => e.ip).sort(), [node1.underlayIP6, node2.underlayIP6].sort(), 'kube-dns: the nodes\' IPv6 addresses');
      assert.ok(svc('web').endpoints.every((e) => e.ip.includes(':')) && svc('web').endpoints.length === 4, 'IPv6 EndpointSlices');
    });

    await t.test('inside a pod: only IPv6 on eth0, the IPv6 default route, resolv.conf naming the IPv6 cluster DNS address', () => {
      assert.equal(lab.exec('web-1a', 'ip', '-4', '-o', 'addr', 'show', 'dev', 'eth0').trim(), '', 'no IPv4 address');
      assert.match(lab.exec('web-1a', 'ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'global'), new RegExp(`inet6 ${addressOf['web-1a']}/64`));
      assert.equal(lab.exec('web-1a', 'ip', '-4', 'route', 'show').trim(), '', 'no IPv4 route');
      assert.match(lab.exec('web-1a', 'ip', '-6', 'route', 'show', 'default'), /default via fd00:10:244:1::1 dev eth0/);
      const resolv = pods.find((p) => p.name === 'web-1a')!.resolvConf;
      assert.ok(resolv.includes('nameserver fd00:10:96::a'), resolv.join(' | '));
      assert.match(lab.exec('web-1a', 'cat', '/etc/resolv.conf'), /^nameserver fd00:10:96::a$/m);
    });

    await t.test('dig AAAA by name from pods on both nodes (UDP and TCP), no A record, and the IPv6 PTR', () => {
      for (const from of ['web-1a', 'web-2b']) {
        assert.equal(lab.exec(from, 'dig', '+short', '+time=2', '+tries=2', 'AAAA', 'web.default.svc.cluster.local').trim(), 'fd00:10:96::64', `UDP from ${from}`);
        assert.equal(lab.exec(from, 'dig', '+short', '+tcp', '+time=2', '+tries=2', 'AAAA', 'web.default.svc.cluster.local').trim(), 'fd00:10:96::64', `TCP from ${from}`);
        // The search path from resolv.conf: a bare Service name.
        assert.equal(lab.exec(from, 'dig', '+short', '+search', '+time=2', '+tries=2', 'AAAA', 'web').trim(), 'fd00:10:96::64');
      }
      assert.equal(lab.exec('web-1a', 'dig', '+short', '+time=2', '+tries=2', 'A', 'web.default.svc.cluster.local').trim(), '', 'an IPv6-only Service has no A record');
      assert.equal(lab.exec('web-1a', 'dig', '+short', '+time=2', '+tries=2', '-x', 'fd00:10:96::64').trim(), 'web.default.svc.cluster.local.');
      // A name beyond the cluster: forwarded by the node's agent to the lab's (IPv4) upstream.
      assert.match(lab.exec('web-2a', 'dig', '+short', '+time=2', '+tries=2', 'www.example.test').trim(), /^\d+\.\d+\.\d+\.\d+$/);
    });

    await t.test('the agents answered the pods\' UDP queries to the IPv6 cluster DNS address in the data path', { skip: dataplane === 'kernel' && 'the kernel dataplane has no agent: its IPv6 proxier DNATs kube-dns to tapir dns on the nodes' }, () => {
      const metrics = lab.exec('node-1', 'curl', '-sS', '--max-time', '5', 'http://127.0.0.1:10249/metrics');
      const answered = Number(/tapir_dns_datapath_queries_total\{result="answered"\} (\d+)/.exec(metrics)?.[1] ?? '0');
      assert.ok(answered > 0, `queries answered in the data path on node-1: ${answered}`);
    });

    await t.test('the kube-dns Service\'s endpoints answer too: DNS over UDP and TCP to each node\'s IPv6 underlay address', () => {
      for (const [node, pod] of [[node1, 'web-1b'], [node2, 'web-2a']] as const) {
        // From a pod of the node itself (a remote node's stack answering a pod from its underlay address fails the overlay's source check, as for IPv4).
        assert.equal(lab.exec(pod, 'dig', '+short', '+tcp', '+time=2', '+tries=2', `@${node.underlayIP6}`, 'AAAA', 'kube-dns.kube-system.svc.cluster.local').trim(), 'fd00:10:96::a', `TCP to ${node.name}`);
        for (const proto of ['+notcp', '+tcp']) {
          assert.equal(lab.exec('client', 'dig', '+short', proto, '+time=2', '+tries=2', `@${node.underlayIP6}`, 'AAAA', 'web.default.svc.cluster.local').trim(), 'fd00:10:96::64', `${proto} to ${node.name} from the client`);
        }
      }
    });

    await t.test('curl to the web Service by name from pods on both nodes: every endpoint reached, the client address kept', () => {
      for (const from of ['web-1a', 'web-2b']) {
        const seen = new Set<string>();
        // Random balancing over four endpoints: 80 tries miss one with probability 4·(3/4)^80 < 1e-9
        // (24 missed one in a CI run).
        for (let i = 0; i < 80 && seen.size < 4; i++) {
          const r = curl(from, 'http://web/by-name');
          seen.add(r.pod);
          // A pod reaching itself is masqueraded to an address of its node (hairpin); any other keeps its address.
          const node = nodes.find((n) => n.name === pods.find((p) => p.name === from)!.node)!;
          if (r.pod === from) assert.ok(masqueradedBy(node, r.client), `${from} to itself: client ${r.client}`);
          else assert.ok(r.client.startsWith(`${addressOf[from]}:`), `${from} to ${r.pod}: client ${r.client}, expected ${addressOf[from]}`);
        }
        assert.deepEqual([...seen].sort(), ['web-1a', 'web-1b', 'web-2a', 'web-2b'], `from ${from}`);
      }
      assert.match(curl('web-2a', 'http://web.default.svc.cluster.local/fqdn').pod, /^web-/);
    });

    await t.test('pod to pod across nodes over IPv6, no NAT', () => {
      const r = curl('web-1a', `http://[${addressOf['web-2b']}]:8080/direct`);
      assert.equal(r.pod, 'web-2b');
      assert.equal(r.node, 'node-2');
      assert.ok(r.client.startsWith(`${addressOf['web-1a']}:`), r.client);
      const back = curl('web-2a', `http://[${addressOf['web-1b']}]:8080/direct`);
      assert.equal(back.pod, 'web-1b');
      assert.ok(back.client.startsWith(`${addressOf['web-2a']}:`), back.client);
    });

    await t.test('node port 30080 on each node\'s IPv6 address from the client namespace', () => {
      for (const n of [node1, node2]) {
        assert.ok(n.underlayIP6, `${n.name} has an IPv6 underlay address`);
        const r = curl('client', `http://[${n.underlayIP6}]:30080/np`);
        assert.match(r.pod, /^web-/);
        assert.ok(masqueradedBy(n, r.client), `masqueraded to ${n.name}: ${r.client}`);
      }
      // Not on the IPv4 address: an IPv6-only Service has no IPv4 node port.
      const v4 = lab.run('client', 'curl', '-sS', '--max-time', '2', `http://${node1.underlayIP}:30080/`);
      assert.notEqual(v4.status, 0, 'no IPv4 node port');
    });

    await t.test('LoadBalancer: an address from the IPv6 pool, reached from the client', async () => {
      let ips: string[] = [];
      for (let i = 0; i < 50 && ips.length === 0; i++) {
        ips = (lab.status().services as ServiceStatus[]).find((s) => s.name === 'web-lb')?.loadBalancerIPs ?? [];
        if (ips.length === 0) await sleep(200);
      }
      assert.equal(ips.length, 1, JSON.stringify(ips));
      assert.match(ips[0]!, /^fd00:172:30::/);
      let last = '';
      for (let i = 0; i < 50; i++) {
        const r = lab.run('client', 'curl', '-sS', '-g', '--max-time', '2', `http://[${ips[0]}]/lb`);
        if (r.status === 0) {
          assert.match((JSON.parse(r.stdout) as HttpEcho).pod, /^web-/);
          return;
        }
        last = r.stderr;
        await sleep(200);
      }
      assert.fail(`the IPv6 load-balancer address never answered: ${last}`);
    });

    await t.test('UDP echo through the echo-udp Service, by name, from pods on both nodes', () => {
      for (const from of ['web-1a', 'web-2a']) {
        assert.equal(lab.exec(from, 'timeout', '3', 'bash', '-c', 'exec 3<>/dev/udp/echo-udp/9000; printf ipv6only >&3; head -c 8 <&3'), 'ipv6only', `from ${from}`);
      }
    });

    await t.test('the Service link variables bracket the IPv6 cluster IP', () => {
      const env = pods.find((p) => p.name === 'web-1a')!.env;
      assert.equal(env.KUBERNETES_SERVICE_HOST, 'fd00:10:96::1');
      assert.equal(env.KUBERNETES_PORT, 'tcp://[fd00:10:96::1]:443');
    });
  } finally {
    const down = lab.down();
    assert.equal(down.status, 0, down.stderr);
    const left = lab.leftovers();
    assert.deepEqual(left.netns, [], 'every namespace of the lab is gone');
  }
});
}

// A dual-stack lab end to end on the real agents (`tapir lab up --ip-family dual`): every
// pod gets an IPv4 and an IPv6 address from tapir-cni, and IPv6 flows between pods on one
// node, across nodes (VXLAN over the IPv4 underlay, decoded by tshark), and between a node
// and its pods (the host TUN), with ping, curl and iperf3; no NAT on any pod-to-pod path;
// what crosses the underlay is RFC 7348 VXLAN carrying IPv6; the agents count no IPv6
// frame as unsupported, and the pods' IPv6 link control is answered or ignored as
// designed. The lab status names every pod's addresses (`ips`, as the Kubernetes API's
// podIPs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KUBECTL } from './helpers/apiserver.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

interface PodStatus { name: string; ip: string; ips?: string[]; node: string }

test('dual-stack lab: IPv6 between pods (same node, across nodes) and from the node, no NAT, VXLAN on the wire', { timeout: 300_000 }, async (t) => {
  const lab = new Lab('d6');
  try {
    lab.up('--ip-family', 'dual');
    const status = lab.status();
    const pods = status.pods as PodStatus[];
    const v6 = Object.fromEntries(pods.map((p) => [p.name, (p.ips ?? []).find((a) => a.includes(':'))]));
    for (const p of pods) {
      assert.equal(p.ips?.length, 2, `pod ${p.name} has an IPv4 and an IPv6 address: ${JSON.stringify(p.ips)}`);
      assert.equal(p.ips![0], p.ip, 'the IPv4 address first, as podIPs lists the primary family first');
    }
    assert.match(v6['web-1a']!, /^fd00:10:244:1::/);
    assert.match(v6['web-2a']!, /^fd00:10:244:2::/);

    await t.test('inside the pod: the address (not tentative), the EUI-64 link-local and the static default route', () => {
      const addrs = lab.exec('web-1a', 'ip', '-6', 'addr', 'show', 'dev', 'eth0');
      assert.ok(addrs.includes(`inet6 ${v6['web-1a']}/64`), addrs);
      assert.match(addrs, /inet6 fe80::858:aff:fef4:1\w*\/64/, 'EUI-64 of 0a:58:0a:f4:01:xx');
      assert.ok(!addrs.includes('tentative'), addrs);
      assert.match(lab.exec('web-1a', 'ip', '-6', 'route', 'show', 'default'), /default via fd00:10:244:1::1 dev eth0/);
    });

    await t.test('ping over IPv6: the gateway, a pod on the same node, a pod on the other node, the node to its pod', () => {
      lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', 'fd00:10:244:1::1');
      lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', v6['web-1b']!);
      lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', v6['web-2b']!);
      lab.exec('node-2', 'ping', '-6', '-c', '2', '-W', '2', v6['web-2a']!);
      // A remote node's stack reaches a pod here too (its source is its own IPv6 gateway address).
      lab.exec('node-2', 'ping', '-6', '-c', '2', '-W', '2', v6['web-1b']!);
    });

    await t.test('HTTP over IPv6 keeps the client address (no NAT) on both paths', () => {
      const cross = lab.httpEcho('web-1a', `[${v6['web-2b']}]`, '/v6', ['-g']);
      assert.equal(cross.pod, 'web-2b');
      assert.ok(cross.client.startsWith(`${v6['web-1a']}:`), `no NAT across nodes: ${cross.client}`);
      const same = lab.httpEcho('web-1b', `[${v6['web-1a']}]`, '/v6', ['-g']);
      assert.ok(same.client.startsWith(`${v6['web-1b']}:`), same.client);
      // UDP over IPv6 across nodes (bash's /dev/udp with an IPv6 address).
      assert.equal(lab.exec('web-2a', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${v6['web-1b']}/9000; printf udp6 >&3; head -c 4 <&3`), 'udp6');
      // IPv4 still works beside it.
      const v4 = lab.httpEcho('web-1a', lab.ips['web-2b']!);
      assert.ok(v4.client.startsWith(`${lab.ips['web-1a']}:`), v4.client);
    });

    await t.test('iperf3 over IPv6, same node and across nodes (TSO6 segments and GRO6 runs on the way)', () => {
      const server = lab.run('web-2b', 'iperf3', '-s', '-1', '-D', '-p', '5299');
      assert.equal(server.status, 0, server.stderr);
      const cross = JSON.parse(lab.exec('web-1a', 'iperf3', '-6', '-c', v6['web-2b']!, '-p', '5299', '-t', '1', '-J')) as { end: { sum_received: { bytes: number } } };
      assert.ok(cross.end.sum_received.bytes > 1_000_000, `across nodes: ${cross.end.sum_received.bytes} bytes`);
      const server2 = lab.run('web-1b', 'iperf3', '-s', '-1', '-D', '-p', '5298');
      assert.equal(server2.status, 0, server2.stderr);
      const same = JSON.parse(lab.exec('web-1a', 'iperf3', '-6', '-c', v6['web-1b']!, '-p', '5298', '-t', '1', '-J')) as { end: { sum_received: { bytes: number } } };
      assert.ok(same.end.sum_received.bytes > 1_000_000, `same node: ${same.end.sum_received.bytes} bytes`);
    });

    await t.test('on the underlay: VXLAN (UDP 4789, VNI 4242) carrying the pods\' ICMPv6 echoes, as tshark decodes it', async () => {
      // -c counts captured frames, before the display filter: capture for a while instead.
      const tshark = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, 'node-2', '--', 'tshark', '-l', '-i', 'eth0', '-a', 'duration:6',
        '-f', 'udp port 4789', '-Y', 'vxlan && icmpv6.type == 128', '-T', 'fields', '-e', 'vxlan.vni', '-e', 'ipv6.src', '-e', 'ipv6.dst'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      tshark.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      tshark.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const done = new Promise<number | null>((resolve) => tshark.on('close', resolve));
      // tshark says "Capturing on 'eth0'" once it listens.
      for (let i = 0; i < 100 && !err.includes('Capturing on'); i++) await sleep(100);
      lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', v6['web-2a']!);
      await done;
      const lines = out.trim().split('\n').filter(Boolean);
      assert.ok(lines.length >= 2, `tshark saw ${lines.length} VXLAN frames with an echo request: ${out}${err}`);
      assert.deepEqual(lines[0]!.split('\t'), ['4242', v6['web-1a'], v6['web-2a']]);
    });

    await t.test('tapir trace explains an IPv6 packet: no service NAT, then the overlay or the pod port', () => {
      const remote = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `[${v6['web-1a']}]:40000`, '--dst', `[${v6['web-2a']}]:8080`, '--json']);
      assert.equal(remote.status, 0, remote.stderr);
      const r = JSON.parse(remote.stdout) as { verdict: string; egress: string; steps: string[] };
      assert.equal(r.verdict, 'pass');
      assert.match(r.egress, /^VXLAN \(VNI 4242\) to node-2 at 172\.30\.0\.12$/);
      assert.ok(r.steps.some((x) => x.includes('not a service packet')), r.steps.join('\n'));
      const local = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `[${v6['web-1a']}]:40000`, '--dst', `[${v6['web-1b']}]:8080`, '--json']);
      assert.match((JSON.parse(local.stdout) as { egress: string }).egress, /^pod port \S+ \(default\/web-1b\)$/);
      const mixed = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', `[${v6['web-1b']}]:8080`]);
      assert.equal(mixed.status, 2);
      assert.match(mixed.stderr, /must be of one family/);
    });

    await t.test('kubectl: a PreferDualStack Service gets a cluster IP per family and IPv6 EndpointSlices; the pods resolve its AAAA', () => {
      const home = mkdtempSync(join(tmpdir(), 'tapir-dual-kubectl-'));
      try {
        const config = tapir(['lab', 'kubeconfig', '--name', lab.name]);
        assert.equal(config.status, 0, config.stderr);
        writeFileSync(join(home, 'config'), config.stdout);
        const kubectl = (args: string[], input?: string): string => execFileSync(KUBECTL, args, { input, encoding: 'utf8', timeout: 60_000, env: { ...process.env, KUBECONFIG: join(home, 'config'), HOME: home } });
        kubectl(['apply', '-f', '-'], 'apiVersion: v1\nkind: Service\nmetadata: { name: web6, namespace: default }\nspec:\n  ipFamilyPolicy: PreferDualStack\n  selector: { app: web }\n  ports: [{ name: http, port: 80, targetPort: 8080 }]\n');
        const svc = JSON.parse(kubectl(['get', 'svc', 'web6', '-o', 'json'])) as { spec: { clusterIPs: string[]; ipFamilies: string[]; clusterIP: string } };
        assert.deepEqual(svc.spec.ipFamilies, ['IPv4', 'IPv6']);
        assert.equal(svc.spec.clusterIPs.length, 2);
        assert.equal(svc.spec.clusterIPs[0], svc.spec.clusterIP);
        assert.match(svc.spec.clusterIPs[1]!, /^fd00:10:96::/);
        // One slice per family, the IPv6 one listing the pods' IPv6 addresses.
        let slices: { addressType: string; endpoints: { addresses: string[] }[] }[] = [];
        for (let i = 0; i < 50; i++) {
          slices = (JSON.parse(kubectl(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=web6', '-o', 'json'])) as { items: typeof slices }).items;
          if (slices.some((x) => x.addressType === 'IPv6' && x.endpoints.length === 4)) break;
          execFileSync('sleep', ['0.2']);
        }
        const six = slices.find((x) => x.addressType === 'IPv6');
        assert.deepEqual(six?.endpoints.map((e) => e.addresses[0]).sort(), Object.values(v6).sort());
        // The cluster DNS (each node's agent) answers A and AAAA from a pod.
        const name = 'web6.default.svc.cluster.local';
        assert.equal(lab.exec('web-1a', 'dig', '+short', 'AAAA', name).trim(), svc.spec.clusterIPs[1]);
        assert.equal(lab.exec('web-2a', 'dig', '+short', 'A', name).trim(), svc.spec.clusterIP);
        // Both halves are served (NAT66: lab-dual-services.test.ts goes through the IPv6 paths).
        const reply = JSON.parse(lab.exec('web-1a', 'curl', '-sS', '--max-time', '5', `http://${svc.spec.clusterIP}/`)) as { pod: string };
        assert.match(reply.pod, /^web-/);
        const reply6 = JSON.parse(lab.exec('web-2a', 'curl', '-sS', '-g', '--max-time', '5', `http://[${svc.spec.clusterIPs[1]}]/`)) as { pod: string };
        assert.match(reply6.pod, /^web-/);
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    });

    await t.test('tapir capture of a pod port and tapir pcap dump: the neighbour exchange and the echo over IPv6', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tapir-dual-cap-'));
      try {
        const file = join(dir, 'web-1a.pcap');
        const capture = spawn(TAPIR, ['capture', '--lab', lab.name, 'web-1a', '-w', file, '--seconds', '4'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        capture.stderr.on('data', (d: Buffer) => { err += d.toString(); });
        const closed = new Promise((resolve) => capture.on('close', resolve));
        for (let i = 0; i < 100 && !/capturing/.test(err); i++) await sleep(50);
        // The gateway's neighbour entry is permanent (set with the address); a pod of the
        // same /64 is on-link: with its entry flushed, web-1a solicits it, then pings it
        // and the remote pod.
        lab.exec('web-1a', 'ip', '-6', 'neigh', 'flush', 'dev', 'eth0');
        lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', v6['web-1b']!);
        lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', v6['web-2b']!);
        await closed;
        const dump = tapir(['pcap', 'dump', file, '--json']);
        assert.equal(dump.status, 0, dump.stderr);
        const text = dump.stdout;
        assert.ok(text.includes(v6['web-2b']!), 'the echo to the remote pod is in the capture');
        const frames = text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { ip?: { version: number } });
        assert.ok(frames.some((f) => f.ip?.version === 6), 'IPv6 frames decoded');
        // tshark agrees: the agent advertised web-1b's address with web-1b's MAC, not as a router.
        const mac = `0a:58:${lab.ips['web-1b']!.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
        const na = execFileSync('tshark', ['-r', file, '-Y', 'icmpv6.type == 136', '-T', 'fields', '-e', 'ipv6.src', '-e', 'icmpv6.nd.na.flag.r', '-e', 'icmpv6.opt.linkaddr'], { encoding: 'utf8' });
        assert.match(na, new RegExp(`${v6['web-1b']}\\s+(0|False)\\s+${mac}`), na);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    await t.test('the agents count no IPv6 frame as unsupported', () => {
      for (const node of ['node-1', 'node-2']) {
        const r = tapir(['stats', '--lab', lab.name, '--node', node, '--json']);
        assert.equal(r.status, 0, r.stderr);
        const stats = JSON.parse(r.stdout) as { ports: { name: string; drops: Record<string, number> }[] };
        for (const p of stats.ports) assert.equal(p.drops['ipv6-unsupported'] ?? 0, 0, JSON.stringify(p));
      }
    });
  } finally {
    const down = lab.down();
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  }
});

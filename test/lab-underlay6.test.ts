// The overlay over an IPv6 underlay, end to end on the real agents (`tapir lab up
// --ip-family dual --underlay ipv6`): lab up's own dual-stack checks pass (pods, Services
// of each family, DNS), the pods' MTU is 20 bytes smaller, ping, curl and iperf3 flow
// between pods on different nodes over IPv4 and IPv6 with no NAT, and what crosses the
// underlay is VXLAN (UDP 4789) in IPv6 datagrams between the nodes' IPv6 addresses,
// carrying both inner families, as tshark decodes it on the wire and in `tapir capture`'s
// rebuilt outer headers. A datagram from an IPv6 address that is no node's is dropped
// and counted as unknown-peer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, TAPIR, tapir } from './helpers/lab.ts';

interface PodStatus { name: string; ip: string; ips?: string[]; node: string }
interface NodeStatus { name: string; underlayIP: string; underlayIP6?: string }
interface Stats { ports: { name: string; drops: Record<string, number>; rxFrames?: number }[] }

/** Runs tshark in `netns` for `seconds` while `traffic` runs; the field lines it printed. */
async function tsharkWhile(lab: Lab, target: string, args: string[], seconds: number, traffic: () => void): Promise<string[]> {
  const tshark = spawn(TAPIR, ['lab', 'exec', '--name', lab.name, target, '--', 'tshark', '-l', '-i', 'eth0', '-a', `duration:${seconds}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  tshark.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  tshark.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const done = new Promise<number | null>((resolve) => tshark.on('close', resolve));
  for (let i = 0; i < 100 && !err.includes('Capturing on'); i++) await sleep(100);
  traffic();
  await done;
  return out.trim().split('\n').filter(Boolean);
}

test('an IPv6 underlay: pods across nodes over IPv4 and IPv6, VXLAN in IPv6 on the wire', { timeout: 300_000 }, async (t) => {
  const lab = new Lab('u6');
  try {
    const up = lab.up('--ip-family', 'dual', '--underlay', 'ipv6');
    assert.equal(up.status, 0, up.stderr);
    const status = lab.status();
    const pods = status.pods as PodStatus[];
    const nodes = status.nodes as NodeStatus[];
    const v6 = Object.fromEntries(pods.map((p) => [p.name, (p.ips ?? []).find((a) => a.includes(':'))!]));
    const node6 = Object.fromEntries(nodes.map((n) => [n.name, n.underlayIP6!]));
    assert.match(node6['node-1']!, /:/, 'the nodes have IPv6 underlay addresses');

    await t.test('the pod MTU is 1430: VXLAN over IPv6 takes 70 bytes of the underlay\'s 1500', () => {
      assert.match(lab.exec('web-1a', 'ip', 'link', 'show', 'eth0'), /mtu 1430 /);
      // A full-size packet crosses; one byte more would not fit (DF), and is refused in the pod.
      lab.exec('web-1a', 'ping', '-c', '1', '-W', '2', '-M', 'do', '-s', String(1430 - 28), lab.ips['web-2a']!);
      lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', String(1430 - 48), v6['web-2a']!);
      assert.notEqual(lab.run('web-1a', 'ping', '-c', '1', '-W', '1', '-M', 'do', '-s', String(1430 - 27), lab.ips['web-2a']!).status, 0);
    });

    await t.test('ping and curl across nodes, both families, no NAT', () => {
      lab.exec('web-1a', 'ping', '-c', '2', '-W', '2', lab.ips['web-2b']!);
      lab.exec('web-1a', 'ping', '-6', '-c', '2', '-W', '2', v6['web-2b']!);
      const four = lab.httpEcho('web-1a', lab.ips['web-2b']!);
      assert.equal(four.pod, 'web-2b');
      assert.ok(four.client.startsWith(`${lab.ips['web-1a']}:`), four.client);
      const six = lab.httpEcho('web-2a', `[${v6['web-1b']}]`, '/v6', ['-g']);
      assert.equal(six.pod, 'web-1b');
      assert.ok(six.client.startsWith(`${v6['web-2a']}:`), six.client);
      // A cluster IP whose endpoints are spread over both nodes: some answers come over the tunnel.
      const seen = new Set<string>();
      for (let i = 0; i < 40 && !seen.has('node-2'); i++) seen.add((JSON.parse(lab.exec('web-1a', 'curl', '-sS', '--max-time', '5', 'http://web.default.svc.cluster.local/')) as { node: string }).node);
      assert.ok(seen.has('node-2'), `a remote endpoint answered through the Service: ${[...seen].join(', ')}`);
    });

    await t.test('iperf3 across nodes over IPv4 and IPv6 (TSO frames cut into UDP GSO sends to an IPv6 peer)', () => {
      for (const [family, port, dst] of [['-4', '5299', lab.ips['web-2b']!], ['-6', '5298', v6['web-2b']!]] as const) {
        const server = lab.run('web-2b', 'iperf3', '-s', '-1', '-D', '-p', port);
        assert.equal(server.status, 0, server.stderr);
        const r = JSON.parse(lab.exec('web-1a', 'iperf3', family, '-c', dst, '-p', port, '-t', '1', '-J')) as { end: { sum_received: { bytes: number } } };
        assert.ok(r.end.sum_received.bytes > 1_000_000, `${family}: ${r.end.sum_received.bytes} bytes`);
      }
    });

    await t.test('on the wire: VXLAN (UDP 4789, VNI 4242) in IPv6 between the nodes, carrying IPv4 and IPv6 echoes', async () => {
      const lines = await tsharkWhile(lab, 'node-2', ['-f', 'udp port 4789', '-Y', 'vxlan && (icmp.type == 8 || icmpv6.type == 128)',
        '-T', 'fields', '-e', 'vxlan.vni', '-e', 'ipv6.src', '-e', 'ipv6.dst', '-e', 'ip.src', '-e', 'ip.dst'], 6, () => {
        lab.exec('web-1a', 'ping', '-c', '1', '-W', '2', lab.ips['web-2a']!);
        lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', v6['web-2a']!);
      });
      const rows = lines.map((l) => l.split('\t'));
      // IPv4 inside: the outer IPv6 addresses alone, the inner IPv4 ones.
      assert.ok(rows.some((r) => r.join('|') === ['4242', node6['node-1'], node6['node-2'], lab.ips['web-1a'], lab.ips['web-2a']].join('|')), lines.join('\n'));
      // IPv6 inside: outer and inner IPv6 addresses, in that order.
      assert.ok(rows.some((r) => r.slice(0, 3).join('|') === ['4242', `${node6['node-1']},${v6['web-1a']}`, `${node6['node-2']},${v6['web-2a']}`].join('|')), lines.join('\n'));
      // Nothing of the overlay in IPv4 datagrams.
      const outer4 = await tsharkWhile(lab, 'node-2', ['-f', 'ip and udp port 4789', '-T', 'fields', '-e', 'ip.src'], 3, () => {
        lab.exec('web-1a', 'ping', '-c', '1', '-W', '2', lab.ips['web-2a']!);
      });
      assert.deepEqual(outer4, []);
    });

    await t.test('tapir capture of the underlay rebuilds outer IPv6 headers that tshark decodes (checksums right)', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'tapir-u6-cap-'));
      try {
        const file = join(dir, 'underlay.pcap');
        const capture = spawn(TAPIR, ['capture', '--lab', lab.name, '--node', 'node-1', 'underlay', '-w', file, '--seconds', '4'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        capture.stderr.on('data', (d: Buffer) => { err += d.toString(); });
        const closed = new Promise((resolve) => capture.on('close', resolve));
        for (let i = 0; i < 100 && !/capturing/.test(err); i++) await sleep(50);
        lab.exec('web-1a', 'ping', '-6', '-c', '1', '-W', '2', v6['web-2b']!);
        lab.exec('web-1a', 'ping', '-c', '1', '-W', '2', lab.ips['web-2b']!);
        await closed;
        const out = execFileSync('tshark', ['-r', file, '-o', 'udp.check_checksum:TRUE', '-Y', 'vxlan', '-T', 'fields', '-e', 'ipv6.src', '-e', 'ip.dst', '-e', 'udp.checksum.status'], { encoding: 'utf8' });
        const rows = out.trim().split('\n').filter(Boolean).map((l) => l.split('\t'));
        assert.ok(rows.length >= 4, `both echoes and their replies: ${out}${err}`);
        assert.ok(rows.some((r) => r[0] === `${node6['node-1']},${v6['web-1a']}`), out);
        assert.ok(rows.some((r) => r[0] === node6['node-2'] && r[1] === lab.ips['web-1a']), out);
        // udp.checksum.status 1: good.
        for (const r of rows) assert.equal(r[2], '1', `outer UDP checksum verified: ${out}`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    await t.test('a VXLAN datagram from an IPv6 address that is no node\'s is dropped as unknown-peer', () => {
      const client6 = (status.client as { ip6?: string }).ip6!;
      assert.match(client6, /:/);
      const drops = (): number => {
        const r = tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']);
        assert.equal(r.status, 0, r.stderr);
        return (JSON.parse(r.stdout) as Stats).ports.find((p) => p.name === 'underlay')!.drops['unknown-peer'] ?? 0;
      };
      const before = drops();
      // An I-flagged VXLAN header with the lab's VNI, then a few bytes: the sender decides.
      lab.exec('client', 'bash', '-c', `printf '\\x08\\x00\\x00\\x00\\x00\\x10\\x92\\x00abcdefgh' > /dev/udp/${node6['node-1']}/4789`);
      let after = before;
      for (let i = 0; i < 20 && after === before; i++) {
        execFileSync('sleep', ['0.1']);
        after = drops();
      }
      assert.equal(after, before + 1);
    });

    await t.test('tapir trace names the IPv6 peer of the overlay', () => {
      const r = tapir(['trace', '--lab', lab.name, '--node', 'node-1', '--src', `${lab.ips['web-1a']}:40000`, '--dst', `${lab.ips['web-2a']}:8080`, '--json']);
      assert.equal(r.status, 0, r.stderr);
      assert.equal((JSON.parse(r.stdout) as { egress: string }).egress, `VXLAN (VNI 4242) to node-2 at ${node6['node-2']}`);
    });
  } finally {
    const down = lab.down();
    assert.equal(down.status, 0, down.stderr);
    assert.deepEqual(lab.leftovers(), { netns: [], pids: [], dir: false });
  }
});

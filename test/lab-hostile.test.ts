// Hostile input from a real pod and from the underlay (issue 8): raw frames written on
// AF_PACKET sockets in the lab's own namespaces, tcpdump in the other pods watching.
// Nothing malformed or spoofed may reach another pod; each is dropped and counted by
// reason; the agent keeps running. A well-formed datagram sent last must arrive, so the
// watch itself is shown to work.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Lab, tapir } from './helpers/lab.ts';
import { run } from './helpers/netns.ts';

const lab = new Lab('lth');
const dir = mkdtempSync(join(tmpdir(), 'tapir-hostile-'));

before(() => { lab.up('--dataplane', 'tapir'); });
after(() => {
  lab.down();
  rmSync(dir, { recursive: true, force: true });
});

const macOf = (ip: string): string => `0a:58:${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;

// Frames built in Python from a JSON list of {kind, ...}: each goes out the interface
// as it is, through an AF_PACKET socket (the pod's eth0 is the agent's TAP).
const SEND_FRAMES = `
import json, socket, struct, sys, random
iface, spec = sys.argv[1], json.loads(sys.argv[2])
def mac(t): return bytes(int(x, 16) for x in t.split(':'))
def ip(t): return socket.inet_aton(t)
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def ipv4(src, dst, payload, proto=17, ihl=5, options=b'', total=None, flags=0x4000, bad_csum=False):
    h = struct.pack('!BBHHHBBH4s4s', 0x40 | ihl, 0, total if total is not None else 4 * ihl + len(payload), 1, flags, 64, proto, 0, ip(src), ip(dst)) + options
    c = csum(h[:4 * ihl]) ^ (0x0f0f if bad_csum else 0)
    return h[:10] + struct.pack('!H', c) + h[12:] + payload
def udp(payload, dport=7777): return struct.pack('!HHHH', 4444, dport, 8 + len(payload), 0) + payload
def eth(dst, src, body, ethertype=0x0800): return mac(dst) + mac(src) + struct.pack('!H', ethertype) + body
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
for f in spec:
    k, marker = f['kind'], b'HOSTILE-' + f['kind'].encode()
    pl = udp(marker + b'.' * 32)
    if k == 'good': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], udp(b'GOOD' + b'.' * 32)))
    elif k == 'spoofed-mac': frame = eth(f['gw'], f['other_mac'], ipv4(f['ip'], f['dst'], pl))
    elif k == 'spoofed-ip': frame = eth(f['gw'], f['mac'], ipv4(f['other_ip'], f['dst'], pl))
    elif k == 'garp': frame = eth('ff:ff:ff:ff:ff:ff', f['mac'], struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac(f['mac']) + ip(f['other_ip']) + b'\\0' * 6 + ip(f['other_ip']), 0x0806)
    elif k == 'truncated-ip': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], pl)[:14])
    elif k == 'bad-ihl': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], pl, ihl=3))
    elif k == 'total-past-end': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], pl, total=1400))
    elif k == 'bad-checksum': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], pl, bad_csum=True))
    elif k == 'vlan': frame = eth(f['gw'], f['mac'], struct.pack('!HH', 5, 0x0800) + ipv4(f['ip'], f['dst'], pl), 0x8100)
    elif k == 'jumbo': frame = eth(f['gw'], f['mac'], ipv4(f['ip'], f['dst'], udp(marker + b'.' * 8900), flags=0))
    elif k == 'random': frame = bytes(random.Random(7).getrandbits(8) for _ in range(300))
    else: raise SystemExit('unknown kind ' + k)
    s.send(frame)
`;

// VXLAN datagrams to node-1 from a namespace on the underlay (RFC 7348 header, inner
// Ethernet frame to web-1b).
const SEND_VXLAN = `
import json, socket, struct, sys
spec = json.loads(sys.argv[1])
def mac(t): return bytes(int(x, 16) for x in t.split(':'))
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def inner(src, dst, dmac, gw, kind):
    payload = struct.pack('!HHHH', 4444, 7777, 8 + 40, 0) + (b'HOSTILE-' + kind.encode()).ljust(40, b'.')
    h = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, 63, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
    h = h[:10] + struct.pack('!H', csum(h)) + h[12:]
    return mac(dmac) + mac(gw) + b'\\x08\\x00' + h + payload
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for f in spec:
    vni = f.get('vni', f['vni_ok'])
    vx = struct.pack('!BBHI', 0x08, 0, 0, vni << 8)
    d = vx + inner(f['src'], f['dst'], f['dmac'], f['gw'], f['kind'])
    if f['kind'] == 'truncated-vxlan': d = vx[:5]
    s.sendto(d, (f['node'], 4789))
`;

function watch(netns: string, name: string, filter: string): { proc: ChildProcess; file: string; ready: Promise<void> } {
  const file = join(dir, `${name}.pcap`);
  const proc = spawn('ip', ['netns', 'exec', netns, 'tcpdump', '-i', 'eth0', '-nn', '-U', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ready = new Promise<void>((resolve) => {
    proc.stderr!.on('data', (d: Buffer) => { if (d.toString().includes('listening on')) resolve(); });
  });
  return { proc, file, ready };
}

async function stop(w: { proc: ChildProcess }): Promise<void> {
  await sleep(500);
  const closed = new Promise((r) => w.proc.on('close', r));
  w.proc.kill('SIGINT');
  await closed;
}

function packets(file: string): string {
  return run('tcpdump', ['-r', file, '-nn', '-A']);
}

test('spoofed, malformed and oversized frames from a pod reach no other pod; each is counted; a good one arrives', async () => {
  const status = lab.status();
  const pod = (name: string) => status.pods.find((p: { name: string }) => p.name === name);
  const node1 = status.nodes.find((n: { name: string }) => n.name === 'node-1');
  const attacker = pod('web-1a');
  const victims = [pod('web-1b'), pod('web-2a')];
  const watches = victims.map((v) => watch(v.netns, v.name, `udp port 7777 or (arp and ether src ${macOf(attacker.ip)})`));
  try {
    await Promise.all(watches.map((w) => w.ready));
    const base = { mac: macOf(attacker.ip), ip: attacker.ip, gw: macOf(node1.gateway), other_mac: macOf(victims[0].ip), other_ip: victims[0].ip };
    // Well-formed fragments and IP options are not on the list: between pods they are
    // IP as Linux forwards it, and the Kubernetes network model lets pods reach each
    // other with it (fragments to a service address are dropped: nothing reassembles them).
    const kinds = ['spoofed-mac', 'spoofed-ip', 'garp', 'truncated-ip', 'bad-ihl', 'total-past-end', 'bad-checksum', 'vlan', 'jumbo', 'random'];
    const frames = victims.flatMap((v) => kinds.map((kind) => ({ ...base, kind, dst: v.ip })));
    // A pod may raise its own MTU: the jumbo frame goes out with no TSO metadata.
    lab.exec('web-1a', 'ip', 'link', 'set', 'eth0', 'mtu', '9000');
    await sleep(200);
    lab.exec('web-1a', 'python3', '-c', SEND_FRAMES, 'eth0', JSON.stringify(frames));
    // The control: well-formed datagrams, a few times, must arrive.
    for (let k = 0; k < 3; k++) {
      await sleep(100);
      lab.exec('web-1a', 'python3', '-c', SEND_FRAMES, 'eth0', JSON.stringify(victims.map((v) => ({ ...base, kind: 'good', dst: v.ip }))));
    }
  } finally {
    lab.run('web-1a', 'ip', 'link', 'set', 'eth0', 'mtu', String(status.addressing.podMTU));
    for (const w of watches) await stop(w);
  }
  for (const [i, v] of victims.entries()) {
    const seen = packets(watches[i]!.file);
    assert.doesNotMatch(seen, /HOSTILE/, `${v.name} saw a hostile frame:\n${seen}`);
    // The claim "web-1b's address is at web-1a's MAC" (the agent's own ARP answers for
    // web-1a, with web-1a's true MAC, are fine).
    const claimed = victims[0].ip.replace(/\./g, '\\.');
    assert.doesNotMatch(seen, new RegExp(`tell ${claimed}|${claimed} is-at ${macOf(attacker.ip)}`), `${v.name} saw the attacker's ARP claim:\n${seen}`);
    assert.match(seen, /GOOD/, `${v.name} saw the well-formed datagram (the watch works)`);
  }
  const stats = JSON.parse(tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']).stdout) as { ports: { kind: string; drops: Record<string, number> }[] };
  const drops: Record<string, number> = {};
  for (const p of stats.ports) for (const [k, n] of Object.entries(p.drops)) drops[k] = (drops[k] ?? 0) + n;
  for (const reason of ['spoofed-mac', 'spoofed-ip', 'truncated-ipv4', 'bad-ipv4-ihl', 'bad-ipv4-total-length', 'bad-ipv4-checksum', 'vlan-unsupported', 'too-big']) {
    assert.ok((drops[reason] ?? 0) > 0, `node-1 counted ${reason}: ${JSON.stringify(drops)}`);
  }
  assert.equal(node1.agent.answers, true);
  assert.equal(lab.status().nodes.find((n: { name: string }) => n.name === 'node-1').agent.answers, true, 'the agent still answers');
});

test('VXLAN from a stranger, with a wrong VNI, truncated, or with a spoofed inner source reaches no pod; each is counted', async () => {
  const status = lab.status();
  const victim = status.pods.find((p: { name: string }) => p.name === 'web-1b');
  const node1 = status.nodes.find((n: { name: string }) => n.name === 'node-1');
  const w = watch(victim.netns, 'vxlan-victim', 'udp port 7777');
  const vni = status.addressing.vni as number;
  const common = { node: node1.underlayIP, dst: victim.ip, dmac: macOf(victim.ip), gw: macOf(node1.gateway), vni_ok: vni };
  const drops = (): Record<string, number> => {
    const s = JSON.parse(tapir(['stats', '--lab', lab.name, '--node', 'node-1', '--json']).stdout) as { ports: { kind: string; drops: Record<string, number> }[] };
    return s.ports.find((p) => p.kind === 'underlay')!.drops;
  };
  const before = drops();
  try {
    await w.ready;
    // From the external client: not a node.
    lab.exec('client', 'python3', '-c', SEND_VXLAN, JSON.stringify([{ ...common, kind: 'stranger', src: lab.ips['web-2a'] }]));
    // From node-2's own namespace (its address is a known node): wrong VNI, truncated,
    // and an inner source node-2 cannot own (node-1's pod range, and one off the internet).
    lab.exec('node-2', 'python3', '-c', SEND_VXLAN, JSON.stringify([
      { ...common, kind: 'wrong-vni', src: lab.ips['web-2a'], vni: vni + 1 },
      { ...common, kind: 'truncated-vxlan', src: lab.ips['web-2a'] },
      { ...common, kind: 'spoofed-inner-local', src: lab.ips['web-1a'] },
      { ...common, kind: 'spoofed-inner-internet', src: '8.8.8.8' },
    ]));
  } finally {
    await stop(w);
  }
  const seen = packets(w.file);
  assert.doesNotMatch(seen, /HOSTILE/, `web-1b saw a hostile datagram:\n${seen}`);
  const after = drops();
  const grew = (reason: string): number => (after[reason] ?? 0) - (before[reason] ?? 0);
  assert.equal(grew('unknown-peer'), 1);
  assert.equal(grew('wrong-vni'), 1);
  assert.equal(grew('truncated-vxlan'), 1);
  assert.equal(grew('underlay-spoofed'), 2);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localSteeringSelectors, rangesWithout, selectorArgs } from '../src/agent/local-steering.ts';
import { portBlocks, steeringBatch } from '../src/agent/steering.ts';
import { ipv4, parseIpv6 } from '../src/wire/index.ts';

test('portBlocks covers a range exactly with aligned blocks', () => {
  for (const [lo, hi] of [[30000, 32767], [1, 1], [0, 65535], [80, 443], [30080, 30080]] as const) {
    const covered = new Set<number>();
    for (const b of portBlocks(lo, hi)) {
      const size = (~b.mask & 0xffff) + 1;
      assert.equal(b.value & ~b.mask & 0xffff, 0, 'block start is aligned to its size');
      for (let p = b.value; p < b.value + size; p++) covered.add(p);
    }
    assert.equal(covered.size, hi - lo + 1);
    assert.equal(Math.min(...covered), lo);
    assert.equal(Math.max(...covered), hi);
  }
});

test('steering rules: health checks pass first, node ports and service IPs go to the TUN', () => {
  const lines = steeringBatch('eth0', 'tapir0', {
    nodeIP: ipv4('172.30.0.11'), nodePortRange: { min: 30000, max: 30001 }, healthCheckPorts: [30001], serviceIPs: [ipv4('172.30.0.200'), ipv4('172.30.0.150')],
  });
  assert.deepEqual(lines, [
    // A loopback source from the wire is never steered (the agent takes 127.0.0.0/8 for the node's own processes).
    'filter add dev eth0 ingress prio 5 protocol ip u32 match ip src 127.0.0.0/8 classid :1',
    'filter add dev eth0 ingress prio 10 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 6 0xff match ip dport 30001 0xffff classid :1',
    'filter add dev eth0 ingress prio 20 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 6 0xff match ip dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 20 protocol ip u32 match ip dst 172.30.0.11/32 match ip protocol 17 0xff match ip dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 30 protocol ip u32 match ip dst 172.30.0.150/32 action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 30 protocol ip u32 match ip dst 172.30.0.200/32 action mirred egress redirect dev tapir0',
  ]);
});

test('IPv6 steering: the same rules with ip6 selectors, one priority above IPv4\'s', () => {
  const lines = steeringBatch('eth0', 'tapir0', {
    nodeIP: ipv4('172.30.0.11'), nodePortRange: { min: 30000, max: 30001 }, healthCheckPorts: [30001], serviceIPs: [],
    nodeIPs6: [parseIpv6('fd00:172:30::b')!], serviceIPs6: ['fd00:172:30::c8'],
  });
  assert.deepEqual(lines.filter((l) => l.includes('protocol ipv6')), [
    'filter add dev eth0 ingress prio 6 protocol ipv6 u32 match ip6 src ::1/128 classid :1',
    'filter add dev eth0 ingress prio 11 protocol ipv6 u32 match ip6 dst fd00:172:30::b/128 match ip6 protocol 6 0xff match ip6 dport 30001 0xffff classid :1',
    'filter add dev eth0 ingress prio 21 protocol ipv6 u32 match ip6 dst fd00:172:30::b/128 match ip6 protocol 6 0xff match ip6 dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 21 protocol ipv6 u32 match ip6 dst fd00:172:30::b/128 match ip6 protocol 17 0xff match ip6 dport 30000 0xfffe action mirred egress redirect dev tapir0',
    'filter add dev eth0 ingress prio 31 protocol ipv6 u32 match ip6 dst fd00:172:30::c8/128 action mirred egress redirect dev tapir0',
  ]);
  // Without an IPv6 address or IPv6 service IPs, IPv4's rules alone.
  assert.ok(!steeringBatch('eth0', 'tapir0', { nodeIP: ipv4('172.30.0.11'), nodePortRange: { min: 30000, max: 30001 }, healthCheckPorts: [], serviceIPs: [] }).some((l) => l.includes('ipv6')));
});

test('node-port ranges less the health-check ports', () => {
  assert.deepEqual(rangesWithout(30000, 32767, []), [[30000, 32767]]);
  assert.deepEqual(rangesWithout(30000, 32767, [30000, 31000, 31001, 32767, 31000, 80]), [[30001, 30999], [31002, 32766]]);
  assert.deepEqual(rangesWithout(30000, 30000, [30000]), []);
});

test('policy routing of the node\'s own traffic: node ports on each address (health checks cut out of TCP), each service IP port', () => {
  const selectors = localSteeringSelectors({
    nodePortAddresses: [ipv4('172.30.0.11'), ipv4('127.0.0.1')],
    nodePortRange: { min: 30000, max: 32767 },
    healthCheckPorts: [31500],
    frontends: [
      { ip: ipv4('172.30.0.200'), protocol: 6, port: 80 },
      { ip: ipv4('172.30.0.150'), protocol: 17, port: 53 },
      { ip: ipv4('172.30.0.200'), protocol: 6, port: 80 },
      { ip: ipv4('172.30.0.200'), protocol: 132, port: 9 },
    ],
  });
  assert.deepEqual(selectors.map(selectorArgs), [
    'to 127.0.0.1/32 iif lo ipproto tcp dport 30000-31499',
    'to 127.0.0.1/32 iif lo ipproto tcp dport 31501-32767',
    'to 127.0.0.1/32 iif lo ipproto udp dport 30000-32767',
    'to 172.30.0.11/32 iif lo ipproto tcp dport 30000-31499',
    'to 172.30.0.11/32 iif lo ipproto tcp dport 31501-32767',
    'to 172.30.0.11/32 iif lo ipproto udp dport 30000-32767',
    'to 172.30.0.150/32 iif lo ipproto udp dport 53',
    'to 172.30.0.200/32 iif lo ipproto tcp dport 80',
  ]);
});

test('policy routing of the node\'s own IPv6 traffic: /128 rules on its IPv6 node-port address and IPv6 service IPs', () => {
  const selectors = localSteeringSelectors({
    nodePortAddresses: ['fd00:172:30:0::b'], nodePortRange: { min: 30000, max: 32767 }, healthCheckPorts: [31500],
    frontends: [{ ip: 'fd00:172:30::c8', protocol: 6, port: 80 }, { ip: 'fd00:172:30::c8', protocol: 132, port: 9 }],
  });
  assert.deepEqual(selectors.map(selectorArgs), [
    'to fd00:172:30::b/128 iif lo ipproto tcp dport 30000-31499',
    'to fd00:172:30::b/128 iif lo ipproto tcp dport 31501-32767',
    'to fd00:172:30::b/128 iif lo ipproto udp dport 30000-32767',
    'to fd00:172:30::c8/128 iif lo ipproto tcp dport 80',
  ]);
});

test('a restarted agent replaces the underlay filters make-before-break: the new set in the other band, then the old one removed', async (t) => {
  const { Netns, vethPair } = await import('./helpers/netns.ts');
  const ns = new Netns('st');
  const peer = new Netns('stp');
  t.after(() => { ns.destroy(); peer.destroy(); });
  const [dev] = vethPair(ns, peer, 'stu');
  ns.exec('ip', ['tuntap', 'add', 'dev', 'sttun0', 'mode', 'tun']);
  // Two Steering objects, one after the other, in the namespace: an agent and its successor.
  const script = `
    import { Steering } from ${JSON.stringify(new URL('../src/agent/steering.ts', import.meta.url).pathname)};
    import { execFileSync } from 'node:child_process';
    const prefs = () => [...new Set(JSON.parse(execFileSync('tc', ['-j', 'filter', 'show', 'dev', '${dev}', 'ingress'], { encoding: 'utf8' }) || '[]').map((f) => f.pref))].sort((a, b) => a - b);
    const rules = { nodeIP: 0xac1f0901, nodePortRange: { min: 30000, max: 32767 }, healthCheckPorts: [31000], serviceIPs: [0xac1f09c8] };
    const first = new Steering('${dev}', 'sttun0');
    await first.init();
    await first.apply(rules);
    const a = prefs();
    const second = new Steering('${dev}', 'sttun0');
    await second.init();
    await second.apply(rules);
    const b = prefs();
    await second.apply({ ...rules, serviceIPs: [] });
    const c = prefs();
    // IPv6: tc takes the ip6 selectors too (u32 ip6 dst, protocol, dport).
    await second.apply({ ...rules, nodeIPs6: [new Uint8Array([0xfd, 0, 0x01, 0x72, 0, 0x30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b])], serviceIPs6: ['fd00:172:30::c8'] });
    console.log(JSON.stringify({ a, b, c, d: prefs() }));
  `;
  const out = JSON.parse(ns.exec(process.execPath, ['--input-type=module', '-e', script])) as { a: number[]; b: number[]; c: number[]; d: number[] };
  assert.deepEqual(out.a, [5, 10, 20, 30]);
  assert.deepEqual(out.b, [105, 110, 120, 130], 'the successor\'s set in the other band, the first one gone');
  assert.deepEqual(out.c, [5, 10, 20], 'a changed set goes back to the first band');
  assert.deepEqual(out.d, [105, 106, 110, 111, 120, 121, 130, 131], 'IPv4 and IPv6 rules installed side by side');
});

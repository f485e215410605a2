// Dual-stack and IPv6-only pods end to end: a real `tapir agent` with an IPv6 pod range
// in a node namespace this test makes (an underlay veth to a second namespace, the host
// TUN), and the reference CNI client, cnitool (libcni 1.2.3 and 1.1.2), running the
// installed tapir-cni with host-local style `ranges` as a runtime on that node would.
// What is checked is what the kernel shows: inside the pod, the global IPv6 address
// and the EUI-64 link-local of the pod's MAC, neither tentative, the static default
// route, RAs off; on the node, the host TUN's IPv6 gateway address and routes. The
// agent is restarted under the pods and must bring their IPv6 addresses back.
//
// cnitool keeps its result cache in /var/lib/cni: each call runs in a private mount
// namespace with that directory bound to this test's own folder (as cni-cnitool.test.ts).
import assert from 'node:assert/strict';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ControlClient } from '../src/agent/control-client.ts';
import { macForIpv6 } from '../src/datapath/forwarding.ts';
import { ipv6ToString, linkLocalForMac, macToString, parseIpv6, parseMac } from '../src/wire/address.ts';
import { TAPIR } from './helpers/lab.ts';
import { Netns, uniqueName, vethPair, waitFor } from './helpers/netns.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN_DIR = join(ROOT, 'bin');
const TOOLS = join(ROOT, 'test', 'tools', 'cni');
const CNITOOL = { '1.1.2': join(TOOLS, 'cnitool-1.1.2'), '1.2.3': join(TOOLS, 'cnitool-1.2.3') } as const;
type CnitoolVersion = keyof typeof CNITOOL;

const NODE_IP = '172.31.66.11';
const NODE_IP6 = 'fd00:172:31:66::11';
const POD_CIDR6 = 'fd00:10:244:1::/64';
const GATEWAY6 = 'fd00:10:244:1::1';
const CLUSTER_CIDR6 = 'fd00:10:244::/56';
const SERVICE_CIDR6 = 'fd00:10:96::/112';

interface Run { status: number | null; stdout: string; stderr: string }
interface AddrInfo { family: string; local: string; prefixlen: number; scope: string; tentative?: boolean; dadfailed?: boolean }

describe('dual-stack and IPv6-only pods through cnitool, against a real agent', () => {
  const work = mkdtempSync(join(tmpdir(), 'tapir-cni-ipv6-'));
  const stateDir = join(work, 'state');
  const socket = join(stateDir, 'agent.sock');
  const hostTun = uniqueName('c6t', 15);
  const pods: Netns[] = [];
  let node: Netns;
  let peer: Netns;
  let agent: ChildProcess | null = null;
  let agentLog = '';

  async function startAgent(): Promise<void> {
    agentLog = '';
    const child = node.spawn(TAPIR, ['agent', '--config', join(work, 'agent.yaml'), '--v', '2']);
    agent = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { agentLog += d; });
    // A bound, not a timing check: a loaded machine with a cold compile cache is slow to start.
    await waitFor(() => agentLog.includes('"msg":"ready') || child.exitCode !== null, 90_000);
    assert.equal(child.exitCode, null, agentLog);
  }

  async function stopAgent(): Promise<void> {
    const child = agent;
    if (child === null || child.exitCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => { child.once('exit', r); setTimeout(r, 10_000); });
    agent = null;
  }

  before(async () => {
    node = new Netns('c6n');
    peer = new Netns('c6p');
    const [underlay, other] = vethPair(node, peer, 'c6u');
    node.exec('ip', ['addr', 'add', `${NODE_IP}/24`, 'dev', underlay]);
    node.exec('ip', ['addr', 'add', `${NODE_IP6}/64`, 'dev', underlay, 'nodad']);
    peer.exec('ip', ['addr', 'add', '172.31.66.12/24', 'dev', other]);
    writeFileSync(join(work, 'agent.yaml'), [
      'nodeName: node-1',
      `underlay: {interface: ${underlay}, address: ${NODE_IP}, addressV6: '${NODE_IP6}'}`,
      'podCIDR: 10.244.1.0/24',
      'clusterCIDR: 10.244.0.0/16',
      `podCIDRv6: ${POD_CIDR6}`,
      `clusterCIDRv6: ${CLUSTER_CIDR6}`,
      `serviceCIDRv6: ${SERVICE_CIDR6}`,
      `stateDir: ${stateDir}`,
      `hostTun: ${hostTun}`,
      '',
    ].join('\n'));
    await startAgent();
  });

  after(async () => {
    await stopAgent();
    for (const p of pods) p.destroy();
    node?.destroy();
    peer?.destroy();
    rmSync(work, { recursive: true, force: true });
  });

  /** A network config directory with one conflist, tapir-cni with these ranges. */
  function network(name: string, ranges: object[][], cniVersion = '1.1.0'): string {
    const dir = join(work, `net-${name}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `10-${name}.conflist`), JSON.stringify({
      cniVersion, name,
      plugins: [{ type: 'tapir-cni', controlSocket: socket, ipam: { type: 'tapir-ipam', dataDir: join(work, 'ipam'), ranges, routes: [{ dst: '0.0.0.0/0' }, { dst: '::/0' }] } }],
    }));
    return dir;
  }

  /** cnitool VERB NETWORK NETNS, run as a runtime on the node would run it. */
  function cnitool(version: CnitoolVersion, verb: string, net: string, netconf: string, pod: Netns): Run {
    const cache = join(work, 'cache');
    mkdirSync(cache, { recursive: true });
    const script = 'mount -t tmpfs tapir-cnitool /var/lib && mkdir -p /var/lib/cni && mount --bind "$CACHE" /var/lib/cni && exec "$@"';
    const r = spawnSync('ip', ['netns', 'exec', node.name, 'unshare', '--mount', 'sh', '-c', script, 'sh',
      CNITOOL[version], verb, net, `/var/run/netns/${pod.name}`], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NETCONFPATH: netconf, CNI_PATH: BIN_DIR, CNI_IFNAME: 'eth0', CACHE: cache },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  function pod(): Netns {
    const ns = new Netns('c6');
    pods.push(ns);
    return ns;
  }

  function eth0(ns: Netns): { mac: string; addrs: AddrInfo[] } | null {
    const links = JSON.parse(ns.exec('ip', ['-j', 'addr', 'show'])) as { ifname: string; address: string; addr_info: AddrInfo[] }[];
    const l = links.find((x) => x.ifname === 'eth0');
    return l === undefined ? null : { mac: l.address, addrs: l.addr_info };
  }

  /** What the pod's eth0 must look like for an IPv6 address `ip6` (and `ip4`, or none). */
  function assertPodInterface(ns: Netns, mac: string, ip6: string, ip4: string | null): void {
    const link = eth0(ns);
    assert.ok(link !== null, 'the pod has eth0');
    assert.equal(link.mac, mac);
    const inet = link.addrs.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`);
    assert.deepEqual(inet, ip4 === null ? [] : [ip4]);
    const inet6 = link.addrs.filter((a) => a.family === 'inet6');
    const linkLocal = ipv6ToString(linkLocalForMac(parseMac(mac)!));
    assert.deepEqual(inet6.map((a) => `${a.local}/${a.prefixlen} ${a.scope}`).sort(), [`${ip6} global`, `${linkLocal}/64 link`].sort(),
      'the global address and the EUI-64 link-local of the MAC, nothing else');
    for (const a of inet6) assert.ok(a.tentative !== true && a.dadfailed !== true, `${a.local} is neither tentative nor dadfailed`);
    assert.doesNotMatch(ns.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0']), /tentative|dadfailed/);
    assert.match(ns.exec('ip', ['-6', 'route', 'show', 'default']), new RegExp(`^default via ${GATEWAY6} dev eth0 `, 'm'));
    assert.match(ns.exec('ip', ['-d', 'link', 'show', 'dev', 'eth0']), /addrgenmode eui64/);
    assert.equal(ns.exec('sysctl', ['-n', 'net.ipv6.conf.eth0.accept_ra']).trim(), '0', 'RAs are not accepted in the pod');
    // The gateway's neighbour entry is fixed, so the pod never needs to solicit it.
    assert.match(ns.exec('ip', ['-6', 'neigh', 'show', GATEWAY6, 'dev', 'eth0']), /lladdr 0a:58:0a:f4:01:01 PERMANENT/);
  }

  function ipamFiles(network: string): string[] {
    const dir = join(work, 'ipam', network);
    return existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.') && !f.startsWith('last_')).sort() : [];
  }

  it('the agent puts its IPv6 pod gateway on the host TUN and routes the cluster\'s and the services\' IPv6 ranges into it from there, its own pods\' from underlay.addressV6; status says so', async () => {
    const addrs = node.exec('ip', ['-6', 'addr', 'show', 'dev', hostTun]);
    assert.match(addrs, new RegExp(`inet6 ${GATEWAY6}/128 scope global`));
    assert.doesNotMatch(addrs, /tentative/);
    const routes = node.exec('ip', ['-6', 'route', 'show', 'dev', hostTun]);
    assert.match(routes, new RegExp(`^${CLUSTER_CIDR6} .*src ${GATEWAY6}`, 'm'));
    assert.match(routes, new RegExp(`^${SERVICE_CIDR6} .*src ${GATEWAY6}`, 'm'));
    assert.match(routes, new RegExp(`^${POD_CIDR6} .*src ${NODE_IP6}`, 'm'));
    const status = await new ControlClient(socket).status();
    assert.equal(status.podCIDRv6, POD_CIDR6);
    assert.equal(status.gateway6, GATEWAY6);
    assert.equal(status.podCIDR, '10.244.1.0/24');
  });

  it('cnitool 1.2.3: dual-stack ADD, CHECK; the agent restarts and brings the pod\'s IPv6 back; CHECK again; DEL twice', async () => {
    const net = 'dual';
    const netconf = network(net, [[{ subnet: '10.244.1.0/24' }], [{ subnet: POD_CIDR6 }]]);
    const p = pod();
    const add = cnitool('1.2.3', 'add', net, netconf, p);
    assert.equal(add.status, 0, `add: ${add.stderr}`);
    const result = JSON.parse(add.stdout) as { interfaces: { name: string; mac: string; sandbox: string }[]; ips: { interface: number; address: string; gateway: string }[]; routes: { dst: string; gw?: string }[] };
    assert.deepEqual(result.ips, [
      { interface: 0, address: '10.244.1.2/24', gateway: '10.244.1.1' },
      { interface: 0, address: 'fd00:10:244:1::2/64', gateway: GATEWAY6 },
    ]);
    assert.deepEqual(result.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0', gw: GATEWAY6 }]);
    const mac = result.interfaces[0]!.mac;
    assert.equal(mac, '0a:58:0a:f4:01:02', 'a dual-stack pod keeps the MAC of its IPv4 address');
    assertPodInterface(p, mac, 'fd00:10:244:1::2/64', '10.244.1.2/24');
    assert.deepEqual(ipamFiles(net), ['10.244.1.2', 'fd00:10:244:1::2']);
    const ports = await new ControlClient(socket).listPorts();
    const port = ports.find((x) => x.network === net);
    assert.deepEqual([port?.ip, port?.ip6, port?.prefixLength6, port?.gateway6], ['10.244.1.2', 'fd00:10:244:1::2', 64, GATEWAY6]);
    const check = cnitool('1.2.3', 'check', net, netconf, p);
    assert.equal(check.status, 0, `check: ${check.stderr}`);

    // The agent goes away (SIGTERM keeps the pods' TAPs) and a new one takes them back from its state.
    await stopAgent();
    const state = JSON.parse(readFileSync(join(stateDir, 'ports.json'), 'utf8')) as { ports: { ip6?: string }[] };
    assert.deepEqual(state.ports.map((x) => x.ip6), ['fd00:10:244:1::2'], 'the port\'s state records its IPv6 address');
    await startAgent();
    const restored = (await new ControlClient(socket).listPorts()).find((x) => x.network === net);
    assert.deepEqual([restored?.ip, restored?.ip6, restored?.mac], ['10.244.1.2', 'fd00:10:244:1::2', mac]);
    assertPodInterface(p, mac, 'fd00:10:244:1::2/64', '10.244.1.2/24');
    const recheck = cnitool('1.2.3', 'check', net, netconf, p);
    assert.equal(recheck.status, 0, `check after the restart: ${recheck.stderr}`);

    // CHECK notices a lost IPv6 address.
    p.exec('ip', ['addr', 'del', 'fd00:10:244:1::2/64', 'dev', 'eth0']);
    const damaged = cnitool('1.2.3', 'check', net, netconf, p);
    assert.notEqual(damaged.status, 0);
    assert.match(damaged.stdout + damaged.stderr, /lacks fd00:10:244:1::2\/64/);

    for (const round of [1, 2]) {
      const del = cnitool('1.2.3', 'del', net, netconf, p);
      assert.equal(del.status, 0, `del #${round}: ${del.stderr}`);
    }
    assert.equal(eth0(p), null, 'eth0 is gone after DEL');
    assert.deepEqual(ipamFiles(net), [], 'both addresses released');
  });

  it('cnitool 1.1.2: an IPv6-only pod (a 1.0.0 network) gets its IPv6 MAC, no IPv4 address, ::/0 only; CHECK and DEL', async () => {
    const net = 'v6only';
    const netconf = network(net, [[{ subnet: POD_CIDR6, rangeStart: 'fd00:10:244:1::a:1' }]], '1.0.0');
    const p = pod();
    const add = cnitool('1.1.2', 'add', net, netconf, p);
    assert.equal(add.status, 0, `add: ${add.stderr}`);
    const result = JSON.parse(add.stdout) as { interfaces: { mac: string }[]; ips: { interface: number; address: string; gateway: string }[]; routes: { dst: string }[] };
    assert.deepEqual(result.ips, [{ interface: 0, address: 'fd00:10:244:1::a:1/64', gateway: GATEWAY6 }]);
    assert.deepEqual(result.routes, [{ dst: '::/0', gw: GATEWAY6 }]);
    const mac = result.interfaces[0]!.mac;
    // The datapath's own derivation (its anti-spoofing and neighbour answers use the same function).
    assert.equal(mac, macToString(macForIpv6(parseIpv6('fd00:10:244:1::a:1')!)), 'an IPv6-only pod\'s MAC is macForIpv6 of its address');
    assert.notEqual(mac.slice(0, 5), '0a:58', 'not an IPv4-derived MAC');
    assertPodInterface(p, mac, 'fd00:10:244:1::a:1/64', null);
    assert.equal(p.exec('ip', ['-4', 'route', 'show']).trim(), '', 'no IPv4 route in an IPv6-only pod');
    const port = (await new ControlClient(socket).listPorts()).find((x) => x.network === net);
    assert.deepEqual([port?.ip, port?.prefixLength, port?.gateway, port?.ip6], ['', 0, '', 'fd00:10:244:1::a:1']);
    const check = cnitool('1.1.2', 'check', net, netconf, p);
    assert.equal(check.status, 0, `check: ${check.stderr}`);
    const del = cnitool('1.1.2', 'del', net, netconf, p);
    assert.equal(del.status, 0, `del: ${del.stderr}`);
    assert.equal(eth0(p), null);
    assert.deepEqual(ipamFiles(net), []);
  });

  it('IPv6 traffic through the agent: a pod pings its gateway and another pod (solicited neighbour answered by the agent), the node pings a pod from its gateway address, IPv4 still flows; no IPv6 drop', async () => {
    const net = 'ping';
    const netconf = network(net, [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.50' }], [{ subnet: POD_CIDR6, rangeStart: 'fd00:10:244:1::50' }]]);
    const a = pod();
    const b = pod();
    for (const p of [a, b]) assert.equal(cnitool('1.2.3', 'add', net, netconf, p).status, 0);
    const ping = (ns: Netns | null, dst: string): void => {
      const args = ['-c', '2', '-i', '0.2', '-W', '2', dst];
      if (ns === null) node.exec('ping', args, { timeoutMs: 15_000 });
      else ns.exec('ping', args, { timeoutMs: 15_000 });
    };
    ping(a, GATEWAY6);
    ping(a, 'fd00:10:244:1::51');
    ping(b, 'fd00:10:244:1::50');
    ping(null, 'fd00:10:244:1::51');
    ping(a, '10.244.1.51');
    // b's neighbour entry for a was learnt from the agent's answer: a's MAC, reachable.
    assert.match(b.exec('ip', ['-6', 'neigh', 'show', 'fd00:10:244:1::50']), /lladdr 0a:58:0a:f4:01:32/);
    const stats = await new ControlClient(socket).request({ op: 'stats' });
    const drops = stats.ports.filter((p) => p.kind === 'pod').map((p) => p.drops['ipv6-unsupported'] ?? 0);
    assert.deepEqual(drops.filter((d) => d > 0), [], 'no pod port drops IPv6 as unsupported');
    for (const p of [a, b]) assert.equal(cnitool('1.2.3', 'del', net, netconf, p).status, 0);
  });

  it('the agent refuses an IPv6 address outside its IPv6 pod range (the CNI reports the agent\'s word, nothing stays allocated)', () => {
    const net = 'wrong6';
    const netconf = network(net, [[{ subnet: 'fd00:10:244:2::/64' }]]);
    const p = pod();
    const add = cnitool('1.2.3', 'add', net, netconf, p);
    assert.notEqual(add.status, 0);
    assert.match(add.stdout + add.stderr, /gateway6 fd00:10:244:2::1 is not this node's IPv6 pod gateway fd00:10:244:1::1/);
    assert.equal(eth0(p), null);
    assert.deepEqual(ipamFiles(net), []);
  });

  it('a bad IPv6 agent config stops the agent before it starts, every problem with its field', () => {
    const bad = join(work, 'bad.yaml');
    writeFileSync(bad, [
      'nodeName: node-1',
      `underlay: {interface: lo, address: ${NODE_IP}, addressV6: 10.0.0.1}`,
      'podCIDR: 10.244.1.0/24',
      'clusterCIDR: 10.244.0.0/16',
      'podCIDRv6: fd00:10:244:1::1/64',
      'serviceCIDRv6: fd00:10:96::/112',
      `stateDir: ${join(work, 'bad-state')}`,
      'nodes: [{name: node-2, underlayIP: 172.31.66.12, podCIDR: 10.244.2.0/24, podCIDRv6: fd00:10:244:2::/64}]',
      '',
    ].join('\n'));
    const r = spawnSync('ip', ['netns', 'exec', node.name, TAPIR, 'agent', '--config', bad], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, r.stderr);
    for (const problem of [
      'underlay.addressV6: "10.0.0.1" is an IPv4 address; this field takes IPv6',
      'podCIDRv6: "fd00:10:244:1::1/64" has host bits set: give the network, fd00:10:244:1::/64',
      'serviceCIDRv6: needs podCIDRv6 and clusterCIDRv6',
      'nodes[0].podCIDRv6: needs clusterCIDRv6',
    ]) assert.ok(r.stderr.includes(problem), `stderr names "${problem}":\n${r.stderr}`);
    assert.ok(!existsSync(join(work, 'bad-state')), 'nothing was started');
  });
});

// tapir-cni judged by the reference CNI client, cnitool (libcni 1.1.2, as containerd
// 1.6/1.7 use, and 1.2.3), against a real agent: the one a lab runs on node-1, with its
// datapath forwarding for the lab's own pods while these tests add and remove others.
//
// cnitool keeps its result cache in /var/lib/cni; each call runs in a private mount
// namespace with that directory bound to this test's own folder, so nothing is left on
// the machine and two runs cannot see each other's attachments.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Lab, tapir } from './helpers/lab.ts';
import { Netns } from './helpers/netns.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN_DIR = join(ROOT, 'bin');
// The reference client's binaries are vendored with their provenance (test/tools/cni/README.md).
const TOOLS = join(ROOT, 'test', 'tools', 'cni');
const CNITOOL = { '1.1.2': join(TOOLS, 'cnitool-1.1.2'), '1.2.3': join(TOOLS, 'cnitool-1.2.3') } as const;
type CnitoolVersion = keyof typeof CNITOOL;
const SHIPPED = JSON.parse(readFileSync(join(ROOT, 'deploy/cni/10-tapir.conflist'), 'utf8')) as Record<string, unknown>;

interface Run { status: number | null; stdout: string; stderr: string }

describe('tapir-cni under cnitool, against a running agent', () => {
  const lab = new Lab('tcc');
  const work = mkdtempSync(join(tmpdir(), 'tapir-cnitool-'));
  const pods: Netns[] = [];
  let nodeNetns = '';
  let socket = '';

  before(() => {
    lab.up();
    const node = lab.status().nodes.find((n: { name: string }) => n.name === 'node-1');
    nodeNetns = node.netns;
    socket = node.agent.controlSocket;
  });
  after(() => {
    for (const p of pods) p.destroy();
    lab.down();
    rmSync(work, { recursive: true, force: true });
  });

  let networks = 0;
  /**
   * A network config directory with one conflist: the shipped one, pointed at this lab's
   * agent. The lab's own pods hold the low addresses of node-1's pod CIDR (10.244.1.0/24),
   * so each network here gets its own block of ten from .100 up, as an operator would give
   * two networks that share a node's pod CIDR disjoint ranges.
   */
  function network(name: string, overrides: Record<string, unknown> = {}): string {
    const dir = join(work, `net-${name}`);
    mkdirSync(dir, { recursive: true });
    const first = 100 + 10 * networks++;
    const plugins = (SHIPPED.plugins as Record<string, unknown>[]).map((p) => ({
      ...p,
      controlSocket: socket,
      ipam: {
        ...(p.ipam as Record<string, unknown>),
        dataDir: join(work, `ipam-${name}`),
        subnet: '10.244.1.0/24', rangeStart: `10.244.1.${first}`, rangeEnd: `10.244.1.${first + 9}`,
      },
    }));
    writeFileSync(join(dir, `10-${name}.conflist`), JSON.stringify({ ...SHIPPED, name, plugins, ...overrides }));
    return dir;
  }

  /** cnitool VERB NETWORK NETNS, run as a runtime on node-1 would run it. */
  function cnitool(version: CnitoolVersion, verb: string, net: string, netconf: string, pod: Netns): Run {
    const cache = join(work, 'cache');
    mkdirSync(cache, { recursive: true });
    // Private mount namespace: /var/lib becomes an empty tmpfs with our cache bound at
    // /var/lib/cni, for this process and the plugins it runs only.
    const script = 'mount -t tmpfs tapir-cnitool /var/lib && mkdir -p /var/lib/cni && mount --bind "$CACHE" /var/lib/cni && exec "$@"';
    const r = spawnSync('ip', ['netns', 'exec', nodeNetns, 'unshare', '--mount', 'sh', '-c', script, 'sh',
      CNITOOL[version], verb, net, `/var/run/netns/${pod.name}`], {
      encoding: 'utf8',
      timeout: 30_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NETCONFPATH: netconf, CNI_PATH: BIN_DIR, CNI_IFNAME: 'eth0', CACHE: cache },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  function pod(): Netns {
    const ns = new Netns('cc');
    pods.push(ns);
    return ns;
  }

  function eth0Inet(ns: Netns): string | null {
    const links = JSON.parse(ns.exec('ip', ['-j', 'addr', 'show'])) as { ifname: string; addr_info: { family: string; local: string }[] }[];
    return links.find((l) => l.ifname === 'eth0')?.addr_info.find((a) => a.family === 'inet')?.local ?? null;
  }

  function agentAnswers(): boolean {
    const node = lab.status().nodes.find((n: { name: string }) => n.name === 'node-1');
    return node.agent.running === true && node.agent.answers === true;
  }

  for (const version of ['1.1.2', '1.2.3'] as const) {
    it(`cnitool ${version}: ADD, CHECK, DEL, DEL again with the shipped conflist; the pod reaches the lab's pods`, () => {
      const net = `tapir-${version.replaceAll('.', '')}`;
      const netconf = network(net);
      const p = pod();
      const add = cnitool(version, 'add', net, netconf, p);
      assert.equal(add.status, 0, `add: ${add.stderr}`);
      const result = JSON.parse(add.stdout) as { cniVersion: string; ips: { address: string }[] };
      const ip = eth0Inet(p);
      assert.ok(ip !== null, 'eth0 has an IPv4 address');
      assert.equal(result.ips[0]?.address.split('/')[0], ip);
      // Through the agent's datapath: a lab pod on the other node answers.
      const echo = p.exec('curl', ['-sS', '--max-time', '5', `http://${lab.ips['web-2a']}:8080/x`]);
      assert.equal(clientAddress(echo), ip);
      const check = cnitool(version, 'check', net, netconf, p);
      assert.equal(check.status, 0, `check: ${check.stderr}`);
      for (const round of [1, 2]) {
        const del = cnitool(version, 'del', net, netconf, p);
        assert.equal(del.status, 0, `del #${round}: ${del.stderr}`);
      }
      assert.equal(eth0Inet(p), null, 'eth0 is gone after DEL');
    });
  }

  it('cnitool 1.2.3 STATUS answers for a 1.1.0 network', () => {
    const netconf = network('tapir-status', { cniVersion: '1.1.0' });
    const r = cnitool('1.2.3', 'status', 'tapir-status', netconf, pod());
    assert.equal(r.status, 0, r.stderr);
  });

  it('GC on one network leaves the pods of another network on the same agent alone', () => {
    const confA = network('net-a', { cniVersion: '1.1.0' });
    const confB = network('net-b', { cniVersion: '1.1.0' });
    const podA = pod();
    const podB = pod();
    assert.equal(cnitool('1.2.3', 'add', 'net-a', confA, podA).status, 0);
    const addB = cnitool('1.2.3', 'add', 'net-b', confB, podB);
    assert.equal(addB.status, 0, addB.stderr);
    const ipB = eth0Inet(podB);
    const gc = cnitool('1.2.3', 'gc', 'net-a', confA, podA);
    assert.equal(gc.status, 0, gc.stderr);
    assert.equal(eth0Inet(podA), null, 'net-a attachment removed by GC');
    assert.equal(eth0Inet(podB), ipB, 'net-b pod keeps its eth0');
    const echo = podB.exec('curl', ['-sS', '--max-time', '5', `http://${lab.ips['web-1a']}:8080/x`]);
    assert.equal(clientAddress(echo), ipB);
    assert.equal(cnitool('1.2.3', 'check', 'net-b', confB, podB).status, 0);
    assert.equal(cnitool('1.2.3', 'del', 'net-b', confB, podB).status, 0);
  });

  it('a conflicting ADD (same container and interface, another netns) is refused and the running pod keeps its address', () => {
    const netconf = network('tapir-conflict');
    const first = pod();
    const add = cnitool('1.2.3', 'add', 'tapir-conflict', netconf, first);
    assert.equal(add.status, 0, add.stderr);
    const ip = eth0Inet(first)!;
    // cnitool names the container after the netns path, so a second ADD with the same
    // container id but another netns is sent the way a runtime would: the plugin binary
    // with the CNI environment and the network config on stdin.
    const conflist = JSON.parse(readFileSync(join(netconf, '10-tapir-conflict.conflist'), 'utf8')) as { cniVersion: string; name: string; plugins: object[] };
    const config = { cniVersion: conflist.cniVersion, name: conflist.name, ...conflist.plugins[0] };
    const containerId = cnitoolContainerId(first);
    const second = pod();
    const r = spawnSync(join(BIN_DIR, 'tapir-cni'), [], {
      input: JSON.stringify(config), encoding: 'utf8', timeout: 30_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_NETNS: `/var/run/netns/${second.name}`, CNI_IFNAME: 'eth0', CNI_PATH: BIN_DIR },
    });
    assert.notEqual(r.status, 0, 'the conflicting ADD fails');
    assert.equal(eth0Inet(first), ip, 'the running pod keeps its eth0 address');
    const check = cnitool('1.2.3', 'check', 'tapir-conflict', netconf, first);
    assert.equal(check.status, 0, `CHECK of the running pod after the refused ADD: ${check.stderr}`);
    // The address is still taken: a new pod gets another one.
    const third = pod();
    assert.equal(cnitool('1.2.3', 'add', 'tapir-conflict', netconf, third).status, 0);
    assert.notEqual(eth0Inet(third), ip, 'a later pod is not handed the running pod\'s address');
    for (const p of [first, third]) assert.equal(cnitool('1.2.3', 'del', 'tapir-conflict', netconf, p).status, 0);
  });

  it('a pod whose namespace is deleted before DEL does not take the agent or the other pods down, and DEL succeeds', () => {
    const netconf = network('tapir-gone');
    const doomed = pod();
    assert.equal(cnitool('1.2.3', 'add', 'tapir-gone', netconf, doomed).status, 0);
    const survivor = pod();
    assert.equal(cnitool('1.2.3', 'add', 'tapir-gone', netconf, survivor).status, 0);
    const survivorIp = eth0Inet(survivor);
    doomed.destroy();
    // Give the datapath time to poll the dead port (the crash it used to have came within 50 ms).
    spawnSync('sleep', ['1']);
    assert.ok(agentAnswers(), 'the agent still runs and answers on its control socket');
    const echo = survivor.exec('curl', ['-sS', '--max-time', '5', `http://${lab.ips['web-2b']}:8080/x`]);
    assert.equal(clientAddress(echo), survivorIp, 'another pod on the node still forwards');
    const ping = lab.run('web-1a', 'ping', '-c', '1', '-W', '2', lab.ips['web-1b']!);
    assert.equal(ping.status, 0, 'the lab\'s own pods on that node still forward');
    const del = cnitool('1.2.3', 'del', 'tapir-gone', netconf, doomed);
    assert.equal(del.status, 0, `DEL after the namespace is gone: ${del.stderr}`);
    // The same with only the pod's eth0 deleted (ip link del inside the pod).
    const stripped = pod();
    assert.equal(cnitool('1.2.3', 'add', 'tapir-gone', netconf, stripped).status, 0);
    stripped.exec('ip', ['link', 'del', 'eth0']);
    spawnSync('sleep', ['1']);
    assert.ok(agentAnswers(), 'the agent survives a deleted eth0');
    assert.equal(clientAddress(survivor.exec('curl', ['-sS', '--max-time', '5', `http://${lab.ips['web-2b']}:8080/x`])), survivorIp);
    assert.equal(cnitool('1.2.3', 'del', 'tapir-gone', netconf, stripped).status, 0, 'DEL after eth0 was deleted');
    assert.equal(cnitool('1.2.3', 'del', 'tapir-gone', netconf, survivor).status, 0);
    const stats = tapir(['stats', '--lab', lab.name, '--node', 'node-1']);
    assert.equal(stats.status, 0, stats.stderr);
  });
});

/** The address the lab's HTTP echo saw the request come from ("ip:port"). */
function clientAddress(echo: string): string {
  const client = (JSON.parse(echo) as { client: string }).client;
  return client.slice(0, client.lastIndexOf(':'));
}

/** cnitool's container id: "cnitool-" and the first 10 bytes of sha512(netns path), in hex. */
function cnitoolContainerId(ns: Netns): string {
  return `cnitool-${createHash('sha512').update(`/var/run/netns/${ns.name}`).digest('hex').slice(0, 20)}`;
}

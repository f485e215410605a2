// The policy routing that brings the node's own traffic to node ports and service IPs
// into the host TUN (src/agent/local-steering.ts), run by the real `ip` in a namespace of
// the test's own: which routes the kernel then picks, what a restarted agent changes, and
// that --remove-ports leaves the rules as they were. A veth end stands in for the TUN (the
// routing does not care what the device is; test/lab-services-tapir.test.ts runs the
// whole path with the agent and real clients).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Netns } from './helpers/netns.ts';

const NODE = '172.31.9.11';
const STEER = new URL('../src/agent/local-steering.ts', import.meta.url).href;
const NODE_SCRIPT = new URL('../scripts/node', import.meta.url).pathname;

const ns = new Netns('lst');
after(() => ns.destroy());
ns.exec('ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']);
ns.exec('ip', ['link', 'add', 'tun0', 'type', 'veth', 'peer', 'name', 'tun0p']);
ns.exec('ip', ['addr', 'add', `${NODE}/24`, 'dev', 'eth0']);
for (const dev of ['eth0', 'eth0p', 'tun0', 'tun0p']) ns.exec('ip', ['link', 'set', dev, 'up']);
const pristine = ns.exec('ip', ['rule', 'show']);

/** One agent's turn, in a process of its own inside the namespace: init, then `apply` or `remove`. */
function agent(localhost: boolean, then: { apply: object } | 'remove'): void {
  const step = then === 'remove' ? 'await s.remove();' : `await s.apply(${JSON.stringify(then.apply)});`;
  const code = `import { LocalSteering } from '${STEER}';
const s = new LocalSteering('tun0', 0x${Buffer.from(NODE.split('.').map(Number)).toString('hex')}, ${localhost});
${then === 'remove' ? '' : 'await s.init();'}
${step}`;
  ns.exec(NODE_SCRIPT, ['--input-type=module', '-e', code]);
}

const ip = (a: string): number => a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const routeGet = (...args: string[]): string => ns.exec('ip', ['route', 'get', ...args]).split('\n')[0]!.trim();
const rules = (): string[] => ns.exec('ip', ['rule', 'show']).trim().split('\n').map((l) => l.replace(/\s+/g, ' '));

test('the node\'s own packets to node ports, 127.0.0.1 and service IP ports route into the TUN; everything else stays local', () => {
  agent(true, { apply: { nodePortAddresses: [ip(NODE), ip('127.0.0.1')], nodePortRange: { min: 30000, max: 32767 }, healthCheckPorts: [31000], frontends: [{ ip: ip('172.31.9.200'), protocol: 6, port: 80 }] } });
  assert.deepEqual(rules(), [
    `0: from all to 127.0.0.1 iif lo ipproto tcp dport 30000-30999 lookup 8277`,
    `0: from all to 127.0.0.1 iif lo ipproto tcp dport 31001-32767 lookup 8277`,
    `0: from all to 127.0.0.1 iif lo ipproto udp dport 30000-32767 lookup 8277`,
    `0: from all to ${NODE} iif lo ipproto tcp dport 30000-30999 lookup 8277`,
    `0: from all to ${NODE} iif lo ipproto tcp dport 31001-32767 lookup 8277`,
    `0: from all to ${NODE} iif lo ipproto udp dport 30000-32767 lookup 8277`,
    '0: from all to 172.31.9.200 iif lo ipproto tcp dport 80 lookup 8277',
    '1: from all lookup local',
    '32766: from all lookup main',
    '32767: from all lookup default',
  ]);
  assert.match(routeGet(NODE, 'ipproto', 'tcp', 'dport', '30080'), new RegExp(`^${NODE} dev tun0 table 8277 src ${NODE}`));
  assert.match(routeGet(NODE, 'ipproto', 'udp', 'dport', '30053'), /dev tun0 table 8277/);
  assert.match(routeGet('127.0.0.1', 'ipproto', 'tcp', 'dport', '30080'), /^127\.0\.0\.1 dev tun0 table 8277 src 127\.0\.0\.1/);
  assert.match(routeGet('172.31.9.200', 'ipproto', 'tcp', 'dport', '80'), /dev tun0 table 8277 src 172\.31\.9\.11/);
  // Left alone: other ports, the health-check node port, the service IP's other ports.
  assert.match(routeGet(NODE, 'ipproto', 'tcp', 'dport', '8080'), /^local .* table local/);
  assert.match(routeGet(NODE, 'ipproto', 'tcp', 'dport', '31000'), /^local .* table local/);
  assert.match(routeGet('127.0.0.1', 'ipproto', 'tcp', 'dport', '22'), /^local .* table local/);
  assert.doesNotMatch(routeGet('172.31.9.200', 'ipproto', 'tcp', 'dport', '443'), /tun0/);
  // Only on the TUN, and only the TUN's: nothing of `all` or `default`.
  assert.equal(ns.exec('sysctl', ['-n', 'net.ipv4.conf.tun0.route_localnet']).trim(), '1');
  assert.equal(ns.exec('sysctl', ['-n', 'net.ipv4.conf.all.route_localnet']).trim(), '0');
  assert.equal(ns.exec('sysctl', ['-n', 'net.ipv4.conf.eth0.route_localnet']).trim(), '0');
});

test('a restarted agent changes only what differs: new rules in front of the local rule, stale ones gone, localhost off', () => {
  agent(false, { apply: { nodePortAddresses: [ip(NODE)], nodePortRange: { min: 30000, max: 32767 }, healthCheckPorts: [], frontends: [{ ip: ip('172.31.9.200'), protocol: 6, port: 80 }, { ip: ip('172.31.9.201'), protocol: 17, port: 53 }] } });
  assert.deepEqual(rules(), [
    `0: from all to ${NODE} iif lo ipproto udp dport 30000-32767 lookup 8277`,
    '0: from all to 172.31.9.200 iif lo ipproto tcp dport 80 lookup 8277',
    `0: from all to ${NODE} iif lo ipproto tcp dport 30000-32767 lookup 8277`,
    '0: from all to 172.31.9.201 iif lo ipproto udp dport 53 lookup 8277',
    '1: from all lookup local',
    '32766: from all lookup main',
    '32767: from all lookup default',
  ]);
  assert.match(routeGet(NODE, 'ipproto', 'tcp', 'dport', '31000'), /dev tun0 table 8277/);
  assert.match(routeGet('127.0.0.1', 'ipproto', 'tcp', 'dport', '30080'), /^local .* table local/);
  assert.equal(ns.exec('sysctl', ['-n', 'net.ipv4.conf.tun0.route_localnet']).trim(), '0');
  assert.equal(ns.exec('ip', ['route', 'show', 'table', '8277']).trim(), `default dev tun0 scope link src ${NODE}`);
  // The same rules again: nothing to do, nothing touched.
  agent(false, { apply: { nodePortAddresses: [ip(NODE)], nodePortRange: { min: 30000, max: 32767 }, healthCheckPorts: [], frontends: [{ ip: ip('172.31.9.201'), protocol: 17, port: 53 }, { ip: ip('172.31.9.200'), protocol: 6, port: 80 }] } });
  assert.equal(rules().length, 7);
});

test('--remove-ports: every rule and route goes and the local rule is back at 0, as before the agent', () => {
  agent(false, 'remove');
  assert.equal(ns.exec('ip', ['rule', 'show']), pristine);
  assert.equal(ns.exec('ip', ['route', 'show', 'table', '8277']).trim(), '');
  assert.match(routeGet(NODE, 'ipproto', 'tcp', 'dport', '30080'), /^local .* table local/);
  // Removing twice finds nothing to remove.
  agent(false, 'remove');
  assert.equal(ns.exec('ip', ['rule', 'show']), pristine);
});

// The lab's Tapir dataplane path: agent config, one agent per node namespace started
// detached, readiness over the control socket, pods attached with the real tapir-cni
// (CNI_* environment, config on stdin, result parsed), CNI DEL and SIGTERM on down.
//
// 1. With a stand-in agent: the real control server (src/agent/control-server.ts)
//    answering, kernel veths and VXLAN underneath. It tests the lab and the CNI plugin,
//    not the agent's datapath.
// 2. With the real agent (`tapir agent`), once src/cli/agent.ts exists: end to end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = new URL('..', import.meta.url).pathname;
const TAPIR = join(ROOT, 'bin/tapir');

function tapir(args: string[], env: NodeJS.ProcessEnv = process.env): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(TAPIR, args, { encoding: 'utf8', timeout: 90_000, env });
}

function leftovers(lab: string): { netns: string[]; pids: string[]; dir: boolean } {
  const netns = readdirSync('/run/netns').filter((n) => n.startsWith(`tl-${lab}-`));
  const pids = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).filter((pid) => {
    try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(`/run/tapir/lab/${lab}/`); } catch { return false; }
  });
  return { netns, pids, dir: existsSync(`/run/tapir/lab/${lab}`) };
}

/** Pod-to-pod checks shared by both variants; returns the status JSON. */
function checkLab(lab: string, env: NodeJS.ProcessEnv): { pods: { name: string; ip: string; mac: string }[] } {
  const status = JSON.parse(tapir(['lab', 'status', '--name', lab, '--json'], env).stdout);
  const ip = Object.fromEntries(status.pods.map((p: { name: string; ip: string }) => [p.name, p.ip]));
  const exec = (target: string, ...argv: string[]): string => {
    const r = tapir(['lab', 'exec', '--name', lab, target, '--', ...argv], env);
    assert.equal(r.status, 0, `${target} ${argv.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const cross = JSON.parse(exec('web-1a', 'curl', '-sS', '--max-time', '3', `http://${ip['web-2b']}:8080/`));
  assert.equal(cross.pod, 'web-2b');
  assert.ok(cross.client.startsWith(`${ip['web-1a']}:`), `no NAT between pods: ${cross.client}`);
  const same = JSON.parse(exec('web-1b', 'curl', '-sS', '--max-time', '3', `http://${ip['web-1a']}:8080/`));
  assert.ok(same.client.startsWith(`${ip['web-1b']}:`), same.client);
  assert.equal(exec('web-2a', 'timeout', '3', 'bash', '-c', `exec 3<>/dev/udp/${ip['web-1b']}/9000; printf udp >&3; head -c 3 <&3`), 'udp');
  exec('node-2', 'ping', '-c', '1', '-W', '2', ip['web-1a']);
  return status;
}

const STUB_AGENT = `
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { ControlServer } from '${ROOT}src/agent/control-server.ts';
import { parse } from '${ROOT}node_modules/yaml/dist/index.js';

const cfg = parse(readFileSync(process.argv[process.argv.indexOf('--config') + 1], 'utf8'));
const ip = (...a) => execFileSync('ip', a, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const [net, len] = cfg.podCIDR.split('/');
const gw = net.replace(/\\.0$/, '.1');
const vtep = (i) => '0e:74:6c:00:00:0' + i;
const self = cfg.nodes.findIndex((n) => n.name === cfg.nodeName) + 1;
ip('link', 'add', 'cni0', 'mtu', String(cfg.mtu), 'type', 'bridge');
ip('addr', 'add', gw + '/' + len, 'dev', 'cni0');
ip('link', 'set', 'cni0', 'up');
ip('link', 'add', 'vxlan0', 'type', 'vxlan', 'id', String(cfg.vni), 'dstport', '4789', 'local', cfg.underlay.address, 'dev', cfg.underlay.interface, 'nolearning');
ip('link', 'set', 'vxlan0', 'address', vtep(self), 'mtu', String(cfg.mtu), 'up');
ip('addr', 'add', net + '/32', 'dev', 'vxlan0');
cfg.nodes.forEach((n, i) => {
  if (n.name === cfg.nodeName) return;
  const remote = n.podCIDR.split('/')[0];
  ip('route', 'add', n.podCIDR, 'via', remote, 'dev', 'vxlan0', 'onlink');
  ip('neigh', 'add', remote, 'lladdr', vtep(i + 1), 'dev', 'vxlan0', 'nud', 'permanent');
  execFileSync('bridge', ['fdb', 'append', vtep(i + 1), 'dev', 'vxlan0', 'dst', n.underlayIP]);
});
const ports = new Map();
const server = await ControlServer.listen({
  path: cfg.controlSocket,
  handler: {
    status: () => ({ node: cfg.nodeName, podCIDR: cfg.podCIDR, gateway: gw, mtu: cfg.mtu, ports: ports.size }),
    addPort: (req) => {
      const key = req.containerId + '/' + req.ifName;
      if (ports.has(key)) return ports.get(key);
      const hostName = 'tp' + req.containerId.slice(0, 8);
      const mac = ['0a', '58', ...req.ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0'))].join(':');
      const ns = basename(req.netns);
      ip('link', 'add', hostName, 'mtu', String(cfg.mtu), 'type', 'veth', 'peer', 'name', req.ifName, 'netns', ns);
      ip('link', 'set', hostName, 'master', 'cni0', 'up');
      ip('-n', ns, 'link', 'set', req.ifName, 'address', mac, 'mtu', String(cfg.mtu), 'up');
      ip('-n', ns, 'addr', 'add', req.ip + '/' + req.prefixLength, 'dev', req.ifName);
      ip('-n', ns, 'route', 'add', 'default', 'via', req.gateway);
      const port = { containerId: req.containerId, ifName: req.ifName, hostName, mac, netns: req.netns, ip: req.ip, prefixLength: req.prefixLength, gateway: req.gateway, mtu: cfg.mtu };
      ports.set(key, port);
      return port;
    },
    delPort: (req) => {
      const port = ports.get(req.containerId + '/' + req.ifName);
      if (port === undefined) return;
      ip('link', 'del', port.hostName);
      ports.delete(req.containerId + '/' + req.ifName);
      console.log('delPort ' + req.containerId);
    },
    checkPort: () => {},
    listPorts: () => [...ports.values()],
  },
});
process.on('SIGTERM', () => { console.log('SIGTERM with ' + ports.size + ' ports'); process.exit(0); });
`;

test('tapir dataplane plumbing with a stand-in agent and the real tapir-cni', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lab-tapir-'));
  const lab = `lts${randomBytes(3).toString('hex')}`;
  try {
    // Plain JS (.mjs): the stand-in needs no types and must not depend on type stripping flags.
    writeFileSync(join(dir, 'stub-agent.mjs'), STUB_AGENT);
    writeFileSync(join(dir, 'tapir'), `#!/bin/sh\n[ "$1" = agent ] && shift\nexec "${process.execPath}" "${dir}/stub-agent.mjs" "$@"\n`);
    chmodSync(join(dir, 'tapir'), 0o755);
    const env = { ...process.env, TAPIR_LAB_TAPIR_BIN: join(dir, 'tapir') };
    // The manifest mode: the stand-in reads its node's fields from agent.yaml (cluster
    // mode takes them from the Node object, which only the real agent reads).
    const up = tapir(['lab', 'up', '--name', lab, '--source', 'manifests'], env);
    assert.equal(up.status, 0, up.stderr);
    assert.match(up.stderr, /CNI ADD for 4 pods/);
    const state = JSON.parse(readFileSync(`/run/tapir/lab/${lab}/state.json`, 'utf8'));
    const config = readFileSync(state.nodes[1].agent.config, 'utf8');
    for (const line of ['nodeName: node-2', 'podCIDR: 10.244.2.0/24', 'mtu: 1450', 'vni: 4242', `controlSocket: /run/tapir/lab/${lab}/nodes/node-2/agent.sock`]) {
      assert.ok(config.includes(line), `agent.yaml lacks "${line}":\n${config}`);
    }
    for (const pod of state.pods) {
      assert.equal(pod.cniAdded, true);
      assert.match(pod.ip, pod.node === 'node-1' ? /^10\.244\.1\.\d+$/ : /^10\.244\.2\.\d+$/, 'tapir-ipam allocates from the node podCIDR');
      assert.equal(pod.hostDevice, `tp${pod.containerId.slice(0, 8)}`, 'TAP name from listPorts');
      assert.match(pod.mac, /^0a:58:0a:f4:0[12]:/);
    }
    const status = checkLab(lab, env);
    assert.equal(status.pods.length, 4);
    const agentLog = state.nodes[0].agent.log;
    const down = tapir(['lab', 'down', '--name', lab], env);
    assert.equal(down.status, 0, down.stderr);
    assert.match(down.stderr, /CNI DEL for pods[\s\S]*stopping 2 agents/);
    assert.deepEqual(leftovers(lab), { netns: [], pids: [], dir: false });
    assert.equal(existsSync(agentLog), false);
  } finally {
    tapir(['lab', 'down', '--name', lab]);
    rmSync(dir, { recursive: true, force: true });
  }
});

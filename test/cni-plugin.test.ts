// bin/tapir-cni run exactly as a container runtime runs it (CNI_* variables, config on
// stdin, result or error on stdout, exit status), against a control server in this
// process whose handler records the calls. No kernel devices here: see cni-netns.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, beforeEach, describe, it } from 'node:test';
import { ControlServer, type ControlHandler } from '../src/agent/control-server.ts';
import { ControlError, ControlErrorCode, type ControlRequest, type PortInfo, type StatusInfo } from '../src/agent/protocol.ts';

const BIN = fileURLToPath(new URL('../bin/tapir-cni', import.meta.url));
const CNI_PATH = `${dirname(BIN)}:/usr/lib/cni`;
const root = mkdtempSync(join(tmpdir(), 'tapir-cni-'));
const SOCKET = join(root, 'agent.sock');
const FAKE_NETNS = join(root, 'netns-file'); // exists; nothing looks inside it at unit level
writeFileSync(FAKE_NETNS, '');
let dataDir = '';

interface CniRun { code: number | null; stdout: string; stderr: string; json: Record<string, any> | null }

function runCni(command: string, config: object | string, env: Record<string, string | undefined> = {}): Promise<CniRun> {
  const full: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  const vars: Record<string, string | undefined> = {
    CNI_COMMAND: command, CNI_CONTAINERID: 'c1', CNI_NETNS: FAKE_NETNS, CNI_IFNAME: 'eth0', CNI_PATH,
    CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0', ...env,
  };
  for (const [k, v] of Object.entries(vars)) if (v !== undefined) full[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, [], { env: full, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, any> | null = null;
      try { json = stdout.trim() === '' ? null : JSON.parse(stdout); } catch { json = null; }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(typeof config === 'string' ? config : JSON.stringify(config));
  });
}

function conf(overrides: Record<string, unknown> = {}, ipam: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: '1.1.0', name: 'tapir', type: 'tapir-cni', controlSocket: SOCKET,
    ipam: { type: 'tapir-ipam', subnet: '10.244.1.0/24', dataDir, ...ipam }, ...overrides,
  };
}

/** Fake agent: remembers ports like the real one would, records every request. */
class RecordingAgent implements ControlHandler {
  calls: ControlRequest[] = [];
  ports = new Map<string, PortInfo>();
  podCIDR = '10.244.1.0/24';
  podCIDRv6: string | null = null;
  refuseAdd = false;
  status(): StatusInfo {
    this.calls.push({ op: 'status' });
    const gw = this.podCIDR.replace(/\.0\/\d+$/, '.1');
    const v6 = this.podCIDRv6 === null ? {} : { podCIDRv6: this.podCIDRv6, gateway6: this.podCIDRv6.replace(/::\/\d+$/, '::1') };
    return { node: 'node-1', pid: process.pid, podCIDR: this.podCIDR, gateway: gw, ...v6, mtu: 1450, ports: this.ports.size };
  }
  addPort(r: Extract<ControlRequest, { op: 'addPort' }>): PortInfo {
    this.calls.push(r);
    if (this.refuseAdd) throw new ControlError(ControlErrorCode.conflict, `${r.netns} already has an interface named ${r.ifName}`);
    const mac = `0a:58:${(r.ip ?? '0.0.0.0').split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join(':')}`;
    const p: PortInfo = { containerId: r.containerId, ifName: r.ifName, hostName: 'tp12345678', mac, netns: r.netns, ip: r.ip ?? '', prefixLength: r.prefixLength ?? 0, gateway: r.gateway ?? '', mtu: 1450, network: r.network ?? '' };
    if (r.ip6 !== undefined) Object.assign(p, { ip6: r.ip6, prefixLength6: r.prefixLength6, gateway6: r.gateway6 });
    this.ports.set(`${r.containerId}/${r.ifName}`, p);
    return p;
  }
  delPort(r: Extract<ControlRequest, { op: 'delPort' }>): void {
    this.calls.push(r);
    this.ports.delete(`${r.containerId}/${r.ifName}`);
  }
  checkPort(r: Extract<ControlRequest, { op: 'checkPort' }>): void {
    this.calls.push(r);
    const p = this.ports.get(`${r.containerId}/${r.ifName}`);
    if (p === undefined) throw new ControlError(ControlErrorCode.notFound, `no port for ${r.containerId}/${r.ifName}`);
  }
  listPorts(): PortInfo[] {
    this.calls.push({ op: 'listPorts' });
    return [...this.ports.values()];
  }
  ops(): string[] { return this.calls.map((c) => ('containerId' in c ? `${c.op} ${c.containerId}` : c.op)); }
}

const agent = new RecordingAgent();
let server: ControlServer;
before(async () => { server = await ControlServer.listen({ path: SOCKET, handler: agent }); });
after(async () => { await server.close(); rmSync(root, { recursive: true, force: true }); });
beforeEach(() => {
  dataDir = mkdtempSync(join(root, 'ipam-'));
  agent.calls = [];
  agent.ports.clear();
  agent.podCIDR = '10.244.1.0/24';
  agent.podCIDRv6 = null;
  agent.refuseAdd = false;
});

function allocations(network = 'tapir'): Record<string, string> {
  const dir = join(dataDir, network);
  if (!existsSync(dir)) return {};
  const out: Record<string, string> = {};
  for (const f of readdirSync(dir)) if (/^\d+\.\d+\.\d+\.\d+$/.test(f)) out[f] = readFileSync(join(dir, f), 'utf8');
  return out;
}

function assertError(r: CniRun, code: number, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit status; stdout: ${r.stdout}`);
  assert.equal(r.json?.code, code, `error code; stdout: ${r.stdout}`);
  assert.equal(typeof r.json?.msg, 'string');
  assert.equal(typeof r.json?.cniVersion, 'string');
  assert.match(`${r.json?.msg} ${r.json?.details ?? ''}`, pattern);
}

describe('tapir-cni VERSION and input errors', { concurrency: true }, () => {
  it('VERSION lists the supported spec versions', async () => {
    const r = await runCni('VERSION', '{"cniVersion":"1.1.0"}', { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined });
    assert.equal(r.code, 0);
    assert.deepEqual(r.json, { cniVersion: '1.1.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  });

  it('bad config JSON is code 6', async () => assertError(await runCni('ADD', '{"cniVersion": "1.1.0",'), 6, /decode.*JSON/s));
  it('ADD without CNI_NETNS is code 4 naming the variable', async () => assertError(await runCni('ADD', conf(), { CNI_NETNS: undefined }), 4, /CNI_NETNS/));
  it('ADD with a netns that does not exist is code 4', async () => assertError(await runCni('ADD', conf(), { CNI_NETNS: join(root, 'nope') }), 4, /CNI_NETNS.*does not exist/));
  it('an unknown CNI_COMMAND is code 4', async () => assertError(await runCni('FROB', conf()), 4, /CNI_COMMAND/));
  it('a bad CNI_IFNAME and CNI_CONTAINERID are code 4, both named', async () =>
    assertError(await runCni('ADD', conf(), { CNI_IFNAME: 'eth0:1', CNI_CONTAINERID: '_x' }), 4, /CNI_CONTAINERID.*CNI_IFNAME/));
  it('malformed CNI_ARGS is code 4', async () => assertError(await runCni('ADD', conf(), { CNI_ARGS: 'K8S_POD_NAME' }), 4, /CNI_ARGS/));
  it('an unknown cniVersion is code 1', async () => assertError(await runCni('ADD', conf({ cniVersion: '9.9.9' })), 1, /9\.9\.9/));
  it('the pre-0.3 result format is code 1', async () => assertError(await runCni('ADD', conf({ cniVersion: '0.2.0' })), 1, /0\.2\.0/));
  it('a missing name is code 7 naming the field', async () => assertError(await runCni('ADD', conf({ name: undefined })), 7, /name: required field is missing/));
  it('a missing cniVersion is code 7', async () => assertError(await runCni('ADD', conf({ cniVersion: undefined })), 7, /cniVersion/));
  it('a bad subnet is code 7 naming ipam.subnet', async () => assertError(await runCni('ADD', conf({}, { subnet: '10.244.1.0/33' })), 7, /ipam\.subnet/));
  it('an unknown tapir-ipam field is code 2 with key and value', async () => assertError(await runCni('ADD', conf({}, { subnett: 'x' })), 2, /ipam\.subnett="x"/));
  it('an IPAM plugin not in CNI_PATH is code 7', async () => assertError(await runCni('ADD', conf({ ipam: { type: 'no-such-ipam' } })), 7, /no-such-ipam.*CNI_PATH/s));
  it('GC needs cniVersion 1.1.0 (code 1)', async () => assertError(await runCni('GC', conf({ cniVersion: '1.0.0' })), 1, /GC/));
  it('CHECK needs cniVersion 0.4.0 (code 1)', async () => assertError(await runCni('CHECK', conf({ cniVersion: '0.3.1' })), 1, /CHECK/));
});

describe('tapir-cni ADD and DEL', () => {
  it('ADD (1.1.0) allocates, asks the agent for the port, prints the full result', async () => {
    const r = await runCni('ADD', conf(), { CNI_CONTAINERID: 'pod-a' });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json, {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'eth0', mac: '0a:58:0a:f4:01:02', mtu: 1450, sandbox: FAKE_NETNS }],
      ips: [{ interface: 0, address: '10.244.1.2/24', gateway: '10.244.1.1' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }],
      dns: {},
    });
    assert.deepEqual(agent.calls, [{ op: 'addPort', containerId: 'pod-a', ifName: 'eth0', netns: FAKE_NETNS, ip: '10.244.1.2', prefixLength: 24, gateway: '10.244.1.1', podName: 'web-0', podNamespace: 'default', network: 'tapir' }]);
    assert.deepEqual(allocations(), { '10.244.1.2': 'pod-a\r\neth0' });
  });

  it('ADD (0.4.0 and 0.3.1) prints ips with version and no 1.1-only fields', async () => {
    for (const [v, id] of [['0.4.0', 'p040'], ['0.3.1', 'p031']] as const) {
      const r = await runCni('ADD', conf({ cniVersion: v, dns: { nameservers: ['10.96.0.10'] } }), { CNI_CONTAINERID: id });
      assert.equal(r.code, 0, r.stdout);
      assert.equal(r.json?.cniVersion, v);
      assert.equal(r.json?.ips[0].version, '4');
      assert.equal(r.json?.interfaces[0].mtu, undefined);
      assert.deepEqual(r.json?.dns, { nameservers: ['10.96.0.10'] });
    }
  });

  it('ADD takes the subnet and gateway from the agent when ipam.subnet is absent', async () => {
    agent.podCIDR = '10.244.7.0/24';
    const r = await runCni('ADD', conf({}, { subnet: undefined }));
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(r.json?.ips, [{ interface: 0, address: '10.244.7.2/24', gateway: '10.244.7.1' }]);
    assert.deepEqual(agent.ops(), ['status', 'addPort c1']);
  });

  it('ADD as a chained plugin appends to prevResult', async () => {
    const prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'lo', sandbox: FAKE_NETNS }], ips: [{ address: '127.0.0.1/8', interface: 0 }], dns: { search: ['svc'] } };
    const r = await runCni('ADD', conf({ prevResult }));
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(r.json?.interfaces.map((i: { name: string }) => i.name), ['lo', 'eth0']);
    assert.deepEqual(r.json?.ips, [{ address: '127.0.0.1/8', interface: 0 }, { interface: 1, address: '10.244.1.2/24', gateway: '10.244.1.1' }]);
    assert.deepEqual(r.json?.dns, { search: ['svc'] });
  });

  it('allocation continues after the last one (round robin) and wraps around', async () => {
    const ips: string[] = [];
    for (const id of ['a1', 'a2']) ips.push((await runCni('ADD', conf(), { CNI_CONTAINERID: id })).json?.ips[0].address);
    assert.equal((await runCni('DEL', conf(), { CNI_CONTAINERID: 'a1' })).code, 0);
    ips.push((await runCni('ADD', conf(), { CNI_CONTAINERID: 'a3' })).json?.ips[0].address);
    assert.deepEqual(ips, ['10.244.1.2/24', '10.244.1.3/24', '10.244.1.4/24']);
    // The search wraps to the start of the range once the last address is reached.
    const range = conf({}, { rangeStart: '10.244.1.253', rangeEnd: '10.244.1.254' });
    const wrapped: string[] = [];
    for (const id of ['w1', 'w2']) wrapped.push((await runCni('ADD', range, { CNI_CONTAINERID: id })).json?.ips[0].address);
    assert.equal((await runCni('DEL', range, { CNI_CONTAINERID: 'w1' })).code, 0);
    wrapped.push((await runCni('ADD', range, { CNI_CONTAINERID: 'w3' })).json?.ips[0].address);
    assert.deepEqual(wrapped, ['10.244.1.253/24', '10.244.1.254/24', '10.244.1.253/24']);
  });

  it('DEL releases the address and the port; DEL twice and DEL without CNI_NETNS succeed', async () => {
    assert.equal((await runCni('ADD', conf())).code, 0);
    const first = await runCni('DEL', conf());
    assert.equal(first.code, 0, first.stdout);
    assert.equal(first.stdout, '');
    assert.deepEqual(allocations(), {});
    assert.equal((await runCni('DEL', conf())).code, 0);
    assert.equal((await runCni('DEL', conf(), { CNI_NETNS: undefined })).code, 0);
    assert.equal((await runCni('DEL', conf(), { CNI_CONTAINERID: 'never-added' })).code, 0);
    assert.deepEqual(agent.ops(), ['addPort c1', 'delPort c1', 'delPort c1', 'delPort c1', 'delPort never-added']);
  });

  it('an agent refusal is code 101 and the address is released again', async () => {
    agent.refuseAdd = true;
    assertError(await runCni('ADD', conf()), 101, /already has an interface named eth0.*CONFLICT/s);
    assert.deepEqual(allocations(), {});
  });

  it('with the agent down, ADD and DEL say "try again later" (11); ADD leaves no allocation', async () => {
    const down = conf({ controlSocket: join(root, 'down.sock') });
    assertError(await runCni('ADD', down), 11, /down\.sock/);
    assert.deepEqual(allocations(), {});
    assertError(await runCni('DEL', down), 11, /down\.sock/);
  });

  it('IPAM exhaustion is code 100 naming the range', async () => {
    const small = conf({}, { subnet: '10.244.9.0/30' });
    assert.equal((await runCni('ADD', small, { CNI_CONTAINERID: 'x1' })).json?.ips[0].address, '10.244.9.2/30');
    assertError(await runCni('ADD', small, { CNI_CONTAINERID: 'x2' }), 100, /all 1 addresses of 10\.244\.9\.1-10\.244\.9\.2/);
  });

  it('20 concurrent ADDs get 20 distinct addresses', async () => {
    const runs = await Promise.all(Array.from({ length: 20 }, (_, i) => runCni('ADD', conf(), { CNI_CONTAINERID: `par-${i}` })));
    for (const r of runs) assert.equal(r.code, 0, r.stdout + r.stderr);
    const ips = runs.map((r) => r.json?.ips[0].address as string);
    assert.equal(new Set(ips).size, 20, ips.join(' '));
    const files = allocations();
    assert.equal(Object.keys(files).length, 20);
    for (let i = 0; i < 20; i++) assert.equal(files[ips[i]!.split('/')[0]!], `par-${i}\r\neth0`);
  });
});

describe('tapir-cni CHECK, GC, STATUS', () => {
  it('CHECK without prevResult is code 7; with an unknown interface or port, 102', async () => {
    assertError(await runCni('CHECK', conf()), 7, /prevResult/);
    const add = await runCni('ADD', conf());
    const prevOther = { ...add.json, interfaces: [{ name: 'net9', sandbox: FAKE_NETNS }] };
    assertError(await runCni('CHECK', conf({ prevResult: prevOther })), 102, /no interface eth0/);
    agent.ports.clear(); // the agent lost the port
    assertError(await runCni('CHECK', conf({ prevResult: add.json })), 102, /no port for c1\/eth0/);
  });

  it('CHECK fails (102) when the allocation is not this container\'s', async () => {
    const add = await runCni('ADD', conf());
    rmSync(join(dataDir, 'tapir', '10.244.1.2'));
    assertError(await runCni('CHECK', conf({ prevResult: add.json })), 102, /no allocation of 10\.244\.1\.2/);
  });

  it('GC releases allocations and deletes ports not in cni.dev/valid-attachments', async () => {
    for (const id of ['keep', 'stale1', 'stale2']) assert.equal((await runCni('ADD', conf(), { CNI_CONTAINERID: id })).code, 0);
    agent.calls = [];
    const r = await runCni('GC', conf({ 'cni.dev/valid-attachments': [{ containerID: 'keep', ifname: 'eth0' }] }), { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.stdout, '');
    assert.deepEqual(Object.values(allocations()), ['keep\r\neth0']);
    assert.deepEqual(agent.ops(), ['listPorts', 'delPort stale1', 'delPort stale2']);
    assert.deepEqual([...agent.ports.keys()], ['keep/eth0']);
  });

  it('GC removes only ports of its own network; absent or null valid-attachments (libcni\'s empty list) keeps none of them', async () => {
    assert.equal((await runCni('ADD', conf(), { CNI_CONTAINERID: 'mine' })).code, 0);
    assert.equal((await runCni('ADD', conf({ name: 'other' }), { CNI_CONTAINERID: 'theirs' })).code, 0);
    // A port recorded before the agent knew networks: not this GC's to remove.
    agent.ports.set('old/eth0', { containerId: 'old', ifName: 'eth0', hostName: 'tp0', mac: '0a:58:0a:f4:01:63', netns: FAKE_NETNS, ip: '10.244.1.99', prefixLength: 24, gateway: '10.244.1.1', mtu: 1450 });
    agent.calls = [];
    const r = await runCni('GC', conf({ 'cni.dev/valid-attachments': null }), { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(agent.ops(), ['listPorts', 'delPort mine']);
    assert.deepEqual([...agent.ports.keys()].sort(), ['old/eth0', 'theirs/eth0']);
    assert.deepEqual(Object.values(allocations()), []);
    assert.deepEqual(Object.values(allocations('other')), ['theirs\r\neth0']);
    // libcni 1.2.3 leaves the key out when nothing is valid: the same as null.
    assert.equal((await runCni('ADD', conf(), { CNI_CONTAINERID: 'mine2' })).code, 0);
    agent.calls = [];
    const absent = await runCni('GC', conf(), { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined });
    assert.equal(absent.code, 0, absent.stdout + absent.stderr);
    assert.deepEqual(agent.ops(), ['listPorts', 'delPort mine2']);
    assert.deepEqual([...agent.ports.keys()].sort(), ['old/eth0', 'theirs/eth0']);
  });

  it('an ADD refused because the attachment already runs elsewhere leaves the running attachment\'s address alone', async () => {
    assert.equal((await runCni('ADD', conf(), { CNI_CONTAINERID: 'running' })).code, 0);
    agent.refuseAdd = true;
    try {
      assertError(await runCni('ADD', conf(), { CNI_CONTAINERID: 'running' }), 101, /already has an interface/);
    } finally {
      agent.refuseAdd = false;
    }
    assert.deepEqual(Object.values(allocations()), ['running\r\neth0'], 'the running attachment keeps 10.244.1.2');
  });

  it('STATUS: ok with an agent and free addresses; 50 when the agent is down or the range is full', async () => {
    const env = { CNI_CONTAINERID: undefined, CNI_NETNS: undefined, CNI_IFNAME: undefined, CNI_PATH: undefined };
    const ok = await runCni('STATUS', conf(), env);
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(ok.stdout, '');
    assertError(await runCni('STATUS', conf({ controlSocket: join(root, 'down.sock') }), env), 50, /not available.*down\.sock/s);
    const small = conf({}, { subnet: '10.244.9.0/30' });
    assert.equal((await runCni('ADD', small)).code, 0);
    assertError(await runCni('STATUS', small, env), 50, /no free IP addresses/);
  });
});

describe('tapir-cni with host-local (delegated IPAM)', { skip: !existsSync('/usr/lib/cni/host-local') && 'containernetworking-plugins not installed' }, () => {
  it('ADD, CHECK of the allocation and DEL go through host-local from CNI_PATH', async () => {
    const cfg = conf({ ipam: { type: 'host-local', subnet: '10.244.3.0/24', dataDir } });
    const add = await runCni('ADD', cfg, { CNI_CONTAINERID: 'hl-1' });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.equal(add.json?.cniVersion, '1.1.0');
    assert.deepEqual(add.json?.ips, [{ interface: 0, address: '10.244.3.2/24', gateway: '10.244.3.1' }]);
    assert.deepEqual(add.json?.routes, [{ dst: '0.0.0.0/0', gw: '10.244.3.1' }]);
    assert.equal(readFileSync(join(dataDir, 'tapir', '10.244.3.2'), 'utf8'), 'hl-1\r\neth0');
    const del = await runCni('DEL', cfg, { CNI_CONTAINERID: 'hl-1' });
    assert.equal(del.code, 0, del.stdout);
    assert.equal(existsSync(join(dataDir, 'tapir', '10.244.3.2')), false);
    assert.deepEqual(agent.ops(), ['addPort hl-1', 'delPort hl-1']);
  });

  it('host-local errors come back with its code and name', async () => {
    const cfg = conf({ ipam: { type: 'host-local', dataDir } }); // no subnet/ranges
    const r = await runCni('ADD', cfg);
    assert.equal(r.code, 1);
    assert.match(String(r.json?.msg), /host-local ADD/);
    assert.deepEqual(agent.ops(), []);
  });
});

describe('tapir-cni dual-stack and IPv6-only IPAM (host-local style ranges)', () => {
  const DUAL = { ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64' }]], subnet: undefined };
  const files = (): string[] => (existsSync(join(dataDir, 'tapir')) ? readdirSync(join(dataDir, 'tapir')).filter((f) => !f.startsWith('.')).sort() : []);

  it('ADD gives one address per family: both ips on interface 0 with their gateways, both default routes; the agent is asked for both', async () => {
    const r = await runCni('ADD', conf({}, DUAL));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json?.ips, [
      { interface: 0, address: '10.244.1.2/24', gateway: '10.244.1.1' },
      { interface: 0, address: 'fd00:10:244:1::2/64', gateway: 'fd00:10:244:1::1' },
    ]);
    assert.deepEqual(r.json?.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0', gw: 'fd00:10:244:1::1' }]);
    const add = agent.calls.find((c) => c.op === 'addPort') as Extract<ControlRequest, { op: 'addPort' }>;
    assert.deepEqual([add.ip, add.prefixLength, add.gateway, add.ip6, add.prefixLength6, add.gateway6], ['10.244.1.2', 24, '10.244.1.1', 'fd00:10:244:1::2', 64, 'fd00:10:244:1::1']);
    // host-local's layout: a file per address, the last reserved address per range set.
    assert.deepEqual(files(), ['10.244.1.2', 'fd00:10:244:1::2', 'last_reserved_ip.0', 'last_reserved_ip.1']);
    assert.equal(readFileSync(join(dataDir, 'tapir', 'fd00:10:244:1::2'), 'utf8'), 'c1\r\neth0');

    const again = await runCni('ADD', conf({}, DUAL));
    assert.deepEqual(again.json?.ips, r.json?.ips, 'a repeated ADD keeps both addresses');
    const other = await runCni('ADD', conf({}, DUAL), { CNI_CONTAINERID: 'c2' });
    assert.deepEqual(other.json?.ips.map((i: { address: string }) => i.address), ['10.244.1.3/24', 'fd00:10:244:1::3/64']);

    const check = await runCni('CHECK', conf({ prevResult: r.json }, DUAL));
    assert.equal(check.code, 1, 'CHECK reaches the link inspection, which the fake netns file cannot pass');
    const checkCall = agent.calls.find((c) => c.op === 'checkPort') as Extract<ControlRequest, { op: 'checkPort' }>;
    assert.deepEqual([checkCall.ip, checkCall.ip6], ['10.244.1.2', 'fd00:10:244:1::2'], 'checkPort is asked for both families');

    assert.equal((await runCni('DEL', conf({}, DUAL))).code, 0);
    assert.deepEqual(files().filter((f) => !f.startsWith('last')), ['10.244.1.3', 'fd00:10:244:1::3'], 'DEL released both addresses of c1 only');
    const gc = await runCni('GC', conf({ 'cni.dev/valid-attachments': [] }, DUAL));
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.match(gc.stderr, /tapir-ipam released 10\.244\.1\.3 \(c2\/eth0\), fd00:10:244:1::3 \(c2\/eth0\)|tapir-ipam released fd00:10:244:1::3 \(c2\/eth0\), 10\.244\.1\.3 \(c2\/eth0\)/);
    assert.deepEqual(files().filter((f) => !f.startsWith('last')), [], 'GC released both families');
  });

  it('IPv6 only: one ips entry, ::/0 only, no IPv4 fields to the agent; 0.3.1 results say version 6', async () => {
    const V6 = { ranges: [[{ subnet: 'fd00:10:244:1::/64', rangeStart: 'fd00:10:244:1::100' }]], subnet: undefined };
    const r = await runCni('ADD', conf({ cniVersion: '0.3.1' }, V6));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json?.ips, [{ version: '6', interface: 0, address: 'fd00:10:244:1::100/64', gateway: 'fd00:10:244:1::1' }]);
    assert.deepEqual(r.json?.routes, [{ dst: '::/0', gw: 'fd00:10:244:1::1' }]);
    const add = agent.calls.find((c) => c.op === 'addPort') as Extract<ControlRequest, { op: 'addPort' }>;
    assert.equal(add.ip, undefined);
    assert.equal(add.ip6, 'fd00:10:244:1::100');
    assert.deepEqual(files(), ['fd00:10:244:1::100', 'last_reserved_ip.0']);
  });

  it('without a subnet, a node with podCIDRv6 makes pods dual-stack (the agent\'s ranges); a full IPv6 range fails the ADD and releases the IPv4 address', async () => {
    agent.podCIDRv6 = 'fd00:10:244:7::/64';
    const r = await runCni('ADD', conf({}, { subnet: undefined }));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json?.ips.map((i: { address: string; gateway: string }) => `${i.address} via ${i.gateway}`), ['10.244.1.2/24 via 10.244.1.1', 'fd00:10:244:7::2/64 via fd00:10:244:7::1']);
    const tiny = { ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64', rangeStart: 'fd00:10:244:1::5', rangeEnd: 'fd00:10:244:1::5' }]], subnet: undefined };
    assert.equal((await runCni('ADD', conf({ name: 'tiny' }, tiny), { CNI_CONTAINERID: 'a1' })).code, 0);
    assertError(await runCni('ADD', conf({ name: 'tiny' }, tiny), { CNI_CONTAINERID: 'a2' }), 100, /no IP addresses available.*fd00:10:244:1::5-fd00:10:244:1::5/s);
    const tinyFiles = readdirSync(join(dataDir, 'tiny')).filter((f) => !f.startsWith('.') && !f.startsWith('last')).sort();
    assert.deepEqual(tinyFiles, ['10.244.1.2', 'fd00:10:244:1::5'], 'a2 holds nothing after its failed ADD');
    assertError(await runCni('STATUS', conf({ name: 'tiny' }, tiny)), 50, /no free IP addresses/);
  });

  it('a gateway outside its range\'s subnet is code 7 naming the range', async () => {
    const bad = { ranges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:10:244:1::/64', gateway: 'fd00:10:244:2::1' }]], subnet: undefined };
    assertError(await runCni('ADD', conf({}, bad)), 7, /ipam\.ranges\[1\]\[0\]\.gateway fd00:10:244:2::1 is not a host address of fd00:10:244:1::\/64/);
    assert.deepEqual(files(), [], 'nothing allocated');
  });
});

// bin/tapir-cni end to end: run as a runtime runs it, against a control server in this
// process backed by a real PortManager, with pods in real network namespaces.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ControlServer } from '../src/agent/control-server.ts';
import { PortManager } from '../src/agent/ports.ts';
import { parseIpv6 } from '../src/wire/address.ts';
import { Netns } from './helpers/netns.ts';

const BIN = fileURLToPath(new URL('../bin/tapir-cni', import.meta.url));
const CNI_PATH = `${dirname(BIN)}:/usr/lib/cni`;
const HAS_PLUGINS = existsSync('/usr/lib/cni/host-local') && existsSync('/usr/lib/cni/tuning');
const root = mkdtempSync(join(tmpdir(), 'tapir-cni-ns-'));
const SOCKET = join(root, 'agent.sock');
const dataDir = join(root, 'ipam');
const events: string[] = [];
const ports = new PortManager({
  stateDir: join(root, 'state'), mtu: 1450, gateway: 0x0af40101, gateway6: parseIpv6('fd00:10:244:1::1'),
  onPortAdded: (p) => events.push(`added ${p.containerId}`),
  onPortRemoved: (p) => events.push(`removed ${p.containerId}`),
});
let server: ControlServer;
const namespaces: Netns[] = [];

before(async () => {
  server = await ControlServer.listen({
    path: SOCKET,
    handler: ports.controlHandler(() => ({ node: 'node-1', pid: process.pid, podCIDR: '10.244.1.0/24', gateway: '10.244.1.1', mtu: 1450, ports: ports.size })),
  });
});
after(async () => {
  await server.close();
  await ports.close();
  for (const ns of namespaces) ns.destroy();
  rmSync(root, { recursive: true, force: true });
});

function pod(): Netns {
  const ns = new Netns('cn');
  namespaces.push(ns);
  return ns;
}

interface CniRun { code: number | null; stdout: string; stderr: string; json: Record<string, any> | null }

function exec(plugin: string, command: string, config: object, env: Record<string, string | undefined>): Promise<CniRun> {
  const full: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', CNI_COMMAND: command, CNI_IFNAME: 'eth0', CNI_PATH };
  for (const [k, v] of Object.entries(env)) if (v !== undefined) full[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(plugin, [], { env: full });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d; });
    child.stderr.on('data', (d: Buffer) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      let json: Record<string, any> | null = null;
      try { json = stdout.trim() === '' ? null : JSON.parse(stdout); } catch { /* left null */ }
      resolve({ code, stdout, stderr, json });
    });
    child.stdin.end(JSON.stringify(config));
  });
}

const cni = (command: string, config: object, ns: Netns | string | null, containerId: string): Promise<CniRun> =>
  exec(BIN, command, config, { CNI_CONTAINERID: containerId, CNI_NETNS: ns === null ? undefined : typeof ns === 'string' ? ns : `/var/run/netns/${ns.name}` });

function conf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: 'tapir', type: 'tapir-cni', controlSocket: SOCKET, ipam: { type: 'tapir-ipam', subnet: '10.244.1.0/24', dataDir }, ...extra };
}

function eth0(ns: Netns): { address: string; mtu: number; inet: string[] } | null {
  const links = JSON.parse(ns.exec('ip', ['-j', 'addr', 'show'])) as { ifname: string; address: string; mtu: number; addr_info: { family: string; local: string; prefixlen: number }[] }[];
  const l = links.find((x) => x.ifname === 'eth0');
  return l === undefined ? null : { address: l.address, mtu: l.mtu, inet: l.addr_info.filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`) };
}

const allocated = (network = 'tapir'): string[] => (existsSync(join(dataDir, network)) ? readdirSync(join(dataDir, network)).filter((f) => /^\d/.test(f)).sort() : []);

describe('tapir-cni with a real agent port manager', () => {
  it('ADD gives the pod eth0 with its address, CHECK passes, CHECK notices damage, DEL removes it', async () => {
    const ns = pod();
    const add = await cni('ADD', conf(), ns, 'ctr-1');
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = (add.json?.ips[0].address as string);
    const link = eth0(ns);
    assert.deepEqual(link, { address: add.json?.interfaces[0].mac, mtu: 1450, inet: [ip] });
    assert.match(ns.exec('ip', ['route', 'show', 'default']), /via 10\.244\.1\.1 dev eth0/);
    assert.ok(events.includes('added ctr-1'));

    const check = await cni('CHECK', conf({ prevResult: add.json }), ns, 'ctr-1');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal(check.stdout, '');

    ns.exec('ip', ['addr', 'del', ip, 'dev', 'eth0']);
    const damaged = await cni('CHECK', conf({ prevResult: add.json }), ns, 'ctr-1');
    assert.equal(damaged.json?.code, 102, damaged.stdout);
    assert.match(damaged.json?.msg, new RegExp(`lacks ${ip.replace(/\./g, '\\.')}`));

    const del = await cni('DEL', conf({ prevResult: add.json }), ns, 'ctr-1');
    assert.equal(del.code, 0, del.stdout);
    assert.equal(eth0(ns), null, 'eth0 is gone from the pod');
    assert.deepEqual(allocated(), []);
    assert.ok(events.includes('removed ctr-1'));
    assert.equal((await cni('DEL', conf(), ns, 'ctr-1')).code, 0, 'DEL twice');
  });

  it('CHECK fails when the pod lost its interface; DEL after the namespace is gone succeeds', async () => {
    const ns = pod();
    const add = await cni('ADD', conf(), ns, 'ctr-2');
    assert.equal(add.code, 0, add.stdout);
    const path = `/var/run/netns/${ns.name}`;
    ns.destroy(); // the runtime tore the sandbox down before calling DEL
    const check = await cni('CHECK', conf({ prevResult: add.json }), path, 'ctr-2');
    assert.equal(check.json?.code, 102, check.stdout);
    assert.match(check.json?.msg, /is gone/);
    const del = await cni('DEL', conf(), path, 'ctr-2');
    assert.equal(del.code, 0, del.stdout);
    assert.equal((await cni('DEL', conf(), null, 'ctr-2')).code, 0, 'and again, without CNI_NETNS');
    assert.equal(ports.get('ctr-2', 'eth0'), undefined);
    assert.deepEqual(allocated(), []);
  });

  it('GC deletes ports and allocations of attachments the runtime no longer knows', async () => {
    const [a, b] = [pod(), pod()];
    assert.equal((await cni('ADD', conf(), a, 'keep-1')).code, 0);
    assert.equal((await cni('ADD', conf(), b, 'stale-1')).code, 0);
    const gc = await exec(BIN, 'GC', conf({ 'cni.dev/valid-attachments': [{ containerID: 'keep-1', ifname: 'eth0' }] }), {});
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.equal(eth0(b), null, 'the stale pod lost its port');
    assert.notEqual(eth0(a), null, 'the valid one kept it');
    assert.deepEqual(ports.list().map((p) => p.containerId), ['keep-1']);
    assert.equal(allocated().length, 1);
    assert.equal((await cni('DEL', conf(), a, 'keep-1')).code, 0);
  });

  it('8 pods added in parallel get distinct addresses and working ports; parallel DELs remove them', async () => {
    const pods = Array.from({ length: 8 }, () => pod());
    const adds = await Promise.all(pods.map((ns, i) => cni('ADD', conf(), ns, `par-${i}`)));
    for (const r of adds) assert.equal(r.code, 0, r.stdout + r.stderr);
    const ips = adds.map((r) => r.json?.ips[0].address as string);
    assert.equal(new Set(ips).size, 8);
    pods.forEach((ns, i) => assert.deepEqual(eth0(ns)?.inet, [ips[i]]));
    assert.equal(ports.size, 8);
    const dels = await Promise.all(pods.map((ns, i) => cni('DEL', conf(), ns, `par-${i}`)));
    for (const r of dels) assert.equal(r.code, 0, r.stdout);
    assert.equal(ports.size, 0);
    assert.deepEqual(allocated(), []);
  });
});

describe('tapir-cni with containernetworking-plugins', { skip: !HAS_PLUGINS && 'containernetworking-plugins not installed' }, () => {
  it('delegates IPAM to host-local: ADD, CHECK, DEL', async () => {
    const ns = pod();
    const cfg = conf({ ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.100' }]], dataDir } });
    const add = await cni('ADD', cfg, ns, 'hl-ctr');
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.deepEqual(add.json?.ips, [{ interface: 0, address: '10.244.1.100/24', gateway: '10.244.1.1' }]);
    assert.deepEqual(eth0(ns)?.inet, ['10.244.1.100/24']);
    assert.deepEqual(allocated(), ['10.244.1.100']);
    const check = await cni('CHECK', { ...cfg, prevResult: add.json }, ns, 'hl-ctr');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal((await cni('DEL', cfg, ns, 'hl-ctr')).code, 0);
    assert.deepEqual(allocated(), []);
    assert.equal(eth0(ns), null);
  });

  it('delegates dual-stack IPAM to host-local (one range set per family): both addresses in the pod, CHECK, DEL', async () => {
    const ns = pod();
    const cfg = conf({ ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.1.0/24', rangeStart: '10.244.1.110' }], [{ subnet: 'fd00:10:244:1::/64', rangeStart: 'fd00:10:244:1::110' }]], dataDir } });
    const add = await cni('ADD', cfg, ns, 'hl-dual');
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.deepEqual(add.json?.ips, [
      { interface: 0, address: '10.244.1.110/24', gateway: '10.244.1.1' },
      { interface: 0, address: 'fd00:10:244:1::110/64', gateway: 'fd00:10:244:1::1' },
    ]);
    assert.deepEqual(add.json?.routes, [{ dst: '0.0.0.0/0', gw: '10.244.1.1' }, { dst: '::/0', gw: 'fd00:10:244:1::1' }]);
    assert.deepEqual(eth0(ns)?.inet, ['10.244.1.110/24']);
    assert.match(ns.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global']), /inet6 fd00:10:244:1::110\/64 scope global nodad/);
    assert.match(ns.exec('ip', ['-6', 'route', 'show', 'default']), /default via fd00:10:244:1::1 dev eth0/);
    const check = await cni('CHECK', { ...cfg, prevResult: add.json }, ns, 'hl-dual');
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.equal((await cni('DEL', cfg, ns, 'hl-dual')).code, 0);
    assert.equal(eth0(ns), null);
    assert.deepEqual(readdirSync(join(dataDir, 'tapir')).filter((f) => f.includes(':') || /^\d/.test(f)), [], 'host-local released both');
  });

  it('GC with host-local (no GC before CNI 1.1) releases the addresses of the stale ports with DEL', async () => {
    const [a, b] = [pod(), pod()];
    const cfg = conf({ ipam: { type: 'host-local', subnet: '10.244.1.0/24', dataDir } });
    assert.equal((await cni('ADD', cfg, a, 'hl-keep')).code, 0);
    assert.equal((await cni('ADD', cfg, b, 'hl-stale')).code, 0);
    assert.equal(allocated().length, 2);
    const gc = await exec(BIN, 'GC', { ...cfg, 'cni.dev/valid-attachments': [{ containerID: 'hl-keep', ifname: 'eth0' }] }, {});
    assert.equal(gc.code, 0, gc.stdout + gc.stderr);
    assert.match(gc.stderr, /released with DEL: hl-stale\/eth0/);
    assert.equal(eth0(b), null);
    assert.equal(allocated().length, 1);
    assert.equal((await cni('DEL', cfg, a, 'hl-keep')).code, 0);
    assert.deepEqual(allocated(), []);
  });

  it('its result is a valid prevResult for a chained plugin (tuning) and CHECK/DEL run the chain', async () => {
    // tuning 1.1.1 speaks up to CNI 1.0.0, so the whole chain runs at 1.0.0 (a runtime
    // gives every plugin in a list the list's cniVersion).
    const ns = pod();
    const list = { cniVersion: '1.0.0', name: 'tapir', plugins: [conf({ cniVersion: undefined, name: undefined }), { type: 'tuning', mtu: 1400, sysctl: { 'net.ipv4.conf.eth0.accept_local': '1' } }] };
    const plugin = (i: number, extra: Record<string, unknown> = {}) => ({ ...list.plugins[i], cniVersion: list.cniVersion, name: list.name, ...extra });
    const env = { CNI_CONTAINERID: 'chain-1', CNI_NETNS: `/var/run/netns/${ns.name}` };

    const first = await exec(BIN, 'ADD', plugin(0), env);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(first.json?.cniVersion, '1.0.0');
    const second = await exec('/usr/lib/cni/tuning', 'ADD', plugin(1, { prevResult: first.json }), env);
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.deepEqual(second.json?.ips, first.json?.ips, 'tuning read and passed on our result');
    assert.equal(eth0(ns)?.mtu, 1400, 'tuning found the interface our result named');

    for (const i of [0, 1]) {
      const check = await exec(i === 0 ? BIN : '/usr/lib/cni/tuning', 'CHECK', plugin(i, { prevResult: second.json }), env);
      assert.equal(check.code, 0, `CHECK ${i}: ${check.stdout}${check.stderr}`);
    }
    for (const i of [1, 0]) {
      const del = await exec(i === 0 ? BIN : '/usr/lib/cni/tuning', 'DEL', plugin(i, { prevResult: second.json }), env);
      assert.equal(del.code, 0, `DEL ${i}: ${del.stdout}${del.stderr}`);
    }
    assert.equal(eth0(ns), null);
  });
});

// The agent's control socket: request validation, the server's framing and error codes,
// the client's mapping of "no agent" to AGENT_UNAVAILABLE / AGENT_TIMEOUT.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ControlClient } from '../src/agent/control-client.ts';
import { ControlServer, type ControlHandler } from '../src/agent/control-server.ts';
import { ControlError, ControlErrorCode, isAgentUnreachable, parseRequest, type PortInfo } from '../src/agent/protocol.ts';

const dir = mkdtempSync(join(tmpdir(), 'tapir-ctl-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function port(containerId: string, ifName: string, ip: string): PortInfo {
  return { containerId, ifName, hostName: 'tp00000000', mac: '0a:58:0a:f4:01:05', netns: '/var/run/netns/x', ip, prefixLength: 24, gateway: '10.244.1.1', mtu: 1450 };
}

/** Raw exchange: sends `text` as is and returns the response lines received until `count`. */
function exchange(path: string, text: string, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(text));
    s.on('data', (d: string) => {
      buf += d;
      const lines = buf.split('\n').filter(Boolean);
      if (lines.length >= count) { s.destroy(); resolve(lines); }
    });
    s.on('error', reject);
    s.on('close', () => resolve(buf.split('\n').filter(Boolean)));
  });
}

describe('parseRequest', () => {
  it('accepts each op with its fields', () => {
    assert.deepEqual(parseRequest('{"op":"status"}'), { op: 'status' });
    assert.deepEqual(parseRequest('{"op":"delPort","containerId":"c1","ifName":"eth0"}'), { op: 'delPort', containerId: 'c1', ifName: 'eth0' });
    const add = parseRequest(JSON.stringify({ op: 'addPort', containerId: 'c1', ifName: 'eth0', netns: '/var/run/netns/p', ip: '10.244.1.5', prefixLength: 24, gateway: '10.244.1.1', podName: 'web' }));
    assert.equal(add.op, 'addPort');
    assert.equal((add as { podName?: string }).podName, 'web');
    // IPv6-only and dual-stack: the IPv6 fields, the IPv4 ones optional.
    assert.deepEqual(parseRequest(JSON.stringify({ op: 'addPort', containerId: 'c1', ifName: 'eth0', netns: '/n', ip6: 'fd00:10:244:1::5', prefixLength6: 64, gateway6: 'fd00:10:244:1::1' })),
      { op: 'addPort', containerId: 'c1', ifName: 'eth0', netns: '/n', ip6: 'fd00:10:244:1::5', prefixLength6: 64, gateway6: 'fd00:10:244:1::1' });
    assert.deepEqual(parseRequest(JSON.stringify({ op: 'addPort', containerId: 'c1', ifName: 'eth0', netns: '/n', ip: '10.244.1.5', prefixLength: 24, gateway: '10.244.1.1', ip6: 'fd00:10:244:1::5', prefixLength6: 64, gateway6: 'fd00:10:244:1::1' })),
      { op: 'addPort', containerId: 'c1', ifName: 'eth0', netns: '/n', ip: '10.244.1.5', prefixLength: 24, gateway: '10.244.1.1', ip6: 'fd00:10:244:1::5', prefixLength6: 64, gateway6: 'fd00:10:244:1::1' });
    assert.deepEqual(parseRequest('{"op":"checkPort","containerId":"c","ifName":"eth0","ip":"10.0.0.2"}'), { op: 'checkPort', containerId: 'c', ifName: 'eth0', ip: '10.0.0.2' });
    assert.deepEqual(parseRequest('{"op":"checkPort","containerId":"c","ifName":"eth0","ip":"10.0.0.2","ip6":"fd00::2"}'), { op: 'checkPort', containerId: 'c', ifName: 'eth0', ip: '10.0.0.2', ip6: 'fd00::2' });
  });

  const cases: [string, string, RegExp][] = [
    ['not json', ControlErrorCode.badRequest, /not JSON/],
    ['[1]', ControlErrorCode.badRequest, /object/],
    ['{}', ControlErrorCode.missingField, /'op'/],
    ['{"op":"explode"}', ControlErrorCode.unknownOp, /explode/],
    ['{"op":"delPort","ifName":"eth0"}', ControlErrorCode.missingField, /containerId/],
    ['{"op":"delPort","containerId":"-bad","ifName":"eth0"}', ControlErrorCode.invalidField, /containerId/],
    ['{"op":"delPort","containerId":"c","ifName":"a/b"}', ControlErrorCode.invalidField, /ifName/],
    ['{"op":"delPort","containerId":"c","ifName":"abcdefghijklmnop"}', ControlErrorCode.invalidField, /ifName/],
    ['{"op":"checkPort","containerId":"c","ifName":"eth0","ip":"10.1.2"}', ControlErrorCode.invalidField, /'ip'/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"rel/path","ip":"10.0.0.2","prefixLength":24,"gateway":"10.0.0.1"}', ControlErrorCode.invalidField, /absolute/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip":"10.0.0.2","prefixLength":33,"gateway":"10.0.0.1"}', ControlErrorCode.invalidField, /prefixLength/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip":"10.0.0.2","prefixLength":24}', ControlErrorCode.missingField, /gateway/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n"}', ControlErrorCode.missingField, /'ip' or 'ip6' is required/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","prefixLength":24,"gateway":"10.0.0.1","ip6":"fd00::2","prefixLength6":64,"gateway6":"fd00::1"}', ControlErrorCode.invalidField, /'prefixLength' is given without 'ip'/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip6":"fd00::2","prefixLength6":64}', ControlErrorCode.missingField, /'gateway6' is required/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip6":"10.0.0.2","prefixLength6":64,"gateway6":"fd00::1"}', ControlErrorCode.invalidField, /'ip6' is not an IPv6 address/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip6":"fd00::2","prefixLength6":129,"gateway6":"fd00::1"}', ControlErrorCode.invalidField, /prefixLength6 must be an integer from 1 to 128/],
    ['{"op":"addPort","containerId":"c","ifName":"eth0","netns":"/n","ip":"fd00::2","prefixLength":24,"gateway":"10.0.0.1"}', ControlErrorCode.invalidField, /'ip' is not an IPv4 address/],
    ['{"op":"checkPort","containerId":"c","ifName":"eth0"}', ControlErrorCode.missingField, /'ip' or 'ip6'/],
    ['{"op":"checkPort","containerId":"c","ifName":"eth0","ip6":"fd00::zz"}', ControlErrorCode.invalidField, /'ip6'/],
  ];
  for (const [line, code, message] of cases) {
    it(`rejects ${line} with ${code}`, () => {
      assert.throws(() => parseRequest(line), (err: unknown) => err instanceof ControlError && err.code === code && message.test(err.message));
    });
  }
});

describe('ControlServer and ControlClient', () => {
  const path = join(dir, 'agent.sock');
  const seen: string[] = [];
  let server: ControlServer;
  const handler: ControlHandler = {
    status: () => ({ node: 'node-1', pid: process.pid, podCIDR: '10.244.1.0/24', gateway: '10.244.1.1', mtu: 1450, ports: 1 }),
    addPort: async (r) => { seen.push(`add ${r.containerId}`); await new Promise((res) => setTimeout(res, 20)); return port(r.containerId, r.ifName, r.ip ?? ''); },
    delPort: (r) => { seen.push(`del ${r.containerId}`); },
    checkPort: (r) => { throw new ControlError(ControlErrorCode.notFound, `no port for ${r.containerId}/${r.ifName}`); },
    listPorts: () => [port('c1', 'eth0', '10.244.1.5')],
  };

  before(async () => { server = await ControlServer.listen({ path, handler }); });
  after(async () => { await server.close(); });

  it('creates the socket with mode 0600', () => {
    const st = statSync(path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
  });

  it('answers every op through the client', async () => {
    const client = new ControlClient(path);
    assert.deepEqual(await client.status(), { node: 'node-1', pid: process.pid, podCIDR: '10.244.1.0/24', gateway: '10.244.1.1', mtu: 1450, ports: 1 });
    const p = await client.addPort({ containerId: 'c9', ifName: 'eth0', netns: '/var/run/netns/x', ip: '10.244.1.9', prefixLength: 24, gateway: '10.244.1.1' });
    assert.equal(p.ip, '10.244.1.9');
    await client.delPort('c9', 'eth0');
    assert.deepEqual((await client.listPorts()).map((x) => x.containerId), ['c1']);
    await assert.rejects(client.checkPort('c9', 'eth0', '10.244.1.9'), (e: unknown) => e instanceof ControlError && e.code === ControlErrorCode.notFound && !isAgentUnreachable(e));
    assert.deepEqual(seen.slice(-2), ['add c9', 'del c9']);
  });

  it('answers pipelined requests in order, with an error line for a bad one', async () => {
    const lines = await exchange(path, '{"op":"addPort","containerId":"slow","ifName":"eth0","netns":"/n","ip":"10.244.1.7","prefixLength":24,"gateway":"10.244.1.1"}\n{"op":"nope"}\n\n{"op":"status"}\n', 3);
    const answers = lines.map((l) => JSON.parse(l) as { ok: boolean; port?: PortInfo; error?: { code: string }; node?: string });
    assert.equal(answers[0]!.port?.containerId, 'slow');
    assert.deepEqual(answers[1], { ok: false, error: { code: 'UNKNOWN_OP', message: "unknown op 'nope' (known: status, addPort, delPort, checkPort, listPorts, stats, captureStart, captureStop, trace)" } });
    assert.equal(answers[2]!.node, 'node-1');
  });

  it('refuses an over-long line and closes the connection', async () => {
    const small = await ControlServer.listen({ path: join(dir, 'small.sock'), handler, maxLineBytes: 100 });
    try {
      const lines = await exchange(small.path, `{"op":"status","pad":"${'x'.repeat(300)}`, 1);
      assert.equal((JSON.parse(lines[0]!) as { error: { code: string } }).error.code, ControlErrorCode.badRequest);
    } finally {
      await small.close();
    }
  });

  it('turns a handler exception into INTERNAL with its message', async () => {
    const p2 = join(dir, 'boom.sock');
    const boom = await ControlServer.listen({ path: p2, handler: { ...handler, status: () => { throw new Error('disk on fire'); } } });
    try {
      await assert.rejects(new ControlClient(p2).status(), (e: unknown) => e instanceof ControlError && e.code === ControlErrorCode.internal && /disk on fire/.test(e.message));
    } finally {
      await boom.close();
    }
  });

  it('refuses to start over a live agent, replaces a stale socket, and never over a plain file', async () => {
    await assert.rejects(ControlServer.listen({ path, handler }), /already listening/);
    const stalePath = join(dir, 'stale.sock');
    // A socket file nobody listens on, as a killed agent leaves it (bind without listen, exit).
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stalePath]);
    assert.ok(statSync(stalePath).isSocket());
    const second = await ControlServer.listen({ path: stalePath, handler });
    assert.equal((await new ControlClient(stalePath).status()).node, 'node-1');
    await second.close();
    const plain = join(dir, 'plain');
    writeFileSync(plain, 'x');
    await assert.rejects(ControlServer.listen({ path: plain, handler }), /not a socket/);
  });
});

describe('ControlClient transport errors', () => {
  it('maps a missing socket to AGENT_UNAVAILABLE naming the path', async () => {
    const path = join(dir, 'missing.sock');
    await assert.rejects(new ControlClient(path).status(), (e: unknown) =>
      e instanceof ControlError && e.code === ControlErrorCode.unavailable && e.message.includes(path) && isAgentUnreachable(e));
  });

  it('maps a silent agent to AGENT_TIMEOUT', async () => {
    const path = join(dir, 'silent.sock');
    const silent = createServer(() => { /* accepts, never answers */ });
    await new Promise<void>((r) => silent.listen(path, r));
    try {
      await assert.rejects(new ControlClient(path, { timeoutMs: 200 }).status(), (e: unknown) => e instanceof ControlError && e.code === ControlErrorCode.timeout);
    } finally {
      silent.close();
    }
  });

  it('maps a connection closed before the answer to AGENT_UNAVAILABLE', async () => {
    const path = join(dir, 'rude.sock');
    const rude = createServer((s) => s.destroy());
    await new Promise<void>((r) => rude.listen(path, r));
    try {
      await assert.rejects(new ControlClient(path).status(), (e: unknown) => e instanceof ControlError && e.code === ControlErrorCode.unavailable);
    } finally {
      rude.close();
    }
  });
});

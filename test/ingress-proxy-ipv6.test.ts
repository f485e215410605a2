// The Ingress proxy over IPv6, with real sockets and real clients in a network namespace
// the test creates (ting-*): the proxy in a process of its own (helpers/ingress-child.ts)
// on its default listen address (both families on one [::] socket) and on one address of
// each family, backends on IPv4 and IPv6 addresses of the namespace's loopback
// (fd00:7e57::/64, one /128 each), curl -4 / -6, curl --http2 and h2load over IPv6.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { IngressConfig } from '../src/ingress/model.ts';
import { generateDefaultCertificate } from '../src/ingress/tls.ts';
import { backend, config, options, rule, vhost } from './helpers/ingress-config.ts';
import { IngressNetns, parseH2load, ProxyProcess, startBackends } from './helpers/ingress-lab.ts';
import { tapir } from './helpers/lab.ts';
import { hasCommand } from './helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : !['curl', 'h2load'].every(hasCommand) ? 'needs curl and h2load' : false;

const EP = {
  a4: { ip: '127.0.0.11', port: 8080 },
  a6: { ip: 'fd00:7e57::11', port: 8080 },
  b6: { ip: 'fd00:7e57::12', port: 8080 },
  /** Assigned, nothing listens: connections are refused. */
  dead6: { ip: 'fd00:7e57::14', port: 8080 },
  tls6: { ip: 'fd00:7e57::31', port: 8443 },
  grpc6: { ip: 'fd00:7e57::32', port: 9090 },
};

let ns: IngressNetns;
let proxy: ProxyProcess;
let generation = 0;

before(async () => {
  if (skip) return;
  ns = new IngressNetns('ting-');
  for (const ep of [EP.a6, EP.b6, EP.dead6, EP.tls6, EP.grpc6]) ns.exec('ip', ['-6', 'addr', 'add', `${ep.ip}/128`, 'dev', 'lo', 'nodad']);
  await startBackends(ns, {
    a4: `${EP.a4.ip}:8080`, a6: `${EP.a6.ip}:8080`, b6: `${EP.b6.ip}:8080`, secure6: `${EP.tls6.ip}:8443/tls`, grpc6: `${EP.grpc6.ip}:9090/h2c`,
  });
  proxy = await ProxyProcess.start(ns, { http: 80, https: 443, address: 'default', ...generateDefaultCertificate() });
});

after(() => { if (!skip) ns.destroy(); });

async function apply(hosts: IngressConfig['hosts']): Promise<void> {
  await proxy.setConfig(config(hosts, { generation: ++generation }));
}

interface CurlResult { code: number | null; status: number; version: string; headers: string; body: string; stderr: string; json: { server: string; url: string; headers: Record<string, string>; bodyLength: number } | null }

let curls = 0;
async function curl(args: string[]): Promise<CurlResult> {
  const n = ++curls;
  const h = join(ns.dir, `h${n}`), b = join(ns.dir, `b${n}`);
  const r = await ns.execAsync('curl', ['-sS', '-g', '--max-time', '10', '-D', h, '-o', b, '-w', '%{http_code} %{http_version}', ...args], 20_000);
  if (r.code !== 0) return { code: r.code, status: 0, version: '', headers: '', body: '', stderr: r.stderr, json: null };
  const [status, version] = r.stdout.trim().split(' ');
  const body = readFileSync(b, 'utf8');
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { code: 0, status: Number(status), version: version!, headers: readFileSync(h, 'utf8'), body, stderr: '', json };
}
async function ok(args: string[]): Promise<CurlResult> {
  const r = await curl(args);
  assert.equal(r.code, 0, `curl ${args.join(' ')}: ${r.stderr}`);
  return r;
}

const routes = (): IngressConfig['hosts'] => [
  vhost('v4.example', [rule('Prefix', '/', backend('default/v4:80', [EP.a4]))]),
  vhost('v6.example', [rule('Prefix', '/', backend('default/v6:80', [EP.a6]))]),
];

test('the default listen address takes both families; each reaches IPv4 and IPv6 endpoints; an IPv4 client is forwarded as IPv4, not ::ffff:', { skip }, async () => {
  await apply(routes());
  // curl -4 to 127.0.0.1 and curl -6 to ::1 reach one [::] socket.
  for (const [family, at, client] of [['-4', '127.0.0.1', '127.0.0.1'], ['-6', '[::1]', '::1']] as const) {
    for (const [host, server] of [['v4.example', 'a4'], ['v6.example', 'a6']] as const) {
      const r = await ok([family, '--resolve', `${host}:80:${at}`, '-H', 'X-Forwarded-For: 2001:db8::7', `http://${host}/from${family}`]);
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json?.server, server, `${family} client to ${host}`);
      assert.equal(r.json?.headers['x-real-ip'], client);
      assert.equal(r.json?.headers['x-forwarded-for'], `2001:db8::7, ${client}`);
      assert.equal(r.json?.headers.host, host);
    }
  }
  // An IPv6 literal as the Host: routed by the rules without a host.
  await apply([...routes(), vhost('', [rule('Prefix', '/', backend('default/any:80', [EP.b6]))])]);
  const literal = await ok(['-6', 'http://[::1]:80/literal']);
  assert.equal(literal.json?.server, 'b6');
  assert.equal(literal.json?.headers.host, '[::1]');
  assert.equal(literal.json?.headers['x-forwarded-host'], '[::1]');
});

test('HTTPS over IPv6: h2 and http/1.1 by ALPN with curl, h2load over IPv6 with zero failures; HTTPS and GRPC backends on IPv6 endpoints', { skip }, async () => {
  await apply([vhost('', [
    rule('Prefix', '/secure', backend('default/secure:443', [EP.tls6], 'HTTPS')),
    rule('Prefix', '/grpc.Echo', backend('default/grpc:9090', [EP.grpc6], 'GRPC')),
    rule('Prefix', '/', backend('default/v6:80', [EP.a6, EP.b6]), { options: options({ sslRedirect: false }) }),
  ])]);
  const h2 = await ok(['-6', '-k', '--http2', '--resolve', 'v6.example:443:[::1]', 'https://v6.example/h2']);
  assert.equal(h2.status, 200, h2.body);
  assert.equal(h2.version, '2');
  assert.match(h2.json!.server, /^[ab]6$/);
  assert.equal(h2.json?.headers['x-forwarded-proto'], 'https');
  assert.equal(h2.json?.headers['x-real-ip'], '::1');
  const h1 = await ok(['-6', '-k', '--http1.1', 'https://[::1]:443/h1']);
  assert.equal(h1.version, '1.1');
  const secure = await ok(['-6', 'http://[::1]/secure/x']);
  assert.equal(secure.json?.server, 'secure6', secure.body);
  const grpc = await ok(['-6', '-k', '--http2', '-H', 'Content-Type: application/grpc', '-H', 'TE: trailers', '--data-binary', 'ping', 'https://[::1]/grpc.Echo/Say']);
  assert.equal(grpc.json?.server, 'grpc6', grpc.body);
  assert.match(grpc.headers, /grpc-status: 0/);

  const load = parseH2load((await ns.execAsync('h2load', ['-n', '400', '-c', '4', '-m', '10', 'https://[::1]:443/h2load'], 60_000)).stdout);
  assert.equal(load.succeeded, 400, load.raw);
  assert.equal(load.s2xx, 400, load.raw);
  assert.match(load.raw, /Application protocol: h2/);
});

test('connect-retry across families: a dead IPv6 endpoint beside live ones -> zero failed requests; errors name the bracketed endpoint', { skip }, async () => {
  await apply([vhost('', [
    rule('Prefix', '/mixed', backend('default/mixed:80', [EP.dead6, EP.a4, EP.b6])),
    rule('Prefix', '/dead', backend('default/dead:80', [EP.dead6])),
  ])]);
  const r = parseH2load((await ns.execAsync('h2load', ['--h1', '-n', '300', '-c', '3', 'http://[::1]:80/mixed'], 60_000)).stdout);
  assert.equal(r.succeeded, 300, r.raw);
  assert.equal(r.s2xx, 300, r.raw);
  const dead = await ok(['-4', 'http://127.0.0.1/dead']);
  assert.equal(dead.status, 502);
  assert.match(dead.body, /backend default\/dead:80 \(endpoint \[fd00:7e57::14\]:8080\): connection refused/);
});

test('WebSocket upgrade to an IPv6 endpoint from an IPv6 client', { skip }, async () => {
  await apply([vhost('', [rule('Prefix', '/ws', backend('default/ws:80', [EP.b6]))])]);
  const script = `
    const ws = new WebSocket('ws://[::1]:80/ws/chat');
    const got = [];
    ws.onmessage = (e) => { got.push(e.data); if (got.length === 2) ws.close(); };
    ws.onopen = () => { ws.send('hello'); ws.send('again'); };
    ws.onclose = () => { console.log(JSON.stringify(got)); process.exit(0); };
    ws.onerror = (e) => { console.log('error ' + e.message); process.exit(1); };
    setTimeout(() => { console.log('timeout'); process.exit(1); }, 5000);`;
  const r = await ns.execAsync(process.execPath, ['-e', script], 15_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), ['b6: hello', 'b6: again']);
});

test('one listen address of either family is listened on alone', { skip }, async () => {
  const only6 = await ProxyProcess.start(ns, { http: 81, https: 444, address: '::1', ...generateDefaultCertificate() });
  const only4 = await ProxyProcess.start(ns, { http: 82, https: 445, address: '127.0.0.1', ...generateDefaultCertificate() });
  try {
    const hosts = [vhost('', [rule('Prefix', '/', backend('default/v6:80', [EP.a6]))])];
    await only6.setConfig(config(hosts, { generation: 1 }));
    await only4.setConfig(config(hosts, { generation: 1 }));
    assert.equal((await ok(['http://[::1]:81/'])).json?.server, 'a6');
    assert.equal((await curl(['http://127.0.0.1:81/'])).code, 7, 'nothing on IPv4 port 81');
    assert.equal((await ok(['http://127.0.0.1:82/'])).json?.server, 'a6');
    assert.equal((await curl(['http://[::1]:82/'])).code, 7, 'nothing on IPv6 port 82');
  } finally {
    await only6.stop();
    await only4.stop();
  }
});

test('a namespace with IPv6 turned off: the default listen address still serves IPv4', { skip }, async () => {
  const off = new IngressNetns('ting-');
  try {
    off.exec('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1']);
    await startBackends(off, { a4: `${EP.a4.ip}:8080` });
    const p = await ProxyProcess.start(off, { http: 80, https: 443, address: 'default', ...generateDefaultCertificate() });
    await p.setConfig(config([vhost('', [rule('Prefix', '/', backend('default/v4:80', [EP.a4]))])], { generation: 1 }));
    const r = await off.execAsync('curl', ['-sS', '--max-time', '5', 'http://127.0.0.1/'], 10_000);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { server: string }).server, 'a4');
    assert.equal((JSON.parse(r.stdout) as { headers: Record<string, string> }).headers['x-real-ip'], '127.0.0.1');
    await p.stop();
  } finally {
    off.destroy();
  }
});

test('tapir ingress --address: anything but one IP address is refused before listening', () => {
  for (const bad of ['[::1]', 'localhost', '10.0.0.1:80']) {
    const r = tapir(['ingress', '--manifests', '/nonexistent', '--address', bad, '--http-port', '0', '--https-port', '0', '--status-port', '0'], process.env, 30_000);
    assert.equal(r.status, 2, `--address ${bad} is refused: ${r.stderr}`);
    assert.ok(r.stderr.includes(`--address ${bad}: give one IPv4 or IPv6 address`), r.stderr);
  }
});

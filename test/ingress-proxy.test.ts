// The Ingress proxy end to end with real sockets and real clients, in a network
// namespace the test creates (ting-*): the proxy in a process of its own as in its pod
// (test/helpers/ingress-child.ts), backends as tiny node http servers
// (ingress-backends.ts), and curl, h2load, openssl s_client and Node's WebSocket client
// run inside the namespace. A veth pair in the namespace swallows packets, which makes
// an endpoint whose connect times out; an address nothing listens on refuses.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Backend, IngressConfig } from '../src/ingress/model.ts';
import { generateDefaultCertificate } from '../src/ingress/tls.ts';
import { backend, config, options, rule, vhost } from './helpers/ingress-config.ts';
import { IngressNetns, makeCertificate, parseH2load, ProxyProcess, startBackends } from './helpers/ingress-lab.ts';
import { hasCommand } from './helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : !['curl', 'h2load', 'openssl'].every(hasCommand) ? 'needs curl, h2load and openssl' : false;

const EP = {
  a: { ip: '127.0.0.11', port: 8080 }, b: { ip: '127.0.0.12', port: 8080 }, c: { ip: '127.0.0.13', port: 8080 },
  canary: { ip: '127.0.0.21', port: 8080 },
  /** HTTPS (backend-protocol HTTPS) and h2c (GRPC) endpoints. */
  tls: { ip: '127.0.0.31', port: 8443 },
  grpc: { ip: '127.0.0.32', port: 9090 },
  /** Nothing listens: connections are refused. */
  dead: { ip: '127.0.0.14', port: 8080 },
  /** Routed into a veth whose far end drops it: the SYN vanishes, the connect times out. */
  blackhole: { ip: '10.254.0.2', port: 8080 },
};

let ns: IngressNetns;
let proxy: ProxyProcess;
let generation = 0;
let fooCert: { certPem: string; keyPem: string };
let barCert: { certPem: string; keyPem: string };

before(async () => {
  if (skip) return;
  ns = new IngressNetns('ting-');
  // The blackhole: a veth pair inside the namespace whose far end has no address, and a
  // permanent neighbour entry, so the SYN to 10.254.0.2 leaves and nothing answers.
  ns.exec('ip', ['link', 'add', 'tingbh0', 'type', 'veth', 'peer', 'name', 'tingbh1']);
  ns.exec('ip', ['addr', 'add', '10.254.0.1/24', 'dev', 'tingbh0']);
  ns.exec('ip', ['link', 'set', 'tingbh0', 'up']);
  ns.exec('ip', ['link', 'set', 'tingbh1', 'up']);
  ns.exec('ip', ['neigh', 'add', '10.254.0.2', 'lladdr', '02:00:00:00:00:02', 'dev', 'tingbh0', 'nud', 'permanent']);
  await startBackends(ns, { a: `${EP.a.ip}:8080`, b: `${EP.b.ip}:8080`, c: `${EP.c.ip}:8080`, canary: `${EP.canary.ip}:8080`, secure: `${EP.tls.ip}:8443/tls`, grpc: `${EP.grpc.ip}:9090/h2c` });
  fooCert = makeCertificate(ns.dir, 'foo.example', ['foo.example']);
  barCert = makeCertificate(ns.dir, 'wild.bar.example', ['*.bar.example']);
  proxy = await ProxyProcess.start(ns, { http: 80, https: 443, ...generateDefaultCertificate() });
});

after(() => { if (!skip) ns.destroy(); });

async function apply(hosts: IngressConfig['hosts'], extra: Parameters<typeof config>[1] = {}): Promise<void> {
  await proxy.setConfig(config(hosts, { ...extra, generation: ++generation }));
}

interface CurlResult { status: number; version: string; headers: string; body: string; json: { server: string; method: string; url: string; headers: Record<string, string>; bodyLength: number } | null }

let curls = 0;
async function curl(args: string[]): Promise<CurlResult> {
  const n = ++curls;
  const h = join(ns.dir, `h${n}`), b = join(ns.dir, `b${n}`);
  const r = await ns.execAsync('curl', ['-sS', '--max-time', '10', '-D', h, '-o', b, '-w', '%{http_code} %{http_version}', ...args], 20_000);
  if (r.code !== 0) throw new Error(`curl ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  const [status, version] = r.stdout.trim().split(' ');
  const body = readFileSync(b, 'utf8');
  let json = null;
  try { json = JSON.parse(body); } catch { /* not JSON */ }
  return { status: Number(status), version: version!, headers: readFileSync(h, 'utf8'), body, json };
}

function writeBig(dir: string, bytes: number): string {
  const file = join(dir, `big-${bytes}`);
  writeFileSync(file, Buffer.alloc(bytes, 'b'));
  return file;
}

const http = (host: string, path: string, more: string[] = []): Promise<CurlResult> => curl(['--resolve', `${host}:80:127.0.0.1`, ...more, `http://${host}${path}`]);
const https = (host: string, path: string, more: string[] = []): Promise<CurlResult> => curl(['-k', '--resolve', `${host}:443:127.0.0.1`, ...more, `https://${host}${path}`]);

test('routes by host and path, falls to the default backend, 404 with a clear body; forwarding headers and X-Request-ID', { skip }, async () => {
  await apply([
    vhost('foo.example', [rule('Prefix', '/app', backend('default/a:80', [EP.a]), { ingress: 'default/foo' }), rule('Exact', '/exact', backend('default/b:80', [EP.b]))]),
    vhost('*.wild.example', [rule('Prefix', '/', backend('default/c:80', [EP.c]))]),
  ]);
  const app = await http('foo.example', '/app/x?q=1', ['-H', 'X-Forwarded-For: 192.0.2.7', '-H', 'X-Request-ID: req-123']);
  assert.equal(app.status, 200);
  assert.equal(app.json?.server, 'a');
  assert.equal(app.json?.url, '/app/x?q=1');
  const h = app.json!.headers;
  assert.equal(h['x-forwarded-for'], '192.0.2.7, 127.0.0.1');
  assert.equal(h['x-real-ip'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], 'foo.example');
  assert.equal(h['x-forwarded-port'], '80');
  assert.equal(h['x-request-id'], 'req-123');
  assert.equal(h.host, 'foo.example');
  const generated = (await http('foo.example', '/app')).json!.headers['x-request-id']!;
  assert.match(generated, /^[0-9a-f]{32}$/);
  assert.equal((await http('foo.example', '/exact')).json?.server, 'b');
  assert.equal((await http('x.wild.example', '/any')).json?.server, 'c');

  const missing = await http('foo.example', '/exact/');
  assert.equal(missing.status, 404);
  assert.match(missing.body, /no Ingress rule for host "foo.example" path "\/exact\/"/);
  assert.equal((await http('y.x.wild.example', '/')).status, 404, '*.wild.example is one label only');

  await apply([vhost('foo.example', [rule('Exact', '/exact', backend('default/b:80', [EP.b]))])], { defaultBackend: backend('default/fallback:80', [EP.c]) });
  assert.equal((await http('other.example', '/nothing')).json?.server, 'c');
  assert.equal((await http('foo.example', '/not-exact')).json?.server, 'c');
});

test('TLS: the certificate by SNI from two Secrets, the default certificate otherwise; h2 and http/1.1 by ALPN; ssl-redirect 308', { skip }, async () => {
  await apply([
    vhost('foo.example', [rule('Prefix', '/', backend('default/a:80', [EP.a]))], 'default/foo-tls'),
    vhost('x.bar.example', [rule('Prefix', '/', backend('default/b:80', [EP.b]), { options: options({ sslRedirect: false }) })], 'default/bar-tls'),
    vhost('plain.example', [rule('Prefix', '/', backend('default/c:80', [EP.c]))]),
  ], { certificates: [
    { secret: 'default/foo-tls', ...fooCert, hosts: ['foo.example'] },
    { secret: 'default/bar-tls', ...barCert, hosts: ['*.bar.example'] },
  ] });
  const subject = async (serverName: string): Promise<string> => {
    const r = await ns.execAsync('sh', ['-c', `openssl s_client -connect 127.0.0.1:443 -servername ${serverName} </dev/null 2>/dev/null | openssl x509 -noout -subject`]);
    return r.stdout.trim();
  };
  assert.match(await subject('foo.example'), /CN\s*=\s*foo\.example/);
  assert.match(await subject('x.bar.example'), /CN\s*=\s*wild\.bar\.example/);
  assert.match(await subject('unknown.example'), /Kubernetes Ingress Controller Fake Certificate/);

  const h2 = await https('foo.example', '/h2', ['--http2']);
  assert.equal(h2.status, 200);
  assert.equal(h2.version, '2');
  assert.equal(h2.json?.server, 'a');
  assert.equal(h2.json?.headers['x-forwarded-proto'], 'https');
  assert.equal(h2.json?.headers.host, 'foo.example');
  const h1 = await https('foo.example', '/h1', ['--http1.1']);
  assert.equal(h1.version, '1.1');
  assert.equal(h1.json?.server, 'a');

  const redirect = await http('foo.example', '/path?x=1');
  assert.equal(redirect.status, 308);
  assert.match(redirect.headers, /location: https:\/\/foo\.example\/path\?x=1/i);
  assert.equal((await http('x.bar.example', '/')).json?.server, 'b', 'ssl-redirect off: plain HTTP is served');
  assert.equal((await http('plain.example', '/')).json?.server, 'c', 'a host without TLS is not redirected');

  // A changed Secret is served from the next handshake on, without a restart.
  const renewed = makeCertificate(ns.dir, 'foo-renewed.example', ['foo.example']);
  await apply([vhost('foo.example', [rule('Prefix', '/', backend('default/a:80', [EP.a]))], 'default/foo-tls'), vhost('', [rule('Prefix', '/', backend('default/c:80', [EP.c]))])],
    { certificates: [{ secret: 'default/foo-tls', ...renewed, hosts: ['foo.example'] }] });
  assert.match(await subject('foo.example'), /CN\s*=\s*foo-renewed\.example/);

  // h2load over TLS without a server name: the default certificate, the rules without a host.
  const load = parseH2load((await ns.execAsync('h2load', ['-n', '200', '-c', '4', '-m', '10', 'https://127.0.0.1:443/h2load'], 60_000)).stdout);
  assert.equal(load.s2xx, 200, load.raw);
  assert.match(load.raw, /Application protocol: h2/);
});

test('errors: 503 without endpoints, 502 when every endpoint refuses, 504 on read and connect timeouts, 413 over the body size; each body names the backend', { skip }, async () => {
  const opts = options({ proxyReadTimeoutMs: 400, proxyConnectTimeoutMs: 300, proxyBodySize: 1000 });
  await apply([vhost('err.example', [
    rule('Prefix', '/none', backend('default/empty:80', [])),
    rule('Prefix', '/refused', backend('default/gone:80', [EP.dead, { ip: '127.0.0.15', port: 8080 }])),
    rule('Prefix', '/slow', backend('default/slow:80', [EP.a]), { options: opts }),
    rule('Prefix', '/blackhole', backend('default/hole:80', [EP.blackhole]), { options: opts }),
    rule('Prefix', '/upload', backend('default/upload:80', [EP.b]), { options: opts }),
  ])]);
  const none = await http('err.example', '/none');
  assert.equal(none.status, 503);
  assert.match(none.body, /backend default\/empty:80 has no ready endpoints/);
  const refused = await http('err.example', '/refused');
  assert.equal(refused.status, 502);
  assert.match(refused.body, /backend default\/gone:80 \(2 endpoints tried.*connection refused/);
  const slow = await http('err.example', '/slow?ms=3000');
  assert.equal(slow.status, 504);
  assert.match(slow.body, /backend default\/slow:80 .*no response within the read timeout/);
  const hole = await http('err.example', '/blackhole');
  assert.equal(hole.status, 504);
  assert.match(hole.body, /backend default\/hole:80 .*connect timed out/);
  const big = await http('err.example', '/upload', ['--data-binary', 'x'.repeat(5000)]);
  assert.equal(big.status, 413);
  assert.match(big.body, /over 1000 bytes, the limit of backend default\/upload:80/);
  const chunked = await http('err.example', '/upload', ['-H', 'Transfer-Encoding: chunked', '--data-binary', 'y'.repeat(5000)]);
  assert.equal(chunked.status, 413, 'a chunked body is counted as it arrives');
  const ok = await http('err.example', '/upload', ['--data-binary', 'z'.repeat(900)]);
  assert.equal(ok.status, 200);
  assert.equal(ok.json?.bodyLength, 900);
  assert.equal(ok.json?.method, 'POST');
});

test('backend protocols HTTPS and GRPC (h2c, trailers passed on); request bodies over h2; proxy-body-size 0 streams any size', { skip }, async () => {
  await apply([vhost('', [
    rule('Prefix', '/secure', backend('default/secure:443', [EP.tls], 'HTTPS')),
    rule('Prefix', '/grpc.Echo', backend('default/grpc:9090', [EP.grpc], 'GRPC')),
    rule('Prefix', '/stream', backend('default/b:80', [EP.b]), { options: options({ proxyBodySize: 0 }) }),
    rule('Prefix', '/', backend('default/a:80', [EP.a])),
  ])]);
  const secure = await curl(['http://127.0.0.1/secure/x']);
  assert.equal(secure.status, 200);
  assert.equal(secure.json?.server, 'secure');
  const grpc = await curl(['-k', '--http2', '-H', 'Content-Type: application/grpc', '-H', 'TE: trailers', '--data-binary', 'ping', 'https://127.0.0.1/grpc.Echo/Say']);
  assert.equal(grpc.status, 200);
  assert.equal(grpc.version, '2');
  assert.equal(grpc.json?.server, 'grpc');
  assert.equal(grpc.json?.method, 'POST');
  assert.equal(grpc.json?.bodyLength, 4);
  assert.match(grpc.headers, /grpc-status: 0/);
  assert.match(grpc.headers, /grpc-message: grpc-ok/);
  const h2post = await curl(['-k', '--http2', '--data-binary', 'q'.repeat(70_000), 'https://127.0.0.1/upload']);
  assert.equal(h2post.version, '2');
  assert.equal(h2post.json?.bodyLength, 70_000);
  const big = await curl(['--data-binary', `@${writeBig(ns.dir, 3 << 20)}`, 'http://127.0.0.1/stream']);
  assert.equal(big.status, 200);
  assert.equal(big.json?.bodyLength, 3 << 20);
  const over = await curl(['--data-binary', `@${writeBig(ns.dir, 3 << 20)}`, 'http://127.0.0.1/limited']);
  assert.equal(over.status, 413, 'the default limit is 1 MiB');
});

test('a client that leaves is counted as 499; a malformed request gets 400; the proxy keeps serving', { skip }, async () => {
  await apply([vhost('', [rule('Prefix', '/', backend('default/leaver:80', [EP.a]))])]);
  const gone = await ns.execAsync('curl', ['-sS', '--max-time', '0.5', 'http://127.0.0.1/slow?ms=3000'], 10_000);
  assert.equal(gone.code, 28, 'curl gave up (timeout)');
  const garbage = await ns.execAsync(process.execPath, ['-e', `
    const s = require('node:net').connect(80, '127.0.0.1', () => s.write('NOT HTTP AT ALL\\r\\n\\r\\n'));
    let got = ''; s.on('data', (d) => { got += d; }); s.on('close', () => { console.log(got); process.exit(0); });
    setTimeout(() => process.exit(1), 5000);`], 10_000);
  assert.match(garbage.stdout, /^HTTP\/1\.1 400 Bad Request/);
  assert.equal((await curl(['http://127.0.0.1/after'])).json?.server, 'a');
  let metrics = '';
  for (let i = 0; i < 50 && !metrics.includes('status="499"'); i++) {
    metrics = await proxy.metrics();
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(metrics, /tapir_ingress_requests_total\{ingress="default\/test",service="default\/leaver:80",status="499"\} 1/);
});

test('connect-retry: one of three endpoints dead -> zero failed requests (GET over keep-alive and POST on new connections)', { skip }, async () => {
  await apply([vhost('', [rule('Prefix', '/', backend('default/three:80', [EP.a, EP.dead, EP.b]))])]);
  const r = parseH2load((await ns.execAsync('h2load', ['--h1', '-n', '600', '-c', '6', 'http://127.0.0.1:80/retry'], 60_000)).stdout);
  assert.equal(r.succeeded, 600, r.raw);
  assert.equal(r.s2xx, 600, r.raw);
  const servers = new Set<string>();
  for (let i = 0; i < 12; i++) {
    const p = await curl(['-H', 'Connection: close', '--data-binary', `n=${i}`, 'http://127.0.0.1/post']);
    assert.equal(p.status, 200, p.body);
    servers.add(p.json!.server);
  }
  assert.deepEqual([...servers].sort(), ['a', 'b']);
  const metrics = await proxy.metrics();
  assert.match(metrics, /tapir_ingress_upstream_retries_total\{service="default\/three:80",reason="connect"\} [1-9]/);
});

test('after a request was sent, only idempotent methods are retried on another endpoint', { skip }, async () => {
  // Endpoint a resets every connection that sends /reset-on/a; b answers it.
  await apply([vhost('', [rule('Prefix', '/', backend('default/ab:80', [EP.a, EP.b]))])]);
  for (let i = 0; i < 6; i++) assert.equal((await curl(['http://127.0.0.1/reset-on/a'])).json?.server, 'b');
  const statuses: number[] = [];
  for (let i = 0; i < 6; i++) statuses.push((await curl(['--data-binary', 'x', 'http://127.0.0.1/reset-on/a'])).status);
  assert.ok(statuses.includes(502), `POSTs that reached a are not sent again: ${statuses.join(',')}`);
  assert.ok(statuses.includes(200), `POSTs that reached b succeed: ${statuses.join(',')}`);
});

test('WebSocket upgrade passes through (Node\'s WebSocket client), with the forwarding headers', { skip }, async () => {
  await apply([vhost('', [rule('Prefix', '/ws', backend('default/ws:80', [EP.dead, EP.c]))])]);
  const script = `
    const ws = new WebSocket('ws://127.0.0.1:80/ws/chat');
    const got = [];
    ws.onmessage = (e) => { got.push(e.data); if (got.length === 2) ws.close(); };
    ws.onopen = () => { ws.send('hello'); ws.send('again'); };
    ws.onclose = () => { console.log(JSON.stringify(got)); process.exit(0); };
    ws.onerror = (e) => { console.log('error ' + e.message); process.exit(1); };
    setTimeout(() => { console.log('timeout'); process.exit(1); }, 5000);`;
  const r = await ns.execAsync(process.execPath, ['-e', script], 15_000);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), ['c: hello', 'c: again']);
  // wss: the HTTPS port with ALPN http/1.1 upgrades too (the proxy's certificate is self-signed).
  const wss = await ns.execAsync('env', ['NODE_TLS_REJECT_UNAUTHORIZED=0', process.execPath, '--no-warnings', '-e', script.replace('ws://127.0.0.1:80/', 'wss://127.0.0.1:443/')], 15_000);
  assert.equal(wss.code, 0, wss.stdout + wss.stderr);
  assert.deepEqual(JSON.parse(wss.stdout), ['c: hello', 'c: again']);
  // The endpoint's own 101 reaches the client unchanged, and it saw the forwarding headers.
  const raw = `
    const s = require('node:net').connect(80, '127.0.0.1', () => s.write('GET /ws/raw HTTP/1.1\\r\\nHost: ws.example\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n\\r\\n'));
    let head = '';
    s.on('data', (d) => { head += d; if (head.includes('\\r\\n\\r\\n')) { console.log(head); process.exit(0); } });
    setTimeout(() => process.exit(1), 5000);`;
  const hs = await ns.execAsync(process.execPath, ['-e', raw], 15_000);
  assert.equal(hs.code, 0, hs.stderr);
  assert.match(hs.stdout, /^HTTP\/1\.1 101 Switching Protocols/);
  assert.match(hs.stdout, /sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/i);
  assert.match(hs.stdout, /x-backend: c/);
  assert.match(hs.stdout, /x-seen-forwarded-for: 127\.0\.0\.1/);
});

test('affinity cookie keeps a client on one endpoint; canary by header and by weight; rewrite-target with capture groups', { skip }, async () => {
  const sticky = options({ affinityCookie: { name: 'route', maxAgeSeconds: 3600, path: '/' } });
  const main = backend('default/main:80', [EP.a, EP.b, EP.c]);
  await apply([vhost('', [
    rule('Prefix', '/sticky', main, { options: sticky }),
    rule('Prefix', '/canary', backend('default/stable:80', [EP.a]), { canary: { backend: backend('default/canary:80', [EP.canary]), weight: 0, header: { name: 'X-Canary', value: null } } }),
    rule('Prefix', '/weighted', backend('default/stable:80', [EP.a]), { canary: { backend: backend('default/canary:80', [EP.canary]), weight: 100, header: null } }),
    rule('ImplementationSpecific', '/api(/|$)(.*)', backend('default/api:80', [EP.b]), { options: options({ useRegex: true, rewriteTarget: '/v2/$2' }) }),
  ])]);
  const first = await curl(['http://127.0.0.1/sticky']);
  const set = /set-cookie: (route=[0-9a-f]+); Path=\/; Max-Age=3600; HttpOnly/i.exec(first.headers);
  assert.ok(set, first.headers);
  assert.match(first.headers, /set-cookie: backend=/i, 'the backend\'s own cookie is kept');
  for (let i = 0; i < 8; i++) {
    const again = await curl(['-H', `Cookie: other=1; ${set[1]}`, 'http://127.0.0.1/sticky']);
    assert.equal(again.json?.server, first.json?.server);
    assert.doesNotMatch(again.headers, /set-cookie: route=/i, 'a valid cookie is not set again');
  }
  const spread = new Set<string>();
  for (let i = 0; i < 6; i++) spread.add((await curl(['http://127.0.0.1/sticky'])).json!.server);
  assert.ok(spread.size > 1, 'without the cookie, round robin');

  assert.equal((await curl(['http://127.0.0.1/canary'])).json?.server, 'a');
  assert.equal((await curl(['-H', 'X-Canary: always', 'http://127.0.0.1/canary'])).json?.server, 'canary');
  assert.equal((await curl(['-H', 'X-Canary: never', 'http://127.0.0.1/weighted'])).json?.server, 'canary', 'no header rule: the weight decides');
  assert.equal((await curl(['http://127.0.0.1/weighted'])).json?.server, 'canary');

  const rewritten = await curl(['http://127.0.0.1/api/users/7?full=1']);
  assert.equal(rewritten.json?.server, 'b');
  assert.equal(rewritten.json?.url, '/v2/users/7?full=1');
});

test('100 configuration changes under a steady client load (HTTP/1.1 keep-alive and h2): zero failed requests', { skip }, async () => {
  const sets: Backend['endpoints'][] = [[EP.a, EP.b], [EP.b, EP.c], [EP.c, EP.a], [EP.a], [EP.a, EP.b, EP.c]];
  const cfg = (i: number) => [vhost('', [rule('Prefix', '/load', backend('default/churn:80', sets[i % sets.length]!)), rule('Prefix', `/extra-${i}`, backend('default/x:80', [EP.c]))])];
  await apply(cfg(0));
  const h1 = ns.execAsync('h2load', ['--h1', '-D', '6', '-c', '4', 'http://127.0.0.1:80/load'], 30_000);
  const h2 = ns.execAsync('h2load', ['-D', '6', '-c', '2', '-m', '4', 'https://127.0.0.1:443/load'], 30_000);
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 1; i <= 100; i++) {
    await apply(cfg(i));
    await new Promise((r) => setTimeout(r, 30));
  }
  const [r1, r2] = [parseH2load((await h1).stdout), parseH2load((await h2).stdout)];
  for (const r of [r1, r2]) {
    // In duration mode h2load's "done" and its status code counts need not agree (it
    // counts responses of requests still open at the end in the latter): what says
    // "failed" is failed/errored/timeout and any status that is not 2xx.
    assert.ok(r.s2xx > 100, r.raw);
    assert.equal(r.failed + r.errored + r.timeout, 0, r.raw);
    assert.equal(r.s3xx + r.s4xx + r.s5xx, 0, r.raw);
  }
  const metrics = await proxy.metrics();
  assert.match(metrics, new RegExp(`tapir_ingress_config_generation ${generation}`));
  // The last configuration uses a, b, c (churn) and c (extra): the pools of the others were closed.
  assert.match(metrics, /tapir_ingress_upstream_dispatchers 3\n/);
  assert.match(metrics, /tapir_ingress_requests_total\{ingress="default\/test",service="default\/churn:80",status="200"\} \d+/);
  assert.match(metrics, /tapir_ingress_request_duration_seconds_bucket\{le="0.005",ingress="default\/test",service="default\/churn:80"\}/);
});

for (const nodeH2 of [false, true]) {
  test(`idle timeout (h2 on ${nodeH2 ? 'node:http2' : "the addon's nghttp2"}): an idle keep-alive client is closed, an idle h2 client gets GOAWAY and is closed, a client that keeps asking is not`, { skip }, async () => {
    // On 127.0.0.1 of this process's namespace, clients of its own: nothing leaves the host.
    const { IngressProxy } = await import('../src/ingress/proxy.ts');
    const { connect: netConnect } = await import('node:net');
    const { connect: h2Connect } = await import('node:http2');
    const IDLE_MS = 300;
    const p = new IngressProxy({ httpPort: 0, httpsPort: 0, address: '127.0.0.1', log: () => undefined, defaultCertificate: generateDefaultCertificate(), idleTimeoutMs: IDLE_MS, nodeH2 });
    await p.start();
    p.setConfig(config([], { generation: 1 }));
    /** A keep-alive client that asks once (then nothing, or again every `everyMs` for `forMs`); its answers and when its connection closed. */
    const h1Client = (everyMs: number, forMs: number): Promise<{ answers: number; closedAfterMs: number | null }> => new Promise((resolve) => {
      const t0 = performance.now();
      const socket = netConnect(p.ports.http, '127.0.0.1');
      socket.on('error', () => undefined);
      let answers = 0;
      let text = '';
      const ask = (): void => { socket.write('GET /x HTTP/1.1\r\nhost: idle.example\r\n\r\n'); };
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        answers = text.split('HTTP/1.1 404 ').length - 1;
      });
      socket.once('connect', ask);
      const timer = everyMs > 0 ? setInterval(ask, everyMs) : null;
      const done = (closedAfterMs: number | null): void => {
        if (timer !== null) clearInterval(timer);
        clearTimeout(limit);
        socket.destroy();
        resolve({ answers, closedAfterMs });
      };
      socket.once('close', () => done(performance.now() - t0));
      const limit = setTimeout(() => done(null), everyMs > 0 ? forMs : 5_000);
    });
    try {
      const [idle, busy] = await Promise.all([h1Client(0, 0), h1Client(100, 1_200)]);
      assert.equal(idle.answers, 1, 'the idle client got its answer');
      assert.ok(idle.closedAfterMs !== null && idle.closedAfterMs >= IDLE_MS, `the idle HTTP/1.1 connection was closed after the idle timeout (${idle.closedAfterMs} ms)`);
      assert.equal(busy.closedAfterMs, null, 'a connection with a request every 100 ms stayed open past the idle timeout');
      assert.ok(busy.answers >= 5, `it was answered throughout (${busy.answers})`);

      const session = h2Connect(`https://127.0.0.1:${p.ports.https}`, { rejectUnauthorized: false });
      session.on('error', () => undefined);
      const t0 = performance.now();
      let goaway = false;
      session.once('goaway', () => { goaway = true; });
      const closed = new Promise<number>((resolve) => session.once('close', () => resolve(performance.now() - t0)));
      const stream = session.request({ ':path': '/x', ':authority': 'idle.example' });
      const status = await new Promise<number>((resolve) => stream.once('response', (h) => resolve(Number(h[':status']))));
      stream.resume();
      assert.equal(status, 404);
      const after = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
      session.destroy();
      assert.ok(after !== null && after >= IDLE_MS, `the idle h2 connection was closed after the idle timeout (${after} ms)`);
      assert.ok(goaway, 'with a GOAWAY first');
    } finally {
      await p.stop(1_000);
    }
  });
}

test('stop(): an idle keep-alive client and an HTTP/2 session do not hold it up; the ports are free afterwards', async () => {
  // On 127.0.0.1 of this process's namespace, a client of its own: nothing leaves the host.
  const { IngressProxy } = await import('../src/ingress/proxy.ts');
  const { Agent, request } = await import('undici');
  const { connect } = await import('node:http2');
  const lines: string[] = [];
  const p = new IngressProxy({ httpPort: 0, httpsPort: 0, address: '127.0.0.1', log: (m) => lines.push(m), defaultCertificate: generateDefaultCertificate() });
  await p.start();
  p.setConfig(config([], { generation: 7 }));
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  const r = await request(`http://127.0.0.1:${p.ports.http}/x`, { dispatcher: agent });
  assert.equal(r.statusCode, 404);
  assert.match(await r.body.text(), /no Ingress rule for host "127.0.0.1" path "\/x"/);
  const session = connect(`https://127.0.0.1:${p.ports.https}`, { rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => session.once('connect', () => resolve()).once('error', reject));
  const t0 = performance.now();
  await p.stop(5_000);
  assert.ok(performance.now() - t0 < 4_000, 'idle connections were closed, not waited out');
  await assert.rejects(request(`http://127.0.0.1:${p.ports.http}/x`, { dispatcher: new Agent() }), /ECONNREFUSED/);
  assert.match(lines.join('\n'), /ingress proxy listening/);
  session.destroy();
  await agent.close();
});

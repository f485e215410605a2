// The Ingress proxy's own HTTP/1.1 engine (src/ingress/h1-server.ts, h1-upstream.ts)
// end to end, for what curl and h2load do not show: pipelining, HTTP/1.0 clients,
// chunked uploads, Expect: 100-continue, HEAD, chunked responses with trailers,
// backpressure from a slow reader, and malformed heads, each on both of the engine's
// wires: the addon's sockets (the default, h1-native.ts) and node:net
// (TAPIR_INGRESS_NODE_NET=1); and the node:http fallback the proxy uses where llhttp
// cannot be reached. Raw requests come from
// test/helpers/raw-http-client.ts inside the namespace the test creates (ting-*).
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateDefaultCertificate } from '../src/ingress/tls.ts';
import { backend, config, options, rule, vhost } from './helpers/ingress-config.ts';
import { IngressNetns, ProxyProcess, startBackends } from './helpers/ingress-lab.ts';
import { hasCommand } from './helpers/netns.ts';

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : !hasCommand('curl') ? 'needs curl' : false;
const EP = { a: { ip: '127.0.0.11', port: 8080 }, b: { ip: '127.0.0.12', port: 8080 } };
const CLIENT = join(import.meta.dirname, 'helpers', 'raw-http-client.ts');

let ns: IngressNetns;
let proxy: ProxyProcess;
/** The same proxy serving plain HTTP through node:http (TAPIR_INGRESS_NODE_HTTP=1), on port 81. */
let fallback: ProxyProcess;
/** The same proxy with the engine on node:net sockets (TAPIR_INGRESS_NODE_NET=1), on port 82. */
let onNet: ProxyProcess;

/** The addon's sockets in a process allowed STARVED_FDS descriptors, on port 83: what it does when accept() runs out. */
let starved: ProxyProcess;
const STARVED_FDS = 64;

/** The engine's two wires: each test runs on both. */
const WIRES = [
  { wire: "the addon's sockets", port: 80, proxy: (): ProxyProcess => proxy },
  { wire: 'node:net', port: 82, proxy: (): ProxyProcess => onNet },
];

before(async () => {
  if (skip) return;
  ns = new IngressNetns('ting-');
  await startBackends(ns, { a: `${EP.a.ip}:8080`, b: `${EP.b.ip}:8080` });
  const cfg = config([vhost('', [
    rule('Prefix', '/stream-up', backend('default/streamed:80', [EP.b]), { options: options({ proxyBodySize: 0 }) }),
    rule('Prefix', '/empty', backend('default/empty:80', [])),
    rule('Prefix', '/', backend('default/a:80', [EP.a])),
  ])], { generation: 1 });
  /** A proxy child with `env` set (TAPIR_INGRESS_NODE_*: what it serves with), configured. */
  const start = async (http: number, https: number, env: string | null, nofile?: number): Promise<ProxyProcess> => {
    if (env !== null) process.env[env] = '1';
    try {
      const p = await ProxyProcess.start(ns, { http, https, ...generateDefaultCertificate(), ...(nofile === undefined ? {} : { nofile }) });
      await p.setConfig(cfg);
      return p;
    } finally {
      if (env !== null) delete process.env[env];
    }
  };
  proxy = await start(80, 443, null);
  fallback = await start(81, 444, 'TAPIR_INGRESS_NODE_HTTP');
  onNet = await start(82, 445, 'TAPIR_INGRESS_NODE_NET');
  starved = await start(83, 446, null, STARVED_FDS);
  assert.equal(proxy.h1Wire, 'native', "the addon's HTTP/1.1 sockets load here");
  assert.equal(onNet.h1Wire, 'net');
});

after(() => { if (!skip) ns.destroy(); });

type Step = { send: string } | { until: string } | { quiet: number };

async function raw(steps: Step[], port = 80): Promise<string> {
  const r = await ns.execAsync(process.execPath, [CLIENT, '127.0.0.1', String(port), JSON.stringify(steps)], 20_000);
  assert.equal(r.code, 0, `raw client: exit ${r.code}; got: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

/**
 * A chunked response's body and trailer section, decoded (RFC 9112 7.1). Where one
 * chunk ends is the sender's choice: the proxy may join the endpoint's chunks that
 * arrived in one read.
 */
function dechunk(text: string): { body: string; trailers: string } {
  let at = text.indexOf('\r\n\r\n') + 4;
  let body = '';
  for (;;) {
    const eol = text.indexOf('\r\n', at);
    const size = parseInt(text.slice(at, eol), 16);
    assert.ok(eol > 0 && Number.isInteger(size), `a chunk size at ${at}: ${text}`);
    at = eol + 2;
    if (size === 0) break;
    body += text.slice(at, at + size);
    assert.equal(text.slice(at + size, at + size + 2), '\r\n', 'CRLF after a chunk');
    at += size + 2;
  }
  return { body, trailers: text.slice(at, text.indexOf('\r\n\r\n', at - 2) + 2) };
}

/** The urls the JSON-echoing backends saw, in the order their answers arrived. */
const urls = (text: string): string[] => [...text.matchAll(/"url":"([^"]*)"/g)].map((m) => m[1]!);

for (const { wire, port, proxy: proxyOf } of WIRES) {
  test(`${wire}: pipelined requests are answered in order on one connection; HEAD keeps its framing; HTTP/1.0 clients get no chunked framing and their Connection`, { skip }, async () => {
    const got = await raw([{ send: 'GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /p2 HTTP/1.1\r\nHost: x\r\n\r\nGET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], port);
    assert.equal(got.match(/^HTTP\/1\.1 200 OK/gm)?.length, 3, got);
    assert.deepEqual(urls(got), ['/p1', '/p3'], 'the HEAD answer has no body; the others come in order');
    assert.match(got, /\n<closed>$/, 'Connection: close ends the connection after the last answer');
    const heads = got.split(/(?=HTTP\/1\.1 200 OK)/);
    assert.match(heads[1]!, /\r\n\r\n$/, 'HEAD: a head and nothing after it');

    // The backends answer JSON chunked: an HTTP/1.0 client gets it up to the close.
    const ten = await raw([{ send: 'GET /ten HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n' }, { until: '<never>' }], port);
    assert.match(ten, /^HTTP\/1\.1 200 OK/);
    assert.doesNotMatch(ten, /transfer-encoding/i, 'no chunked framing for an HTTP/1.0 client');
    assert.match(ten, /^connection: close\r$/m);
    assert.deepEqual(urls(ten), ['/ten']);
    assert.match(ten, /\n<closed>$/);

    // /fixed has a Content-Length: an HTTP/1.0 keep-alive client keeps its connection.
    const tenKeep = await raw([
      { send: 'GET /fixed HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n' }, { until: 'ok\n$' },
      { send: 'GET /fixed HTTP/1.0\r\nHost: x\r\n\r\n' }, { until: '<never>' },
    ], port);
    const answers = tenKeep.split(/(?=HTTP\/1\.1 200 OK)/);
    assert.equal(answers.length, 2, tenKeep);
    assert.match(answers[0]!, /^content-length: 3\r$/m);
    assert.match(answers[0]!, /^connection: keep-alive\r$/m);
    assert.match(answers[1]!, /^connection: close\r$/m);
    assert.match(tenKeep, /ok\n\n<closed>$/);
  });

  test(`${wire}: a request head and a response that arrive in pieces (split inside the target, a field name and the body) are put together`, { skip }, async () => {
    const got = await raw([
      { send: 'GET /spl' }, { quiet: 40 }, { send: 'it HTTP/1.1\r\nHo' }, { quiet: 40 }, { send: 'st: x\r\nX-Pie' }, { quiet: 40 },
      { send: 'ce: 1\r\n\r\n' }, { until: '"url":"/split"' },
      { send: 'GET /dribble HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' },
    ], port);
    assert.deepEqual(urls(got), ['/split'], got);
    assert.match(got, /"x-piece":"1"/, 'the field split across reads arrived whole');
    const dribbled = got.slice(got.lastIndexOf('HTTP/1.1 '));
    assert.match(dribbled, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(dribbled, /^x-dribble: yes\r$/im);
    assert.match(dribbled, /\r\n\r\nhello done\n<closed>$/);
  });

  test(`${wire}: a keep-alive connection goes on after an answer of the proxy's own (503 from the request head): the next request, and a pipelined pair, are read and answered`, { skip }, async () => {
    const got = await raw([
      { send: 'GET /empty/1 HTTP/1.1\r\nHost: x\r\n\r\n' }, { until: 'no ready endpoints\n$' },
      { send: 'GET /after HTTP/1.1\r\nHost: x\r\n\r\n' }, { until: '"url":"/after"' }, { quiet: 100 },
      { send: 'GET /empty/2 HTTP/1.1\r\nHost: x\r\n\r\nGET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' },
    ], port);
    assert.equal(got.match(/^HTTP\/1\.1 503 Service Unavailable/gm)?.length, 2, got);
    assert.deepEqual(urls(got), ['/after', '/last'], 'the requests after each 503 reached the endpoint, in order');
    assert.match(got, /\n<closed>$/);
  });

  test(`${wire}: request bodies: chunked uploads reach the endpoint whole, buffered and streamed; Expect: 100-continue is answered before the body`, { skip }, async () => {
    const chunked = 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n';
    const buffered = await raw([{ send: `POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${chunked}` }, { until: '<never>' }], port);
    assert.match(buffered, /"bodyLength":11/, buffered);
    const streamed = await raw([{ send: `POST /stream-up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${chunked}` }, { until: '<never>' }], port);
    assert.match(streamed, /"server":"b"/, streamed);
    assert.match(streamed, /"bodyLength":11/, 'proxy-body-size 0: streamed, chunked again to the endpoint');

    const expect = await raw([
      { send: 'POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n' },
      { until: '^HTTP/1\\.1 100 Continue\r\n\r\n' },
      { send: 'hello' }, { until: '<never>' },
    ], port);
    assert.match(expect, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK/);
    assert.match(expect, /"bodyLength":5/);
    assert.doesNotMatch(expect.split('\r\n\r\n{')[1] ?? '', /expect/i, 'Expect is hop-by-hop: the endpoint does not see it');
  });

  test(`${wire}: chunked responses are framed for the client with their trailers; a 20 MiB body arrives whole through a reader slower than the endpoint`, { skip }, async () => {
    const got = await raw([{ send: 'GET /chunks?n=3&size=10 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], port);
    assert.match(got, /^transfer-encoding: chunked\r$/m, got);
    assert.deepEqual(dechunk(got), { body: 'aaaaaaaaaabbbbbbbbbbcccccccccc', trailers: 'x-chunks: 3\r\n' }, `the body in chunks, then the trailer: ${got}`);
    const file = join(ns.dir, 'big.bin');
    const r = await ns.execAsync('curl', ['-sS', '--max-time', '60', '--limit-rate', '40M', '-o', file, '-w', '%{http_code}', `http://127.0.0.1:${port}/chunks?n=320&size=65536`], 90_000);
    assert.equal(r.stdout, '200', r.stderr);
    assert.equal(statSync(file).size, 320 * 65536);
    // The endpoint's connection, held back for the slow reader, is reused by the next request.
    const next = await raw([{ send: 'GET /after-slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], port);
    assert.deepEqual(urls(next), ['/after-slow'], next);
  });

  test(`${wire}: malformed requests: a head over 16 KiB gets 431, garbage 400, CONNECT 405, each closing the connection; the proxy keeps serving`, { skip }, async () => {
    const big = await raw([{ send: `GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${'y'.repeat(20_000)}\r\n\r\n` }, { until: '<never>' }], port);
    assert.match(big, /^HTTP\/1\.1 431 Request Header Fields Too Large/);
    assert.match(big, /\n<closed>$/);
    const garbage = await raw([{ send: 'GET / HTTP/1.1\r\nHo st: x\r\n\r\n' }, { until: '<never>' }], port);
    assert.match(garbage, /^HTTP\/1\.1 400 Bad Request/);
    assert.match(garbage, /tapir-ingress: 400 Bad Request: /);
    const connect = await raw([{ send: 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n' }, { until: '<never>' }], port);
    assert.match(connect, /^HTTP\/1\.1 405 Method Not Allowed/);
    const after = await raw([{ send: 'GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], port);
    assert.deepEqual(urls(after), ['/after']);
    const metrics = await proxyOf().metrics();
    for (const status of [400, 431, 405]) assert.match(metrics, new RegExp(`tapir_ingress_requests_total\\{ingress="",service="",status="${status}"\\} 1\n`), `the ${status} is counted`);
  });
}

test("the addon's sockets out of descriptors: the listener waits (no busy loop) and accepts again once connections close", { skip }, async () => {
  const pid = starved.child.pid!;
  const cpuTicks = (): number => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ').slice(11, 13).reduce((a, b) => a + Number(b), 0);
  // Connections past the limit wait in the listen queue; the proxy must not spin on them.
  const hold = ns.spawn(process.execPath, ['-e', `
    const { connect } = require('node:net');
    const socks = [];
    for (let i = 0; i < ${STARVED_FDS + 40}; i++) socks.push(connect(83, '127.0.0.1').on('error', () => {}));
    process.stdin.once('data', () => { for (const s of socks) s.destroy(); setTimeout(() => process.exit(0), 200); });
    setTimeout(() => process.stdout.write('held\\n'), 1000);
  `]);
  try {
    await new Promise<void>((resolve) => hold.stdout!.once('data', () => resolve()));
    const before = cpuTicks();
    await new Promise((r) => setTimeout(r, 1000));
    const spent = cpuTicks() - before;
    assert.ok(spent < 50, `the proxy used ${spent} ticks of CPU in 1 s with connections it cannot accept (a busy loop is ~100)`);
  } finally {
    hold.stdin!.write('go\n');
    await new Promise((resolve) => hold.once('exit', resolve));
  }
  const after = await raw([{ send: 'GET /after-starved HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], 83);
  assert.deepEqual(urls(after), ['/after-starved'], after);
});

test('the node:http fallback serves the same routes and bodies, over HTTP and HTTPS', { skip }, async () => {
  const got = await raw([{ send: 'GET /f1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /stream-up HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc' }, { until: '<never>' }], 81);
  assert.deepEqual(urls(got), ['/f1', '/stream-up']);
  assert.match(got, /"server":"a"[^]*"server":"b"/);
  assert.match(got, /"bodyLength":3/);
  const chunks = await raw([{ send: 'GET /chunks?n=2&size=4 HTTP/1.1\r\nHost: x\r\nTE: trailers\r\nConnection: close\r\n\r\n' }, { until: '<never>' }], 81);
  assert.match(chunks, /aaaa[^]*bbbb/);
  // HTTPS: http/1.1 by ALPN goes to node:http too; h2 is node:http2's either way.
  for (const version of ['--http1.1', '--http2']) {
    const tls = await ns.execAsync('curl', ['-sSk', version, '-w', '\n%{http_version}', 'https://127.0.0.1:444/over-tls'], 20_000);
    assert.equal(tls.code, 0, tls.stderr);
    assert.deepEqual(urls(tls.stdout), ['/over-tls']);
    assert.match(tls.stdout, version === '--http2' ? /\n2$/ : /\n1\.1$/);
  }
  const metrics = await fallback.metrics();
  assert.match(metrics, /tapir_ingress_requests_total\{ingress="default\/test",service="default\/a:80",status="200"\} \d+/);
});

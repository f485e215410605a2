// The native addon's HTTP/2 session (native/src/h2-session.cc) against node:http2's
// client over a Unix socket pair: no TLS, no network, the framing alone. What
// the events say (heads, body pieces, ends, closes, drains), what the frames carry
// (status, fields, bodies, trailers), and HTTP/2's flow control both ways.
// The last test holds a NativeH2Request to a stand-in connection: what goes back to the
// windows when a body is never read. test/ingress-h2.test.ts runs the same engine end
// to end with curl and h2load.
import assert from 'node:assert/strict';
import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { NativeH2Request } from '../src/ingress/h2-native-message.ts';
import { nativeH2Session, type NativeH2Session } from '../src/ingress/h2-native.ts';

type Ev =
  | { kind: 'head'; id: number; endStream: boolean; lines: string[] | null }
  | { kind: 'data'; id: number; bytes: number }
  | { kind: 'end'; id: number }
  | { kind: 'closed'; id: number; code: number }
  | { kind: 'drained'; id: number }
  | { kind: 'over'; id: 0; code: number };

interface Harness {
  session: NativeH2Session;
  client: ClientHttp2Session;
  events: Ev[];
  /** Writes what the session framed (the proxy does this once per loop turn). */
  flush(): void;
  /** Resolves once an event matching `f` has come. */
  until(f: (e: Ev) => boolean): Promise<Ev>;
  /** Bytes the session wrote in all. */
  written(): number;
}

const Session = nativeH2Session();
const skip = Session === null ? 'the addon has no H2Session' : false;

const dir = mkdtempSync(join(tmpdir(), 'tapir-h2-session-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let sockets = 0;

/** Both ends of a Unix socket connection (kernel sockets: node:http2's client reads them as it reads TCP). */
async function socketPair(): Promise<[Socket, Socket]> {
  const path = join(dir, `s${sockets++}`);
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const client = netConnect(path);
  const serverSide = await accepted;
  server.close();
  return [client, serverSide];
}

async function harness(opts: { maxHeaderListBytes?: number; clientWindow?: number } = {}): Promise<Harness> {
  const session = new Session!({ maxConcurrentStreams: 16, maxHeaderListBytes: opts.maxHeaderListBytes ?? 16 * 1024 });
  const [clientSide, serverSide] = await socketPair();
  const events: Ev[] = [];
  const waiters: { f: (e: Ev) => boolean; resolve: (e: Ev) => void }[] = [];
  let written = 0;
  const take = (r: unknown[] | undefined): void => {
    if (r === undefined) return;
    const out = r[0] as Buffer | null;
    if (out !== null) {
      written += out.length;
      serverSide.write(out);
    }
    for (let i = 1; i < r.length;) {
      const kind = r[i] as number, id = r[i + 1] as number;
      let e: Ev;
      if (kind === 1) { e = { kind: 'head', id, endStream: r[i + 2] === 1, lines: r[i + 3] as string[] | null }; i += 4; }
      else if (kind === 2) { e = { kind: 'data', id, bytes: (r[i + 2] as Buffer).length }; i += 3; }
      else if (kind === 3) { e = { kind: 'end', id }; i += 2; }
      else if (kind === 4) { e = { kind: 'closed', id, code: r[i + 2] as number }; i += 3; }
      else if (kind === 5) { e = { kind: 'drained', id }; i += 2; }
      else if (kind === 6) { e = { kind: 'over', id: 0, code: r[i + 2] as number }; i += 3; }
      else throw new Error(`unknown event ${kind}`);
      events.push(e);
      for (const w of waiters.filter((w) => w.f(e))) { waiters.splice(waiters.indexOf(w), 1); w.resolve(e); }
    }
  };
  serverSide.on('data', (chunk: Buffer) => take(session.pump(chunk, true)));
  serverSide.on('error', () => undefined);
  const flush = (): void => take(session.pump(null, true));
  flush();
  const client = connect('http://h2.test', {
    createConnection: () => clientSide,
    ...(opts.clientWindow === undefined ? {} : { settings: { initialWindowSize: opts.clientWindow } }),
  });
  client.on('error', () => undefined);
  return {
    session, client, events, flush, written: () => written,
    until: (f) => {
      const seen = events.find(f);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no such event within 5 s; events: ${JSON.stringify(events)}`)), 5_000);
        waiters.push({ f, resolve: (e) => { clearTimeout(timer); resolve(e); } });
      });
    },
  };
}

function response(stream: ClientHttp2Stream): Promise<{ headers: Record<string, unknown>; body: Buffer; trailers: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    let headers: Record<string, unknown> = {};
    let trailers: Record<string, unknown> | null = null;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => { headers = h; });
    stream.on('trailers', (t) => { trailers = t; });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ headers, body: Buffer.concat(chunks), trailers }));
    stream.on('error', reject);
  });
}

const close = (h: Harness): void => { h.client.destroy(); h.session.close(); };

test('a request head as received, a response with its fields and body, then the close', { skip }, async () => {
  const h = await harness();
  const req = h.client.request({ ':path': '/x?y=1', 'x-one': 'a', cookie: 'c=1' });
  const res = response(req);
  const head = await h.until((e) => e.kind === 'head') as Extract<Ev, { kind: 'head' }>;
  assert.equal(head.endStream, true, 'a GET ends its stream with its head');
  const lines = head.lines!;
  assert.deepEqual(lines.filter((_, i) => i % 2 === 0 && lines[i]!.startsWith(':')).sort(), [':authority', ':method', ':path', ':scheme']);
  assert.ok(lines.indexOf(':path') < lines.indexOf('x-one'), 'pseudo-headers first');
  assert.equal(lines[lines.indexOf(':path') + 1], '/x?y=1');
  assert.equal(lines[lines.indexOf('x-one') + 1], 'a');
  assert.equal(h.session.respond(head.id, 200, ['content-type', 'text/plain', 'set-cookie', 'a=1', 'set-cookie', 'b=2'], false), 0);
  assert.equal(h.session.write(head.id, Buffer.from('hello ')), 6);
  h.session.write(head.id, Buffer.from('world'));
  assert.equal(h.session.end(head.id, null), 0);
  h.flush();
  const got = await res;
  assert.equal(got.headers[':status'], 200);
  assert.deepEqual(got.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(got.body.toString(), 'hello world');
  assert.equal(got.trailers, null, 'no trailers: the last DATA frame ends the stream');
  assert.deepEqual(await h.until((e) => e.kind === 'closed'), { kind: 'closed', id: head.id, code: 0 });
  assert.equal(h.session.write(head.id, Buffer.from('late')), -1, 'a closed stream takes nothing');
  close(h);
});

test('trailers after the body; a head-only answer; a field HTTP/2 cannot carry is refused', { skip }, async () => {
  const h = await harness();
  const a = h.client.request({ ':path': '/grpc', ':method': 'POST', te: 'trailers' });
  a.end('q');
  const ra = response(a);
  const ha = await h.until((e) => e.kind === 'head') as Extract<Ev, { kind: 'head' }>;
  assert.equal(ha.endStream, false, 'a body follows');
  assert.deepEqual(await h.until((e) => e.kind === 'data'), { kind: 'data', id: ha.id, bytes: 1 });
  await h.until((e) => e.kind === 'end');
  h.session.consume(ha.id, 1);
  h.session.respond(ha.id, 200, ['content-type', 'application/grpc'], false);
  h.session.write(ha.id, Buffer.from('body'));
  h.session.end(ha.id, ['grpc-status', '0', 'grpc-message', 'ok']);
  h.flush();
  const got = await ra;
  assert.equal(got.body.toString(), 'body');
  assert.equal(got.trailers?.['grpc-status'], '0');
  assert.equal(got.trailers?.['grpc-message'], 'ok');

  const b = h.client.request({ ':path': '/empty', ':method': 'HEAD' });
  const rb = response(b);
  const hb = await h.until((e) => e.kind === 'head' && e.id !== ha.id) as Extract<Ev, { kind: 'head' }>;
  h.session.respond(hb.id, 200, ['content-length', '42'], true);
  h.flush();
  const gotB = await rb;
  assert.equal(gotB.headers['content-length'], '42');
  assert.equal(gotB.body.length, 0);

  const c = h.client.request({ ':path': '/bad' });
  c.on('error', () => undefined);
  const hc = await h.until((e) => e.kind === 'head' && e.id !== ha.id && e.id !== hb.id) as Extract<Ev, { kind: 'head' }>;
  assert.equal(h.session.respond(hc.id, 200, ['bad name', 'x'], false), -1);
  assert.equal(h.session.respond(hc.id, 200, ['x-ok', 'line\r\nbreak'], false), -1);
  assert.equal(h.session.respond(hc.id, 200, ['x-ok', 'fine'], true), 0, 'the stream still takes a valid head');
  h.flush();
  close(h);
});

test('request bodies wait for consume: no more than the window arrives until the proxy passes bytes on', { skip }, async () => {
  const h = await harness();
  const body = Buffer.alloc(300_000, 0x62);
  const req = h.client.request({ ':path': '/up', ':method': 'POST' });
  req.end(body);
  req.on('error', () => undefined);
  const head = await h.until((e) => e.kind === 'head');
  const received = (): number => h.events.reduce((n, e) => n + (e.kind === 'data' ? e.bytes : 0), 0);
  for (let i = 0; i < 500 && received() < 65_535; i++) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(received(), 65_535, "HTTP/2's initial window (RFC 9113 6.9.2), and no more");
  // Consume as the proxy does when it passes bytes on: the rest comes.
  let consumed = 0;
  while (!h.events.some((e) => e.kind === 'end')) {
    const now = received();
    if (now > consumed) { h.session.consume(head.id, now - consumed); consumed = now; h.flush(); }
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(received(), body.length);
  close(h);
});

test('response bodies queue until the client\'s window opens; drained once under the low mark', { skip }, async () => {
  const h = await harness({ clientWindow: 16_384 });
  const req = h.client.request({ ':path': '/down' });
  req.pause();
  const head = await h.until((e) => e.kind === 'head');
  h.session.respond(head.id, 200, [], false);
  const queued = h.session.write(head.id, Buffer.alloc(200_000, 0x63));
  assert.ok(queued > 64 * 1024, `the queue says wait (${queued})`);
  h.session.end(head.id, null);
  h.flush();
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(!h.events.some((e) => e.kind === 'drained'), 'nothing drains while the client reads nothing');
  assert.ok(h.written() < 200_000, 'what the window does not allow stays queued');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.resume();
  const done = new Promise((r) => req.on('end', r));
  await h.until((e) => e.kind === 'drained');
  await done;
  assert.equal(Buffer.concat(chunks).length, 200_000);
  close(h);
});

test('a head over the limit comes without its fields; a client\'s reset closes with its code; broken framing ends the session with GOAWAY', { skip }, async () => {
  const h = await harness({ maxHeaderListBytes: 1024 });
  // node:http2's client would refuse to send a head over the limit the server
  // announced; one that ignores it is what the session must cope with.
  await new Promise((r) => h.client.once('remoteSettings', r));
  (h.client.remoteSettings as { maxHeaderListSize?: number }).maxHeaderListSize = 1 << 20;
  const big = h.client.request({ ':path': '/big', 'x-big': 'v'.repeat(2000) });
  big.on('error', () => undefined);
  const head = await h.until((e) => e.kind === 'head') as Extract<Ev, { kind: 'head' }>;
  assert.equal(head.lines, null);

  const gone = h.client.request({ ':path': '/gone' });
  gone.on('error', () => undefined);
  const g = await h.until((e) => e.kind === 'head' && e.id !== head.id);
  gone.close(constants.NGHTTP2_CANCEL);
  assert.deepEqual(await h.until((e) => e.kind === 'closed' && e.id === g.id), { kind: 'closed', id: g.id, code: constants.NGHTTP2_CANCEL });
  close(h);

  // A fresh session fed the preface and then a SETTINGS frame 5 bytes long (RFC 9113
  // 6.5: FRAME_SIZE_ERROR): the session is over, its GOAWAY in the output.
  const s = new Session!({ maxConcurrentStreams: 4, maxHeaderListBytes: 1024 });
  s.pump(null, true);
  const r = s.pump(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5])]), true)!;
  assert.equal(r[1], 6, 'event "over"');
  assert.ok((r[3] as number) <= 0, 'nghttp2 ended it itself (0) or failed (its error)');
  const out = r[0] as Buffer;
  let goaway = false;
  for (let i = 0; i + 9 <= out.length; i += 9 + out.readUIntBE(i, 3)) if (out[i + 3] === 7) goaway = true;
  assert.ok(goaway, 'GOAWAY in the output');
  s.close();
  assert.equal(s.pump(null, true), undefined, 'a closed session does nothing');
});

test('goaway: the client is told; streams open finish', { skip }, async () => {
  const h = await harness();
  const req = h.client.request({ ':path': '/last' });
  const res = response(req);
  const head = await h.until((e) => e.kind === 'head');
  const told = new Promise((r) => h.client.once('goaway', r));
  h.session.goaway();
  h.flush();
  await told;
  h.session.respond(head.id, 204, [], true);
  h.flush();
  assert.equal((await res).headers[':status'], 204);
  close(h);
});

test('a request body that arrived whole but was never read goes back to the windows when its response ends', () => {
  const consumed: [number, number][] = [];
  const conn = {
    clientAddress: '10.0.0.1',
    session: { consume: (id: number, bytes: number) => { consumed.push([id, bytes]); } } as unknown as NativeH2Session,
    schedule: () => undefined,
  };
  const req = new NativeH2Request(conn, 7, 'POST', '/x', [':method', 'POST'], true);
  req.pushBody(Buffer.alloc(1000));
  req.pushBody(Buffer.alloc(500));
  req.endBody();
  assert.deepEqual(consumed, [], 'nothing read, nothing consumed yet');
  req.discard();
  assert.deepEqual(consumed, [[7, 1500]]);
  req.pushBody(Buffer.alloc(10));
  assert.deepEqual(consumed, [[7, 1500], [7, 10]], 'what comes after is dropped and consumed');

  // Read while paused: the bytes are held until resume, or until the response ends.
  const paused = new NativeH2Request(conn, 9, 'POST', '/y', [':method', 'POST'], true);
  paused.streamBody(() => undefined, () => undefined);
  paused.pause();
  paused.pushBody(Buffer.alloc(300));
  paused.endBody();
  paused.discard();
  assert.deepEqual(consumed.slice(2), [[9, 300]]);
});

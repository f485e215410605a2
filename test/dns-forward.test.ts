// The forwarder (CoreDNS `forward`), resolv.conf and the loop detector against real
// sockets: the upstreams are dns-packet servers on kernel-chosen ports of 127.0.0.1
// (test/helpers/dns-upstream.ts), UDP and TCP on one port; a "dead" upstream is a bound
// UDP port that never answers. No packet leaves the host.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { DEFAULT_CACHE_OPTIONS, DnsCache } from '../src/dns/cache.ts';
import { Forwarder, type ForwarderOptions } from '../src/dns/forward.ts';
import { LoopDetector } from '../src/dns/loop.ts';
import { formatResolvConf, parseResolvConf } from '../src/dns/resolv-conf.ts';
import { FakeUpstream, MiniDnsServer, decode, makeQuery, responseTo, silentUpstream, type UpstreamHandler } from './helpers/dns-upstream.ts';
import { hasCommand, waitFor } from './helpers/netns.ts';

const answerA = (address: string, ttl = 60): UpstreamHandler => (q) =>
  responseTo(q, { answers: [{ type: 'A', name: q.questions![0]!.name, ttl, data: address }] });

function forwarder(t: { after(fn: () => void): void }, options: Partial<ForwarderOptions> & Pick<ForwarderOptions, 'upstreams'>): Forwarder {
  const f = new Forwarder({
    maxConcurrent: 100, timeoutMs: 2000, policy: 'sequential', forceTcp: false, preferUdp: false, healthCheckMs: 500,
    ...options,
  });
  t.after(() => f.close());
  return f;
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  assert.fail('expected a rejection');
}

// ---- resolv.conf ----

test('resolv.conf: nameservers (at most three, bad ones skipped), search and domain (last wins), options merged, comments', () => {
  const conf = parseResolvConf([
    '# written by a DHCP client',
    'domain corp.example',
    'nameserver 10.0.0.1   # primary',
    'nameserver not-an-address',
    ';nameserver 10.0.0.99',
    'nameserver fd00::53',
    'nameserver fe80::1%eth0',
    'nameserver 10.0.0.4',
    'search svc.cluster.local. cluster.local ; old',
    'options ndots:2 timeout:1',
    'options edns0 ndots:5',
    'sortlist 130.155.160.0/255.255.240.0',
    '  nameserver 10.0.0.5',
    '',
  ].join('\n'));
  assert.deepEqual(conf, {
    nameservers: ['10.0.0.1', 'fd00::53', 'fe80::1%eth0'],
    search: ['svc.cluster.local', 'cluster.local'],
    options: ['ndots:5', 'timeout:1', 'edns0'],
  });
  assert.deepEqual(parseResolvConf('search a.example b.example\ndomain c.example\n').search, ['c.example'], 'domain after search wins');
  assert.deepEqual(parseResolvConf(''), { nameservers: [], search: [], options: [] });
  assert.deepEqual(parseResolvConf('Nameserver 10.0.0.1\nnameserver\n'), { nameservers: [], search: [], options: [] }, 'keywords are case-sensitive; an empty line ignored');
});

test('resolv.conf: formatResolvConf writes the canonical form (containerd\'s order) and reads back the same', () => {
  const conf = { nameservers: ['10.96.0.10'], search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'], options: ['ndots:5'] };
  const text = formatResolvConf(conf);
  assert.equal(text, 'search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
  assert.deepEqual(parseResolvConf(text), conf);
  assert.equal(formatResolvConf({ nameservers: ['192.0.2.53'], search: [], options: [] }), 'nameserver 192.0.2.53\n');
});

// ---- forwarding ----

test('a query is forwarded with a fresh random id and answered with the client\'s id', async (t) => {
  const up = await FakeUpstream.start(answerA('192.0.2.1'));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream] });
  for (let i = 0; i < 8; i++) {
    const { msg, q } = makeQuery(`n${i}.example.test`, 'A', { id: 0x1234 });
    const res = decode(await f.query(msg, msg.length, q));
    assert.equal(res.id, 0x1234);
    assert.equal(res.answers[0]!.data, '192.0.2.1');
    assert.equal(res.questions[0]!.name, `n${i}.example.test`);
  }
  assert.equal(up.seen.length, 8);
  assert.ok(up.seen.some((s) => s.id !== 0x1234), `ids seen upstream: ${up.seen.map((s) => s.id)}`);
  assert.ok(up.seen.every((s) => s.transport === 'udp'));
  assert.deepEqual(f.stats(), [{ upstream: `127.0.0.1:${up.port}`, requests: 8, failures: 0, healthy: true, healthcheckFailures: 0 }]);
});

test('the caller\'s buffer may be reused as soon as query() returns', async (t) => {
  const up = await FakeUpstream.start(async (q) => {
    await new Promise((r) => setTimeout(r, 50));
    return answerA('192.0.2.2')(q, undefined as never);
  });
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream] });
  const { msg, q } = makeQuery('reuse.example.test', 'A', { id: 7 });
  const pending = f.query(msg, msg.length, { ...q });
  msg.fill(0xff); // the server reads the next datagram into the same buffer
  const res = decode(await pending);
  assert.equal(res.id, 7);
  assert.equal(res.questions[0]!.name, 'reuse.example.test');
});

test('failover: a dead first upstream times out and the next one answers; the dead one is health-checked', async (t) => {
  const dead = await silentUpstream();
  t.after(() => dead.close());
  const up = await FakeUpstream.start(answerA('192.0.2.3'));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [dead.upstream, up.upstream], timeoutMs: 300, healthCheckMs: 100 });
  const { msg, q } = makeQuery('failover.example.test');
  const res = decode(await f.query(msg, msg.length, q));
  assert.equal(res.answers[0]!.data, '192.0.2.3');
  const [d, u] = f.stats();
  assert.equal(d!.requests, 1);
  assert.equal(d!.failures, 1);
  assert.equal(u!.requests, 1);
  // The probe (`. IN NS`) reaches the dead upstream too.
  await waitFor(() => dead.received() >= 2 && f.stats()[0]!.healthcheckFailures >= 1, 5000);
});

test('an upstream\'s SERVFAIL goes back to the client as is (CoreDNS fails over on errors, not on rcodes)', async (t) => {
  const failing = await FakeUpstream.start((q) => responseTo(q, { rcode: 2 }));
  t.after(() => failing.close());
  const up = await FakeUpstream.start(answerA('192.0.2.4'));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [failing.upstream, up.upstream] });
  const { msg, q } = makeQuery('servfail.example.test');
  const res = decode(await f.query(msg, msg.length, q));
  assert.equal(res.rcode, 'SERVFAIL');
  assert.equal(up.seen.length, 0);
});

test('every upstream dead: DNS_UPSTREAM_FAILED naming them, after a bounded number of attempts', async (t) => {
  const a = await silentUpstream();
  const b = await silentUpstream();
  t.after(() => a.close());
  t.after(() => b.close());
  const f = forwarder(t, { upstreams: [a.upstream, b.upstream], timeoutMs: 150, healthCheckMs: 10_000, maxFails: 0 });
  const { msg, q } = makeQuery('nowhere.example.test');
  const err = await rejection(f.query(msg, msg.length, q));
  assert.equal(err.code, 'DNS_UPSTREAM_FAILED');
  assert.match(err.message, new RegExp(`nowhere\\.example\\.test from 127\\.0\\.0\\.1:${a.upstream.port}, 127\\.0\\.0\\.1:${b.upstream.port}: .*did not answer`));
  assert.deepEqual(f.stats().map((s) => s.requests), [2, 2], 'the list walked twice, then given up');
  assert.equal(f.counters().inFlight, 0);
});

const many = (name: string) => Array.from({ length: 60 }, (_, i) => ({ type: 'A' as const, name, ttl: 60, data: `198.51.100.${i + 1}` }));

/** UDP: TC with no records (the answer does not fit 512 bytes); TCP: all 60 records. */
const truncating: UpstreamHandler = (q, ctx) => ctx.transport === 'udp'
  ? responseTo(q, { flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | dnsPacket.TRUNCATED_RESPONSE })
  : responseTo(q, { answers: many(q.questions![0]!.name) });

test('a truncated UDP answer is asked again over TCP, and the TCP connection is reused', async (t) => {
  const up = await FakeUpstream.start(truncating);
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream] });
  for (const name of ['big1.example.test', 'big2.example.test']) {
    const { msg, q } = makeQuery(name);
    const res = decode(await f.query(msg, msg.length, q));
    assert.equal(res.flag_tc, false);
    assert.equal(res.answers.length, 60);
    assert.equal(res.id, 0x1234);
  }
  assert.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp', 'udp', 'tcp']);
  assert.equal(up.tcpConnections, 1, 'the second TCP query reused the first connection');
});

test('CoreDNS\'s transport rule when the client\'s is given: TC back to a UDP client, TCP for a TCP client, force_tcp, prefer_udp', async (t) => {
  const up = await FakeUpstream.start(truncating);
  t.after(() => up.close());
  const plain = forwarder(t, { upstreams: [up.upstream] });
  let { msg, q } = makeQuery('udp-client.example.test');
  assert.equal(decode(await plain.query(msg, msg.length, q, 'udp')).flag_tc, true, 'the client retries over TCP itself');
  ({ msg, q } = makeQuery('tcp-client.example.test'));
  assert.equal(decode(await plain.query(msg, msg.length, q, 'tcp')).answers.length, 60);
  assert.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp']);

  up.seen.length = 0;
  const forced = forwarder(t, { upstreams: [up.upstream], forceTcp: true });
  ({ msg, q } = makeQuery('forced.example.test'));
  assert.equal(decode(await forced.query(msg, msg.length, q, 'udp')).answers.length, 60);
  assert.deepEqual(up.seen.map((s) => s.transport), ['tcp']);

  up.seen.length = 0;
  const preferUdp = forwarder(t, { upstreams: [up.upstream], preferUdp: true });
  ({ msg, q } = makeQuery('prefer.example.test'));
  assert.equal(decode(await preferUdp.query(msg, msg.length, q, 'tcp')).answers.length, 60);
  assert.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp'], 'UDP first, TCP after TC');
});

test('a pooled TCP connection the upstream closed is replaced without counting a failure', async (t) => {
  let onFirstConnection = 0;
  const up = await FakeUpstream.start((q, ctx) => {
    // The second query on the first connection finds it closed by the server (CoreDNS's ErrCachedClosed).
    if (ctx.connection === 1 && ++onFirstConnection === 2) {
      ctx.close();
      return 'drop';
    }
    return responseTo(q, { answers: many(q.questions![0]!.name).slice(0, 2) });
  });
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream], forceTcp: true });
  for (const name of ['first.example.test', 'second.example.test', 'third.example.test']) {
    const { msg, q } = makeQuery(name);
    assert.equal(decode(await f.query(msg, msg.length, q)).answers.length, 2);
  }
  assert.deepEqual(up.seen.map((s) => s.name), ['first.example.test', 'second.example.test', 'second.example.test', 'third.example.test']);
  assert.equal(up.tcpConnections, 2);
  assert.equal(f.stats()[0]!.failures, 0);
  assert.equal(f.stats()[0]!.requests, 3);
});

test('an idle pooled TCP connection is closed after expire', async (t) => {
  const up = await FakeUpstream.start((q) => responseTo(q, { answers: many(q.questions![0]!.name).slice(0, 1) }));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream], forceTcp: true, expireMs: 200 });
  const { msg, q } = makeQuery('idle.example.test');
  await f.query(msg, msg.length, q);
  assert.equal(up.openConnections, 1, 'kept for the next query');
  await waitFor(() => up.openConnections === 0, 5000);
  await f.query(msg, msg.length, q);
  assert.equal(up.tcpConnections, 2, 'the next query dials again');
});

test('an IPv6 upstream, written in a long form, over UDP and TCP', async (t) => {
  let up: FakeUpstream;
  try {
    up = await FakeUpstream.start(truncating, '::1');
  } catch (err) {
    t.skip(`no ::1 on this host: ${(err as Error).message}`);
    return;
  }
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [{ address: '0:0:0:0:0:0:0:1', port: up.port }] });
  const { msg, q } = makeQuery('v6.example.test');
  assert.equal(decode(await f.query(msg, msg.length, q)).answers.length, 60);
  assert.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp']);
  assert.equal(f.stats()[0]!.upstream, `[::1]:${up.port}`);
  assert.equal(f.counters().mismatchedResponses, 0, 'the kernel\'s sender address matched the canonical form');
});

test('max_concurrent: past it a query is refused at once (DNS_TOO_MANY_QUERIES), the others are answered', async (t) => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const up = await FakeUpstream.start(async (q) => {
    await gate;
    return answerA('192.0.2.5')(q, undefined as never);
  });
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream], maxConcurrent: 2 });
  const queries = ['c1', 'c2'].map((n) => makeQuery(`${n}.example.test`));
  const pending = queries.map(({ msg, q }) => f.query(msg, msg.length, q));
  const third = makeQuery('c3.example.test');
  const err = await rejection(f.query(third.msg, third.msg.length, third.q));
  assert.equal(err.code, 'DNS_TOO_MANY_QUERIES');
  assert.equal(f.counters().maxConcurrentRejects, 1);
  assert.equal(f.counters().inFlight, 2);
  await waitFor(() => up.seen.length === 2);
  release();
  for (const p of pending) assert.equal(decode(await p).answers[0]!.data, '192.0.2.5');
  const after = decode(await f.query(third.msg, third.msg.length, third.q));
  assert.equal(after.answers[0]!.data, '192.0.2.5', 'a slot is free again');
  assert.equal(up.seen.length, 3, 'the refused query never reached the upstream');
});

test('spoofed and misrouted answers are ignored: wrong id, wrong source port, wrong question, not a response', async (t) => {
  const spoofer = createSocket('udp4');
  await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', () => r()));
  t.after(() => spoofer.close());
  const up = await FakeUpstream.start(async (q, ctx) => {
    const bogus = (fields: Partial<dnsPacket.Packet>): Buffer => dnsPacket.encode({ ...responseTo(q, { answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '203.0.113.66' }] }), ...fields });
    ctx.send(bogus({ id: (q.id! + 1) & 0xffff }));
    spoofer.send(bogus({}), ctx.remote.port, ctx.remote.address);
    ctx.send(bogus({ questions: [{ type: 'A', name: 'other.example.test', class: 'IN' }] }));
    ctx.send(bogus({ questions: [{ type: 'AAAA', name: q.questions![0]!.name, class: 'IN' }] }));
    ctx.send(bogus({ type: 'query' }));
    await new Promise((r) => setTimeout(r, 100));
    // The real answer, its question in another case (RFC 4343: still the same question).
    return responseTo({ ...q, questions: [{ ...q.questions![0]!, name: q.questions![0]!.name.toUpperCase() }] }, { answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 60, data: '192.0.2.6' }] });
  });
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream] });
  const { msg, q } = makeQuery('victim.example.test');
  const res = decode(await f.query(msg, msg.length, q));
  assert.deepEqual(res.answers.map((a) => a.data), ['192.0.2.6']);
  const c = f.counters();
  assert.equal(c.unmatchedResponses, 1, 'the wrong id');
  assert.equal(c.mismatchedResponses, 4, 'wrong port, two wrong questions, QR clear');
  assert.equal(f.stats()[0]!.failures, 0);
});

test('health: a failing upstream is probed, marked down and skipped, and used again once it answers probes', async (t) => {
  let healthy = false;
  const flaky = await FakeUpstream.start((q) => (healthy ? answerA('192.0.2.7')(q, undefined as never) : 'drop'));
  t.after(() => flaky.close());
  const up = await FakeUpstream.start(answerA('192.0.2.8'));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [flaky.upstream, up.upstream], timeoutMs: 200, healthCheckMs: 50, maxFails: 2 });
  let { msg, q } = makeQuery('h1.example.test');
  assert.equal(decode(await f.query(msg, msg.length, q)).answers[0]!.data, '192.0.2.8');
  await waitFor(() => !f.stats()[0]!.healthy, 5000);
  const probes = flaky.seen.filter((s) => s.name === '.' && s.type === 'NS');
  assert.ok(probes.length >= 3, `more than max_fails failed probes, got ${probes.length}`);

  const requestsWhileDown = f.stats()[0]!.requests;
  ({ msg, q } = makeQuery('h2.example.test'));
  assert.equal(decode(await f.query(msg, msg.length, q)).answers[0]!.data, '192.0.2.8');
  assert.equal(f.stats()[0]!.requests, requestsWhileDown, 'a down upstream is skipped without an attempt');

  healthy = true;
  await waitFor(() => f.stats()[0]!.healthy, 5000);
  ({ msg, q } = makeQuery('h3.example.test'));
  assert.equal(decode(await f.query(msg, msg.length, q)).answers[0]!.data, '192.0.2.7', 'the first upstream again (sequential)');
  assert.equal(f.stats()[0]!.healthcheckFailures >= 3, true);
});

test('health: when every upstream is down, a random one is tried anyway (CoreDNS healthcheck broken)', async (t) => {
  let healthy = false;
  const a = await FakeUpstream.start((q) => (healthy ? answerA('192.0.2.9')(q, undefined as never) : 'drop'));
  t.after(() => a.close());
  const f = forwarder(t, { upstreams: [a.upstream], timeoutMs: 150, healthCheckMs: 30, maxFails: 1 });
  let { msg, q } = makeQuery('b1.example.test');
  assert.equal((await rejection(f.query(msg, msg.length, q))).code, 'DNS_UPSTREAM_FAILED');
  await waitFor(() => !f.stats()[0]!.healthy, 5000);
  healthy = true; // answers queries; the probe loop may not have noticed yet
  ({ msg, q } = makeQuery('b2.example.test'));
  const res = decode(await f.query(msg, msg.length, q));
  assert.equal(res.answers[0]!.data, '192.0.2.9');
  assert.ok(f.counters().healthcheckBroken >= 1);
});

test('policies: round_robin rotates the first upstream per query, random uses every one, sequential only the first', async (t) => {
  const ups = await Promise.all([0, 1, 2].map((i) => FakeUpstream.start(answerA(`192.0.2.${20 + i}`))));
  t.after(() => Promise.all(ups.map((u) => u.close())));
  const upstreams = ups.map((u) => u.upstream);
  const firsts = async (f: Forwarder, n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const { msg, q } = makeQuery(`p${i}.example.test`);
      out.push(decode(await f.query(msg, msg.length, q)).answers[0]!.data as string);
    }
    return out;
  };
  assert.deepEqual(await firsts(forwarder(t, { upstreams, policy: 'round_robin' }), 4), ['192.0.2.21', '192.0.2.22', '192.0.2.20', '192.0.2.21']);
  assert.deepEqual(new Set(await firsts(forwarder(t, { upstreams, policy: 'sequential' }), 5)), new Set(['192.0.2.20']));
  assert.equal(new Set(await firsts(forwarder(t, { upstreams, policy: 'random' }), 60)).size, 3, 'every upstream in 60 random picks (chance of a miss: 3 * (2/3)^60)');
});

test('except: names in an excepted zone are not forwarded', async (t) => {
  const up = await FakeUpstream.start(answerA('192.0.2.10'));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream], except: ['Internal.Example.', 'corp'] });
  assert.equal(f.handles('internal.example'), false);
  assert.equal(f.handles('db.internal.example'), false);
  assert.equal(f.handles('notinternal.example'), true);
  assert.equal(f.handles('x.corp'), false);
  const { msg, q } = makeQuery('db.internal.example');
  assert.equal((await rejection(f.query(msg, msg.length, q))).code, 'DNS_UPSTREAM_FAILED');
  assert.equal(up.seen.length, 0);
});

test('a bad configuration is one error listing every problem', () => {
  assert.throws(
    () => new Forwarder({ upstreams: [{ address: 'dns.example', port: 53 }, { address: '10.0.0.1', port: 0 }], maxConcurrent: 0, timeoutMs: 0, policy: 'fastest' as never, forceTcp: false, preferUdp: false, healthCheckMs: 500 }),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'DNS_FORWARD_CONFIG_INVALID');
      for (const part of ['"dns.example" is not an IP address', 'port 0', 'max_concurrent 0', 'timeout 0 ms', 'unknown policy "fastest"']) assert.ok(err.message.includes(part), `${err.message} names ${part}`);
      return true;
    },
  );
});

test('close() fails the queries in flight with DNS_UPSTREAM_FAILED', async (t) => {
  const dead = await silentUpstream();
  t.after(() => dead.close());
  const f = forwarder(t, { upstreams: [dead.upstream], timeoutMs: 5000 });
  const { msg, q } = makeQuery('closing.example.test');
  const p = f.query(msg, msg.length, q);
  await waitFor(() => dead.received() === 1);
  f.close();
  assert.equal((await rejection(p)).code, 'DNS_UPSTREAM_FAILED');
});

// ---- loop detection ----

test('loop: a server forwarding to itself sees its probe come back and reports CoreDNS\'s message', async (t) => {
  const loop = new LoopDetector('.');
  const server = await MiniDnsServer.start((self) => forwarder(t, { upstreams: [self], timeoutMs: 1000 }), undefined, loop);
  t.after(() => server.close());
  const result = await loop.start({ address: '0.0.0.0', port: server.port }, { attemptTimeoutMs: 2000, retryMs: 100, deadlineMs: 10_000 });
  assert.equal(result, 'loop');
  assert.equal(loop.detected, true);
  assert.equal(loop.count, 3, 'the probe, then twice more through the forwarder');
  const err = server.loopErrors[0] as Error & { code?: string };
  assert.equal(err.code, 'DNS_LOOP_DETECTED');
  assert.match(err.message, new RegExp(`^Loop \\(127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${server.port}\\) detected for zone "\\.", see https://coredns\\.io/plugins/loop#troubleshooting\\. Query: "HINFO \\d+\\.\\d+\\."$`));
  assert.match(loop.probeName, /^\d+\.\d+$/);
});

test('loop: with a real upstream the probe is answered once and the detector turns itself off', async (t) => {
  const up = await FakeUpstream.start((q) => responseTo(q, { rcode: 3 }));
  t.after(() => up.close());
  const f = forwarder(t, { upstreams: [up.upstream] });
  const loop = new LoopDetector('cluster.local.');
  const server = await MiniDnsServer.start(f, undefined, loop);
  t.after(() => server.close());
  const result = await loop.start({ address: '127.0.0.1', port: server.port }, { disableAfterMs: 50 });
  assert.equal(result, 'answered');
  assert.equal(loop.count, 1);
  assert.equal(loop.detected, false);
  assert.match(loop.probeName, /^\d+\.\d+\.cluster\.local$/);
  assert.deepEqual(up.seen.map((s) => [s.name, s.type]), [[loop.probeName, 'HINFO']]);
  await waitFor(() => loop.disabled);
  assert.equal(loop.seen({ qname: loop.probeName, qtype: 13 }), false, 'disabled: even the probe name passes');
});

// ---- a C server as the upstream ----

test('NSD as the upstream: its truncated UDP answer is asked again over TCP, its NXDOMAIN cached for the SOA\'s negative TTL', { skip: !hasCommand('nsd') && 'nsd is not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tdfw-nsd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  writeFileSync(join(dir, 'nsd.conf'), [
    'server:',
    `  ip-address: 127.0.0.1@${port}`,
    '  do-ip6: no',
    '  username: ""',
    '  chroot: ""',
    `  zonesdir: "${dir}"`,
    `  pidfile: "${dir}/nsd.pid"`,
    '  database: ""',
    `  zonelistfile: "${dir}/zone.list"`,
    `  xfrdfile: "${dir}/xfrd.state"`,
    `  xfrdir: "${dir}"`,
    `  logfile: "${dir}/nsd.log"`,
    '  server-count: 1',
    'remote-control:',
    '  control-enable: no',
    'zone:',
    '  name: example.test',
    '  zonefile: example.test.zone',
    '',
  ].join('\n'));
  writeFileSync(join(dir, 'example.test.zone'), [
    '$ORIGIN example.test.',
    '$TTL 300',
    '@ 600 IN SOA ns hostmaster 1 3600 600 86400 45',
    '@ IN NS ns',
    'ns IN A 127.0.0.1',
    ...Array.from({ length: 60 }, (_, i) => `big IN A 198.51.100.${i + 1}`),
    '',
  ].join('\n'));
  const nsd = spawn('nsd', ['-d', '-c', join(dir, 'nsd.conf')], { stdio: 'ignore' });
  // SIGTERM: NSD stops its server and xfrd children too; SIGKILL if it has not within 3 s.
  t.after(async () => {
    if (nsd.exitCode !== null || nsd.signalCode !== null) return;
    const exited = new Promise((r) => nsd.once('exit', r));
    nsd.kill('SIGTERM');
    const timer = setTimeout(() => nsd.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  });
  await waitFor(async () => {
    try {
      await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(port), '+tries=1', '+time=1', 'ns.example.test'], { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  }, 10_000, 100);

  const f = forwarder(t, { upstreams: [{ address: '127.0.0.1', port }] });
  let { msg, q } = makeQuery('BIG.example.test');
  const big = decode(await f.query(msg, msg.length, q));
  assert.equal(big.flag_tc, false);
  assert.equal(big.answers.length, 60);

  const cache = new DnsCache(DEFAULT_CACHE_OPTIONS);
  ({ msg, q } = makeQuery('missing.example.test', 'A', { edns: true }));
  const nx = await f.query(msg, msg.length, q);
  cache.put(q, nx, nx.length, 0);
  assert.deepEqual(cache.stats().entries, { success: 0, denial: 1 });
  const res = new Uint8Array(4096);
  const hit = decode(res.subarray(0, cache.get(q, res, 10_000)));
  assert.equal(hit.rcode, 'NXDOMAIN');
  assert.equal(hit.authorities[0]!.ttl, 35, 'min(SOA TTL 600, MINIMUM 45) minus 10 s');
  assert.equal(cache.get(q, res, 45_000), 0);
});

async function freePort(): Promise<number> {
  for (;;) {
    const udp = createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', () => r()));
    const port = udp.address().port;
    const server = createServer();
    const ok = await new Promise<boolean>((r) => {
      server.once('error', () => r(false));
      server.listen(port, '127.0.0.1', () => r(true));
    });
    udp.close();
    if (ok) {
      await new Promise<void>((r) => server.close(() => r()));
      return port;
    }
  }
}

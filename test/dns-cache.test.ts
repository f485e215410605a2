// The forwarder's cache (CoreDNS `cache` + RFC 2308): responses built with dns-packet go
// in, the bytes that come out are decoded with dns-packet again, and at the end a real
// client (dig) asks through the cache and the forwarder against a test upstream on
// 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as dnsPacket from 'dns-packet';
import { DEFAULT_CACHE_OPTIONS, DnsCache, type CacheOptions } from '../src/dns/cache.ts';
import { Forwarder } from '../src/dns/forward.ts';
import { runGcChild } from './helpers/gc-child.ts';
import { FakeUpstream, MiniDnsServer, decode, makeQuery, responseTo, type Decoded } from './helpers/dns-upstream.ts';

const T0 = 1_000_000;

function cache(options: Partial<CacheOptions> = {}): DnsCache {
  return new DnsCache({ ...DEFAULT_CACHE_OPTIONS, ...options });
}

/** A query and the upstream's response to it, as bytes. */
function exchange(name: string, type: dnsPacket.RecordType, fields: Parameters<typeof responseTo>[1], opts: Parameters<typeof makeQuery>[2] = {}) {
  const query = makeQuery(name, type, opts);
  const decoded = dnsPacket.decode(query.msg);
  if (opts.edns || opts.dnssecOk) {
    fields = { ...fields, additionals: [...(fields?.additionals ?? []), { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as dnsPacket.Answer] };
  }
  const response = dnsPacket.encode({ ...responseTo(decoded, fields), id: 0x7777 });
  return { ...query, response };
}

const soa = (ttl: number, minimum: number): dnsPacket.Answer => ({
  type: 'SOA', name: 'example.test', ttl,
  data: { mname: 'ns.example.test', rname: 'hostmaster.example.test', serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
});

function get(c: DnsCache, q: ReturnType<typeof makeQuery>['q'], nowMs: number, req?: Uint8Array, maxSize?: number): Decoded | undefined {
  const res = new Uint8Array(65535);
  const n = c.get(q, res, nowMs, req, maxSize);
  return n === 0 ? undefined : decode(res.subarray(0, n));
}

test('a success answer is served with the query id and TTLs decreased by its age', () => {
  const c = cache();
  const x = exchange('web.example.test', 'A', {
    answers: [
      { type: 'A', name: 'web.example.test', ttl: 300, data: '192.0.2.1' },
      { type: 'A', name: 'web.example.test', ttl: 120, data: '192.0.2.2' },
    ],
  });
  c.put(x.q, x.response, x.response.length, T0);
  assert.deepEqual(c.stats().entries, { success: 1, denial: 0 });

  const fresh = get(c, x.q, T0 + 999)!;
  assert.equal(fresh.id, 0x1234, 'the query id, not the upstream one');
  // Every TTL is capped at the entry's lifetime, the smallest (CoreDNS answers a hit with one TTL).
  assert.deepEqual(fresh.answers.map((a) => [a.data, a.ttl]), [['192.0.2.1', 120], ['192.0.2.2', 120]]);

  const aged = get(c, { ...x.q, id: 0x4321 }, T0 + 3_500)!;
  assert.equal(aged.id, 0x4321);
  assert.deepEqual(aged.answers.map((a) => a.ttl), [117, 117], 'minus 3 whole seconds');

  // The entry lives as long as the smallest TTL (120 s).
  assert.ok(get(c, x.q, T0 + 119_999));
  assert.equal(get(c, x.q, T0 + 120_000), undefined, 'expired at its TTL');
  assert.deepEqual(c.stats(), { hits: { success: 3, denial: 0 }, misses: 1, entries: { success: 0, denial: 0 }, evictions: { success: 0, denial: 0 } });
});

test('an entry is a copy: the server\'s one reused response Buffer, overwritten by the next answer, leaves it intact', () => {
  const c = cache();
  const a = exchange('a.example.test', 'A', { answers: [{ type: 'A', name: 'a.example.test', ttl: 60, data: '192.0.2.1' }] });
  const b = exchange('b.example.test', 'A', { answers: [{ type: 'A', name: 'b.example.test', ttl: 60, data: '192.0.2.2' }] });
  const shared = Buffer.alloc(512);
  shared.set(a.response);
  c.put(a.q, shared, a.response.length, T0);
  shared.fill(0);
  shared.set(b.response);
  c.put(b.q, shared, b.response.length, T0);
  assert.deepEqual(get(c, a.q, T0 + 1)!.answers.map((x) => [x.name, x.data]), [['a.example.test', '192.0.2.1']]);
  assert.deepEqual(get(c, b.q, T0 + 1)!.answers.map((x) => [x.name, x.data]), [['b.example.test', '192.0.2.2']]);
});

test('TTLs are capped at maxTtl in the cache and in the response passed in; minTtl keeps an entry longer without raising a TTL', () => {
  const c = cache({ maxTtl: 30 });
  const x = exchange('long.example.test', 'A', { answers: [{ type: 'A', name: 'long.example.test', ttl: 7200, data: '192.0.2.9' }] });
  c.put(x.q, x.response, x.response.length, T0);
  assert.equal(decode(x.response).answers[0]!.ttl, 30, 'the first reply agrees with later cached ones (CoreDNS)');
  assert.equal(get(c, x.q, T0 + 10_000)!.answers[0]!.ttl, 20);
  assert.equal(get(c, x.q, T0 + 30_000), undefined);

  const short = exchange('short.example.test', 'A', { answers: [{ type: 'A', name: 'short.example.test', ttl: 1, data: '192.0.2.10' }] });
  c.put(short.q, short.response, short.response.length, T0);
  assert.equal(get(c, short.q, T0 + 2_000)!.answers[0]!.ttl, 0, 'kept for minTtl (5 s), its TTL never goes up nor below 0');
  assert.equal(get(c, short.q, T0 + 5_000), undefined);

  const zero = cache({ minTtl: 0 });
  const z = exchange('zero.example.test', 'A', { answers: [{ type: 'A', name: 'zero.example.test', ttl: 0, data: '192.0.2.11' }] });
  zero.put(z.q, z.response, z.response.length, T0);
  assert.equal(zero.stats().entries.success, 0, 'a TTL of 0 is not cached');
});

test('NXDOMAIN and NODATA with an SOA are cached as denial for min(SOA TTL, SOA MINIMUM) (RFC 2308)', () => {
  const c = cache();
  const nx = exchange('missing.example.test', 'A', { rcode: 3, authorities: [soa(600, 60)] });
  c.put(nx.q, nx.response, nx.response.length, T0);
  const nodata = exchange('web.example.test', 'AAAA', { authorities: [soa(20, 900)] });
  c.put(nodata.q, nodata.response, nodata.response.length, T0);
  assert.deepEqual(c.stats().entries, { success: 0, denial: 2 });

  const a = get(c, nx.q, T0 + 30_000)!;
  assert.equal(a.rcode, 'NXDOMAIN');
  assert.equal(a.authorities[0]!.type, 'SOA');
  assert.equal(a.authorities[0]!.ttl, 30, 'SOA TTL capped at MINIMUM (60), minus 30 s');
  assert.equal(get(c, nx.q, T0 + 60_000), undefined);

  const b = get(c, nodata.q, T0 + 5_000)!;
  assert.equal(b.rcode, 'NOERROR');
  assert.equal(b.answers.length, 0);
  assert.equal(b.authorities[0]!.ttl, 15);
  assert.equal(get(c, nodata.q, T0 + 20_000), undefined, 'SOA TTL (20) below MINIMUM');
  assert.deepEqual(c.stats().hits, { success: 0, denial: 2 });

  const capped = cache({ maxDenialTtl: 10 });
  capped.put(nx.q, nx.response, nx.response.length, T0);
  assert.ok(get(capped, nx.q, T0 + 9_000));
  assert.equal(get(capped, nx.q, T0 + 10_000), undefined, 'denial capped by maxDenialTtl');
});

test('not cached: SERVFAIL, REFUSED, truncated answers, negative answers without SOA, referrals, a response to another question', () => {
  const c = cache();
  const cases = [
    exchange('a.example.test', 'A', { rcode: 2 }),
    exchange('b.example.test', 'A', { rcode: 5, authorities: [soa(60, 60)] }),
    exchange('c.example.test', 'A', { flags: dnsPacket.TRUNCATED_RESPONSE, answers: [{ type: 'A', name: 'c.example.test', ttl: 60, data: '192.0.2.3' }] }),
    exchange('d.example.test', 'A', { rcode: 3 }),
    exchange('e.example.test', 'A', {}),
    exchange('f.example.test', 'A', { authorities: [{ type: 'NS', name: 'example.test', ttl: 60, data: 'ns.example.test' }] }),
  ];
  for (const x of cases) c.put(x.q, x.response, x.response.length, T0);
  const other = exchange('g.example.test', 'A', { answers: [{ type: 'A', name: 'g.example.test', ttl: 60, data: '192.0.2.4' }] });
  const wrongName = makeQuery('h.example.test', 'A').q;
  c.put(wrongName, other.response, other.response.length, T0);
  c.put({ ...other.q, qtype: 28 }, other.response, other.response.length, T0);
  assert.deepEqual(c.stats().entries, { success: 0, denial: 0 });
});

test('malformed responses are ignored, never thrown on', () => {
  const c = cache();
  const x = exchange('web.example.test', 'A', { answers: [{ type: 'A', name: 'web.example.test', ttl: 60, data: '192.0.2.1' }] });
  for (let cut = 0; cut < x.response.length; cut++) c.put(x.q, x.response.subarray(0, cut), cut, T0);
  const reservedLabel = Buffer.from(x.response);
  reservedLabel[x.q.questionEnd] = 0x80; // the answer's name starts with a reserved label type (RFC 6891 section 5)
  c.put(x.q, reservedLabel, reservedLabel.length, T0);
  const longRdata = Buffer.from(x.response);
  longRdata.writeUInt16BE(200, longRdata.length - 6); // the A record's RDLENGTH points past the end
  c.put(x.q, longRdata, longRdata.length, T0);
  assert.equal(c.stats().entries.success, 0);
  let seed = 7;
  const random = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff);
  for (let i = 0; i < 2000; i++) {
    const junk = Buffer.from(x.response);
    for (let k = 0; k < 4; k++) junk[12 + (random() % (junk.length - 12))] = random();
    c.put(x.q, junk, junk.length, T0); // must not throw
  }
  assert.ok(c.stats().entries.success <= 1);
});

test('the key: qname ignoring case, qtype, qclass, the DO and CD bits and EDNS presence', () => {
  const c = cache();
  const plain = exchange('web.example.test', 'A', { answers: [{ type: 'A', name: 'web.example.test', ttl: 60, data: '192.0.2.1' }] });
  c.put(plain.q, plain.response, plain.response.length, T0);
  assert.ok(get(c, makeQuery('WEB.Example.TEST', 'A').q, T0), 'case-insensitive');
  assert.equal(get(c, makeQuery('web.example.test', 'AAAA').q, T0), undefined, 'qtype');
  assert.equal(get(c, { ...plain.q, qclass: 3 }, T0), undefined, 'qclass');
  assert.equal(get(c, makeQuery('web.example.test', 'A', { dnssecOk: true }).q, T0), undefined, 'DO bit');
  assert.equal(get(c, { ...plain.q, flags: plain.q.flags | 0x0010 }, T0), undefined, 'CD bit');
  assert.equal(get(c, makeQuery('web.example.test', 'A', { edns: true }).q, T0), undefined, 'an EDNS query does not get a reply without OPT');

  const withEdns = exchange('web.example.test', 'A', { answers: [{ type: 'A', name: 'web.example.test', ttl: 60, data: '192.0.2.2' }] }, { edns: true });
  c.put(withEdns.q, withEdns.response, withEdns.response.length, T0);
  const e = get(c, withEdns.q, T0)!;
  assert.equal(e.additionals.find((r) => r.type === 'OPT')?.type, 'OPT');
  assert.equal(get(c, plain.q, T0)!.additionals.length, 0, 'and a plain query no OPT');
  assert.equal(c.stats().entries.success, 2);
});

test('the question comes back as the client wrote it, RD and CD as it asked', () => {
  const c = cache();
  const x = exchange('web.example.test', 'A', { answers: [{ type: 'A', name: 'web.example.test', ttl: 60, data: '192.0.2.1' }] });
  c.put(x.q, x.response, x.response.length, T0);
  const mixed = makeQuery('wEb.ExAmPlE.tEsT', 'A', { id: 99 });
  mixed.msg[2] = mixed.msg[2]! & ~0x01; // RD off
  const res = get(c, { ...mixed.q, flags: mixed.q.flags & ~0x0100 }, T0, mixed.msg)!;
  assert.equal(res.questions[0]!.name, 'wEb.ExAmPlE.tEsT');
  assert.equal(res.flag_rd, false);
  assert.equal(res.id, 99);
  assert.equal(res.answers[0]!.data, '192.0.2.1');
});

test('each cache evicts at capacity, sparing an entry hit since the clock hand passed it; a success replaces a denial and back', () => {
  const c = cache({ successCapacity: 3, denialCapacity: 1 });
  const xs = ['a', 'b', 'c', 'd'].map((l) => exchange(`${l}.example.test`, 'A', { answers: [{ type: 'A', name: `${l}.example.test`, ttl: 60, data: '192.0.2.1' }] }));
  for (const x of xs.slice(0, 3)) c.put(x.q, x.response, x.response.length, T0);
  assert.ok(get(c, xs[0]!.q, T0), 'a is used: b is now the least recently used');
  c.put(xs[3]!.q, xs[3]!.response, xs[3]!.response.length, T0);
  assert.deepEqual(['a', 'b', 'c', 'd'].map((_, i) => get(c, xs[i]!.q, T0) !== undefined), [true, false, true, true]);
  assert.equal(c.stats().evictions.success, 1);
  assert.equal(c.stats().entries.success, 3);

  const nx1 = exchange('x.example.test', 'A', { rcode: 3, authorities: [soa(60, 60)] });
  const nx2 = exchange('y.example.test', 'A', { rcode: 3, authorities: [soa(60, 60)] });
  c.put(nx1.q, nx1.response, nx1.response.length, T0);
  c.put(nx2.q, nx2.response, nx2.response.length, T0);
  assert.deepEqual(c.stats().entries, { success: 3, denial: 1 });
  assert.equal(c.stats().evictions.denial, 1);

  const nowThere = exchange('y.example.test', 'A', { answers: [{ type: 'A', name: 'y.example.test', ttl: 60, data: '192.0.2.7' }] });
  c.put(nowThere.q, nowThere.response, nowThere.response.length, T0);
  assert.equal(get(c, nowThere.q, T0)!.rcode, 'NOERROR');
  assert.equal(c.stats().entries.denial, 0, 'the NXDOMAIN entry is gone');
});

test('churn: 20000 names through a 64-entry cache keep it at 64, recent names present, expired and replaced ones gone', () => {
  const c = cache({ successCapacity: 64, denialCapacity: 8 });
  const names = Array.from({ length: 20_000 }, (_, i) => `churn-${i}.example.test`);
  let now = T0;
  for (const [i, name] of names.entries()) {
    const x = i % 5 === 0
      ? exchange(name, 'A', { rcode: 3, authorities: [soa(60, 60)] })
      : exchange(name, 'A', { answers: [{ type: 'A', name, ttl: 10 + (i % 7), data: '192.0.2.1' }] });
    c.put(x.q, x.response, x.response.length, now);
    if (i % 3 === 0) get(c, makeQuery(names[Math.max(0, i - 10)]!).q, now); // hits keep some alive
    now += 1;
  }
  const s = c.stats();
  assert.deepEqual(s.entries, { success: 64, denial: 8 });
  assert.equal(s.evictions.success + s.entries.success, 16_000, 'every success entry is either there or was evicted once');
  assert.equal(s.evictions.denial + s.entries.denial, 4_000);
  assert.ok(get(c, makeQuery(names[19_999]!).q, now), 'the newest is there');
  assert.equal(get(c, makeQuery(names[1]!).q, now), undefined, 'an old one is gone');
  // Everything expires: lookups remove what they find expired.
  now += 3_600_000;
  for (const name of names.slice(-200)) get(c, makeQuery(name).q, now);
  assert.ok(c.stats().entries.success < 64);
  c.clear();
  assert.deepEqual(c.stats().entries, { success: 0, denial: 0 });
});

test('an entry larger than the client may receive over UDP is answered truncated, whole over TCP (maxSize)', () => {
  const c = cache();
  const answers = Array.from({ length: 80 }, (_, i) => ({ type: 'A' as const, name: 'many.example.test', ttl: 60, data: `192.0.2.${i + 1}` }));
  const plain = exchange('many.example.test', 'A', { answers });
  const edns = exchange('many.example.test', 'A', { answers }, { edns: true });
  assert.ok(plain.response.length > 1232);
  c.put(plain.q, plain.response, plain.response.length, T0);
  c.put(edns.q, edns.response, edns.response.length, T0);

  const udp = get(c, plain.q, T0 + 2000, plain.msg, 512)!;
  assert.equal(udp.flag_tc, true);
  assert.deepEqual([udp.id, udp.questions[0]!.name, udp.answers.length, udp.authorities.length, udp.additionals.length], [0x1234, 'many.example.test', 0, 0, 0]);
  const ednsUdp = get(c, edns.q, T0 + 2000, edns.msg, 1232)!;
  assert.equal(ednsUdp.flag_tc, true);
  assert.deepEqual(ednsUdp.additionals.map((r) => r.type), ['OPT'], 'an EDNS client keeps its OPT (RFC 6891)');
  const tcp = get(c, plain.q, T0 + 2000, plain.msg, 65535)!;
  assert.equal(tcp.flag_tc, false);
  assert.equal(tcp.answers.length, 80);
  assert.equal(tcp.answers[0]!.ttl, 58);
  assert.deepEqual(c.stats().hits, { success: 3, denial: 0 });
});

test('dig through the cache and the forwarder: the second answer comes from the cache with a smaller TTL', async (t) => {
  const upstream = await FakeUpstream.start((q) => responseTo(q, {
    answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 300, data: '192.0.2.80' }],
  }));
  t.after(() => upstream.close());
  const forwarder = new Forwarder({ upstreams: [upstream.upstream], maxConcurrent: 10, timeoutMs: 2000, policy: 'sequential', forceTcp: false, preferUdp: false, healthCheckMs: 500 });
  t.after(() => forwarder.close());
  const c = cache({ maxTtl: 30 });
  const server = await MiniDnsServer.start(forwarder, c);
  t.after(() => server.close());

  // dig runs asynchronously: the server answers from this process's event loop.
  const dig = async (name: string): Promise<string[]> => {
    const { stdout } = await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(server.port), '+notcp', '+tries=1', '+time=3', '+noall', '+answer', '+question', name, 'A'], { encoding: 'utf8', timeout: 10_000 });
    return stdout.trim().split('\n').filter((l) => l !== '');
  };
  const first = await dig('Cached.Example.TEST');
  assert.match(first.find((l) => !l.startsWith(';'))!, /^Cached\.Example\.TEST\.\s+30\s+IN\s+A\s+192\.0\.2\.80$/, first.join('\n'));
  await new Promise((r) => setTimeout(r, 2100));
  const second = await dig('cached.EXAMPLE.test');
  assert.equal(second[0], ';cached.EXAMPLE.test.\t\tIN\tA', 'the question as this client wrote it');
  const ttl = Number(/\s(\d+)\s+IN\s+A\s/.exec(second[1]!)![1]);
  assert.ok(ttl <= 28 && ttl > 0, `TTL 30 minus the entry's age (at least 2 s), got ${ttl}`);
  assert.equal(upstream.seen.length, 1, 'the upstream was asked once');
  assert.deepEqual(c.stats().hits, { success: 1, denial: 0 });
});

test('a cache hit allocates nothing: a million hits without a scavenge', () => {
  const run = runGcChild<{ hits: number; bytes: number; youngGrowth: number }>(fileURLToPath(new URL('./helpers/dns-cache-child.ts', import.meta.url)), 1_000_000);
  assert.equal(run.result.hits, 1_100_000, 'warm-up and measured gets all hit');
  assert.deepEqual(run.gcs, [], `garbage collections inside the loop:\n${run.output}`);
  assert.ok(run.result.youngGrowth < 64 * 1024, `young generation grew by ${run.result.youngGrowth} bytes`);
});

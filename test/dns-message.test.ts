// DNS message reading and patching (src/dns/message.ts), checked against dns-packet:
// queries it encodes are read field by field, malformed ones are refused with the rcode
// to answer, and every response or shuffle is decoded by it again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as dnsPacket from 'dns-packet';
import {
  errorResponse, newQueryInfo, RCODE_BADVERS, Rcode, readQuery, shuffleAnswers,
} from '../src/dns/message.ts';
import { seededRandom as prng } from './helpers/random.ts';

type Decoded = dnsPacket.DecodedPacket & { rcode: string; opcode: string };

function decode(buf: Uint8Array, len = buf.length): Decoded {
  return dnsPacket.decode(Buffer.from(buf.subarray(0, len))) as Decoded;
}

function query(name: string, type: dnsPacket.RecordType = 'A', opts: { id?: number; flags?: number; edns?: number; dnssecOk?: boolean; cls?: dnsPacket.RecordClass } = {}): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: opts.flags ?? dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name, class: opts.cls ?? 'IN' }],
    additionals: opts.edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer],
  });
}


test('readQuery reads id, flags, a lower-cased name, type, class and where the question ends', () => {
  const q = newQueryInfo();
  const msg = query('WeB.DeFault.svc.Cluster.Local', 'SRV', { id: 0xbeef });
  assert.equal(readQuery(msg, msg.length, q), true);
  assert.equal(q.id, 0xbeef);
  assert.equal(q.flags, dnsPacket.RECURSION_DESIRED);
  assert.equal(q.qname, 'web.default.svc.cluster.local');
  assert.equal(q.qtype, 33);
  assert.equal(q.qclass, 1);
  assert.equal(q.questionEnd, msg.length);
  assert.equal(q.edns, false);
  assert.equal(q.ednsUdpSize, 0);
  assert.equal(q.rcode, Rcode.NOERROR);

  const root = query('.', 'NS');
  assert.equal(readQuery(root, root.length, q), true);
  assert.equal(q.qname, '');
  assert.equal(q.questionEnd, 12 + 1 + 4);
});

test('readQuery reads the OPT record: payload size, version and the DO bit', () => {
  const q = newQueryInfo();
  const msg = query('example.test', 'AAAA', { edns: 1232, dnssecOk: true });
  assert.equal(readQuery(msg, msg.length, q), true);
  assert.equal(q.edns, true);
  assert.equal(q.ednsUdpSize, 1232);
  assert.equal(q.dnssecOk, true);
  assert.equal(q.ednsVersion, 0);
  assert.equal(q.questionEnd, 12 + 14 + 4);
  // Version 1 in the OPT's TTL field (byte 2): read, for the BADVERS answer.
  msg[msg.length - 11 + 6] = 1;
  assert.equal(readQuery(msg, msg.length, q), true);
  assert.equal(q.ednsVersion, 1);
  // A buffer longer than the message: only `len` counts.
  const bigger = Buffer.alloc(600, 0xff);
  msg.copy(bigger);
  assert.equal(readQuery(bigger, msg.length, q), true);
});

test('readQuery escapes label bytes a name string could not carry', () => {
  const q = newQueryInfo();
  // One label "a.b" (a dot inside a label), one with a backslash and a space and a 0xff.
  const msg = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 0x61, 0x2e, 0x42, 4, 0x5c, 0x20, 0xff, 0x7a, 0, 0, 1, 0, 1]);
  assert.equal(readQuery(msg, msg.length, q), true);
  assert.equal(q.qname, 'a\\.b.\\\\\\032\\255z');
});

test('readQuery refuses malformed queries with the rcode to answer', () => {
  const q = newQueryInfo();
  const good = query('a.example', 'A', { edns: 4096 });
  const cases: [string, Uint8Array, number][] = [
    ['shorter than a header', good.subarray(0, 11), -1],
    ['a response', (() => { const m = Buffer.from(good); m[2]! |= 0x80; return m; })(), -1],
    ['opcode STATUS', (() => { const m = Buffer.from(good); m[2]! |= 2 << 3; return m; })(), Rcode.NOTIMP],
    ['two questions', (() => { const m = Buffer.from(good); m[5] = 2; return m; })(), Rcode.FORMERR],
    ['no question', (() => { const m = Buffer.from(good); m[5] = 0; return m; })(), Rcode.FORMERR],
    ['the name runs past the end', good.subarray(0, 16), Rcode.FORMERR],
    ['no room for type and class', good.subarray(0, 12 + 11 + 2), Rcode.FORMERR],
    ['a compression pointer in the question', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]), Rcode.FORMERR],
    ['a reserved label type', Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1]), Rcode.FORMERR],
    ['the OPT cut short', good.subarray(0, good.length - 1), Rcode.FORMERR],
    ['an additional count past the end', (() => { const m = Buffer.from(good); m[11] = 2; return m; })(), Rcode.FORMERR],
  ];
  for (const [what, msg, rcode] of cases) {
    assert.equal(readQuery(msg, msg.length, q), false, what);
    assert.equal(q.rcode, rcode, what);
  }
  // A name of 256 bytes on the wire (RFC 1035 2.3.4 allows 255).
  const long = query(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`);
  assert.equal(readQuery(long, long.length, q), false);
  const limit = query(`${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`);
  assert.equal(readQuery(limit, limit.length, q), true);
  // Two OPT records; an OPT whose owner is not the root.
  const two = Buffer.concat([good, good.subarray(good.length - 11)]);
  two[11] = 2;
  assert.equal(readQuery(two, two.length, q), false);
  const owned = Buffer.concat([query('x', 'A'), Buffer.from([1, 0x78, 0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0])]);
  owned[11] = 1;
  assert.equal(readQuery(owned, owned.length, q), false);
  assert.equal(q.rcode, Rcode.FORMERR);
});

test('errorResponse keeps id, opcode, RD, CD and the question; adds an OPT when the query had one', () => {
  const res = new Uint8Array(600);
  const msg = query('Web.Example', 'A', { id: 77, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED, edns: 1400, dnssecOk: true });
  const n = errorResponse(msg, msg.length, Rcode.SERVFAIL, res);
  const r = decode(res, n);
  assert.equal(r.id, 77);
  assert.equal(r.type, 'response');
  assert.equal(r.rcode, 'SERVFAIL');
  assert.equal(r.flag_rd, true);
  assert.equal(r.flag_cd, true);
  assert.equal(r.flag_aa, false);
  assert.deepEqual(r.questions, [{ name: 'Web.Example', type: 'A', class: 'IN' }]);
  assert.equal(r.answers!.length, 0);
  const opt = r.additionals![0] as dnsPacket.OptAnswer;
  assert.equal(opt.type, 'OPT');
  assert.equal(opt.udpPayloadSize, 1400);
  assert.equal(opt.flag_do, true);
  assert.equal(n, msg.length);

  // Without EDNS: no OPT. REFUSED.
  const plain = query('x.test', 'TXT', { id: 9 });
  const m = errorResponse(plain, plain.length, Rcode.REFUSED, res);
  const p = decode(res, m);
  assert.equal(p.rcode, 'REFUSED');
  assert.equal(p.additionals!.length, 0);
  assert.equal(m, plain.length);

  // BADVERS (16): rcode 0 in the header, 1 in the OPT's extended rcode (RFC 6891 6.1.3).
  const v1 = query('x.test', 'A', { edns: 512 });
  v1[v1.length - 11 + 6] = 1;
  const b = errorResponse(v1, v1.length, RCODE_BADVERS, res);
  assert.equal(res[3]! & 0xf, 0);
  const bo = decode(res, b).additionals![0] as dnsPacket.OptAnswer;
  assert.equal(bo.extendedRcode, 1);

  // An unreadable question: header only. A response or a runt: no answer at all.
  const bad = Buffer.from([0, 5, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
  const f = errorResponse(bad, bad.length, Rcode.FORMERR, res);
  assert.equal(f, 12);
  assert.equal(decode(res, f).rcode, 'FORMERR');
  assert.equal(decode(res, f).id, 5);
  const notimp = Buffer.from(query('x', 'A'));
  notimp[2]! |= 4 << 3; // opcode NOTIFY
  const ni = errorResponse(notimp, notimp.length, Rcode.NOTIMP, res);
  assert.equal(decode(res, ni).opcode, 'NOTIFY');
  const response = Buffer.from(msg);
  response[2]! |= 0x80;
  assert.equal(errorResponse(response, response.length, Rcode.FORMERR, res), 0);
  assert.equal(errorResponse(msg, 5, Rcode.FORMERR, res), 0);
});

function response(answers: dnsPacket.Answer[], authorities: dnsPacket.Answer[] = [], additionals: dnsPacket.Answer[] = []): Buffer {
  return dnsPacket.encode({ type: 'response', id: 1, flags: 0, questions: [{ type: 'A', name: 'www.example.test' }], answers, authorities, additionals });
}

const OPT = { type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as unknown as dnsPacket.Answer;

test('shuffleAnswers permutes the A records of one owner in place, keeping CNAME, MX and compression intact', () => {
  const addrs = ['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4'];
  const original = response([
    { type: 'CNAME', name: 'www.example.test', ttl: 30, data: 'web.example.test' },
    ...addrs.map((data) => ({ type: 'A', name: 'web.example.test', ttl: 30, data }) as dnsPacket.Answer),
    { type: 'MX', name: 'web.example.test', ttl: 30, data: { preference: 10, exchange: 'mx1.example.test' } },
    { type: 'MX', name: 'web.example.test', ttl: 30, data: { preference: 20, exchange: 'mx2.example.test' } },
  ]);
  const random = prng(7);
  const orders = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const msg = Buffer.from(original);
    shuffleAnswers(msg, msg.length, random);
    const r = decode(msg);
    const answers = r.answers as dnsPacket.StringAnswer[];
    assert.deepEqual(answers[0], { ...answers[0], type: 'CNAME', name: 'www.example.test', data: 'web.example.test' });
    const a = answers.filter((x) => x.type === 'A');
    assert.deepEqual(a.map((x) => x.name), addrs.map(() => 'web.example.test'));
    assert.deepEqual(a.map((x) => x.data).sort(), addrs);
    assert.deepEqual(r.answers!.filter((x) => x.type === 'MX').map((x) => (x as dnsPacket.MxAnswer).data.exchange), ['mx1.example.test', 'mx2.example.test']);
    orders.add(a.map((x) => x.data).join());
  }
  assert.equal(orders.size, 24, 'every order of four records turns up');
  // Without a generator, the server's own (an integer LCG, no boxed doubles): every order too.
  const own = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const msg = Buffer.from(original);
    shuffleAnswers(msg, msg.length);
    own.add((decode(msg).answers as dnsPacket.StringAnswer[]).filter((x) => x.type === 'A').map((x) => x.data).join());
  }
  assert.equal(own.size, 24, 'every order of four records turns up with the built-in generator');
  // One record, or none: nothing moves; a runt is left alone.
  const one = response([{ type: 'A', name: 'www.example.test', ttl: 30, data: '10.0.0.1' }]);
  const copy = Buffer.from(one);
  shuffleAnswers(copy, copy.length, random);
  assert.deepEqual(copy, one);
  shuffleAnswers(copy, 3, random);
});

test('the helpers survive random and cut messages without throwing', () => {
  const random = prng(42);
  const q = newQueryInfo();
  const res = new Uint8Array(70000);
  const seeds = [
    query('web.default.svc.cluster.local', 'A', { edns: 1232 }),
    response([{ type: 'A', name: 'www.example.test', ttl: 30, data: '10.0.0.1' }, { type: 'A', name: 'www.example.test', ttl: 30, data: '10.0.0.2' }], [], [OPT]),
  ];
  for (let i = 0; i < 20000; i++) {
    const seed = seeds[i % seeds.length]!;
    const msg = Buffer.from(seed);
    const flips = 1 + Math.floor(random() * 4);
    for (let f = 0; f < flips; f++) msg[Math.floor(random() * msg.length)] = Math.floor(random() * 256);
    const len = random() < 0.3 ? Math.floor(random() * msg.length) : msg.length;
    const ok = readQuery(msg, len, q);
    if (ok) assert.ok(q.questionEnd <= len);
    const n = errorResponse(msg, len, Rcode.FORMERR, res);
    if (n > 0) decode(res, n);
    shuffleAnswers(msg, len, random);
  }
  const garbage = new Uint8Array(512);
  for (let i = 0; i < 5000; i++) {
    for (let j = 0; j < garbage.length; j++) garbage[j] = Math.floor(random() * 256);
    readQuery(garbage, Math.floor(random() * garbage.length), q);
    shuffleAnswers(garbage, garbage.length, random);
  }
});

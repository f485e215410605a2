// Packet-trace tests of ServiceNat across a flow's life: TCP state through NAT,
// reopened connections, table swaps (UDP cleanup, flows to remaining endpoints kept),
// Maglev stability, ICMP errors translated through the quoted header, full tables.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildPacket, ipv4ToString, type PacketRepr } from '../src/wire/index.ts';
import { EntryPoint, LbChoice, NatReason, Verdict } from '../src/services/nat-codes.ts';
import { endpoint, ip, servicePort, snapshot } from '../src/model/synthetic.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { ConntrackCounter } from '../src/tables/conntrack.ts';
import { TcpState } from '../src/tables/tcp-state.ts';
import { makeNat, packet, send, TcpFlags } from './services-helpers.ts';

const { SYN, ACK, FIN, RST } = TcpFlags;
const VIP = '10.96.0.10:80';
const CLIENT = '10.244.1.7:40000';

function web(eps = [endpoint('10.244.2.5', 8080)], over = {}) {
  return servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: eps, ...over });
}

test('TCP state follows the handshake and close through NAT, with kube-proxy timeouts', () => {
  const nat = makeNat(snapshot([web()]));
  const ct = nat.conntrack;
  send(nat, { src: CLIENT, dst: VIP, flags: SYN }, EntryPoint.POD, 100);
  const e = nat.result.entry;
  assert.equal(ct.stateOf(e), TcpState.SYN_SENT);
  assert.equal(ct.expiresAt(e), 100 + 120);
  send(nat, { src: '10.244.2.5:8080', dst: CLIENT, flags: SYN | ACK }, EntryPoint.EXTERNAL, 101);
  assert.equal(ct.stateOf(e), TcpState.SYN_RECV);
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 102);
  assert.equal(ct.stateOf(e), TcpState.ESTABLISHED);
  assert.equal(ct.expiresAt(e), 102 + 86400, 'established: 24 h (kube-proxy tcp-timeout-established)');
  send(nat, { src: '10.244.2.5:8080', dst: CLIENT, flags: FIN | ACK }, EntryPoint.EXTERNAL, 200);
  assert.equal(ct.stateOf(e), TcpState.FIN_WAIT);
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 201);
  assert.equal(ct.stateOf(e), TcpState.CLOSE_WAIT);
  assert.equal(ct.expiresAt(e), 201 + 3600, 'close-wait: 1 h (kube-proxy tcp-timeout-close-wait)');
  send(nat, { src: CLIENT, dst: VIP, flags: FIN | ACK }, EntryPoint.POD, 202);
  assert.equal(ct.stateOf(e), TcpState.LAST_ACK);
  const last = send(nat, { src: '10.244.2.5:8080', dst: CLIENT, flags: ACK }, EntryPoint.EXTERNAL, 203);
  assert.equal(last.src, VIP);
  assert.equal(ct.stateOf(e), TcpState.TIME_WAIT);
  assert.equal(ct.expiresAt(e), 203 + 120);
  // After TIME_WAIT the entry is gone: a stray ACK is picked up as a new flow (Linux loose mode).
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 400);
  assert.equal(nat.result.newFlow, true);
  assert.equal(ct.counters[ConntrackCounter.EXPIRED], 1);
});

test('RST closes the flow (10 s); a SYN on the closed tuple opens a new flow, NATed afresh', () => {
  const eps = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => endpoint(`10.244.2.${10 + k}`, 8080));
  const nat = makeNat(snapshot([web(eps)]));
  const ct = nat.conntrack;
  send(nat, { src: CLIENT, dst: VIP, flags: SYN }, EntryPoint.POD, 1);
  const e = nat.result.entry;
  send(nat, { src: CLIENT, dst: VIP, flags: RST }, EntryPoint.POD, 2);
  assert.equal(ct.stateOf(e), TcpState.CLOSE);
  assert.equal(ct.expiresAt(e), 12);
  // Reopen: the old entry is replaced; with 8 endpoints, some reopen picks another one.
  let moved = false;
  for (let i = 0; i < 30 && !moved; i++) {
    const before = ct.tuple(nat.result.entry * 2 + 1).src;
    send(nat, { src: CLIENT, dst: VIP, flags: SYN }, EntryPoint.POD, 3 + i);
    assert.equal(nat.result.newFlow, true);
    const after = ct.tuple(nat.result.entry * 2 + 1).src;
    send(nat, { src: CLIENT, dst: VIP, flags: RST }, EntryPoint.POD, 3 + i);
    moved = before !== after;
  }
  assert.ok(moved, 'a reopened connection gets a new endpoint choice');
  assert.equal(ct.size, 1);
});

test('a TCP segment that opens no flow (FIN, RST, SYN-ACK) to a service is dropped; fragments to a frontend too', () => {
  const nat = makeNat(snapshot([web()]));
  for (const flags of [FIN | ACK, RST, SYN | ACK]) {
    assert.equal(send(nat, { src: CLIENT, dst: VIP, flags }, EntryPoint.POD).verdict, Verdict.DROP);
    assert.equal(nat.result.reason, NatReason.TCP_NOT_NEW);
  }
  const frag: PacketRepr = { ipv4: { src: ip('10.244.1.7'), dst: ip('10.96.0.10') }, udp: { srcPort: 1, dstPort: 80 }, payload: new Uint8Array(8) };
  const buf = buildPacket(frag);
  buf[6] = 0x20; // More Fragments
  buf[10] = 0; buf[11] = 0;
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  buf[10] = (~sum >>> 8) & 0xff; buf[11] = ~sum & 0xff;
  assert.equal(send(nat, buf, EntryPoint.POD).verdict, Verdict.DROP);
  assert.equal(nat.result.reason, NatReason.FRAGMENT);
});

test('table swap: UDP flows to a removed endpoint are flushed at once; flows to remaining endpoints and TCP flows stay', () => {
  const a = endpoint('10.244.2.10', 53);
  const b = endpoint('10.244.2.11', 53);
  const dns = (eps: typeof a[], over = {}) => servicePort({ name: 'dns', protocol: 17, clusterIP: '10.96.0.53', port: 53, allEndpoints: eps, ...over });
  const tcpA = endpoint('10.244.2.10', 8080);
  const tcpB = endpoint('10.244.2.11', 8080);
  const nat = makeNat(snapshot([dns([a, b]), web([tcpA, tcpB])]));
  const ct = nat.conntrack;
  const udpTo = new Map<string, number>();
  const tcpTo = new Map<string, number>();
  for (let i = 0; i < 40; i++) {
    udpTo.set(`10.244.1.7:${20000 + i}`, 0);
    const d = send(nat, { proto: 'udp', src: `10.244.1.7:${20000 + i}`, dst: '10.96.0.53:53' }, EntryPoint.POD, 5).dst;
    udpTo.set(`10.244.1.7:${20000 + i}`, ip(d.split(':')[0]!));
    const t = send(nat, { src: `10.244.1.7:${21000 + i}`, dst: VIP }, EntryPoint.POD, 5).dst;
    tcpTo.set(`10.244.1.7:${21000 + i}`, ip(t.split(':')[0]!));
  }
  const onA = [...udpTo.values()].filter((v) => v === a.ip).length;
  assert.ok(onA > 0 && onA < 40);
  const entriesBefore = new Map<string, number>();
  for (const src of udpTo.keys()) {
    send(nat, { proto: 'udp', src, dst: '10.96.0.53:53' }, EntryPoint.POD, 6);
    entriesBefore.set(src, nat.result.entry);
  }
  // Endpoint a leaves both services.
  const flushed = nat.setTable(buildServiceTable(snapshot([dns([b]), web([tcpB])], [], 2)));
  assert.equal(flushed, onA);
  assert.equal(ct.size, 80 - onA);
  for (const [src, was] of udpTo) {
    const out = send(nat, { proto: 'udp', src, dst: '10.96.0.53:53' }, EntryPoint.POD, 7);
    assert.equal(out.dst, '10.244.2.11:53');
    if (was === b.ip) assert.equal(nat.result.entry, entriesBefore.get(src), 'flow to the remaining endpoint untouched');
    else assert.equal(nat.result.newFlow, true);
  }
  for (const [src, was] of tcpTo) {
    const out = send(nat, { src, dst: VIP, flags: ACK }, EntryPoint.POD, 7);
    assert.equal(out.dst, `${ipv4ToString(was)}:8080`, 'TCP flows keep their endpoint (kube-proxy leaves them)');
  }
  // flushEndpoint: the explicit hook does the same for any protocol.
  assert.ok(nat.flushEndpoint(tcpA.ip, 8080, 6) > 0);
});

test('Maglev: the same flow gets the same endpoint across rebuilds and endpoint reordering', () => {
  const eps = Array.from({ length: 7 }, (_, k) => endpoint(`10.244.${2 + k}.5`, 8080));
  const flows = Array.from({ length: 500 }, (_, i) => `10.${1 + (i >> 8)}.${i & 0xff}.9:${30000 + i}`);
  const run = (list: typeof eps, seed: number) => {
    const nat = makeNat(snapshot([web(list, { lb: 'maglev' })]), { seed });
    return flows.map((src) => {
      const d = send(nat, { src, dst: VIP }, EntryPoint.POD).dst;
      assert.equal(nat.result.lb, LbChoice.MAGLEV);
      return d;
    });
  };
  const first = run(eps, 1);
  assert.deepEqual(run([...eps].reverse(), 99), first);
  assert.equal(new Set(first).size, 7);
});

test('Maglev: removing one of 10 endpoints moves about 1/10 of the flows', () => {
  const eps = Array.from({ length: 10 }, (_, k) => endpoint(`10.244.${2 + k}.5`, 8080));
  const flows = Array.from({ length: 4000 }, (_, i) => `10.${1 + (i >> 12)}.${(i >> 6) & 0x3f}.${i & 0x3f}:${30000 + i}`);
  const run = (list: typeof eps) => {
    const nat = makeNat(snapshot([web(list, { lb: 'maglev' })]), { conntrack: { capacity: 8192, seed: 1 } });
    return flows.map((src) => send(nat, { src, dst: VIP }, EntryPoint.POD).dst);
  };
  const before = run(eps);
  const removed = '10.244.6.5:8080';
  const after = run(eps.filter((e) => ipv4ToString(e.ip) !== '10.244.6.5'));
  let moved = 0;
  let movedElsewhere = 0;
  for (let i = 0; i < flows.length; i++) {
    if (before[i] !== after[i]) {
      moved++;
      if (before[i] !== removed) movedElsewhere++;
    }
  }
  const share = before.filter((d) => d === removed).length / flows.length;
  assert.ok(share > 0.07 && share < 0.13, `removed endpoint held ${share}`);
  // Every flow of the removed endpoint moves; the turn-taking moves a few more (2.4% of
  // the slots at M = 1021, N = 10; see maglev.ts), where consistent hashing modulo N
  // would move 90%.
  assert.ok(moved / flows.length < 0.16, `moved ${moved / flows.length}`);
  assert.ok(movedElsewhere / flows.length < 0.05, `flows of remaining endpoints moved: ${movedElsewhere / flows.length}`);
});

test('ICMP errors are translated through the quoted header, both ways', () => {
  const nat = makeNat(snapshot([web([endpoint('10.244.2.5', 53)], { protocol: 17, port: 53, nodePort: 30053 })], ['192.168.1.10']));
  // A client outside reaches the node port: DNAT and SNAT.
  const fwd = send(nat, { proto: 'udp', src: '203.0.113.9:5353', dst: '192.168.1.10:30053' }, EntryPoint.EXTERNAL);
  assert.equal(fwd.src, '192.168.1.10:5353');
  // The endpoint answers the forwarded datagram with port unreachable.
  const quoted = fwd.buf;
  const err1: PacketRepr = { ipv4: { src: ip('10.244.2.5'), dst: ip('192.168.1.10') }, icmp: { type: 3, code: 3 }, payload: quoted.slice() };
  const e1 = send(nat, buildPacket(err1), EntryPoint.EXTERNAL);
  assert.equal(e1.verdict, Verdict.NATED);
  assert.equal(nat.result.icmpError, true);
  assert.equal(e1.src, '192.168.1.10:0', 'from the node port address');
  assert.equal(e1.dst, '203.0.113.9:0', 'to the client');
  assert.equal(`${ipv4ToString(e1.info.origSrc4)}:${e1.info.origSrcPort}`, '203.0.113.9:5353', 'quoted: the client\'s own datagram');
  assert.equal(`${ipv4ToString(e1.info.origDst4)}:${e1.info.origDstPort}`, '192.168.1.10:30053');
  // The other way: the client reports a reply it could not take.
  const reply = send(nat, { proto: 'udp', src: '10.244.2.5:53', dst: '192.168.1.10:5353' }, EntryPoint.POD);
  assert.equal(reply.dst, '203.0.113.9:5353');
  const err2: PacketRepr = { ipv4: { src: ip('203.0.113.9'), dst: ip('192.168.1.10') }, icmp: { type: 3, code: 3 }, payload: reply.buf.slice() };
  const e2 = send(nat, buildPacket(err2), EntryPoint.EXTERNAL);
  assert.equal(e2.verdict, Verdict.NATED);
  assert.equal(e2.dst, '10.244.2.5:0');
  assert.equal(e2.src, '192.168.1.10:0', 'from the SNAT address the endpoint knows');
  assert.equal(`${ipv4ToString(e2.info.origSrc4)}:${e2.info.origSrcPort}`, '10.244.2.5:53');
  assert.equal(`${ipv4ToString(e2.info.origDst4)}:${e2.info.origDstPort}`, '192.168.1.10:5353');
  // An error about nothing we track passes.
  const other: PacketRepr = { ipv4: { src: ip('10.244.2.5'), dst: ip('10.244.1.7') }, icmp: { type: 3, code: 3 }, payload: packet({ proto: 'udp', src: '10.244.1.7:1', dst: '10.244.2.5:2' }) };
  assert.equal(send(nat, buildPacket(other), EntryPoint.POD).verdict, Verdict.PASS);
});

test('a full conntrack table evicts unanswered flows, then drops new ones (counted)', () => {
  const half = makeNat(snapshot([web()]), { conntrack: { capacity: 64, seed: 5 } });
  for (let i = 0; i < 64; i++) send(half, { src: `10.244.1.${i + 1}:1000`, dst: VIP, flags: SYN }, EntryPoint.POD, 1 + i);
  assert.equal(send(half, { src: '10.244.1.200:1000', dst: VIP }, EntryPoint.POD, 100).verdict, Verdict.NATED);
  assert.equal(half.conntrack.counters[ConntrackCounter.EVICTED], 1, 'one unanswered SYN_SENT flow gave way');
  assert.equal(half.conntrack.size, 64);

  const nat = makeNat(snapshot([web()]), { conntrack: { capacity: 64, seed: 5 } });
  const ct = nat.conntrack;
  // 64 answered, established flows: assured, never evicted.
  for (let i = 0; i < 64; i++) {
    const src = `10.244.1.${i + 1}:1000`;
    send(nat, { src, dst: VIP, flags: SYN }, EntryPoint.POD, 1);
    send(nat, { src: '10.244.2.5:8080', dst: src, flags: SYN | ACK }, EntryPoint.EXTERNAL, 1);
    send(nat, { src, dst: VIP, flags: ACK }, EntryPoint.POD, 1);
  }
  assert.equal(ct.size, 64);
  const out = send(nat, { src: '10.244.1.200:1000', dst: VIP }, EntryPoint.POD, 2);
  assert.equal(out.verdict, Verdict.DROP);
  assert.equal(nat.result.reason, NatReason.CONNTRACK_FULL);
  assert.equal(nat.reasons[NatReason.CONNTRACK_FULL], 1);
  assert.equal(ct.counters[ConntrackCounter.DROPPED_FULL], 1);
  // Once some expire (24 h later), new flows take their room.
  assert.equal(send(nat, { src: '10.244.1.200:1000', dst: VIP }, EntryPoint.POD, 1 + 86400).verdict, Verdict.NATED);
});

test('a direct connection from the port of a closed service flow passes untouched: the closing entry gives way (issue 8, finding 7)', () => {
  const nat = makeNat(snapshot([web()]));
  const ct = nat.conntrack;
  const EP = '10.244.2.5:8080';
  // Through the cluster IP, then closed: the entry waits in TIME_WAIT for 120 s.
  send(nat, { src: CLIENT, dst: VIP, flags: SYN }, EntryPoint.POD, 1);
  send(nat, { src: EP, dst: CLIENT, flags: SYN | ACK }, EntryPoint.EXTERNAL, 1);
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 1);
  send(nat, { src: CLIENT, dst: VIP, flags: FIN | ACK }, EntryPoint.POD, 2);
  send(nat, { src: EP, dst: CLIENT, flags: FIN | ACK }, EntryPoint.EXTERNAL, 2);
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 2);
  assert.equal(ct.stateOf(nat.result.entry), TcpState.TIME_WAIT);
  // The same client port, straight to the endpoint: not a service flow.
  const syn = send(nat, { src: CLIENT, dst: EP, flags: SYN }, EntryPoint.POD, 3);
  assert.equal(syn.verdict, Verdict.PASS);
  assert.equal(ct.size, 0, 'the TIME_WAIT entry gave way to the new connection');
  const synAck = send(nat, { src: EP, dst: CLIENT, flags: SYN | ACK }, EntryPoint.EXTERNAL, 3);
  assert.equal(synAck.verdict, Verdict.PASS, 'the reply is not reverse-NATed to the cluster IP');
  assert.equal(synAck.src, EP);
});

test('a direct SYN does not tear down a live service flow that shares its reply tuple', () => {
  const nat = makeNat(snapshot([web()]));
  const EP = '10.244.2.5:8080';
  send(nat, { src: CLIENT, dst: VIP, flags: SYN }, EntryPoint.POD, 1);
  send(nat, { src: EP, dst: CLIENT, flags: SYN | ACK }, EntryPoint.EXTERNAL, 1);
  send(nat, { src: CLIENT, dst: VIP, flags: ACK }, EntryPoint.POD, 1);
  assert.equal(send(nat, { src: CLIENT, dst: EP, flags: SYN }, EntryPoint.POD, 2).verdict, Verdict.PASS);
  assert.equal(nat.conntrack.size, 1, 'the established entry stays');
});

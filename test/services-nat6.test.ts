// Packet-trace tests of ServiceNat6 (NAT66): the IPv4 tests' cases over IPv6 packets,
// exact addresses and ports asserted on the rewritten bytes, checksums verified after
// every rewrite (TCP, UDP and ICMPv6 cover the IPv6 pseudo-header).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  IpProtocol, LinkType, PacketInfo, TcpFlags, buildPacket, decodeFrame, ipv6ToString, parseIpv6, verifyChecksums, type PacketRepr,
} from '../src/wire/index.ts';
import { EntryPoint, LbChoice, MasqReason, NatReason, Verdict } from '../src/services/nat-codes.ts';
import { ServiceNat6, type ServiceNat6Options } from '../src/services/nat6.ts';
import { endpoint6, servicePort6, snapshot6, type PortInput6 } from '../src/model/synthetic.ts';
import { FrontendKind } from '../src/tables/service-frontends.ts';
import { buildServiceTable6 } from '../src/tables/service-table.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';

const GATEWAY6 = 'fd00:10:244:1::1';
const NODE6 = 'fd00:172:30::10';
const LOCAL = endpoint6('fd00:10:244:1::5', 8080, { local: true });
const REMOTE = endpoint6('fd00:10:244:2::5', 8080);
const CLIENT_POD = '[fd00:10:244:1::7]:40000';
const OUTSIDE = '[2001:db8::9]:51000';
const VIP = 'fd00:10:96::a';

function makeNat(snap: ServiceSnapshot, over: Partial<ServiceNat6Options> = {}): ServiceNat6 {
  return new ServiceNat6(buildServiceTable6(snap), { masqueradeIP: parseIpv6(GATEWAY6)!, seed: 12345, conntrack: { seed: 7 }, ...over });
}

function web(over: PortInput6 = {}) {
  return servicePort6({ name: 'web', clusterIP: VIP, port: 80, allEndpoints: [LOCAL], ...over });
}

interface Flow { proto?: 'tcp' | 'udp'; src: string; dst: string; flags?: number; partial?: boolean }

function split(ep: string): [Uint8Array, number] {
  const m = /^\[(.+)\]:(\d+)$/.exec(ep);
  assert.ok(m, `endpoint ${ep}`);
  return [parseIpv6(m[1]!)!, Number(m[2])];
}

function packet(f: Flow): Uint8Array {
  const [src, sport] = split(f.src);
  const [dst, dport] = split(f.dst);
  const r: PacketRepr = { ipv6: { src, dst, hopLimit: 64 }, payload: new Uint8Array(11).map((_, i) => i * 7) };
  if ((f.proto ?? 'tcp') === 'tcp') r.tcp = { srcPort: sport, dstPort: dport, seq: 1000, ack: 0, flags: f.flags ?? TcpFlags.SYN };
  else r.udp = { srcPort: sport, dstPort: dport };
  if (f.partial) r.l4Checksum = 'partial';
  return buildPacket(r);
}

function decode(buf: Uint8Array): PacketInfo {
  const info = new PacketInfo();
  assert.equal(decodeFrame(info, buf, 0, buf.length, LinkType.RAW_IP), 0, 'packet decodes');
  return info;
}

function text(info: PacketInfo, buf: Uint8Array, which: 'src' | 'dst'): string {
  return `[${ipv6ToString(buf, which === 'src' ? info.src6Offset : info.dst6Offset)}]:${which === 'src' ? info.srcPort : info.dstPort}`;
}

interface Seen { verdict: number; src: string; dst: string; buf: Uint8Array; info: PacketInfo }

function send(nat: ServiceNat6, f: Flow | Uint8Array, entryPoint: number, now = 1): Seen {
  const buf = f instanceof Uint8Array ? f : packet(f);
  const info = decode(buf);
  const partial = !(f instanceof Uint8Array) && f.partial === true;
  const verdict = nat.process(info, buf, entryPoint, partial, now);
  const after = decode(buf);
  assert.ok(verifyChecksums(after, buf, partial), 'checksums valid after process()');
  if (after.protocol === IpProtocol.TCP || after.protocol === IpProtocol.UDP) {
    assert.equal(info.srcPort, after.srcPort);
    assert.equal(info.dstPort, after.dstPort);
  }
  return { verdict, src: text(after, buf, 'src'), dst: text(after, buf, 'dst'), buf, info: after };
}

const VIP80 = `[${VIP}]:80`;

test('NAT66 cluster IP from a pod: DNAT to the endpoint, source kept; the reply is reverse-NATed', () => {
  const nat = makeNat(snapshot6([web()]));
  const out = send(nat, { src: CLIENT_POD, dst: VIP80 }, EntryPoint.POD);
  assert.equal(out.verdict, Verdict.NATED);
  assert.equal(out.src, CLIENT_POD);
  assert.equal(out.dst, '[fd00:10:244:1::5]:8080');
  assert.equal(nat.result.frontend, FrontendKind.CLUSTER_IP);
  assert.equal(nat.result.masquerade, MasqReason.NONE);
  assert.equal(nat.result.newFlow, true);
  const back = send(nat, { src: '[fd00:10:244:1::5]:8080', dst: CLIENT_POD, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.verdict, Verdict.NATED);
  assert.equal(nat.result.direction, 1);
  assert.equal(back.src, VIP80);
  assert.equal(back.dst, CLIENT_POD);
  const again = send(nat, { src: CLIENT_POD, dst: VIP80, flags: TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(again.dst, '[fd00:10:244:1::5]:8080');
  assert.equal(nat.result.newFlow, false);
  // The conntrack holds the full 128-bit tuples.
  const e = nat.result.entry;
  assert.deepEqual(nat.conntrack.tuple6(e * 2), { src: 'fd00:10:244:1::7', srcPort: 40000, dst: VIP, dstPort: 80 });
  assert.deepEqual(nat.conntrack.tuple6(e * 2 + 1), { src: 'fd00:10:244:1::5', srcPort: 8080, dst: 'fd00:10:244:1::7', dstPort: 40000 });
});

test('NAT66 UDP with a partial checksum; clients that differ only in the high bits are different flows', () => {
  const nat = makeNat(snapshot6([servicePort6({ name: 'dns', protocol: 17, clusterIP: 'fd00:10:96::35', port: 53, allEndpoints: [endpoint6('fd00:10:244:2::9', 53)] })]));
  const a = send(nat, { proto: 'udp', src: '[fd00:10:244:1::7]:5353', dst: '[fd00:10:96::35]:53', partial: true }, EntryPoint.POD);
  assert.equal(a.dst, '[fd00:10:244:2::9]:53');
  const b = send(nat, { proto: 'udp', src: '[fd01:10:244:1::7]:5353', dst: '[fd00:10:96::35]:53', partial: true }, EntryPoint.POD);
  assert.equal(nat.result.newFlow, true, 'another client, another flow');
  assert.equal(b.src, '[fd01:10:244:1::7]:5353');
  const ra = send(nat, { proto: 'udp', src: '[fd00:10:244:2::9]:53', dst: '[fd00:10:244:1::7]:5353' }, EntryPoint.POD);
  assert.equal(ra.src, '[fd00:10:96::35]:53');
  assert.equal(ra.dst, '[fd00:10:244:1::7]:5353');
  const rb = send(nat, { proto: 'udp', src: '[fd00:10:244:2::9]:53', dst: '[fd01:10:244:1::7]:5353' }, EntryPoint.POD);
  assert.equal(rb.dst, '[fd01:10:244:1::7]:5353');
});

test('NAT66 hairpin and the node itself are masqueraded to the node\'s IPv6 gateway', () => {
  const nat = makeNat(snapshot6([web({ allEndpoints: [REMOTE] })]));
  const hair = makeNat(snapshot6([web()]));
  const out = send(hair, { src: '[fd00:10:244:1::5]:41000', dst: VIP80 }, EntryPoint.POD);
  assert.equal(out.src, `[${GATEWAY6}]:41000`);
  assert.equal(hair.result.masquerade, MasqReason.HAIRPIN);
  const back = send(hair, { src: '[fd00:10:244:1::5]:8080', dst: `[${GATEWAY6}]:41000`, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.src, VIP80);
  assert.equal(back.dst, '[fd00:10:244:1::5]:41000');
  const host = send(nat, { src: `[${GATEWAY6}]:36000`, dst: VIP80 }, EntryPoint.HOST);
  assert.equal(nat.result.masquerade, MasqReason.HOST);
  assert.equal(host.src, `[${GATEWAY6}]:36000`);
  const off = send(nat, { src: OUTSIDE, dst: VIP80 }, EntryPoint.EXTERNAL);
  assert.equal(nat.result.masquerade, MasqReason.OFF_CLUSTER);
  assert.equal(off.src, `[${GATEWAY6}]:51000`);
});

test('NAT66 node port and load-balancer IP: Cluster policy masquerades, Local keeps the client and local endpoints', () => {
  const cluster = makeNat(snapshot6([web({ nodePort: 30080, allEndpoints: [REMOTE] })], [NODE6]));
  const out = send(cluster, { src: OUTSIDE, dst: `[${NODE6}]:30080` }, EntryPoint.EXTERNAL);
  assert.equal(out.verdict, Verdict.NATED);
  assert.equal(out.dst, '[fd00:10:244:2::5]:8080');
  assert.equal(out.src, `[${GATEWAY6}]:51000`);
  assert.equal(cluster.result.frontend, FrontendKind.NODE_PORT);
  const back = send(cluster, { src: '[fd00:10:244:2::5]:8080', dst: `[${GATEWAY6}]:51000`, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.src, `[${NODE6}]:30080`);
  assert.equal(back.dst, OUTSIDE);
  assert.equal(send(cluster, { src: OUTSIDE, dst: '[fd00:172:30::11]:30080' }, EntryPoint.EXTERNAL).verdict, Verdict.PASS, 'only on nodePortAddresses');

  const local = makeNat(snapshot6([web({ nodePort: 30080, externalLocal: true, allEndpoints: [LOCAL, REMOTE], loadBalancerIPs: ['2001:db8:5::20'] })], [NODE6]));
  for (let i = 0; i < 10; i++) {
    const o = send(local, { src: `[2001:db8::9]:${50000 + i}`, dst: i % 2 ? `[${NODE6}]:30080` : '[2001:db8:5::20]:80' }, EntryPoint.EXTERNAL);
    assert.equal(o.dst, '[fd00:10:244:1::5]:8080');
    assert.equal(o.src, `[2001:db8::9]:${50000 + i}`, 'no SNAT');
  }
  const r = send(local, { src: '[fd00:10:244:1::5]:8080', dst: '[2001:db8::9]:50000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(r.src, '[2001:db8:5::20]:80');
  const none = makeNat(snapshot6([web({ nodePort: 30080, externalLocal: true, allEndpoints: [REMOTE] })], [NODE6]));
  assert.equal(send(none, { src: OUTSIDE, dst: `[${NODE6}]:30080` }, EntryPoint.EXTERNAL).verdict, Verdict.DROP);
  assert.equal(none.result.reason, NatReason.NO_LOCAL_ENDPOINTS);
});

test('NAT66 rejects: TCP reset and ICMPv6 port unreachable from the service address; unknown port; fragments dropped', () => {
  const nat = makeNat(snapshot6([
    web({ allEndpoints: [] }),
    servicePort6({ name: 'dns', protocol: 17, clusterIP: 'fd00:10:96::35', port: 53, allEndpoints: [] }),
  ]));
  const syn = send(nat, { src: CLIENT_POD, dst: VIP80 }, EntryPoint.POD);
  assert.equal(syn.verdict, Verdict.REJECT_TCP_RST);
  assert.equal(nat.result.reason, NatReason.NO_ENDPOINTS);
  const out = new Uint8Array(1400);
  const n = nat.buildReject(out, 0, syn.info, syn.buf);
  assert.ok(n > 0);
  const rst = decode(out.subarray(0, n));
  assert.equal(rst.ipVersion, 6);
  assert.equal(rst.tcpFlags & TcpFlags.RST, TcpFlags.RST);
  assert.equal(text(rst, out, 'src'), VIP80);
  assert.equal(text(rst, out, 'dst'), CLIENT_POD);
  assert.ok(verifyChecksums(rst, out));
  const dns = send(nat, { proto: 'udp', src: CLIENT_POD, dst: '[fd00:10:96::35]:53' }, EntryPoint.POD);
  assert.equal(dns.verdict, Verdict.REJECT_ICMP);
  const m = nat.buildReject(out, 0, dns.info, dns.buf);
  const icmp = decode(out.subarray(0, m));
  assert.deepEqual([icmp.protocol, icmp.icmpType, icmp.icmpCode, icmp.origDstPort], [IpProtocol.ICMPV6, 1, 4, 53]);
  assert.equal(ipv6ToString(out, icmp.src6Offset), 'fd00:10:96::35');
  assert.ok(verifyChecksums(icmp, out));
  assert.equal(send(nat, { src: CLIENT_POD, dst: `[${VIP}]:81` }, EntryPoint.POD).verdict, Verdict.REJECT_TCP_RST);
  assert.equal(nat.result.reason, NatReason.UNKNOWN_PORT);
  assert.equal(send(nat, { src: CLIENT_POD, dst: '[fd00:10:244:2::5]:8080' }, EntryPoint.POD).verdict, Verdict.PASS);
});

test('NAT66 loadBalancerSourceRanges match the client\'s IPv6 prefix', () => {
  const nat = makeNat(snapshot6([web({ loadBalancerIPs: ['2001:db8:5::20'], allEndpoints: [REMOTE], loadBalancerSourceRanges: ['2001:db8:aa::/48', '2001:db8:bb:cc::/64'] })]));
  assert.equal(send(nat, { src: '[2001:db8:aa:1::9]:1000', dst: '[2001:db8:5::20]:80' }, EntryPoint.EXTERNAL).verdict, Verdict.NATED);
  assert.equal(send(nat, { src: '[2001:db8:bb:cc:1::9]:1000', dst: '[2001:db8:5::20]:80' }, EntryPoint.EXTERNAL).verdict, Verdict.NATED);
  const denied = send(nat, { src: '[2001:db8:bb:cd::9]:1000', dst: '[2001:db8:5::20]:80' }, EntryPoint.EXTERNAL);
  assert.equal(denied.verdict, Verdict.DROP);
  assert.equal(nat.result.reason, NatReason.SOURCE_RANGE);
});

test('NAT66 ClientIP affinity holds a client by its full address; Maglev agrees across engines', () => {
  const eps = [0, 1, 2, 3, 4].map((k) => endpoint6(`fd00:10:244:2::${10 + k}`, 8080));
  const nat = makeNat(snapshot6([web({ allEndpoints: eps, affinityTimeoutSeconds: 100 })]));
  const first = send(nat, { src: '[fd00:10:244:1::7]:30000', dst: VIP80 }, EntryPoint.POD, 10).dst;
  for (let i = 1; i < 50; i++) {
    assert.equal(send(nat, { src: `[fd00:10:244:1::7]:${30000 + i}`, dst: VIP80 }, EntryPoint.POD, 10 + i).dst, first);
    assert.equal(nat.result.lb, LbChoice.AFFINITY);
  }
  const chosen = new Set<string>();
  for (let c = 0; c < 40; c++) chosen.add(send(nat, { src: `[fd00:10:244:3::${c + 1}]:1000`, dst: VIP80 }, EntryPoint.POD, 20).dst);
  assert.ok(chosen.size >= 4, `clients spread over ${chosen.size} endpoints`);

  // Maglev: two engines (two nodes) with different random seeds send a flow to the same endpoint.
  const snap = snapshot6([web({ allEndpoints: eps, lb: 'maglev' })]);
  const a = makeNat(snap, { seed: 1 });
  const b = makeNat(snap, { seed: 99 });
  const spread = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const f = { src: `[fd00:10:244:${i}::7]:${20000 + i}`, dst: VIP80 };
    const da = send(a, f, EntryPoint.POD).dst;
    assert.equal(a.result.lb, LbChoice.MAGLEV);
    assert.equal(send(b, f, EntryPoint.POD).dst, da);
    spread.add(da);
  }
  assert.ok(spread.size >= 4);
});

test('NAT66 swaps: established flows keep their entry; UDP flows to a removed endpoint are flushed', () => {
  const a = endpoint6('fd00:10:244:2::10', 53);
  const b = endpoint6('fd00:10:244:2::11', 53);
  const port = (eps: typeof a[]) => servicePort6({ name: 'dns', protocol: 17, clusterIP: 'fd00:10:96::35', port: 53, allEndpoints: eps });
  const nat = makeNat(snapshot6([port([a, b])]));
  const seen = new Map<string, number>();
  for (let i = 0; i < 20; i++) {
    const d = send(nat, { proto: 'udp', src: `[fd00:10:244:1::7]:${6000 + i}`, dst: '[fd00:10:96::35]:53' }, EntryPoint.POD).dst;
    seen.set(d, (seen.get(d) ?? 0) + 1);
  }
  const onA = seen.get('[fd00:10:244:2::10]:53') ?? 0;
  assert.ok(onA > 0 && onA < 20);
  const flushed = nat.setTable(buildServiceTable6(snapshot6([port([b])], [], 2)));
  assert.equal(flushed, onA);
  assert.equal(nat.conntrack.size, 20 - onA);
});

test('NAT66 ICMPv6 errors about a tracked flow are translated through the quoted packet', () => {
  const nat = makeNat(snapshot6([web({ protocol: 17, allEndpoints: [REMOTE] })]));
  const out = send(nat, { proto: 'udp', src: CLIENT_POD, dst: VIP80 }, EntryPoint.POD);
  assert.equal(out.dst, '[fd00:10:244:2::5]:8080');
  // The endpoint's node answers the translated datagram with port unreachable: the
  // client must see an error about its own datagram, from the service address.
  const quoted = packet({ proto: 'udp', src: CLIENT_POD, dst: '[fd00:10:244:2::5]:8080' });
  const err = buildPacket({
    ipv6: { src: parseIpv6('fd00:10:244:2::5')!, dst: parseIpv6('fd00:10:244:1::7')!, hopLimit: 64 },
    icmp: { type: 1, code: 4 }, payload: quoted,
  });
  const e = send(nat, err, EntryPoint.POD);
  assert.equal(e.verdict, Verdict.NATED);
  assert.equal(nat.result.icmpError, true);
  assert.equal(ipv6ToString(e.buf, e.info.src6Offset), VIP);
  assert.equal(ipv6ToString(e.buf, e.info.dst6Offset), 'fd00:10:244:1::7');
  assert.equal(ipv6ToString(e.buf, e.info.origDst6Offset), VIP);
  assert.equal(e.info.origDstPort, 80);
  assert.equal(ipv6ToString(e.buf, e.info.origSrc6Offset), 'fd00:10:244:1::7');
});

test('NAT66 leaves IPv4 alone and IPv6 that is no service untouched', () => {
  const nat = makeNat(snapshot6([web()]));
  const v4 = buildPacket({ ipv4: { src: 0x0af40107, dst: 0x0a60000a, ttl: 64 }, tcp: { srcPort: 1, dstPort: 80, seq: 1, ack: 0, flags: TcpFlags.SYN } });
  assert.equal(nat.process(decode(v4), v4, EntryPoint.POD, false, 1), Verdict.PASS);
  const direct = send(nat, { src: CLIENT_POD, dst: '[fd00:10:244:2::5]:8080' }, EntryPoint.POD);
  assert.equal(direct.verdict, Verdict.PASS);
  assert.equal(direct.dst, '[fd00:10:244:2::5]:8080');
});

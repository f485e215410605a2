// Packet-trace tests of ServiceNat (STYLE.md, kube-proxy): hand-built snapshots,
// synthetic packets through process(), exact addresses and ports asserted on the
// rewritten bytes, checksums verified (services-helpers.ts send()).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EntryPoint, LbChoice, MasqReason, NatReason, Verdict } from '../src/services/nat-codes.ts';
import { endpoint, servicePort, snapshot } from '../src/model/synthetic.ts';
import { FrontendKind } from '../src/tables/service-frontends.ts';
import { decode, makeNat, send, TcpFlags } from './services-helpers.ts';

const LOCAL = endpoint('10.244.1.5', 8080, { local: true });
const REMOTE = endpoint('10.244.2.5', 8080);
const CLIENT_POD = '10.244.1.7:40000';
const OUTSIDE = '203.0.113.9:51000';

function web(over = {}) {
  return servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: [LOCAL], ...over });
}

test('cluster IP from a pod: DNAT to the endpoint, source kept; the reply is reverse-NATed', () => {
  const nat = makeNat(snapshot([web()]));
  const out = send(nat, { src: CLIENT_POD, dst: '10.96.0.10:80' }, EntryPoint.POD);
  assert.equal(out.verdict, Verdict.NATED);
  assert.equal(out.src, CLIENT_POD);
  assert.equal(out.dst, '10.244.1.5:8080');
  assert.equal(nat.result.frontend, FrontendKind.CLUSTER_IP);
  assert.equal(nat.result.masquerade, MasqReason.NONE);
  assert.equal(nat.result.newFlow, true);
  const back = send(nat, { src: '10.244.1.5:8080', dst: CLIENT_POD, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.verdict, Verdict.NATED);
  assert.equal(nat.result.direction, 1);
  assert.equal(back.src, '10.96.0.10:80');
  assert.equal(back.dst, CLIENT_POD);
  // The same flow's next packet finds its entry (no new flow).
  const again = send(nat, { src: CLIENT_POD, dst: '10.96.0.10:80', flags: TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(again.dst, '10.244.1.5:8080');
  assert.equal(nat.result.newFlow, false);
});

test('several ports of one service: each port goes to its own target port; UDP with a partial checksum', () => {
  const dnsEp = [endpoint('10.244.2.9', 53)];
  const nat = makeNat(snapshot([
    servicePort({ name: 'dns', portName: 'dns', protocol: 17, clusterIP: '10.96.0.53', port: 53, allEndpoints: dnsEp }),
    servicePort({ name: 'dns', portName: 'metrics', protocol: 6, clusterIP: '10.96.0.53', port: 9153, allEndpoints: [endpoint('10.244.2.9', 9153)] }),
  ]));
  const udp = send(nat, { proto: 'udp', src: CLIENT_POD, dst: '10.96.0.53:53', partial: true }, EntryPoint.POD);
  assert.equal(udp.dst, '10.244.2.9:53');
  const tcp = send(nat, { src: CLIENT_POD, dst: '10.96.0.53:9153' }, EntryPoint.POD);
  assert.equal(tcp.dst, '10.244.2.9:9153');
  const reply = send(nat, { proto: 'udp', src: '10.244.2.9:53', dst: CLIENT_POD, partial: true }, EntryPoint.EXTERNAL);
  assert.equal(reply.src, '10.96.0.53:53');
});

test('hairpin: a pod reaching itself through its service is SNATed to the hairpin address', () => {
  const nat = makeNat(snapshot([web()]));
  const out = send(nat, { src: '10.244.1.5:41000', dst: '10.96.0.10:80' }, EntryPoint.POD);
  assert.equal(out.dst, '10.244.1.5:8080');
  assert.equal(out.src, '10.244.1.1:41000');
  assert.equal(nat.result.masquerade, MasqReason.HAIRPIN);
  const back = send(nat, { src: '10.244.1.5:8080', dst: '10.244.1.1:41000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.src, '10.96.0.10:80');
  assert.equal(back.dst, '10.244.1.5:41000');
});

test('the node itself to a cluster IP is masqueraded; so is a client outside the cluster', () => {
  const nat = makeNat(snapshot([web({ allEndpoints: [REMOTE] })]));
  const host = send(nat, { src: '192.168.1.10:33000', dst: '10.96.0.10:80' }, EntryPoint.HOST);
  assert.equal(host.dst, '10.244.2.5:8080');
  assert.equal(host.src, '192.168.1.10:33000');
  assert.equal(nat.result.masquerade, MasqReason.HOST);
  const ext = send(nat, { src: OUTSIDE, dst: '10.96.0.10:80' }, EntryPoint.EXTERNAL);
  assert.equal(ext.src, '192.168.1.10:51000');
  assert.equal(nat.result.masquerade, MasqReason.OFF_CLUSTER);
  const back = send(nat, { src: '10.244.2.5:8080', dst: '192.168.1.10:51000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.EXTERNAL);
  assert.equal(back.src, '10.96.0.10:80');
  assert.equal(back.dst, OUTSIDE);
});

test('masquerading picks another source port when the client\'s is taken toward the same endpoint', () => {
  const nat = makeNat(snapshot([web({ allEndpoints: [REMOTE] })]));
  const a = send(nat, { src: '203.0.113.9:5000', dst: '10.96.0.10:80' }, EntryPoint.EXTERNAL);
  const b = send(nat, { src: '203.0.113.77:5000', dst: '10.96.0.10:80' }, EntryPoint.EXTERNAL);
  assert.equal(a.src, '192.168.1.10:5000');
  assert.match(b.src, /^192\.168\.1\.10:\d+$/);
  assert.notEqual(b.src, a.src);
  const backB = send(nat, { src: '10.244.2.5:8080', dst: b.src, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.EXTERNAL);
  assert.equal(backB.dst, '203.0.113.77:5000');
  const backA = send(nat, { src: '10.244.2.5:8080', dst: a.src, flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.EXTERNAL);
  assert.equal(backA.dst, '203.0.113.9:5000');
});

test('node port, externalTrafficPolicy Cluster: DNAT and SNAT to the node; the reply comes from nodeIP:nodePort', () => {
  const nat = makeNat(snapshot([web({ nodePort: 30080, allEndpoints: [REMOTE] })], ['192.168.1.10']));
  const out = send(nat, { src: OUTSIDE, dst: '192.168.1.10:30080' }, EntryPoint.EXTERNAL);
  assert.equal(out.verdict, Verdict.NATED);
  assert.equal(out.dst, '10.244.2.5:8080');
  assert.equal(out.src, '192.168.1.10:51000');
  assert.equal(nat.result.frontend, FrontendKind.NODE_PORT);
  assert.equal(nat.result.masquerade, MasqReason.EXTERNAL_POLICY_CLUSTER);
  const back = send(nat, { src: '10.244.2.5:8080', dst: '192.168.1.10:51000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.EXTERNAL);
  assert.equal(back.src, '192.168.1.10:30080');
  assert.equal(back.dst, OUTSIDE);
  // Only on nodePortAddresses.
  assert.equal(send(nat, { src: OUTSIDE, dst: '192.168.1.11:30080' }, EntryPoint.EXTERNAL).verdict, Verdict.PASS);
});

test('externalTrafficPolicy Local: outside clients keep their address and reach local endpoints only', () => {
  const port = web({ nodePort: 30080, externalLocal: true, allEndpoints: [LOCAL, REMOTE], loadBalancerIPs: ['198.51.100.20'] });
  assert.deepEqual(port.externalEndpoints.map((e) => e.ip), [LOCAL.ip]);
  const nat = makeNat(snapshot([port], ['192.168.1.10']));
  for (let i = 0; i < 20; i++) {
    const out = send(nat, { src: `203.0.113.9:${50000 + i}`, dst: i % 2 ? '192.168.1.10:30080' : '198.51.100.20:80' }, EntryPoint.EXTERNAL);
    assert.equal(out.dst, '10.244.1.5:8080');
    assert.equal(out.src, `203.0.113.9:${50000 + i}`, 'no SNAT');
    assert.equal(nat.result.masquerade, MasqReason.NONE);
  }
  const back = send(nat, { src: '10.244.1.5:8080', dst: '203.0.113.9:50000', flags: TcpFlags.SYN | TcpFlags.ACK }, EntryPoint.POD);
  assert.equal(back.src, '198.51.100.20:80');
  // From a pod: short-circuited to the cluster endpoints, source kept.
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const out = send(nat, { src: `10.244.1.7:${42000 + i}`, dst: '192.168.1.10:30080' }, EntryPoint.POD);
    assert.equal(out.src, `10.244.1.7:${42000 + i}`);
    seen.add(out.dst);
  }
  assert.deepEqual([...seen].sort(), ['10.244.1.5:8080', '10.244.2.5:8080']);
  // From the node itself: cluster endpoints, masqueraded.
  const host = send(nat, { src: '192.168.1.10:36000', dst: '198.51.100.20:80' }, EntryPoint.HOST);
  assert.equal(nat.result.masquerade, MasqReason.HOST);
  assert.equal(host.src, '192.168.1.10:36000');
});

test('Local policies with no local endpoint drop (kube-proxy: "has no local endpoints"); other traffic still flows', () => {
  const nat = makeNat(snapshot([web({ nodePort: 30080, externalLocal: true, allEndpoints: [REMOTE] })], ['192.168.1.10']));
  const ext = send(nat, { src: OUTSIDE, dst: '192.168.1.10:30080' }, EntryPoint.EXTERNAL);
  assert.equal(ext.verdict, Verdict.DROP);
  assert.equal(nat.result.reason, NatReason.NO_LOCAL_ENDPOINTS);
  assert.equal(send(nat, { src: CLIENT_POD, dst: '10.96.0.10:80' }, EntryPoint.POD).dst, '10.244.2.5:8080');
  const itp = makeNat(snapshot([web({ internalLocal: true, allEndpoints: [REMOTE] })]));
  assert.equal(send(itp, { src: CLIENT_POD, dst: '10.96.0.10:80' }, EntryPoint.POD).verdict, Verdict.DROP);
  assert.equal(itp.result.reason, NatReason.NO_LOCAL_ENDPOINTS);
  assert.equal(itp.reasons[NatReason.NO_LOCAL_ENDPOINTS], 1);
});

test('no endpoints: TCP is rejected with a reset, UDP with ICMP port unreachable, from the service address', () => {
  const nat = makeNat(snapshot([
    web({ allEndpoints: [] }),
    servicePort({ name: 'dns', protocol: 17, clusterIP: '10.96.0.53', port: 53, allEndpoints: [endpoint('10.244.2.9', 53, { ready: false, serving: false, terminating: true })] }),
  ]));
  const syn = send(nat, { src: CLIENT_POD, dst: '10.96.0.10:80' }, EntryPoint.POD);
  assert.equal(syn.verdict, Verdict.REJECT_TCP_RST);
  assert.equal(syn.dst, '10.96.0.10:80', 'packet untouched');
  assert.equal(nat.result.reason, NatReason.NO_ENDPOINTS);
  const out = new Uint8Array(600);
  const n = nat.buildReject(out, 0, syn.info, syn.buf);
  const rst = decode(out.subarray(0, n));
  assert.equal(rst.tcpFlags & TcpFlags.RST, TcpFlags.RST);
  assert.equal(rst.srcPort, 80);
  assert.equal(rst.dstPort, 40000);
  const dns = send(nat, { proto: 'udp', src: CLIENT_POD, dst: '10.96.0.53:53' }, EntryPoint.POD);
  assert.equal(dns.verdict, Verdict.REJECT_ICMP);
  const m = nat.buildReject(out, 0, dns.info, dns.buf);
  const icmp = decode(out.subarray(0, m));
  assert.deepEqual([icmp.icmpType, icmp.icmpCode, icmp.origDstPort], [3, 3, 53]);
  assert.equal(icmp.src4, dns.info.dst4);
  // A port the cluster IP does not serve is rejected too (kube-proxy nftables mode).
  assert.equal(send(nat, { src: CLIENT_POD, dst: '10.96.0.10:81' }, EntryPoint.POD).verdict, Verdict.REJECT_TCP_RST);
  assert.equal(nat.result.reason, NatReason.UNKNOWN_PORT);
  // Not a service at all: passed untouched.
  assert.equal(send(nat, { src: CLIENT_POD, dst: '10.244.2.5:8080' }, EntryPoint.POD).verdict, Verdict.PASS);
});

test('terminating fallback: the endpoint lists the snapshot gives are the only ones chosen', () => {
  const old = endpoint('10.244.2.6', 8080, { ready: false, serving: true, terminating: true });
  const gone = endpoint('10.244.2.7', 8080, { ready: false, serving: false, terminating: true });
  const nat = makeNat(snapshot([web({ allEndpoints: [old, gone], clusterEndpoints: [old], externalEndpoints: [old] })]));
  for (let i = 0; i < 30; i++) assert.equal(send(nat, { src: `10.244.1.7:${40000 + i}`, dst: '10.96.0.10:80' }, EntryPoint.POD).dst, '10.244.2.6:8080');
});

test('loadBalancerSourceRanges: clients outside the ranges are dropped at the LB IP, not at the node port', () => {
  const nat = makeNat(snapshot([web({
    nodePort: 30080, loadBalancerIPs: ['198.51.100.20'], externalIPs: ['198.51.100.30'], allEndpoints: [REMOTE],
    loadBalancerSourceRanges: ['203.0.113.0/24', '100.64.0.0/10'],
  })], ['192.168.1.10']));
  assert.equal(send(nat, { src: '203.0.113.200:1000', dst: '198.51.100.20:80' }, EntryPoint.EXTERNAL).verdict, Verdict.NATED);
  assert.equal(send(nat, { src: '100.100.1.1:1000', dst: '198.51.100.20:80' }, EntryPoint.EXTERNAL).verdict, Verdict.NATED);
  const denied = send(nat, { src: '198.18.0.1:1000', dst: '198.51.100.20:80' }, EntryPoint.EXTERNAL);
  assert.equal(denied.verdict, Verdict.DROP);
  assert.equal(nat.result.reason, NatReason.SOURCE_RANGE);
  assert.equal(denied.dst, '198.51.100.20:80');
  assert.equal(send(nat, { src: '198.18.0.1:1001', dst: '192.168.1.10:30080' }, EntryPoint.EXTERNAL).verdict, Verdict.NATED);
  const ext = send(nat, { src: '198.18.0.1:1002', dst: '198.51.100.30:80' }, EntryPoint.EXTERNAL);
  assert.equal(ext.verdict, Verdict.NATED);
  assert.equal(nat.result.frontend, FrontendKind.EXTERNAL_IP);
  assert.equal(ext.src, '192.168.1.10:1002');
});

test('ClientIP affinity holds a client on one endpoint over many flows, per service port, until it expires', () => {
  const eps = [0, 1, 2, 3, 4].map((k) => endpoint(`10.244.2.${10 + k}`, 8080));
  const nat = makeNat(snapshot([web({ allEndpoints: eps, affinityTimeoutSeconds: 100 })]));
  const first = send(nat, { src: '10.244.1.7:30000', dst: '10.96.0.10:80' }, EntryPoint.POD, 10).dst;
  for (let i = 1; i < 200; i++) {
    assert.equal(send(nat, { src: `10.244.1.7:${30000 + i}`, dst: '10.96.0.10:80' }, EntryPoint.POD, 10 + i * 0.25).dst, first);
    if (i > 1) assert.equal(nat.result.lb, LbChoice.AFFINITY);
  }
  // Other clients are spread, each held on its own endpoint.
  const chosen = new Set<string>();
  for (let c = 0; c < 40; c++) {
    const a = send(nat, { src: `10.244.3.${c + 1}:1000`, dst: '10.96.0.10:80' }, EntryPoint.POD, 100).dst;
    assert.equal(send(nat, { src: `10.244.3.${c + 1}:1001`, dst: '10.96.0.10:80' }, EntryPoint.POD, 101).dst, a);
    chosen.add(a);
  }
  assert.ok(chosen.size >= 4, `clients spread over ${chosen.size} endpoints`);
  // Past the timeout (last refresh at 10 + 199/4), the choice is made afresh.
  let changed = false;
  for (let i = 0; i < 20 && !changed; i++) {
    const t = 200 + i * 200;
    changed = send(nat, { src: `10.244.1.7:${35000 + i}`, dst: '10.96.0.10:80' }, EntryPoint.POD, t).dst !== first;
    assert.notEqual(nat.result.lb, LbChoice.AFFINITY);
  }
  assert.ok(changed);
});

test('affinity to an endpoint that was removed is ignored', () => {
  const a = endpoint('10.244.2.10', 8080);
  const b = endpoint('10.244.2.11', 8080);
  const nat = makeNat(snapshot([web({ allEndpoints: [a, b], affinityTimeoutSeconds: 10800 })]));
  let held = '';
  for (let i = 0; i < 5; i++) held = send(nat, { src: `10.244.1.7:${30000 + i}`, dst: '10.96.0.10:80' }, EntryPoint.POD).dst;
  const remaining = held === '10.244.2.10:8080' ? b : a;
  nat.setTable(makeNat(snapshot([web({ allEndpoints: [remaining], affinityTimeoutSeconds: 10800 })], [], 2)).table);
  const out = send(nat, { src: '10.244.1.7:31000', dst: '10.96.0.10:80' }, EntryPoint.POD, 2);
  assert.notEqual(out.dst, held);
  assert.equal(nat.result.lb, LbChoice.RANDOM);
});

test('random choice spreads flows evenly (chi-square, fixed seed)', () => {
  const eps = [0, 1, 2, 3, 4, 5].map((k) => endpoint(`10.244.2.${10 + k}`, 8080));
  const nat = makeNat(snapshot([web({ allEndpoints: eps })]), { conntrack: { capacity: 1 << 15, seed: 3 } });
  const counts = new Map<string, number>();
  const flows = 12000;
  for (let i = 0; i < flows; i++) {
    const d = send(nat, { src: `10.${1 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}:20000`, dst: '10.96.0.10:80' }, EntryPoint.POD).dst;
    counts.set(d, (counts.get(d) ?? 0) + 1);
  }
  assert.equal(counts.size, 6);
  const expected = flows / 6;
  let chi2 = 0;
  for (const c of counts.values()) chi2 += (c - expected) ** 2 / expected;
  // 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
  assert.ok(chi2 < 20.5, `chi-square ${chi2.toFixed(1)} over ${JSON.stringify([...counts.values()])}`);
});

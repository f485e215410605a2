// The promise that ServiceNat.process() allocates nothing per packet (STYLE.md rule 2).
// This file runs itself as a child (`node --expose-gc --trace-gc
// --max-semi-space-size=1 <file> child N`) that pushes N packets through process():
// new flows to a cluster IP (random choice), to a Maglev service, to a ClientIP
// affinity service, to a node port and a load-balancer IP with masquerading (addresses
// above 2^31, which V8 would box if they crossed a call as uint32), established
// packets both ways, ICMP errors translated, rejects and drops (verdicts only; building
// the reply is the slow path), conntrack entries expiring as the clock moves. The
// parent counts garbage collections between the child's markers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { LinkType, PacketInfo, buildPacket, decodeFrame, ipv4ToString, set16, set32 } from '../src/wire/index.ts';
import { EntryPoint, Verdict, verdictNames } from '../src/services/nat-codes.ts';
import { endpoint, ip, servicePort, snapshot } from '../src/model/synthetic.ts';
import { makeNat, packet, TcpFlags } from './services-helpers.ts';
import { runGcChild } from './helpers/gc-child.ts';

const { SYN, ACK } = TcpFlags;
const PODS = ip('10.1.0.0');

interface Template { buf: Uint8Array; entryPoint: number; vary: boolean }

function child(packets: number): void {
  const eps = [0, 1, 2, 3].map((k) => endpoint(`10.244.${2 + k}.5`, 8080));
  const nat = makeNat(snapshot([
    servicePort({ name: 'web', clusterIP: '10.96.0.10', port: 80, allEndpoints: eps, nodePort: 30080, loadBalancerIPs: ['198.51.100.20'] }),
    servicePort({ name: 'mag', clusterIP: '10.96.0.11', port: 80, allEndpoints: eps, lb: 'maglev' }),
    servicePort({ name: 'sticky', clusterIP: '10.96.0.12', port: 80, allEndpoints: eps, affinityTimeoutSeconds: 30 }),
    servicePort({ name: 'dns', protocol: 17, clusterIP: '10.96.0.53', port: 53, allEndpoints: [endpoint('10.244.9.9', 53)] }),
    servicePort({ name: 'empty', clusterIP: '10.96.0.99', port: 80, allEndpoints: [] }),
    servicePort({ name: 'ranged', clusterIP: '10.96.0.98', port: 80, allEndpoints: eps, loadBalancerIPs: ['198.51.100.21'], loadBalancerSourceRanges: ['10.0.0.0/8'] }),
  ], ['192.168.1.10']), { conntrack: { capacity: 1 << 16, seed: 1 } });

  // udpOut/udpBack and estOut/its reply are established flows after their first packet.
  const t = (f: Parameters<typeof packet>[0], entryPoint: number, vary = false): Template => ({ buf: packet(f), entryPoint, vary });
  const udpOut = t({ proto: 'udp', src: '10.244.1.7:5353', dst: '10.96.0.53:53' }, EntryPoint.POD);
  const udpBack = t({ proto: 'udp', src: '10.244.9.9:53', dst: '10.244.1.7:5353' }, EntryPoint.EXTERNAL);
  const estOut = t({ src: '203.0.113.9:50000', dst: '192.168.1.10:30080', flags: ACK }, EntryPoint.EXTERNAL);
  const templates: Template[] = [
    t({ src: '10.244.1.7:1', dst: '10.96.0.10:80', flags: SYN }, EntryPoint.POD, true),
    t({ src: '10.244.1.7:1', dst: '10.96.0.11:80', flags: SYN }, EntryPoint.POD, true),
    t({ src: '10.244.1.7:1', dst: '10.96.0.12:80', flags: SYN }, EntryPoint.POD, true),
    t({ src: '203.0.113.9:1', dst: '192.168.1.10:30080', flags: SYN }, EntryPoint.EXTERNAL, true),
    t({ src: '203.0.113.9:1', dst: '198.51.100.20:80', flags: SYN }, EntryPoint.EXTERNAL, true),
    t({ src: '192.168.1.10:1', dst: '10.96.0.10:80', flags: SYN }, EntryPoint.HOST, true),
    udpOut, udpBack, estOut, udpOut, udpBack, estOut,
    t({ src: '10.244.1.7:1', dst: '10.96.0.99:80', flags: SYN }, EntryPoint.POD, true),
    t({ src: '203.0.113.9:1', dst: '198.51.100.21:80', flags: SYN }, EntryPoint.EXTERNAL, true),
    t({ src: '10.244.1.7:7', dst: '10.244.2.5:8080', flags: ACK }, EntryPoint.POD),
  ];
  // The endpoint's reply to estOut and an ICMP error about udpOut need the flows' NAT:
  // run those once, then build them from what the endpoint saw.
  const info = new PacketInfo();
  const work = new Uint8Array(2048);
  const runOne = (tpl: Template, now: number, vary: number): number => {
    work.set(tpl.buf, 0);
    if (tpl.vary) {
      set16(work, 20, 1024 + (vary % 64000)); // a new source port: a new flow
      if (tpl.entryPoint === EntryPoint.POD) set32(work, 12, PODS + ((vary >>> 4) & 0xffff)); // new clients: new affinity keys
    }
    decodeFrame(info, work, 0, tpl.buf.length, LinkType.RAW_IP);
    return nat.process(info, work, tpl.entryPoint, false, now);
  };
  runOne(estOut, 1, 0);
  const reply = nat.result.entry * 2 + 1;
  const ct = nat.conntrack;
  templates.push(t({ src: `${ipv4ToString(ct.tuple(reply).src)}:8080`, dst: `${ipv4ToString(ct.tuple(reply).dst)}:${ct.tuple(reply).dstPort}`, flags: ACK }, EntryPoint.POD));
  runOne(udpOut, 1, 0);
  const forwarded = work.slice(0, udpOut.buf.length);
  templates.push({ buf: buildPacket({ ipv4: { src: ip('10.244.9.9'), dst: ip('10.244.1.7') }, icmp: { type: 3, code: 3 }, payload: forwarded }), entryPoint: EntryPoint.EXTERNAL, vary: false });

  const verdicts = new Float64Array(verdictNames.length);
  let now = 1;
  const run = (n: number, base: number): void => {
    for (let i = 0; i < n; i++) {
      const tpl = templates[i % templates.length]!;
      verdicts[runOne(tpl, now, base + i)]!++;
      if ((i & 1023) === 1023) {
        now++; // SYN_SENT flows (120 s) expire and are swept
        nat.expire(now, 256);
      }
    }
  };
  console.log('MARK warm-up');
  run(300_000, 0);
  globalThis.gc!();
  verdicts.fill(0);
  const before = getHeapStatistics().used_heap_size;
  console.log('MARK start');
  run(packets, 300_000);
  console.log('MARK end');
  globalThis.gc!();
  const after = getHeapStatistics().used_heap_size;
  console.log(JSON.stringify({ packets, heapGrowth: after - before, verdicts: [...verdicts], conntrack: nat.conntrack.size, counters: [...nat.conntrack.counters] }));
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  test('1,000,000 packets through process() allocate nothing: no GC inside the loop, < 400 KiB heap growth', () => {
    const { result: r, gcs } = runGcChild<{ packets: number; heapGrowth: number; verdicts: number[]; counters: number[] }>(fileURLToPath(import.meta.url), 1_000_000);
    // The work was done: every kind of verdict came up.
    assert.equal(r.verdicts.reduce((a, b) => a + b, 0), 1_000_000);
    assert.ok(r.verdicts[Verdict.NATED]! > 700_000, JSON.stringify(r));
    assert.ok(r.verdicts[Verdict.PASS]! > 0 && r.verdicts[Verdict.REJECT_TCP_RST]! > 0 && r.verdicts[Verdict.DROP]! > 0, JSON.stringify(r));
    assert.deepEqual(gcs, [], 'garbage collections inside the process() loop');
    assert.ok(r.heapGrowth < 400 * 1024, `heap grew by ${r.heapGrowth} bytes`);
  });
}

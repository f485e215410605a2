// The promise that KubernetesZone.answer() allocates nothing per query (STYLE.md rule 2;
// the query name string is readQuery's one allocation, made before). This file runs
// itself as a child (`node --expose-gc --trace-gc --max-semi-space-size=1 <file> child N`,
// helpers/gc-child.ts) that answers N queries of every kind: ClusterIP and headless A,
// SRV with its additional section, PTR, NODATA, NXDOMAIN, a computed pod name, a
// truncated answer, with and without EDNS; and dual-stack: AAAA of a cluster IP and of
// headless endpoints, SRV with A and AAAA in additional, ip6.arpa PTR, NODATA for A. The parent counts collections in the loop.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import * as dnsPacket from 'dns-packet';
import { KubernetesZone } from '../src/dns/kubernetes-zone.ts';
import { newQueryInfo, readQuery, type QueryInfo } from '../src/dns/message.ts';
import type { ClusterView, ServiceView } from '../src/model/cluster-view.ts';
import { NO_DUAL_STACK_FIELDS } from '../src/model/cluster-view.ts';
import { L4Protocol } from '../src/model/service-snapshot.ts';
import { parseIpv6 } from '../src/wire/address.ts';
import { runGcChild } from './helpers/gc-child.ts';

function svc(name: string, clusterIP: number, endpoints: number, clusterIP6 = '', endpoints6 = 0): ServiceView {
  return {
    key: `default/${name}`, namespace: 'default', name, type: 'ClusterIP', clusterIP, headless: clusterIP === 0, externalName: '', proxied: clusterIP !== 0,
    ports: [{ name: 'http', protocol: L4Protocol.TCP, port: 80, targetPort: 80, nodePort: 0 }], externalIPs: [], loadBalancerIngress: [],
    externalTrafficPolicy: '', healthCheckNodePort: 0, publishNotReadyAddresses: false, problems: [], ...NO_DUAL_STACK_FIELDS,
    endpoints: Array.from({ length: endpoints }, (_, i) => ({ ip: 0x0af40100 + i, hostname: '', nodeName: '', zone: '', ready: true, serving: true, terminating: false, ports: [{ name: 'http', protocol: L4Protocol.TCP, port: 80 }] })),
    clusterIP6, clusterIPs: clusterIP6 === '' ? [] : [clusterIP6], ipFamilies: clusterIP6 === '' ? [] : ['IPv6'],
    endpoints6: Array.from({ length: endpoints6 }, (_, i) => ({ ip: `fd00:10:244:1::${(i + 1).toString(16)}`, hostname: '', nodeName: '', zone: '', ready: true, serving: true, terminating: false, ports: [{ name: 'http', protocol: L4Protocol.TCP, port: 80 }] })),
  };
}

function child(queries: number): void {
  const zone = new KubernetesZone({ zones: ['cluster.local', 'in-addr.arpa', 'ip6.arpa'], ttl: 30, pods: 'insecure', fallthrough: null });
  zone.update({ generation: 1, nodeName: 'n', services: [svc('big', 0, 80), svc('db', 0, 3, '', 3), svc('six', 0, 0, 'fd00:10:96::6', 2), svc('web', 0x0a600014, 2, 'fd00:10:96::14', 2)], snapshot: {} as ClusterView['snapshot'] });
  const ip6Ptr = `${[...Buffer.from(parseIpv6('fd00:10:96::14')!).toString('hex')].reverse().join('.')}.ip6.arpa`;
  const cases: [string, dnsPacket.RecordType, number | undefined][] = [
    ['web.default.svc.cluster.local', 'A', 1232], ['Db.Default.svc.cluster.local', 'A', undefined],
    ['_http._tcp.db.default.svc.cluster.local', 'SRV', 4096], ['20.0.96.10.in-addr.arpa', 'PTR', undefined],
    ['web.default.svc.cluster.local', 'AAAA', 1232], ['nope.default.svc.cluster.local', 'A', undefined],
    ['10-1-2-3.default.pod.cluster.local', 'A', 1232], ['big.default.svc.cluster.local', 'A', undefined],
    ['six.default.svc.cluster.local', 'AAAA', undefined], ['six.default.svc.cluster.local', 'A', 1232],
    ['db.default.svc.cluster.local', 'AAAA', 1232], ['_http._tcp.web.default.svc.cluster.local', 'SRV', undefined],
    [ip6Ptr, 'PTR', 1232], ['fd00-10-244-1--2.db.default.svc.cluster.local', 'AAAA', undefined],
    ['_http._tcp.db.default.svc.cluster.local', 'SRV', undefined], ['fd00-10-244-1--5.default.pod.cluster.local', 'AAAA', undefined],
  ];
  const templates = cases.map(([name, type, edns]) => {
    const msg = dnsPacket.encode({ type: 'query', id: 7, questions: [{ type, name }], additionals: edns === undefined ? [] : [{ type: 'OPT', name: '.', udpPayloadSize: edns, flags: 0 } as unknown as dnsPacket.Answer] });
    const q: QueryInfo = newQueryInfo();
    assert.equal(readQuery(msg, msg.length, q), true);
    return { msg, q, maxSize: edns ?? 512 };
  });
  const res = new Uint8Array(65535);
  // The dual-stack cases answer what they should (NODATA only for six's A), so the loop measures real answers.
  for (const [i, t] of templates.entries()) {
    if (i < 8) continue;
    const n = zone.answer(t.msg, t.msg.length, t.q, res, t.maxSize);
    const r = dnsPacket.decode(Buffer.from(res.subarray(0, n)));
    assert.equal(r.answers!.length === 0, cases[i]![1] === 'A' && cases[i]![0].startsWith('six.'), `${cases[i]![0]} ${cases[i]![1]}`);
  }
  let bytes = 0;
  const run = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const t = templates[i & 15]!;
      bytes += zone.answer(t.msg, t.msg.length, t.q, res, t.maxSize);
    }
  };
  console.log('MARK warm-up');
  run(200_000);
  globalThis.gc!();
  bytes = 0;
  const before = getHeapStatistics().used_heap_size;
  console.log('MARK start');
  run(queries);
  console.log('MARK end');
  globalThis.gc!();
  const after = getHeapStatistics().used_heap_size;
  console.log(JSON.stringify({ queries, bytes, heapGrowth: after - before }));
}

if (process.argv[2] === 'child') {
  child(Number(process.argv[3] ?? 1_000_000));
} else {
  test('1,000,000 answers allocate nothing: no GC inside the answer() loop, < 400 KiB heap growth', () => {
    const { result: r, gcs } = runGcChild<{ queries: number; bytes: number; heapGrowth: number }>(fileURLToPath(import.meta.url), 1_000_000);
    assert.ok(r.bytes > r.queries * 40, `answers were written: ${r.bytes} bytes`);
    assert.deepEqual(gcs, [], 'garbage collections inside the answer() loop');
    assert.ok(r.heapGrowth < 400 * 1024, `heap grew by ${r.heapGrowth} bytes`);
  });
}

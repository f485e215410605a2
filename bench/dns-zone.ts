// The kubernetes zone's own costs, without sockets: answers per second of answer() for
// a cluster name (the query already read), of readQuery + answer() (what a server does
// per datagram), of the NXDOMAIN that a search-path miss gets, and of a computed pod
// name; then update() of a view with 10,000 Services and 100,000 endpoints: its time,
// and the memory the compiled zone holds (heap + the arena, after a full GC).
// Run: node --expose-gc bench/dns-zone.ts   (BENCH_TIME_MS=300 for a quick run)
import * as dnsPacket from 'dns-packet';
import { KubernetesZone } from '../src/dns/kubernetes-zone.ts';
import { newQueryInfo, readQuery } from '../src/dns/message.ts';
import type { ClusterView, EndpointView, ServiceView } from '../src/model/cluster-view.ts';
import { NO_DUAL_STACK_FIELDS } from '../src/model/cluster-view.ts';
import { L4Protocol } from '../src/model/service-snapshot.ts';

const TIME_MS = Number(process.env.BENCH_TIME_MS ?? 1000);
const gc = (globalThis as { gc?: () => void }).gc;

function service(i: number, headless: boolean, endpoints: number): ServiceView {
  const eps: EndpointView[] = [];
  for (let e = 0; e < endpoints; e++) {
    const n = i * endpoints + e;
    eps.push({ ip: ((10 << 24) | (128 << 16)) + n, hostname: headless ? `pod-${e}` : '', nodeName: 'node-1', zone: '', ready: true, serving: true, terminating: false, ports: [{ name: 'http', protocol: L4Protocol.TCP, port: 8080 }] });
  }
  return {
    key: `ns-${i % 100}/svc-${i}`, namespace: `ns-${i % 100}`, name: `svc-${i}`, type: 'ClusterIP',
    clusterIP: headless ? 0 : ((10 << 24) | (96 << 16)) + i + 1, headless, externalName: '', proxied: !headless,
    ports: [{ name: 'http', protocol: L4Protocol.TCP, port: 80, targetPort: 8080, nodePort: 0 }],
    externalIPs: [], loadBalancerIngress: [], externalTrafficPolicy: '', healthCheckNodePort: 0, publishNotReadyAddresses: false,
    endpoints: eps, problems: [], ...NO_DUAL_STACK_FIELDS,
  };
}

function clusterView(services: number, endpointsEach: number, headlessEvery: number): ClusterView {
  const list: ServiceView[] = [];
  for (let i = 0; i < services; i++) list.push(service(i, i % headlessEvery === 0, endpointsEach));
  list.sort((a, b) => (a.key < b.key ? -1 : 1));
  return { generation: 1, nodeName: 'node-1', services: list, snapshot: { generation: 1, nodePortAddresses: [], ports: [] } as unknown as ClusterView['snapshot'] };
}

const options = { zones: ['cluster.local', 'in-addr.arpa', 'ip6.arpa'], ttl: 30, pods: 'insecure' as const, fallthrough: ['in-addr.arpa', 'ip6.arpa'] };

function rate(label: string, fn: () => void): number {
  // Warm up, then count whole rounds of 1000 calls for TIME_MS.
  for (let i = 0; i < 20_000; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(TIME_MS) * 1_000_000n;
  let now = start;
  while (now < end) {
    for (let i = 0; i < 1000; i++) fn();
    n += 1000;
    now = process.hrtime.bigint();
  }
  const perSecond = n / (Number(now - start) / 1e9);
  console.log(`${label.padEnd(58)} ${(perSecond / 1000).toFixed(0).padStart(7)} k/s  ${(1e9 / perSecond).toFixed(0).padStart(5)} ns`);
  return perSecond;
}

function memory(): number {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

// ---- answers --------------------------------------------------------------------------
const small = new KubernetesZone(options);
small.update(clusterView(1000, 3, 10));
const q = newQueryInfo();
const res = new Uint8Array(65535);
const msgFor = (name: string, type: dnsPacket.RecordType = 'A'): Buffer =>
  dnsPacket.encode({ type: 'query', id: 1, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type, name }], additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0 } as unknown as dnsPacket.Answer] });

console.log(`kubernetes zone, 1000 services (every 10th headless), 3 endpoints each; ${TIME_MS} ms per figure`);
const cases: [string, Buffer][] = [
  ['A svc-5.ns-5.svc.cluster.local (ClusterIP)', msgFor('svc-5.ns-5.svc.cluster.local')],
  ['A svc-10.ns-10.svc.cluster.local (headless, 3 records)', msgFor('svc-10.ns-10.svc.cluster.local')],
  ['SRV _http._tcp.svc-10.ns-10.svc.cluster.local (+additional)', msgFor('_http._tcp.svc-10.ns-10.svc.cluster.local', 'SRV')],
  ['A svc-5.ns-5.svc.cluster.local.ns-1.svc.cluster.local (NXDOMAIN)', msgFor('svc-5.ns-5.svc.cluster.local.ns-1.svc.cluster.local')],
  ['AAAA svc-5.ns-5.svc.cluster.local (NODATA)', msgFor('svc-5.ns-5.svc.cluster.local', 'AAAA')],
  ['A 10-244-1-2.default.pod.cluster.local (computed)', msgFor('10-244-1-2.default.pod.cluster.local')],
];
for (const [label, msg] of cases) {
  readQuery(msg, msg.length, q);
  if (small.answer(msg, msg.length, q, res, 1232) === 0) throw new Error(`${label}: not handled`);
  rate(`answer()          ${label}`, () => { small.answer(msg, msg.length, q, res, 1232); });
  rate(`readQuery+answer  ${label}`, () => { readQuery(msg, msg.length, q); small.answer(msg, msg.length, q, res, 1232); });
}

// ---- 10k services / 100k endpoints ----------------------------------------------------
const big = clusterView(10_000, 10, 10);
const before = memory();
const zone = new KubernetesZone(options);
let t0 = process.hrtime.bigint();
zone.update(big);
const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
const after = memory();
t0 = process.hrtime.bigint();
zone.update({ ...big, generation: 2 });
const againMs = Number(process.hrtime.bigint() - t0) / 1e6;
// One Service changed (a new view object, its endpoints moved), the other 9,999 the same
// objects: what a sync after an endpoint change costs. The median of 9 such updates.
const changedServices = [...big.services];
const oneMsList: number[] = [];
for (let k = 1; k <= 9; k++) {
  const i = 100 * k + 5;
  changedServices[i] = { ...changedServices[i]!, endpoints: changedServices[i]!.endpoints.map((e) => ({ ...e, ip: e.ip + 0x100000 })) };
  t0 = process.hrtime.bigint();
  zone.update({ ...big, services: [...changedServices], generation: 2 + k });
  oneMsList.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const oneMs = oneMsList.sort((a, b) => a - b)[4]!;
const settled = memory();
console.log(`\n10,000 services (1,000 headless), 100,000 endpoints:`);
console.log(`update() first ${firstMs.toFixed(0)} ms; the same view objects again ${againMs.toFixed(0)} ms; one Service changed ${oneMs.toFixed(1)} ms`);
console.log(`zone memory (heap + arena, after GC): ${((after - before) / 1048576).toFixed(1)} MB after the first update, ${((settled - before) / 1048576).toFixed(1)} MB after ten more${gc === undefined ? ' (run with --expose-gc for exact figures)' : ''}`);
const probe = msgFor('svc-5.ns-5.svc.cluster.local');
readQuery(probe, probe.length, q);
rate('readQuery+answer  A svc-5.ns-5.svc.cluster.local (10k zone)', () => { readQuery(probe, probe.length, q); zone.answer(probe, probe.length, q, res, 1232); });

// Service tables and NAT engine: build time for 1,000 / 10,000 services, the cost of a
// table swap after one endpoint change, and ns per packet through ServiceNat.process()
// for a flow's first packet, an established flow and a reply, with destinations
// spread over every service (latency should stay flat from 1k to 10k services).
// 400,000 distinct flows, so conntrack is cache-cold; the cache-hot figure repeats
// 1,000 flows, as bursts of one flow's packets do. Then the control side in cluster
// mode while Services stream in (as a watch delivers them during a big apply): N
// Services and their EndpointSlices handed to ServiceProxyState 20 objects at a time,
// a sync after each batch; ms per sync (it should stay about flat from 1k to 10k).
// Run: node bench/services.ts [--json FILE]   (numbers vary with the machine; take the median)
import { LinkType, PacketInfo, TcpFlags, buildPacket, decodeFrame, set16, set32 } from '../src/wire/index.ts';
import { ServiceNat } from '../src/services/nat.ts';
import { EntryPoint, Verdict } from '../src/services/nat-codes.ts';
import { ip, scaleSnapshot } from '../src/model/synthetic.ts';
import { buildServiceTable, updateServiceTable } from '../src/tables/service-table.ts';
import { BenchJsonWriter } from './lib/bench-json.ts';
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import type { K8sObject } from '../src/k8s/objects.ts';
import { validateDocument } from '../src/k8s/validate.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';

const JSON_FILE = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
const out = new BenchJsonWriter('services', 'tapir', []);
const SCALE = { maglevEvery: 10, nodePortEvery: 4, affinityEvery: 20 };
const NODE = ip('192.168.1.10');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

function ms(f: () => void, runs: number): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    f();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

function buildRow(n: number): void {
  const snap = scaleSnapshot(n, SCALE);
  const build = ms(() => buildServiceTable(snap), 7);
  // One endpoint of one service changes: a new snapshot (same objects for the rest, as
  // a change-tracking control side hands over), a full rebuild, then the swap's diff.
  const table = buildServiceTable(snap);
  const nat = new ServiceNat(table, { masqueradeIP: NODE, conntrack: { capacity: 1024 } });
  const changed: ServiceSnapshot = { ...snap, generation: 2, ports: snap.ports.map((p, i) => (i === 7 ? { ...p, clusterEndpoints: p.clusterEndpoints.slice(1), externalEndpoints: p.externalEndpoints.slice(1) } : p)) };
  const swap = ms(() => nat.setTable(buildServiceTable(changed)), 7);
  // The same change as the agent applies it: an incremental update of the current table.
  // Each run starts from the original table, so every run is one change's worth of work.
  const times: number[] = [];
  for (let r = 0; r < 21; r++) {
    nat.setTable(table);
    times.push(ms(() => nat.setTable(updateServiceTable(table, changed)), 1));
  }
  const incremental = median(times);
  const row = { section: 'service tables', row: `${n} services`, x: n, mode: 'tapir', better: 'lower' } as const;
  out.push({ ...row, metric: 'table build', unit: 'ms' }, build);
  out.push({ ...row, metric: 'rebuild + swap after one endpoint change', unit: 'ms' }, swap);
  out.push({ ...row, metric: 'incremental update + swap after one endpoint change', unit: 'ms' }, incremental);
  console.log(`build ${String(n).padStart(6)} services: ${build.toFixed(1).padStart(6)} ms   rebuild + swap after one endpoint change: ${swap.toFixed(1).padStart(6)} ms   incremental update + swap: ${incremental.toFixed(2).padStart(6)} ms`);
}

function packetRow(n: number): void {
  const snap = scaleSnapshot(n, SCALE);
  const table = buildServiceTable(snap);
  const flows = 400_000;
  const nat = new ServiceNat(table, { masqueradeIP: NODE, seed: 1, conntrack: { capacity: 1 << 20, seed: 1 } });
  const info = new PacketInfo();
  const syn = buildPacket({ ipv4: { src: ip('10.244.1.7'), dst: ip('10.96.0.1') }, tcp: { srcPort: 1, dstPort: 80, seq: 1, ack: 0, flags: TcpFlags.SYN }, payload: new Uint8Array(0) });
  const work = new Uint8Array(syn.length);
  const base = ip('10.96.0.1');
  const client = ip('10.1.0.0');
  // Flow i: client 10.1.x.y:(1024 + i % 60000) -> service i % n.
  const shape = (i: number, flags: number) => {
    work.set(syn, 0);
    set32(work, 12, client + ((i / 60000) | 0));
    set16(work, 20, 1024 + (i % 60000));
    set32(work, 16, base + (i % n));
    work[33] = flags;
    decodeFrame(info, work, 0, work.length, LinkType.RAW_IP);
  };
  const loop = (count: number, flags: number, withNat: boolean): number => {
    const t0 = process.hrtime.bigint();
    let nated = 0;
    for (let i = 0; i < count; i++) {
      shape(i, flags);
      if (withNat && nat.process(info, work, EntryPoint.POD, false, 1) === Verdict.NATED) nated++;
    }
    const ns = Number(process.hrtime.bigint() - t0) / count;
    if (withNat && nated !== count) throw new Error(`only ${nated} of ${count} packets were NATed`);
    return ns;
  };
  loop(50_000, TcpFlags.ACK, false); // warm up the baseline
  const baseline = loop(flows, TcpFlags.ACK, false);
  const first = loop(flows, TcpFlags.SYN, true) - baseline;
  // The same flows again: each packet finds its conntrack entry.
  const established = loop(flows, TcpFlags.ACK, true) - baseline;
  // Replies: endpoint -> client, found by the reply tuple.
  const ct = nat.conntrack;
  const entries = Math.min(flows, ct.size);
  const rs = new Uint32Array(entries);
  const rd = new Uint32Array(entries);
  const rp = new Uint32Array(entries);
  for (let e = 0; e < entries; e++) {
    const r = ct.tuple(e * 2 + 1);
    rs[e] = r.src;
    rd[e] = r.dst;
    rp[e] = (r.srcPort << 16) | r.dstPort;
  }
  const t0 = process.hrtime.bigint();
  for (let e = 0; e < entries; e++) {
    work.set(syn, 0);
    set32(work, 12, rs[e]!);
    set32(work, 16, rd[e]!);
    set32(work, 20, rp[e]!);
    work[33] = TcpFlags.ACK;
    decodeFrame(info, work, 0, work.length, LinkType.RAW_IP);
    nat.process(info, work, EntryPoint.POD, false, 1);
  }
  const reply = Number(process.hrtime.bigint() - t0) / entries - baseline;
  // Hot: 1,000 established flows over and over (packets of a flow come in bursts).
  const hotLoop = (withNat: boolean): number => {
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < flows; i++) {
      shape(i % 1000, TcpFlags.ACK);
      if (withNat) nat.process(info, work, EntryPoint.POD, false, 1);
    }
    return Number(process.hrtime.bigint() - t1) / flows;
  };
  const hot = hotLoop(true) - hotLoop(false);
  const row = { section: 'NAT engine per packet', row: `${n} services`, x: n, mode: 'tapir', better: 'lower', unit: 'ns' } as const;
  out.push({ ...row, metric: 'first packet' }, first);
  out.push({ ...row, metric: 'established' }, established);
  out.push({ ...row, metric: 'reply' }, reply);
  out.push({ ...row, metric: 'established, cache-hot' }, hot);
  console.log(`${String(n).padStart(6)} services: first packet ${first.toFixed(0).padStart(4)} ns   established ${established.toFixed(0).padStart(4)} ns   reply ${reply.toFixed(0).padStart(4)} ns   established, cache-hot ${hot.toFixed(0).padStart(4)} ns   (copy + decode baseline ${baseline.toFixed(0)} ns, subtracted)`);
}

/** Cluster mode's sync while Services and slices stream in, 20 objects per sync. */
function streamRow(n: number): void {
  const objects: K8sObject[] = [];
  const problems: string[] = [];
  const origin = { source: 'api', server: 'https://bench' } as const;
  for (let i = 0; i < n; i++) {
    const vip = `10.${96 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    objects.push(validateDocument({ apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'default' }, spec: { clusterIP: vip, clusterIPs: [vip], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 80, targetPort: 8080 }] } }, origin, problems)!);
    objects.push(validateDocument({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `s${i}-a`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${i}` } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.244.2.2'], conditions: { ready: true }, nodeName: 'node-2' }, { addresses: ['10.244.2.3'], conditions: { ready: true }, nodeName: 'node-2' }],
    }, origin, problems)!);
  }
  if (problems.length > 0) throw new Error(problems.join('; '));
  const state = new ServiceProxyState({ name: 'node-1', nodePortAddresses: ['192.168.1.10'] }, 'api');
  state.sync();
  const BATCH = 20;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < objects.length; i += BATCH) {
    state.apply(objects.slice(i, i + BATCH).map((current) => ({ previous: undefined, current })));
    state.sync();
  }
  const perSync = Number(process.hrtime.bigint() - t0) / 1e6 / Math.ceil(objects.length / BATCH);
  out.push({ section: 'cluster mode, Services streaming in', row: `${n} services`, x: n, mode: 'tapir', better: 'lower', metric: 'sync per 20 objects', unit: 'ms' }, perSync);
  console.log(`cluster mode, ${String(n).padStart(6)} Services and slices streaming in, 20 objects a sync: ${perSync.toFixed(2)} ms per sync`);
}

console.log(`node ${process.version}, ${SCALE.maglevEvery ? `1 in ${SCALE.maglevEvery} services Maglev, ` : ''}1 in ${SCALE.nodePortEvery} with a node port, 1 in ${SCALE.affinityEvery} with ClientIP affinity, 3 endpoints each`);
for (const n of [1000, 10000]) buildRow(n);
const allMaglev = scaleSnapshot(10000, { ...SCALE, maglevEvery: 1 });
console.log(`build  10000 services, all Maglev: ${ms(() => buildServiceTable(allMaglev), 5).toFixed(1)} ms`);
for (const n of [1000, 10000]) packetRow(n);
for (const n of [1000, 10000]) streamRow(n);
if (JSON_FILE !== undefined) out.write(JSON_FILE);

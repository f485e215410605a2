// The cost of a /metrics scrape: AgentMetrics.text() over a datapath with 8, 64 and
// 256 pod ports (FakeDevice) and a service NAT with a conntrack table, every port with
// some drop reasons counted. The data plane's metrics are read from its counters in
// collect callbacks at scrape time; this says what a scrape costs the agent's single
// thread, and the longest step of it during which no batch can run (text() renders one
// metric family at a time, with a turn of the event loop between them).
// Baseline, same run: prom-client rendering the same number of series that were set
// directly (no collect callback, no datapath walk).
// Run: node bench/metrics-scrape.ts   (median of 50 scrapes)
import { Counter, Registry } from 'prom-client';
import { AgentMetrics } from '../src/agent/metrics.ts';
import { ProxyHealth } from '../src/control/proxy-health.ts';
import { DatapathDrop } from '../src/datapath/counters.ts';
import { Datapath } from '../src/datapath/datapath.ts';
import { ForwardingTable } from '../src/datapath/forwarding.ts';
import { PortKind } from '../src/datapath/port.ts';
import { FakeDevice } from '../src/device/fake.ts';
import { snapshot } from '../src/model/synthetic.ts';
import { ServiceNat } from '../src/services/nat.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { Cidr, ipv4, VIRTIO_NET_HEADER_LENGTH } from '../src/wire/index.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

async function msPerRun(f: () => Promise<unknown>, runs: number): Promise<number> {
  for (let i = 0; i < 5; i++) await f();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await f();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return median(times);
}

for (const pods of [8, 64, 256]) {
  const table = new ForwardingTable({ podCIDR: new Cidr(ipv4('10.244.1.0'), 24), clusterCIDR: new Cidr(ipv4('10.244.0.0'), 16), underlayIP: ipv4('172.30.0.11'), vni: 4242, mtu: 1450, pods: [], remotes: [] });
  const dp = new Datapath(table, null);
  const devices: FakeDevice[] = [];
  for (let i = 0; i < pods; i++) {
    const d = new FakeDevice(`pod-${i}`, { queueFrames: 4 });
    devices.push(d);
    const index = dp.addPort(PortKind.POD, `tp${i.toString(16).padStart(8, '0')}`, d, VIRTIO_NET_HEADER_LENGTH);
    const c = dp.ports[index]!.counters;
    c.rxFrames = 1e6 + i; c.rxBytes = 1e9; c.txFrames = 1e6; c.txBytes = 1e9;
    c.drops[DatapathDrop.SPOOFED_MAC] = 3; c.drops[DatapathDrop.NO_ROUTE] = 7;
    c.countBatch(17);
  }
  dp.setServiceNat(new ServiceNat(buildServiceTable(snapshot([])), { masqueradeIP: ipv4('172.30.0.11'), hairpinIP: ipv4('10.244.1.1'), conntrack: { capacity: 65536 } }));
  const metrics = new AgentMetrics({
    datapath: () => dp, pendingChanges: () => ({ services: 0, endpoints: 0 }), serviceSnapshot: () => null,
    health: new ProxyHealth(60_000), configz: () => ({}),
  });
  const text = await metrics.text();
  const series = text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length;

  // Baseline: as many series, set once, rendered by prom-client alone.
  const baseline = new Registry();
  const plain = new Counter({ name: 'baseline_total', help: 'baseline', labelNames: ['port', 'reason'], registers: [baseline] });
  for (let i = 0; i < series; i++) plain.inc({ port: `tp${i >> 4}`, reason: `r${i & 15}` }, i);
  const baseText = await baseline.metrics();

  const scrape = await msPerRun(() => metrics.text(), 50);
  // The longest step of each scrape; the median over scrapes (a GC pause lands in one).
  const stalls: number[] = [];
  for (let i = 0; i < 50; i++) {
    const stall = { ms: 0 };
    await metrics.text(stall);
    stalls.push(stall.ms);
  }
  const stall = { ms: median(stalls) };
  const base = await msPerRun(() => baseline.metrics(), 50);
  console.log(`${String(pods).padStart(3)} pod ports: ${series} series, ${(text.length / 1024).toFixed(1)} KiB; scrape ${scrape.toFixed(2)} ms, longest step without a turn of the event loop ${stall.ms.toFixed(2)} ms; baseline (${baseText.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} static series, rendered in one go) ${base.toFixed(2)} ms; ratio ${(scrape / base).toFixed(2)}`);
  dp.close();
  for (const d of devices) d.close();
}

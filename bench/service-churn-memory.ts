// Memory of the agent's services side across cycles of programming 25,000 Services
// and deleting them all (issue 8: an agent's RSS was 419 MB with 25,000 services and
// 475 MB after they were deleted). It runs, in this process, exactly what the agent
// runs for services minus the kernel steering: a manifest directory watched by
// ServiceController, each snapshot compiled into a ServiceTable and swapped into
// ServiceNat (whose conntrack is allocated as the agent's is). After each step it
// collects garbage (gc() exposed at run time) and prints RSS, V8 heap used and heap committed, and
// off-heap buffers. A leak grows from cycle to cycle; heap V8 keeps without using
// it shows as committed, not used, and does not grow.
//   node bench/service-churn-memory.ts [--services 25000] [--cycles 4] [--files one|per-object] [--same-names] [--idle 60] [--collect regular|trim]
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ServiceController } from '../src/control/service-controller.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import type { ServiceSnapshot } from '../src/model/service-snapshot.ts';
import { ServiceNat } from '../src/services/nat.ts';
import { buildServiceTable } from '../src/tables/service-table.ts';
import { ipv4 } from '../src/wire/address.ts';
import { freeClusterIPs, writeScaleManifest } from './lib/service-scale.ts';

const { values } = parseArgs({ options: {
  services: { type: 'string', default: '25000' },
  cycles: { type: 'string', default: '4' },
  files: { type: 'string', default: 'per-object' },
  conntrack: { type: 'string', default: '262144' },
  // Each cycle's Services get new names (as in a cluster where they come and go), so
  // anything kept per name ever seen grows with the cycles.
  'same-names': { type: 'boolean', default: false },
  // After the last deletion, seconds of idling, measured every 10 s.
  idle: { type: 'string', default: '60' },
  // regular: full collections (what V8 keeps committed shows); trim: the memory-reducing
  // collection the agent asks for once syncs settle (src/agent/heap-trim.ts), which
  // gives committed heap back.
  collect: { type: 'string', default: 'regular' },
} });
const SERVICES = Number(values.services);
const CYCLES = Number(values.cycles);
const PER_OBJECT = values.files === 'per-object';

function collect(): void {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (options?: object) => void;
  if (values.collect === 'trim') gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  else for (let i = 0; i < 3; i++) gc();
}

function mib(n: number): string {
  return (n / 1048576).toFixed(0).padStart(5);
}

/** Memory the process freed with MADV_FREE (V8 does, for heap pages it gives up): counted in RSS until the kernel needs it back. */
function lazyFreeBytes(): number {
  try {
    const m = /^LazyFree:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m === null ? NaN : Number(m[1]) * 1024;
  } catch {
    return NaN;
  }
}

function row(step: string, cycle: number, ports: number, ms: number): void {
  collect();
  const m = process.memoryUsage();
  console.log(`| ${cycle} | ${step.padEnd(22)} | ${String(ports).padStart(6)} | ${mib(m.rss)} | ${mib(lazyFreeBytes())} | ${mib(m.heapUsed)} | ${mib(m.heapTotal)} | ${mib(m.external)} | ${mib(m.arrayBuffers)} | ${ms.toFixed(0).padStart(6)} |`);
}

/** The manifests as the lab writes them (one object per file) or as one file. */
function writeManifests(dir: string, ips: string[], cycle: number): void {
  const all = join(dir, '..', 'all.yaml');
  writeScaleManifest(all, values['same-names'] ? 'churn' : `churn-c${cycle}`, ips, [{ ip: '10.244.1.2', node: 'node-1' }, { ip: '10.244.2.2', node: 'node-2' }]);
  if (!PER_OBJECT) {
    renameSync(all, join(dir, 'churn.yaml'));
    return;
  }
  // Split as `tapir lab apply` does: one file per object, written whole.
  readFileSync(all, 'utf8').split(/^---\n/m).forEach((doc, i) => writeFileSync(join(dir, `churn-${String(i).padStart(6, '0')}.yaml`), doc));
  unlinkSync(all);
}

function removeManifests(dir: string): void {
  for (const f of readdirSync(dir)) if (f.startsWith('churn')) unlinkSync(join(dir, f));
}

async function main(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'tapir-churn-'));
  const dir = join(root, 'manifests');
  mkdirSync(dir);
  let nat: ServiceNat | null = null;
  let snapshot: ServiceSnapshot | null = null;
  const controller = new ServiceController({
    source: new ManifestDir({ dir }),
    node: { name: 'node-1', nodePortAddresses: ['172.30.0.11'] },
    onSnapshot: (s) => {
      snapshot = s;
      const table = buildServiceTable(s);
      if (nat === null) nat = new ServiceNat(table, { masqueradeIP: ipv4('172.30.0.11'), hairpinIP: ipv4('10.244.1.1'), conntrack: { capacity: Number(values.conntrack) } });
      else nat.setTable(table);
    },
    onError: (err) => console.error(`services: ${err.message.split('\n')[0]}`),
  });
  const ips = freeClusterIPs(SERVICES, new Set());
  const until = async (ports: number): Promise<number> => {
    const t0 = performance.now();
    for (;;) {
      await controller.flush();
      if ((snapshot as ServiceSnapshot | null)?.ports.length === ports) return performance.now() - t0;
      if (performance.now() - t0 > 600_000) throw new Error(`no snapshot with ${ports} ports within 600 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  try {
    await controller.start();
    console.log(`${SERVICES} ClusterIP Services with a 2-endpoint EndpointSlice each, ${values['same-names'] ? 'the same names' : 'new names'} each cycle, ${PER_OBJECT ? 'one manifest file per object (as tapir lab apply writes them)' : 'in one manifest file'}; conntrack ${values.conntrack} entries; ${values.collect === 'trim' ? 'memory-reducing collection' : 'three full collections'} before each row; MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '(unset)'}`);
    console.log('| cycle | step | service ports | RSS MiB | of it lazily freed MiB | heap used MiB | heap committed MiB | external MiB | ArrayBuffers MiB | sync ms |');
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    row('started, no services', 0, 0, 0);
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      writeManifests(dir, ips, cycle);
      row(`${SERVICES} programmed`, cycle, SERVICES, await until(SERVICES));
      removeManifests(dir);
      row('all deleted', cycle, 0, await until(0));
    }
    // Idle: V8's memory reducer gives committed heap back once it sees no allocation.
    const idle = Number(values.idle);
    for (let s = 10; s <= idle; s += 10) {
      await new Promise((r) => setTimeout(r, 10_000));
      row(`idle ${s} s`, CYCLES, 0, 0);
    }
  } finally {
    controller.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();

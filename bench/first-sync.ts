// First sync at scale: a ServiceController over a manifest directory of N Services and
// N*E endpoints (bench/lib/dns-data.ts writeManifests, 1000 Services to a file), from
// the moment the files exist to the first view handed to a consumer, and the service
// table built from it; then one EndpointSlice edited in place and the time until the
// next view and table. Phases are timed apart (read+parse, compile, table build).
//
//   node bench/first-sync.ts [--services 10000] [--endpoints 10] [--runs 3] [--edits 5]
//
// Where the time went, 10k Services / 100k endpoints in 11 files of 1000 Services,
// 2-core VM shared with other jobs (load average 4-7 throughout, so ranges, not points;
// before = c8716bd, after = this branch, alternated in the same minutes):
//
//   phase                                   before          after
//   read + YAML parse + validate            15-30 s         1.4-2.4 s (js-yaml, core schema, for
//     (cpu-prof: the yaml library's lexer,                  what it reads as the yaml library does;
//      parser and composer were ~80% of                     the rest and all errors still go to it)
//      all CPU; parseIpv4 split+RegExp ~2%)
//   record changes                          40-60 ms        25-160 ms
//   compile: allocate, views, ports         1.7-2.6 s       0.35-0.6 s (parseIpv4 in one pass over the
//                                                            characters was most of the difference)
//   service table, whole build              0.1-0.4 s       0.03-0.1 s (same code; noise)
//   first view, end to end                  7.5-38 s        1.7-4.8 s
//   one endpoint edited in a 1000-Service
//     file, to the next table                1.2-4.8 s       22-50 ms
//       of it: re-parse of the file          ~1/10 of the    one document (the others keep their
//                                            first parse     objects: ManifestMemo)
//       #versioned JSON.stringify of 2000    ~100 ms         identity (kept objects are the same)
//       #publish: merge of all 20k objects   ~45 ms          the re-read file's objects only
//       compile: sort of 10k names x2        ~10 ms          order kept until a name comes or goes
//       service table                        20-175 ms       0.5-2 ms (updateServiceTable; most of
//                                                            it is copying the 2 MB Maglev array)
//
// At a quieter moment (load average 1.1-1.3): first view 10.2 s before, 1.6 s after
// (read+parse+validate 9.7 s -> 1.2-1.5 s, compile 0.62 -> 0.3 s); one edit to the next
// table 1.03-1.05 s before, 19-36 ms after (table 16-20 ms -> 0.4-1.8 ms).
//
// What is left of the first view (about 2 s here): js-yaml ~1 s, validation ~0.4 s,
// compile ~0.4 s, GC. Under 1 s needs either manifests as JSON (JSON.parse is another
// 5-10x), parsing files in worker threads (each file is independent; 2 cores here), or
// a parser for the YAML subset manifests use; and the compile's per-service objects
// (serviceView, compileService, allocation) built lazily or in one pass.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { ServiceController } from '../src/control/service-controller.ts';
import { buildServiceTable, updateServiceTable, type ServiceTable } from '../src/tables/service-table.ts';
import { writeManifests } from './lib/dns-data.ts';
import { loadavg } from 'node:os';
import { ServiceProxyState } from '../src/control/service-proxy-state.ts';
import { parseCidr } from '../src/wire/address.ts';
import { DEFAULT_NODE_PORT_RANGE, DEFAULT_SERVICE_CIDR } from '../src/model/cluster-defaults.ts';

const { values } = parseArgs({ options: {
  services: { type: 'string', default: '10000' },
  endpoints: { type: 'string', default: '10' },
  runs: { type: 'string', default: '3' },
  edits: { type: 'string', default: '5' },
} });
const SERVICES = Number(values.services);
const ENDPOINTS = Number(values.endpoints);
const RUNS = Number(values.runs);

const EDITS = Number(values.edits);

async function once(dir: string): Promise<{ first: number; table: number; changes: number[]; changeTables: number[]; incremental: number }> {
  let views = 0;
  let tableMs = 0;
  let incremental = 0;
  let wake: (() => void) | null = null;
  const t0 = performance.now();
  const controller = new ServiceController({
    source: new ManifestDir({ dir, debounceMs: 5 }),
    node: { name: 'node-1', nodePortAddresses: ['172.30.0.11'] },
    minSyncIntervalMs: 1,
    onError: (err) => console.error(`services: ${err.message.split('\n')[0]}`),
  });
  let current: ServiceTable | undefined;
  controller.subscribe((view) => {
    const t = performance.now();
    // As the agent does (#programServices): the first table whole, then updates.
    current = current === undefined ? buildServiceTable(view.snapshot) : updateServiceTable(current, view.snapshot);
    tableMs = performance.now() - t;
    if (current.incremental) incremental++;
    views++;
    wake?.();
  });
  await controller.start();
  const first = performance.now() - t0;
  const table = tableMs;
  // One endpoint of one Service moves per edit (the file rewritten whole, as an editor
  // does), each edit in another file, each after the previous one was programmed.
  const changes: number[] = [];
  const changeTables: number[] = [];
  for (let e = 0; e < EDITS; e++) {
    const file = join(dir, `services-${String(e % Math.ceil(SERVICES / 1000)).padStart(3, '0')}.yaml`);
    const text = readFileSync(file, 'utf8');
    const seen = views;
    const done = new Promise<void>((resolve) => { wake = () => { if (views > seen) resolve(); }; });
    const t1 = performance.now();
    writeFileSync(file, text.replace(/addresses: \[([0-9.]+)\]/, `addresses: [10.255.255.${e + 1}]`));
    await done;
    changes.push(performance.now() - t1);
    changeTables.push(tableMs);
  }
  controller.stop();
  return { first, table, changes, changeTables, incremental };
}

/** The same path in phases, each timed on its own: read and parse, compile, table. */
async function phases(dir: string): Promise<string> {
  const t0 = performance.now();
  const source = new ManifestDir({ dir });
  await source.start();
  source.stop();
  const objects = source.list();
  const t1 = performance.now();
  const state = new ServiceProxyState({ name: 'node-1', nodePortAddresses: ['172.30.0.11'] }, { serviceCIDR: parseCidr(DEFAULT_SERVICE_CIDR)!, nodePortRange: DEFAULT_NODE_PORT_RANGE });
  state.apply(objects.map((current) => ({ previous: undefined, current })));
  const t2 = performance.now();
  const { view } = state.sync();
  const t3 = performance.now();
  buildServiceTable(view.snapshot);
  const t4 = performance.now();
  return `read+parse+validate ${(t1 - t0).toFixed(0)} ms, record ${(t2 - t1).toFixed(0)} ms, compile (allocate, views, ports) ${(t3 - t2).toFixed(0)} ms, table ${(t4 - t3).toFixed(0)} ms`;
}

const root = mkdtempSync(join(tmpdir(), 'tapir-first-sync-'));
try {
  console.log(`${SERVICES} Services, ${ENDPOINTS} endpoints each; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const rows = [];
  for (let r = 0; r < RUNS; r++) {
    const dir = join(root, `m${r}`);
    writeManifests(dir, { services: SERVICES, endpointsPerService: ENDPOINTS, externalNames: 0, ttl: 5 });
    console.log(`run ${r + 1} phases: ${await phases(dir)}`);
    const res = await once(dir);
    rows.push(res);
    const f = (xs: number[], d: number) => xs.map((x) => x.toFixed(d)).join(' ');
    console.log(`run ${r + 1}: first view ${res.first.toFixed(0)} ms (of it table build ${res.table.toFixed(0)} ms); one endpoint edited, ${EDITS} times: next view ${f(res.changes, 0)} ms (table ${f(res.changeTables, 2)} ms, ${res.incremental} incremental)`);
  }
  console.log(`load average at end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  rmSync(root, { recursive: true, force: true });
}

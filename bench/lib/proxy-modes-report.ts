// The tables bench/proxy-modes.ts prints: one per section, a column per proxy mode, the
// tapir/iptables and tapir/nftables ratios, and the issue's targets next to them
// (throughput and connection rate >= 0.8x of iptables mode; 10,000 services programmed
// in < 1 s; first-packet latency flat from 1,000 to 10,000 services).
import { median, ratio } from './tools.ts';

export interface Results {
  /** "mode|path|metric" (traffic) or "mode|services|figure" (scale) -> one value per run. */
  values: Map<string, number[]>;
  /** Same keys: what a value needs said (which endpoint a flow reached, how apply ended). */
  notes: Map<string, string[]>;
  /** Same keys: why a figure could not be measured (the cell prints "n/a (why)"). */
  errors: Map<string, string>;
  problems: string[];
}

export interface ReportOptions {
  /** Kernel proxy modes, `tapir`, and Tapir variants (`tapir-busy-poll`): each tapir* one is compared with each kernel one. */
  modes: string[];
  sizes: number[];
  seconds: number;
  runs: number;
  paths: string[];
  /** The IPv6 section's rows (TCP throughput and connections/s only). */
  paths6?: string[];
  sections: Set<string>;
  /** The CPUs everything was pinned to (--cpus), if it was. */
  pinned?: string;
}

const TRAFFIC = {
  tcp: { name: 'TCP Gbit/s (1 stream)', unit: (v: number) => `${v.toFixed(2)} Gbit/s`, floor: 0.8 },
  udp: { name: 'UDP 64 B pkt/s received', unit: (v: number) => `${(v / 1000).toFixed(0)} kpps`, floor: 0 },
  conn: { name: 'TCP connections/s', unit: (v: number) => `${(v / 1000).toFixed(2)}k/s`, floor: 0.8 },
  p50: { name: 'HTTP request latency p50', unit: (v: number) => `${v.toFixed(0)} µs`, floor: 0 },
  p99: { name: 'HTTP request latency p99', unit: (v: number) => `${v.toFixed(0)} µs`, floor: 0 },
} as const;

const seconds = (v: number): string => `${(v / 1000).toFixed(2)} s`;
const SCALE = {
  program: { name: 'program all: apply start -> last service answers', unit: seconds, target: '< 1 s at 10,000' },
  'program-written': { name: '  of it after the lab wrote all objects', unit: seconds, target: '< 1 s at 10,000' },
  'program-apply': { name: '  `tapir lab apply` ran', unit: seconds, target: '' },
  'program-agents-cpu': { name: '  CPU s of the tapir agents meanwhile', unit: (v: number) => v.toFixed(1), target: '' },
  'program-daemons-cpu': { name: '  CPU s of the node daemons (+ iptables-restore/nft)', unit: (v: number) => v.toFixed(1), target: '' },
  change: { name: 'one endpoint change: apply start -> new endpoint answers', unit: seconds, target: '' },
  'change-written': { name: '  of it after the lab wrote the slice', unit: seconds, target: '' },
  first: { name: 'first-packet latency (connect to an unused service), p50', unit: (v: number) => `${v.toFixed(0)} µs`, target: '' },
  'first-p90': { name: '  p90 of them', unit: (v: number) => `${v.toFixed(0)} µs`, target: '' },
  'first-baseline': { name: '  connect straight to the endpoint pod meanwhile, p50', unit: (v: number) => `${v.toFixed(0)} µs`, target: '' },
} as const;

/** A row that failed: its reason, cut to keep the table readable (the problems below have it whole). */
function failed(r: Results, key: string): string | undefined {
  const why = r.errors.get(key);
  if (why === undefined) return undefined;
  const line = why.split('\n').map((l) => l.trim()).filter((l) => l !== '').pop() ?? why;
  return `n/a (${line.length > 100 ? `${line.slice(0, 97)}...` : line})`;
}

function cell(r: Results, key: string, unit: (v: number) => string): string {
  const v = median(r.values.get(key) ?? []);
  if (!Number.isFinite(v)) {
    const why = failed(r, key);
    if (why !== undefined) return why;
  }
  const notes = [...new Set(r.notes.get(key) ?? [])].filter((n) => n !== '');
  return `${Number.isFinite(v) ? unit(v) : '-'}${notes.length > 0 ? ` (${notes.join(', ')})` : ''}`;
}

function value(r: Results, key: string): number {
  return median(r.values.get(key) ?? []);
}

/** The Tapir modes (tapir, tapir-busy-poll) and the kernel ones they are compared with. */
function split(modes: string[]): { subjects: string[]; kernel: string[] } {
  return { subjects: modes.filter((m) => m.startsWith('tapir')), kernel: modes.filter((m) => !m.startsWith('tapir')) };
}

function header(modes: string[], first: string[], extra: string[]): string {
  const { subjects, kernel } = split(modes);
  const ratios = subjects.flatMap((s) => kernel.map((m) => `${s}/${m}`));
  const cols = [...first, ...modes, ...ratios, ...extra];
  return `| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|`;
}

/** The endpoints one-flow figures reached, when they differ between two modes (the figures then compare different paths). */
function differentEndpoints(r: Results, a: string, b: string): boolean {
  const notes = (k: string): string => [...new Set(r.notes.get(k) ?? [])].sort().join(',');
  return notes(a) !== '' && notes(b) !== '' && notes(a) !== notes(b);
}

function ratios(r: Results, modes: string[], keyOf: (m: string) => string): string[] {
  const { subjects, kernel } = split(modes);
  return subjects.flatMap((s) => kernel.map((m) => `${ratio(value(r, keyOf(s)), value(r, keyOf(m)))}${differentEndpoints(r, keyOf(s), keyOf(m)) ? ' (other endpoint)' : ''}`));
}

/** Each Tapir mode's agents CPU for a figure, as a column. */
function cpuCells(r: Results, modes: string[], keyOf: (m: string) => string): string[] {
  return split(modes).subjects.map((s) => {
    const cpu = value(r, `${keyOf(s)}|cpu`);
    return Number.isFinite(cpu) ? `${Math.round(cpu * 100)}%` : '-';
  });
}

export function printTables(r: Results, o: ReportOptions): void {
  const hasTapir = o.modes.includes('tapir');
  const cpuColumns = split(o.modes).subjects.map((m) => `${m} agents CPU`);
  if (o.sections.has('traffic')) {
    console.log(`\n## Pod -> ClusterIP -> pod (client web-1a), median of ${o.runs} run(s) of ${o.seconds} s; ${o.pinned === undefined ? 'the cores shared by' : `everything on CPU ${o.pinned}:`} load generators, servers and data plane`);
    console.log('(a one-flow figure through 2 endpoints names the node of the endpoint it reached, and a ratio between figures that reached different nodes says "other endpoint"; for latencies a ratio above 1x means tapir is slower)');
    console.log(header(o.modes, ['service (endpoints)', 'metric'], ['target', ...cpuColumns]));
    for (const path of o.paths) {
      for (const [metric, m] of Object.entries(TRAFFIC)) {
        const key = (mode: string): string => `${mode}|${path}|${metric}`;
        const vsIptables = value(r, key('tapir')) / value(r, key('iptables'));
        const caveat = differentEndpoints(r, key('tapir'), key('iptables')) ? ' (other endpoint)' : '';
        const target = m.floor === 0 ? '' : `>= ${m.floor}x iptables: ${!Number.isFinite(vsIptables) ? 'not measured' : vsIptables >= m.floor ? 'met' : 'missed'}${caveat}`;
        const row = [path, m.name, ...o.modes.map((mode) => cell(r, key(mode), m.unit)), ...ratios(r, o.modes, key), target, ...cpuCells(r, o.modes, key)];
        console.log(`| ${row.join(' | ')} |`);
      }
    }
  }
  if (o.sections.has('ipv6') && (o.paths6 ?? []).length > 0) {
    console.log(`\n## Pod -> IPv6 ClusterIP -> pod (client web-1a, a dual-stack lab, IPv6-only Services), median of ${o.runs} run(s) of ${o.seconds} s`);
    console.log('(kernel modes: kube-proxy\'s IPv6 proxier, ip6tables / table ip6; tapir: its NAT66; "n/a (why)": the row could not be measured)');
    console.log(header(o.modes, ['service (endpoints)', 'metric'], cpuColumns));
    for (const path of o.paths6 ?? []) {
      for (const metric of ['tcp', 'conn'] as const) {
        const m = TRAFFIC[metric];
        const key = (mode: string): string => `${mode}|${path}|${metric}`;
        const row = [path, m.name, ...o.modes.map((mode) => cell(r, key(mode), m.unit)), ...ratios(r, o.modes, key), ...cpuCells(r, o.modes, key)];
        console.log(`| ${row.join(' | ')} |`);
      }
    }
  }
  if (o.sections.has('scale') && o.sizes.length > 0) {
    console.log(`\n## Services at scale: selectorless Services with hand-written EndpointSlices (2 endpoints, web-2a and web-2b on node-2), client web-1a; median of ${o.runs} run(s)`);
    console.log('(times: a ratio below 1x means tapir is faster; "-" = not reached within the step\'s timeout, see the problems below)');
    console.log(header(o.modes, ['services', 'figure'], ['target']));
    for (const n of o.sizes) {
      for (const [figure, m] of Object.entries(SCALE)) {
        if (figure.endsWith('agents-cpu') && !hasTapir) continue;
        const key = (mode: string): string => `${mode}|${n}|${figure}`;
        let target = '';
        if (m.target !== '' && n === 10000) {
          const t = value(r, key('tapir'));
          target = `< 1 s: ${!Number.isFinite(t) ? 'not reached' : t < 1000 ? 'met' : 'missed'}`;
        }
        const row = [String(n), m.name, ...o.modes.map((mode) => (figure.endsWith('agents-cpu') && !mode.startsWith('tapir') ? '' : cell(r, key(mode), m.unit))), ...ratios(r, o.modes, key), target];
        console.log(`| ${row.join(' | ')} |`);
      }
    }
    if (o.sizes.length > 1) {
      const lo = o.sizes[0]!, hi = o.sizes[o.sizes.length - 1]!;
      const growth = (mode: string): number => value(r, `${mode}|${hi}|first`) / value(r, `${mode}|${lo}|first`);
      const t = growth('tapir');
      const row = [`${hi} vs ${lo}`, 'first-packet latency growth', ...o.modes.map((mode) => (Number.isFinite(growth(mode)) ? `${growth(mode).toFixed(2)}x` : '-')), ...Array<string>(ratios(r, o.modes, () => '').length).fill(''), hasTapir ? `flat (about 1x): ${!Number.isFinite(t) ? 'not measured' : t < 1.25 ? 'met' : 'missed'}` : ''];
      console.log(`| ${row.join(' | ')} |`);
    }
  }
  if (r.problems.length > 0) {
    console.log('\nProblems:');
    for (const p of r.problems) console.log(`- ${p}`);
  }
}

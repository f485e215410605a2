// Conntrack on its own: ns per lookup of an established flow (original and reply
// tuple) and per insert + remove of a flow, IPv4 and IPv6, 400,000 flows (cache-cold,
// as a busy node's table is) and 1,000 (cache-hot). With `--against REV` the IPv4
// figures of the Conntrack at git revision REV are measured in the same invocation,
// interleaved with this tree's, and printed with the ratio (this tree / REV): the
// check that the IPv6 tables left the IPv4 path as fast as it was.
// Run: node bench/conntrack-table.ts [--against REV] [--rounds 7]
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Conntrack } from '../src/tables/conntrack.ts';
import type * as Loops from './lib/conntrack-loops.ts';

const loops = async (tag: string): Promise<typeof Loops> => await import(`./lib/conntrack-loops.ts?${tag}`) as typeof Loops;
const mine = await loops('this-tree');
const theirs = await loops('baseline');
type Figures = Loops.Figures;
type Conntrack4 = Loops.Conntrack4;
type Make4 = Loops.Make4;
const median = mine.median;


const { values } = parseArgs({ options: { against: { type: 'string' }, rounds: { type: 'string', default: '7' } } });
const ROUNDS = Number(values.rounds);
if (!(ROUNDS >= 1 && ROUNDS <= 50)) {
  console.error('usage: bench/conntrack-table.ts [--against REV] [--rounds 1..50]');
  process.exit(2);
}

async function baseline(rev: string): Promise<{ make: Make4; cleanup: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-ct-base-'));
  const tar = execFileSync('git', ['archive', rev, 'src'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  const mod = await import(join(dir, 'src/tables/conntrack.ts')) as { Conntrack: new (o: { capacity: number }) => Conntrack4 };
  return { make: (capacity) => new mod.Conntrack({ capacity }), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function row(name: string, xs: Figures[], base?: Figures[]): void {
  const m = (f: Figures[], k: keyof Figures) => median(f.map((x) => x[k]));
  const parts = (['lookup', 'reply', 'insertRemove'] as const).map((k) => {
    const v = m(xs, k);
    const r = base === undefined ? '' : ` (x${(v / m(base, k)).toFixed(3)})`;
    return `${k === 'insertRemove' ? 'insert+remove' : k === 'reply' ? 'lookup reply' : 'lookup'} ${v.toFixed(1).padStart(6)} ns${r}`;
  });
  console.log(`${name.padEnd(28)} ${parts.join('   ')}`);
}

const base = values.against === undefined ? undefined : await baseline(values.against);
try {
  for (const flows of [400_000, 1_000]) {
    const here = mine.measure4((capacity) => new Conntrack({ capacity }), flows);
    const there = base === undefined ? undefined : theirs.measure4(base.make, flows);
    const six = mine.measure6(flows);
    const h: Figures[] = [];
    const t: Figures[] = [];
    const s: Figures[] = [];
    // Interleaved rounds: drift in the machine's load falls on both sides alike.
    if (there !== undefined) there(); // a discarded round each: both JIT-warm before timing
    here();
    six();
    for (let r = 0; r < ROUNDS; r++) {
      if (there !== undefined) t.push(there());
      h.push(here());
      s.push(six());
    }
    console.log(`${flows} flows, median of ${ROUNDS} rounds:`);
    if (there !== undefined) row(`  IPv4 at ${values.against}`, t);
    row('  IPv4 (this tree)', h, there === undefined ? undefined : t);
    row('  IPv6 (this tree)', s, h);
  }
} finally {
  base?.cleanup();
}
if (mine.sink === 0.5 || theirs.sink === 0.5) console.log('unreachable');

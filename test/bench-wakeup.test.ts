// The parts of the benches that say where a short connection's time goes: the sleep
// and wakeup round trip (bench/c/wakelat.c), pinning a bench and what it starts to
// CPUs (pinToCpus), and counting a process's sleeps (voluntarySleeps). Figures are
// not judged here, only that each part measures what it says.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpus } from 'node:os';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildCTools, C_BUILD_DIR, voluntarySleeps } from '../bench/lib/tools.ts';

const TOOLS = fileURLToPath(new URL('../bench/lib/tools.ts', import.meta.url));

test('wakelat hands its token back and forth on one CPU and across two', () => {
  buildCTools(['wakelat']);
  const pairs: [number, number][] = cpus().length > 1 ? [[0, 0], [0, 1]] : [[0, 0]];
  for (const [a, b] of pairs) {
    const out = execFileSync(`${C_BUILD_DIR}/wakelat`, [String(a), String(b), '0.2'], { encoding: 'utf8', timeout: 10_000 });
    const m = /^round_trips (\d+) seconds ([\d.]+) p50_us ([\d.]+) p99_us ([\d.]+)$/m.exec(out);
    assert.ok(m, out);
    assert.ok(Number(m[1]) > 0, out);
    assert.ok(Number(m[3]) > 0 && Number(m[3]) <= Number(m[4]), out);
  }
});

test('wakelat refuses a CPU the machine lacks', () => {
  buildCTools(['wakelat']);
  assert.throws(() => execFileSync(`${C_BUILD_DIR}/wakelat`, ['0', String(cpus().length + 7), '0.1'], { stdio: 'pipe', timeout: 10_000 }), /sched_setaffinity/);
});

test('pinToCpus pins the process and what it starts afterwards', () => {
  // A child pins itself and then starts a grandchild that prints its own affinity.
  const script = `import { pinToCpus } from ${JSON.stringify(TOOLS)};
import { execFileSync } from 'node:child_process';
const took = pinToCpus('0');
const status = execFileSync('cat', ['/proc/self/status'], { encoding: 'utf8' });
console.log(took, /Cpus_allowed_list:\\s*(\\S+)/.exec(status)[1]);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 }).trim();
  assert.equal(out, '0 0');
});

test('voluntarySleeps counts a process going to sleep, and is 0 for one that is gone', async () => {
  const child = spawn('sh', ['-c', 'for i in 1 2 3 4 5; do sleep 0.02; done; read x'], { stdio: ['pipe', 'ignore', 'ignore'] });
  try {
    await new Promise((r) => setTimeout(r, 300));
    // The shell waited for five children and now waits on its stdin: each a sleep.
    assert.ok(voluntarySleeps(child.pid!) >= 5, String(voluntarySleeps(child.pid!)));
  } finally {
    child.stdin.end();
    await once(child, 'exit');
  }
  assert.equal(voluntarySleeps(child.pid!), 0);
});

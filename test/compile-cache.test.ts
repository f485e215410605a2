// Set-up's warm-up of Node's compile cache (scripts/warm-compile-cache.ts): every module
// of src/ and every entry point lands in the cache, so that a command started after it
// (here `tapir --help` and `tapir lab --help`, through bin/tapir) finds all it loads
// there and never loads Node's TypeScript stripper.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

function entries(dir: string): number {
  return readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).length;
}

test('the warm-up caches every module and entry point: commands started after it add nothing to the cache', () => {
  const cache = mkdtempSync(join(tmpdir(), 'tapir-cc-'));
  try {
    const env = { ...process.env, NODE_COMPILE_CACHE: cache };
    const warm = spawnSync(process.execPath, [join(ROOT, 'scripts/warm-compile-cache.ts')], { env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(warm.status, 0, warm.stderr);
    assert.equal(warm.stderr, '', 'no module failed to load and no entry point was left cold');
    const n = Number(/compile cache: (\d+) modules/.exec(warm.stdout)?.[1]);
    assert.ok(n > 200, warm.stdout);
    const before = entries(cache);
    execFileSync(join(ROOT, 'bin/tapir'), ['--help'], { env, encoding: 'utf8' });
    execFileSync(join(ROOT, 'bin/tapir'), ['lab', '--help'], { env, encoding: 'utf8' });
    assert.equal(entries(cache), before, 'everything the commands loaded was cached already');
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

// Fills Node's compile cache (bin/tapir's NODE_COMPILE_CACHE) with every module of src/,
// type-stripped and compiled, as set-up's last step: the first `tapir lab up` after it
// starts its agents warm. A cold start loads Node's TypeScript stripper (a WebAssembly
// module) into each process that meets a module the cache lacks: 23-32 MB more RSS per
// agent for as long as it runs, and 2.5 times the time to load the modules. Commands
// load most of their modules lazily (`import()` when called), so every file is loaded
// here, not only what the command table reaches. Entry points (a file that calls its
// main() at the top level) run when loaded, so each is started instead, the way that
// makes it stop at once: `tapir --help`, the CNI plugin's VERSION, and the lab's node
// daemon and pod workload with an option they refuse at their argument check. A process
// whose entry the cache lacks loads the stripper for that one file alone. Loading any
// other module runs nothing.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const RUNS_WHEN_LOADED = /^(?:await |void )?main\(/m;

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return modules(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

const ENTRY_POINTS: { file: string; args: string[]; env?: Record<string, string> }[] = [
  { file: 'src/cli/main.ts', args: ['--help'] },
  { file: 'src/cni/main.ts', args: [], env: { CNI_COMMAND: 'VERSION' } },
  { file: 'src/lab/node/node-daemon.ts', args: ['--warm-compile-cache'] },
  { file: 'src/workloads/main.ts', args: ['--warm-compile-cache'] },
];

let loaded = 0;
for (const file of modules(join(root, 'src'))) {
  if (RUNS_WHEN_LOADED.test(readFileSync(file, 'utf8'))) {
    const entry = ENTRY_POINTS.find((e) => join(root, e.file) === file);
    if (entry === undefined) {
      console.error(`warm-compile-cache: ${relative(root, file)} runs when loaded and is not in ENTRY_POINTS: left cold`);
      continue;
    }
    spawnSync(process.execPath, [file, ...entry.args], { env: { ...process.env, ...entry.env }, input: '{}', stdio: ['pipe', 'ignore', 'ignore'], timeout: 30_000 });
    loaded++;
    continue;
  }
  try {
    await import(pathToFileURL(file).href);
    loaded++;
  } catch (err) {
    console.error(`warm-compile-cache: ${relative(root, file)}: ${(err as Error).message}`);
  }
}
console.log(`compile cache: ${loaded} modules`);
// Whatever a module left running (none should) must not keep set-up waiting.
process.exit(0);

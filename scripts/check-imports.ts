// The import check: every relative import in src/ must point down the layer table of
// docs/ARCHITECTURE.md (a folder imports its own files and the folders in rows above
// its own), and no chain of imports may come back to where it started.
//
// The table in the document is the rule, so the document and the check cannot drift
// apart: add a folder and the check fails until its row is written. Run it directly
// (`scripts/node scripts/check-imports.ts`, exit 1 and one line per problem) or through
// test/imports.test.ts, which the test suite runs.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One row of the layer table: the folders under src/ that it names, in order. */
export interface LayerRow {
  layer: string;
  folders: string[];
}

export interface ImportProblem {
  file: string;
  message: string;
}

/**
 * The rows of the table under the "## Layers" heading, top to bottom. A folder cell
 * names one or more folders in backticks (`src/wire/`); `native/` and other cells that
 * are not under src/ are ignored.
 */
export function readLayerTable(markdown: string): LayerRow[] {
  const start = markdown.indexOf('\n## Layers');
  if (start < 0) throw new Error('docs/ARCHITECTURE.md has no "## Layers" section');
  const rows: LayerRow[] = [];
  for (const line of markdown.slice(start + 1).split('\n').slice(1)) {
    if (line.startsWith('## ')) break;
    if (!line.startsWith('|')) continue;
    const cells = line.split('|').map((c) => c.trim());
    const layer = cells[1] ?? '';
    const folderCell = cells[2] ?? '';
    const folders = [...folderCell.matchAll(/`src\/([a-z0-9-]+)\/?`/g)].map((m) => m[1]!);
    if (folders.length > 0) rows.push({ layer, folders });
  }
  return rows;
}

/** Relative import specifiers of a TypeScript file: static, re-exports and dynamic. */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const patterns = [
    /^\s*(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]/gm,
    /^\s*import\s*['"]([^'"]+)['"]/gm,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) if (m[1]!.startsWith('.')) out.push(m[1]!);
  return out;
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listTs(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/**
 * Checks a source tree: `files` maps a path relative to the root ("src/wire/ipv4.ts") to
 * its text. Returns every problem: files in folders the table does not name, imports
 * that point up the table or out of src/, and each import cycle once.
 */
export function checkImports(files: Map<string, string>, rows: LayerRow[]): ImportProblem[] {
  const rank = new Map<string, number>();
  rows.forEach((row, i) => { for (const f of row.folders) rank.set(f, i); });
  const folderOf = (path: string): string | undefined => {
    const parts = path.split('/');
    return parts[0] === 'src' && parts.length > 2 ? parts[1] : undefined;
  };
  const problems: ImportProblem[] = [];
  const graph = new Map<string, string[]>();
  const unplaced = new Set<string>();
  for (const [file, text] of files) {
    const folder = folderOf(file);
    if (folder === undefined) continue;
    if (!rank.has(folder)) {
      if (!unplaced.has(folder)) problems.push({ file, message: `folder src/${folder}/ has no row in the layer table of docs/ARCHITECTURE.md` });
      unplaced.add(folder);
    }
    const edges: string[] = [];
    for (const spec of importsOf(text)) {
      const target = normalize(join(dirname(file), spec));
      const targetFolder = folderOf(target);
      if (targetFolder === undefined) {
        problems.push({ file, message: `imports ${spec}, outside src/` });
        continue;
      }
      edges.push(target);
      const from = rank.get(folder);
      const to = rank.get(targetFolder);
      if (targetFolder !== folder && from !== undefined && to !== undefined && to >= from) {
        const how = to === from ? 'the same row' : 'a row below it';
        problems.push({ file, message: `imports ${target}: ${targetFolder} is in ${how} (${rows[to]!.layer}) of the layer table; ${folder} (${rows[from]!.layer}) may only import rows above its own` });
      }
    }
    graph.set(file, edges);
  }
  for (const cycle of cyclesOf(graph)) problems.push({ file: cycle[0]!, message: `import cycle: ${[...cycle, cycle[0]].join(' -> ')}` });
  return problems;
}

/** Strongly connected components with more than one file (or a file importing itself), Tarjan's algorithm. */
function cyclesOf(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** The check over this repository's src/ against its docs/ARCHITECTURE.md. */
export function checkRepository(root: string): ImportProblem[] {
  const rows = readLayerTable(readFileSync(join(root, 'docs/ARCHITECTURE.md'), 'utf8'));
  const files = new Map<string, string>();
  for (const path of listTs(join(root, 'src'))) files.set(relative(root, path), readFileSync(path, 'utf8'));
  return checkImports(files, rows);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const problems = checkRepository(root);
  for (const p of problems) console.log(`${p.file}: ${p.message}`);
  if (problems.length > 0) process.exit(1);
  console.log('imports: every import points down the layer table, and none closes a cycle');
}

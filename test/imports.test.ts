import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { checkImports, checkRepository, importsOf, readLayerTable } from '../scripts/check-imports.ts';

const TABLE = `# Doc

## Layers

| layer | folder | job |
|---|---|---|
| wire | \`src/wire/\` | bytes |
| tables | \`src/tables/\` | lookups |
| agent | \`src/agent/\` and \`native/\` | glue |

## Next
| x | \`src/ignored/\` | not a layer row |
`;

test('the layer table is read from the document, top row first', () => {
  assert.deepEqual(readLayerTable(TABLE), [
    { layer: 'wire', folders: ['wire'] },
    { layer: 'tables', folders: ['tables'] },
    { layer: 'agent', folders: ['agent'] },
  ]);
});

test('import specifiers: static, type-only, re-exports and dynamic; packages are not relative', () => {
  const src = [
    "import { a } from './a.ts';",
    "import type { B } from '../b/b.ts';",
    "export * from './c.ts';",
    "import './side.ts';",
    "const d = await import('../d/d.ts');",
    "import { readFileSync } from 'node:fs';",
  ].join('\n');
  assert.deepEqual(importsOf(src).sort(), ['../b/b.ts', '../d/d.ts', './a.ts', './c.ts', './side.ts']);
});

test('an import up the table, an unknown folder and a cycle are each reported', () => {
  const rows = readLayerTable(TABLE);
  const files = new Map([
    ['src/wire/bytes.ts', "import { x } from '../tables/map.ts';"],
    ['src/tables/map.ts', "import { y } from '../wire/bytes.ts';"],
    ['src/agent/a.ts', "import { b } from './b.ts';\nimport { w } from '../wire/bytes.ts';"],
    ['src/agent/b.ts', "import { a } from './a.ts';"],
    ['src/stray/s.ts', "import { w } from '../wire/bytes.ts';"],
  ]);
  const problems = checkImports(files, rows).map((p) => `${p.file}: ${p.message}`);
  assert.ok(problems.some((p) => p.startsWith('src/wire/bytes.ts: imports src/tables/map.ts: tables is in a row below it')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('src/stray/ has no row')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('import cycle: src/agent/a.ts -> src/agent/b.ts -> src/agent/a.ts')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('import cycle: src/tables/map.ts -> src/wire/bytes.ts')), problems.join('\n'));
  assert.equal(problems.length, 4, problems.join('\n'));
});

test('a clean tree has no problems', () => {
  const files = new Map([
    ['src/wire/bytes.ts', ''],
    ['src/tables/map.ts', "import { y } from '../wire/bytes.ts';"],
    ['src/agent/a.ts', "import { m } from '../tables/map.ts';\nimport { b } from './b.ts';"],
    ['src/agent/b.ts', "import { w } from '../wire/bytes.ts';"],
  ]);
  assert.deepEqual(checkImports(files, readLayerTable(TABLE)), []);
});

test('src/ follows the layer table of docs/ARCHITECTURE.md and has no import cycle', () => {
  const problems = checkRepository(join(import.meta.dirname, '..'));
  assert.deepEqual(problems.map((p) => `${p.file}: ${p.message}`), []);
});

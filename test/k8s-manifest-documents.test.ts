// A manifest file cut at its document markers and parsed document by document, against
// the whole stream parsed as one (the reference): the same documents with the same
// numbers; and a re-read that keeps the objects of unchanged documents as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { fastYamlDocuments, parseManifest, splitDocuments } from '../src/k8s/manifest.ts';
import { ManifestDir } from '../src/k8s/manifest-dir.ts';
import { objectKey } from '../src/k8s/objects.ts';

/** The yaml library's documents for the whole stream, or null on an error. */
function reference(text: string): unknown[] | null {
  const stream = parseAllDocuments(text);
  const list = Array.isArray(stream) ? stream : [];
  if (list.some((d) => d.errors.length > 0)) return null;
  return list.map((d) => d.toJS());
}

/** The documents as parseSegments reads them, or null when it would fall back to the whole stream. */
function segmented(text: string): unknown[] | null {
  const split = splitDocuments(text);
  if (split === null) return null;
  if (split.first === 0) return [];
  const docs: unknown[] = [];
  for (const seg of split.segments) {
    const d = fastYamlDocuments(seg);
    if (d === null || d.length > 1) return null;
    docs.push(d.length === 0 ? null : d[0]);
  }
  return docs;
}

const service = (name: string, port: number): string =>
  `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: default }\nspec:\n  clusterIP: 10.96.0.${port % 250 + 2}\n  ports: [{ port: ${port} }]\n`;

test('cut streams: the same documents, empty ones and leading comments included, as the whole-stream parse', () => {
  const parts = ['', '# a comment\n', '\n', service('a', 80), service('b', 81), 'a: |\n  x\n\n', 'a: |+\n  x\n\n', 'k: [1, 2]\n', '- 1\n- 2\n', 'a: "x\n  y"\n', '  # indented comment\n'];
  const markers = ['---\n', '--- # marker comment\n', '---  \n'];
  let compared = 0;
  for (let seed = 1; seed <= 3000; seed++) {
    let x = seed * 2654435761 >>> 0;
    const next = (n: number): number => { x = (Math.imul(x ^ (x >>> 13), 1597334677) + 0x9e3779b9) >>> 0; return x % n; };
    const pieces: string[] = [];
    const count = 1 + next(5);
    if (next(3) === 0) pieces.push(markers[next(markers.length)]!);
    for (let k = 0; k < count; k++) {
      if (k > 0) pieces.push(markers[next(markers.length)]!);
      pieces.push(parts[next(parts.length)]!);
    }
    const text = pieces.join('');
    const cut = segmented(text);
    if (cut === null) continue;
    compared++;
    assert.deepStrictEqual(cut, reference(text), `stream ${JSON.stringify(text)}`);
    // A first read takes the whole stream's documents by position: the same list.
    const whole = fastYamlDocuments(text);
    if (whole !== null) assert.deepStrictEqual(whole, cut, `whole stream ${JSON.stringify(text)}`);
  }
  assert.ok(compared > 2000, `only ${compared} streams were cut`);
});

test('what is not cut: document end markers, content on a marker line; a directive sends the whole stream to the yaml library', () => {
  for (const text of ['a: 1\n...\n---\nb: 2\n', '--- {a: 1}\n', '--- |\n  x\n', 'a: 1\n---']) {
    assert.equal(splitDocuments(text), null, JSON.stringify(text));
  }
  assert.equal(segmented('%YAML 1.1\n---\na: yes\n'), null);
  // The yaml library honours %YAML 1.1: `yes` is a boolean there, which a label must not be.
  assert.deepEqual(parseManifest('%YAML 1.1\n---\napiVersion: v1\nkind: Namespace\nmetadata: { name: x, labels: { a: yes } }\n', 'ns.yaml').problems,
    ['ns.yaml: document 1 (Namespace x): metadata.labels["a"]: must be a string, not boolean true']);
});

test('a re-parse with the memo: unchanged documents keep their objects, a changed one is read again, problems are the same', () => {
  const docs = Array.from({ length: 50 }, (_, i) => service(`s${i}`, 1000 + i));
  const text = docs.join('---\n');
  const first = parseManifest(text, 'all.yaml');
  assert.deepEqual(first.problems, []);
  assert.ok(first.memo !== undefined);
  docs[7] = service('s7', 2007);
  const second = parseManifest(docs.join('---\n'), 'all.yaml', first.memo);
  assert.deepEqual(second.problems, []);
  assert.equal(second.objects.length, 50);
  for (let i = 0; i < 50; i++) {
    if (i === 7) assert.notEqual(second.objects[i], first.objects[i]);
    else assert.equal(second.objects[i], first.objects[i], `document ${i + 1} kept`);
  }
  assert.deepStrictEqual(second.objects, parseManifest(docs.join('---\n'), 'all.yaml').objects, 'as a parse without the memo');
  // A bad document: the same messages as without the memo, and no memo to keep.
  docs[9] = 'apiVersion: v1\nkind: Service\nmetadata: { name: s9 }\nspec: { ports: [{ port: 99999 }] }\n';
  const bad = parseManifest(docs.join('---\n'), 'all.yaml', second.memo);
  assert.ok(bad.problems.length > 0);
  assert.deepEqual(bad.problems, parseManifest(docs.join('---\n'), 'all.yaml').problems);
  assert.equal(bad.memo, undefined);
  // A duplicate made by the changed document is found against the kept ones.
  docs[9] = service('s3', 5000);
  const dup = parseManifest(docs.join('---\n'), 'all.yaml', second.memo);
  assert.deepEqual(dup.problems, parseManifest(docs.join('---\n'), 'all.yaml').problems);
  assert.match(dup.problems[0]!, /all\.yaml: document 10 .*s3.*already defined in document 4/);
  // A document added before the others renumbers them: they are read again (their origin changed).
  const shifted = parseManifest([service('new', 3000), ...docs.slice(0, 9)].join('---\n'), 'all.yaml', first.memo);
  assert.deepEqual(shifted.problems, []);
  assert.deepEqual(shifted.objects.map((o) => o.origin), Array.from({ length: 10 }, (_, i) => ({ source: 'file', file: 'all.yaml', document: i + 1 })));
});

test('manifest directory: one document edited in a big file, the others unchanged (same objects, no change events)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-manifest-docs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const docs = Array.from({ length: 200 }, (_, i) => service(`s${i}`, 1000 + i));
  writeFileSync(join(dir, 'all.yaml'), docs.join('---\n'));
  const source = new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 });
  const changes: string[] = [];
  source.watch({ onChange: (c) => changes.push(`${c.previous === undefined ? 'add' : c.current === undefined ? 'delete' : 'update'} ${objectKey((c.current ?? c.previous)!)}`), onSynced: () => undefined, onProblems: () => undefined, onError: (err) => { throw err; } });
  t.after(() => source.stop());
  await source.start();
  const before = new Map(source.list().map((o) => [objectKey(o), o]));
  assert.equal(before.size, 200);
  changes.length = 0;
  docs[42] = service('s42', 4242);
  writeFileSync(join(dir, 'all.yaml'), docs.join('---\n'));
  await source.rescan();
  assert.deepEqual(changes, ['update Service/default/s42']);
  const after = source.list();
  for (const obj of after) {
    const old = before.get(objectKey(obj))!;
    if (obj.metadata.name === 's42') {
      assert.notEqual(obj.metadata.resourceVersion, old.metadata.resourceVersion);
      assert.equal(obj.kind === 'Service' && obj.spec.ports[0]!.port, 4242);
    } else assert.equal(obj, old);
  }
  // The same text again: nothing changes.
  changes.length = 0;
  writeFileSync(join(dir, 'all.yaml'), `${docs.join('---\n')}`);
  await source.rescan();
  assert.deepEqual(changes, []);
});

test('manifest directory: random edits give the objects, order and problems a fresh read of the same files gives', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-manifest-docs-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let x = 12345;
  const next = (n: number): number => { x = (Math.imul(x ^ (x >>> 13), 1597334677) + 0x9e3779b9) >>> 0; return x % n; };
  const files: string[][] = [0, 1, 2, 3].map((f) => Array.from({ length: 6 }, (_, i) => service(`f${f}-s${i}`, 100 * f + i)));
  const write = (f: number): void => writeFileSync(join(dir, `m${f}.yaml`), files[f]!.join('---\n'));
  files.forEach((_, f) => write(f));
  const source = new ManifestDir({ dir, rescanIntervalMs: 60_000, debounceMs: 10 });
  const changes: string[] = [];
  source.watch({ onChange: (c) => changes.push(objectKey((c.current ?? c.previous)!)), onSynced: () => undefined, onProblems: () => undefined, onError: (err) => { throw err; } });
  t.after(() => source.stop());
  await source.start();
  const strip = (o: unknown): string => JSON.stringify(o, (k, v) => (k === 'resourceVersion' ? undefined : v));
  let compared = 0;
  let fix: [number, number] | null = null;
  for (let step = 0; step < 80; step++) {
    // A bad document lasts one step: it is rewritten good first thing in the next.
    if (fix !== null) {
      files[fix[0]]![fix[1]] = service(`f${fix[0]}-s${fix[1]}`, 4000 + step);
      write(fix[0]);
      fix = null;
    }
    const f = next(4);
    const i = next(6);
    const r = next(10);
    if (r < 5) files[f]![i] = service(`f${f}-s${i}`, 1000 + step); // an edit: same object, new content
    else if (r < 6) files[f]![i] = service(`f${(f + 1) % 4}-s${i}`, 2000 + step); // a duplicate of another file's object
    else if (r < 7) { // a bad file
      files[f]![i] = 'apiVersion: v1\nkind: Service\nmetadata: { name: bad }\nspec: { ports: [{ port: 99999 }] }\n';
      fix = [f, i];
    }
    else if (r < 8) files[f]![i] = service(`f${f}-new${step}`, 3000 + step); // another object
    else files[f]![i] = service(`f${f}-s${i}`, 100 * f + i); // back to the start
    write(f);
    changes.length = 0;
    await source.rescan();
    const fresh = new ManifestDir({ dir, rescanIntervalMs: 60_000 });
    await fresh.start();
    fresh.stop();
    // A bad file keeps its last good objects, which a fresh read never had: compare
    // only while every file is good (duplicates across files are not "bad").
    if ([...fresh.problems().values()].flat().some((p) => !p.includes('ignored: the same object'))) continue;
    compared++;
    assert.deepEqual(source.list().map(strip), fresh.list().map(strip), `step ${step}: objects`);
    assert.deepEqual(source.problems(), fresh.problems(), `step ${step}: problems`);
  }
  assert.ok(compared > 20, `${compared} steps compared`);
});

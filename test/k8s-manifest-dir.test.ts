// The manifest directory with real files and real fs watching: first read then
// "synced", per-object change events, the last good state of a file that turns bad,
// recovery, deletion, duplicates across files.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ManifestDir, ManifestDirError } from '../src/k8s/manifest-dir.ts';
import type { ObjectChange } from '../src/k8s/object-source.ts';
import { objectKey, type ServiceObject } from '../src/k8s/objects.ts';
import { waitFor } from './helpers/netns.ts';

function service(name: string, port: number): string {
  return `apiVersion: v1\nkind: Service\nmetadata: {name: ${name}}\nspec:\n  ports: [{port: ${port}}]\n`;
}

interface Recorder {
  changes: ObjectChange[];
  problems: Map<string, readonly string[]>;
  synced: boolean;
  dir: ManifestDir;
}

function open(path: string): Recorder {
  const rec: Recorder = { changes: [], problems: new Map(), synced: false, dir: undefined as unknown as ManifestDir };
  rec.dir = new ManifestDir({
    dir: path,
    // Long enough that the tests below see fs.watch at work; the explicit rescan() covers the fallback path.
    rescanIntervalMs: 60_000,
    debounceMs: 20,
  });
  rec.dir.watch({
    onChange: (c) => rec.changes.push(c),
    onSynced: () => { rec.synced = true; },
    onProblems: (file, list) => rec.problems.set(file, list),
    onError: (err) => { throw err; },
  });
  return rec;
}

const describeChange = (c: ObjectChange): string =>
  `${c.previous === undefined ? 'add' : c.current === undefined ? 'delete' : 'update'} ${objectKey((c.current ?? c.previous)!)}`;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tapir-manifests-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('first read: adds for every object, then synced; other files are ignored', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), `${service('web', 80)}---\n${service('api', 443)}`);
  writeFileSync(join(dir, 'b.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'demo' } }));
  writeFileSync(join(dir, 'notes.txt'), 'not a manifest');
  writeFileSync(join(dir, '.a.yaml.swp'), 'garbage: [');
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  assert.equal(rec.synced, true);
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web', 'add Service/default/api', 'add Namespace//demo']);
  assert.equal(rec.problems.size, 0);
});

test('a file that turns bad keeps its last good objects; fixing it applies the fix', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'svc.yaml');
  writeFileSync(file, service('web', 80));
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  assert.equal(rec.changes.length, 1);

  writeFileSync(file, `${service('web', 8080)}---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  ports: [{port: 70000}]\n`);
  await waitFor(() => rec.problems.has('svc.yaml'), 5000, 20);
  assert.deepEqual(rec.problems.get('svc.yaml'), ['svc.yaml: document 2 (Service default/api): spec.ports[0].port: 70000 is out of range 1-65535']);
  assert.equal(rec.changes.length, 1, 'no change: the last good state stays');
  assert.equal((rec.dir.list()[0] as ServiceObject).spec.ports[0]!.port, 80);
  assert.deepEqual([...rec.dir.problems().keys()], ['svc.yaml']);

  writeFileSync(file, 'kind: [');
  await waitFor(() => rec.problems.get('svc.yaml')?.[0]?.includes('YAML syntax error') === true, 5000, 20);
  assert.equal(rec.changes.length, 1);

  writeFileSync(file, `${service('web', 8080)}---\n${service('api', 443)}`);
  await waitFor(() => rec.changes.length === 3, 5000, 20);
  assert.deepEqual(rec.problems.get('svc.yaml'), [], 'recovery is reported');
  assert.deepEqual(rec.changes.slice(1).map(describeChange), ['update Service/default/web', 'add Service/default/api']);
  const update = rec.changes[1]!;
  assert.equal((update.previous as ServiceObject).spec.ports[0]!.port, 80);
  assert.equal((update.current as ServiceObject).spec.ports[0]!.port, 8080);
  assert.equal(rec.dir.problems().size, 0);
});

test('deleting a file deletes its objects; an unchanged rewrite reports nothing', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), service('web', 80));
  writeFileSync(join(dir, 'b.yaml'), service('api', 443));
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  writeFileSync(join(dir, 'a.yaml'), `# same objects, new comment\n${service('web', 80)}`);
  await rec.dir.rescan();
  unlinkSync(join(dir, 'b.yaml'));
  await waitFor(() => rec.changes.length === 3, 5000, 20);
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web', 'add Service/default/api', 'delete Service/default/api']);
  assert.equal(rec.changes[2]!.current, undefined);
});

test('an emptied file deletes its objects once a second read confirms it', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), service('web', 80));
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  writeFileSync(join(dir, 'a.yaml'), '');
  await rec.dir.rescan();
  assert.equal(rec.changes.length, 1, 'one empty read could be a writer between truncate and write');
  await waitFor(() => rec.changes.length === 2, 5000, 20);
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web', 'delete Service/default/web']);
});

test('an object defined in two files: the first file wins, the copy is reported', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), service('web', 80));
  writeFileSync(join(dir, 'b.yaml'), service('web', 81));
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web']);
  assert.deepEqual(rec.problems.get('b.yaml'), ['b.yaml: document 1 (Service default/web): ignored: the same object is defined in a.yaml document 1']);
  unlinkSync(join(dir, 'a.yaml'));
  await rec.dir.rescan();
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web', 'update Service/default/web']);
  assert.equal((rec.changes[1]!.current as ServiceObject).spec.ports[0]!.port, 81);
  assert.deepEqual(rec.problems.get('b.yaml'), []);
});

test('a bad file at start is reported and contributes nothing; a missing directory is an error', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'bad.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n');
  writeFileSync(join(dir, 'good.yaml'), service('web', 80));
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  assert.equal(rec.synced, true);
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web']);
  assert.equal(rec.problems.get('bad.yaml')?.length, 1);

  const missing = open(join(dir, 'nope'));
  await assert.rejects(missing.dir.start(), (err: Error) => err instanceof ManifestDirError && /cannot read the manifest directory/.test(err.message));
  assert.equal(missing.synced, false);
});

test('resource versions: set by the directory, kept by unchanged objects, new for changed ones', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), `${service('web', 80)}---\n${service('api', 443)}`);
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  const version = (name: string): string => rec.dir.list().find((o) => o.metadata.name === name)!.metadata.resourceVersion;
  const [web, api] = [version('web'), version('api')];
  assert.ok(web !== '' && api !== '' && web !== api);
  const apiObject = rec.dir.list().find((o) => o.metadata.name === 'api');

  // web changes, api is only re-read: it keeps its version and stays the same object.
  writeFileSync(join(dir, 'a.yaml'), `${service('web', 8080)}---\n${service('api', 443)}`);
  await rec.dir.rescan();
  assert.deepEqual(rec.changes.map(describeChange), ['add Service/default/web', 'add Service/default/api', 'update Service/default/web']);
  assert.equal(version('api'), api);
  assert.equal(rec.dir.list().find((o) => o.metadata.name === 'api'), apiObject);
  assert.ok(Number(version('web')) > Number(api), `${version('web')} after ${api}`);
  assert.equal(rec.changes[2]!.previous!.metadata.resourceVersion, web);
});

test('a handler that watches late gets the current objects and synced first', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'a.yaml'), service('web', 80));
  writeFileSync(join(dir, 'bad.yaml'), 'kind: [');
  const rec = open(dir);
  t.after(() => rec.dir.stop());
  await rec.dir.start();
  const seen: string[] = [];
  const unwatch = rec.dir.watch({
    onChange: (c) => seen.push(describeChange(c)),
    onSynced: (kind) => seen.push(`synced ${kind}`),
    onProblems: (file, list) => seen.push(`${file}: ${list.length} problem(s)`),
    onError: (err) => { throw err; },
  });
  assert.deepEqual(seen.filter((s) => !s.startsWith('synced')), ['add Service/default/web', 'bad.yaml: 1 problem(s)']);
  assert.deepEqual(seen.filter((s) => s.startsWith('synced')), rec.dir.kinds.map((k) => `synced ${k}`));
  unwatch();
  writeFileSync(join(dir, 'b.yaml'), service('api', 443));
  await rec.dir.rescan();
  assert.equal(seen.length, 2 + rec.dir.kinds.length, 'an unwatched handler hears nothing more');
  assert.equal(rec.changes.length, 2);
});

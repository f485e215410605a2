// The fast YAML path of parseManifest (js-yaml, core schema) against the yaml library,
// the reference: for every stream the fast parser accepts, the documents are the ones
// the yaml library makes; a stream it declines goes to the yaml library whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { fastYamlDocuments, parseManifest } from '../src/k8s/manifest.ts';
import { seededRandom as random } from './helpers/random.ts';

/** The yaml library's documents, or null when it reports an error. */
function reference(text: string): unknown[] | null {
  const stream = parseAllDocuments(text);
  const list = Array.isArray(stream) ? stream : [];
  if (list.some((d) => d.errors.length > 0)) return null;
  return list.map((d) => d.toJS());
}

/** deepStrictEqual tells -0 from 0 and 1 from '1', as the objects' consumers would. */
function agree(text: string): boolean {
  const fast = fastYamlDocuments(text);
  if (fast === null) return false;
  assert.deepStrictEqual(fast, reference(text), `stream ${JSON.stringify(text)}`);
  return true;
}

test('a Service and an EndpointSlice as clusters write them take the fast path', () => {
  const text = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: ns-1, labels: { app: web }, annotations: { "example.com/x": "1" } }
spec:
  clusterIP: 10.96.1.5
  ports: [{ name: http, port: 80, protocol: TCP, targetPort: 8080 }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abcde
  namespace: ns-1
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
endpoints:
  - addresses: [10.244.0.1]
    conditions: { ready: true }
    nodeName: node-0
ports: [{ name: http, port: 8080, protocol: TCP }]
`;
  assert.ok(agree(text));
  const parsed = parseManifest(text, 'web.yaml');
  assert.deepEqual(parsed.problems, []);
  assert.equal(parsed.objects.length, 2);
});

const SCALARS = ['0b101', '1_000', '012', '08', '0o17', '0O17', '0x1F', '0X1f', '+0x1', '-0o1', '+12', '-0', '0', '.5', '1.', '0.', '1e3', '1E+3', '1e', '.E3',
  '-.5e-2', '.inf', '-.Inf', '+.inf', '.NaN', '~', 'null', 'Null', 'NULL', 'yes', 'no', 'on', 'off', 'y', 'n', 'True', 'TRUE', 'tRUE', 'false',
  '2001-12-14', '2001-12-14t21:59:43.10-05:00', '1:20', '12:30:00', '=', '<<', '-', '"a"', "'b'", '"\\u00e9"', "'it''s'", '!!str 12', '!!int "12"',
  '!!float 1', '!!bool true', '!!null ""', '&a 1', '9007199254740993', '123456789012345678901234567890', '""', "''", 'a b', 'a #b', '10.96.0.1', '8080', '"8080"', 'http'];

test('every scalar resolves as the yaml library resolves it (YAML 1.2 core schema)', () => {
  for (const s of SCALARS) {
    agree(`k: ${s}\n`);
    agree(`- ${s}\n`);
    agree(`k: [${s}, x]\n`);
    agree(`k: { a: ${s} }\n`);
  }
});

test('streams: documents, empty documents, anchors, block scalars, merge keys', () => {
  for (const text of ['', '---\n', '# only a comment\n', 'a: 1\n---\n---\nb: 1\n', 'a: 1\n---\n', '---\na: 1\n', 'a: 1\n...\n', 'a: 1\n...\n---\nb: 2\n',
    'a: &x {b: 1}\nc: *x\n', 'a: |\n  x\n  y\n', 'a: >-\n  x\n\n  y\n', 'a: |+\n  x\n\n', '"a\n  b": 1\n', '<<: {a: 1}\nb: 2\n', 'a:\n- 1\n- 2\n',
    'a: {b: [1, {c: d}], e: []}\n', 'a: "x\\ty"\n', '1: a\n2: b\n', 'null: 1\n', 'true: 1\n', '? a\n: 1\n', 'a:\n  b:\n    c: 1\n  d: 2\n']) agree(text);
});

test('what the fast parser declines goes to the yaml library: its messages, its results', () => {
  // An unknown tag is a warning there (the value stays a string); js-yaml refuses it.
  assert.equal(fastYamlDocuments('a: !foo 1\n'), null);
  // %YAML 1.1 switches the yaml library to 1.1 scalars (yes = true).
  assert.equal(fastYamlDocuments('%YAML 1.1\n---\na: yes\n'), null);
  const doc = 'apiVersion: v1\nkind: Service\nmetadata: { name: a, namespace: default, labels: { x: !foo y } }\nspec: { clusterIP: 10.96.0.5, ports: [{ port: 80 }] }\n';
  const parsed = parseManifest(doc, 'a.yaml');
  assert.deepEqual(parsed.problems, []);
  assert.equal(parsed.objects[0]!.metadata.labels.x, 'y');
  // A syntax error is the yaml library's message, with file and document.
  const bad = parseManifest('apiVersion: v1\n---\na: [1, 2\n', 'b.yaml');
  assert.equal(bad.objects.length, 0);
  assert.ok(bad.problems.length > 0);
  for (const p of bad.problems) assert.match(p, /^b\.yaml: document 2: YAML syntax error: /);
  // Duplicate keys are errors in both.
  assert.ok(parseManifest('a: 1\na: 2\n', 'c.yaml').problems[0]!.startsWith('c.yaml: document 1: YAML syntax error: '));
});


test('random block and flow streams of tricky scalars agree with the yaml library', () => {
  const next = random(12);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const keys = ['a', 'b', 'name', 'port', '"q k"', '1', 'null'];
  const flow = (depth: number): string => {
    const r = next();
    if (depth > 2 || r < 0.5) return pick(SCALARS.filter((s) => !s.startsWith('!!') && !s.startsWith('&') && !s.includes('#')));
    if (r < 0.75) return `[${Array.from({ length: 1 + Math.floor(next() * 3) }, () => flow(depth + 1)).join(', ')}]`;
    return `{ ${[...new Set(Array.from({ length: 1 + Math.floor(next() * 3) }, () => pick(keys)))].map((k) => `${k}: ${flow(depth + 1)}`).join(', ')} }`;
  };
  const block = (indent: string, depth: number): string => {
    const lines: string[] = [];
    for (const k of new Set(Array.from({ length: 1 + Math.floor(next() * 4) }, () => pick(keys)))) {
      const r = next();
      if (depth < 3 && r < 0.3) lines.push(`${indent}${k}:\n${block(`${indent}  `, depth + 1)}`);
      else if (depth < 3 && r < 0.45) lines.push(`${indent}${k}:\n${Array.from({ length: 1 + Math.floor(next() * 3) }, () => `${indent}- ${flow(2)}\n`).join('')}`);
      else lines.push(`${indent}${k}: ${pick(SCALARS)}\n`);
    }
    return lines.join('');
  };
  let fast = 0;
  for (let i = 0; i < 400; i++) {
    const docs = Array.from({ length: 1 + Math.floor(next() * 3) }, () => (next() < 0.5 ? block('', 0) : `${flow(0)}\n`));
    if (agree(docs.join('---\n'))) fast++;
  }
  // Most streams must have been compared, not declined.
  assert.ok(fast > 100, `only ${fast} of 400 streams took the fast path`);
});

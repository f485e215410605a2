// One manifest file: a YAML stream of documents separated by "---" (or one JSON
// document) turned into validated objects. A file is all or nothing: if any document
// has a problem, the caller keeps the file's previous objects (the last good state).
import { createHash } from 'node:crypto';
import { CORE_SCHEMA, loadAll } from 'js-yaml';
import { parseAllDocuments } from 'yaml';
import { isMapping } from '../config/fields.ts';
import { describeOrigin, objectKey, originText, type K8sObject, type Origin } from './objects.ts';
import { validateDocument } from './validate.ts';
import { TapirError } from '../errors/tapir-error.ts';

export interface ParsedManifest {
  objects: K8sObject[];
  /** Empty when the file is good. Each line names file, document and field. */
  problems: string[];
}

export class ManifestError extends TapirError {
  readonly code = 'TAPIR_MANIFEST_INVALID';
  readonly file: string;
  readonly problems: readonly string[];
  constructor(file: string, problems: readonly string[]) {
    super(problems.length === 1 ? problems[0]! : `${file}: ${problems.length} problems:\n  ${problems.join('\n  ')}`);
    this.name = 'ManifestError';
    this.file = file;
    this.problems = problems;
  }
}

/** The first line of a yaml-library error ("... at line 3, column 5:"), without the source excerpt. */
function yamlMessage(message: string): string {
  return message.split('\n')[0]!.replace(/:$/, '');
}

/**
 * What the fast parser leaves to the yaml library, because the two differ there (found
 * by test/k8s-manifest-fast-yaml.test.ts): a `%YAML` or `%TAG` directive (the yaml
 * library honours `%YAML 1.1`), an explicit tag (`!!float 1`, `!foo`), and a mapping
 * key that is not a plain string (a null key becomes "" in the yaml library, "null" in
 * js-yaml; numbers and booleans alike are kept apart to be safe). The patterns are
 * coarse on purpose: a false match only costs the slow parser.
 */
const DECLINED = [
  /^%/m,
  /(?:^|[\s,[{])!/m,
  /(?:^[ \t]*(?:-[ \t]+)*|[{,?][ \t]*)(?:[+.~0-9]|-(?![ \t])|null|Null|NULL|true|True|TRUE|false|False|FALSE)[^:\n,{}[\]]*:(?:[ \t]|$)/m,
];

/**
 * The documents of a YAML stream, or null when the fast parser declines the text.
 *
 * js-yaml is about ten times faster than the yaml library on the files a cluster is
 * made of (10k Services with 100k endpoints: most of the first sync was the yaml
 * library's lexer and composer). With the YAML 1.2 core schema both resolve every
 * scalar alike (test/k8s-manifest-fast-yaml.test.ts compares them over a table of
 * tricky scalars and random streams). Whatever js-yaml refuses (syntax errors,
 * collection keys) and whatever DECLINED matches goes to the yaml library, so that
 * the messages and the edge cases stay exactly its own.
 */
export function fastYamlDocuments(text: string): unknown[] | null {
  for (const pattern of DECLINED) if (pattern.test(text)) return null;
  return loadCore(text);
}

function loadCore(text: string): unknown[] | null {
  try {
    return loadAll(text, { schema: CORE_SCHEMA });
  } catch {
    return null;
  }
}

/** A line that only starts a document ("---", maybe a comment after it). */
const MARKER = /^---[ \t]*(?:#[^\n]*)?\n/gm;
/** What splitDocuments leaves to the whole-stream parse: content on a marker line, a document end marker. */
const UNSPLIT = [/^---[ \t]*[^#\s]/m, /^\.\.\.(?:[ \t]|$)/m, /^---[ \t]*(?:#[^\n]*)?$(?![\s\S])/m];
/** A line with something other than blanks and a comment. */
const CONTENT = /^[ \t]*[^#\s]/m;

/**
 * A YAML stream cut at its document markers, as texts, with the 1-based document
 * number of the first (the text before the first marker is a document only when it
 * holds more than blanks and comments); null when the stream has document end
 * markers, content on a marker line or a marker as its last line without a newline
 * (left to the whole-stream parse; so is a document with a directive, see DECLINED).
 */
export function splitDocuments(text: string): { segments: string[]; first: number } | null {
  // DECLINED is checked per document, on those parsed (its patterns are line-local).
  for (const pattern of UNSPLIT) if (pattern.test(text)) return null;
  const segments: string[] = [];
  let at = 0;
  let markers = 0;
  for (const m of text.matchAll(MARKER)) {
    segments.push(text.slice(at, m.index));
    at = m.index + m[0].length;
    markers++;
  }
  segments.push(text.slice(at));
  if (markers === 0) return { segments, first: CONTENT.test(text) ? 1 : 0 };
  if (!CONTENT.test(segments[0]!)) return { segments: segments.slice(1), first: 1 };
  return { segments, first: 1 };
}

/**
 * A digest that stands for a text in comparisons (SHA-256: a changed text never
 * compares equal): a file's text, or a document's, is not kept once parsed; at 10k
 * Services the texts were a tenth of the agent's heap.
 */
export function textDigest(text: string): string {
  return createHash('sha256').update(text).digest('base64');
}

/**
 * What a good parse of a file leaves for the next one: a digest of each document's
 * text and the objects it made. A re-read parses and validates only the documents whose text
 * changed and keeps the others' objects as they are (the same objects: the manifest
 * directory then sees them unchanged without comparing them). With 1000 Services to a
 * file, one endpoint edited costs one document, not two thousand.
 */
export interface ManifestMemo {
  /** Per segment, a digest of its text (textDigest): the texts themselves are not kept. */
  digests: string[];
  first: number;
  /** Per segment, its objects (more than one for a List). */
  objects: K8sObject[][];
}

/**
 * Parses and validates a file's text. `file` is the name used in messages. `previous`:
 * the memo of the file's last good parse (see ManifestMemo); the result carries the
 * new one when the stream could be cut into documents.
 */
export function parseManifest(text: string, file: string, previous?: ManifestMemo): ParsedManifest & { memo?: ManifestMemo } {
  if (!file.endsWith('.json')) {
    const split = splitDocuments(text);
    if (split !== null) {
      const parsed = parseSegments(text, split.segments, split.first, file, previous?.first === split.first ? previous : undefined);
      if (parsed !== null) return parsed;
    }
  }
  const problems: string[] = [];
  const documents: unknown[] = [];
  if (file.endsWith('.json')) {
    // JSON.parse is an order of magnitude faster than the YAML parser on big files.
    try { documents.push(JSON.parse(text)); }
    catch (err) { problems.push(`${file}: document 1: JSON syntax error: ${(err as Error).message}`); }
  } else {
    const fast = fastYamlDocuments(text);
    if (fast !== null) documents.push(...fast);
    else {
      const stream = parseAllDocuments(text);
      const list = Array.isArray(stream) ? stream : [];
      list.forEach((doc, i) => {
        if (doc.errors.length > 0) {
          for (const e of doc.errors) problems.push(`${file}: document ${i + 1}: YAML syntax error: ${yamlMessage(e.message)}`);
          documents.push(undefined);
        } else documents.push(doc.toJS());
      });
    }
  }
  if (problems.length > 0) return { objects: [], problems };
  const checker = new FileObjects(file, problems);
  documents.forEach((doc, i) => checker.document(doc, i + 1));
  return problems.length > 0 ? { objects: [], problems } : { objects: checker.objects, problems };
}

/**
 * The documents of a cut stream, each parsed alone (or its objects taken from
 * `previous` when its text is the same); null when one of them is not exactly one
 * document to the fast parser: the whole stream is then parsed as one, as before.
 */
function parseSegments(text: string, segments: string[], first: number, file: string, previous: ManifestMemo | undefined): (ParsedManifest & { memo?: ManifestMemo }) | null {
  let documents: unknown[] = [];
  const kept: (K8sObject[] | null)[] = [];
  // A first read parses the stream in one call (a call per document costs twice as
  // much) and gives each text its document by position: the cut makes the same
  // documents as the whole stream (test/k8s-manifest-documents.test.ts).
  const whole = previous === undefined ? fastYamlDocuments(text) : null;
  if (whole !== null && whole.length === (first === 0 ? 0 : segments.length)) {
    documents = whole;
    for (let j = 0; j < segments.length; j++) kept.push(null);
  } else for (let j = 0; j < segments.length; j++) {
    const text = segments[j]!;
    if (previous !== undefined && previous.digests[j] === textDigest(text)) {
      kept.push(previous.objects[j]!);
      documents.push(null);
      continue;
    }
    kept.push(null);
    if (!CONTENT.test(text)) {
      documents.push(null);
      continue;
    }
    const docs = fastYamlDocuments(text);
    if (docs === null || docs.length !== 1) return null;
    documents.push(docs[0]);
  }
  const problems: string[] = [];
  const checker = new FileObjects(file, problems);
  const objects: K8sObject[][] = [];
  for (let j = 0; j < segments.length; j++) {
    const before = checker.objects.length;
    const same = kept[j];
    if (same !== null && same !== undefined) for (const obj of same) checker.keep(obj);
    else checker.document(documents[j], first + j);
    objects.push(checker.objects.slice(before));
  }
  // Only a good parse leaves a memo: a document kept from a bad one would lose its problems.
  if (problems.length > 0) return { objects: [], problems };
  return { objects: checker.objects, problems, memo: { digests: segments.map(textDigest), first, objects } };
}

/** Validates a file's documents in order and checks that no object is defined twice in it. */
class FileObjects {
  readonly objects: K8sObject[] = [];
  readonly #seen = new Map<string, K8sObject>();
  readonly #file: string;
  readonly #problems: string[];

  constructor(file: string, problems: string[]) {
    this.#file = file;
    this.#problems = problems;
  }

  document(doc: unknown, number: number): void {
    const file = this.#file;
    // Empty documents ("---" with nothing or only comments after it) are allowed, as kubectl allows them.
    if (doc === null || doc === undefined) return;
    // A v1 List (what `kubectl get -o json` writes) holds many objects in one document;
    // as JSON it is also the fast way to feed thousands of objects.
    if (isMapping(doc) && doc.kind === 'List') {
      const where = `${file}: document ${number} (List)`;
      if (doc.apiVersion !== 'v1') this.#problems.push(`${where}: apiVersion: ${JSON.stringify(doc.apiVersion ?? null)} is not valid for List (use v1)`);
      if (!Array.isArray(doc.items)) this.#problems.push(`${where}: items: must be a list`);
      else doc.items.forEach((item, j) => this.#add(item, { source: 'file', file, document: number, item: j }));
      return;
    }
    this.#add(doc, { source: 'file', file, document: number });
  }

  /** An object validated before, from a document whose text did not change. */
  keep(obj: K8sObject): void {
    this.#checkDuplicate(obj);
    this.objects.push(obj);
  }

  #add(doc: unknown, origin: Origin): void {
    let obj: K8sObject | undefined;
    try {
      obj = validateDocument(doc, origin, this.#problems);
    } catch (err) {
      // A validator bug must not take the agent down with it: report it like bad input.
      this.#problems.push(`${originText(origin)}: could not be validated (${(err as Error).message}); please report this as a Tapir bug`);
      return;
    }
    if (obj === undefined) return;
    this.#checkDuplicate(obj);
    this.objects.push(obj);
  }

  #checkDuplicate(obj: K8sObject): void {
    const key = objectKey(obj);
    const earlier = this.#seen.get(key);
    if (earlier !== undefined) this.#problems.push(`${describeOrigin(obj)}: the same object is already defined in ${originText(earlier.origin).slice(this.#file.length + 2)}`);
    this.#seen.set(key, obj);
  }
}

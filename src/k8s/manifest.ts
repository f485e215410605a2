// One manifest file: a YAML stream of documents separated by "---" (or one JSON
// document) turned into validated objects. A file is all or nothing: if any document
// has a problem, the caller keeps the file's previous objects (the last good state).
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
  try {
    return loadAll(text, { schema: CORE_SCHEMA });
  } catch {
    return null;
  }
}

/** Parses and validates a file's text. `file` is the name used in messages. */
export function parseManifest(text: string, file: string): ParsedManifest {
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

  const objects: K8sObject[] = [];
  const seen = new Map<string, K8sObject>();
  const add = (doc: unknown, origin: Origin): void => {
    let obj: K8sObject | undefined;
    try {
      obj = validateDocument(doc, origin, problems);
    } catch (err) {
      // A validator bug must not take the agent down with it: report it like bad input.
      problems.push(`${originText(origin)}: could not be validated (${(err as Error).message}); please report this as a Tapir bug`);
      return;
    }
    if (obj === undefined) return;
    const key = objectKey(obj);
    const earlier = seen.get(key);
    if (earlier !== undefined) problems.push(`${describeOrigin(obj)}: the same object is already defined in ${originText(earlier.origin).slice(file.length + 2)}`);
    seen.set(key, obj);
    objects.push(obj);
  };
  documents.forEach((doc, i) => {
    // Empty documents ("---" with nothing or only comments after it) are allowed, as kubectl allows them.
    if (doc === null || doc === undefined) return;
    // A v1 List (what `kubectl get -o json` writes) holds many objects in one document;
    // as JSON it is also the fast way to feed thousands of objects.
    if (isMapping(doc) && doc.kind === 'List') {
      const where = `${file}: document ${i + 1} (List)`;
      if (doc.apiVersion !== 'v1') problems.push(`${where}: apiVersion: ${JSON.stringify(doc.apiVersion ?? null)} is not valid for List (use v1)`);
      if (!Array.isArray(doc.items)) problems.push(`${where}: items: must be a list`);
      else doc.items.forEach((item, j) => add(item, { source: 'file', file, document: i + 1, item: j }));
      return;
    }
    add(doc, { source: 'file', file, document: i + 1 });
  });
  return problems.length > 0 ? { objects: [], problems } : { objects, problems };
}

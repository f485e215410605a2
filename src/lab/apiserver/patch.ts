// The three PATCH formats of the Kubernetes API: JSON merge patch (RFC 7386), JSON
// patch (RFC 6902), and strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch):
// a merge patch whose lists are merged item by item on their patch merge key (a
// resource's `mergeKeys`), with the directives kubectl apply sends: `$patch:
// delete|replace|merge`, `$retainKeys`, `$setElementOrder/<list>` and
// `$deleteFromPrimitiveList/<list>`. Server-side apply (apply.ts) builds on it.
import { isMapping, type Raw } from '../../config/fields.ts';
import { ApiError } from './status.ts';

/** RFC 7386: mappings merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isMapping(patch)) return clone(patch);
  const out: Raw = isMapping(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** RFC 6902 over a copy of `target`; a failed `test` or a missing path is 422 Invalid, as the API answers. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw ApiError.badRequest('a JSON patch must be a list of operations');
  let doc = clone(target);
  for (const [i, raw] of ops.entries()) {
    if (!isMapping(raw) || typeof raw.op !== 'string' || typeof raw.path !== 'string') throw ApiError.badRequest(`JSON patch operation ${i}: needs "op" and "path"`);
    const { op, path } = raw;
    const fail = (why: string): never => {
      throw new ApiError('Invalid', `the server rejected our request due to an error in our request: JSON patch operation ${i} (${op} ${path}): ${why}`);
    };
    switch (op) {
      case 'add': doc = pointerSet(doc, path, clone(raw.value), true, fail); break;
      case 'replace': pointerGet(doc, path, fail); doc = pointerSet(doc, path, clone(raw.value), false, fail); break;
      case 'remove': doc = pointerRemove(doc, path, fail); break;
      case 'move': case 'copy': {
        if (typeof raw.from !== 'string') fail('needs "from"');
        const value = clone(pointerGet(doc, raw.from as string, fail));
        if (op === 'move') doc = pointerRemove(doc, raw.from as string, fail);
        doc = pointerSet(doc, path, value, true, fail);
        break;
      }
      case 'test':
        if (JSON.stringify(pointerGet(doc, path, fail)) !== JSON.stringify(raw.value)) fail('testing value failed');
        break;
      default: fail(`unknown operation ${JSON.stringify(op)}`);
    }
  }
  return doc;
}

function tokens(path: string, fail: (why: string) => never): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) fail('a JSON pointer starts with "/"');
  return path.slice(1).split('/').map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

function pointerGet(doc: unknown, path: string, fail: (why: string) => never): unknown {
  return walk(doc, tokens(path, fail), fail);
}

function walk(doc: unknown, parts: readonly string[], fail: (why: string) => never): unknown {
  let v = doc;
  for (const t of parts) {
    if (Array.isArray(v)) {
      const i = Number(t);
      if (!Number.isInteger(i) || i < 0 || i >= v.length) fail(`no index ${t}`);
      v = v[i];
    } else if (isMapping(v) && Object.hasOwn(v, t)) v = v[t];
    else fail(`missing value at ${t}`);
  }
  return v;
}

function pointerSet(doc: unknown, path: string, value: unknown, insert: boolean, fail: (why: string) => never): unknown {
  const parts = tokens(path, fail);
  if (parts.length === 0) return value;
  const parent = walk(doc, parts.slice(0, -1), fail);
  const last = parts[parts.length - 1]!;
  if (Array.isArray(parent)) {
    const i = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > parent.length || (!insert && i === parent.length)) fail(`no index ${last}`);
    if (insert) parent.splice(i, 0, value);
    else parent[i] = value;
  } else if (isMapping(parent)) parent[last] = value;
  else fail('the parent is neither a mapping nor a list');
  return doc;
}

function pointerRemove(doc: unknown, path: string, fail: (why: string) => never): unknown {
  const parts = tokens(path, fail);
  if (parts.length === 0) fail('cannot remove the whole document');
  walk(doc, parts, fail);
  const parent = walk(doc, parts.slice(0, -1), fail);
  const last = parts[parts.length - 1]!;
  if (Array.isArray(parent)) parent.splice(Number(last), 1);
  else delete (parent as Raw)[last];
  return doc;
}

/**
 * Strategic merge patch. `mergeKeys` maps a list's path ("spec.containers",
 * "spec.containers[].ports") to its merge key; '' marks a list of scalars merged as a
 * set (metadata.finalizers). Lists not in `mergeKeys` are replaced whole.
 */
export function strategicMergePatch(original: unknown, patch: unknown, mergeKeys: Readonly<Record<string, string>>): unknown {
  return mergeMap(original, patch, '', mergeKeys);
}

function mergeMap(original: unknown, patch: unknown, path: string, keys: Readonly<Record<string, string>>): unknown {
  if (!isMapping(patch)) return clone(patch);
  const directive = patch.$patch;
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const out = clone(patch) as Raw;
    delete out.$patch;
    return out;
  }
  const out: Raw = isMapping(original) ? { ...original } : {};
  const orders = new Map<string, unknown[]>();
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$patch' || key === '$retainKeys') continue;
    if (key.startsWith('$setElementOrder/')) {
      if (Array.isArray(value)) orders.set(key.slice('$setElementOrder/'.length), value);
      continue;
    }
    if (key.startsWith('$deleteFromPrimitiveList/')) {
      const list = key.slice('$deleteFromPrimitiveList/'.length);
      if (Array.isArray(out[list]) && Array.isArray(value)) out[list] = (out[list] as unknown[]).filter((v) => !value.includes(v));
      continue;
    }
    const sub = path === '' ? key : `${path}.${key}`;
    if (value === null) delete out[key];
    else if (Array.isArray(value) && Object.hasOwn(keys, sub)) out[key] = mergeList(out[key], value, sub, keys);
    else if (isMapping(value)) {
      const merged = mergeMap(out[key], value, sub, keys);
      if (merged === undefined) delete out[key];
      else out[key] = merged;
    } else out[key] = clone(value);
  }
  for (const [list, order] of orders) if (Array.isArray(out[list])) out[list] = reorder(out[list] as unknown[], order, keys[path === '' ? list : `${path}.${list}`] ?? '');
  if (Array.isArray(patch.$retainKeys)) {
    const retain = new Set(patch.$retainKeys as unknown[]);
    for (const key of Object.keys(out)) if (!retain.has(key)) delete out[key];
  }
  return out;
}

/**
 * The key of a list item under `spec`: one field ("name"), or several joined by ","
 * with an optional default after "=" ("port,protocol=TCP"), as a mapping of field to
 * value ({port: 53, protocol: "UDP"}); the item's own fields, else the defaults.
 */
export function listItemKey(item: Raw, spec: string): Raw {
  const key: Raw = {};
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    const field = eq < 0 ? part : part.slice(0, eq);
    key[field] = item[field] ?? (eq < 0 ? undefined : part.slice(eq + 1));
  }
  return key;
}

function sameKey(a: unknown, b: Raw, spec: string): boolean {
  if (!isMapping(a)) return false;
  const ka = listItemKey(a, spec);
  const kb = listItemKey(b, spec);
  return Object.keys(kb).every((f) => ka[f] === kb[f]);
}

function mergeList(original: unknown, patch: unknown[], path: string, keys: Readonly<Record<string, string>>): unknown[] {
  const key = keys[path]!;
  if (patch.some((item) => isMapping(item) && item.$patch === 'replace')) {
    return patch.filter((item) => !(isMapping(item) && item.$patch === 'replace')).map(clone);
  }
  const out = Array.isArray(original) ? [...original] : [];
  if (key === '') {
    for (const v of patch) if (!out.some((o) => JSON.stringify(o) === JSON.stringify(v))) out.push(clone(v));
    return out;
  }
  for (const item of patch) {
    if (!isMapping(item)) throw new ApiError('Invalid', `the server rejected our request due to an error in our request: ${path}: a list merged on "${key}" needs mappings, not ${JSON.stringify(item)}`);
    const at = out.findIndex((o) => sameKey(o, item, key));
    if (item.$patch === 'delete') {
      if (at >= 0) out.splice(at, 1);
      continue;
    }
    if (at >= 0) out[at] = mergeMap(out[at], item, `${path}[]`, keys);
    else out.push(mergeMap(undefined, item, `${path}[]`, keys));
  }
  return out;
}

/** `$setElementOrder`: the listed items first, in the listed order, then the rest as they were. */
function reorder(list: unknown[], order: unknown[], key: string): unknown[] {
  const id = (v: unknown): string => JSON.stringify(key !== '' && isMapping(v) ? listItemKey(v, key) : v);
  const rank = new Map(order.map((v, i) => [id(v), i]));
  return list
    .map((v, i) => ({ v, i, r: rank.get(id(v)) ?? order.length + i }))
    .sort((a, b) => a.r - b.r)
    .map((e) => e.v);
}

export function clone<T>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

/** Structural equality of JSON values; the order of a mapping's keys does not matter. */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  if (!isMapping(a) || !isMapping(b)) return false;
  const ka = Object.keys(a).filter((k) => a[k] !== undefined);
  const kb = Object.keys(b).filter((k) => b[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}

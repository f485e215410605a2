// Server-side apply (`kubectl apply --server-side`, PATCH application/apply-patch+yaml),
// as far as the lab needs it: the applied configuration is merged into the object like a
// strategic merge patch, and the fields this field manager applied last time but no
// longer applies are removed. What a manager applied is recorded in
// metadata.managedFields in the FieldsV1 format ("f:spec", "k:{\"port\":80}", "v:\"x\"").
// A client-side apply's last-applied annotation counts as this manager's last apply.
// Not modelled: conflicts between managers (every apply behaves as with --force-conflicts)
// and shared ownership (a field another manager also set is still removed).
import { isMapping, type Raw } from '../../config/fields.ts';
import { clone, listItemKey, strategicMergePatch } from './patch.ts';
import type { Obj } from './store.ts';

const LAST_APPLIED_MANAGER = 'kubectl-last-applied';

/** The object after `manager` applied `config` to `existing` (undefined: create). */
export function applyConfig(existing: Obj | undefined, config: Obj, manager: string, mergeKeys: Readonly<Record<string, string>>, apiVersion: string): Obj {
  const fields = fieldSet(config, '', mergeKeys);
  let base: Raw = existing === undefined ? {} : clone(existing);
  const managed = existing !== undefined && Array.isArray(existing.metadata.managedFields) ? existing.metadata.managedFields.filter(isMapping) : [];
  const previous = managed.find((e) => e.manager === manager && e.operation === 'Apply');
  // kubectl-last-applied is kubectl's own manager for the annotation alone; it owns nothing else.
  const before = isMapping(previous?.fieldsV1) ? previous.fieldsV1 : manager === LAST_APPLIED_MANAGER ? undefined : lastApplied(existing, mergeKeys);
  if (before !== undefined) base = removeUnapplied(base, before, fields) as Raw;
  const merged = strategicMergePatch(base, config, mergeKeys) as Obj;
  const entry = { manager, operation: 'Apply', apiVersion, time: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'), fieldsType: 'FieldsV1', fieldsV1: fields };
  merged.metadata.managedFields = [...managed.filter((e) => e !== previous), entry];
  return merged;
}

/**
 * The fields of a client-side apply's last-applied-configuration annotation: kubectl
 * hands their ownership to the server-side apply manager when a user switches to
 * --server-side (csaupgrade), so the first server-side apply removes what the
 * annotation had and the new configuration lacks.
 */
function lastApplied(existing: Obj | undefined, mergeKeys: Readonly<Record<string, string>>): Raw | undefined {
  const annotations = existing !== undefined && isMapping(existing.metadata.annotations) ? existing.metadata.annotations : {};
  const text = annotations['kubectl.kubernetes.io/last-applied-configuration'];
  if (typeof text !== 'string') return undefined;
  try {
    return fieldSet(JSON.parse(text), '', mergeKeys);
  } catch {
    return undefined;
  }
}

/** The FieldsV1 set of the fields `value` sets. */
export function fieldSet(value: unknown, path: string, mergeKeys: Readonly<Record<string, string>>): Raw {
  const out: Raw = {};
  if (!isMapping(value)) return out;
  for (const [key, v] of Object.entries(value)) {
    if (path === '' && (key === 'apiVersion' || key === 'kind')) continue;
    if (path === 'metadata' && (key === 'managedFields' || key === 'resourceVersion' || key === 'creationTimestamp' || key === 'uid')) continue;
    const sub = path === '' ? key : `${path}.${key}`;
    if (Array.isArray(v) && Object.hasOwn(mergeKeys, sub)) {
      const listKey = mergeKeys[sub]!;
      const items: Raw = {};
      for (const item of v) {
        if (listKey === '') items[`v:${JSON.stringify(item)}`] = {};
        else if (isMapping(item)) items[`k:${JSON.stringify(listItemKey(item, listKey))}`] = { '.': {}, ...fieldSet(item, `${sub}[]`, mergeKeys) };
      }
      out[`f:${key}`] = items;
    } else if (isMapping(v)) {
      // An empty mapping (kubectl's `annotations: {}`) sets no field.
      if (Object.keys(v).length > 0) out[`f:${key}`] = fieldSet(v, sub, mergeKeys);
    } else out[`f:${key}`] = {};
  }
  return out;
}

/** Removes from `obj` what `before` holds and `after` does not. */
function removeUnapplied(obj: unknown, before: Raw, after: Raw): unknown {
  if (Array.isArray(obj)) {
    let list = obj;
    for (const [k, sub] of Object.entries(before)) {
      if (k === '.') continue;
      const match = (item: unknown): boolean => {
        if (k.startsWith('v:')) return JSON.stringify(item) === k.slice(2);
        const key = JSON.parse(k.slice(2)) as Raw;
        return isMapping(item) && Object.entries(key).every(([f, x]) => item[f] === x);
      };
      if (!Object.hasOwn(after, k)) list = list.filter((item) => !match(item));
      else if (isMapping(sub)) list = list.map((item) => (match(item) ? removeUnapplied(item, sub, after[k] as Raw) : item));
    }
    return list;
  }
  if (!isMapping(obj)) return obj;
  const out: Raw = { ...obj };
  for (const [k, sub] of Object.entries(before)) {
    if (!k.startsWith('f:')) continue;
    const field = k.slice(2);
    if (!Object.hasOwn(after, k)) delete out[field];
    else if (isMapping(sub) && Object.keys(sub).length > 0 && isMapping(after[k])) out[field] = removeUnapplied(out[field], sub, after[k]);
  }
  return out;
}

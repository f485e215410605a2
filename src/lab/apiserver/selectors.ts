// Label selectors (k8s.io/apimachinery/pkg/labels: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
// `a in (x,y)`, `a notin (x,y)`, `a>1`, `a<1`) and field selectors (`f=v`, `f==v`,
// `f!=v` over the fields each kind's registry lets a client select on).
import type { Raw } from '../../config/fields.ts';
import { ApiError } from './status.ts';

type Op = 'exists' | '!exists' | '=' | '!=' | 'in' | 'notin' | '>' | '<';

export interface Requirement {
  key: string;
  op: Op;
  values: string[];
}

export type Selector = readonly Requirement[];

/** Parses a label selector; an empty string selects everything. Malformed: 400 BadRequest. */
export function parseLabelSelector(text: string): Selector {
  const out: Requirement[] = [];
  for (const part of splitTopLevel(text)) {
    const s = part.trim();
    if (s === '') throw ApiError.badRequest(`unable to parse requirement: empty requirement in label selector ${JSON.stringify(text)}`);
    let m: RegExpExecArray | null;
    if ((m = /^!\s*([^\s!=<>(),]+)$/.exec(s)) !== null) out.push({ key: m[1]!, op: '!exists', values: [] });
    else if ((m = /^([^\s!=<>(),]+)\s+(in|notin)\s*\(([^()]*)\)$/.exec(s)) !== null) {
      out.push({ key: m[1]!, op: m[2] as Op, values: m[3]!.split(',').map((v) => v.trim()) });
    } else if ((m = /^([^\s!=<>(),]+)\s*(==|=|!=|>|<)\s*([^\s!=<>(),]*)$/.exec(s)) !== null) {
      const op = m[2] === '==' ? '=' : (m[2] as Op);
      if ((op === '>' || op === '<') && !/^-?\d+$/.test(m[3]!)) throw ApiError.badRequest(`unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: ${JSON.stringify(s)}`);
      out.push({ key: m[1]!, op, values: [m[3]!] });
    } else if ((m = /^([^\s!=<>(),]+)$/.exec(s)) !== null) out.push({ key: m[1]!, op: 'exists', values: [] });
    else throw ApiError.badRequest(`unable to parse requirement: ${JSON.stringify(s)} in label selector ${JSON.stringify(text)}`);
  }
  return out;
}

/** Splits at commas outside parentheses ("a in (x,y),b" -> "a in (x,y)", "b"). */
function splitTopLevel(text: string): string[] {
  if (text.trim() === '') return [];
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts;
}

export function matchesLabels(selector: Selector, labels: Readonly<Record<string, string>>): boolean {
  for (const r of selector) {
    const has = Object.hasOwn(labels, r.key);
    const value = labels[r.key];
    switch (r.op) {
      case 'exists': if (!has) return false; break;
      case '!exists': if (has) return false; break;
      case '=': if (!has || value !== r.values[0]) return false; break;
      // As in Kubernetes, `a!=b` and `a notin (..)` also select objects without the label.
      case '!=': if (has && value === r.values[0]) return false; break;
      case 'in': if (!has || !r.values.includes(value!)) return false; break;
      case 'notin': if (has && r.values.includes(value!)) return false; break;
      case '>': case '<': {
        if (!has || !/^-?\d+$/.test(value!)) return false;
        const n = Number(value);
        const bound = Number(r.values[0]);
        if (r.op === '>' ? !(n > bound) : !(n < bound)) return false;
        break;
      }
    }
  }
  return true;
}

/**
 * The fields each resource lets clients select on besides metadata.name and
 * metadata.namespace (the registries' GetAttrs / field label conversion functions).
 */
const SELECTABLE_FIELDS: Readonly<Record<string, readonly string[]>> = {
  pods: ['spec.nodeName', 'spec.restartPolicy', 'spec.schedulerName', 'spec.serviceAccountName', 'spec.hostNetwork', 'status.phase', 'status.podIP', 'status.nominatedNodeName'],
  nodes: ['spec.unschedulable'],
  namespaces: ['status.phase'],
  secrets: ['type'],
  events: ['involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid', 'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason', 'reportingComponent', 'source', 'type'],
};

export interface FieldRequirement {
  field: string;
  equal: boolean;
  value: string;
}

export function parseFieldSelector(text: string, resource: string): FieldRequirement[] {
  const out: FieldRequirement[] = [];
  for (const part of splitTopLevel(text)) {
    const m = /^\s*([^\s!=]+)\s*(==|=|!=)\s*(.*?)\s*$/.exec(part);
    if (m === null) throw ApiError.badRequest(`invalid selector: '${text}'; can't understand '${part}'`);
    const field = m[1]!;
    if (field !== 'metadata.name' && field !== 'metadata.namespace' && !(SELECTABLE_FIELDS[resource] ?? []).includes(field)) {
      throw ApiError.badRequest(`field label not supported: ${field}`);
    }
    out.push({ field, equal: m[2] !== '!=', value: m[3]! });
  }
  return out;
}

export function matchesFields(requirements: readonly FieldRequirement[], obj: Raw): boolean {
  for (const r of requirements) {
    if ((fieldValue(obj, r.field) === r.value) !== r.equal) return false;
  }
  return true;
}

/** A field's value as the API compares it: a string, '' when absent, booleans as "true"/"false". */
function fieldValue(obj: Raw, path: string): string {
  let v: unknown = obj;
  for (const part of path.split('.')) v = typeof v === 'object' && v !== null ? (v as Raw)[part] : undefined;
  if (v === undefined || v === null) return path === 'spec.unschedulable' || path === 'spec.hostNetwork' ? 'false' : '';
  return String(v);
}

// Reading a YAML or JSON document field by field: manifests, the agent config, the CNI
// network config and lab topologies all use this one reader. Every read knows its field
// path ("spec.ports[0].port") and records a problem instead of throwing, so one pass
// reports everything wrong with a document. Whether unknown fields are errors is the
// reader's choice: real manifests carry many fields Tapir has no use for (images,
// resources, status written by others), a config file of Tapir's own does not.
import { parseCidr, parseCidr6, parseIpv4, parseIpv6, type Cidr, type Cidr6 } from '../wire/address.ts';
import { parseGoDuration } from './duration.ts';
import { flat } from './compact.ts';

export type Raw = Record<string, unknown>;

export function isMapping(value: unknown): value is Raw {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The short type name of a YAML value, for "must be X, not Y" messages. */
export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/** Collects "<prefix>: <path>: <message>" lines for one document. */
export class Problems {
  prefix: string;
  readonly list: string[];

  constructor(prefix: string, list: string[]) {
    this.prefix = prefix;
    this.list = list;
  }

  /** "<prefix>: <path>: <message>"; an empty prefix or path is left out with its colon. */
  add(path: string, message: string): void {
    const where = [this.prefix, path].filter((part) => part !== '').join(': ');
    this.list.push(where === '' ? message : `${where}: ${message}`);
  }
}

/**
 * A view of one mapping at `path`. Getters return the default when the field is absent
 * (or null, which YAML writers use for "unset") and record a problem when it has the
 * wrong type or value.
 */
export class Fields {
  readonly path: string;
  readonly value: Raw;
  readonly problems: Problems;

  constructor(value: unknown, path: string, problems: Problems) {
    this.path = path;
    this.problems = problems;
    if (isMapping(value)) this.value = value;
    else {
      problems.add(path, `must be a mapping, not ${typeName(value)}`);
      this.value = {};
    }
  }

  pathOf(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.value[key] !== undefined && this.value[key] !== null;
  }

  fail(key: string, message: string): void {
    this.problems.add(this.pathOf(key), message);
  }

  missing(key: string): void {
    this.fail(key, 'required field is missing');
  }

  string(key: string, required = false): string {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return '';
    }
    if (typeof v !== 'string') {
      this.fail(key, `must be a string, not ${typeName(v)}`);
      return '';
    }
    if (required && v === '') this.missing(key);
    return flat(v);
  }

  /** One of `allowed`; `fallback` when absent. */
  choice<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.string(key);
    if (v === '') return fallback;
    if (!(allowed as readonly string[]).includes(v)) {
      this.fail(key, `${JSON.stringify(v)} is not one of ${allowed.join(', ')}`);
      return fallback;
    }
    return v as T;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.value[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') {
      this.fail(key, `must be true or false, not ${typeName(v)}`);
      return fallback;
    }
    return v;
  }

  /** An integer in [min, max]; `fallback` when absent (a problem when required). */
  int(key: string, min: number, max: number, fallback: number, required = false): number {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return fallback;
    }
    return checkInt(v, this.pathOf(key), min, max, this.problems) ?? fallback;
  }

  /**
   * A Go duration string ("15m0s", "1h", "500ms") in milliseconds, at least `minMs`;
   * undefined when absent or wrong (a problem then).
   */
  duration(key: string, minMs = 0): number | undefined {
    const v = this.value[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') {
      this.fail(key, `must be a duration string such as "30s" or "15m0s", not ${typeName(v)}`);
      return undefined;
    }
    const ms = parseGoDuration(v);
    if (ms === undefined) {
      this.fail(key, `${JSON.stringify(v)} is not a duration: write numbers with units ns, us, ms, s, m, h, as in "30s", "1h" or "2h45m0s"`);
      return undefined;
    }
    if (ms < minMs) {
      this.fail(key, `${JSON.stringify(v)} is too short: at least ${minMs === 0 ? '0s' : `${minMs / 1000}s`}`);
      return undefined;
    }
    return ms;
  }

  /** A nested mapping, or undefined when absent. */
  map(key: string, required = false): Fields | undefined {
    if (!this.has(key)) {
      if (required) this.missing(key);
      return undefined;
    }
    return new Fields(this.value[key], this.pathOf(key), this.problems);
  }

  /** The raw items of a list, with their paths; [] when absent. */
  list(key: string, required = false): { value: unknown; path: string }[] {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return [];
    }
    if (!Array.isArray(v)) {
      this.fail(key, `must be a list, not ${typeName(v)}`);
      return [];
    }
    if (required && v.length === 0) this.fail(key, 'must not be empty');
    return v.map((value, i) => ({ value, path: `${this.pathOf(key)}[${i}]` }));
  }

  /** A list of mappings. */
  maps(key: string, required = false): Fields[] {
    return this.list(key, required).map((item) => new Fields(item.value, item.path, this.problems));
  }

  strings(key: string): string[] {
    const out: string[] = [];
    for (const item of this.list(key)) {
      if (typeof item.value === 'string') out.push(flat(item.value));
      else this.problems.add(item.path, `must be a string, not ${typeName(item.value)}`);
    }
    return out;
  }

  /** An IPv4 address as a number; undefined when absent (a problem when required) or invalid. */
  ipv4(key: string, required = false): number | undefined {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return undefined;
    }
    return checkIpv4(v, this.pathOf(key), this.problems) ? parseIpv4(v as string) : undefined;
  }

  /** An IPv4 prefix ("10.244.1.0/24"); undefined when absent (a problem when required) or invalid. */
  cidr(key: string, required = false): Cidr | undefined {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return undefined;
    }
    return checkCidr(v, this.pathOf(key), this.problems);
  }

  /** An IPv6 address as 16 bytes; undefined when absent (a problem when required) or invalid. */
  ipv6(key: string, required = false): Uint8Array | undefined {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return undefined;
    }
    return checkIpv6(v, this.pathOf(key), this.problems);
  }

  /**
   * An IPv6 prefix ("fd00:10:244:1::/64"); undefined when absent (a problem when
   * required) or invalid. `strict`: host bits are a problem (a network, as Kubernetes
   * requires of --cluster-cidr and podCIDRs).
   */
  cidr6(key: string, required = false, strict = false): Cidr6 | undefined {
    const v = this.value[key];
    if (v === undefined || v === null) {
      if (required) this.missing(key);
      return undefined;
    }
    return checkCidr6(v, this.pathOf(key), this.problems, strict);
  }

  /**
   * Reports every key not in `known`, for input whose every field is Tapir's (its own
   * config files), where a misspelt key would otherwise be ignored without a word.
   * `hints` replaces the message for keys known to be mistakes (a renamed field).
   */
  rejectUnknown(known: readonly string[], hints: Readonly<Record<string, string>> = {}): void {
    for (const key of Object.keys(this.value)) {
      if (known.includes(key)) continue;
      this.fail(key, Object.hasOwn(hints, key) ? hints[key]! : `unknown field; the fields here are ${known.join(', ')}`);
    }
  }

  /** IPv4 addresses in dotted form; invalid ones are reported and left out. */
  ipv4s(key: string): string[] {
    const out: string[] = [];
    for (const item of this.list(key)) {
      if (checkIpv4(item.value, item.path, this.problems)) out.push(item.value as string);
    }
    return out;
  }

  /** A map of string to string (labels, annotations, selectors). */
  stringMap(key: string, checkKey?: (k: string) => boolean, checkValue?: (v: string) => boolean): Record<string, string> {
    const out: Record<string, string> = {};
    const sub = this.map(key);
    if (sub === undefined) return out;
    for (const [k, v] of Object.entries(sub.value)) {
      const path = `${sub.path}[${JSON.stringify(k)}]`;
      if (typeof v !== 'string') {
        this.problems.add(path, `must be a string, not ${typeName(v)}`);
        continue;
      }
      if (checkKey !== undefined && !checkKey(k)) this.problems.add(path, 'is not a valid label key (optional DNS prefix and "/", then up to 63 letters, digits, "-", "_", ".")');
      else if (checkValue !== undefined && !checkValue(v)) this.problems.add(path, `${JSON.stringify(v)} is not a valid label value (up to 63 letters, digits, "-", "_", ".")`);
      else out[k] = flat(v);
    }
    return out;
  }
}

export function checkInt(v: unknown, path: string, min: number, max: number, problems: Problems): number | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    problems.add(path, `must be an integer, not ${typeName(v)}`);
    return undefined;
  }
  if (v < min || v > max) {
    problems.add(path, `${v} is out of range ${min}-${max}`);
    return undefined;
  }
  return v;
}

export function checkIpv4(v: unknown, path: string, problems: Problems): boolean {
  if (v === undefined || v === null) {
    problems.add(path, 'required field is missing');
    return false;
  }
  if (typeof v !== 'string') {
    problems.add(path, `must be an IPv4 address string, not ${typeName(v)}`);
    return false;
  }
  if (parseIpv4(v) === undefined) {
    problems.add(path, v.includes(':') ? `${JSON.stringify(v)} is an IPv6 address; Tapir supports IPv4 only` : `${JSON.stringify(v)} is not a valid IPv4 address`);
    return false;
  }
  return true;
}

export function checkCidr(v: unknown, path: string, problems: Problems): Cidr | undefined {
  if (typeof v !== 'string') {
    problems.add(path, `must be an IPv4 prefix string such as "10.244.1.0/24", not ${typeName(v)}`);
    return undefined;
  }
  const cidr = parseCidr(v);
  if (cidr === undefined) {
    problems.add(path, v.includes(':') ? `${JSON.stringify(v)} is an IPv6 prefix; Tapir supports IPv4 only` : `${JSON.stringify(v)} is not an IPv4 prefix such as "10.244.1.0/24"`);
  }
  return cidr;
}

export function checkIpv6(v: unknown, path: string, problems: Problems): Uint8Array | undefined {
  if (typeof v !== 'string') {
    problems.add(path, `must be an IPv6 address string, not ${typeName(v)}`);
    return undefined;
  }
  const bytes = v.includes(':') ? parseIpv6(v) : null;
  if (bytes === null) problems.add(path, parseIpv4(v) !== undefined ? `${JSON.stringify(v)} is an IPv4 address; this field takes IPv6` : `${JSON.stringify(v)} is not a valid IPv6 address`);
  return bytes ?? undefined;
}

export function checkCidr6(v: unknown, path: string, problems: Problems, strict = false): Cidr6 | undefined {
  if (typeof v !== 'string') {
    problems.add(path, `must be an IPv6 prefix string such as "fd00:10:244:1::/64", not ${typeName(v)}`);
    return undefined;
  }
  const cidr = parseCidr6(v);
  if (cidr === undefined) {
    problems.add(path, parseCidr(v) !== undefined ? `${JSON.stringify(v)} is an IPv4 prefix; this field takes IPv6` : `${JSON.stringify(v)} is not an IPv6 prefix such as "fd00:10:244:1::/64"`);
    return undefined;
  }
  if (strict && parseCidr6(v, true) === undefined) {
    problems.add(path, `${JSON.stringify(v)} has host bits set: give the network, ${cidr}`);
    return undefined;
  }
  return cidr;
}

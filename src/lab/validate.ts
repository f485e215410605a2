// Strict field reading for the topology YAML: every lookup records its path, unknown
// keys are errors, and problems are collected (not thrown) so one run reports them all.
import { TapirError } from '../errors/tapir-error.ts';

const LAB_ERROR_CODES = {
  AGENT_FAILED: 'TAPIR_LAB_AGENT_FAILED',
  AGENT_TIMEOUT: 'TAPIR_LAB_AGENT_TIMEOUT',
  AMBIGUOUS_TARGET: 'TAPIR_LAB_AMBIGUOUS_TARGET',
  BAD_NAME: 'TAPIR_LAB_BAD_NAME',
  BUSY: 'TAPIR_LAB_BUSY',
  CNI_FAILED: 'TAPIR_LAB_CNI_FAILED',
  COMMAND_FAILED: 'TAPIR_LAB_COMMAND_FAILED',
  DAEMON_FAILED: 'TAPIR_LAB_DAEMON_FAILED',
  DOWN_INCOMPLETE: 'TAPIR_LAB_DOWN_INCOMPLETE',
  EXEC_FAILED: 'TAPIR_LAB_EXEC_FAILED',
  EXISTS: 'TAPIR_LAB_EXISTS',
  INTERRUPTED: 'TAPIR_LAB_INTERRUPTED',
  MANIFEST_INVALID: 'TAPIR_LAB_MANIFEST_INVALID',
  NOT_FOUND: 'TAPIR_LAB_NOT_FOUND',
  NOT_READY: 'TAPIR_LAB_NOT_READY',
  NO_TARGET: 'TAPIR_LAB_NO_TARGET',
  NO_TRAFFIC: 'TAPIR_LAB_NO_TRAFFIC',
  POD_CIDR_FULL: 'TAPIR_LAB_POD_CIDR_FULL',
  STATE_CORRUPT: 'TAPIR_LAB_STATE_CORRUPT',
  STATE_VERSION: 'TAPIR_LAB_STATE_VERSION',
  TOPOLOGY_INVALID: 'TAPIR_LAB_TOPOLOGY_INVALID',
  TOPOLOGY_READ: 'TAPIR_LAB_TOPOLOGY_READ',
  WORKLOAD_FAILED: 'TAPIR_LAB_WORKLOAD_FAILED',
  WORKLOAD_TIMEOUT: 'TAPIR_LAB_WORKLOAD_TIMEOUT',
} as const;

/** An error of the lab with a stable code (LAB_ERROR_CODES) and a message for the user. */
export class LabError extends TapirError {
  readonly code: (typeof LAB_ERROR_CODES)[keyof typeof LAB_ERROR_CODES];
  constructor(reason: keyof typeof LAB_ERROR_CODES, message: string) {
    super(message);
    this.name = 'LabError';
    this.code = LAB_ERROR_CODES[reason];
  }

  /** 130 after Ctrl-C: the shell's code for "ended by SIGINT", as if it had not been caught. */
  override get exitCode(): number {
    return this.code === LAB_ERROR_CODES.INTERRUPTED ? 130 : 1;
  }
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
// Kubernetes label name and value syntax (apimachinery validation.IsQualifiedName/IsValidLabelValue).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

export function isDns1123Label(text: string): boolean {
  return text.length <= 63 && DNS1123_LABEL.test(text);
}

function isQualifiedName(text: string): boolean {
  const slash = text.indexOf('/');
  const name = slash < 0 ? text : text.slice(slash + 1);
  if (slash >= 0) {
    const prefix = text.slice(0, slash);
    if (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)) return false;
  }
  return name.length <= 63 && LABEL_NAME.test(name);
}

export function isLabelValue(text: string): boolean {
  return text === '' || (text.length <= 63 && LABEL_NAME.test(text));
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A view of one YAML mapping at `path`; reports into the shared `errors` list. */
export class Fields {
  readonly path: string;
  readonly #value: Record<string, unknown>;
  readonly #errors: string[];
  readonly #known = new Set<string>();

  constructor(value: unknown, path: string, errors: string[]) {
    this.path = path;
    this.#errors = errors;
    if (isMapping(value)) this.#value = value;
    else {
      errors.push(`${path === '' ? '(top level)' : path}: must be a mapping`);
      this.#value = {};
    }
  }

  pathOf(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    this.#known.add(key);
    return this.#value[key] !== undefined;
  }

  raw(key: string): unknown {
    this.#known.add(key);
    return this.#value[key];
  }

  error(key: string, message: string): void {
    this.#errors.push(`${this.pathOf(key)}: ${message}`);
  }

  /** A string field; `fallback` undefined makes it required. */
  string(key: string, fallback: string | undefined, check?: (s: string) => boolean, message = 'is not valid'): string {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      if (fallback === undefined) this.error(key, 'is required');
      return fallback ?? '';
    }
    if (typeof value !== 'string') {
      this.error(key, 'must be a string');
      return fallback ?? '';
    }
    if (check !== undefined && !check(value)) this.error(key, message);
    return value;
  }

  optionalString(key: string, check?: (s: string) => boolean, message = 'is not valid'): string | undefined {
    if (!this.has(key)) return undefined;
    return this.string(key, '', check, message);
  }

  enumValue<T extends string>(key: string, values: readonly T[], fallback: T): T {
    const value = this.raw(key);
    if (value === undefined || value === null) return fallback;
    if (typeof value !== 'string' || !(values as readonly string[]).includes(value)) {
      this.error(key, `must be one of ${values.join(', ')}`);
      return fallback;
    }
    return value as T;
  }

  optionalEnum<T extends string>(key: string, values: readonly T[]): T | undefined {
    return this.has(key) ? this.enumValue(key, values, values[0]!) : undefined;
  }

  integer(key: string, fallback: number, min: number, max: number, required = false): number {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      if (required) this.error(key, 'is required');
      return fallback;
    }
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.error(key, `must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return value;
  }

  object(key: string): Fields | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) return undefined;
    if (!isMapping(value)) {
      this.error(key, 'must be a mapping');
      return undefined;
    }
    return new Fields(value, this.pathOf(key), this.#errors);
  }

  list(key: string, required: boolean): unknown[] | undefined {
    const value = this.raw(key);
    if (value === undefined || value === null) {
      if (required) this.error(key, 'is required');
      return undefined;
    }
    if (!Array.isArray(value)) {
      this.error(key, 'must be a list');
      return undefined;
    }
    return value;
  }

  /** A command: a non-empty list of strings (argv), or one string run with `sh -c`. */
  command(key: string): string[] {
    const value = this.raw(key);
    if (typeof value === 'string' && value.trim() !== '') return ['sh', '-c', value];
    if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')) return value as string[];
    this.error(key, value === undefined ? 'is required' : 'must be a non-empty list of strings or a shell command string');
    return [];
  }

  /** Every key of this mapping as a string-to-string map (env). */
  stringMap(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(this.#value)) {
      this.#known.add(key);
      if (typeof value === 'string') out[key] = value;
      else this.error(key, 'must be a string (quote numbers and booleans)');
    }
    return out;
  }

  /** Reports every key nobody asked for: a typo must not become a silent default. */
  rejectUnknown(): void {
    for (const key of Object.keys(this.#value)) {
      if (!this.#known.has(key)) this.error(key, `unknown field (expected one of: ${[...this.#known].join(', ')})`);
    }
  }
}

/** Kubernetes label syntax for keys and values; reports at `<path>.<key>`. */
export function validateLabels(labels: Fields): Record<string, string> {
  const out = labels.stringMap();
  for (const [key, value] of Object.entries(out)) {
    if (!isQualifiedName(key)) labels.error(key, 'label key must be a qualified name ([prefix/]name, name at most 63 of [A-Za-z0-9-_.])');
    else if (!isLabelValue(value)) labels.error(key, 'label value must be at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric');
  }
  return out;
}

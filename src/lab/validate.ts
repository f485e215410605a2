// The lab's error, and the strictness its own files add to the shared field reader
// (src/config/fields.ts): unknown keys are errors.
import type { Fields } from '../config/fields.ts';

/** An error of the lab with a stable code (TAPIR_LAB_*) and a message for the user. */
export class LabError extends Error {
  readonly code: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = 'LabError';
    this.code = `TAPIR_LAB_${reason}`;
  }
}

/**
 * Reports every key of `f` that is not in `known`: in a file of Tapir's own (a topology)
 * a typo must not become a silent default.
 */
export function rejectUnknown(f: Fields, known: readonly string[]): void {
  for (const key of Object.keys(f.value)) {
    if (!known.includes(key)) f.fail(key, `unknown field (expected one of: ${known.join(', ')})`);
  }
}

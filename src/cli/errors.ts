// An error meant for the person at the terminal (a bad option, a missing file): printed
// as `tapir: message (CODE)` without a stack trace, like every TapirError.
import { TapirError } from '../errors/tapir-error.ts';

export class CliError extends TapirError {
  readonly code = 'TAPIR_CLI';
  readonly #exitCode: number;

  /** `exitCode` 2 for usage errors (a bad or missing option), as getopt-style tools do. */
  constructor(message: string, exitCode = 1) {
    super(message);
    this.#exitCode = exitCode;
  }

  override get exitCode(): number {
    return this.#exitCode;
  }
}

// An error meant for the person at the terminal: printed without a stack trace.
export class CliError extends Error {
  readonly code = 'TAPIR_CLI';
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

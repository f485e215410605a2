// The one base class of Tapir's errors, as undici's UndiciError: every error the project
// throws on purpose is a TapirError subclass, one class per condition a caller branches
// on, each with a constant `code` written out where the class is declared (grep for it;
// no code is put together from pieces at run time). The message says what was wrong,
// where (file, document, field, device) and what to do; `code` is for logs and scripts.
//
// Codes that belong to a protocol stay what the protocol says: errno names on
// DeviceError ('ENOENT'), the control socket's wire codes on ControlError ('NOT_FOUND').
// Numbers a protocol defines (the CNI spec's error codes) are separate fields of their
// class, next to `code`.
//
// Bad packets are never errors: the datapath drops and counts them (see wire/).

export abstract class TapirError extends Error {
  /** Stable and greppable: the same condition always has the same code. */
  abstract readonly code: string;

  /** The exit status of a `tapir` command that ends with this error (see src/cli/main.ts). */
  get exitCode(): number {
    return 1;
  }

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    // The subclass's name ('ControlError'), for stack traces and console.error.
    this.name = new.target.name;
  }
}

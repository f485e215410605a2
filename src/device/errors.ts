// Errors from the device layer. A failed system call becomes a DeviceError shaped like
// Node's own system errors: `errno` (number), `code` (the errno name, e.g. 'ENOENT',
// stable across kernels and the thing to branch on) and `syscall` (what failed: 'open',
// 'TUNSETIFF', 'RTM_NEWLINK', ...). EAGAIN is never an error here: a batch call that
// finds nothing returns 0. The errno name is DeviceError's TapirError code: a constant
// of the kernel's, as Node's own system errors have it.
import { TapirError } from '../errors/tapir-error.ts';

export class DeviceError extends TapirError {
  readonly errno: number;
  readonly code: string;
  readonly syscall: string;

  // Called by the native addon (native/src/errors.cc) with the fields already filled.
  constructor(message: string, errno: number, code: string, syscall: string) {
    super(message);
    this.errno = errno;
    this.code = code;
    this.syscall = syscall;
  }
}

/** The addon is not built (or not loadable on this platform). */
export class NativeAddonMissingError extends TapirError {
  readonly code = 'TAPIR_NATIVE_MISSING';
  constructor(path: string, cause: unknown) {
    super(`cannot load the native addon ${path}: ${(cause as Error).message}; build it with: bash scripts/build-native.sh`, { cause });
  }
}

// CNI errors: the well-known codes of the CNI spec (section "Error") and ours (100+).
// Every error printed says what was wrong in `msg` and where (variable, field, file,
// device) in `details`, because the person reading it is looking at a kubelet event.
// The spec's number is `cniCode` (the `code` of the JSON error on stdout); `code` is
// the TapirError code shared by every CNI failure.
import { TapirError } from '../errors/tapir-error.ts';

export const CniCode = {
  incompatibleVersion: 1,
  /** The message must name the key and value of the unsupported field (spec). */
  unsupportedField: 2,
  unknownContainer: 3,
  /** The message must name the invalid variables (spec). */
  invalidEnv: 4,
  io: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD (1.1.0). */
  notAvailable: 50,
  /** STATUS: not available, and existing containers may have limited connectivity (1.1.0). */
  notAvailableLimited: 51,
  // Plugin-specific codes start at 100 (spec: 0-99 are reserved).
  ipamExhausted: 100,
  /** The agent understood the request and refused it (its error code is in details). */
  agentRefused: 101,
  /** CHECK found the pod's interface, address or allocation not as the ADD left it. */
  checkFailed: 102,
  /** A delegated plugin failed without a parsable error. */
  delegateFailed: 103,
  internal: 999,
} as const;

export class CniError extends TapirError {
  readonly code = 'TAPIR_CNI';
  /** The CNI spec's error code, printed as `code` in the error JSON. */
  readonly cniCode: number;
  readonly details: string;
  /** `cniCode` is one of CniCode, or the code a delegated plugin answered with. */
  constructor(cniCode: number, msg: string, details = '') {
    super(msg);
    this.cniCode = cniCode;
    this.details = details;
  }
}

// The lab's error: one class with a constant code per condition.
import { TapirError } from '../errors/tapir-error.ts';

const LAB_ERROR_CODES = {
  AGENT_FAILED: 'TAPIR_LAB_AGENT_FAILED',
  AGENT_TIMEOUT: 'TAPIR_LAB_AGENT_TIMEOUT',
  AMBIGUOUS_TARGET: 'TAPIR_LAB_AMBIGUOUS_TARGET',
  API_FAILED: 'TAPIR_LAB_API_FAILED',
  BAD_NAME: 'TAPIR_LAB_BAD_NAME',
  BUSY: 'TAPIR_LAB_BUSY',
  CNI_FAILED: 'TAPIR_LAB_CNI_FAILED',
  COMMAND_FAILED: 'TAPIR_LAB_COMMAND_FAILED',
  DAEMON_FAILED: 'TAPIR_LAB_DAEMON_FAILED',
  DNS_FAILED: 'TAPIR_LAB_DNS_FAILED',
  DOWN_INCOMPLETE: 'TAPIR_LAB_DOWN_INCOMPLETE',
  EXEC_FAILED: 'TAPIR_LAB_EXEC_FAILED',
  EXISTS: 'TAPIR_LAB_EXISTS',
  HOST_NETWORK: 'TAPIR_LAB_HOST_NETWORK',
  INTERRUPTED: 'TAPIR_LAB_INTERRUPTED',
  MANIFEST_INVALID: 'TAPIR_LAB_MANIFEST_INVALID',
  NO_ADDRESS: 'TAPIR_LAB_NO_ADDRESS',
  NOT_FOUND: 'TAPIR_LAB_NOT_FOUND',
  NOT_READY: 'TAPIR_LAB_NOT_READY',
  NOT_SCHEDULED: 'TAPIR_LAB_NOT_SCHEDULED',
  NO_TARGET: 'TAPIR_LAB_NO_TARGET',
  NO_TRAFFIC: 'TAPIR_LAB_NO_TRAFFIC',
  POD_CIDR_FULL: 'TAPIR_LAB_POD_CIDR_FULL',
  POD_START_FAILED: 'TAPIR_LAB_POD_START_FAILED',
  POD_STOP_FAILED: 'TAPIR_LAB_POD_STOP_FAILED',
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

/**
 * Reports every key of `f` that is not in `known`: in a file of Tapir's own (a topology)
 * a typo must not become a silent default.
 */

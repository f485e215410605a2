// Errors of the lab API server, answered as Kubernetes `Status` objects with the
// reason, HTTP code and message wording of k8s.io/apimachinery/pkg/api/errors, because
// clients (client-go, @kubernetes/client-node, kubectl) branch on reason and code and
// tests compare messages with a real cluster's.
import { TapirError } from '../../errors/tapir-error.ts';
import type { Raw } from '../../config/fields.ts';

const REASONS = {
  BadRequest: { http: 400, code: 'TAPIR_LAB_API_BAD_REQUEST' },
  Unauthorized: { http: 401, code: 'TAPIR_LAB_API_UNAUTHORIZED' },
  Forbidden: { http: 403, code: 'TAPIR_LAB_API_FORBIDDEN' },
  NotFound: { http: 404, code: 'TAPIR_LAB_API_NOT_FOUND' },
  MethodNotAllowed: { http: 405, code: 'TAPIR_LAB_API_METHOD_NOT_ALLOWED' },
  NotAcceptable: { http: 406, code: 'TAPIR_LAB_API_NOT_ACCEPTABLE' },
  AlreadyExists: { http: 409, code: 'TAPIR_LAB_API_ALREADY_EXISTS' },
  Conflict: { http: 409, code: 'TAPIR_LAB_API_CONFLICT' },
  Expired: { http: 410, code: 'TAPIR_LAB_API_EXPIRED' },
  UnsupportedMediaType: { http: 415, code: 'TAPIR_LAB_API_UNSUPPORTED_MEDIA_TYPE' },
  Invalid: { http: 422, code: 'TAPIR_LAB_API_INVALID' },
  InternalError: { http: 500, code: 'TAPIR_LAB_API_INTERNAL' },
} as const;

export type Reason = keyof typeof REASONS;

export interface Cause {
  reason: string;
  message: string;
  field: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  causes?: Cause[];
}

export class ApiError extends TapirError {
  readonly code: (typeof REASONS)[Reason]['code'];
  readonly reason: Reason;
  readonly details: StatusDetails | undefined;

  constructor(reason: Reason, message: string, details?: StatusDetails) {
    super(message);
    this.reason = reason;
    this.code = REASONS[reason].code;
    this.details = details;
  }

  get httpStatus(): number {
    return REASONS[this.reason].http;
  }

  /** The `Status` object the API answers with. */
  toStatus(): Raw {
    const status: Raw = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason };
    if (this.details !== undefined) status.details = this.details;
    status.code = this.httpStatus;
    return status;
  }

  /** `qualified` is the resource with its group ("pods", "endpointslices.discovery.k8s.io"). */
  static notFound(qualified: string, name: string): ApiError {
    return new ApiError('NotFound', `${qualified} "${name}" not found`, { name, ...splitQualified(qualified) });
  }

  static alreadyExists(qualified: string, name: string): ApiError {
    return new ApiError('AlreadyExists', `${qualified} "${name}" already exists`, { name, ...splitQualified(qualified) });
  }

  static conflict(qualified: string, name: string, why = 'the object has been modified; please apply your changes to the latest version and try again'): ApiError {
    return new ApiError('Conflict', `Operation cannot be fulfilled on ${qualified} "${name}": ${why}`, { name, ...splitQualified(qualified) });
  }

  /** `Service "web" is invalid: spec.ports[0].port: Invalid value: ...` with one cause per field. */
  static invalid(kind: string, group: string, name: string, causes: Cause[]): ApiError {
    const list = causes.map((c) => (c.field === '' ? c.message : `${c.field}: ${c.message}`));
    const text = list.length === 1 ? list[0]! : `[${list.join(', ')}]`;
    return new ApiError('Invalid', `${kind} "${name}" is invalid: ${text}`, { name, group, kind, causes });
  }

  static gone(rv: number, oldest: number): ApiError {
    return new ApiError('Expired', `too old resource version: ${rv} (${oldest})`);
  }

  static methodNotAllowed(): ApiError {
    return new ApiError('MethodNotAllowed', 'the server does not allow this method on the requested resource');
  }

  static badRequest(message: string): ApiError {
    return new ApiError('BadRequest', message);
  }
}

function splitQualified(qualified: string): { kind: string; group: string } {
  const dot = qualified.indexOf('.');
  return dot < 0 ? { kind: qualified, group: '' } : { kind: qualified.slice(0, dot), group: qualified.slice(dot + 1) };
}

/** The journal or the server's files are damaged or unusable. */
export class LabApiServerError extends TapirError {
  readonly code = 'TAPIR_LAB_APISERVER_FAILED';
}

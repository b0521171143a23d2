// Kubernetes `Status` objects and the error type the fake server throws internally.

export interface StatusDetails {
  name?: string
  group?: string
  kind?: string
  causes?: Array<{ reason?: string; message?: string; field?: string }>
  retryAfterSeconds?: number
}

export interface K8sStatus {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, unknown>
  status: 'Failure' | 'Success'
  message: string
  reason: string
  details?: StatusDetails
  code: number
}

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  406: 'NotAcceptable',
  409: 'Conflict',
  410: 'Expired',
  413: 'RequestEntityTooLarge',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
}

export function reasonFor(code: number): string {
  return REASONS[code] ?? (code >= 500 ? 'InternalError' : 'Unknown')
}

export function makeStatus(code: number, message: string, reason?: string, details?: StatusDetails): K8sStatus {
  const s: K8sStatus = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: reason ?? reasonFor(code),
    code,
  }
  if (details !== undefined) s.details = details
  return s
}

/** Thrown inside the fake; the HTTP layer turns it into a Status response. */
export class ApiError extends Error {
  readonly status: K8sStatus
  constructor(code: number, message: string, reason?: string, details?: StatusDetails) {
    super(message)
    this.status = makeStatus(code, message, reason, details)
  }
  get code(): number {
    return this.status.code
  }
}

// One table of every error a client can see: OCI error code, HTTP status and default message.
// Everything that leaves the proxy as an error goes through RegistryError and app.onError.

export const ErrorCodes = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  RANGE_INVALID: { status: 416, message: 'requested range not satisfiable' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported: trustpull is a read-only proxy' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  BAD_REQUEST: { status: 400, message: 'bad request' },
  NOT_FOUND: { status: 404, message: 'not found' },
  UPSTREAM_ERROR: { status: 502, message: 'upstream registry error' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
  UPSTREAM_TIMEOUT: { status: 504, message: 'upstream registry timed out' },
  INTERNAL: { status: 500, message: 'internal error' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ErrorCodes

/**
 * An error with a stable string code that tests, metrics and reports match on, and an optional
 * cause. Subclasses give the code type and their own `name`.
 */
export class CodedError<Code extends string> extends Error {
  readonly code: Code

  constructor(code: Code, message: string, options: { cause?: unknown } = {}) {
    super(message, options)
    this.code = code
  }
}

/** The base of an error class whose errors all carry one code: `class GlobError extends codedError('GLOB_INVALID', 'GlobError') {}`. */
export function codedError<Code extends string>(code: Code, name: string) {
  return class extends CodedError<Code> {
    override name = name

    constructor(message: string, options: { cause?: unknown } = {}) {
      super(code, message, options)
    }
  }
}

/** Raised for any configuration that cannot be served safely; start-up stops with its message (exit 2). */
export class ConfigError extends codedError('CONFIG_INVALID', 'ConfigError') {}

export class RegistryError extends CodedError<ErrorCode> {
  readonly detail: unknown
  readonly headers: Record<string, string>

  constructor(code: ErrorCode, message?: string, options: { detail?: unknown; headers?: Record<string, string>; cause?: unknown } = {}) {
    super(code, message ?? ErrorCodes[code].message, { cause: options.cause })
    this.name = 'RegistryError'
    this.detail = options.detail
    this.headers = options.headers ?? {}
  }

  get status(): number {
    return ErrorCodes[this.code].status
  }

  /** The OCI distribution error body. */
  body(): { errors: { code: string; message: string; detail?: unknown }[] } {
    const error: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message }
    if (this.detail !== undefined) error.detail = this.detail
    return { errors: [error] }
  }
}

/**
 * A body or document over a configured size limit. To a client it is an upstream error like any
 * other; inside, callers that treat "too big" differently (a signature document, discovery) test
 * for this class, never for text in the client-visible detail.
 */
export class LimitExceededError extends RegistryError {
  readonly limit: number

  constructor(message: string, limit: number) {
    super('UPSTREAM_ERROR', message)
    this.name = 'LimitExceededError'
    this.limit = limit
  }
}

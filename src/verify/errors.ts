// Failures of verification carry a stable VerifyCode; sigstore-js errors are translated here, once.
import { ValidationError } from '@sigstore/bundle'
import { PolicyError, VerificationError } from '@sigstore/verify'
import { CodedError } from '../errors.ts'
import type { VerifyCode } from './types.ts'

/** Thrown inside the verification engine; verifyCandidate turns it into Evidence. */
export class VerifyFailure extends CodedError<VerifyCode> {
  override name = 'VerifyFailure'
}

/** Raised while loading a trust root: start-up stops with its message. */
export class TrustRootError extends CodedError<'TRUST_ROOT_INVALID' | 'TRUST_ROOT_UNAVAILABLE' | 'TRUST_ROOT_UNKNOWN'> {
  override name = 'TrustRootError'
}

const SIGSTORE_CODES: Record<string, VerifyCode> = {
  TLOG_ERROR: 'TLOG_INVALID',
  TLOG_INCLUSION_PROOF_ERROR: 'TLOG_INVALID',
  TLOG_INCLUSION_PROMISE_ERROR: 'TLOG_INVALID',
  TLOG_MISSING_INCLUSION_ERROR: 'TLOG_INVALID',
  TLOG_BODY_ERROR: 'TLOG_INVALID',
  CERTIFICATE_ERROR: 'CERTIFICATE_INVALID',
  PUBLIC_KEY_ERROR: 'UNTRUSTED_KEY',
  SIGNATURE_ERROR: 'SIGNATURE_INVALID',
  TIMESTAMP_ERROR: 'TIMESTAMP_INVALID',
  UNTRUSTED_SIGNER_ERROR: 'IDENTITY_MISMATCH',
}

/** Translates anything thrown while parsing or verifying a bundle into a VerifyFailure. */
export function toVerifyFailure(err: unknown): VerifyFailure {
  if (err instanceof VerifyFailure) return err
  if (err instanceof VerificationError || err instanceof PolicyError) {
    const code = SIGSTORE_CODES[err.code] ?? 'SIGNATURE_INVALID'
    const cause = err.cause instanceof Error ? `: ${err.cause.message}` : ''
    return new VerifyFailure(code, `${err.message}${cause}`, { cause: err })
  }
  if (err instanceof ValidationError) {
    const fields = (err as ValidationError & { fields?: string[] }).fields
    return new VerifyFailure('MALFORMED', `invalid bundle${fields?.length ? `: ${fields.join(', ')}` : ''}`, { cause: err })
  }
  // Parse errors from @sigstore/core (ASN.1, certificates, timestamps) and protobuf decoding.
  const message = err instanceof Error ? err.message : String(err)
  return new VerifyFailure('MALFORMED', `unreadable signature material: ${message}`, { cause: err })
}

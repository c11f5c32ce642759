// Stable codes for everything `trustpull copy` can fail on; tests and the JSON report match on them.
import { CodedError } from '../errors.ts'

export type CopyErrorCode =
  /** SRC or DST cannot be parsed, or names something that cannot be used that way. */
  | 'BAD_ENDPOINT'
  /** The source image (tag or digest) does not exist. */
  | 'NOT_FOUND'
  /** The policy refused the image (deny): nothing of it was written. */
  | 'REFUSED'
  /** The image could not be verified (upstream or trust-material trouble): nothing of it was written. */
  | 'UNVERIFIED'
  /** Reading the source failed (registry error, digest mismatch, size limit). */
  | 'SOURCE_ERROR'
  /** The destination refused or failed a write. */
  | 'DESTINATION_ERROR'
  /** The destination asked for credentials that were not given, or refused them. */
  | 'DESTINATION_DENIED'
  /** An OCI layout or archive is malformed or holds something it must not. */
  | 'LAYOUT_INVALID'

export class CopyError extends CodedError<CopyErrorCode> {
  override name = 'CopyError'
}

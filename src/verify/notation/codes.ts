// Stable codes for Notation signature failures, one per rule of the Notary Project specification,
// so an audit line says which rule refused a signature.
import { CodedError } from '../../errors.ts'

export type NotationCode =
  | 'NOTATION_MALFORMED'
  | 'NOTATION_UNKNOWN_CRIT'
  | 'NOTATION_PLUGIN_UNSUPPORTED'
  | 'NOTATION_ALG_MISMATCH'
  | 'NOTATION_SIGNATURE_INVALID'
  | 'NOTATION_EXPIRED'
  | 'NOTATION_CERT_EXPIRED'
  | 'NOTATION_TARGET_DIGEST_MISMATCH'
  | 'NOTATION_TARGET_MEDIA_TYPE_MISMATCH'
  | 'NOTATION_TARGET_SIZE_MISMATCH'
  | 'NOTATION_CHAIN_INVALID'
  | 'NOTATION_UNTRUSTED_CHAIN'
  | 'NOTATION_UNTRUSTED_IDENTITY'
  /** No statement of the trust policy has a registry scope covering the image. */
  | 'NOTATION_NO_TRUST_POLICY'
  /** The chain names OCSP or CRL services, which are never contacted, and revocation is not set offline. */
  | 'NOTATION_REVOCATION_UNCHECKED'

export class NotationFailure extends CodedError<NotationCode> {
  override name = 'NotationFailure'
}

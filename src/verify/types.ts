// The contract between signature discovery (network), verification (CPU, no I/O) and policy.
import type { KeyObject } from 'node:crypto'
import type { SerializedBundle } from '@sigstore/bundle'
import type { TrustMaterial } from '@sigstore/verify'
import type { NotationResult } from './notation/authority.ts'
import type { NotationCode } from './notation/codes.ts'

/** Stable reason codes: tests and metrics match on these, never on message text. */
export type VerifyCode =
  | 'NO_SIGNATURES'
  | 'DIGEST_MISMATCH'
  | 'UNTRUSTED_KEY'
  | 'IDENTITY_MISMATCH'
  | 'SIGNATURE_INVALID'
  | 'CERTIFICATE_INVALID'
  /** The certificate chains to the root but was not valid at any verified signing time. */
  | 'CERTIFICATE_EXPIRED'
  | 'TLOG_INVALID'
  | 'TLOG_MISSING'
  | 'TIMESTAMP_INVALID'
  | 'PAYLOAD_INVALID'
  /** The simple-signing `docker-reference` names another repository than the one expected. */
  | 'REFERENCE_MISMATCH'
  | 'PREDICATE_TYPE_MISMATCH'
  | 'LIMIT_EXCEEDED'
  | 'MALFORMED'
  | 'TRUST_ROOT_UNKNOWN'
  /** Upstream trouble while looking (5xx, timeout): the list of candidates may be incomplete. */
  | 'DISCOVERY_FAILED'
  /** Notation signatures: one code per rule of the Notary Project specification. */
  | NotationCode

/** Where a candidate was found. */
export interface CandidateOrigin {
  repository: string
  via: 'referrers' | 'fallback-tag' | 'sig-tag' | 'att-tag'
  /** digest of the signature/attestation manifest that carried it */
  manifestDigest: string
}

/** A signature or attestation found for an image digest, not yet verified. */

/** A Notation (Notary Project) signature, not yet verified: the envelope layer of a signature manifest. */
export interface NotationCandidate {
  kind: 'signature'
  format: 'notation'
  origin: CandidateOrigin
  envelope: Buffer
  envelopeType: 'application/jose+json' | 'application/cose'
}

export interface Candidate {
  kind: 'signature' | 'attestation'
  format: 'cosign-legacy' | 'sigstore-bundle'
  origin: CandidateOrigin
  /** The shape sigstore-js verifies; legacy cosign annotations are converted into it. */
  bundle: SerializedBundle
  /** Convenience copy of a DSSE attestation's predicateType, when it could be decoded. */
  predicateType?: string
  /**
   * The bytes a message signature covers: the simple-signing payload layer of a legacy cosign
   * signature, or the image manifest for a message-signature bundle. Absent for DSSE.
   */
  payload?: Buffer
}

export interface DiscoveryProblem {
  code: VerifyCode
  message: string
  origin?: Partial<CandidateOrigin>
}

export interface Discovery {
  candidates: Candidate[]
  /** Notation signatures (read only from the referrers API or its fallback tag). */
  notation?: NotationCandidate[]
  /** Things found but unusable (over a limit, unparseable): reported, never fatal for the others. */
  problems: DiscoveryProblem[]
}

/** A keyless identity: issuer and subject, each exact or regular expression (one of each pair). */
export interface Identity {
  issuer?: string
  issuerRegExp?: string
  subject?: string
  subjectRegExp?: string
}

/** Trust material for certificates, transparency logs and timestamps: a loaded Sigstore TrustedRoot. */
export interface LoadedTrustRoot {
  name: string
  /** Changes whenever the root's content changes: part of verdict cache keys. */
  version: string
  /** The `@sigstore/verify` TrustMaterial built from the root. */
  material: TrustMaterial
  /** Where it came from, for logs: `embedded`, `file:/path` or `tuf:https://mirror`. */
  source: string
}

/** The digest a key-based signature was computed with (policy-controller's `hashAlgorithm`). */
export type KeyHashAlgorithm = 'sha224' | 'sha256' | 'sha384' | 'sha512'

export type AuthorityMaterial =
  | {
      type: 'key'
      /** `hashAlgorithm` defaults to sha256 (ignored for Ed25519, which hashes internally). */
      keys: { key: KeyObject; hint?: string; hashAlgorithm?: KeyHashAlgorithm }[]
      /** cosign --tlog-upload=false signatures carry no entry; `ctlog` on the authority makes one required. */
      requireTlog: boolean
      /** needed only to check tlog entries / timestamps when present or required */
      trustRoot?: LoadedTrustRoot
    }
  | {
      type: 'keyless'
      identities: Identity[]
      trustRoot: LoadedTrustRoot
      ignoreSCT: boolean
      /**
       * Default true. false accepts a signature with no tlog entry when an RFC 3161 timestamp
       * from the trust root's TSAs proves the signing time (an authority with `rfc3161timestamp`).
       */
      requireTlog?: boolean
    }

export interface InTotoStatement {
  _type: string
  subject: { name?: string; digest: Record<string, string> }[]
  predicateType: string
  predicate: unknown
}

/** The outcome of verifying one candidate against one authority. */
export interface Evidence {
  kind: Candidate['kind']
  format: Candidate['format'] | NotationCandidate['format']
  origin: CandidateOrigin
  ok: boolean
  code?: VerifyCode
  reason?: string
  /** What was checked, in order (e.g. ["signature", "payload digest", "tlog"]). */
  checks: string[]
  signer?: { keyHint?: string; issuer?: string; subject?: string }
  /** Notation signatures: the trust policy statement, its level, and failures it logged. */
  notation?: NotationResult
  /** The first verified tlog entry; integratedTime is ISO 8601 (absent for Rekor v2 entries). */
  tlog?: { logIndex: string; integratedTime?: string }
  predicateType?: string
  statement?: InTotoStatement
}

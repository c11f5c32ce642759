// Compiled policies (built once at start-up) and the verdicts evaluation produces.
import type { ErrorCode } from '../errors.ts'
import type { NotationMaterial } from '../verify/notation/authority.ts'
import type { AuthorityMaterial, Evidence, VerifyCode } from '../verify/types.ts'
import type { CompiledCondition } from './cel.ts'
import type { ImageGlob } from './glob.ts'

export type PolicyMode = 'enforce' | 'warn'
export type NoMatchPolicy = 'deny' | 'warn' | 'allow'

/** A repository where signatures are looked up: `source[].oci`, or the image's own repository. */
export interface SignatureLocation {
  upstream: string
  repository: string
}

export interface CompiledAttestation {
  name: string
  /** Full predicate type URI (short names resolved). */
  predicateType: string
  condition?: CompiledCondition
}

export interface StaticAuthority {
  name: string
  type: 'static'
  action: 'pass' | 'fail'
  message?: string
}

export interface VerifyingAuthority {
  name: string
  type: 'key' | 'keyless'
  material: AuthorityMaterial
  /** Where to discover signatures; empty means the image's own repository. */
  sources: SignatureLocation[]
  /** `signatureFormat`: only candidates in this format count; unset means any. */
  signatureFormat?: 'legacy' | 'bundle'
  attestations: CompiledAttestation[]
}

/** `notation`: Notation signatures under notation's trust policy and trust store. */
export interface NotationAuthority {
  name: string
  type: 'notation'
  material: NotationMaterial
  /** Where to discover signatures; empty means the image's own repository. */
  sources: SignatureLocation[]
}

export type CompiledAuthority = StaticAuthority | VerifyingAuthority | NotationAuthority

export interface CompiledPolicy {
  name: string
  /** Where it was defined: `config policies[0]` or `<file> (document 2)`. */
  origin: string
  mode: PolicyMode
  globs: ImageGlob[]
  requirePlatformSignatures: boolean
  /** With requirePlatformSignatures: an index passes when one platform does; the others are refused alone. */
  servePassingPlatforms: boolean
  authorities: CompiledAuthority[]
}

export interface PolicySet {
  policies: CompiledPolicy[]
  noMatchPolicy: NoMatchPolicy
  /** Configured upstream names: a Docker Hub short name never shadows one of them in glob matching. */
  upstreamNames: string[]
  /** Stable hash of everything above and the trust roots' versions: part of verdict cache keys. */
  fingerprint: string
}

export type AuthorityStatus = 'pass' | 'fail' | 'error'

export interface AuthorityOutcome {
  name: string
  type: CompiledAuthority['type']
  ok: boolean
  status: AuthorityStatus
  /** Every verification attempted for this authority, in order. */
  evidence: Evidence[]
  /** Why it failed (empty when it passed). */
  reasons: string[]
  /** Passed, with failures its Notation trust policy level logs instead of enforcing. */
  warnings?: string[]
  /** The failure's code when it has one of its own (NO_SIGNATURES: nothing was found to verify); each attempt's code is in `evidence`. */
  code?: VerifyCode
}

export interface PolicyOutcome {
  name: string
  origin: string
  mode: PolicyMode
  result: AuthorityStatus
  authorities: AuthorityOutcome[]
  /** Under servePassingPlatforms: the platform manifests of a passing index that did not pass. */
  refusedPlatforms?: RefusedPlatform[]
}

export interface RefusedPlatform {
  digest: string
  /** `os/architecture[/variant]` */
  platform: string
  reason: string
}

export interface SignerIdentity {
  policy: string
  authority: string
  keyHint?: string
  issuer?: string
  subject?: string
  /** Notation signers: the trust policy level applied, and the codes it logged instead of enforcing. */
  level?: string
  logged?: string[]
}

export type VerdictResult = 'allow' | 'deny' | 'warn' | 'error'

export interface Verdict {
  /**
   * `allow` and `warn` serve the image (`warn` with a warning); `deny` is a 403; `error` means it
   * could not be decided (upstream or discovery trouble): answer 5xx and never cache it.
   */
  result: VerdictResult
  /** `<upstream>/<repository>` */
  image: string
  digest: string
  policies: PolicyOutcome[]
  /** The first is the one-line reason; the rest give every detail. */
  reasons: string[]
  signers: SignerIdentity[]
  fingerprint: string
  /** For `error`: the code to answer with (UPSTREAM_ERROR, UPSTREAM_TIMEOUT, UNAVAILABLE, INTERNAL ...). */
  errorCode?: ErrorCode
  /**
   * Part of the verdict rests on a failure that may pass (an errored `warn` policy): cache it
   * briefly, if at all. Always true for `error`.
   */
  transient: boolean
  /**
   * Platform manifests of an allowed index that its policies refused (servePassingPlatforms): the
   * index does not vouch for them, so each is judged, and refused, on its own when fetched.
   */
  refusedPlatforms?: RefusedPlatform[]
}

// Evaluation: an image digest, the compiled policies and the signatures found → a Verdict.
// Every matching policy must pass; within a policy any one authority suffices; an authority
// passes when one of its signatures verifies or, when it names attestations (as in
// policy-controller), when every attestation it names is verified and satisfies its condition.
// Discovery (network) and verification (CPU) are injected.
import { RegistryError, type ErrorCode } from '../errors.ts'
import { INDEX_TYPES, MANIFEST_TYPES } from '../oci/media-types.ts'
import type { Manifest } from '../oci/manifest.ts'
import { statementFor, type NotationMaterial } from '../verify/notation/authority.ts'
import { NotationFailure } from '../verify/notation/codes.ts'
import type { AuthorityMaterial, Candidate, Discovery, Evidence, NotationCandidate, VerifyCode } from '../verify/types.ts'
import { globsMatch, imageNames } from './glob.ts'
import type {
  AuthorityOutcome,
  AuthorityStatus,
  CompiledAuthority,
  CompiledPolicy,
  NotationAuthority,
  PolicyOutcome,
  PolicySet,
  SignatureLocation,
  SignerIdentity,
  Verdict,
  VerifyingAuthority,
} from './types.ts'

export interface ImageUnderEvaluation {
  upstream: string
  repository: string
  /** Digest of exactly the bytes that will be served. */
  digest: string
  mediaType: string
  manifest: Manifest
  /** The manifest bytes, when at hand: discovery needs them for a message-signature bundle. */
  bytes?: Buffer
  signal?: AbortSignal
}

/**
 * Finds the signatures and attestations for `digest` stored in `location` (the image's own
 * repository or a `source.oci`). `digest` is the image's, or a platform manifest's under
 * `requirePlatformSignatures`. Upstream trouble is a `DISCOVERY_FAILED` problem or a rejection:
 * either leaves the verdict undecided (`error`), never a deny.
 */
export type DiscoverFn = (location: SignatureLocation, digest: string, image: ImageUnderEvaluation) => Promise<Discovery>
/** Verifies one candidate against one authority's material for `digest`; no I/O. */
export type VerifyFn = (candidate: Candidate, material: AuthorityMaterial, digest: string, image: ImageUnderEvaluation) => Evidence

/** Verifies one Notation signature against a `notation` authority; no I/O. */
export type NotationVerifyFn = (candidate: NotationCandidate, material: NotationMaterial, digest: string, image: ImageUnderEvaluation) => Evidence

export interface EvaluateDeps {
  discover: DiscoverFn
  verify: VerifyFn
  /** Needed only by policies with a `notation` authority. */
  verifyNotation?: NotationVerifyFn
}

/** The policies whose globs match the image, in configuration order. */
export function matchingPolicies(policySet: PolicySet, upstream: string, repository: string): CompiledPolicy[] {
  const names = imageNames(upstream, repository, policySet.upstreamNames)
  return policySet.policies.filter((p) => globsMatch(p.globs, names) !== undefined)
}

export async function evaluatePolicies(image: ImageUnderEvaluation, policySet: PolicySet, deps: EvaluateDeps): Promise<Verdict> {
  const imageName = `${image.upstream}/${image.repository}`
  const base = { image: imageName, digest: image.digest, fingerprint: policySet.fingerprint }
  const matching = matchingPolicies(policySet, image.upstream, image.repository)

  if (matching.length === 0) {
    const reason = `no policy matches ${imageName} (noMatchPolicy: ${policySet.noMatchPolicy})`
    const result = policySet.noMatchPolicy
    return { ...base, result, policies: [], reasons: [reason], signers: [], transient: false }
  }

  const session = new Session(image, deps)
  const outcomes = await Promise.all(matching.map((p) => session.evaluatePolicy(p)))
  return summarise(base, outcomes, session)
}

type AuthorityCheck = {
  status: AuthorityStatus
  evidence: Evidence[]
  reasons: string[]
  code?: VerifyCode
  signer?: Evidence['signer'] & { level?: string; logged?: string[] }
  warnings?: string[]
}

/** One evaluation: discovery is done at most once per (repository, digest) and shared by all policies. */
class Session {
  readonly image: ImageUnderEvaluation
  readonly deps: EvaluateDeps
  private readonly discoveries = new Map<string, Promise<Discovery>>()
  readonly signers: SignerIdentity[] = []
  errorCode: ErrorCode | undefined

  constructor(image: ImageUnderEvaluation, deps: EvaluateDeps) {
    this.image = image
    this.deps = deps
  }

  discover(location: SignatureLocation, digest: string): Promise<Discovery> {
    const key = `${location.upstream}\n${location.repository}\n${digest}`
    let pending = this.discoveries.get(key)
    if (!pending) {
      pending = Promise.resolve().then(() => this.deps.discover(location, digest, this.image))
      this.discoveries.set(key, pending)
    }
    return pending
  }

  async evaluatePolicy(policy: CompiledPolicy): Promise<PolicyOutcome> {
    const digests = this.subjectDigests(policy)
    if (policy.servePassingPlatforms && digests.length > 0 && digests.some((d) => d.digest !== this.image.digest)) return this.evaluatePerPlatform(policy, digests)
    const authorities: AuthorityOutcome[] = []
    for (const authority of policy.authorities) {
      const outcome = await this.evaluateAuthority(policy, authority, digests)
      authorities.push(outcome)
      if (outcome.ok) break // any one authority suffices
    }
    const result: AuthorityStatus = authorities.some((a) => a.ok) ? 'pass' : authorities.some((a) => a.status === 'error') ? 'error' : 'fail'
    return { name: policy.name, origin: policy.origin, mode: policy.mode, result, authorities }
  }

  /**
   * servePassingPlatforms: each platform passes when any one authority passes it; the index passes
   * when at least one platform does, and the others are listed as refused. A platform that could
   * not be decided leaves the whole index undecided (error), never partly served.
   */
  private async evaluatePerPlatform(policy: CompiledPolicy, subjects: { digest: string; label?: string }[]): Promise<PolicyOutcome> {
    const authorities: AuthorityOutcome[] = []
    const refusedPlatforms: NonNullable<PolicyOutcome['refusedPlatforms']> = []
    let passed = 0
    let undecided = false
    for (const subject of subjects) {
      const tried: AuthorityOutcome[] = []
      for (const authority of policy.authorities) {
        const outcome = await this.evaluateAuthority(policy, authority, [subject])
        tried.push(outcome)
        if (outcome.ok) break
      }
      authorities.push(...tried)
      if (tried.some((a) => a.ok)) passed++
      else if (tried.some((a) => a.status === 'error')) undecided = true
      else refusedPlatforms.push({ digest: subject.digest, platform: subject.label ?? subject.digest, reason: tried[0]?.reasons[0] ?? 'refused' })
    }
    const result: AuthorityStatus = undecided ? 'error' : passed > 0 ? 'pass' : 'fail'
    return { name: policy.name, origin: policy.origin, mode: policy.mode, result, authorities, ...(result === 'pass' && refusedPlatforms.length ? { refusedPlatforms } : {}) }
  }

  /**
   * What must be signed: the image itself, or, for an index under `requirePlatformSignatures`,
   * every platform manifest it lists (and not the index). `undefined` entries mark an index
   * that lists none.
   */
  private subjectDigests(policy: CompiledPolicy): { digest: string; label?: string }[] {
    const { manifest, mediaType, digest } = this.image
    if (!policy.requirePlatformSignatures || manifest.kind !== 'index' || !INDEX_TYPES.has(mediaType)) return [{ digest }]
    return manifest.manifests
      .filter((d) => MANIFEST_TYPES.has(d.mediaType))
      .filter((d) => d.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest' && d.platform?.os !== 'unknown')
      .map((d) => ({
        digest: d.digest,
        label: d.platform ? [d.platform.os, d.platform.architecture, d.platform.variant].filter(Boolean).join('/') : d.digest,
      }))
  }

  private async evaluateAuthority(policy: CompiledPolicy, authority: CompiledAuthority, subjects: { digest: string; label?: string }[]): Promise<AuthorityOutcome> {
    const head = { name: authority.name, type: authority.type }
    if (authority.type === 'static') {
      const ok = authority.action === 'pass'
      return { ...head, ok, status: ok ? 'pass' : 'fail', evidence: [], reasons: ok ? [] : [authority.message || 'disallowed by static policy'] }
    }
    if (subjects.length === 0) {
      return { ...head, ok: false, status: 'fail', evidence: [], reasons: ['requirePlatformSignatures: the index lists no platform manifests'] }
    }
    const evidence: Evidence[] = []
    const reasons: string[] = []
    const statuses: AuthorityStatus[] = []
    let code: VerifyCode | undefined
    const signers: NonNullable<AuthorityCheck['signer']>[] = []
    const warnings: string[] = []
    for (const subject of subjects) {
      const check = authority.type === 'notation' ? await this.checkNotation(authority, subject.digest) : await this.checkDigest(authority, subject.digest)
      evidence.push(...check.evidence)
      const prefix = subject.label ? `platform ${subject.label}: ` : ''
      reasons.push(...check.reasons.map((r) => prefix + r))
      warnings.push(...(check.warnings ?? []).map((r) => prefix + r))
      code ??= check.code
      statuses.push(check.status)
      if (check.signer) signers.push(check.signer)
      if (check.status === 'fail') break // one unsigned platform decides it
    }
    const status: AuthorityStatus = statuses.includes('fail') ? 'fail' : statuses.includes('error') ? 'error' : 'pass'
    if (status === 'pass') {
      for (const signer of signers) this.recordSigner({ policy: policy.name, authority: authority.name, ...signer })
    }
    return {
      ...head,
      ok: status === 'pass',
      status,
      evidence,
      reasons: status === 'pass' ? [] : reasons,
      ...(status === 'pass' && warnings.length > 0 ? { warnings } : {}),
      ...(status !== 'pass' && code && { code }),
    }
  }

  private recordSigner(signer: SignerIdentity): void {
    const same = (s: SignerIdentity) =>
      s.policy === signer.policy && s.authority === signer.authority && s.keyHint === signer.keyHint && s.issuer === signer.issuer && s.subject === signer.subject
    if (!this.signers.some(same)) this.signers.push(signer)
  }

  /** Discovery in every location of the authority: what was found, problems, and lookups that failed. */
  private async collect(authority: VerifyingAuthority | NotationAuthority, digest: string) {
    const locations = authority.sources.length > 0 ? authority.sources : [{ upstream: this.image.upstream, repository: this.image.repository }]
    const settled = await Promise.allSettled(locations.map((l) => this.discover(l, digest)))
    const candidates: Candidate[] = []
    const notation: NotationCandidate[] = []
    const reasons: string[] = []
    const failures: string[] = []
    settled.forEach((s, i) => {
      const where = `${locations[i]!.upstream}/${locations[i]!.repository}`
      if (s.status === 'rejected') {
        failures.push(`signature discovery in ${where} failed: ${describeError(s.reason)}`)
        this.errorCode ??= errorCodeOf(s.reason)
        return
      }
      if (authority.type === 'notation') notation.push(...(s.value.notation ?? []))
      else candidates.push(...s.value.candidates.filter((c) => formatAccepted(authority, c)))
      for (const problem of s.value.problems) {
        // Upstream trouble while looking: the signature that would pass may be the one not seen.
        if (problem.code === 'DISCOVERY_FAILED') {
          failures.push(`signature discovery in ${where} failed: ${problem.message}`)
          this.errorCode ??= 'UPSTREAM_ERROR'
        } else {
          reasons.push(`${problem.code}: ${problem.message}`)
        }
      }
    })
    return { candidates, notation, reasons, failures }
  }

  /**
   * A `notation` authority against one digest: the trust policy statement covering the image, then
   * one Notation signature that verifies under it. Level skip passes without looking (notation's
   * rule); failures the level only logs pass with warnings.
   */
  private async checkNotation(authority: NotationAuthority, digest: string): Promise<AuthorityCheck> {
    const name = `${this.image.upstream}/${this.image.repository}`
    let level: string
    try {
      level = statementFor(authority.material, name).level
    } catch (err) {
      if (!(err instanceof NotationFailure)) throw err
      return { status: 'fail', evidence: [], reasons: [`${err.code}: ${err.message}`] }
    }
    if (level === 'skip') return { status: 'pass', evidence: [], reasons: [], warnings: [`notation trust policy level skip: ${short(digest)} not verified`] }
    const { notation, reasons, failures } = await this.collect(authority, digest)
    const evidence: Evidence[] = []
    const verify = (c: NotationCandidate): Evidence => {
      let ev: Evidence
      try {
        if (!this.deps.verifyNotation) throw new Error('no Notation verifier configured')
        ev = this.deps.verifyNotation(c, authority.material, digest, this.image)
      } catch (err) {
        ev = { kind: c.kind, format: c.format, origin: c.origin, ok: false, code: 'MALFORMED', reason: `verification failed: ${describeError(err)}`, checks: [] }
      }
      evidence.push(ev)
      return ev
    }
    const passed = notation.find((c) => verify(c).ok)
    if (passed) {
      const ev = evidence.at(-1)!
      const logged = ev.notation?.logged ?? []
      const signer = { ...ev.signer, level: ev.notation?.level ?? level, ...(logged.length > 0 ? { logged: logged.map((l) => l.code) } : {}) }
      const warnings = logged.map((l) => `notation level ${ev.notation?.level ?? level} logged ${l.validation} failure ${l.code}: ${l.message}`)
      return { status: 'pass', evidence, reasons: [], signer, warnings }
    }
    reasons.unshift(notation.length === 0 ? `no Notation signatures found for ${short(digest)}` : `no Notation signature verified (${notation.length} found)`)
    for (const ev of evidence) reasons.push(describeEvidence(ev))
    if (failures.length > 0) return { status: 'error', evidence, reasons: [...failures, ...reasons] }
    return { status: 'fail', evidence, reasons }
  }

  /** One authority against one digest. */
  private async checkDigest(authority: VerifyingAuthority, digest: string): Promise<AuthorityCheck> {
    const { candidates, reasons, failures } = await this.collect(authority, digest)
    const evidence: Evidence[] = []
    const verified = new Map<Candidate, Evidence>()
    const verifyOnce = (candidate: Candidate): Evidence => {
      let result = verified.get(candidate)
      if (!result) {
        result = this.runVerify(candidate, authority, digest)
        verified.set(candidate, result)
        evidence.push(result)
      }
      return result
    }

    // As in policy-controller: an authority naming attestations is satisfied by its attestations
    // (each one signed by the authority over this digest); otherwise a signature by it is needed.
    const needsSignature = authority.attestations.length === 0
    const signatures = needsSignature ? candidates.filter((c) => c.kind === 'signature') : []
    const signature = signatures.find((c) => verifyOnce(c).ok)
    let attestationSigner: Evidence['signer']
    if (needsSignature && !signature) {
      reasons.unshift(signatures.length === 0 ? `no signatures found for ${short(digest)}` : `no signature verified (${signatures.length} found)`)
      for (const c of signatures) reasons.push(describeEvidence(verifyOnce(c)))
    }
    // ...and every attestation it names, verified and satisfying its condition.
    let attestationsOk = true
    for (const wanted of authority.attestations) {
      const pool = candidates.filter((c) => c.kind === 'attestation' && (c.predicateType === undefined || c.predicateType === wanted.predicateType))
      const misses: string[] = []
      const found = pool.some((c) => {
        const ev = verifyOnce(c)
        const miss = attestationMiss(ev, wanted.predicateType, digest) ?? conditionMiss(ev, wanted.condition)
        if (miss) misses.push(miss)
        else attestationSigner ??= ev.signer
        return miss === undefined
      })
      if (!found) {
        attestationsOk = false
        reasons.push(
          pool.length === 0
            ? `attestation "${wanted.name}": no attestation of type ${wanted.predicateType} found`
            : `attestation "${wanted.name}": none of ${pool.length} of type ${wanted.predicateType} passed (${misses.join('; ')})`,
        )
      }
    }

    if ((signature || !needsSignature) && attestationsOk) {
      return { status: 'pass', evidence, reasons: [], signer: signature ? verified.get(signature)!.signer : attestationSigner }
    }
    // Signatures that could not be looked up might have passed: undecided, not a deny.
    if (failures.length > 0) return { status: 'error', evidence, reasons: [...failures, ...reasons] }
    return { status: 'fail', evidence, reasons, ...(needsSignature && signatures.length === 0 && { code: 'NO_SIGNATURES' as const }) }
  }

  private runVerify(candidate: Candidate, authority: VerifyingAuthority, digest: string): Evidence {
    try {
      return this.deps.verify(candidate, authority.material, digest, this.image)
    } catch (err) {
      // A verifier bug or a hostile candidate must not hide the other candidates: count it as failed.
      return {
        kind: candidate.kind,
        format: candidate.format,
        origin: candidate.origin,
        ok: false,
        code: 'MALFORMED',
        reason: `verification failed: ${describeError(err)}`,
        checks: [],
      }
    }
  }
}

function formatAccepted(authority: VerifyingAuthority, candidate: Candidate): boolean {
  if (authority.signatureFormat === undefined) return true
  return authority.signatureFormat === 'bundle' ? candidate.format === 'sigstore-bundle' : candidate.format === 'cosign-legacy'
}

function attestationMiss(ev: Evidence, predicateType: string, digest: string): string | undefined {
  if (!ev.ok) return describeEvidence(ev)
  const statement = ev.statement
  if (!statement) return `${where(ev)}: no in-toto statement`
  if (statement.predicateType !== predicateType) return `${where(ev)}: predicate type ${statement.predicateType}`
  const [algorithm, hex] = digest.split(':') as [string, string]
  if (!statement.subject.some((s) => s.digest?.[algorithm]?.toLowerCase() === hex)) return `${where(ev)}: the statement's subject is not ${short(digest)}`
  return undefined
}

function conditionMiss(ev: Evidence, condition: VerifyingAuthority['attestations'][number]['condition']): string | undefined {
  if (!condition || !ev.statement) return undefined
  const result = condition.test(ev.statement)
  return result.ok ? undefined : `${where(ev)}: ${result.reason}: ${condition.source.trim().split('\n')[0]}`
}

function summarise(base: Pick<Verdict, 'image' | 'digest' | 'fingerprint'>, outcomes: PolicyOutcome[], session: Session): Verdict {
  const failed = (mode: 'enforce' | 'warn', status: AuthorityStatus) => outcomes.filter((o) => o.mode === mode && o.result === status)
  const details = outcomes.flatMap((o) => o.authorities.flatMap((a) => a.reasons.map((r) => `policy "${o.name}", authority "${a.name}": ${r}`)))
  const common = { ...base, policies: outcomes, signers: session.signers }

  const denied = failed('enforce', 'fail')
  if (denied.length > 0) return { ...common, result: 'deny', reasons: [oneLine(denied[0]!), ...details], transient: false }
  const errored = failed('enforce', 'error')
  if (errored.length > 0) {
    return { ...common, result: 'error', reasons: [oneLine(errored[0]!), ...details], errorCode: session.errorCode ?? 'UNAVAILABLE', transient: true }
  }
  const warned = [...failed('warn', 'fail'), ...failed('warn', 'error')]
  if (warned.length > 0) {
    const refused = refusedPlatformsOf(outcomes)
    return {
      ...common,
      result: 'warn',
      reasons: [oneLine(warned[0]!), ...details],
      transient: warned.some((o) => o.result === 'error'),
      ...(refused.length ? { refusedPlatforms: refused } : {}),
    }
  }
  // A Notation level that logs instead of enforcing (audit, permissive) serves the image with a warning.
  const logged = outcomes.flatMap((o) => o.authorities.filter((a) => a.ok).flatMap((a) => (a.warnings ?? []).map((w) => `policy "${o.name}", authority "${a.name}": ${w}`)))
  if (logged.length > 0) return { ...common, result: 'warn', reasons: logged, transient: false }
  const names = outcomes.map((o) => `"${o.name}"`).join(', ')
  const refused = refusedPlatformsOf(outcomes)
  return {
    ...common,
    result: 'allow',
    reasons: [`allowed by ${outcomes.length > 1 ? 'policies' : 'policy'} ${names}`],
    transient: false,
    ...(refused.length ? { refusedPlatforms: refused } : {}),
  }
}

/** Every platform some policy refused (once each). */
function refusedPlatformsOf(outcomes: PolicyOutcome[]): NonNullable<Verdict['refusedPlatforms']> {
  const seen = new Set<string>()
  return outcomes.flatMap((o) => o.refusedPlatforms ?? []).filter((p) => !seen.has(p.digest) && seen.add(p.digest))
}

/** `policy "x": <why>`, short enough for a client's error line (the caller adds the image). */
function oneLine(outcome: PolicyOutcome): string {
  const parts = outcome.authorities.map((a) => (outcome.authorities.length > 1 ? `${a.name}: ` : '') + (a.reasons[0] ?? a.status))
  const text = `policy "${outcome.name}": ${parts.join('; ')}`
  return text.length > 300 ? `${text.slice(0, 297)}...` : text
}

function describeEvidence(ev: Evidence): string {
  return `${where(ev)}: ${ev.code ?? 'FAILED'}${ev.reason ? `: ${ev.reason}` : ''}`
}

function where(ev: Evidence): string {
  return `${ev.kind} ${short(ev.origin.manifestDigest)} (${ev.origin.via})`
}

function short(digest: string): string {
  const [algorithm, hex] = digest.split(':')
  return hex ? `${algorithm}:${hex.slice(0, 12)}` : digest
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** 5xx codes pass through; anything else (a 4xx from a signature repository, a bug) is not the client's fault. */
function errorCodeOf(err: unknown): ErrorCode {
  if (err instanceof RegistryError) return err.status >= 500 ? err.code : 'UPSTREAM_ERROR'
  if (err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError')) return 'UPSTREAM_TIMEOUT'
  return 'INTERNAL'
}

// One Notation signature against a `notation` authority: the trust policy statement whose registry
// scope covers the image, then the specification's validations in order (integrity, authenticity,
// authentic timestamp, expiry, revocation), each enforced, logged or skipped as the statement's
// level says. Threat: a level read more leniently than notation reads it. Integrity (the envelope,
// its chain's structure and key usage, and the payload naming exactly this artifact) is never
// relaxed; revocation services are never dialled, so a chain that names one fails closed unless
// the operator set revocation offline explicitly.
import type { X509Certificate } from 'node:crypto'
import { NotationFailure, type NotationCode } from './codes.ts'
import { parseCose } from './cose.ts'
import { parseJws, type NotationEnvelope } from './jws.ts'
import { selectStatement, type TrustStatement, type ValidationType } from './trust-policy.ts'
import { checkChainStructure, checkExpiry, checkIdentity, checkLeaf, checkPayload, checkTrusted, checkValidity, revocable, type Target } from './trust.ts'
import type { EnvelopeType } from './verify.ts'

/** A trust policy statement with its trust stores loaded. */
export interface NotationStatement extends Omit<TrustStatement, 'trustStores'> {
  trustStores: string[]
  ca: X509Certificate[]
  signingAuthority: X509Certificate[]
  tsa: X509Certificate[]
}

export interface NotationMaterial {
  type: 'notation'
  statements: NotationStatement[]
  /** `offline`: revocation services are not consulted and not required (air gaps). */
  revocation?: 'offline'
  /** Hash of the statements and certificates: part of the policy fingerprint. */
  version: string
}

export interface NotationArtifact extends Target {
  /** `registry/repository`, matched against registryScopes. */
  name: string
}

export interface LoggedFailure {
  validation: ValidationType
  code: NotationCode
  message: string
}

export interface NotationResult {
  statement: string
  level: string
  checks: string[]
  /** Failures the level logs instead of enforcing. */
  logged: LoggedFailure[]
  subject?: string
  issuer?: string
}

/** The statement for `artifact`, or a NOTATION_NO_TRUST_POLICY failure. */
export function statementFor(material: NotationMaterial, name: string): NotationStatement {
  const s = selectStatement(material.statements, name)
  if (!s) throw new NotationFailure('NOTATION_NO_TRUST_POLICY', `no trust policy statement has a registry scope covering ${name}`)
  return s
}

/** Throws NotationFailure for an enforced failure; otherwise the checks done and what was logged. */
export function verifyUnderPolicy(type: EnvelopeType, envelope: Uint8Array, artifact: NotationArtifact, material: NotationMaterial, now = new Date()): NotationResult {
  const statement = statementFor(material, artifact.name)
  const result: NotationResult = { statement: statement.name, level: statement.level, checks: [], logged: [] }
  if (statement.level === 'skip') {
    result.checks.push('level skip: not verified')
    return result
  }
  const step = (validation: ValidationType, what: string, fn: () => void): void => {
    const action = statement.enforcement[validation]
    if (action === 'skip') return
    try {
      fn()
      result.checks.push(what)
    } catch (err) {
      if (!(err instanceof NotationFailure) || action === 'enforce') throw err
      result.logged.push({ validation, code: err.code, message: err.message })
    }
  }
  // Integrity: enforced at every level but skip.
  const env: NotationEnvelope = type === 'application/cose' ? parseCose(envelope) : parseJws(envelope)
  result.checks.push(type === 'application/cose' ? 'COSE envelope' : 'JWS envelope')
  checkChainStructure(env)
  checkLeaf(env)
  result.checks.push('certificate chain')
  checkPayload(env, artifact)
  result.checks.push('target artifact')
  const leaf = env.chain[0]!
  result.subject = leaf.subject.replace(/\n/g, ',')
  result.issuer = leaf.issuer.replace(/\n/g, ',')

  step('authenticity', 'trust store', () => checkTrusted(env, env.signingScheme === 'notary.x509' ? statement.ca : statement.signingAuthority))
  step('authenticity', 'trusted identity', () => checkIdentity(env, statement.trustedIdentities))
  step('authenticTimestamp', 'certificate validity', () => checkValidity(env, now))
  step('expiry', 'signature expiry', () => checkExpiry(env, now))
  step('revocation', material.revocation === 'offline' ? 'revocation (offline: not checked)' : 'revocation (no service named)', () => {
    if (material.revocation !== 'offline' && revocable(env)) {
      throw new NotationFailure(
        'NOTATION_REVOCATION_UNCHECKED',
        'the chain names OCSP or CRL services, which trustpull does not contact; set notation.revocation: offline to accept that, or relax revocation in the trust policy',
      )
    }
  })
  return result
}

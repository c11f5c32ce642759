// Keyless identities: the certificate's OIDC issuer and subject (SAN), each exact or a regular expression.
//
// Exact values are compared as strings, never handed to @sigstore/verify's policy (which reads a
// subject as an unanchored regexp: "x" would match "https://github.com/x/..."). Regular expressions
// are unanchored, as cosign's --certificate-identity-regexp and policy-controller's subjectRegExp
// (Go's regexp.MatchString) are: anchor them with ^...$ to match whole values.
import type { Identity } from './types.ts'

export interface SignerIdentity {
  issuer?: string
  subject?: string
}

const compiled = new Map<string, RegExp>()
const MAX_COMPILED = 1024

/** Compiles (once) a pattern from policy; throws SyntaxError for an invalid one. */
export function identityRegExp(pattern: string): RegExp {
  let re = compiled.get(pattern)
  if (!re) {
    re = new RegExp(pattern)
    if (compiled.size >= MAX_COMPILED) compiled.clear()
    compiled.set(pattern, re)
  }
  return re
}

/** Why an identity cannot be used, or undefined when it names an issuer and a subject. */
export function identityProblem(identity: Identity): string | undefined {
  const issuers = [identity.issuer, identity.issuerRegExp].filter((v) => v !== undefined).length
  const subjects = [identity.subject, identity.subjectRegExp].filter((v) => v !== undefined).length
  if (issuers !== 1) return 'a keyless identity needs exactly one of issuer or issuerRegExp'
  if (subjects !== 1) return 'a keyless identity needs exactly one of subject or subjectRegExp'
  for (const pattern of [identity.issuerRegExp, identity.subjectRegExp]) {
    if (pattern === undefined) continue
    try {
      identityRegExp(pattern)
    } catch (err) {
      return `invalid regular expression ${JSON.stringify(pattern)}: ${(err as Error).message}`
    }
  }
  return undefined
}

function matches(value: string | undefined, exact: string | undefined, pattern: string | undefined): boolean {
  if (value === undefined) return false
  if (exact !== undefined) return value === exact
  if (pattern !== undefined) return identityRegExp(pattern).test(value)
  return false
}

/** The first identity the signer satisfies, or a reason naming what did not match. */
export function matchIdentity(signer: SignerIdentity, identities: readonly Identity[]): { ok: true; identity: Identity } | { ok: false; reason: string } {
  let issuerMatched = false
  for (const identity of identities) {
    if (identityProblem(identity) !== undefined) continue
    if (!matches(signer.issuer, identity.issuer, identity.issuerRegExp)) continue
    issuerMatched = true
    if (matches(signer.subject, identity.subject, identity.subjectRegExp)) return { ok: true, identity }
  }
  const wanted = identities.map(describeIdentity).join(' or ') || '(no identities configured)'
  if (!issuerMatched) {
    return { ok: false, reason: `certificate issuer ${JSON.stringify(signer.issuer ?? null)} is not accepted; wanted ${wanted}` }
  }
  return { ok: false, reason: `certificate subject ${JSON.stringify(signer.subject ?? null)} is not accepted; wanted ${wanted}` }
}

export function describeIdentity(identity: Identity): string {
  const issuer = identity.issuer !== undefined ? JSON.stringify(identity.issuer) : `/${identity.issuerRegExp ?? ''}/`
  const subject = identity.subject !== undefined ? JSON.stringify(identity.subject) : `/${identity.subjectRegExp ?? ''}/`
  return `${subject} from ${issuer}`
}

// One Notation JWS signature against one artifact and one trust policy statement's trust: the
// order the specification gives (integrity, authenticity, identity, expiry), each failure coded.
import type { X509Certificate } from 'node:crypto'
import { parseCose } from './cose.ts'
import { parseJws } from './jws.ts'
import { checkChain, checkExpiry, checkIdentity, checkLeaf, checkPayload, type Target } from './trust.ts'

export interface NotationTrust {
  certificates: readonly X509Certificate[]
  trustedIdentities: readonly string[]
}

export interface NotationVerified {
  subject: string
  signingScheme: string
  signingTime?: Date
}

export type EnvelopeType = 'application/jose+json' | 'application/cose'

export function verifyNotationJws(envelope: Uint8Array, target: Target, trust: NotationTrust, now = new Date()): NotationVerified {
  return verifyNotation('application/jose+json', envelope, target, trust, now)
}

export function verifyNotation(type: EnvelopeType, envelope: Uint8Array, target: Target, trust: NotationTrust, now = new Date()): NotationVerified {
  const env = type === 'application/cose' ? parseCose(envelope) : parseJws(envelope)
  checkChain(env, trust.certificates, now)
  checkLeaf(env)
  checkIdentity(env, trust.trustedIdentities)
  checkExpiry(env, now)
  checkPayload(env, target)
  return { subject: env.chain[0]!.subject.replace(/\n/g, ','), signingScheme: env.signingScheme, ...(env.signingTime ? { signingTime: env.signingTime } : {}) }
}

// The Notary Project trust rules after integrity: the payload names exactly this artifact, the
// signature has not expired, the x5c chain is well formed (each certificate signed by the next,
// CA flags, no SHA-1) and contains a certificate byte-identical to one in the named trust stores,
// and the leaf's subject is a trusted identity. Threat: a valid signature over another image, a
// chain that ends outside the trust store, a leaf that was never meant to sign code.
import type { X509Certificate } from 'node:crypto'
import { NotationFailure } from './codes.ts'
import type { NotationEnvelope } from './jws.ts'
import { isSubsetDn, parseDn } from './trust-policy.ts'

export interface Target {
  digest: string
  mediaType: string
  size: number
}

export function checkPayload(env: NotationEnvelope, target: Target): void {
  let p: { targetArtifact?: { digest?: unknown; mediaType?: unknown; size?: unknown } }
  try {
    p = JSON.parse(env.payload.toString('utf8')) as typeof p
  } catch {
    throw new NotationFailure('NOTATION_MALFORMED', 'payload is not JSON')
  }
  const a = p.targetArtifact
  if (!a) throw new NotationFailure('NOTATION_MALFORMED', 'payload has no targetArtifact')
  if (a.digest !== target.digest) throw new NotationFailure('NOTATION_TARGET_DIGEST_MISMATCH', `signature is for ${String(a.digest)}, not ${target.digest}`)
  if (a.mediaType !== target.mediaType)
    throw new NotationFailure('NOTATION_TARGET_MEDIA_TYPE_MISMATCH', `signature is for media type ${String(a.mediaType)}, not ${target.mediaType}`)
  if (a.size !== target.size) throw new NotationFailure('NOTATION_TARGET_SIZE_MISMATCH', `signature is for ${String(a.size)} bytes, not ${target.size}`)
}

export function checkExpiry(env: NotationEnvelope, now: Date): void {
  if (env.expiry && !(env.expiry.getTime() > now.getTime())) throw new NotationFailure('NOTATION_EXPIRED', `signature expired on ${env.expiry.toISOString()}`)
}

export function checkChain(env: NotationEnvelope, trusted: readonly X509Certificate[], now = new Date()): void {
  checkValidity(env, now)
  checkChainStructure(env)
  checkTrusted(env, trusted)
}

/** Every certificate valid at `now`. No RFC 3161 timestamp support yet, so no grace (fail closed). */
export function checkValidity(env: NotationEnvelope, now: Date): void {
  for (const [i, cert] of env.chain.entries()) {
    if (now < new Date(cert.validFrom) || now > new Date(cert.validTo))
      throw new NotationFailure('NOTATION_CERT_EXPIRED', `certificate ${i} is not valid now (${cert.validFrom} to ${cert.validTo}) and timestamps are not supported`)
  }
}

/** Each certificate signed by the next (the last by itself), CA flags on issuers, no SHA-1. */
export function checkChainStructure(env: NotationEnvelope): void {
  const chain = env.chain
  for (const [i, cert] of chain.entries()) {
    if (SHA1_OIDS.has(signatureAlgorithm(cert))) throw new NotationFailure('NOTATION_CHAIN_INVALID', `certificate ${i} is signed with SHA-1`)
    const issuer = chain[i + 1] ?? cert
    if (i > 0 && !cert.ca) throw new NotationFailure('NOTATION_CHAIN_INVALID', `certificate ${i} (${cert.subject.replace(/\n/g, ',')}) is not a CA`)
    if (!cert.verify(issuer.publicKey)) throw new NotationFailure('NOTATION_CHAIN_INVALID', `certificate ${i} is not signed by the next in the chain`)
  }
}

/** The chain holds a certificate byte-identical to one of the trust store's. */
export function checkTrusted(env: NotationEnvelope, trusted: readonly X509Certificate[]): void {
  const ok = env.chain.some((c) => trusted.some((t) => t.raw.equals(c.raw)))
  if (!ok) throw new NotationFailure('NOTATION_UNTRUSTED_CHAIN', "the signature's certificate chain does not contain any trusted certificate")
}

const CRL_DISTRIBUTION_POINTS = Buffer.from('0603551d1f', 'hex')

/**
 * Whether any non-root certificate names a revocation service (OCSP in authorityInfoAccess, or
 * CRL distribution points). One that names none cannot be checked and is not revocable, as in notation.
 */
export function revocable(env: NotationEnvelope): boolean {
  return env.chain.slice(0, -1).some((c) => /OCSP/.test(c.infoAccess ?? '') || c.raw.includes(CRL_DISTRIBUTION_POINTS))
}

const SHA1_OIDS = new Set(['2a864886f70d010105', '2a8648ce3d0401', '2a8648ce380403'])

/** The certificate's outer signatureAlgorithm OID (hex), read from the DER: node:crypto has no accessor. */
function signatureAlgorithm(cert: X509Certificate): string {
  const der = cert.raw
  const tlv = (at: number): { body: number; end: number } => {
    let len = der[at + 1]!
    let body = at + 2
    if (len & 0x80) {
      const n = len & 0x7f
      len = 0
      for (let k = 0; k < n; k++) len = len * 256 + der[body + k]!
      body += n
    }
    return { body, end: body + len }
  }
  const outer = tlv(0)
  const tbs = tlv(outer.body)
  const alg = tlv(tbs.end)
  const oid = tlv(alg.body)
  return der.subarray(oid.body, oid.end).toString('hex')
}

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3'

/** The leaf must be usable for code signing: not a CA, and an EKU, when present, naming code signing. */
export function checkLeaf(env: NotationEnvelope): void {
  const leaf = env.chain[0]!
  const eku = leaf.keyUsage
  if (eku !== undefined && !eku.includes(CODE_SIGNING)) throw new NotationFailure('NOTATION_CHAIN_INVALID', 'the signing certificate has no code-signing extended key usage')
}

/**
 * `x509.subject:DN` identities (or `*`) against the leaf's subject: as notation, an identity
 * matches when each of its attributes is in the subject with the same value.
 */
export function checkIdentity(env: NotationEnvelope, trustedIdentities: readonly string[]): void {
  if (trustedIdentities.includes('*')) return
  const leaf = subjectDn(env.chain[0]!)
  for (const id of trustedIdentities) {
    if (!id.startsWith('x509.subject:')) continue
    let want
    try {
      want = parseDn(id.slice('x509.subject:'.length))
    } catch {
      continue
    }
    if (leaf && isSubsetDn(want, leaf)) return
  }
  throw new NotationFailure('NOTATION_UNTRUSTED_IDENTITY', `signing certificate subject ${env.chain[0]!.subject.replace(/\n/g, ',')} is not a trusted identity`)
}

/** node:crypto gives the subject one attribute per line. */
function subjectDn(cert: X509Certificate): Map<string, string> | undefined {
  const out = new Map<string, string>()
  for (const line of cert.subject.split('\n')) {
    const eq = line.indexOf('=')
    if (eq === -1) continue
    const key = line.slice(0, eq).trim().toUpperCase()
    if (out.has(key)) return undefined // repeated attributes: matched by nothing, as notation refuses them
    out.set(key, line.slice(eq + 1).trim())
  }
  return out
}

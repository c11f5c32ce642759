// Notation's JWS envelope (flattened JSON, signature-envelope-jws): integrity, `crit` and `alg`
// rules. Threat: an envelope whose signature does not cover what it claims, that hides a critical
// attribute this verifier does not understand (a plugin requirement among them), or whose `alg`
// disagrees with the signing certificate's key so a weaker check would be run.
import { createPublicKey, verify, X509Certificate, constants } from 'node:crypto'
import { NotationFailure } from './codes.ts'

export const KNOWN_CRIT = new Set(['io.cncf.notary.signingScheme', 'io.cncf.notary.expiry', 'io.cncf.notary.authenticSigningTime'])
export const PLUGIN_ATTRS = ['io.cncf.notary.verificationPlugin', 'io.cncf.notary.verificationPluginMinVersion']

export interface NotationEnvelope {
  payload: Buffer
  protectedHeader: Record<string, unknown>
  chain: X509Certificate[]
  signingScheme: string
  expiry?: Date
  signingTime?: Date
}

const b64url = (s: unknown, what: string, code: 'NOTATION_MALFORMED' | 'NOTATION_SIGNATURE_INVALID' = 'NOTATION_MALFORMED'): Buffer => {
  if (typeof s !== 'string' || !/^[A-Za-z0-9_-]*$/.test(s)) throw new NotationFailure(code, `${what} is not base64url`)
  return Buffer.from(s, 'base64url')
}

/** The JWS algorithms notation allows, with the key each needs. */
export function algFor(cert: X509Certificate): string {
  const key = cert.publicKey
  const d = key.asymmetricKeyDetails ?? {}
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d.modulusLength ?? 0
    if (bits === 2048) return 'PS256'
    if (bits === 3072) return 'PS384'
    if (bits === 4096) return 'PS512'
  } else if (key.asymmetricKeyType === 'ec') {
    if (d.namedCurve === 'prime256v1') return 'ES256'
    if (d.namedCurve === 'secp384r1') return 'ES384'
    if (d.namedCurve === 'secp521r1') return 'ES512'
  }
  throw new NotationFailure('NOTATION_CHAIN_INVALID', `signing key ${key.asymmetricKeyType} ${d.modulusLength ?? d.namedCurve ?? ''} is not one notation allows`)
}

export function parseJws(bytes: Uint8Array): NotationEnvelope {
  let env: Record<string, unknown>
  try {
    env = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>
  } catch {
    throw new NotationFailure('NOTATION_MALFORMED', 'JWS envelope is not JSON')
  }
  if (typeof env !== 'object' || env === null) throw new NotationFailure('NOTATION_MALFORMED', 'JWS envelope is not an object')
  const protectedB64 = env.protected
  const protectedBytes = b64url(protectedB64, 'protected')
  const payload = b64url(env.payload, 'payload', 'NOTATION_SIGNATURE_INVALID')
  const signature = b64url(env.signature, 'signature', 'NOTATION_SIGNATURE_INVALID')
  let hdr: Record<string, unknown>
  try {
    hdr = JSON.parse(protectedBytes.toString('utf8')) as Record<string, unknown>
  } catch {
    throw new NotationFailure('NOTATION_MALFORMED', 'protected header is not JSON')
  }
  for (const a of PLUGIN_ATTRS) if (a in hdr) throw new NotationFailure('NOTATION_PLUGIN_UNSUPPORTED', `signature requires verification plugin ${String(hdr[a])}`)
  const crit = hdr.crit
  if (!Array.isArray(crit)) throw new NotationFailure('NOTATION_MALFORMED', 'protected header has no crit list')
  for (const c of crit) {
    if (typeof c !== 'string' || !(c in hdr)) throw new NotationFailure('NOTATION_MALFORMED', `crit names ${String(c)}, absent from the protected header`)
    if (!KNOWN_CRIT.has(c)) throw new NotationFailure('NOTATION_UNKNOWN_CRIT', `critical attribute ${c} is not understood`)
  }
  const scheme = hdr['io.cncf.notary.signingScheme']
  if (scheme !== 'notary.x509' && scheme !== 'notary.x509.signingAuthority') throw new NotationFailure('NOTATION_MALFORMED', `signing scheme ${String(scheme)} unknown`)
  if (!crit.includes('io.cncf.notary.signingScheme')) throw new NotationFailure('NOTATION_MALFORMED', 'signingScheme is not marked critical')
  if (hdr.cty !== 'application/vnd.cncf.notary.payload.v1+json') throw new NotationFailure('NOTATION_MALFORMED', `cty ${String(hdr.cty)} is not the notary payload`)
  const unprotected = (env.header ?? {}) as Record<string, unknown>
  const x5c = unprotected.x5c
  if (!Array.isArray(x5c) || x5c.length === 0) throw new NotationFailure('NOTATION_MALFORMED', 'no x5c certificate chain')
  const chain = x5c.map((c: unknown) => {
    try {
      return new X509Certificate(Buffer.from(String(c), 'base64'))
    } catch {
      throw new NotationFailure('NOTATION_MALFORMED', 'x5c holds something that is not a certificate')
    }
  })
  const leaf = chain[0]!
  const alg = algFor(leaf)
  if (hdr.alg !== alg) throw new NotationFailure('NOTATION_ALG_MISMATCH', `alg ${String(hdr.alg)} does not match the signing key (${alg})`)
  const signingInput = Buffer.from(`${String(protectedB64)}.${String(env.payload)}`)
  const hash = `sha${alg.slice(2)}`
  const key = createPublicKey(leaf.publicKey.export({ type: 'spki', format: 'pem' }))
  const ok = alg.startsWith('PS')
    ? verify(hash, signingInput, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }, signature)
    : verify(hash, signingInput, { key, dsaEncoding: 'ieee-p1363' }, signature)
  if (!ok) throw new NotationFailure('NOTATION_SIGNATURE_INVALID', 'the envelope signature does not verify')
  const time = (k: string) => (typeof hdr[k] === 'string' ? new Date(hdr[k]) : undefined)
  const expiry = time('io.cncf.notary.expiry')
  const signingTime = time('io.cncf.notary.signingTime') ?? time('io.cncf.notary.authenticSigningTime')
  return { payload, protectedHeader: hdr, chain, signingScheme: scheme, ...(expiry ? { expiry } : {}), ...(signingTime ? { signingTime } : {}) }
}

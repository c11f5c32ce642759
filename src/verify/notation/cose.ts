// Notation's COSE_Sign1 envelope (signature-envelope-cose): integrity, `crit` and `alg` rules, the
// x5chain in the unprotected header. Threat as for JWS: a signature not over what it claims, a
// critical header (a plugin among them) silently ignored, an `alg` the signing key does not fit.
import { constants, createPublicKey, verify, X509Certificate } from 'node:crypto'
import { decode, encode, Tag } from 'cbor2'
import { NotationFailure } from './codes.ts'
import { parseCoseSign1 } from './cose-sign1.ts'
import { algFor, KNOWN_CRIT, PLUGIN_ATTRS, type NotationEnvelope } from './jws.ts'

const ALGS: Record<number, string> = { [-37]: 'PS256', [-38]: 'PS384', [-39]: 'PS512', [-7]: 'ES256', [-35]: 'ES384', [-36]: 'ES512' }

/** Maps stay Maps (COSE keys are integers); anything after the first item is an error. */
const decodeCbor = (bytes: Uint8Array): unknown => decode(bytes, { preferMap: true })

export function parseCose(bytes: Uint8Array): NotationEnvelope {
  const sign1 = parseCoseSign1(bytes)
  if (!sign1 || sign1.payload === null) throw new NotationFailure('NOTATION_MALFORMED', 'not a COSE_Sign1 envelope with an attached payload')
  let hdr: unknown
  try {
    hdr = decodeCbor(sign1.protectedBytes)
  } catch {
    throw new NotationFailure('NOTATION_MALFORMED', 'protected header is not CBOR')
  }
  if (!(hdr instanceof Map)) throw new NotationFailure('NOTATION_MALFORMED', 'protected header is not a map')
  for (const a of PLUGIN_ATTRS) if (hdr.has(a)) throw new NotationFailure('NOTATION_PLUGIN_UNSUPPORTED', `signature requires verification plugin ${String(hdr.get(a))}`)
  const crit = hdr.get(2)
  if (!Array.isArray(crit)) throw new NotationFailure('NOTATION_MALFORMED', 'protected header has no crit list')
  for (const c of crit) {
    if (!hdr.has(c)) throw new NotationFailure('NOTATION_MALFORMED', `crit names ${String(c)}, absent from the protected header`)
    if (typeof c !== 'string' || !KNOWN_CRIT.has(c)) throw new NotationFailure('NOTATION_UNKNOWN_CRIT', `critical attribute ${String(c)} is not understood`)
  }
  const scheme = hdr.get('io.cncf.notary.signingScheme')
  if (scheme !== 'notary.x509' && scheme !== 'notary.x509.signingAuthority') throw new NotationFailure('NOTATION_MALFORMED', `signing scheme ${String(scheme)} unknown`)
  if (hdr.get(3) !== 'application/vnd.cncf.notary.payload.v1+json') throw new NotationFailure('NOTATION_MALFORMED', 'content type is not the notary payload')
  const x5chain = sign1.unprotected.get(33)
  const ders = x5chain instanceof Uint8Array ? [x5chain] : Array.isArray(x5chain) ? (x5chain as unknown[]) : []
  if (ders.length === 0 || !ders.every((d) => d instanceof Uint8Array)) throw new NotationFailure('NOTATION_MALFORMED', 'no x5chain certificate chain')
  const chain = ders.map((d) => {
    try {
      return new X509Certificate(d as Uint8Array)
    } catch {
      throw new NotationFailure('NOTATION_MALFORMED', 'x5chain holds something that is not a certificate')
    }
  })
  const alg = algFor(chain[0]!)
  if (ALGS[hdr.get(1) as number] !== alg) throw new NotationFailure('NOTATION_ALG_MISMATCH', `alg ${String(hdr.get(1))} does not match the signing key (${alg})`)
  // Plain Uint8Arrays: a Buffer would not encode as a bare byte string.
  const toBeSigned = encode(['Signature1', Uint8Array.from(sign1.protectedBytes), new Uint8Array(0), Uint8Array.from(sign1.payload)])
  const hash = `sha${alg.slice(2)}`
  const key = createPublicKey(chain[0]!.publicKey.export({ type: 'spki', format: 'pem' }))
  const ok = alg.startsWith('PS')
    ? verify(hash, toBeSigned, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 }, sign1.signature)
    : verify(hash, toBeSigned, { key, dsaEncoding: 'ieee-p1363' }, sign1.signature)
  if (!ok) throw new NotationFailure('NOTATION_SIGNATURE_INVALID', 'the envelope signature does not verify')
  const time = (k: string) => {
    const v = hdr.get(k)
    if (v instanceof Tag) return new Date(Number(v.contents) * 1000)
    if (v instanceof Date) return v
    return typeof v === 'number' ? new Date(v * 1000) : undefined
  }
  const expiry = time('io.cncf.notary.expiry')
  const signingTime = time('io.cncf.notary.signingTime') ?? time('io.cncf.notary.authenticSigningTime')
  return {
    payload: Buffer.from(sign1.payload),
    protectedHeader: Object.fromEntries([...hdr].map(([k, v]) => [String(k), v])),
    chain,
    signingScheme: scheme,
    ...(expiry ? { expiry } : {}),
    ...(signingTime ? { signingTime } : {}),
  }
}

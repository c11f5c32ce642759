// One Sigstore bundle against one authority: sigstore-js does the cryptography (chain, SCT, tlog,
// timestamps, signature); this module chooses its thresholds from the authority, supplies the
// key-based trust, matches keyless identities and names every failure with a VerifyCode.
// Synchronous and free of I/O.
import { verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { BUNDLE_V01_MEDIA_TYPE, BUNDLE_V02_MEDIA_TYPE, BUNDLE_V03_LEGACY_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPE, bundleFromJSON, type Bundle } from '@sigstore/bundle'
import { dsse, X509Certificate } from '@sigstore/core'
import { toSignedEntity, Verifier, type SignedEntity, type TrustMaterial, type VerifierOptions } from '@sigstore/verify'
import { toVerifyFailure, VerifyFailure } from './errors.ts'
import { matchIdentity } from './identity.ts'
import { keyHint } from './keys.ts'
import { signingCertificate } from './memo.ts'
import type { AuthorityMaterial, Evidence, KeyHashAlgorithm, LoadedTrustRoot } from './types.ts'

const KNOWN_MEDIA_TYPES: ReadonlySet<string> = new Set([BUNDLE_V01_MEDIA_TYPE, BUNDLE_V02_MEDIA_TYPE, BUNDLE_V03_LEGACY_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPE])

/** Parses a serialized bundle (v0.1, v0.2, v0.3) and checks its required fields. */
export function parseBundle(serialized: unknown): Bundle {
  if (typeof serialized !== 'object' || serialized === null || Array.isArray(serialized)) {
    throw new VerifyFailure('MALFORMED', 'a Sigstore bundle must be a JSON object')
  }
  const mediaType = (serialized as { mediaType?: unknown }).mediaType
  if (typeof mediaType !== 'string' || !KNOWN_MEDIA_TYPES.has(mediaType)) {
    throw new VerifyFailure('MALFORMED', `unknown bundle mediaType ${JSON.stringify(mediaType ?? null)?.slice(0, 120)}`)
  }
  let bundle: Bundle
  try {
    bundle = bundleFromJSON(serialized)
  } catch (err) {
    throw toVerifyFailure(err)
  }
  // A chain must stop below the root: the root comes from the trust root, never from the signer.
  const content = bundle.verificationMaterial.content
  if (content.$case === 'x509CertificateChain') {
    for (const raw of content.x509CertificateChain.certificates) {
      let cert: X509Certificate
      try {
        cert = X509Certificate.parse(Buffer.from(raw.rawBytes))
      } catch (err) {
        throw toVerifyFailure(err)
      }
      if (cert.subject.equals(cert.issuer)) throw new VerifyFailure('MALFORMED', 'the certificate chain contains a root (self-issued) certificate')
    }
  }
  // v0.1 bundles are only checked for inclusion promises; sigstore-js would then trip over an
  // inclusion proof without a checkpoint with a TypeError.
  bundle.verificationMaterial.tlogEntries.forEach((entry, i) => {
    if (entry.inclusionProof && !entry.inclusionProof.checkpoint) {
      throw new VerifyFailure('MALFORMED', `tlog entry ${i} has an inclusion proof without a checkpoint`)
    }
  })
  return bundle
}

export interface BundleResult {
  checks: string[]
  signer: NonNullable<Evidence['signer']>
  tlog?: Evidence['tlog']
}

/**
 * Verifies the bundle's signature material against the authority. `artifact` is what a message
 * signature covers (ignored for DSSE, whose envelope carries its payload). Throws VerifyFailure.
 */
export function verifyBundle(bundle: Bundle, artifact: Buffer | undefined, material: AuthorityMaterial): BundleResult {
  if (bundle.content.$case === 'messageSignature' && artifact === undefined) {
    throw new VerifyFailure('MALFORMED', 'a message signature needs the bytes it signs, and none were given')
  }
  return material.type === 'key' ? verifyWithKeys(bundle, artifact, material) : verifyKeyless(bundle, artifact, material)
}

/** The leaf certificate's DER, if the bundle carries one. */
function leafCertificate(bundle: Bundle): Buffer | undefined {
  const content = bundle.verificationMaterial.content
  if (content.$case === 'certificate') return Buffer.from(content.certificate.rawBytes)
  if (content.$case === 'x509CertificateChain') {
    const first = content.x509CertificateChain.certificates[0]
    return first ? Buffer.from(first.rawBytes) : undefined
  }
  return undefined
}

/**
 * toSignedEntity, except that the signing certificate comes from the memoised cache (parsed once
 * per exact DER) and a key-based authority verifies with its key even when a certificate is attached.
 */
function signedEntity(bundle: Bundle, artifact: Buffer | undefined, leaf: Buffer | undefined, asKey: boolean): SignedEntity {
  const withoutCertificate: Bundle =
    leaf === undefined ? bundle : { ...bundle, verificationMaterial: { ...bundle.verificationMaterial, content: { $case: 'publicKey', publicKey: { hint: '' } } } }
  let entity: SignedEntity
  try {
    entity = toSignedEntity(withoutCertificate, artifact)
  } catch (err) {
    throw toVerifyFailure(err)
  }
  if (leaf !== undefined && !asKey) {
    let certificate: X509Certificate
    try {
      certificate = signingCertificate(leaf)
    } catch (err) {
      throw toVerifyFailure(err)
    }
    entity = { ...entity, key: { $case: 'certificate', certificate } }
  }
  return entity
}

function firstTlog(entity: SignedEntity): BundleResult['tlog'] {
  const entry = entity.tlogEntries[0]
  if (!entry) return undefined
  const seconds = Number(entry.integratedTime)
  return {
    logIndex: entry.logIndex,
    ...(seconds > 0 ? { integratedTime: new Date(seconds * 1000).toISOString() } : {}),
  }
}

function timestampChecks(entity: SignedEntity): string[] {
  const checks: string[] = []
  if (entity.timestamps.some((t) => t.$case === 'transparency-log')) checks.push('signing time (tlog)')
  if (entity.timestamps.some((t) => t.$case === 'timestamp-authority')) checks.push('signing time (RFC 3161)')
  return checks
}

// ---------------------------------------------------------------------------------------------
// Key-based

const EMPTY_TRUST: Omit<TrustMaterial, 'publicKey'> = { certificateAuthorities: [], timestampAuthorities: [], tlogs: [], ctlogs: [] }

function verifyWithKeys(bundle: Bundle, artifact: Buffer | undefined, material: Extract<AuthorityMaterial, { type: 'key' }>): BundleResult {
  if (material.keys.length === 0) throw new VerifyFailure('UNTRUSTED_KEY', 'the authority has no keys')
  if (material.requireTlog && !material.trustRoot) {
    throw new VerifyFailure('TRUST_ROOT_UNKNOWN', 'a transparency-log entry is required but no trust root was given to check it')
  }
  let entity = signedEntity(bundle, artifact, leafCertificate(bundle), true)
  if (material.requireTlog && entity.tlogEntries.length === 0) {
    throw new VerifyFailure('TLOG_MISSING', 'the signature has no transparency-log entry and the authority requires one')
  }
  // As policy-controller and `cosign verify --insecure-ignore-tlog`: an authority without `ctlog`
  // does not look at tlog entries or timestamps at all (air-gapped --tlog-upload=false signatures).
  if (!material.requireTlog) entity = { ...entity, tlogEntries: [], timestamps: [] }
  const options: VerifierOptions = { tlogThreshold: material.requireTlog ? 1 : 0, ctlogThreshold: 0, timestampThreshold: 0 }

  let other: VerifyFailure | undefined
  for (const { key, hint, hashAlgorithm } of material.keys) {
    const trust: TrustMaterial = {
      ...(material.trustRoot?.material ?? EMPTY_TRUST),
      publicKey: () => ({ publicKey: key, validFor: () => true }),
    }
    try {
      new Verifier(trust, options).verify(withHashAlgorithm(entity, bundle, artifact, key, hashAlgorithm))
      const checks = ['signature (key)', ...(material.requireTlog ? ['tlog', ...timestampChecks(entity)] : ['tlog (not required)'])]
      return { checks, signer: { keyHint: hint ?? keyHint(key) }, ...(material.requireTlog ? { tlog: firstTlog(entity) } : {}) }
    } catch (err) {
      const failure = toVerifyFailure(err)
      if (failure.code !== 'SIGNATURE_INVALID') other ??= failure
    }
  }
  if (other) throw other
  const count = material.keys.length
  throw new VerifyFailure('UNTRUSTED_KEY', `the signature does not verify with ${count === 1 ? 'the trusted key' : `any of the ${count} trusted keys`}`)
}

/**
 * @sigstore/verify checks a message signature with the hash named in the bundle and a DSSE envelope
 * with OpenSSL's default (SHA-256), and cannot check Ed25519 message signatures at all (it passes a
 * digest name, which Ed25519 refuses). A key authority states its hash (policy-controller's
 * `hashAlgorithm`); only then is the final signature check done here with that hash.
 */
function withHashAlgorithm(entity: SignedEntity, bundle: Bundle, artifact: Buffer | undefined, key: KeyObject, hashAlgorithm: KeyHashAlgorithm | undefined): SignedEntity {
  const ed25519 = key.asymmetricKeyType === 'ed25519'
  if (!ed25519 && (hashAlgorithm ?? 'sha256') === 'sha256') return entity
  const signed = bundle.content.$case === 'dsseEnvelope' ? dsse.preAuthEncoding(bundle.content.dsseEnvelope.payloadType, bundle.content.dsseEnvelope.payload) : artifact!
  const content = entity.signature
  const algorithm = ed25519 ? null : hashAlgorithm!
  return {
    ...entity,
    signature: {
      signature: content.signature,
      compareSignature: (s) => content.compareSignature(s),
      compareDigest: (d) => content.compareDigest(d),
      compareSignedDigest: (d) => content.compareSignedDigest(d),
      verifySignature: (k) => {
        try {
          return cryptoVerify(algorithm, signed, k, content.signature)
        } catch {
          return false
        }
      },
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Keyless

const verifiers = new WeakMap<LoadedTrustRoot, Map<string, Verifier>>()

function keylessVerifier(root: LoadedTrustRoot, requireTlog: boolean, ignoreSCT: boolean): Verifier {
  let byOptions = verifiers.get(root)
  if (!byOptions) verifiers.set(root, (byOptions = new Map()))
  const id = `${requireTlog}/${ignoreSCT}`
  let verifier = byOptions.get(id)
  if (!verifier) {
    // The signing time must always be proven (an SET or an RFC 3161 timestamp), so the
    // certificate is checked at a time nobody can choose.
    verifier = new Verifier(root.material, { tlogThreshold: requireTlog ? 1 : 0, ctlogThreshold: ignoreSCT ? 0 : 1, timestampThreshold: 1 })
    byOptions.set(id, verifier)
  }
  return verifier
}

function verifyKeyless(bundle: Bundle, artifact: Buffer | undefined, material: Extract<AuthorityMaterial, { type: 'keyless' }>): BundleResult {
  const leaf = leafCertificate(bundle)
  if (leaf === undefined) throw new VerifyFailure('CERTIFICATE_INVALID', 'the signature carries no certificate; a keyless authority needs one')
  const requireTlog = material.requireTlog ?? true
  const entity = signedEntity(bundle, artifact, leaf, false)
  if (requireTlog && entity.tlogEntries.length === 0) {
    throw new VerifyFailure('TLOG_MISSING', 'the signature has no transparency-log entry')
  }
  let signer
  try {
    signer = keylessVerifier(material.trustRoot, requireTlog, material.ignoreSCT).verify(entity)
  } catch (err) {
    throw explainCertificateTime(toVerifyFailure(err), entity)
  }
  const identity = { issuer: signer.identity?.extensions?.issuer, subject: signer.identity?.subjectAlternativeName }
  const matched = matchIdentity(identity, material.identities)
  if (!matched.ok) throw new VerifyFailure('IDENTITY_MISMATCH', matched.reason)
  const checks = [
    'certificate chain',
    material.ignoreSCT ? 'sct (ignored)' : 'sct',
    ...(entity.tlogEntries.length > 0 ? ['tlog'] : []),
    ...timestampChecks(entity),
    'signature',
    'identity',
  ]
  return { checks, signer: identity, tlog: firstTlog(entity) }
}

/**
 * A chain failure whose certificate was simply not valid at the claimed signing times is reported
 * as CERTIFICATE_EXPIRED. The times are read only to name the failure; sigstore-js decided it.
 */
function explainCertificateTime(failure: VerifyFailure, entity: SignedEntity): VerifyFailure {
  if (failure.code !== 'CERTIFICATE_INVALID' || entity.key.$case !== 'certificate') return failure
  const cert = entity.key.certificate
  const times = entity.timestamps.map((t) => (t.$case === 'transparency-log' ? new Date(Number(t.tlogEntry.integratedTime) * 1000) : t.timestamp.signingTime))
  const outside = times.find((t) => !cert.validForDate(t))
  if (outside === undefined) return failure
  return new VerifyFailure(
    'CERTIFICATE_EXPIRED',
    `certificate valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()} but the signing time is ${outside.toISOString()}`,
    { cause: failure },
  )
}

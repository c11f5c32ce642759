// Legacy cosign signatures (`sha256-<hex>.sig` simple-signing layers) and attestations (`.att` DSSE
// layers) keep their signature material in layer annotations. They are turned into the Sigstore
// bundle shape sigstore-js verifies, so there is one verification path for every format.
import { createHash } from 'node:crypto'
import { BUNDLE_V01_MEDIA_TYPE, BUNDLE_V03_MEDIA_TYPE, type SerializedBundle, type SerializedEnvelope } from '@sigstore/bundle'
import { codedError } from '../errors.ts'

export const CosignAnnotation = {
  signature: 'dev.cosignproject.cosign/signature',
  certificate: 'dev.sigstore.cosign/certificate',
  chain: 'dev.sigstore.cosign/chain',
  /** The Rekor "bundle": an SET plus the entry it signs. */
  rekorBundle: 'dev.sigstore.cosign/bundle',
  rfc3161Timestamp: 'dev.sigstore.cosign/rfc3161timestamp',
  predicateType: 'predicateType',
} as const

/** The annotation or layer content cannot be read: reported as MALFORMED. */
export class LegacyFormatError extends codedError('MALFORMED', 'LegacyFormatError') {}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/

function base64(value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length === 0 || !BASE64.test(value)) throw new LegacyFormatError(`${what} is not base64`)
  return value
}

function parseJson(text: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new LegacyFormatError(`${what} is not JSON`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new LegacyFormatError(`${what} is not a JSON object`)
  return value as Record<string, unknown>
}

/** DER of the first certificate in a PEM annotation, base64-encoded. */
function certificateFromPem(pem: string): string {
  const m = PEM_CERTIFICATE.exec(pem)
  if (!m) throw new LegacyFormatError(`${CosignAnnotation.certificate} holds no PEM certificate`)
  return base64(m[1]!.replace(/\s+/g, ''), 'certificate PEM body')
}

type TLogEntry = SerializedBundle['verificationMaterial']['tlogEntries'][number]

/**
 * `{"SignedEntryTimestamp": b64, "Payload": {"body": b64, "integratedTime": n, "logIndex": n,
 * "logID": hex}}` → a bundle tlog entry with an inclusion promise.
 */
function tlogEntryFromRekorBundle(text: string): TLogEntry {
  const doc = parseJson(text, CosignAnnotation.rekorBundle)
  const payload = doc.Payload
  if (typeof payload !== 'object' || payload === null) throw new LegacyFormatError(`${CosignAnnotation.rekorBundle} has no Payload`)
  const { body, integratedTime, logIndex, logID } = payload as Record<string, unknown>
  const canonicalizedBody = base64(body, 'Rekor entry body')
  if (!Number.isSafeInteger(integratedTime) || !Number.isSafeInteger(logIndex) || (logIndex as number) < 0) {
    throw new LegacyFormatError(`${CosignAnnotation.rekorBundle} has no valid integratedTime/logIndex`)
  }
  if (typeof logID !== 'string' || !/^[0-9a-f]{64}$/i.test(logID)) throw new LegacyFormatError(`${CosignAnnotation.rekorBundle} has no valid logID`)
  const entry = parseJson(Buffer.from(canonicalizedBody, 'base64').toString('utf8'), 'Rekor entry body')
  if (typeof entry.kind !== 'string' || typeof entry.apiVersion !== 'string') throw new LegacyFormatError('Rekor entry body has no kind/apiVersion')
  return {
    logIndex: String(logIndex),
    logId: { keyId: Buffer.from(logID, 'hex').toString('base64') },
    kindVersion: { kind: entry.kind, version: entry.apiVersion },
    integratedTime: String(integratedTime),
    inclusionPromise: { signedEntryTimestamp: base64(doc.SignedEntryTimestamp, 'SignedEntryTimestamp') },
    inclusionProof: undefined,
    canonicalizedBody,
  }
}

function verificationMaterial(annotations: Record<string, string>): SerializedBundle['verificationMaterial'] {
  const pem = annotations[CosignAnnotation.certificate]
  const rekor = annotations[CosignAnnotation.rekorBundle]
  const rfc3161 = annotations[CosignAnnotation.rfc3161Timestamp]
  let timestamps: SerializedBundle['verificationMaterial']['timestampVerificationData']
  if (rfc3161) {
    const doc = parseJson(rfc3161, CosignAnnotation.rfc3161Timestamp)
    timestamps = { rfc3161Timestamps: [{ signedTimestamp: base64(doc.SignedRFC3161Timestamp, 'SignedRFC3161Timestamp') }] }
  }
  // Only the leaf is needed: sigstore-js builds the chain from the trust root, never from the
  // signature (`dev.sigstore.cosign/chain` would let a signer supply its own intermediates).
  const key = pem ? { certificate: { rawBytes: certificateFromPem(pem) } } : { publicKey: { hint: '' } }
  return {
    ...key,
    tlogEntries: rekor ? [tlogEntryFromRekorBundle(rekor)] : [],
    timestampVerificationData: timestamps,
  } as SerializedBundle['verificationMaterial']
}

/** A bundle with an SET only is a v0.1 bundle; one without tlog entries fits v0.3. */
function mediaTypeFor(material: SerializedBundle['verificationMaterial']): string {
  return material.tlogEntries.length > 0 ? BUNDLE_V01_MEDIA_TYPE : BUNDLE_V03_MEDIA_TYPE
}

/** A `.sig` simple-signing layer: `payload` is the layer's bytes, the signature is over them. */
export function legacySignatureBundle(payload: Buffer, annotations: Record<string, string>): SerializedBundle {
  const signature = base64(annotations[CosignAnnotation.signature], CosignAnnotation.signature)
  const material = verificationMaterial(annotations)
  return {
    mediaType: mediaTypeFor(material),
    verificationMaterial: material,
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: createHash('sha256').update(payload).digest('base64') },
      signature,
    },
  } as SerializedBundle
}

/**
 * An `.att` layer: a DSSE envelope (JSON) whose signature material is in the annotations.
 * One bundle per envelope signature (sigstore-js verifies single-signature envelopes).
 */
export function legacyAttestationBundles(envelopeBytes: Buffer, annotations: Record<string, string>): SerializedBundle[] {
  const envelope = parseJson(envelopeBytes.toString('utf8'), 'DSSE envelope')
  const { payloadType, payload, signatures } = envelope
  if (typeof payloadType !== 'string') throw new LegacyFormatError('DSSE envelope has no payloadType')
  base64(payload, 'DSSE payload')
  if (!Array.isArray(signatures) || signatures.length === 0) throw new LegacyFormatError('DSSE envelope has no signatures')
  const material = verificationMaterial(annotations)
  return signatures.map((s: unknown) => {
    const { sig, keyid } = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>
    const dsseEnvelope: SerializedEnvelope = {
      payload: payload as string,
      payloadType,
      signatures: [{ sig: base64(sig, 'DSSE signature'), keyid: typeof keyid === 'string' ? keyid : '' }],
    }
    return { mediaType: mediaTypeFor(material), verificationMaterial: material, dsseEnvelope } as SerializedBundle
  })
}

/** The predicate type of a DSSE envelope's in-toto statement, if it can be read. */
export function envelopePredicateType(payloadBase64: string): string | undefined {
  try {
    const statement: unknown = JSON.parse(Buffer.from(payloadBase64, 'base64').toString('utf8'))
    const type = (statement as { predicateType?: unknown } | null)?.predicateType
    return typeof type === 'string' ? type : undefined
  } catch {
    return undefined
  }
}

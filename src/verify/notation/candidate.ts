// A discovered Notation signature against a `notation` authority → Evidence, as verdicts and
// `trustpull verify` show it (signer subject and issuer, the statement and level, each failure's
// code). The artifact a payload must name is the exact manifest served: its digest, media type
// and size, never a value the signature or the registry's listing supplies.
import type { Manifest } from '../../oci/manifest.ts'
import type { Evidence, NotationCandidate } from '../types.ts'
import { verifyUnderPolicy, type NotationArtifact, type NotationMaterial } from './authority.ts'
import { NotationFailure } from './codes.ts'

interface ImageShape {
  upstream: string
  repository: string
  digest: string
  mediaType: string
  manifest: Manifest
  bytes?: Buffer
}

/** The artifact `digest` names: the image itself, or a platform manifest its index lists. */
export function notationArtifact(image: ImageShape, digest: string): NotationArtifact | undefined {
  const name = `${image.upstream}/${image.repository}`
  if (digest === image.digest) return image.bytes ? { name, digest, mediaType: image.mediaType, size: image.bytes.length } : undefined
  const d = image.manifest.kind === 'index' ? image.manifest.manifests.find((m) => m.digest === digest) : undefined
  return d ? { name, digest, mediaType: d.mediaType, size: d.size } : undefined
}

export function verifyNotationCandidate(candidate: NotationCandidate, material: NotationMaterial, artifact: NotationArtifact | undefined, now = new Date()): Evidence {
  const evidence: Evidence = { kind: candidate.kind, format: candidate.format, origin: candidate.origin, ok: false, checks: [] }
  if (!artifact) return { ...evidence, code: 'NOTATION_MALFORMED', reason: 'the size of the signed manifest is not known, so its payload cannot be checked' }
  try {
    const result = verifyUnderPolicy(candidate.envelopeType, candidate.envelope, artifact, material, now)
    evidence.checks.push(...result.checks)
    evidence.notation = result
    if (result.subject) evidence.signer = { subject: result.subject, ...(result.issuer ? { issuer: result.issuer } : {}) }
    evidence.ok = true
  } catch (err) {
    if (!(err instanceof NotationFailure)) throw err
    evidence.code = err.code
    evidence.reason = err.message
  }
  return evidence
}

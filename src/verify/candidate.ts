// A discovered signature or attestation against one authority and one image digest → Evidence.
// Synchronous, no I/O. The payload is checked first (no cryptography is spent on a signature that
// is about another image), then the bundle's signature material (./bundle.ts).
import { createHash } from 'node:crypto'
import type { Bundle } from '@sigstore/bundle'
import { parseDigest } from '../oci/digest.ts'
import { parseBundle, verifyBundle } from './bundle.ts'
import { toVerifyFailure, VerifyFailure } from './errors.ts'
import { checkSimpleSigning, checkSubject, COSIGN_SIGN_PREDICATE, parseStatement } from './payload.ts'
import type { AuthorityMaterial, Candidate, Evidence, InTotoStatement } from './types.ts'

export interface VerifyCandidateOptions {
  /** Require a simple-signing `docker-reference` naming this repository (path only: `org/app`). */
  expectedRepository?: string
}

export function verifyCandidate(candidate: Candidate, material: AuthorityMaterial, imageDigest: string, options: VerifyCandidateOptions = {}): Evidence {
  const evidence: Evidence = { kind: candidate.kind, format: candidate.format, origin: candidate.origin, ok: false, checks: [] }
  try {
    const bundle = parseBundle(candidate.bundle)
    evidence.checks.push('bundle')
    const { artifact, statement } = checkPayload(candidate, bundle, imageDigest, options, evidence.checks)
    if (statement) evidence.predicateType = statement.predicateType
    const result = verifyBundle(bundle, artifact, material)
    evidence.checks.push(...result.checks)
    evidence.signer = result.signer
    if (result.tlog) evidence.tlog = result.tlog
    // Only a verified statement is kept: an unverified one is whatever the upstream wrote (megabytes,
    // nesting JSON.stringify cannot serialise), and the verdict carrying it is cached and shared.
    if (statement) evidence.statement = statement
    evidence.ok = true
  } catch (err) {
    const failure = toVerifyFailure(err)
    evidence.code = failure.code
    evidence.reason = failure.message
  }
  return evidence
}

function checkPayload(
  candidate: Candidate,
  bundle: Bundle,
  imageDigest: string,
  options: VerifyCandidateOptions,
  checks: string[],
): { artifact?: Buffer; statement?: InTotoStatement } {
  const image = parseDigest(imageDigest)
  if (bundle.content.$case === 'dsseEnvelope') {
    const envelope = bundle.content.dsseEnvelope
    const statement = parseStatement(envelope.payloadType, envelope.payload)
    checks.push('in-toto statement')
    checkSubject(statement, image)
    checks.push('subject digest')
    if (candidate.kind === 'signature' && statement.predicateType !== COSIGN_SIGN_PREDICATE) {
      throw new VerifyFailure('PAYLOAD_INVALID', `a signature statement must have predicateType ${COSIGN_SIGN_PREDICATE}`)
    }
    return { statement }
  }

  const payload = candidate.payload
  if (payload === undefined) throw new VerifyFailure('MALFORMED', 'the signed payload was not found')
  if (candidate.kind !== 'signature') throw new VerifyFailure('PAYLOAD_INVALID', 'an attestation must be a DSSE envelope')
  if (candidate.format === 'cosign-legacy') {
    checkSimpleSigning(payload, imageDigest, options.expectedRepository)
    checks.push('simple-signing payload', 'docker-manifest-digest')
    if (options.expectedRepository !== undefined) checks.push('docker-reference')
    return { artifact: payload }
  }
  // A message-signature bundle attached to an image signs the image manifest itself.
  const { messageDigest } = bundle.content.messageSignature
  const signedHex = messageDigest.digest.toString('hex')
  const payloadHex = createHash(image.algorithm).update(payload).digest('hex')
  if (signedHex !== image.hex || payloadHex !== image.hex) {
    throw new VerifyFailure('DIGEST_MISMATCH', `message signature is over ${signedHex.slice(0, 64)}, not ${imageDigest}`)
  }
  checks.push('message digest')
  return { artifact: payload }
}

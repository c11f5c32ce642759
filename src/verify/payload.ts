// What a verified signature says about the image: the simple-signing payload of a cosign signature
// and the in-toto statement of a DSSE envelope. Pure functions over bytes; failures are VerifyFailures.
import type { Digest } from '../oci/digest.ts'
import { normaliseDockerHubRepository, parseImageName } from '../oci/image-name.ts'
import { firstDuplicateKey } from './duplicate-keys.ts'
import { VerifyFailure } from './errors.ts'
import type { InTotoStatement } from './types.ts'

export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature'
/** The predicate type of a cosign v3 image signature (a DSSE statement instead of simple signing). */
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1'
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json'
const IN_TOTO_STATEMENT = /^https:\/\/in-toto\.io\/Statement\/v\d+(\.\d+)?$/

type JsonObject = Record<string, unknown>

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Go's encoding/json, which cosign decodes payloads with, matches keys case-insensitively (with
 * Unicode folding: `ſ` is `s`, the Kelvin sign is `k`) and keeps the last match; we would keep
 * another. Two keys that can be read as one make the payload ambiguous: refused.
 */
function field(object: JsonObject, name: string): unknown {
  const folded = fold(name)
  const keys = Object.keys(object).filter((k) => fold(k) === folded)
  if (keys.length > 1) {
    throw new VerifyFailure('PAYLOAD_INVALID', `simple-signing payload has duplicate keys ${keys.map((k) => JSON.stringify(k)).join(', ')} for "${name}"`)
  }
  return keys.length === 1 ? object[keys[0]!] : undefined
}

function fold(key: string): string {
  return key.toUpperCase().toLowerCase()
}

function parseJson(bytes: Buffer, what: string): unknown {
  const text = bytes.toString('utf8')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new VerifyFailure('PAYLOAD_INVALID', `${what} is not JSON: ${(err as Error).message}`)
  }
  const duplicate = firstDuplicateKey(text)
  if (duplicate !== undefined) throw new VerifyFailure('PAYLOAD_INVALID', `${what} has duplicate key ${JSON.stringify(duplicate.slice(0, 100))}`)
  return value
}

export interface SimpleSigning {
  dockerReference?: string
}

/**
 * Checks a cosign simple-signing payload: `critical.type` is a container image signature and
 * `critical.image.docker-manifest-digest` is exactly the image digest. When `expectedRepository`
 * is given, `critical.identity.docker-reference` must name that repository.
 */
export function checkSimpleSigning(payload: Buffer, imageDigest: string, expectedRepository?: string): SimpleSigning {
  const doc = parseJson(payload, 'simple-signing payload')
  const critical = isObject(doc) ? field(doc, 'critical') : undefined
  if (!isObject(critical)) throw new VerifyFailure('PAYLOAD_INVALID', 'simple-signing payload has no "critical" object')
  const type = field(critical, 'type')
  if (type !== COSIGN_SIGNATURE_TYPE) {
    throw new VerifyFailure('PAYLOAD_INVALID', `simple-signing type is ${JSON.stringify(type ?? null)}, not "${COSIGN_SIGNATURE_TYPE}"`)
  }
  const image = field(critical, 'image')
  const digest = isObject(image) ? field(image, 'docker-manifest-digest') : undefined
  if (typeof digest !== 'string') throw new VerifyFailure('PAYLOAD_INVALID', 'simple-signing payload names no docker-manifest-digest')
  if (digest !== imageDigest) {
    throw new VerifyFailure('DIGEST_MISMATCH', `signature is for ${digest.slice(0, 80)}, not ${imageDigest}`)
  }
  const identity = field(critical, 'identity')
  const reference = isObject(identity) ? field(identity, 'docker-reference') : undefined
  const dockerReference = typeof reference === 'string' ? reference : undefined
  if (expectedRepository !== undefined) {
    const signed = dockerReference === undefined ? undefined : repositoryOfReference(dockerReference)
    if (signed !== normaliseDockerHubRepository(expectedRepository)) {
      throw new VerifyFailure('REFERENCE_MISMATCH', `signature names repository ${JSON.stringify(dockerReference ?? null)}, not ${JSON.stringify(expectedRepository)}`)
    }
  }
  return { dockerReference }
}

/** `ghcr.io/org/app:1.2` → `org/app`; `nginx` → `library/nginx` (Docker Hub's implicit namespace). */
export function repositoryOfReference(reference: string): string {
  // Both sides of the comparison get `library/` for a bare name, whatever the registry.
  return normaliseDockerHubRepository(parseImageName(reference).repository)
}

/** Decodes a DSSE payload as an in-toto statement (payload type, `_type`, subjects, predicateType). */
export function parseStatement(payloadType: string, payload: Buffer): InTotoStatement {
  if (payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new VerifyFailure('PAYLOAD_INVALID', `DSSE payloadType is ${JSON.stringify(payloadType.slice(0, 100))}, not "${IN_TOTO_PAYLOAD_TYPE}"`)
  }
  const doc = parseJson(payload, 'in-toto statement')
  if (!isObject(doc)) throw new VerifyFailure('PAYLOAD_INVALID', 'in-toto statement is not an object')
  const { _type, subject, predicateType, predicate } = doc
  if (typeof _type !== 'string' || !IN_TOTO_STATEMENT.test(_type)) {
    throw new VerifyFailure('PAYLOAD_INVALID', `in-toto _type ${JSON.stringify(_type ?? null)} is not a statement`)
  }
  if (typeof predicateType !== 'string' || predicateType.length === 0) {
    throw new VerifyFailure('PAYLOAD_INVALID', 'in-toto statement has no predicateType')
  }
  if (!Array.isArray(subject) || subject.length === 0) throw new VerifyFailure('PAYLOAD_INVALID', 'in-toto statement has no subject')
  const subjects: InTotoStatement['subject'] = []
  for (const s of subject) {
    if (!isObject(s) || !isObject(s.digest)) throw new VerifyFailure('PAYLOAD_INVALID', 'in-toto subject without a digest')
    const digest: Record<string, string> = {}
    for (const [algorithm, value] of Object.entries(s.digest)) if (typeof value === 'string') digest[algorithm] = value
    subjects.push({ ...(typeof s.name === 'string' ? { name: s.name } : {}), digest })
  }
  return { _type, subject: subjects, predicateType, predicate }
}

/** The statement must name `digest` among its subjects. */
export function checkSubject(statement: InTotoStatement, digest: Digest): void {
  const named = statement.subject.some((s) => s.digest[digest.algorithm]?.toLowerCase() === digest.hex)
  if (!named) {
    const listed = statement.subject
      .map((s) =>
        Object.entries(s.digest)
          .map(([a, h]) => `${a}:${h}`)
          .join(','),
      )
      .join(' ')
    throw new VerifyFailure('DIGEST_MISMATCH', `statement subjects (${listed.slice(0, 300)}) do not include ${digest.algorithm}:${digest.hex}`)
  }
}

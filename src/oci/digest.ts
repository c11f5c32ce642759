// Content digests: parsing (sha256/sha512 only), computing and comparing. Threat: a digest string
// that is not what it seems (bad algorithm, wrong length, path characters) reaching a path or a cache key.
import { createHash, type Hash } from 'node:crypto'
import { codedError } from '../errors.ts'

/** A content digest `algorithm:hex`. Only sha256 and sha512 are accepted: they are what registries serve. */
export interface Digest {
  algorithm: 'sha256' | 'sha512'
  hex: string
}

const HEX_LENGTH = { sha256: 64, sha512: 128 } as const
const DIGEST_RE = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/

export class DigestError extends codedError('DIGEST_INVALID', 'DigestError') {}

export function parseDigest(value: string): Digest {
  const m = DIGEST_RE.exec(value)
  if (!m) throw new DigestError(`malformed digest "${value}"`)
  const algorithm = m[1]!
  const hex = m[2]!
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new DigestError(`unsupported digest algorithm "${algorithm}" (sha256 and sha512 are accepted)`)
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new DigestError(`malformed ${algorithm} digest "${value}"`)
  }
  return { algorithm, hex }
}

export function isDigest(value: string): boolean {
  try {
    parseDigest(value)
    return true
  } catch {
    return false
  }
}

export function digestOf(bytes: Uint8Array, algorithm: Digest['algorithm'] = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}

export function hasherFor(digest: string): Hash {
  return createHash(parseDigest(digest).algorithm)
}

/** The tag cosign derives from a digest: `sha256-<hex>` (plus `.sig`/`.att` suffixes for legacy tags). */
export function digestTag(digest: string, suffix = ''): string {
  const d = parseDigest(digest)
  return `${d.algorithm}-${d.hex}${suffix}`
}

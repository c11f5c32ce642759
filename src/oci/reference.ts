// Repository-name and reference grammar from the OCI distribution spec.

import { isDigest } from './digest.ts'

// path-component ("/" path-component)*, each [a-z0-9]+ with single separators of . _ __ -+
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
export const MAX_NAME_LENGTH = 255

export function isValidRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= MAX_NAME_LENGTH && NAME_RE.test(name)
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag)
}

/** A manifest reference: a tag or a digest. */
export type Reference = { kind: 'tag'; tag: string } | { kind: 'digest'; digest: string }

export function parseReference(ref: string): Reference | undefined {
  if (ref.includes(':')) return isDigest(ref) ? { kind: 'digest', digest: ref } : undefined
  return isValidTag(ref) ? { kind: 'tag', tag: ref } : undefined
}

export function referenceString(ref: Reference): string {
  return ref.kind === 'tag' ? ref.tag : ref.digest
}

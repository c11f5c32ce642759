// Kubernetes image references: what a kubelet would pull for the string in a pod spec. A name
// read differently here than on the node would judge one image and run another, so the rules
// are Docker's (a first segment with "." or ":" or "localhost" is a registry, else docker.io;
// one segment under docker.io is library/; no tag is :latest; with tag and digest the digest
// wins), and the repository grammar is the distribution spec's.
import { isDigest } from '../oci/digest.ts'
import { isHostLike } from '../oci/image-name.ts'
import { isValidRepositoryName, isValidTag, type Reference } from '../oci/reference.ts'

export interface ImageReference {
  /** The registry host as written (docker.io when none is). */
  registry: string
  /** The path on that registry as written (Docker Hub's library/ prefix is the router's business). */
  path: string
  /** The tag as written. */
  tag?: string
  digest?: string
  /** What is judged: the digest when there is one, else the tag. */
  reference: Reference
  /** The reference with its digest replaced by `digest`, tag kept: what a patch pins to. */
  pinned(digest: string): string
}

const MAX_IMAGE_LENGTH = 4096

/** The reference, or undefined when the kubelet could not pull it either. */
export function parseImageReference(image: string): ImageReference | undefined {
  if (image.length === 0 || image.length > MAX_IMAGE_LENGTH || image !== image.trim()) return undefined
  let rest = image
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!isDigest(digest)) return undefined
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.indexOf(':', lastSlash + 1)
  if (colon !== -1) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!isValidTag(tag)) return undefined
  }
  const slash = rest.indexOf('/')
  const first = slash === -1 ? '' : rest.slice(0, slash)
  const hasRegistry = slash !== -1 && isHostLike(first)
  const registry = hasRegistry ? first.toLowerCase() : 'docker.io'
  const path = hasRegistry ? rest.slice(slash + 1) : rest
  if (!isValidRepositoryName(path)) return undefined
  const name = image.slice(0, colon !== -1 ? colon : at !== -1 ? at : image.length)
  return {
    registry,
    path,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    reference: digest !== undefined ? { kind: 'digest', digest } : { kind: 'tag', tag: tag ?? 'latest' },
    pinned: (d: string) => `${name}${tag !== undefined ? `:${tag}` : ''}@${d}`,
  }
}

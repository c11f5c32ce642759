// Kubernetes image references: what a kubelet would pull for the string in a pod spec. A name
// read differently here than on the node would judge one image and run another, so the split is
// oci/image-name.ts's (Docker's rules, the one reading the router and policies use), the grammar
// the distribution spec's, and Kubernetes adds: no tag and no digest is :latest; with both, the
// digest wins.
import { isDigest } from '../oci/digest.ts'
import { parseImageName } from '../oci/image-name.ts'
import { isValidRepositoryName, isValidTag, type Reference } from '../oci/reference.ts'

export interface ImageReference {
  /** The registry host as written (docker.io when none is). */
  registry: string
  /** The repository on that registry (Docker Hub's normalised: `nginx` → `library/nginx`). */
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
  const { registry, repository, tag, digest } = parseImageName(image)
  if (digest !== undefined && !isDigest(digest)) return undefined
  if (tag !== undefined && !isValidTag(tag)) return undefined
  if (!isValidRepositoryName(repository)) return undefined
  // What precedes the tag or digest, as written: what a pinned reference keeps.
  const at = image.indexOf('@')
  const named = at === -1 ? image : image.slice(0, at)
  const name = tag !== undefined ? named.slice(0, named.length - tag.length - 1) : named
  return {
    registry,
    path: repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    reference: digest !== undefined ? { kind: 'digest', digest } : { kind: 'tag', tag: tag ?? 'latest' },
    pinned: (d: string) => `${name}${tag !== undefined ? `:${tag}` : ''}@${d}`,
  }
}

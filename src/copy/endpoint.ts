// What `trustpull copy` reads from and writes to: an image in a registry (`registry/repo[:tag|@digest]`),
// an OCI image layout directory (`oci:DIR[:tag|@digest]`) or a tar of one (`oci-archive:FILE[:tag|@digest]`).
// skopeo's transport prefix `docker://` is accepted on a registry reference and means the same.
import { isDigest } from '../oci/digest.ts'
import { isValidRepositoryName, isValidTag } from '../oci/reference.ts'
import { CopyError } from './errors.ts'

export type Endpoint =
  { kind: 'registry'; /** `registry/repo` as written */ name: string; tag?: string; digest?: string } | { kind: 'oci' | 'oci-archive'; path: string; tag?: string; digest?: string }

export type RegistryEndpoint = Extract<Endpoint, { kind: 'registry' }>
export type LayoutEndpoint = Extract<Endpoint, { kind: 'oci' | 'oci-archive' }>

const LAYOUT_PREFIX = /^(oci|oci-archive):/

/** `docker://ghcr.io/x:1` → `ghcr.io/x:1` (skopeo's transport name for a registry). */
export function stripDockerTransport(text: string): string {
  return text.startsWith('docker://') ? text.slice('docker://'.length) : text
}

export function parseEndpoint(written: string): Endpoint {
  const text = stripDockerTransport(written)
  const m = LAYOUT_PREFIX.exec(text)
  if (m) {
    const kind = m[1] as 'oci' | 'oci-archive'
    const rest = text.slice(m[0].length)
    const { path, tag, digest } = splitLayoutReference(rest)
    if (!path) throw new CopyError('BAD_ENDPOINT', `"${text}": ${kind}: needs a path`)
    return { kind, path, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) }
  }
  const at = text.indexOf('@')
  let name = text
  let tag: string | undefined
  let digest: string | undefined
  if (at !== -1) {
    name = text.slice(0, at)
    digest = text.slice(at + 1)
    if (!isDigest(digest)) throw new CopyError('BAD_ENDPOINT', `"${text}": "${digest}" is not a digest`)
  } else {
    const colon = text.lastIndexOf(':')
    if (colon > text.lastIndexOf('/')) {
      name = text.slice(0, colon)
      tag = text.slice(colon + 1)
      if (!isValidTag(tag)) throw new CopyError('BAD_ENDPOINT', `"${text}": "${tag}" is not a valid tag`)
    }
  }
  const slash = name.indexOf('/')
  const repository = slash === -1 ? name : name.slice(slash + 1)
  if (!name || !isValidRepositoryName(repository)) throw new CopyError('BAD_ENDPOINT', `"${text}" is not an image reference (registry/repository[:tag|@digest])`)
  return { kind: 'registry', name, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) }
}

/** `PATH[:tag]` or `PATH@digest`; a colon followed by a path separator stays part of the path. */
function splitLayoutReference(rest: string): { path: string; tag?: string; digest?: string } {
  const at = rest.lastIndexOf('@')
  if (at !== -1 && isDigest(rest.slice(at + 1))) return { path: rest.slice(0, at), digest: rest.slice(at + 1) }
  const colon = rest.lastIndexOf(':')
  if (colon !== -1 && !rest.slice(colon + 1).includes('/')) {
    const tag = rest.slice(colon + 1)
    if (!isValidTag(tag)) throw new CopyError('BAD_ENDPOINT', `"${rest}": "${tag}" is not a valid tag`)
    return { path: rest.slice(0, colon), tag }
  }
  return { path: rest }
}

export function endpointString(e: Endpoint): string {
  const ref = e.digest ? `@${e.digest}` : e.tag ? `:${e.tag}` : ''
  return e.kind === 'registry' ? `${e.name}${ref}` : `${e.kind}:${e.path}${ref}`
}

/** Splits `registry/repo` at the first slash; the registry part must be present. */
export function splitRegistry(name: string): { registry: string; repository: string } {
  const slash = name.indexOf('/')
  if (slash <= 0) throw new CopyError('BAD_ENDPOINT', `"${name}": name the registry (registry/repository)`)
  return { registry: name.slice(0, slash), repository: name.slice(slash + 1) }
}

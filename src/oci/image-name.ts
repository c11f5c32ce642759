// Image names as Docker, containerd and Kubernetes read them: whether the first segment names a
// registry, Docker Hub's three host names and implicit `library/`, then a tag or a digest. One
// reading for the router, policies, signature payloads, copy, admission and the CLI. Threat: two
// readings of one name, so that a policy judges one image while the client pulls another.

/** Docker Hub answers to all three; they are one registry. The first is policy-controller's spelling. */
export const DOCKER_HUB_HOSTS: readonly string[] = ['index.docker.io', 'docker.io', 'registry-1.docker.io']

export function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_HOSTS.includes(registry.toLowerCase())
}

/** Docker's rule: a first path segment with a `.` or `:`, or `localhost`, is a registry host. */
export function isHostLike(segment: string): boolean {
  return segment.includes('.') || segment.includes(':') || segment === 'localhost'
}

/** Docker Hub's single-segment names live under `library/`. */
export function normaliseDockerHubRepository(repository: string): string {
  return repository.includes('/') ? repository : `library/${repository}`
}

export interface ImageName {
  /** The registry host, lower-cased; `docker.io` when the name has none. */
  registry: string
  /** Whether the name spelled its registry out. */
  registryWritten: boolean
  /** The repository (Docker Hub's normalised: `nginx` → `library/nginx`). */
  repository: string
  tag?: string
  digest?: string
}

/**
 * `[registry/]repository[:tag][@digest]` → its parts, nothing validated beyond the split (callers
 * check the repository, tag and digest with the rules of `reference.ts`). A name with neither tag
 * nor digest has neither here: whether that means `latest` is the caller's to say.
 */
export function parseImageName(written: string): ImageName {
  let rest = written
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at !== -1) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
  }
  let tag: string | undefined
  const colon = rest.indexOf(':', rest.lastIndexOf('/') + 1)
  if (colon !== -1) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
  }
  const slash = rest.indexOf('/')
  const registryWritten = slash > 0 && isHostLike(rest.slice(0, slash))
  const registry = registryWritten ? rest.slice(0, slash).toLowerCase() : 'docker.io'
  const path = registryWritten ? rest.slice(slash + 1) : rest
  const repository = isDockerHub(registry) ? normaliseDockerHubRepository(path) : path
  return { registry, registryWritten, repository, ...(tag !== undefined && { tag }), ...(digest !== undefined && { digest }) }
}

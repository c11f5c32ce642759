// Image globs with Sigstore policy-controller's semantics: `*` matches within one path segment
// (any run of characters but `/`), `**` matches anything, the glob covers the whole name.
// Names are `<upstream>/<repository>`. Docker Hub's three host names are one registry, and its
// images also answer to their short names (`nginx`, `library/nginx`, `user/app`), which is how
// a glob without a host (`nginx`, `user/*`) means `index.docker.io/...` as in policy-controller.
import { DOCKER_HUB_HOSTS, isDockerHub, isHostLike, normaliseDockerHubRepository } from '../oci/image-name.ts'
import { codedError } from '../errors.ts'

export class GlobError extends codedError('GLOB_INVALID', 'GlobError') {}

export interface ImageGlob {
  /** The glob as written. */
  source: string
  /** Matches a whole image name (no tag). */
  regex: RegExp
  /**
   * The tag pattern of a glob written with one (`ghcr.io/org/app:1.0`), when it is not "any tag".
   * trustpull decides per digest, so such a glob applies to every tag of the repository.
   */
  tag?: string
}

const VALID_GLOB = /^[A-Za-z0-9_:/*.-]+$/

export function compileGlob(glob: string): ImageGlob {
  // policy-controller's two bare forms mean Docker Hub.
  let pattern = glob === '*' ? 'index.docker.io/library/*' : glob === '*/*' ? 'index.docker.io/*/*' : glob
  if (!VALID_GLOB.test(pattern)) {
    throw new GlobError(`invalid glob "${glob}": only letters, digits, "-", "_", ":", "/", "." and "*" are allowed`)
  }
  let tag: string | undefined
  const lastSlash = pattern.lastIndexOf('/')
  const colon = pattern.indexOf(':', lastSlash + 1)
  if (colon !== -1) {
    const tagPattern = pattern.slice(colon + 1)
    pattern = pattern.slice(0, colon)
    if (tagPattern === '' || pattern === '' || tagPattern.includes(':')) throw new GlobError(`invalid glob "${glob}": malformed tag`)
    if (tagPattern !== '*' && tagPattern !== '**') tag = tagPattern
  }
  const body = pattern.replaceAll('.', '\\.').replaceAll('**', '\u0000').replaceAll('*', '[^/]*').replaceAll('\u0000', '.*')
  return { source: glob, regex: new RegExp(`^${body}$`), ...(tag === undefined ? {} : { tag }) }
}

/**
 * Every name an image answers to. `upstreamNames` keeps a Docker Hub short name from colliding
 * with another configured upstream (`corp/app` on Docker Hub vs `app` on an upstream named `corp`).
 */
export function imageNames(upstream: string, repository: string, upstreamNames: readonly string[] = []): string[] {
  const registry = upstream.toLowerCase()
  if (!isDockerHub(registry)) return [`${registry}/${repository}`]
  const repo = normaliseDockerHubRepository(repository)
  const names = DOCKER_HUB_HOSTS.map((host) => `${host}/${repo}`)
  const first = repo.split('/')[0]!
  if (!isHostLike(first) && !upstreamNames.some((u) => u.toLowerCase() === first)) {
    names.push(repo)
    if (repo.startsWith('library/') && repo.split('/').length === 2) names.push(repo.slice('library/'.length))
  }
  return names
}

export function globsMatch(globs: readonly ImageGlob[], names: readonly string[]): ImageGlob | undefined {
  return globs.find((g) => names.some((n) => g.regex.test(n)))
}

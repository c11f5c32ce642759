// Which configured upstream a request is for: `ns` query parameter, then a first path segment
// naming a configured upstream, then the default upstream. Names are keys into the configured
// list, never hosts to dial.
import { RegistryError } from '../errors.ts'
import { isDockerHub, isHostLike, normaliseDockerHubRepository } from '../oci/image-name.ts'
import type { UpstreamConfig } from '../config/schema.ts'
import type { RegistryClient } from './types.ts'

export interface Upstream {
  config: UpstreamConfig
  client: RegistryClient
}

export interface ResolvedRepository {
  upstream: Upstream
  /** The repository on the upstream (Docker Hub names normalised: `nginx` → `library/nginx`). */
  repository: string
}

export class UpstreamRouter {
  readonly #byName = new Map<string, Upstream>()
  readonly #default: Upstream | undefined
  readonly upstreams: readonly Upstream[]

  constructor(upstreams: Upstream[]) {
    this.upstreams = upstreams
    for (const u of upstreams) this.#byName.set(u.config.name, u)
    this.#default = upstreams.find((u) => u.config.default) ?? (upstreams.length === 1 ? upstreams[0] : undefined)
  }

  byName(name: string): Upstream | undefined {
    const direct = this.#byName.get(name)
    if (direct) return direct
    if (isDockerHub(name)) return [...this.#byName.values()].find((u) => isDockerHub(u.config.name))
    return undefined
  }

  resolve(ns: string | undefined, name: string): ResolvedRepository {
    if (ns !== undefined) {
      const upstream = this.byName(ns)
      if (!upstream) throw new RegistryError('DENIED', `registry "${printable(ns)}" is not an upstream of this proxy`)
      return this.#repository(upstream, name)
    }
    const slash = name.indexOf('/')
    if (slash > 0) {
      const first = name.slice(0, slash)
      const upstream = this.byName(first)
      if (upstream) return this.#repository(upstream, name.slice(slash + 1))
      if (isHostLike(first)) throw new RegistryError('DENIED', `registry "${first}" is not an upstream of this proxy`)
    }
    if (!this.#default) throw new RegistryError('DENIED', 'no default upstream is configured: name the registry with ?ns= or a path prefix')
    return this.#repository(this.#default, name)
  }

  #repository(upstream: Upstream, repository: string): ResolvedRepository {
    return { upstream, repository: isDockerHub(upstream.config.name) ? normaliseDockerHubRepository(repository) : repository }
  }
}

/** Keeps hostile `ns` values from shaping log lines or error messages. */
function printable(value: string): string {
  return value.slice(0, 100).replace(/[^\x20-\x7e]/g, '?')
}

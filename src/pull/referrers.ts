// The referrers of a digest, for every upstream: the upstream's referrers API when it has one,
// else the fallback tag `sha256-<hex>` and the cosign `.sig` / `.att` tags (found by the same walk
// signature discovery uses). Threats: a listing is upstream input (bounded by the discovery limits,
// every entry read so its type and subject are the manifest's own), and a listing is information
// about an image: it is answered only for a subject the proxy serves (the subject manifest passes
// the gate first, as if the client had pulled it), so nothing is told about a refused image or an
// upstream that is not configured (the router refuses those before this is reached).
import { LRUCache } from 'lru-cache'
import { SingleFlight } from '../cache/single-flight.ts'
import type { Config } from '../config/schema.ts'
import { RegistryError } from '../errors.ts'
import { DEFAULT_MANIFEST_ACCEPT } from '../oci/media-types.ts'
import { listReferrers, type ListedReferrer, type ReferrerMemo } from '../signatures/discover.ts'
import type { Logger } from '../telemetry/logger.ts'
import type { Upstream } from '../upstream/router.ts'
import type { RequestClient } from './gate.ts'
import type { ManifestService } from './manifests.ts'

export interface ReferrersDeps {
  manifests: ManifestService
  limits: Config['limits']
  /** How long a listing is reused (cache.tagTTL: a listing changes like a tag does); 0: asked for every time. */
  listingTTL: number
  logger: Logger
}

export interface Referrers {
  referrers: ListedReferrer[]
  /** Whether the upstream answered the referrers API itself. */
  upstreamApi: boolean
  /** More were listed than maxReferrers: the rest are left out. */
  truncated: boolean
}

export class ReferrerService {
  readonly #deps: ReferrersDeps
  readonly #flights = new SingleFlight<Referrers>()
  readonly #listings: LRUCache<string, Referrers> | undefined
  /** What each referrer manifest is (by digest: immutable), so a listing asked again reads nothing twice. */
  readonly #known = new LRUCache<string, NonNullable<ReturnType<ReferrerMemo['get']>> | false>({ max: 50_000 })

  constructor(deps: ReferrersDeps) {
    this.#deps = deps
    this.#listings = deps.listingTTL > 0 ? new LRUCache({ max: 10_000, ttl: deps.listingTTL }) : undefined
  }

  /** The referrers of `digest`; throws the manifest path's error (403, 404, 5xx) when the subject itself is not served. */
  async list(upstream: Upstream, repository: string, digest: string, client?: RequestClient): Promise<Referrers> {
    await this.#deps.manifests.get(upstream, repository, { kind: 'digest', digest }, DEFAULT_MANIFEST_ACCEPT, client)
    const key = `${upstream.config.name}/${repository}@${digest}`
    const cached = this.#listings?.get(key)
    if (cached) return cached
    return this.#flights.run(key, async () => {
      const listing = await listReferrers(upstream.client, repository, digest, { ...this.#deps.limits, indexBytes: this.#deps.limits.manifestBytes }, { memo: this.#memo(key) })
      if (listing.problems.length > 0) {
        this.#deps.logger.info(
          { image: `${upstream.config.name}/${repository}`, digest, problems: listing.problems.slice(0, 10).map((p) => `${p.code}: ${p.message}`) },
          'referrers left out of the listing',
        )
      }
      if (listing.unreadable) {
        const why = listing.problems[0]?.message ?? 'unreadable'
        throw new RegistryError('UPSTREAM_ERROR', `the referrers of ${upstream.config.name}/${repository}@${digest} could not be listed: ${why.slice(0, 300)}`)
      }
      const result = { referrers: listing.referrers, upstreamApi: listing.upstreamApi, truncated: listing.truncated }
      // A listing read while upstream failed is not kept: the next request asks again.
      if (!listing.problems.some((p) => p.code === 'DISCOVERY_FAILED')) this.#listings?.set(key, result)
      return result
    })
  }

  #memo(prefix: string): ReferrerMemo {
    return {
      get: (d) => {
        const v = this.#known.get(`${prefix}\n${d}`)
        return v === undefined ? undefined : v === false ? null : v
      },
      set: (d, descriptor) => this.#known.set(`${prefix}\n${d}`, descriptor ?? false),
    }
  }
}

// Manifest resolution: tags always go upstream (unless a tag TTL is configured), digests are
// answered from the immutable cache first; every manifest is hashed, parsed and passed through
// the gate before it is served, and what it vouches for is recorded for the blob path.
import { LRUCache } from 'lru-cache'
import { RegistryError } from '../errors.ts'
import { ManifestError, parseManifest, type Manifest } from '../oci/manifest.ts'
import { DEFAULT_MANIFEST_ACCEPT } from '../oci/media-types.ts'
import { referenceString, type Reference } from '../oci/reference.ts'
import type { Upstream } from '../upstream/router.ts'
import type { FetchedManifest } from '../upstream/types.ts'
import { referencedContent, type ContentIndex } from './content-index.ts'
import type { ManifestGate, RequestClient } from './gate.ts'
import type { CachedManifest, ManifestCache } from '../cache/manifest-cache.ts'

export interface ServedManifest extends FetchedManifest {
  manifest: Manifest
  warnings: string[]
}

export interface ManifestServiceDeps {
  gate: ManifestGate
  contentIndex: ContentIndex
  cache: ManifestCache
  /** 0: tags are mutable, always resolved upstream. */
  tagTTL: number
  /** How long vouchers live in the content index (cache.allowTTL): they are rewritten at half of it. */
  vouchTTL: number
}

export class ManifestService {
  readonly #deps: ManifestServiceDeps
  readonly #tags: LRUCache<string, string> | undefined
  /** Upstream fetches whose manifest is still on its way to the cache (fetched, not yet gated). */
  readonly #inFlight = new Map<string, Promise<FetchedManifest | CachedManifest | undefined>>()
  /** The digest a tag (under one Accept) had when last served: upstream is asked only whether it changed. */
  readonly #lastSeen = new LRUCache<string, string>({ max: 100_000 })
  /** Manifests whose vouchers were written recently: a warm request does not rewrite them. */
  readonly #vouched: LRUCache<string, true>

  constructor(deps: ManifestServiceDeps) {
    this.#deps = deps
    this.#tags = deps.tagTTL > 0 ? new LRUCache({ max: 100_000, ttl: deps.tagTTL }) : undefined
    this.#vouched = new LRUCache({ max: 100_000, ttl: Math.max(1, Math.floor(deps.vouchTTL / 2)) })
  }

  async get(upstream: Upstream, repository: string, ref: Reference, accept: string[], client?: RequestClient): Promise<ServedManifest> {
    const key = `${upstream.config.name}/${repository}:${referenceString(ref)}\n${accept.join(',')}`
    const { fetching, done } = this.#fetch(upstream, repository, ref, accept, key)
    try {
      return await this.#serve(upstream, repository, ref, await fetching, key, client)
    } finally {
      done()
    }
  }

  /** Whether the manifest `digest` would be served (it passes the gate); a refused or missing one is false, upstream trouble throws. */
  async serves(upstream: Upstream | undefined, repository: string, digest: string): Promise<boolean> {
    if (!upstream) return false
    try {
      await this.get(upstream, repository, { kind: 'digest', digest }, DEFAULT_MANIFEST_ACCEPT)
      return true
    } catch (err) {
      if (err instanceof RegistryError && (err.code === 'DENIED' || err.code === 'MANIFEST_UNKNOWN')) return false
      throw err
    }
  }

  async #serve(
    upstream: Upstream,
    repository: string,
    ref: Reference,
    fetched: FetchedManifest | CachedManifest | undefined,
    lastSeenKey: string,
    client?: RequestClient,
  ): Promise<ServedManifest> {
    const name = upstream.config.name
    if (!fetched) throw new RegistryError('MANIFEST_UNKNOWN', `manifest ${repository}:${referenceString(ref)} not found on ${name}`)
    let manifest: Manifest
    try {
      manifest = 'manifest' in fetched ? fetched.manifest : parseManifest(fetched.bytes, fetched.mediaType)
    } catch (err) {
      if (!(err instanceof ManifestError)) throw err
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${name} served an unusable manifest for ${repository}:${referenceString(ref)}: ${err.message}`)
    }
    const decision = await this.#deps.gate.evaluate({
      upstream: name,
      repository,
      digest: fetched.digest,
      mediaType: fetched.mediaType,
      manifest,
      bytes: fetched.bytes,
      reference: referenceString(ref),
      client,
      source: 'manifest' in fetched ? 'cache' : (fetched.source ?? 'upstream'),
    })
    if (!decision.allow) throw new RegistryError('DENIED', decision.message, { detail: decision.detail })
    const key = `${this.#deps.contentIndex.generation()}\n${name}/${repository}@${fetched.digest}`
    if (!this.#vouched.has(key)) {
      await this.#deps.contentIndex.vouch(name, repository, decision.vouch ?? referencedContent(manifest), fetched.digest)
      this.#vouched.set(key, true)
    }
    if (!('manifest' in fetched)) this.#deps.cache.set(name, repository, { bytes: fetched.bytes, digest: fetched.digest, mediaType: fetched.mediaType, manifest })
    if (ref.kind === 'tag') {
      this.#tags?.set(`${name}/${repository}:${ref.tag}`, fetched.digest)
      this.#lastSeen.set(lastSeenKey, fetched.digest)
    }
    const warnings = fetched.stale
      ? [
          ...decision.warnings,
          `served from the mirror's store: upstream ${name} cannot be reached (${fetched.stale.reason.slice(0, 200)}); tag ${referenceString(ref)} last resolved to this digest ${new Date(fetched.stale.at).toISOString()}`,
        ]
      : decision.warnings
    return { ...fetched, manifest, warnings, stale: fetched.stale }
  }

  /**
   * The manifest from the cache, or from upstream. Concurrent requests for one manifest share one
   * upstream fetch, until the first of them has passed it through the gate into the cache, so a
   * herd costs one fetch. The fetch is tied to no client's signal (one client leaving must not fail
   * the others); upstream timeouts and the size limit bound it.
   */
  /**
   * A tag always asks upstream; when the manifest it had last time is still cached, it asks only
   * whether the tag still names that digest (If-None-Match) and, on 304, serves those bytes: the
   * same bytes, hashed and judged by their digest, that upstream would send again.
   */
  async #fromUpstream(upstream: Upstream, repository: string, ref: Reference, accept: string[], key: string): Promise<FetchedManifest | CachedManifest | undefined> {
    const { client, config } = upstream
    const known = ref.kind === 'tag' ? this.#lastSeen.get(key) : undefined
    const knownManifest = known ? this.#deps.cache.get(config.name, repository, known) : undefined
    if (knownManifest && client.revalidateManifest) {
      const answer = await client.revalidateManifest(repository, referenceString(ref), knownManifest.digest, { accept })
      return answer === 'unchanged' ? knownManifest : answer
    }
    return client.getManifest(repository, referenceString(ref), { accept })
  }

  #fetch(
    upstream: Upstream,
    repository: string,
    ref: Reference,
    accept: string[],
    key: string,
  ): { fetching: Promise<FetchedManifest | CachedManifest | undefined>; done: () => void } {
    const name = upstream.config.name
    const digest = ref.kind === 'digest' ? ref.digest : this.#tags?.get(`${name}/${repository}:${ref.tag}`)
    const cached = digest ? this.#deps.cache.get(name, repository, digest) : undefined
    if (cached) return { fetching: Promise.resolve(cached), done: noop }
    const pending = this.#inFlight.get(key)
    if (pending) return { fetching: pending, done: noop }
    const fetching = this.#fromUpstream(upstream, repository, ref, accept, key)
    this.#inFlight.set(key, fetching)
    return { fetching, done: () => this.#inFlight.delete(key) }
  }
}

function noop(): void {}

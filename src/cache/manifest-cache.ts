// Manifest bytes by digest are immutable: keep recent ones, bounded by bytes, so warm digest
// requests need no upstream round trip.
import { LRUCache } from 'lru-cache'
import type { Manifest } from '../oci/manifest.ts'
import type { FetchedManifest } from '../upstream/types.ts'

/** The bytes as fetched, and their parsed form (parsing is most of a warm request's own work). */
export interface CachedManifest extends FetchedManifest {
  manifest: Manifest
}

export class ManifestCache {
  readonly #lru: LRUCache<string, CachedManifest> | undefined

  constructor(maxBytes: number) {
    this.#lru = maxBytes > 0 ? new LRUCache({ maxSize: maxBytes, sizeCalculation: (m) => m.bytes.length + 200 }) : undefined
  }

  get(upstream: string, repository: string, digest: string): CachedManifest | undefined {
    return this.#lru?.get(`${upstream}/${repository}@${digest}`)
  }

  set(upstream: string, repository: string, manifest: CachedManifest): void {
    this.#lru?.set(`${upstream}/${repository}@${manifest.digest}`, manifest)
  }
}

// Manifest bytes by digest are immutable: keep recent ones, bounded by bytes, so warm digest
// requests need no upstream round trip.
import { LRUCache } from 'lru-cache'
import type { FetchedManifest } from '../upstream/types.ts'

export class ManifestCache {
  readonly #lru: LRUCache<string, FetchedManifest> | undefined

  constructor(maxBytes: number) {
    this.#lru = maxBytes > 0 ? new LRUCache({ maxSize: maxBytes, sizeCalculation: (m) => m.bytes.length + 200 }) : undefined
  }

  get(upstream: string, repository: string, digest: string): FetchedManifest | undefined {
    return this.#lru?.get(`${upstream}/${repository}@${digest}`)
  }

  set(upstream: string, repository: string, manifest: FetchedManifest): void {
    this.#lru?.set(`${upstream}/${repository}@${manifest.digest}`, manifest)
  }
}

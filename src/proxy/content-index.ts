// Which blobs and child manifests an allowed manifest has vouched for, per upstream repository.
// Blobs of refused images never leave the proxy: a blob is served only when listed here.
import { LRUCache } from 'lru-cache'

export interface ContentIndex {
  /** Records digests an allowed manifest references (its layers and config, or an index's children). */
  vouch(upstream: string, repository: string, digests: string[], by: string): Promise<void>
  /** The manifest digest that vouched for `digest`, if any. */
  voucher(upstream: string, repository: string, digest: string): Promise<string | undefined>
}

export class MemoryContentIndex implements ContentIndex {
  readonly #entries: LRUCache<string, string>

  constructor(options: { maxEntries?: number; ttlMs: number }) {
    this.#entries = new LRUCache({ max: options.maxEntries ?? 500_000, ttl: options.ttlMs || undefined, ttlAutopurge: false })
  }

  async vouch(upstream: string, repository: string, digests: string[], by: string): Promise<void> {
    for (const d of digests) this.#entries.set(key(upstream, repository, d), by)
  }

  async voucher(upstream: string, repository: string, digest: string): Promise<string | undefined> {
    return this.#entries.get(key(upstream, repository, digest))
  }
}

function key(upstream: string, repository: string, digest: string): string {
  return `${upstream}/${repository}@${digest}`
}

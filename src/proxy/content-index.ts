// What an allowed manifest has vouched for, per upstream repository: blobs (an image's config and
// layers) and child manifests (an index's platforms), kept apart so one can never pass for the
// other. Blobs of refused images never leave the proxy: a blob is served only when vouched for.
import type { TieredStore } from '../cache/tiered-store.ts'
import type { Manifest } from '../oci/manifest.ts'

export interface Vouchers {
  blobs: string[]
  manifests: string[]
}

export type VoucherKind = keyof Vouchers

export interface ContentIndex {
  vouch(upstream: string, repository: string, vouchers: Vouchers, by: string): Promise<void>
  /** The manifest digest that vouched for `digest` as a blob or child manifest, if any. */
  voucher(upstream: string, repository: string, kind: VoucherKind, digest: string): Promise<string | undefined>
}

/** Everything a manifest references: an image's config and layers, or an index's children. */
export function referencedContent(m: Manifest): Vouchers {
  return m.kind === 'index'
    ? { blobs: [], manifests: m.manifests.map((d) => d.digest) }
    : { blobs: [m.config.digest, ...m.layers.map((d) => d.digest)], manifests: [] }
}

export function voucherKey(upstream: string, repository: string, kind: VoucherKind, digest: string): string {
  return `${kind === 'blobs' ? 'b' : 'm'}:${upstream}/${repository}@${digest}`
}

/** The content index in the tiered store, so replicas behind one Redis share what was vouched for. */
export class StoreContentIndex implements ContentIndex {
  readonly #store: TieredStore
  readonly #ttlMs: number

  constructor(store: TieredStore, ttlMs: number) {
    this.#store = store
    this.#ttlMs = ttlMs
  }

  async vouch(upstream: string, repository: string, vouchers: Vouchers, by: string): Promise<void> {
    const writes: Promise<void>[] = []
    for (const kind of ['blobs', 'manifests'] as const) {
      for (const d of vouchers[kind]) writes.push(this.#store.set(voucherKey(upstream, repository, kind, d), by, this.#ttlMs))
    }
    await Promise.all(writes)
  }

  async voucher(upstream: string, repository: string, kind: VoucherKind, digest: string): Promise<string | undefined> {
    return this.#store.get(voucherKey(upstream, repository, kind, digest), isString)
  }
}

function isString(value: unknown): value is string {
  return typeof value === 'string'
}

// What an allowed manifest has vouched for, per upstream repository: blobs (an image's config and
// layers), child manifests (an index's platforms) and the small documents of signature artifacts,
// kept apart so one can never pass for another. Blobs of refused images never leave the proxy: a
// blob is served only when vouched for.
import type { TieredStore } from '../cache/tiered-store.ts'
import type { Manifest } from '../oci/manifest.ts'

export interface Vouchers {
  blobs: string[]
  manifests: string[]
  /**
   * Blobs a signature artifact lists. Anyone who can push can write such a manifest, so these are
   * served only as what they claim to be: small text documents (see http/blobs.ts).
   */
  artifactBlobs?: string[]
}

export type VoucherKind = keyof Vouchers
const KINDS: readonly VoucherKind[] = ['blobs', 'manifests', 'artifactBlobs']
const PREFIX: Record<VoucherKind, string> = { blobs: 'b', manifests: 'm', artifactBlobs: 'a' }

export interface ContentIndex {
  /** Changes when what was vouched for no longer counts (a policy change). */
  generation(): string
  vouch(upstream: string, repository: string, vouchers: Vouchers, by: string): Promise<void>
  /** The manifest digest that vouched for `digest` as a blob or child manifest, if any. */
  voucher(upstream: string, repository: string, kind: VoucherKind, digest: string): Promise<string | undefined>
}

/** Everything a manifest references: an image's config and layers, or an index's children. */
export function referencedContent(m: Manifest): Vouchers {
  return m.kind === 'index' ? { blobs: [], manifests: m.manifests.map((d) => d.digest) } : { blobs: [m.config.digest, ...m.layers.map((d) => d.digest)], manifests: [] }
}

export function voucherKey(upstream: string, repository: string, kind: VoucherKind, digest: string): string {
  return `${PREFIX[kind]}:${upstream}/${repository}@${digest}`
}

/** The content index in the tiered store, so replicas behind one Redis share what was vouched for. */
export class StoreContentIndex implements ContentIndex {
  readonly #store: TieredStore
  readonly #ttlMs: number
  readonly #generation: () => string

  /**
   * `generation` is the policy fingerprint: what was vouched for under other policies is not
   * reachable under these (a revoked image's blobs stop at once, not when their vouchers expire).
   */
  constructor(store: TieredStore, ttlMs: number, generation: () => string = () => '') {
    this.#store = store
    this.#ttlMs = ttlMs
    this.#generation = generation
  }

  /** Part of the keys under which vouchers live now; callers that remember vouching use it too. */
  generation(): string {
    return this.#generation()
  }

  async vouch(upstream: string, repository: string, vouchers: Vouchers, by: string): Promise<void> {
    const writes: Promise<void>[] = []
    for (const kind of KINDS) {
      for (const d of vouchers[kind] ?? []) writes.push(this.#store.set(this.#key(upstream, repository, kind, d), by, this.#ttlMs))
    }
    await Promise.all(writes)
  }

  async voucher(upstream: string, repository: string, kind: VoucherKind, digest: string): Promise<string | undefined> {
    return this.#store.get(this.#key(upstream, repository, kind, digest), isString)
  }

  #key(upstream: string, repository: string, kind: VoucherKind, digest: string): string {
    return `${this.#generation().slice(0, 16)}:${voucherKey(upstream, repository, kind, digest)}`
  }
}

function isString(value: unknown): value is string {
  return typeof value === 'string'
}

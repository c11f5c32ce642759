// What the rest of trustpull needs from an upstream registry. One RegistryClient per configured upstream.
import type { Readable } from 'node:stream'

export interface FetchedManifest {
  /** Exactly the bytes the upstream sent (never re-serialised). */
  bytes: Buffer
  /** sha256 of `bytes`, computed here; never the upstream's header. */
  digest: string
  mediaType: string
  /** Answered from the mirror's content store rather than the upstream. */
  source?: 'store'
  /** The upstream could not be asked: a tag answered from the digest it last had, verified at `at`. */
  stale?: { at: number; reason: string }
}

export interface BlobResponse {
  status: 200 | 206
  headers: { contentType?: string; contentLength?: number; contentRange?: string }
  body: Readable
  /** Answered from the mirror's content store rather than the upstream. */
  source?: 'store'
  /** The bytes were already checked against the digest (a store fill): no second hash needed. */
  verified?: boolean
  /** Called when a whole answer's bytes turn out not to match the digest. */
  onMismatch?: (actual: string) => void
  /** Called when a whole answer was hashed while sent and matched its digest. */
  onVerified?: () => void
}

export interface RegistryClient {
  /** The configured upstream name (`docker.io`, `ghcr.io`, ...). */
  readonly name: string
  /**
   * GET a manifest by tag or digest. Resolves `undefined` on 404. Throws RegistryError for
   * anything else (5xx → UPSTREAM_ERROR, timeouts → UPSTREAM_TIMEOUT, over `maxBytes` → refused,
   * digest reference whose bytes do not hash to it → UPSTREAM_ERROR).
   */
  getManifest(repository: string, reference: string, options?: { accept?: string[]; maxBytes?: number; signal?: AbortSignal }): Promise<FetchedManifest | undefined>
  /**
   * GET a manifest by tag unless it still has `knownDigest` (If-None-Match): `'unchanged'` on 304,
   * so a warm tag costs the upstream a look-up instead of a transfer. Optional: clients without
   * conditional requests simply fetch.
   */
  revalidateManifest?(
    repository: string,
    reference: string,
    knownDigest: string,
    options?: { accept?: string[]; maxBytes?: number; signal?: AbortSignal },
  ): Promise<FetchedManifest | 'unchanged' | undefined>
  /** GET a blob fully into memory, at most `maxBytes`, checked against its digest. `undefined` on 404. */
  getBlobBytes(repository: string, digest: string, options: { maxBytes: number; signal?: AbortSignal }): Promise<Buffer | undefined>
  /** Streams a blob (redirects followed without carrying credentials to another origin). `undefined` on 404. */
  getBlob(repository: string, digest: string, options?: { range?: string; signal?: AbortSignal; method?: 'GET' | 'HEAD' }): Promise<BlobResponse | undefined>
  /** OCI 1.1 referrers: the index bytes, or `undefined` when the API answers 404 (no referrers API). */
  getReferrers(repository: string, digest: string, options?: { artifactType?: string; maxBytes?: number; signal?: AbortSignal }): Promise<FetchedManifest | undefined>
  /** One page of tags/list, passed through. */
  listTags(repository: string, query: { n?: string; last?: string }): Promise<{ body: Buffer; link?: string } | undefined>
}

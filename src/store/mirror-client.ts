// The mirror: a RegistryClient decorator that answers from the content store and fills it
// (distribution's proxy blob and manifest stores, over one interface). The HTTP handlers and the
// gate do not know it is there: every manifest it answers still passes the gate, and a blob is
// still served only while an allowed manifest vouches for it, so revocation stays instant.
// Threat: an outage must not turn into serving something unverified. Only digest-checked bytes
// are stored; a tag is answered from its last digest only while the upstream cannot be asked,
// within `staleIfError`, and the manifest it names is judged again like any other.
import { Readable } from 'node:stream'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import type { BlobResponse, FetchedManifest, RegistryClient } from '../upstream/types.ts'
import type { ContentStore } from './content-store.ts'

export interface MirrorOptions {
  /** Upstream name: part of every record's key. */
  upstream: string
  /** How long a tag may be answered from its last digest while the upstream is down (ms). */
  staleIfError: number
  /** The largest manifest read from the store. */
  manifestBytes: number
  /** A blob request answered from the store, or not (bytes counted by the HTTP layer). */
  blobLookup?: (hit: boolean) => void
  manifestLookup?: (kind: 'manifest' | 'tag', hit: boolean) => void
  /** An upstream request this store saved: a hit, or a blob request that joined another's fill. */
  saved?: (kind: 'manifest' | 'blob') => void
}

/** Failures that mean "the upstream cannot answer now", as opposed to "the answer is no". */
const OUTAGE = new Set(['UNAVAILABLE', 'UPSTREAM_TIMEOUT', 'UPSTREAM_ERROR', 'TOOMANYREQUESTS'])

export function isOutage(err: unknown): boolean {
  return err instanceof RegistryError && OUTAGE.has(err.code)
}

export class MirrorClient implements RegistryClient {
  readonly #inner: RegistryClient
  readonly #store: ContentStore
  readonly #options: MirrorOptions

  constructor(inner: RegistryClient, store: ContentStore, options: MirrorOptions) {
    this.#inner = inner
    this.#store = store
    this.#options = options
  }

  get name(): string {
    return this.#inner.name
  }

  async getManifest(repository: string, reference: string, options: { accept?: string[]; maxBytes?: number; signal?: AbortSignal } = {}): Promise<FetchedManifest | undefined> {
    const maxBytes = options.maxBytes ?? this.#options.manifestBytes
    if (isDigest(reference)) {
      const stored = await this.#store.manifest(this.#options.upstream, repository, reference, maxBytes)
      this.#options.manifestLookup?.('manifest', stored !== undefined)
      if (stored) {
        this.#options.saved?.('manifest')
        return { ...stored, source: 'store' }
      }
    }
    try {
      const fetched = await this.#inner.getManifest(repository, reference, options)
      if (fetched) this.#store.putManifest(this.#options.upstream, repository, fetched, isDigest(reference) ? undefined : reference)
      return fetched
    } catch (err) {
      if (isDigest(reference) || !isOutage(err)) throw err
      const stale = await this.#lastDigestOf(repository, reference, options.accept, maxBytes, err as RegistryError)
      if (!stale) throw err
      return stale
    }
  }

  async revalidateManifest(
    repository: string,
    reference: string,
    knownDigest: string,
    options: { accept?: string[]; maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<FetchedManifest | 'unchanged' | undefined> {
    try {
      const answer = this.#inner.revalidateManifest
        ? await this.#inner.revalidateManifest(repository, reference, knownDigest, options)
        : await this.#inner.getManifest(repository, reference, options)
      if (answer === 'unchanged') {
        const record = await this.#store.tag(this.#options.upstream, repository, reference)
        if (record?.digest === knownDigest) this.#store.putTag(this.#options.upstream, repository, reference, { ...record, at: Date.now() })
      } else if (answer) {
        this.#store.putManifest(this.#options.upstream, repository, answer, reference)
      }
      return answer
    } catch (err) {
      if (!isOutage(err)) throw err
      const stale = await this.#lastDigestOf(repository, reference, options.accept, options.maxBytes ?? this.#options.manifestBytes, err as RegistryError)
      if (!stale) throw err
      return stale
    }
  }

  /** A tag's last digest from the store while the upstream is down: within staleIfError, of a type the client accepts. */
  async #lastDigestOf(repository: string, tag: string, accept: string[] | undefined, maxBytes: number, err: RegistryError): Promise<FetchedManifest | undefined> {
    const record = await this.#store.tag(this.#options.upstream, repository, tag)
    const fresh = record && Date.now() - record.at <= this.#options.staleIfError && (!accept?.length || accept.includes(record.mediaType))
    const stored = fresh ? await this.#store.manifest(this.#options.upstream, repository, record.digest, maxBytes) : undefined
    this.#options.manifestLookup?.('tag', stored !== undefined)
    return stored && record ? { ...stored, source: 'store', stale: { at: record.at, reason: err.message } } : undefined
  }

  async getBlobBytes(repository: string, digest: string, options: { maxBytes: number; signal?: AbortSignal }): Promise<Buffer | undefined> {
    const stored = await this.#store.blobBytes(digest, options.maxBytes)
    if (stored) return stored
    const bytes = await this.#inner.getBlobBytes(repository, digest, options)
    if (bytes) this.#store.putBlobBytes(digest, bytes)
    return bytes
  }

  async getBlob(repository: string, digest: string, options: { range?: string; signal?: AbortSignal; method?: 'GET' | 'HEAD' } = {}): Promise<BlobResponse | undefined> {
    const size = await this.#store.blobSize(digest)
    if (size !== undefined) {
      const answer = await this.#fromStore(digest, size, options)
      if (answer) {
        this.#options.blobLookup?.(true)
        this.#options.saved?.('blob')
        return answer
      }
    }
    this.#options.blobLookup?.(false)
    // HEAD and ranges of a blob not stored go to the upstream as they are; a whole GET fills the store.
    if (options.method === 'HEAD' || options.range) return this.#inner.getBlob(repository, digest, options)
    let passed: BlobResponse | undefined
    let led = false
    const answer = await this.#store.fill(digest, async () => {
      led = true
      const res = await this.#inner.getBlob(repository, digest, { method: 'GET' })
      if (!res) return undefined
      if (res.status !== 200) {
        res.body.destroy()
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} answered ${res.status} to a whole GET of blob ${digest}`)
      }
      passed = res
      return { body: res.body, size: res.headers.contentLength, contentType: res.headers.contentType }
    })
    if (answer.kind === 'absent') return undefined
    if (answer.kind === 'direct') return answer.response && passed ? passed : this.#inner.getBlob(repository, digest, options)
    const { fill } = answer
    // Only the first caller's fetch runs: everyone else reads its fill.
    if (!led) this.#options.saved?.('blob')
    if (!fill.open) {
      // Published and closed while this request waited its turn: read it from the store.
      const size = await this.#store.blobSize(digest)
      const stored = size !== undefined ? await this.#fromStore(digest, size, options) : undefined
      return stored ?? this.#inner.getBlob(repository, digest, options)
    }
    return {
      status: 200,
      headers: { contentType: 'application/octet-stream', ...(fill.size !== undefined ? { contentLength: fill.size } : {}) },
      body: fill.reader(),
      verified: true,
    }
  }

  async #fromStore(digest: string, size: number, options: { range?: string; method?: 'GET' | 'HEAD' }): Promise<BlobResponse | undefined> {
    const headers = { contentType: 'application/octet-stream' }
    if (options.method === 'HEAD') {
      return { status: 200, headers: { ...headers, contentLength: size }, body: Readable.from([]), source: 'store' }
    }
    if (options.range) {
      const range = byteRange(options.range, size)
      const body = await this.#store.openBlob(digest, range)
      if (!body) return undefined
      return {
        status: 206,
        headers: { ...headers, contentLength: range.end - range.start + 1, contentRange: `bytes ${range.start}-${range.end}/${size}` },
        body,
        source: 'store',
      }
    }
    const body = await this.#store.openBlob(digest)
    if (!body) return undefined
    const check = await this.#store.readCheck(digest, body)
    if (check === 'wrong-size') return undefined
    return {
      status: 200,
      headers: { ...headers, contentLength: size },
      body,
      source: 'store',
      verified: check === 'checked',
      onMismatch: () => void this.#store.corrupt(digest),
      onVerified: () => this.#store.verifiedRead(digest, body),
    }
  }

  async getReferrers(repository: string, digest: string, options: { artifactType?: string; maxBytes?: number; signal?: AbortSignal } = {}): Promise<FetchedManifest | undefined> {
    try {
      const answer = await this.#inner.getReferrers(repository, digest, options)
      if (!options.artifactType) this.#store.putReferrers(this.#options.upstream, repository, digest, answer)
      return answer
    } catch (err) {
      if (options.artifactType || !isOutage(err)) throw err
      const record = await this.#store.referrers(this.#options.upstream, repository, digest)
      if (!record) throw err
      if (record.index === null) return undefined
      const bytes = await this.#store.blobBytes(record.index, options.maxBytes ?? this.#options.manifestBytes)
      if (!bytes) throw err
      return { bytes, digest: record.index, mediaType: 'application/vnd.oci.image.index.v1+json', source: 'store' }
    }
  }

  listTags(repository: string, query: { n?: string; last?: string }): Promise<{ body: Buffer; link?: string } | undefined> {
    return this.#inner.listTags(repository, query)
  }
}

/** A client's `bytes=a-b`, `bytes=a-` or `bytes=-n` against a known size (RFC 9110 §14.1.2). */
function byteRange(header: string, size: number): { start: number; end: number } {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header)
  let start: number
  let end: number
  if (m && m[1] === '' && m[2] !== '') {
    start = Math.max(0, size - Number(m[2]))
    end = size - 1
  } else if (m) {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  } else {
    start = size
    end = 0
  }
  if (start > end || start >= size)
    throw new RegistryError('RANGE_INVALID', `range ${header} is outside the blob's ${size} bytes`, { headers: { 'content-range': `bytes */${size}` } })
  return { start, end }
}

// The mirror's content store: what a key means, over one storage driver. Blobs and manifest bytes
// live under `blobs/<algorithm>/<hex>` (an OCI layout's naming); small JSON records say which
// manifests a repository has, what each tag last resolved to and what its referrers were.
// Threat: stored bytes are trusted only as far as they are checked. A blob is published only
// after its digest was confirmed while it streamed; manifests and documents are hashed again on
// every read; records are validated as untrusted input (a person or a bug may edit the store).
// A store that cannot write (disk full, read-only, a bucket gone) degrades to pass-through.
import { randomBytes } from 'node:crypto'
import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import { LRUCache } from 'lru-cache'
import { digestOf, isDigest } from '../oci/digest.ts'
import type { Logger } from '../telemetry/logger.ts'
import type { FetchedManifest } from '../upstream/types.ts'
import { isSafeKey, type StorageDriver } from './driver.ts'
import { FileBody } from './file-body.ts'
import { Fill } from './fill.ts'
import { FilesystemDriver } from './filesystem.ts'
import { Scrubber } from './scrub.ts'

export interface StoreEvents {
  evicted?(bytes: number): void
}

/** What the store found checking its own files since it opened (read by the metrics). */
export interface IntegrityCounts {
  /** Stored blobs that did not match their digest, removed to be fetched again, by who found them. */
  corrupt: { read: number; scrub: number }
  scrubbedBytes: number
  scrubPasses: number
  /** When the last whole scrub pass ended (ms since the epoch). */
  lastScrubPassAt: number | undefined
}

export interface ContentStoreOptions {
  driver: StorageDriver
  /** Bytes the blobs may take; least recently used ones are evicted above it. */
  maxSize: number
  logger: Logger
  /**
   * Bytes per second a scrub re-hashes the stored files (filesystem only); then a whole read skips
   * hashing a file that hashed right and is unchanged since. 0: every whole read is hashed.
   */
  scrubRate?: number
}

export interface TagRecord {
  digest: string
  mediaType: string
  /** When the upstream last said the tag names this digest (ms since the epoch). */
  at: number
}

interface Entry {
  size: number
  lastUsed: number
}

/** What a request for a blob not yet stored gets. */
export type FillAnswer =
  | { kind: 'fill'; fill: Fill }
  /** The upstream does not have it. */
  | { kind: 'absent' }
  /** Not stored (no room, store not writable): the caller passes the upstream answer through, or fetches its own. */
  | { kind: 'direct'; response?: UpstreamBlob }

export interface UpstreamBlob {
  body: Readable
  size: number | undefined
  contentType?: string
}

const RECORD_BYTES = 64 * 1024
/** How long a store that failed to write waits before trying again. */
const RETRY_WRITES_MS = 30_000
/** A tag record is rewritten at most this often while its digest stays the same. */
const TAG_REFRESH_MS = 60_000
const WRITE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO', 'ENOENT'])

export function blobKey(digest: string): string {
  const i = digest.indexOf(':')
  return `blobs/${digest.slice(0, i)}/${digest.slice(i + 1)}`
}

export class ContentStore {
  readonly driver: StorageDriver
  readonly #maxSize: number
  readonly #logger: Logger
  #events: StoreEvents = {}
  /** Blobs by key, least recently used first (Map order). */
  readonly #index = new Map<string, Entry>()
  #bytes = 0
  /** Bytes reserved by fills in progress. */
  #reserved = 0
  /** Reads and fills in progress per key: never evicted while > 0. */
  readonly #pins = new Map<string, number>()
  readonly #fills = new Map<string, Promise<FillAnswer>>()
  readonly #pending = new Set<Promise<unknown>>()
  /** Records written recently (key → content), so a warm request does not rewrite them. */
  readonly #written = new LRUCache<string, string>({ max: 50_000 })
  #unwritable: { reason: string; since: number } | undefined
  readonly #scrub: Scrubber | undefined
  readonly integrity: IntegrityCounts = { corrupt: { read: 0, scrub: 0 }, scrubbedBytes: 0, scrubPasses: 0, lastScrubPassAt: undefined }

  private constructor(options: ContentStoreOptions) {
    this.driver = options.driver
    this.#maxSize = options.maxSize
    this.#logger = options.logger
    const { driver } = options
    if (driver instanceof FilesystemDriver && (options.scrubRate ?? 0) > 0) {
      this.#scrub = new Scrubber({
        root: driver.root,
        rate: options.scrubRate!,
        logger: options.logger,
        keys: () => [...this.#index.keys()],
        corrupt: (digest) => this.corrupt(digest, 'scrub'),
        scrubbed: (bytes) => (this.integrity.scrubbedBytes += bytes),
        passDone: () => {
          this.integrity.scrubPasses++
          this.integrity.lastScrubPassAt = Date.now()
        },
      })
    }
  }

  /** Sweeps what a crash left, and learns what is stored (oldest use first) for eviction. */
  static async open(options: ContentStoreOptions): Promise<ContentStore> {
    const store = new ContentStore(options)
    await options.driver.sweep()
    const found: [string, Entry][] = []
    for await (const o of options.driver.list('blobs/')) found.push([o.key, { size: o.size, lastUsed: o.lastUsed ?? 0 }])
    found.sort((a, b) => a[1].lastUsed - b[1].lastUsed)
    for (const [key, entry] of found) store.#add(key, entry.size, entry.lastUsed)
    await store.#evictFor(0)
    store.#scrub?.start()
    return store
  }

  /** Whoever counts what the store does (the runtime's metrics, built after the store opened). */
  observe(events: StoreEvents): void {
    this.#events = events
  }

  get bytes(): number {
    return this.#bytes
  }

  get objects(): number {
    return this.#index.size
  }

  /** undefined while the store writes; otherwise why it does not (served pass-through meanwhile). */
  get unwritable(): string | undefined {
    return this.#unwritable?.reason
  }

  // ---------------------------------------------------------------------------------------------
  // Blobs

  /** The size of a stored blob, or undefined. Learns of blobs another replica published. */
  async blobSize(digest: string): Promise<number | undefined> {
    const key = blobKey(digest)
    const known = this.#index.get(key)
    if (known) return known.size
    const stat = await this.#guard(() => this.driver.stat(key), undefined)
    if (stat) this.#add(key, stat.size, Date.now())
    return stat?.size
  }

  /**
   * A stored blob, whole or a range, pinned against eviction until the stream ends. The caller
   * checks the digest of a whole read (and calls corrupt() on a mismatch).
   */
  async openBlob(digest: string, range?: { start: number; end: number }): Promise<Readable | undefined> {
    const key = blobKey(digest)
    const body = await this.#guard(() => this.driver.read(key, range), undefined)
    if (!body) {
      this.#remove(key)
      return undefined
    }
    this.#use(key)
    this.#pin(key)
    let unpinned = false
    const unpin = () => {
      if (unpinned) return
      unpinned = true
      this.#unpin(key)
    }
    body.once('close', unpin)
    body.once('end', unpin)
    body.once('error', unpin)
    return body
  }

  /** A stored blob that no longer matches its digest: removed, so the next request fetches it again. */
  async corrupt(digest: string, foundBy: 'read' | 'scrub' = 'read'): Promise<void> {
    this.#logger.error({ digest, foundBy }, 'a stored blob does not match its digest (bit rot or an edit): removed, it will be fetched again')
    this.integrity.corrupt[foundBy]++
    const key = blobKey(digest)
    this.#remove(key)
    await this.#guard(() => this.driver.delete(key), undefined)
  }

  /**
   * What a whole read of a stored blob needs: 'hash' it while it is sent (verify on read), or not
   * ('checked': the scrub is on and this very file hashed right since start-up). A file whose size
   * is not the blob's is removed ('wrong-size'), and the caller fetches the blob again.
   */
  async readCheck(digest: string, body: Readable): Promise<'hash' | 'checked' | 'wrong-size'> {
    const key = blobKey(digest)
    const file = body instanceof FileBody ? body.file : undefined
    const size = this.#index.get(key)?.size
    if (file && size !== undefined && file.size !== size) {
      body.destroy()
      await this.corrupt(digest)
      return 'wrong-size'
    }
    return file && this.#scrub?.isChecked(key, file.fingerprint) ? 'checked' : 'hash'
  }

  /** A whole read hashed right: the file, as it was opened, need not be hashed again while unchanged. */
  verifiedRead(digest: string, body: Readable): void {
    if (body instanceof FileBody && body.file) this.#scrub?.checked(blobKey(digest), body.file.fingerprint)
  }

  /**
   * One upstream fetch per blob, however many ask at once: the first caller's `open` runs, and
   * everyone gets a reader of the same fill. When the store cannot take the blob, the first caller
   * gets the upstream answer to pass through and the others fetch their own.
   */
  fill(digest: string, open: () => Promise<UpstreamBlob | undefined>): Promise<FillAnswer> {
    const key = blobKey(digest)
    const pending = this.#fills.get(key)
    if (pending) {
      return pending.then((answer) => (answer.kind === 'direct' ? { kind: 'direct' } : answer))
    }
    const started = this.#startFill(digest, key, open)
    this.#fills.set(key, started)
    started.then(
      (answer) => answer.kind !== 'fill' && this.#fills.delete(key),
      () => this.#fills.delete(key),
    )
    return started
  }

  async #startFill(digest: string, key: string, open: () => Promise<UpstreamBlob | undefined>): Promise<FillAnswer> {
    const upstream = await open()
    if (!upstream) return { kind: 'absent' }
    if (!(await this.#roomFor(upstream.size))) return { kind: 'direct', response: upstream }
    let reserved = upstream.size ?? 0
    this.#reserved += reserved
    // Once, when the blob is published (its bytes are counted then) or abandoned.
    const unreserve = () => {
      this.#reserved -= reserved
      reserved = 0
    }
    let fill: Fill
    try {
      fill = new Fill(digest, join(this.driver.spoolDir, `${digest.slice(digest.indexOf(':') + 1)}-${randomBytes(4).toString('hex')}.part`), upstream.body, upstream.size)
    } catch (err) {
      unreserve()
      this.#writeFailed(err)
      return { kind: 'direct', response: upstream }
    }
    this.#pin(key)
    const finish = () => {
      unreserve()
      this.#fills.delete(key)
      this.#unpin(key)
      fill.finished()
    }
    this.#track(
      fill.done
        .then(async () => {
          await this.driver.publishFile(key, fill.spoolPath)
          this.#add(key, fill.written, Date.now())
          unreserve()
          // Hashed as it arrived: the published file needs no hashing on read until it changes.
          const fingerprint = await this.#scrub?.fingerprint(key)
          if (fingerprint) this.#scrub?.checked(key, fingerprint)
          this.#writable()
          await this.#evictFor(0)
        })
        .catch((err: unknown) => {
          if (fill.state === 'verified') this.#writeFailed(err)
          else if (isWriteError(err)) this.#writeFailed(err)
          else this.#logger.warn({ digest, err: (err as Error).message }, 'blob not stored: its fetch failed')
        })
        .finally(finish),
    )
    return { kind: 'fill', fill }
  }

  /** Small blobs (signature documents), read whole and hashed again: undefined when absent or wrong. */
  async blobBytes(digest: string, maxBytes: number): Promise<Buffer | undefined> {
    const key = blobKey(digest)
    const bytes = await this.#guard(() => this.driver.readBytes(key, maxBytes), undefined)
    if (!bytes) return undefined
    if (!matches(bytes, digest)) {
      await this.corrupt(digest)
      return undefined
    }
    this.#use(key)
    return bytes
  }

  /** Stores small bytes already checked against their digest, in the background. */
  putBlobBytes(digest: string, bytes: Buffer): void {
    const key = blobKey(digest)
    if (this.#index.has(key) || !this.#canWrite()) return
    // Writable again only once written: "no room" is no proof that the store writes.
    this.#background(async () => {
      if (!(await this.#roomFor(bytes.length))) return
      await this.driver.writeBytes(key, bytes)
      this.#add(key, bytes.length, Date.now())
      this.#writable()
    }, false)
  }

  // ---------------------------------------------------------------------------------------------
  // Manifests, tags, referrers

  /** A manifest this repository is known to have, from the store, hashed again; undefined when not stored. */
  async manifest(upstream: string, repository: string, digest: string, maxBytes: number): Promise<FetchedManifest | undefined> {
    const record = await this.#record(manifestRecordKey(upstream, repository, digest), (v) => (typeof v.mediaType === 'string' ? { mediaType: v.mediaType } : undefined))
    if (!record) return undefined
    const bytes = await this.blobBytes(digest, maxBytes)
    return bytes ? { bytes, digest, mediaType: record.mediaType } : undefined
  }

  /** Records a manifest fetched from upstream (its digest checked by the client) and, for a tag, what it resolved to. */
  putManifest(upstream: string, repository: string, fetched: FetchedManifest, tag?: string): void {
    if (!this.#canWrite()) return
    this.putBlobBytes(fetched.digest, fetched.bytes)
    this.#putRecord(manifestRecordKey(upstream, repository, fetched.digest), { mediaType: fetched.mediaType })
    if (tag) this.putTag(upstream, repository, tag, { digest: fetched.digest, mediaType: fetched.mediaType, at: Date.now() })
  }

  async tag(upstream: string, repository: string, tag: string): Promise<TagRecord | undefined> {
    return this.#record(tagKey(upstream, repository, tag), (v) =>
      typeof v.digest === 'string' && isDigest(v.digest) && typeof v.mediaType === 'string' && typeof v.at === 'number'
        ? { digest: v.digest, mediaType: v.mediaType, at: v.at }
        : undefined,
    )
  }

  putTag(upstream: string, repository: string, tag: string, record: TagRecord): void {
    const key = tagKey(upstream, repository, tag)
    if (!key) return
    const last = this.#written.get(key)
    if (last) {
      const previous = JSON.parse(last) as TagRecord
      if (previous.digest === record.digest && record.at - previous.at < TAG_REFRESH_MS) return
    }
    this.#putRecord(key, record)
  }

  /** The upstream's last referrers answer for a digest: the index digest, or null when it had no referrers API. */
  async referrers(upstream: string, repository: string, digest: string): Promise<{ index: string | null } | undefined> {
    return this.#record(referrersKey(upstream, repository, digest), (v) =>
      v.index === null || (typeof v.index === 'string' && isDigest(v.index)) ? { index: v.index as string | null } : undefined,
    )
  }

  putReferrers(upstream: string, repository: string, digest: string, index: FetchedManifest | undefined): void {
    if (!this.#canWrite()) return
    if (index) this.putBlobBytes(index.digest, index.bytes)
    this.#putRecord(referrersKey(upstream, repository, digest), { index: index?.digest ?? null })
  }

  async #record<T>(key: string | undefined, parse: (value: Record<string, unknown>) => T | undefined): Promise<T | undefined> {
    if (!key) return undefined
    const bytes = await this.#guard(() => this.driver.readBytes(key, RECORD_BYTES), undefined)
    if (!bytes) return undefined
    try {
      const value: unknown = JSON.parse(bytes.toString('utf8'))
      return value && typeof value === 'object' && !Array.isArray(value) ? parse(value as Record<string, unknown>) : undefined
    } catch {
      return undefined
    }
  }

  #putRecord(key: string | undefined, value: object): void {
    if (!key || !this.#canWrite()) return
    const text = JSON.stringify(value)
    if (this.#written.get(key) === text) return
    this.#written.set(key, text)
    // A record is tiny: writing one proves nothing about room for blobs (a disk too full for them
    // still takes records), so only a blob written says the store writes again.
    this.#background(() => this.driver.writeBytes(key, Buffer.from(text)), false)
  }

  // ---------------------------------------------------------------------------------------------
  // Room, eviction, health

  /** Makes room for `size` more bytes (evicting), or says there is none: too big, disk full, not writable. */
  async #roomFor(size: number | undefined): Promise<boolean> {
    if (!this.#canWrite()) return false
    if (size === undefined) return true
    if (size > this.#maxSize) return false
    if (!(await this.#evictFor(size))) return false
    if (this.driver.kind === 'filesystem') {
      try {
        const fs = await statfs(this.driver.spoolDir)
        const free = fs.bavail * fs.bsize
        if (free < size + 16 * 1024 * 1024) {
          this.#writeFailed(Object.assign(new Error(`the disk holding the store has ${free} bytes free`), { code: 'ENOSPC' }))
          return false
        }
      } catch (err) {
        this.#writeFailed(err)
        return false
      }
    }
    return true
  }

  /** Evicts least recently used blobs until `size` more bytes fit; false when pinned ones leave no room. */
  async #evictFor(size: number): Promise<boolean> {
    const victims: string[] = []
    let bytes = this.#bytes + this.#reserved + size
    for (const [key, entry] of this.#index) {
      if (bytes <= this.#maxSize) break
      if (this.#pins.has(key)) continue
      victims.push(key)
      bytes -= entry.size
    }
    if (bytes > this.#maxSize) return false
    for (const key of victims) {
      const entry = this.#index.get(key)
      this.#remove(key)
      if (entry) this.#events.evicted?.(entry.size)
      await this.#guard(() => this.driver.delete(key), undefined)
    }
    if (victims.length) this.#logger.info({ objects: victims.length }, 'content store: least recently used blobs evicted')
    return true
  }

  #add(key: string, size: number, lastUsed: number): void {
    this.#remove(key)
    this.#index.set(key, { size, lastUsed })
    this.#bytes += size
  }

  #remove(key: string): void {
    this.#scrub?.forget(key)
    const entry = this.#index.get(key)
    if (!entry) return
    this.#index.delete(key)
    this.#bytes -= entry.size
  }

  #use(key: string): void {
    const entry = this.#index.get(key)
    if (entry) {
      this.#index.delete(key)
      entry.lastUsed = Date.now()
      this.#index.set(key, entry)
    }
    this.driver.touch(key)
  }

  #pin(key: string): void {
    this.#pins.set(key, (this.#pins.get(key) ?? 0) + 1)
  }

  #unpin(key: string): void {
    const n = (this.#pins.get(key) ?? 1) - 1
    if (n <= 0) this.#pins.delete(key)
    else this.#pins.set(key, n)
  }

  #canWrite(): boolean {
    if (!this.#unwritable) return true
    // Try again now and then: a disk that was full may have room, a bucket may be back.
    return Date.now() - this.#unwritable.since > RETRY_WRITES_MS
  }

  #writeFailed(err: unknown): void {
    const code = (err as NodeJS.ErrnoException | undefined)?.code
    const reason = `${code ?? 'error'}: ${(err as Error | undefined)?.message ?? String(err)}`.slice(0, 300)
    const first = !this.#unwritable
    this.#unwritable = { reason, since: Date.now() }
    if (first) {
      this.#logger.error({ reason }, 'content store cannot write: serving pass-through until it can')
    }
  }

  #writable(): void {
    if (!this.#unwritable) return
    this.#unwritable = undefined
    this.#logger.info('content store writes again')
  }

  /** Runs a driver read; a failure is logged and answered as `fallback` (the store never fails a request). */
  async #guard<T>(run: () => Promise<T>, fallback: T): Promise<T> {
    try {
      return await run()
    } catch (err) {
      this.#logger.warn({ err: (err as Error).message }, 'content store read failed')
      return fallback
    }
  }

  #background(run: () => Promise<void>, provesWritable = true): void {
    this.#track(
      run().then(
        () => provesWritable && this.#writable(),
        (err: unknown) => this.#writeFailed(err),
      ),
    )
  }

  #track(p: Promise<unknown>): void {
    this.#pending.add(p)
    void p.finally(() => this.#pending.delete(p))
  }

  /** Waits for writes in flight (at shutdown, and in tests). */
  async flush(): Promise<void> {
    while (this.#pending.size) await Promise.allSettled([...this.#pending])
  }

  async close(): Promise<void> {
    await this.#scrub?.close()
    await this.flush()
    await this.driver.close()
  }
}

function matches(bytes: Buffer, digest: string): boolean {
  const algorithm = digest.slice(0, digest.indexOf(':'))
  return (algorithm === 'sha256' || algorithm === 'sha512') && digestOf(bytes, algorithm) === digest
}

function isWriteError(err: unknown): boolean {
  return WRITE_ERRORS.has((err as NodeJS.ErrnoException | undefined)?.code ?? '')
}

function repositoryKey(upstream: string, repository: string, rest: string): string | undefined {
  const key = `repositories/${upstream}/${repository}/${rest}`
  return isSafeKey(key) ? key : undefined
}

function manifestRecordKey(upstream: string, repository: string, digest: string): string | undefined {
  return repositoryKey(upstream, repository, `_manifests/${digest.replace(':', '/')}`)
}

function tagKey(upstream: string, repository: string, tag: string): string | undefined {
  return repositoryKey(upstream, repository, `_tags/${tag}`)
}

function referrersKey(upstream: string, repository: string, digest: string): string | undefined {
  return repositoryKey(upstream, repository, `_referrers/${digest.replace(':', '/')}`)
}

// OCI image layouts (image-spec `image-layout.md`): `oci-layout`, `index.json`, `blobs/<alg>/<hex>`.
// One layout holds one repository: index.json lists the image under its tag
// (`org.opencontainers.image.ref.name`, as skopeo and umoci read it) and the signature artifacts
// under their cosign tags (`sha256-<hex>.sig`, `.att`, and the referrers fallback `sha256-<hex>`).
//
// LayoutReader gives a layout the RegistryClient shape, so discovery and verification read an
// archive exactly as they read a registry. Its content is hostile input like any upstream's:
// sizes are bounded and every manifest and blob is checked against its digest.
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { randomUUID } from 'node:crypto'
import { digestOf, isDigest, parseDigest } from '../oci/digest.ts'
import { ManifestError } from '../oci/manifest.ts'
import { MANIFEST_TYPES, MediaType } from '../oci/media-types.ts'
import { isValidTag } from '../oci/reference.ts'
import { DigestMismatchError, verifyingStream } from '../pull/verifying-stream.ts'
import { LimitExceededError, RegistryError } from '../errors.ts'
import type { BlobResponse, FetchedManifest, RegistryClient } from '../upstream/types.ts'
import { CopyError } from './errors.ts'
import type { ManifestToWrite, Target } from './target.ts'

export const REF_NAME = 'org.opencontainers.image.ref.name'
const LAYOUT_FILE = 'oci-layout'
const INDEX_FILE = 'index.json'
const MAX_INDEX_BYTES = 16 * 1024 * 1024

export interface LayoutEntry {
  mediaType: string
  digest: string
  size: number
  annotations?: Record<string, string>
  [key: string]: unknown
}

function blobPath(dir: string, digest: string): string {
  const d = parseDigest(digest) // refuses anything that could be a path
  return join(dir, 'blobs', d.algorithm, d.hex)
}

/** Reads and checks `oci-layout` and `index.json`. */
export async function readLayoutIndex(dir: string): Promise<LayoutEntry[]> {
  let marker: unknown
  try {
    marker = JSON.parse(await readFile(join(dir, LAYOUT_FILE), 'utf8'))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new CopyError('LAYOUT_INVALID', `${dir} is not an OCI image layout (${code === 'ENOENT' ? 'no oci-layout file' : 'oci-layout is not JSON'})`)
  }
  const version = (marker as { imageLayoutVersion?: unknown } | null)?.imageLayoutVersion
  if (typeof version !== 'string' || !/^1\./.test(version)) throw new CopyError('LAYOUT_INVALID', `${dir}: unsupported imageLayoutVersion ${JSON.stringify(version ?? null)}`)
  const bytes = await readBounded(join(dir, INDEX_FILE), MAX_INDEX_BYTES, `${dir}/index.json`)
  if (bytes === undefined) throw new CopyError('LAYOUT_INVALID', `${dir}: no index.json`)
  let index: unknown
  try {
    index = JSON.parse(bytes.toString('utf8'))
  } catch {
    throw new CopyError('LAYOUT_INVALID', `${dir}/index.json is not JSON`)
  }
  const manifests = (index as { manifests?: unknown } | null)?.manifests
  if (!Array.isArray(manifests)) throw new CopyError('LAYOUT_INVALID', `${dir}/index.json lists no manifests`)
  return manifests.map((m: unknown, i) => {
    const e = m as Partial<LayoutEntry> | null
    if (!e || typeof e.mediaType !== 'string' || typeof e.digest !== 'string' || !isDigest(e.digest) || typeof e.size !== 'number') {
      throw new CopyError('LAYOUT_INVALID', `${dir}/index.json: manifests[${i}] is not a descriptor`)
    }
    return e as LayoutEntry
  })
}

async function readBounded(path: string, maxBytes: number, what: string): Promise<Buffer | undefined> {
  let handle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw err
  }
  try {
    const { size } = await handle.stat()
    if (size > maxBytes) {
      throw new LimitExceededError(`${what} is ${size} bytes, over the ${maxBytes}-byte limit`, maxBytes)
    }
    return await handle.readFile()
  } finally {
    await handle.close()
  }
}

/** Artifact tags cosign and the referrers fallback use; never taken for the image itself. */
export const ARTIFACT_TAG = /^sha(256|512)-[a-f0-9]+(\.(sig|att|sbom))?$/

/** The manifest media type of a stored document: its own `mediaType`, or what its shape says. */
function documentMediaType(bytes: Buffer): string {
  let doc: { mediaType?: unknown; manifests?: unknown; config?: unknown }
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc
  } catch {
    throw new ManifestError('manifest is not valid JSON')
  }
  if (typeof doc.mediaType === 'string') return doc.mediaType
  return Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest
}

export class LayoutReader implements RegistryClient {
  readonly name: string
  readonly dir: string
  readonly #entries: LayoutEntry[]
  readonly #manifestBytes: number

  private constructor(dir: string, name: string, entries: LayoutEntry[], manifestBytes: number) {
    this.dir = dir
    this.name = name
    this.#entries = entries
    this.#manifestBytes = manifestBytes
  }

  static async open(dir: string, options: { name?: string; manifestBytes: number }): Promise<LayoutReader> {
    return new LayoutReader(dir, options.name ?? `oci:${dir}`, await readLayoutIndex(dir), options.manifestBytes)
  }

  /** Tags listed in index.json. */
  tags(): string[] {
    return this.#entries.map((e) => e.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined)
  }

  /** The image a reference-less `oci:DIR` means: the only entry that is not a signature artifact. */
  defaultReference(): string {
    const images = this.#entries.filter((e) => !ARTIFACT_TAG.test(e.annotations?.[REF_NAME] ?? '') && MANIFEST_TYPES.has(e.mediaType))
    const distinct = [...new Set(images.map((e) => e.digest))]
    if (distinct.length === 1) return images[0]!.annotations?.[REF_NAME] ?? distinct[0]!
    if (distinct.length === 0) throw new CopyError('NOT_FOUND', `${this.name} holds no image`)
    throw new CopyError('BAD_ENDPOINT', `${this.name} holds ${distinct.length} images; name one by tag (${images.map((e) => e.annotations?.[REF_NAME] ?? e.digest).join(', ')})`)
  }

  async getManifest(_repository: string, reference: string, options: { maxBytes?: number } = {}): Promise<FetchedManifest | undefined> {
    let digest = reference
    let entry: LayoutEntry | undefined
    if (isDigest(reference)) entry = this.#entries.find((e) => e.digest === reference)
    else {
      if (!isValidTag(reference)) return undefined
      entry = this.#entries.find((e) => e.annotations?.[REF_NAME] === reference)
      if (!entry) return undefined
      digest = entry.digest
    }
    const maxBytes = options.maxBytes ?? this.#manifestBytes
    const bytes = await readBounded(blobPath(this.dir, digest), maxBytes, `manifest ${digest} in ${this.name}`)
    if (bytes === undefined) return undefined
    this.#check(bytes, digest, 'manifest')
    return { bytes, digest, mediaType: entry?.mediaType ?? documentMediaType(bytes) }
  }

  async getBlobBytes(_repository: string, digest: string, options: { maxBytes: number }): Promise<Buffer | undefined> {
    const bytes = await readBounded(blobPath(this.dir, digest), options.maxBytes, `blob ${digest} in ${this.name}`)
    if (bytes !== undefined) this.#check(bytes, digest, 'blob')
    return bytes
  }

  async getBlob(_repository: string, digest: string, options: { range?: string; method?: 'GET' | 'HEAD' } = {}): Promise<BlobResponse | undefined> {
    if (options.range) throw new RegistryError('RANGE_INVALID', 'ranges are not read from an OCI layout')
    const path = blobPath(this.dir, digest)
    let size: number
    try {
      size = (await stat(path)).size
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    const body = options.method === 'HEAD' ? Readable.from([]) : createReadStream(path)
    return { status: 200, headers: { contentLength: size, contentType: 'application/octet-stream' }, body }
  }

  /** A layout has no referrers API: the fallback tag `sha256-<hex>` is read instead. */
  async getReferrers(): Promise<FetchedManifest | undefined> {
    return undefined
  }

  async listTags(): Promise<{ body: Buffer; link?: string } | undefined> {
    return { body: Buffer.from(JSON.stringify({ name: this.name, tags: this.tags() })) }
  }

  async close(): Promise<void> {}

  #check(bytes: Buffer, digest: string, what: string): void {
    if (digestOf(bytes, parseDigest(digest).algorithm) !== digest) {
      throw new RegistryError('UPSTREAM_ERROR', `${what} ${digest} in ${this.name} does not match its digest; the layout is corrupt or tampered with`)
    }
  }
}

/** Serialises index.json updates of one directory within this process (batch copies share layouts). */
const indexLocks = new Map<string, Promise<void>>()
async function withIndexLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const previous = indexLocks.get(dir) ?? Promise.resolve()
  let release!: () => void
  const mine = new Promise<void>((resolve) => (release = resolve))
  const chained = previous.then(() => mine)
  indexLocks.set(dir, chained)
  await previous
  try {
    return await fn()
  } finally {
    release()
    if (indexLocks.get(dir) === chained) indexLocks.delete(dir)
  }
}

/** Writes into a layout directory (created when missing). Blobs land atomically; index.json on commit. */
export class LayoutWriter implements Target {
  readonly description: string
  readonly listsRoots = true
  readonly dir: string
  /** Entries to add to index.json on commit, keyed by tag (or by digest for untagged roots). */
  readonly #pending = new Map<string, LayoutEntry>()
  #reader: LayoutReader | undefined

  constructor(dir: string, description = `oci:${dir}`) {
    this.dir = dir
    this.description = description
  }

  /** Creates the layout skeleton (or checks the one there). */
  async init(manifestBytes: number): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true })
    await withIndexLock(this.dir, async () => {
      try {
        await stat(join(this.dir, LAYOUT_FILE))
      } catch {
        await writeFile(join(this.dir, LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
        await writeFile(join(this.dir, INDEX_FILE), JSON.stringify(emptyIndex([])))
      }
    })
    this.#reader = await LayoutReader.open(this.dir, { name: this.description, manifestBytes })
  }

  #existing(): LayoutReader {
    if (!this.#reader) throw new Error('LayoutWriter.init() was not called')
    return this.#reader
  }

  async hasBlob(digest: string): Promise<boolean> {
    try {
      await stat(blobPath(this.dir, digest))
      return true
    } catch {
      return false
    }
  }

  async putBlob(digest: string, size: number, openBlob: () => Promise<Readable>, onBytes?: (n: number) => void): Promise<void> {
    const final = blobPath(this.dir, digest)
    await mkdir(join(final, '..'), { recursive: true })
    const temp = `${final}.${randomUUID()}.partial`
    let written = 0
    const count = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        written += chunk.length
        if (written > size) return cb(new CopyError('SOURCE_ERROR', `blob ${digest} is longer than its descriptor's ${size} bytes`))
        onBytes?.(chunk.length)
        cb(null, chunk)
      },
    })
    try {
      await pipeline(await openBlob(), count, verifyingStream(digest), createWriteStream(temp, { flags: 'wx' }))
      if (written !== size) throw new CopyError('SOURCE_ERROR', `blob ${digest} is ${written} bytes, its descriptor says ${size}`)
      await rename(temp, final)
    } catch (err) {
      await rm(temp, { force: true })
      if (err instanceof DigestMismatchError) throw new CopyError('SOURCE_ERROR', `blob ${digest} from the source: ${err.message}`, { cause: err })
      throw err
    }
  }

  async manifestDigest(reference: string): Promise<string | undefined> {
    const pending = this.#pending.get(reference)
    if (pending) return pending.digest
    if (isDigest(reference)) return (await this.hasBlob(reference)) ? reference : undefined
    return (await this.#existing().getManifest('', reference))?.digest
  }

  async getManifest(reference: string): Promise<FetchedManifest | undefined> {
    const pending = this.#pending.get(reference)
    return this.#existing().getManifest('', pending?.digest ?? reference)
  }

  async putManifest(manifest: ManifestToWrite, options: { tag?: string; root?: boolean } = {}): Promise<{ referrersApi: boolean }> {
    if (!(await this.hasBlob(manifest.digest))) {
      await this.putBlob(manifest.digest, manifest.bytes.length, async () => Readable.from([manifest.bytes]))
    }
    const entry: LayoutEntry = { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.bytes.length }
    if (options.tag) this.#pending.set(options.tag, { ...entry, annotations: { [REF_NAME]: options.tag } })
    else if (options.root) this.#pending.set(manifest.digest, entry)
    return { referrersApi: false }
  }

  async commit(): Promise<void> {
    if (this.#pending.size === 0) return
    await withIndexLock(this.dir, async () => {
      // Re-read: another copy into this layout may have committed since init().
      const entries = await readLayoutIndex(this.dir)
      for (const [key, entry] of this.#pending) {
        const tag = entry.annotations?.[REF_NAME]
        const same = (e: LayoutEntry) => (tag !== undefined ? e.annotations?.[REF_NAME] === tag : e.digest === key && e.annotations?.[REF_NAME] === undefined)
        const at = entries.findIndex(same)
        if (at === -1) entries.push(entry)
        else entries[at] = entry
      }
      const temp = join(this.dir, `${INDEX_FILE}.${randomUUID()}.partial`)
      await writeFile(temp, JSON.stringify(emptyIndex(entries)))
      await rename(temp, join(this.dir, INDEX_FILE))
    })
    this.#pending.clear()
  }

  async close(): Promise<void> {}
}

function emptyIndex(manifests: LayoutEntry[]): object {
  return { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests }
}

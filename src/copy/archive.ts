// `oci-archive:FILE.tar`: a tar of an OCI image layout (what skopeo writes). An archive is read by
// extracting it into a private temp directory; it is written by building the layout there and
// packing it, renamed into place only when complete. node-tar refuses absolute paths and `..`;
// on top of that only the layout's own files are taken (no links, devices or stray paths).
import type { Stats } from 'node:fs'
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { create, extract, type ReadEntry } from 'tar'
import { isDigest } from '../oci/digest.ts'
import type { FetchedManifest } from '../upstream/types.ts'
import { CopyError } from './errors.ts'
import { LayoutReader, LayoutWriter } from './layout.ts'
import type { ManifestToWrite, Target } from './target.ts'

const LAYOUT_PATH = /^(oci-layout|index\.json|blobs|blobs\/(sha256|sha512)|blobs\/(sha256|sha512)\/[a-f0-9]+)\/?$/

function allowedEntry(path: string, entry: ReadEntry | Stats): boolean {
  const p = path.replace(/^\.\//, '')
  if (!LAYOUT_PATH.test(p)) return false
  const parts = p.replace(/\/$/, '').split('/')
  if (parts.length === 3 && !isDigest(`${parts[1]}:${parts[2]}`)) return false
  const type = 'type' in entry ? entry.type : undefined
  return parts.length === 3 || p === 'oci-layout' || p === 'index.json' ? type === 'File' || type === 'OldFile' : type === 'Directory'
}

/** Extracts `file` into a fresh temp directory; the caller removes it. */
export async function extractArchive(file: string): Promise<string> {
  try {
    await stat(file)
  } catch {
    throw new CopyError('NOT_FOUND', `archive ${file} does not exist`)
  }
  const dir = await mkdtemp(join(tmpdir(), 'trustpull-archive-'))
  try {
    await extract({ file, cwd: dir, filter: allowedEntry, strict: true, noChmod: true, preserveOwner: false })
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw new CopyError('LAYOUT_INVALID', `${file} is not a readable tar archive: ${(err as Error).message}`, { cause: err })
  }
  return dir
}

/** Opens an archive for reading; `close()` removes the extracted copy. */
export async function openArchive(file: string, manifestBytes: number): Promise<{ reader: LayoutReader; close(): Promise<void> }> {
  const dir = await extractArchive(file)
  try {
    const reader = await LayoutReader.open(dir, { name: `oci-archive:${file}`, manifestBytes })
    return { reader, close: () => rm(dir, { recursive: true, force: true }) }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

/**
 * Writes into an archive: what it already holds is extracted first (so a rerun skips it and other
 * tags are kept), the layout is completed in a temp directory, and `commit()` packs it and renames
 * the result over `file` in one step.
 */
export class ArchiveWriter implements Target {
  readonly description: string
  readonly listsRoots = true
  readonly #file: string
  readonly #dir: string
  readonly #layout: LayoutWriter

  private constructor(file: string, dir: string) {
    this.#file = file
    this.#dir = dir
    this.description = `oci-archive:${file}`
    this.#layout = new LayoutWriter(dir, this.description)
  }

  static async open(file: string, manifestBytes: number): Promise<ArchiveWriter> {
    let exists = true
    try {
      await stat(file)
    } catch {
      exists = false
    }
    const dir = exists ? await extractArchive(file) : await mkdtemp(join(tmpdir(), 'trustpull-archive-'))
    const writer = new ArchiveWriter(file, dir)
    try {
      await writer.#layout.init(manifestBytes)
    } catch (err) {
      await rm(dir, { recursive: true, force: true })
      throw err
    }
    return writer
  }

  hasBlob(digest: string): Promise<boolean> {
    return this.#layout.hasBlob(digest)
  }
  putBlob(...args: Parameters<Target['putBlob']>): Promise<void> {
    return this.#layout.putBlob(...args)
  }
  manifestDigest(reference: string): Promise<string | undefined> {
    return this.#layout.manifestDigest(reference)
  }
  getManifest(reference: string): Promise<FetchedManifest | undefined> {
    return this.#layout.getManifest(reference)
  }
  putManifest(manifest: ManifestToWrite, options?: { tag?: string; root?: boolean }): Promise<{ referrersApi: boolean }> {
    return this.#layout.putManifest(manifest, options)
  }

  async commit(): Promise<void> {
    await this.#layout.commit()
    const temp = `${this.#file}.${randomUUID()}.partial`
    try {
      await mkdir(dirname(this.#file), { recursive: true })
      await create({ file: temp, cwd: this.#dir, portable: true, filter: (path) => !path.endsWith('.partial') }, ['oci-layout', 'index.json', 'blobs'])
      await rename(temp, this.#file)
    } catch (err) {
      await rm(temp, { force: true })
      throw new CopyError('DESTINATION_ERROR', `cannot write ${this.#file}: ${(err as Error).message}`, { cause: err })
    }
  }

  async close(): Promise<void> {
    await rm(this.#dir, { recursive: true, force: true })
  }
}

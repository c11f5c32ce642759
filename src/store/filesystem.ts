// The filesystem driver: each object is one plain file under the root holding exactly its bytes
// (`blobs/sha256/<hex>` is the blob itself), so operators can inspect, back up and rsync the store.
// Threat: a crash or SIGKILL mid-write must leave nothing that is ever served. Objects are written
// to `_spool/` and renamed into place after an fsync (rename is atomic within one filesystem);
// `_spool/` is emptied at start.
import { randomBytes } from 'node:crypto'
import type { BigIntStats } from 'node:fs'
import { mkdir, open, readdir, rename, rm, stat, utimes } from 'node:fs/promises'
import { dirname, join, relative, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { isSafeKey, type StorageDriver, type StoredObject } from './driver.ts'
import { FileBody, fileFingerprint } from './file-body.ts'

const SPOOL = '_spool'
/** A read marks an object used at most this often (a utimes per read would cost a syscall each). */
const TOUCH_EVERY_MS = 60_000

export class FilesystemDriver implements StorageDriver {
  readonly kind = 'filesystem' as const
  readonly root: string
  readonly spoolDir: string
  readonly #touched = new Map<string, number>()

  constructor(root: string) {
    this.root = root
    this.spoolDir = join(root, SPOOL)
  }

  /** Creates the directories and proves the root is writable: throws (ENOENT, EACCES, EROFS …) when not. */
  async open(): Promise<void> {
    await mkdir(this.spoolDir, { recursive: true })
    const probe = join(this.spoolDir, `probe-${process.pid}`)
    const handle = await open(probe, 'w')
    await handle.close()
    await rm(probe, { force: true })
  }

  #path(key: string): string {
    if (!isSafeKey(key) || key.startsWith(`${SPOOL}/`)) throw new Error(`invalid storage key "${key.slice(0, 200)}"`)
    return join(this.root, key)
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const s = await stat(this.#path(key))
      return s.isFile() ? { key, size: s.size, lastUsed: s.mtimeMs } : undefined
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable | undefined> {
    const path = this.#path(key)
    // Open first, so a missing file is `undefined` here rather than an error on the stream later.
    let handle
    try {
      handle = await open(path, 'r')
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
    // Touched before the fstat, so the body's fingerprint is of the file as its times now stand.
    await this.#touch(key)
    let stat: BigIntStats
    try {
      stat = await handle.stat({ bigint: true })
    } catch (err) {
      await handle.close()
      throw err
    }
    const size = Number(stat.size)
    // The body owns the handle and closes it when it ends or is destroyed.
    return new FileBody(
      { fd: handle.fd, available: () => size, state: () => 'done', wait: () => {}, release: () => void handle.close().catch(() => {}) },
      range?.start ?? 0,
      range ? range.end + 1 : size,
      { size, fingerprint: fileFingerprint(stat) },
    )
  }

  async readBytes(key: string, maxBytes: number): Promise<Buffer | undefined> {
    let handle
    try {
      handle = await open(this.#path(key), 'r')
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
    try {
      const { size } = await handle.stat()
      if (size > maxBytes) return undefined
      return await handle.readFile()
    } finally {
      await handle.close()
    }
  }

  async writeBytes(key: string, bytes: Buffer): Promise<void> {
    const spool = join(this.spoolDir, `${randomBytes(8).toString('hex')}.tmp`)
    const handle = await open(spool, 'w')
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } catch (err) {
      await handle.close().catch(() => {})
      await rm(spool, { force: true })
      throw err
    }
    await handle.close()
    await this.publishFile(key, spool)
  }

  async publishFile(key: string, file: string): Promise<void> {
    try {
      const target = this.#path(key)
      await mkdir(dirname(target), { recursive: true })
      // The caller fsynced the file's data; rename makes it visible whole or not at all.
      await rename(file, target)
      // Its times are fresh: the first reads need not touch it.
      this.#touched.set(key, Date.now())
    } catch (err) {
      await rm(file, { force: true })
      throw err
    }
  }

  async delete(key: string): Promise<void> {
    this.#touched.delete(key)
    await rm(this.#path(key), { force: true })
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    const start = prefix ? this.#path(prefix.replace(/\/$/, '')) : this.root
    for await (const path of walk(start)) {
      const key = relative(this.root, path).split(sep).join('/')
      if (key.startsWith(`${SPOOL}/`)) continue
      try {
        const s = await stat(path)
        yield { key, size: s.size, lastUsed: s.mtimeMs }
      } catch (err) {
        if (!isMissing(err)) throw err
      }
    }
  }

  touch(key: string): void {
    void this.#touch(key)
  }

  async #touch(key: string): Promise<void> {
    const now = Date.now()
    if (now - (this.#touched.get(key) ?? 0) < TOUCH_EVERY_MS) return
    this.#touched.set(key, now)
    if (this.#touched.size > 100_000) this.#touched.clear()
    const at = new Date(now)
    await utimes(this.#path(key), at, at).catch(() => {})
  }

  async sweep(): Promise<void> {
    await rm(this.spoolDir, { recursive: true, force: true })
    await mkdir(this.spoolDir, { recursive: true })
  }

  async close(): Promise<void> {}
}

async function* walk(dir: string): AsyncIterable<string> {
  let entries
  try {
    entries = await readdir(dir, { withFileTypes: true })
  } catch (err) {
    if (isMissing(err)) return
    throw err
  }
  for (const entry of entries) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) yield* walk(path)
    else if (entry.isFile()) yield path
  }
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ENOTDIR'
}

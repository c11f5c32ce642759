// One upstream fetch of a blob into the store, read by every client that asks meanwhile.
// Threat: a blob whose bytes do not match its digest must never be published, and no client may
// receive a complete wrong blob. The bytes go to a spool file while they are hashed; readers
// follow the spool file at their own pace (a slow client never slows the fetch or the others) but
// never past its last byte until the digest is confirmed: on a mismatch they are cut one byte
// short, and the spool file is discarded. A disk that fails mid-write (full, over quota, I/O) loses
// the blob for the store, not for its readers: they go on from memory, bounded, at the pace of the
// slowest of them, and are still cut short on a mismatch.
import { createHash, type Hash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createWriteStream, close as closeFd, fsync, openSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { DigestMismatchError } from '../pull/verifying-stream.ts'
import { FileBody } from './file-body.ts'

/** How much of what a fill wrote last it keeps in memory for readers that keep up. */
const RECENT_BYTES = 8 * 1024 * 1024
/** Once the spool file cannot be written: the most a fill holds for its slowest reader before it pauses the upstream. */
export const UNSTORED_BYTES = 16 * 1024 * 1024

export type FillState = 'filling' | 'verified' | 'failed'

export class Fill extends EventEmitter {
  readonly digest: string
  readonly spoolPath: string
  /** The size the upstream announced, if it did. */
  readonly size: number | undefined
  state: FillState = 'filling'
  error: Error | undefined
  #written = 0
  /** The last bytes written, by file position (chunks as the upstream sent them, shared by readers). */
  readonly #recent: { start: number; chunk: Buffer }[] = []
  #recentBytes = 0
  #readFd: number
  #settled = false
  #finished = false
  readonly #source: Readable
  /**
   * Set when the spool file could not be written: where the file's bytes end. The bytes after it
   * are held in #unstored until every reader has passed them.
   */
  #fileEnd: number | undefined
  readonly #unstored: { start: number; chunk: Buffer }[] = []
  #unstoredBytes = 0
  /** Each open reader's position (so unstored bytes every reader passed can be let go); its size is how many read. */
  readonly #positions = new Map<number, number>()
  #nextReader = 0
  readonly done: Promise<void>

  /**
   * Starts copying `source` into `spoolPath` at once. `state` turns 'verified' when the digest is
   * confirmed and every byte written; `done` resolves once the file is also on disk (fsynced), and
   * rejects on any failure (the spool file is removed then).
   */
  constructor(digest: string, spoolPath: string, source: Readable, size: number | undefined) {
    super()
    this.setMaxListeners(0)
    this.digest = digest
    this.spoolPath = spoolPath
    this.size = size
    // Both descriptors now (a failure throws here, before any reader exists).
    const writeFd = openSync(spoolPath, 'wx')
    // Readers share one descriptor and read by position; opened now, so the spool file can be
    // renamed or unlinked by publishing while they are still reading it.
    try {
      this.#readFd = openSync(spoolPath, 'r')
    } catch (err) {
      closeFd(writeFd, () => {})
      throw err
    }
    this.#source = source
    const out = createWriteStream(spoolPath, { fd: writeFd, highWaterMark: 4 * 1024 * 1024 })
    const hash: Hash = createHash(digest.slice(0, digest.indexOf(':')))
    let received = 0
    let ended = false
    /** Chunks handed to the spool file and not yet written, in order. */
    const pending: Buffer[] = []
    let settle!: (err?: Error) => void
    this.done = new Promise<void>((resolve, reject) => {
      settle = (err) => {
        if (this.#settled) return
        this.#settled = true
        if (err) reject(err)
        else resolve()
      }
    })
    // The fetch failed or the bytes are wrong: readers are cut, nothing is published.
    const fail = (err: Error) => {
      if (this.state === 'failed') return
      // After verification only publishing fails: readers still get the checked bytes (by descriptor).
      if (this.state !== 'verified') {
        this.state = 'failed'
        this.error = err
      }
      source.destroy()
      out.destroy()
      rm(spoolPath, { force: true }).catch(() => {})
      this.emit('progress')
      settle(err)
    }
    // The spool file failed: the store loses the blob (`done` rejects with the write error), and
    // what was not written yet, and all that follows, goes to the readers from memory.
    const unstore = (err: Error) => {
      if (this.state !== 'filling' || this.#fileEnd !== undefined) return fail(err)
      this.#fileEnd = this.#written
      for (const chunk of pending.splice(0)) this.#hold(chunk)
      out.destroy()
      // The read descriptor keeps what was written readable; the disk gets its space back at close.
      rm(spoolPath, { force: true }).catch(() => {})
      settle(err)
      this.emit('progress')
      verify()
      this.#pace()
    }
    // Verified once every byte is hashed and written: readers may have the last byte then. The
    // fsync only makes the file durable for publishing, and need not hold the clients up.
    const verify = () => {
      if (this.state !== 'filling' || !ended || this.#written !== received) return
      const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`
      if (actual !== digest) return fail(new DigestMismatchError(`blob bytes hash to ${actual}, not ${digest}`))
      if (size !== undefined && this.#written !== size) return fail(new Error(`upstream announced ${size} bytes for ${digest} and sent ${this.#written}`))
      this.state = 'verified'
      this.emit('progress')
      if (this.#fileEnd !== undefined) return
      fsync(writeFd, (err) => {
        if (err) return fail(err)
        out.end()
      })
    }
    source.on('data', (chunk: Buffer) => {
      hash.update(chunk)
      received += chunk.length
      if (this.#fileEnd !== undefined) {
        this.#hold(chunk)
        this.emit('progress')
        verify()
        return this.#pace()
      }
      pending.push(chunk)
      const ok = out.write(chunk, (err) => {
        if (err || this.#fileEnd !== undefined) return
        pending.shift()
        this.#remember(this.#written, chunk)
        this.#written += chunk.length
        this.emit('progress')
        verify()
      })
      if (!ok) source.pause()
    })
    out.on('drain', () => this.#fileEnd === undefined && source.resume())
    source.once('error', fail)
    out.once('error', unstore)
    source.once('end', () => {
      ended = true
      verify()
    })
    out.once('finish', () => settle())
    // Nobody need listen to `done` for a failure to be handled.
    this.done.catch(() => {})
  }

  /** Keeps the last RECENT_BYTES written in memory, for readers that keep up (see FileSource.recent). */
  #remember(start: number, chunk: Buffer): void {
    this.#recent.push({ start, chunk })
    this.#recentBytes += chunk.length
    while (this.#recentBytes - this.#recent[0]!.chunk.length >= RECENT_BYTES) this.#recentBytes -= this.#recent.shift()!.chunk.length
  }

  /** Bytes the spool file never got, from position `this.#written` on, until every reader passed them. */
  #hold(chunk: Buffer): void {
    this.#unstored.push({ start: this.#written, chunk })
    this.#unstoredBytes += chunk.length
    this.#written += chunk.length
  }

  /** Lets go of unstored bytes every reader passed; the upstream waits while the slowest is too far behind. */
  #pace(): void {
    if (this.#fileEnd === undefined) return
    const slowest = this.#positions.size > 0 ? Math.min(...this.#positions.values()) : 0
    while (this.#unstored.length > 0 && this.#unstored[0]!.start + this.#unstored[0]!.chunk.length <= slowest) {
      this.#unstoredBytes -= this.#unstored.shift()!.chunk.length
    }
    if (this.state !== 'filling') return
    if (this.#unstoredBytes >= UNSTORED_BYTES) this.#source.pause()
    else this.#source.resume()
  }

  #recentAt(position: number, max: number): Buffer | undefined {
    if (this.#fileEnd !== undefined && position >= this.#fileEnd) {
      for (const { start, chunk } of this.#unstored) {
        if (position < start + chunk.length) return position >= start ? chunk.subarray(position - start, Math.min(chunk.length, position - start + max)) : undefined
      }
      return undefined
    }
    for (let i = this.#recent.length - 1; i >= 0; i--) {
      const { start, chunk } = this.#recent[i]!
      if (position >= start + chunk.length) return undefined
      if (position >= start) return chunk.subarray(position - start, Math.min(chunk.length, position - start + max))
    }
    return undefined
  }

  /** Bytes readers may have: all of them once verified, one short of what is written until then. */
  get readable(): number {
    return this.state === 'verified' ? this.#written : Math.max(0, this.#written - 1)
  }

  /**
   * False once the fill is over and its descriptor closed (read the published object instead), or
   * once its bytes are no longer stored (fetch the blob anew).
   */
  get open(): boolean {
    return this.#readFd >= 0 && this.#fileEnd === undefined
  }

  get written(): number {
    return this.#written
  }

  /** A stream of the blob from its first byte, that follows the fetch; fails when the fill fails. */
  reader(): Readable {
    const id = this.#nextReader++
    this.#positions.set(id, 0)
    let released = false
    return new FileBody({
      fd: this.#readFd,
      available: () => this.readable,
      state: () => (this.state === 'failed' ? (this.error ?? new Error('blob fetch failed')) : this.state === 'verified' ? 'done' : undefined),
      wait: (next) => this.once('progress', next),
      recent: (position, max) => {
        this.#positions.set(id, position)
        this.#pace()
        return this.#recentAt(position, max)
      },
      release: () => {
        if (released) return
        released = true
        this.#positions.delete(id)
        this.#pace()
        this.#release()
      },
    })
  }

  /** The read descriptor closes once the store is done with the fill and its last reader is gone. */
  #release(): void {
    if (!this.#finished || this.#positions.size > 0 || this.#readFd < 0) return
    const fd = this.#readFd
    this.#readFd = -1
    this.#recent.length = 0
    this.#recentBytes = 0
    closeFd(fd, () => {})
    // Unstored and nobody left to read it: the fetch has no one to serve.
    if (this.#fileEnd !== undefined && this.state === 'filling') {
      this.#source.destroy()
      this.state = 'failed'
      this.error = new Error('blob fetch abandoned: not stored, and no reader left')
    }
    this.#unstored.length = 0
    this.#unstoredBytes = 0
  }

  /** Called by the store once the spool file is published (or abandoned): no new readers after this. */
  finished(): void {
    this.#finished = true
    this.#release()
  }
}

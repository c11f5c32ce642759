// One upstream fetch of a blob into the store, read by every client that asks meanwhile.
// Threat: a blob whose bytes do not match its digest must never be published, and no client may
// receive a complete wrong blob. The bytes go to a spool file while they are hashed; readers
// follow the spool file at their own pace (a slow client never slows the fetch or the others) but
// never past its last byte until the digest is confirmed: on a mismatch they are cut one byte
// short, and the spool file is discarded.
import { createHash, type Hash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createWriteStream, close as closeFd, fsync, openSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import { DigestMismatchError } from '../pull/verifying-stream.ts'
import { FileBody } from './file-body.ts'

/** How much of what a fill wrote last it keeps in memory for readers that keep up. */
const RECENT_BYTES = 8 * 1024 * 1024

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
  #readers = 0
  #settled = false
  #finished = false
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
    const out = createWriteStream(spoolPath, { fd: writeFd, highWaterMark: 4 * 1024 * 1024 })
    const hash: Hash = createHash(digest.slice(0, digest.indexOf(':')))
    this.done = new Promise<void>((resolve, reject) => {
      let received = 0
      let ended = false
      const fail = (err: Error) => {
        if (this.#settled) return
        this.#settled = true
        // After verification only publishing fails: readers still get the checked bytes (by descriptor).
        if (this.state !== 'verified') {
          this.state = 'failed'
          this.error = err
        }
        source.destroy()
        out.destroy()
        rm(spoolPath, { force: true }).catch(() => {})
        this.emit('progress')
        reject(err)
      }
      // Verified once every byte is hashed and written: readers may have the last byte then. The
      // fsync only makes the file durable for publishing, and need not hold the clients up.
      const verify = () => {
        if (this.#settled || !ended || this.#written !== received) return
        const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`
        if (actual !== digest) return fail(new DigestMismatchError(`blob bytes hash to ${actual}, not ${digest}`))
        if (size !== undefined && this.#written !== size) return fail(new Error(`upstream announced ${size} bytes for ${digest} and sent ${this.#written}`))
        this.state = 'verified'
        this.emit('progress')
        fsync(writeFd, (err) => {
          if (err) return fail(err)
          out.end()
        })
      }
      source.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        received += chunk.length
        const ok = out.write(chunk, (err) => {
          if (err) return
          this.#remember(this.#written, chunk)
          this.#written += chunk.length
          this.emit('progress')
          verify()
        })
        if (!ok) source.pause()
      })
      out.on('drain', () => source.resume())
      source.once('error', fail)
      out.once('error', fail)
      source.once('end', () => {
        ended = true
        verify()
      })
      out.once('finish', () => {
        if (this.#settled) return
        this.#settled = true
        resolve()
      })
    })
    // Nobody need listen to `done` for a failure to be handled.
    this.done.catch(() => {})
  }

  /** Keeps the last RECENT_BYTES written in memory, for readers that keep up (see FileSource.recent). */
  #remember(start: number, chunk: Buffer): void {
    this.#recent.push({ start, chunk })
    this.#recentBytes += chunk.length
    while (this.#recentBytes - this.#recent[0]!.chunk.length >= RECENT_BYTES) this.#recentBytes -= this.#recent.shift()!.chunk.length
  }

  #recentAt(position: number, max: number): Buffer | undefined {
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

  /** False once the fill is over and its descriptor closed: read the published object instead. */
  get open(): boolean {
    return this.#readFd >= 0
  }

  get written(): number {
    return this.#written
  }

  /** A stream of the blob from its first byte, that follows the fetch; fails when the fill fails. */
  reader(): Readable {
    this.#readers++
    let released = false
    return new FileBody({
      fd: this.#readFd,
      available: () => this.readable,
      state: () => (this.state === 'failed' ? (this.error ?? new Error('blob fetch failed')) : this.state === 'verified' ? 'done' : undefined),
      wait: (next) => this.once('progress', next),
      recent: (position, max) => this.#recentAt(position, max),
      release: () => {
        if (released) return
        released = true
        this.#readers--
        this.#release()
      },
    })
  }

  /** The read descriptor closes once the store is done with the fill and its last reader is gone. */
  #release(): void {
    if (!this.#finished || this.#readers > 0 || this.#readFd < 0) return
    const fd = this.#readFd
    this.#readFd = -1
    this.#recent.length = 0
    this.#recentBytes = 0
    closeFd(fd, () => {})
  }

  /** Called by the store once the spool file is published (or abandoned): no new readers after this. */
  finished(): void {
    this.#finished = true
    this.#release()
  }
}

// One upstream fetch of a blob into the store, read by every client that asks meanwhile.
// Threat: a blob whose bytes do not match its digest must never be published, and no client may
// receive a complete wrong blob. The bytes go to a spool file while they are hashed; readers
// follow the spool file at their own pace (a slow client never slows the fetch or the others) but
// never past its last byte until the digest is confirmed: on a mismatch they are cut one byte
// short, and the spool file is discarded.
import { createHash, type Hash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createWriteStream, read as readFd, close as closeFd, openSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { DigestMismatchError } from '../pull/verifying-stream.ts'

const READ_CHUNK = 1024 * 1024

export type FillState = 'filling' | 'verified' | 'failed'

export class Fill extends EventEmitter {
  readonly digest: string
  readonly spoolPath: string
  /** The size the upstream announced, if it did. */
  readonly size: number | undefined
  state: FillState = 'filling'
  error: Error | undefined
  #written = 0
  #readFd: number
  #readers = 0
  #settled = false
  #finished = false
  readonly done: Promise<void>

  /**
   * Starts copying `source` into `spoolPath` at once. `done` resolves when the digest is confirmed
   * and the file is on disk (fsynced), and rejects on any failure (the spool file is removed then).
   */
  constructor(digest: string, spoolPath: string, source: Readable, size: number | undefined) {
    super()
    this.setMaxListeners(0)
    this.digest = digest
    this.spoolPath = spoolPath
    this.size = size
    // Both descriptors now (a failure throws here, before any reader exists).
    const out = createWriteStream(spoolPath, { fd: openSync(spoolPath, 'wx'), flush: true, highWaterMark: 1024 * 1024 })
    // Readers share one descriptor and read by position; opened now, so the spool file can be
    // renamed or unlinked by publishing while they are still reading it.
    this.#readFd = openSync(spoolPath, 'r')
    const hash: Hash = createHash(digest.slice(0, digest.indexOf(':')))
    this.done = new Promise<void>((resolve, reject) => {
      const fail = (err: Error) => {
        if (this.#settled) return
        this.#settled = true
        this.state = 'failed'
        this.error = err
        source.destroy()
        out.destroy()
        rm(spoolPath, { force: true }).catch(() => {})
        this.emit('progress')
        reject(err)
      }
      source.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        const ok = out.write(chunk, (err) => {
          if (err) return
          this.#written += chunk.length
          this.emit('progress')
        })
        if (!ok) source.pause()
      })
      out.on('drain', () => source.resume())
      source.once('error', fail)
      out.once('error', fail)
      source.once('end', () => {
        const actual = `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`
        if (actual !== digest) return fail(new DigestMismatchError(`blob bytes hash to ${actual}, not ${digest}`))
        out.end()
      })
      out.once('finish', () => {
        if (this.#settled) return
        if (size !== undefined && this.#written !== size) return fail(new Error(`upstream announced ${size} bytes for ${digest} and sent ${this.#written}`))
        this.#settled = true
        this.state = 'verified'
        this.emit('progress')
        resolve()
      })
    })
    // Nobody need listen to `done` for a failure to be handled.
    this.done.catch(() => {})
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
    let position = 0
    let released = false
    const release = () => {
      if (released) return
      released = true
      this.#readers--
      this.#release()
    }
    // Arrow functions keep `this` (the fill) inside the stream's own methods.
    const failed = () => (this.state === 'failed' ? (this.error ?? new Error('blob fetch failed')) : undefined)
    const verified = () => this.state === 'verified'
    const readable = () => this.readable
    const onProgress = (next: () => void) => this.once('progress', next)
    const readAt = (buffer: Buffer, position: number, done: (err: Error | null, n: number) => void) => readFd(this.#readFd, buffer, 0, buffer.length, position, done)
    // One read in flight at a time: Node may call read() again before a positional read returns.
    let busy = false
    const stream = new Readable({
      highWaterMark: READ_CHUNK,
      read() {
        if (busy) return
        busy = true
        const pump = (): void => {
          const error = failed()
          if (error) return void stream.destroy(error)
          const available = readable() - position
          if (available <= 0) {
            if (verified()) {
              busy = false
              stream.push(null)
              return
            }
            onProgress(pump)
            return
          }
          const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, available))
          readAt(buffer, position, (err, n) => {
            if (err) return void stream.destroy(err)
            position += n
            if (stream.push(n === buffer.length ? buffer : buffer.subarray(0, n))) pump()
            else busy = false
          })
        }
        pump()
      },
      destroy(err, callback) {
        release()
        callback(err)
      },
    })
    stream.once('end', release)
    return stream
  }

  /** The read descriptor closes once the store is done with the fill and its last reader is gone. */
  #release(): void {
    if (!this.#finished || this.#readers > 0 || this.#readFd < 0) return
    const fd = this.#readFd
    this.#readFd = -1
    closeFd(fd, () => {})
  }

  /** Called by the store once the spool file is published (or abandoned): no new readers after this. */
  finished(): void {
    this.#finished = true
    this.#release()
  }
}

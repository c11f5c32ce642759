// A blob body read by position from a local file: a stored blob, or the spool file a fill is still
// writing. It is a Readable for anyone, and sends itself straight into a client's response with a
// few reused buffers (no allocation per chunk, no stream stage between the file and the socket,
// which on a blob was most of the proxy's CPU).
// Threat: as verifyingStream's. With a digest to check, one chunk is always held back until the
// whole body hashed to it, so a wrong file is cut short and never served whole; a body that follows
// a fill never reads past what the fill has released; any failure cuts the client's connection.
import { read as readFd, type BigIntStats } from 'node:fs'
import { Readable, type Writable } from 'node:stream'
import { hasherFor } from '../oci/digest.ts'
import { DigestMismatchError, type PumpOptions } from '../pull/verifying-stream.ts'

/** Bytes per read; a send keeps at most SEND_BUFFERS of them (reading, held, being written). */
export const READ_CHUNK = 1024 * 1024
const SEND_BUFFERS = 3
/** The longest a send waits for a whole chunk of a blob still arriving before it sends what there is. */
const BATCH_MS = 10

/** Where a body's bytes come from, and how far it may read. */
export interface FileSource {
  /** An open descriptor; positional reads only, so several bodies may share it. */
  readonly fd: number
  /** The file position up to which bytes may be read now. */
  available(): number
  /** undefined while more bytes may come; 'done' once available() is final; the error that ended the source. */
  state(): undefined | 'done' | Error
  /** Calls `next` once, when available() or state() may have changed. */
  wait(next: () => void): void
  /**
   * Bytes from `position` (at most `max`) still held in memory, if the source keeps what it
   * wrote last (a fill does): a send that keeps up takes them from there, not from the file.
   */
  recent?(position: number, max: number): Buffer | undefined
  /** Called once when the body is done with the descriptor. */
  release(): void
}

/**
 * Identifies a file's bytes as far as its metadata can: any write to it, and any change of its
 * times, changes its ctime; a file replaced by another has another inode.
 */
export function fileFingerprint(stat: BigIntStats): string {
  return `${stat.dev}:${stat.ino}:${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}`
}

export class FileBody extends Readable {
  readonly #source: FileSource
  #position: number
  /** Position after the last byte of this body (a range's end + 1), or undefined: to the end of the source. */
  readonly #end: number | undefined
  #busy = false
  #sending = false
  #released = false
  /** When a send started waiting for a whole chunk to arrive (see #batching). */
  #batchSince: number | undefined

  /** For a stored file: what the file was when it was opened (see fileFingerprint). */
  readonly file: { size: number; fingerprint: string } | undefined

  constructor(source: FileSource, start = 0, end?: number, file?: { size: number; fingerprint: string }) {
    super({ highWaterMark: READ_CHUNK })
    this.file = file
    this.#source = source
    this.#position = start
    this.#end = end
    this.once('end', () => this.#release())
  }

  /** How many bytes may be read now, undefined when the body is over, or an error. */
  #available(): number | undefined | Error {
    const state = this.#source.state()
    if (state instanceof Error) return state
    const limit = this.#end === undefined ? this.#source.available() : Math.min(this.#end, this.#source.available())
    const n = limit - this.#position
    if (n > 0) return n
    if (this.#end !== undefined && this.#position >= this.#end) return undefined
    if (state !== 'done') return 0
    // A body with a known end whose file is shorter (truncated) is cut, never ended cleanly short.
    return this.#end === undefined ? undefined : new Error('the file ended before its expected size')
  }

  override _read(): void {
    // One read in flight at a time: Node may call _read again before a positional read returns.
    if (this.#busy || this.#sending) return
    this.#busy = true
    const pump = (): void => {
      const available = this.#available()
      if (available instanceof Error) return void this.destroy(available)
      if (available === undefined) {
        this.#busy = false
        this.push(null)
        return
      }
      if (available === 0) return this.#source.wait(pump)
      const recent = this.#source.recent?.(this.#position, Math.min(READ_CHUNK, available))
      if (recent) {
        this.#position += recent.length
        if (this.push(recent)) return pump()
        this.#busy = false
        return
      }
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, available))
      readFd(this.#source.fd, buffer, 0, buffer.length, this.#position, (err, n) => {
        if (this.destroyed) return
        if (err) return void this.destroy(err)
        if (n === 0) return void this.destroy(new Error('the file ended before its expected size'))
        this.#position += n
        if (this.push(n === buffer.length ? buffer : buffer.subarray(0, n))) pump()
        else this.#busy = false
      })
    }
    pump()
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#release()
    callback(err)
  }

  /**
   * While a fill is still arriving, a send waits a moment for a whole chunk rather than reading and
   * writing each few kilobytes as they land (a syscall pair and a wake-up per network read).
   */
  #batching(): boolean {
    if (this.#source.state() !== undefined) return false
    const now = performance.now()
    this.#batchSince ??= now
    if (now - this.#batchSince < BATCH_MS) return true
    this.#batchSince = undefined
    return false
  }

  /** Waits for the source, or at most until the batch deadline. */
  #wait(next: () => void): void {
    let called = false
    const once = () => {
      if (called) return
      called = true
      clearTimeout(timer)
      next()
    }
    const timer = this.#batchSince === undefined ? undefined : setTimeout(once, BATCH_MS)
    this.#source.wait(once)
  }

  #release(): void {
    if (this.#released) return
    this.#released = true
    this.#source.release()
  }

  /**
   * Sends the body into `out` (a client's response) instead of being read: at most SEND_BUFFERS
   * buffers, each reused once the socket took its bytes. The same promise as pumpVerified: hashed
   * against `options.digest` with the last chunk held back, any failure destroys both sides.
   */
  sendTo(out: Writable, options: PumpOptions): void {
    if (this.#sending || this.#busy) throw new Error('FileBody.sendTo: the body is already being read')
    this.#sending = true
    const hash = options.digest ? hasherFor(options.digest) : undefined
    const free: Buffer[] = []
    let allocated = 0
    /** The chunk held back until the digest is confirmed, and the pool buffer it lies in. */
    let held: { chunk: Buffer; buffer: Buffer | undefined } | undefined
    /** Bytes of the source's memory handed to the socket and not yet taken by it. */
    let lent = 0
    let sent = 0
    let reading = false
    let waiting = false
    let ended = false
    let settled = false
    const settle = (error: Error | null) => {
      if (settled) return
      settled = true
      if (error) out.destroy()
      this.destroy()
      options.done(sent, error)
    }
    /** Writes a chunk; `buffer` is the pool buffer it lies in (none: the source's memory). */
    const write = (chunk: Buffer, buffer: Buffer | undefined) => {
      sent += chunk.length
      if (!buffer) lent += chunk.length
      out.write(chunk, (err) => {
        if (err || settled) return
        if (buffer) free.push(buffer)
        else lent -= chunk.length
        pump()
      })
    }
    const take = (chunk: Buffer, buffer: Buffer | undefined) => {
      this.#position += chunk.length
      if (!hash) return write(chunk, buffer)
      hash.update(chunk)
      // Hold this chunk back; the previous one may go.
      const previous = held
      held = { chunk, buffer }
      if (previous) write(previous.chunk, previous.buffer)
    }
    const finish = () => {
      ended = true
      if (hash) {
        const actual = `${options.digest!.slice(0, options.digest!.indexOf(':'))}:${hash.digest('hex')}`
        if (actual !== options.digest) {
          options.onMismatch?.(actual)
          return settle(new DigestMismatchError(`blob bytes hash to ${actual}, not ${options.digest}`))
        }
      }
      if (held) write(held.chunk, held.buffer)
      held = undefined
      out.end()
    }
    const pump = (): void => {
      if (settled || reading || waiting || ended) return
      let available = this.#available()
      // What a fill still holds in memory goes out from there, as it lands (bounded by READ_CHUNK lent at a time).
      for (let recent; typeof available === 'number' && available > 0 && lent < READ_CHUNK && (recent = this.#source.recent?.(this.#position, available));) {
        take(recent, undefined)
        available = this.#available()
      }
      if (lent >= READ_CHUNK) return
      if (available instanceof Error) return settle(available)
      if (available === undefined) return finish()
      if (available === 0 || (available < READ_CHUNK && this.#batching())) {
        waiting = true
        return this.#wait(() => {
          waiting = false
          pump()
        })
      }
      this.#batchSince = undefined
      let buffer = free.pop()
      if (!buffer) {
        if (allocated >= SEND_BUFFERS) return
        allocated++
        buffer = Buffer.allocUnsafe(READ_CHUNK)
      }
      reading = true
      const target = buffer
      readFd(this.#source.fd, target, 0, Math.min(target.length, available), this.#position, (err, n) => {
        reading = false
        if (settled) return
        if (err) return settle(err)
        if (n === 0) return settle(new Error('the file ended before its expected size'))
        take(n === target.length ? target : target.subarray(0, n), target)
        pump()
      })
    }
    out.once('error', (err) => settle(err))
    out.once('close', () => settle((out as Writable & { writableFinished: boolean }).writableFinished ? null : new Error('client went away')))
    // A client that left while the blob was being opened: its 'close' has been and gone.
    if (out.destroyed) return settle(new Error('client went away'))
    pump()
  }
}

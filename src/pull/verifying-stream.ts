// Streams a blob while hashing it, holding back the last chunk until the digest is confirmed:
// on a mismatch the stream errors before the final bytes, so the client never holds a complete,
// wrong blob (its connection is aborted instead).
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream'
import { hasherFor } from '../oci/digest.ts'
import { codedError } from '../errors.ts'

export class DigestMismatchError extends codedError('DIGEST_MISMATCH', 'DigestMismatchError') {}

export function verifyingStream(digest: string, onMismatch?: (actual: string) => void): Transform {
  const hash = hasherFor(digest)
  const algorithm = digest.slice(0, digest.indexOf(':'))
  let held: Buffer | undefined
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk)
      const previous = held
      held = chunk
      callback(null, previous)
    },
    flush(callback: TransformCallback) {
      const actual = `${algorithm}:${hash.digest('hex')}`
      if (actual !== digest) {
        onMismatch?.(actual)
        callback(new DigestMismatchError(`blob bytes hash to ${actual}, not ${digest}`))
        return
      }
      callback(null, held)
    },
  })
}

/** A body that sends itself (a file read by position into reused buffers): see FileBody. */
interface Sendable extends Readable {
  sendTo(outgoing: Writable, options: PumpOptions): void
}

function isSendable(source: Readable): source is Sendable {
  return typeof (source as Partial<Sendable>).sendTo === 'function'
}

export interface PumpOptions {
  /** Hash the bytes against this digest, holding back the last chunk until it is confirmed. */
  digest?: string
  onMismatch?: (actual: string) => void
  /** Called once: bytes written, and the error that cut the answer short, if any. */
  done: (bytes: number, error: Error | null) => void
}

/**
 * Copies `source` into a client's response with backpressure (pause until `drain`), hashing on
 * the way: the same promise as `verifyingStream` without a stream stage in between, which on a
 * blob is a third of the proxy's CPU. Any failure — upstream error, digest mismatch, client gone —
 * destroys both sides, so the client's connection is cut, never ended cleanly.
 */
export function pumpVerified(source: Readable, outgoing: Writable, options: PumpOptions): void {
  if (isSendable(source)) return source.sendTo(outgoing, options)
  const hash = options.digest ? hasherFor(options.digest) : undefined
  let held: Buffer | undefined
  let sent = 0
  let settled = false
  const settle = (error: Error | null) => {
    if (settled) return
    settled = true
    if (error) {
      source.destroy()
      outgoing.destroy()
    }
    options.done(sent, error)
  }
  const write = (chunk: Buffer) => {
    sent += chunk.length
    if (!outgoing.write(chunk)) source.pause()
  }
  source.on('data', (chunk: Buffer) => {
    if (!hash) return write(chunk)
    hash.update(chunk)
    const previous = held
    held = chunk
    if (previous) write(previous)
  })
  outgoing.on('drain', () => source.resume())
  source.once('end', () => {
    if (hash) {
      const actual = `${options.digest!.slice(0, options.digest!.indexOf(':'))}:${hash.digest('hex')}`
      if (actual !== options.digest) {
        options.onMismatch?.(actual)
        return settle(new DigestMismatchError(`blob bytes hash to ${actual}, not ${options.digest}`))
      }
      if (held) write(held)
    }
    outgoing.end()
  })
  source.once('error', (err) => settle(err))
  outgoing.once('error', (err) => settle(err))
  outgoing.once('close', () => settle((outgoing as Writable & { writableFinished: boolean }).writableFinished ? null : new Error('client went away')))
}

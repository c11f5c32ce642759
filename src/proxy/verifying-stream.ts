// Streams a blob while hashing it, holding back the last chunk until the digest is confirmed:
// on a mismatch the stream errors before the final bytes, so the client never holds a complete,
// wrong blob (its connection is aborted instead).
import { Transform, type TransformCallback } from 'node:stream'
import { hasherFor } from '../oci/digest.ts'

export class DigestMismatchError extends Error {
  override name = 'DigestMismatchError'
}

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

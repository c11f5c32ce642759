import type { Readable } from 'node:stream'
import { RegistryError } from '../errors.ts'

/** Reads a whole body, refusing (and destroying the stream) once it exceeds `maxBytes`. */
export async function readLimited(body: Readable, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length
      if (total > maxBytes) {
        throw new RegistryError('UPSTREAM_ERROR', `${what} is larger than the ${maxBytes}-byte limit`, {
          detail: { code: 'LIMIT_EXCEEDED', limit: maxBytes },
        })
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    abandon(body)
    throw err
  }
  return Buffer.concat(chunks, total)
}

/**
 * Drops a body we will not read. undici answers destroy() with an 'error' event
 * (RequestAbortedError); without a listener that would be an uncaught exception.
 */
export function abandon(body: Readable): void {
  body.on('error', () => {})
  body.destroy()
}

/** Drains and discards a body so the connection can be reused (bounded: a huge error body is cut off). */
export async function discard(body: Readable): Promise<void> {
  try {
    await readLimited(body, 64 * 1024, 'error body')
  } catch {
    abandon(body)
  }
}

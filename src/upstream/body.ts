// Reading upstream bodies under bounds: size and whole-body deadlines on what we keep, a short
// deadline on what we throw away. Threat: an upstream that sends too much, or drips a byte at a time.
import type { Readable } from 'node:stream'
import { LimitExceededError, RegistryError } from '../errors.ts'

/** How long a body we mean to throw away may take: it only keeps the connection reusable. */
const DISCARD_DEADLINE_MS = 1_000

/**
 * Reads a whole body, refusing (and destroying the stream) once it exceeds `maxBytes` or, with
 * `deadlineMs`, once reading it has taken that long. The deadline is for the whole body: undici's
 * bodyTimeout only bounds the pause between two chunks, which an upstream dripping a byte at a
 * time never exceeds (slowloris).
 */
export async function readLimited(body: Readable, maxBytes: number, what: string, options: { deadlineMs?: number } = {}): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  const { deadlineMs } = options
  const deadline =
    deadlineMs === undefined ? undefined : setTimeout(() => body.destroy(new RegistryError('UPSTREAM_TIMEOUT', `${what} took longer than ${deadlineMs} ms to arrive`)), deadlineMs)
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length
      if (total > maxBytes) {
        throw new LimitExceededError(`${what} is larger than the ${maxBytes}-byte limit`, maxBytes)
      }
      chunks.push(chunk as Buffer)
    }
  } catch (err) {
    abandon(body)
    throw err
  } finally {
    clearTimeout(deadline)
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
    await readLimited(body, 64 * 1024, 'error body', { deadlineMs: DISCARD_DEADLINE_MS })
  } catch {
    abandon(body)
  }
}

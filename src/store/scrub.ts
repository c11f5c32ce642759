// The scrub: re-hashes every blob file of a filesystem store at a bounded rate, a pass at start-up
// and one a day after, and remembers which files (by fingerprint) hashed right, so that reads of
// those files need not hash them again.
// Threat: bit rot or a person editing a stored file. An edit changes the file's fingerprint (its
// ctime at least), so the next read hashes the file again and cuts it short when it is wrong;
// rot that leaves the metadata alone is found by the next pass, and the file removed (to be
// fetched again). A file is served unhashed only after it hashed right in this process.
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../telemetry/logger.ts'
import { fileFingerprint, READ_CHUNK } from './file-body.ts'

/** A full pass starts this long after the previous one started (the first at start-up). */
const PASS_EVERY_MS = 24 * 3_600_000

export interface ScrubOptions {
  /** The filesystem store's root: blob keys are paths below it. */
  root: string
  /** Bytes per second the scrub may read and hash. */
  rate: number
  logger: Logger
  /** The blob keys stored now (read at the start of each pass). */
  keys: () => string[]
  /** A file that does not hash to its digest (and is still the file that was hashed). */
  corrupt: (digest: string) => Promise<void>
  /** Bytes read and hashed, after each file (for a metric that moves during a long pass). */
  scrubbed?: (bytes: number) => void
  /** After each whole pass. */
  passDone?: () => void
}

export class Scrubber {
  readonly #options: ScrubOptions
  /** Key → fingerprint of the file as it was when it last hashed right. */
  readonly #checked = new Map<string, string>()
  readonly #stop = new AbortController()
  #running: Promise<void> | undefined

  constructor(options: ScrubOptions) {
    this.#options = options
  }

  /** Whether a file, as it was opened (its fingerprint), hashed right in this process. */
  isChecked(key: string, fingerprint: string): boolean {
    return this.#checked.get(key) === fingerprint
  }

  checked(key: string, fingerprint: string): void {
    this.#checked.set(key, fingerprint)
  }

  forget(key: string): void {
    this.#checked.delete(key)
  }

  /** The fingerprint of a stored file now, or undefined when it is gone. */
  async fingerprint(key: string): Promise<string | undefined> {
    const handle = await open(join(this.#options.root, key), 'r').catch(() => undefined)
    if (!handle) return undefined
    try {
      return fileFingerprint(await handle.stat({ bigint: true }))
    } finally {
      await handle.close()
    }
  }

  start(): void {
    this.#running ??= this.#loop().catch((err: unknown) => {
      if (!this.#stop.signal.aborted) this.#options.logger.error({ err: (err as Error).message }, 'content store scrub stopped')
    })
  }

  async close(): Promise<void> {
    this.#stop.abort()
    await this.#running
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal
    while (!signal.aborted) {
      const started = Date.now()
      await this.pass()
      await sleep(Math.max(0, started + PASS_EVERY_MS - Date.now()), undefined, { signal, ref: false })
    }
  }

  /** One pass over every stored blob, at the configured rate. */
  async pass(): Promise<{ objects: number; bytes: number; corrupt: number }> {
    const signal = this.#stop.signal
    const buffer = Buffer.allocUnsafe(READ_CHUNK)
    const began = performance.now()
    let bytes = 0
    let objects = 0
    let corrupt = 0
    for (const key of this.#options.keys()) {
      if (signal.aborted) break
      const digest = key.slice('blobs/'.length).replace('/', ':')
      const algorithm = digest.slice(0, digest.indexOf(':'))
      if (algorithm !== 'sha256' && algorithm !== 'sha512') continue
      const handle = await open(join(this.#options.root, key), 'r').catch(() => undefined)
      if (!handle) continue
      try {
        const fingerprint = fileFingerprint(await handle.stat({ bigint: true }))
        const hash = createHash(algorithm)
        const before = bytes
        for (let position = 0; ;) {
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, position)
          if (bytesRead === 0) break
          hash.update(buffer.subarray(0, bytesRead))
          position += bytesRead
          bytes += bytesRead
          // The rate bounds the whole pass: sleep until these bytes are due.
          const due = began + (bytes / this.#options.rate) * 1000 - performance.now()
          if (due > 1) await sleep(due, undefined, { signal, ref: false })
        }
        objects++
        this.#options.scrubbed?.(bytes - before)
        if (`${algorithm}:${hash.digest('hex')}` === digest) {
          this.checked(key, fingerprint)
        } else if ((await this.fingerprint(key)) === fingerprint) {
          // Still the file that was hashed (not one published anew meanwhile): remove it.
          corrupt++
          this.forget(key)
          await this.#options.corrupt(digest)
        }
      } finally {
        await handle.close()
      }
    }
    if (!signal.aborted) {
      this.#options.logger.info({ objects, bytes, corrupt, seconds: Math.round((performance.now() - began) / 1000) }, 'content store scrub: pass done')
      this.#options.passDone?.()
    }
    return { objects, bytes, corrupt }
  }
}

// The storage driver: bytes under keys, nothing more (distribution's StorageDriver). The content
// store above it decides what a key means and checks every digest; a driver only promises that a
// published object holds exactly the bytes it was given, and that nothing half-written is ever
// visible under its key: incoming blobs are spooled to a local file first, and published whole.
import type { Readable } from 'node:stream'

export interface StoredObject {
  key: string
  size: number
  /** Milliseconds since the epoch of the last read or write, where the backend can tell. */
  lastUsed?: number
}

export interface StorageDriver {
  readonly kind: 'filesystem' | 's3'
  /** A local directory for spool files: a blob being fetched is written here, then published. */
  readonly spoolDir: string
  stat(key: string): Promise<StoredObject | undefined>
  /** A published object, whole or a byte range (start and end inclusive), or undefined when absent. */
  read(key: string, range?: { start: number; end: number }): Promise<Readable | undefined>
  /** Small objects (manifests, tag records) read whole; undefined when absent or over maxBytes. */
  readBytes(key: string, maxBytes: number): Promise<Buffer | undefined>
  /** Publishes small bytes atomically under the key. */
  writeBytes(key: string, bytes: Buffer): Promise<void>
  /**
   * Publishes a complete local file (in spoolDir) atomically under the key, and consumes it: the
   * file is gone afterwards, whether it was published or not. Resolves once the object is durable.
   */
  publishFile(key: string, file: string): Promise<void>
  delete(key: string): Promise<void>
  /** Every published object below a prefix ('' for all). */
  list(prefix: string): AsyncIterable<StoredObject>
  /** Marks a read for LRU eviction (cheap, best effort, may be a no-op). */
  touch(key: string): void
  /** Removes what a crash left behind (spool files, temporaries); called once at start. */
  sweep(): Promise<void>
  close(): Promise<void>
}

/** A key as the store names objects: `/`-separated, no `.`/`..` segments, no empty segments. */
export function isSafeKey(key: string): boolean {
  return key.length > 0 && key.length <= 1024 && !key.startsWith('/') && key.split('/').every((s) => s !== '' && s !== '.' && s !== '..' && !s.includes('\0'))
}

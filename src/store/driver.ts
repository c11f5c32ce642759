// The storage driver: bytes under keys, nothing more (distribution's StorageDriver). The content
// store above it decides what a key means and checks every digest; a driver only promises that a
// published object holds exactly what was written to it, and that nothing half-written is ever
// visible under its key (write to a temporary object, then publish atomically).
import type { Readable, Writable } from 'node:stream'

export interface StoredObject {
  key: string
  size: number
  /** Milliseconds since the epoch of the last read or write, where the backend can tell. */
  lastUsed?: number
}

export interface ObjectWriter {
  /** Where the bytes go; nothing is visible under the key until commit() resolves. */
  readonly stream: Writable
  /** Publish atomically under the key. Resolves once it is durable (fsync, or S3's answer). */
  commit(): Promise<void>
  /** Discard what was written; the key keeps whatever it held before (or nothing). */
  abort(): Promise<void>
}

export interface StorageDriver {
  readonly kind: 'filesystem' | 's3' | 'memory'
  stat(key: string): Promise<StoredObject | undefined>
  /** A published object, whole or a byte range (start and end inclusive), or undefined when absent. */
  read(key: string, range?: { start: number; end: number }): Promise<Readable | undefined>
  /** Small objects (manifests, tag records) read whole; undefined when absent or over maxBytes. */
  readBytes(key: string, maxBytes: number): Promise<Buffer | undefined>
  write(key: string): Promise<ObjectWriter>
  writeBytes(key: string, bytes: Buffer): Promise<void>
  delete(key: string): Promise<void>
  /** Every published object below a prefix ('' for all). */
  list(prefix: string): AsyncIterable<StoredObject>
  /** Marks a read for LRU eviction (cheap, best effort). */
  touch(key: string): void
  /** Removes temporaries a crash left behind; called once at start. */
  sweep(): Promise<void>
  close(): Promise<void>
}

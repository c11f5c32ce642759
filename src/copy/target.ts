// Where a copy writes: one repository of a registry, or one OCI image layout (directory or archive).
import type { Readable } from 'node:stream'
import type { FetchedManifest } from '../upstream/types.ts'

export interface ManifestToWrite {
  /** Exactly the bytes that were verified (never re-serialised). */
  bytes: Buffer
  digest: string
  mediaType: string
}

export interface Target {
  /** e.g. `127.0.0.1:5001/org/app` or `oci-archive:/tmp/app.tar`, for messages. */
  readonly description: string
  /** A layout keeps only what index.json lists; a registry keeps every manifest it is given. */
  readonly listsRoots: boolean
  /** Whether the destination has this blob already (it is then not copied). */
  hasBlob(digest: string): Promise<boolean>
  /**
   * Writes one blob of `size` bytes. `open` returns its bytes as a stream; it may be called again
   * when a write must be retried from the start (e.g. after re-authentication). The bytes are
   * checked against `digest` on the way: a mismatch fails the write and leaves nothing behind.
   */
  putBlob(digest: string, size: number, open: () => Promise<Readable>, onBytes?: (n: number) => void): Promise<void>
  /** The digest stored under a tag, or the digest itself when that manifest is present; `undefined` otherwise. */
  manifestDigest(reference: string): Promise<string | undefined>
  getManifest(reference: string): Promise<FetchedManifest | undefined>
  /**
   * Stores a manifest under `tag` (or by digest alone). `root` marks what a layout must list in
   * its index.json to keep it (a registry keeps everything it is given).
   * Resolves whether the destination indexed the manifest's `subject` itself (OCI 1.1 referrers API).
   */
  putManifest(manifest: ManifestToWrite, options?: { tag?: string; root?: boolean }): Promise<{ referrersApi: boolean }>
  /** Makes what was written visible (a layout writes index.json, an archive is packed). */
  commit(): Promise<void>
  /** Releases everything; after a failed copy, a half-written archive is not left behind. */
  close(): Promise<void>
}

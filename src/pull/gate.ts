// The verdict step in the manifest path: every manifest passes through a ManifestGate before a
// single byte of it is served.
import type { Manifest } from '../oci/manifest.ts'
import type { Vouchers } from './content-index.ts'

export interface GateRequest {
  upstream: string
  repository: string
  /** The digest of exactly the bytes that will be served. */
  digest: string
  mediaType: string
  manifest: Manifest
  bytes: Buffer
  /** What the client asked for: a tag or the digest. */
  reference: string
  /** Who asked (for the audit line): the authenticated client's name and the remote address. */
  client?: RequestClient
  /**
   * Where the bytes came from (for the audit line): fetched from the upstream now, the mirror's
   * store, or the in-process manifest cache (fetched earlier by this process).
   */
  source?: 'upstream' | 'store' | 'cache'
}

export interface RequestClient {
  name?: string
  address?: string
}

export type GateDecision =
  | {
      allow: true
      warnings: string[]
      /** What this manifest vouches for (blobs, child manifests); default: everything it references. */
      vouch?: Vouchers
    }
  | { allow: false; message: string; detail: unknown }

export interface ManifestGate {
  evaluate(request: GateRequest): Promise<GateDecision>
}

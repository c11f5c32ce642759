// What one copy job asks for and what it ended as: the record the progress lines, the report and
// the exit code are made from (kept apart from the copier so they need not import it).
import type { SignerIdentity, VerdictResult } from '../policy/types.ts'
import type { CopyErrorCode } from './errors.ts'
import type { WriteStats } from './write.ts'

export interface CopyJob {
  source: string
  destination: string
  /** For a layout source: the `registry/repository` policies are matched against (default: the destination's). */
  as?: string
}

export type CopyStatus = 'copied' | 'refused' | 'failed'

export interface CopyResult {
  source: string
  destination: string
  status: CopyStatus
  /** The digest verified and copied (the image's, or the index's for a multi-arch image). */
  digest?: string
  mediaType?: string
  /** The image name policies were matched against. */
  image?: string
  verdict?: { result: VerdictResult; reasons: string[]; signers: SignerIdentity[]; policies: { name: string; result: string }[] }
  stats: WriteStats
  /** Attached artifacts that were not copied, and why. */
  notes: string[]
  warnings: string[]
  error?: { code: CopyErrorCode | string; message: string }
  durationMs: number
}

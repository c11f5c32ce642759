// Parsing manifests received from upstream: hostile input, so shapes and media types are checked.
import { z } from 'zod'
import { isDigest } from './digest.ts'
import { INDEX_TYPES, MANIFEST_TYPES } from './media-types.ts'
import { codedError } from '../errors.ts'

const descriptor = z.looseObject({
  mediaType: z.string().max(255),
  digest: z.string().refine(isDigest, 'invalid digest'),
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).optional(),
  artifactType: z.string().max(255).optional(),
  platform: z.looseObject({ os: z.string(), architecture: z.string(), variant: z.string().optional() }).optional(),
})
export type Descriptor = z.infer<typeof descriptor>

const imageManifest = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  config: descriptor,
  layers: z.array(descriptor).max(10_000),
  subject: descriptor.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
})

const imageIndex = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().optional(),
  manifests: z.array(descriptor).max(10_000),
  subject: descriptor.optional(),
  annotations: z.record(z.string(), z.string()).optional(),
})

export type ImageManifest = z.infer<typeof imageManifest> & { kind: 'manifest' }
export type ImageIndex = z.infer<typeof imageIndex> & { kind: 'index' }
export type Manifest = ImageManifest | ImageIndex

export class ManifestError extends codedError('MANIFEST_INVALID', 'ManifestError') {}

/**
 * Parses manifest bytes served under `mediaType`. Refuses anything that is not a schema-2
 * manifest or index, and a document whose own `mediaType` contradicts the Content-Type
 * (a client and the proxy must never read the same bytes as two different things).
 */
export function parseManifest(bytes: Uint8Array, mediaType: string): Manifest {
  if (!MANIFEST_TYPES.has(mediaType)) throw new ManifestError(`unsupported manifest media type "${mediaType.slice(0, 100)}"`)
  let doc: unknown
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw new ManifestError('manifest is not valid JSON')
  }
  const declared = (doc as { mediaType?: unknown } | null)?.mediaType
  if (declared !== undefined && declared !== mediaType) {
    throw new ManifestError(`manifest declares media type "${String(declared).slice(0, 100)}" but was served as "${mediaType}"`)
  }
  if (INDEX_TYPES.has(mediaType)) {
    const r = imageIndex.safeParse(doc)
    if (!r.success) throw new ManifestError(`malformed image index: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`)
    return { ...r.data, kind: 'index' }
  }
  const r = imageManifest.safeParse(doc)
  if (!r.success) throw new ManifestError(`malformed image manifest: ${r.error.issues[0]?.path.join('.')} ${r.error.issues[0]?.message}`)
  return { ...r.data, kind: 'manifest' }
}

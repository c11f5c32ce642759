// The shape of a Notation (Notary Project) signature manifest, as notation writes it: artifactType
// (or, in the older image-manifest form, config media type) `application/vnd.cncf.notary.signature`
// and exactly one JWS or COSE envelope layer. Threat: a runnable image posing as a signature to pass
// unverified, or to be read as one; anything else is not a Notation signature.
import type { Manifest } from './manifest.ts'
import { MediaType } from './media-types.ts'

const NOTATION_LAYER_TYPES: ReadonlySet<string> = new Set([MediaType.notationJws, MediaType.notationCose])

/** A Notation signature manifest: notary artifact type and a single JWS or COSE envelope. */
export function isNotationSignature(manifest: Manifest): boolean {
  if (manifest.kind !== 'manifest') return false
  const type = manifest.artifactType ?? manifest.config.mediaType
  if (type !== MediaType.notationSignature) return false
  if (manifest.artifactType !== undefined && manifest.config.mediaType !== MediaType.ociEmpty && manifest.config.mediaType !== MediaType.notationSignature) return false
  return manifest.layers.length === 1 && NOTATION_LAYER_TYPES.has(manifest.layers[0]!.mediaType)
}

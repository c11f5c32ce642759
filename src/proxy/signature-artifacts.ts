// Signature and attestation artifacts pass through unverified, so `cosign verify` and
// policy-controller keep working through the proxy. What counts is decided by content, not by
// tag: every layer must be a signature, attestation, bundle or SBOM document, which no container
// runtime can unpack as a filesystem. A runnable image wearing a `.sig` tag is still an image.
import type { Manifest } from '../oci/manifest.ts'
import { MediaType } from '../oci/media-types.ts'

const ARTIFACT_LAYER_TYPES: ReadonlySet<string> = new Set([
  MediaType.cosignSimpleSigning,
  MediaType.dsseEnvelope,
  MediaType.inTotoLayer,
  'application/vnd.dev.sigstore.bundle+json',
  'application/vnd.dev.sigstore.bundle.v0.1+json',
  'application/vnd.dev.sigstore.bundle.v0.2+json',
  MediaType.sigstoreBundleV03,
  'application/spdx+json',
  'text/spdx',
  'application/vnd.cyclonedx+json',
  'application/vnd.cyclonedx+xml',
  'application/vnd.syft+json',
  'application/vnd.oci.empty.v1+json',
])

/** Tags cosign and the referrers fallback use: `sha256-<hex>`, `.sig`, `.att`, `.sbom`. */
const ARTIFACT_TAG = /^sha256-[a-f0-9]{64}(\.(sig|att|sbom))?$/

export function isSignatureArtifact(manifest: Manifest): boolean {
  if (manifest.kind !== 'manifest') return false
  if (manifest.layers.length === 0) return false
  return manifest.layers.every((l) => ARTIFACT_LAYER_TYPES.has(l.mediaType))
}

/**
 * The referrers fallback index (tag `sha256-<hex>`) lists signature artifacts; it is metadata,
 * and each artifact it lists is judged on its own when fetched.
 */
export function isReferrersFallbackIndex(manifest: Manifest, reference: string): boolean {
  return manifest.kind === 'index' && ARTIFACT_TAG.test(reference) && manifest.manifests.every((d) => d.artifactType !== undefined)
}

// Signature and attestation artifacts pass through unverified, so `cosign verify` and
// policy-controller keep working through the proxy. What counts is decided by content, not by
// tag: every layer must be a signature, attestation, bundle or SBOM document, which no container
// runtime can unpack as a filesystem. A runnable image wearing a `.sig` tag is still an image.
// Notation (Notary Project) signatures count too, but only in the shape notation writes them:
// artifactType (or, in the older image-manifest form, config media type)
// `application/vnd.cncf.notary.signature` and exactly one JWS or COSE envelope layer. A JWS or
// COSE layer in any other manifest is judged as an image.
// Other artifacts (SBOMs, vulnerability reports, other tools' attestations) pass when they name a
// `subject` the proxy serves and nothing in them is runnable: no image config, no filesystem layer
// (see isSubjectArtifact; the gate checks the subject).
import type { Manifest } from '../oci/manifest.ts'
import { MediaType } from '../oci/media-types.ts'
import { isNotationSignature } from '../oci/notation-signature.ts'

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
  if (isNotationSignature(manifest)) return true
  return manifest.layers.every((l) => ARTIFACT_LAYER_TYPES.has(l.mediaType))
}

/** Filesystem layers a runtime unpacks: OCI and Docker layer types, compressed or not, foreign included. */
const RUNNABLE_LAYER = /^application\/vnd\.(oci\.image\.layer\.|docker\.image\.rootfs\.)/
const IMAGE_CONFIG_TYPES: ReadonlySet<string> = new Set([MediaType.ociImageConfig, MediaType.dockerImageConfig])

/**
 * An artifact about another manifest (OCI 1.1 `subject`) that no runtime can run: its config is no
 * image config and none of its layers is a filesystem layer. It passes when its subject is served.
 */
export function isSubjectArtifact(manifest: Manifest): boolean {
  if (manifest.kind !== 'manifest' || manifest.subject === undefined) return false
  if (IMAGE_CONFIG_TYPES.has(manifest.config.mediaType)) return false
  return manifest.layers.every((l) => !RUNNABLE_LAYER.test(l.mediaType))
}

/**
 * The referrers fallback index (tag `sha256-<hex>`) lists signature artifacts; it is metadata,
 * and each artifact it lists is judged on its own when fetched.
 */
export function isReferrersFallbackIndex(manifest: Manifest, reference: string): boolean {
  return manifest.kind === 'index' && ARTIFACT_TAG.test(reference) && manifest.manifests.every((d) => d.artifactType !== undefined)
}

// Media types and header names the proxy reasons about, in one place.

export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifestV1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  ociImageConfig: 'application/vnd.oci.image.config.v1+json',
  dockerImageConfig: 'application/vnd.docker.container.image.v1+json',
  cosignSimpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  dsseEnvelope: 'application/vnd.dsse.envelope.v1+json',
  sigstoreBundlePrefix: 'application/vnd.dev.sigstore.bundle',
  sigstoreBundleV03: 'application/vnd.dev.sigstore.bundle.v0.3+json',
  inTotoLayer: 'application/vnd.in-toto+json',
  cosignArtifactConfig: 'application/vnd.dev.cosign.artifact.sig.v1+json',
  notationSignature: 'application/vnd.cncf.notary.signature',
  notationJws: 'application/jose+json',
  notationCose: 'application/cose',
} as const

/** What we ask upstream for when the client sent no Accept of its own. */
export const DEFAULT_MANIFEST_ACCEPT = [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest]

export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList])
export const MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest])

export const Header = {
  digest: 'docker-content-digest',
  apiVersion: 'docker-distribution-api-version',
  warning: 'warning',
} as const

/** Strips parameters (`; charset=...`) and case from a Content-Type value. */
export function baseMediaType(value: string | null | undefined): string {
  return (value ?? '').split(';')[0]!.trim().toLowerCase()
}

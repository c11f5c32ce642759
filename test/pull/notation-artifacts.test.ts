// Notation signature manifests are recognised as signature artifacts only in the shape notation
// writes them; a JWS or COSE layer cannot turn a runnable image into a pass-through artifact.
import t from 'tap'
import type { Manifest } from '../../src/oci/manifest.ts'
import { isNotationSignature } from '../../src/oci/notation-signature.ts'
import { isReferrersFallbackIndex, isSignatureArtifact } from '../../src/pull/signature-artifacts.ts'

const D = (mediaType: string, n = 1) => ({ mediaType, digest: `sha256:${String(n).repeat(64).slice(0, 64)}`, size: 2 })
const EMPTY = 'application/vnd.oci.empty.v1+json'
const NOTARY = 'application/vnd.cncf.notary.signature'
const LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'

function manifest(fields: { artifactType?: string; config?: string; layers: string[] }): Manifest {
  return {
    kind: 'manifest',
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...(fields.artifactType ? { artifactType: fields.artifactType } : {}),
    config: D(fields.config ?? EMPTY),
    layers: fields.layers.map((m, i) => D(m, i + 2)),
    subject: D('application/vnd.oci.image.manifest.v1+json', 9),
  }
}

t.test('notation JWS and COSE signature manifests pass as artifacts', async (t) => {
  for (const layer of ['application/jose+json', 'application/cose']) {
    t.ok(isSignatureArtifact(manifest({ artifactType: NOTARY, layers: [layer] })), `${layer} with artifactType`)
    t.ok(isNotationSignature(manifest({ config: NOTARY, layers: [layer] })), `${layer} with notary config (image-manifest form)`)
  }
})

t.test('a runnable image cannot pose as a notation signature', async (t) => {
  t.notOk(isSignatureArtifact(manifest({ artifactType: NOTARY, layers: ['application/jose+json', LAYER] })), 'extra filesystem layer')
  t.notOk(isSignatureArtifact(manifest({ artifactType: NOTARY, layers: [LAYER] })), 'artifactType alone')
  t.notOk(isSignatureArtifact(manifest({ layers: ['application/jose+json'] })), 'JWS layer without notary type')
  t.notOk(isSignatureArtifact(manifest({ artifactType: 'application/vnd.example', layers: ['application/cose'] })), 'COSE layer, other artifactType')
  t.notOk(isSignatureArtifact(manifest({ artifactType: NOTARY, config: 'application/vnd.oci.image.config.v1+json', layers: ['application/jose+json'] })), 'runnable image config')
  t.notOk(isSignatureArtifact(manifest({ artifactType: NOTARY, layers: ['application/jose+json', 'application/cose'] })), 'two envelopes')
})

t.test('the referrers fallback index listing a notation signature is metadata', async (t) => {
  const index: Manifest = {
    kind: 'index',
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ ...D('application/vnd.oci.image.manifest.v1+json'), artifactType: NOTARY }],
  }
  t.ok(isReferrersFallbackIndex(index, `sha256-${'a'.repeat(64)}`))
})

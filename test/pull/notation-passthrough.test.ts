// Notation signature artifacts pass through a real proxy in front of a real docker-registry, as
// notation pushes them: a manifest with `subject`, artifactType application/vnd.cncf.notary.signature,
// one JWS or COSE envelope layer, and the referrers fallback index under `sha256-<hex>`. A runnable
// image wearing the notary artifactType, listed in that same index, is still refused with its layers.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { MediaTypes, pushBlob, pushImage, pushManifest, sha256 } from '../helpers/images.ts'
import { oneRequest as get } from '../helpers/one-request.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'notary.test'
const NOTARY = 'application/vnd.cncf.notary.signature'
const EMPTY = { mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256('{}'), size: 2 }

const registry = await startRegistry(t)
const proxy = await startProxy(t, {
  upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
  policies: [
    {
      name: 'signed',
      images: [{ glob: `${UPSTREAM}/**` }],
      authorities: [{ key: { data: generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString() } }],
    },
  ],
})

t.test('notation JWS and COSE signature manifests, their envelopes and the fallback index pass', async (t) => {
  const repo = 'app/notary'
  const img = await pushImage(registry.url, repo, 'v1', { layerSize: 2048 })
  await pushBlob(registry.url, repo, '{}')
  const entries = []
  for (const [layerType, body] of [
    ['application/jose+json', '{"payload":"e30","protected":"e30","header":{},"signature":"AA"}'],
    ['application/cose', Buffer.from('d28443a10126a0f640', 'hex')],
  ] as const) {
    const env = await pushBlob(registry.url, repo, body)
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      artifactType: NOTARY,
      config: EMPTY,
      layers: [{ mediaType: layerType, ...env }],
      subject: { mediaType: img.mediaType, digest: img.digest, size: img.size },
    }
    const pushed = await pushManifest(registry.url, repo, sha256(JSON.stringify(manifest)), manifest, MediaTypes.ociManifest)
    entries.push({ mediaType: MediaTypes.ociManifest, digest: pushed.digest, size: pushed.size, artifactType: NOTARY })
    const res = await get(`${proxy.url}/v2/${repo}/manifests/${pushed.digest}`)
    t.equal(res.status, 200, `${layerType} signature manifest passes`)
    t.equal(sha256(res.body), pushed.digest, 'with its own bytes')
    const blob = await get(`${proxy.url}/v2/${repo}/blobs/${env.digest}`)
    t.equal(blob.status, 200, `${layerType} envelope blob passes`)
  }
  const fallbackTag = img.digest.replace(':', '-')
  await pushManifest(registry.url, repo, fallbackTag, { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: entries }, MediaTypes.ociIndex)
  t.equal((await get(`${proxy.url}/v2/${repo}/manifests/${fallbackTag}`)).status, 200, 'the referrers fallback index passes as metadata')
})

t.test('a runnable image wearing the notary artifactType is refused, and its layers', async (t) => {
  const repo = 'app/disguised'
  const img = await pushImage(registry.url, repo, 'v1', { layerSize: 2048 })
  const runnable = await pushImage(registry.url, repo, undefined, { seed: 'runnable notary', layerSize: 4096 })
  const layer = runnable.layers[0]!
  const disguised = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    artifactType: NOTARY,
    config: { mediaType: MediaTypes.ociConfig, digest: runnable.configDigest, size: runnable.config.byteLength },
    layers: [{ mediaType: 'application/jose+json', digest: layer.digest, size: layer.size }],
    subject: { mediaType: img.mediaType, digest: img.digest, size: img.size },
  }
  const pushed = await pushManifest(registry.url, repo, 'disguised', disguised, MediaTypes.ociManifest)
  t.equal((await get(`${proxy.url}/v2/${repo}/manifests/${pushed.digest}`)).status, 403, 'an image config under a notary artifactType is judged as an image')
  t.equal((await get(`${proxy.url}/v2/${repo}/blobs/${layer.digest}`)).status, 403, 'its layer is refused')
  const extra = {
    ...disguised,
    config: EMPTY,
    layers: [
      { mediaType: 'application/jose+json', digest: layer.digest, size: layer.size },
      { mediaType: MediaTypes.ociLayerTarGzip, digest: layer.digest, size: layer.size },
    ],
  }
  await pushBlob(registry.url, repo, '{}')
  const pushed2 = await pushManifest(registry.url, repo, 'extra', extra, MediaTypes.ociManifest)
  t.equal((await get(`${proxy.url}/v2/${repo}/manifests/${pushed2.digest}`)).status, 403, 'a tar layer beside the envelope is judged as an image')
  const typed = { ...disguised, config: EMPTY, layers: [{ mediaType: 'application/cose', digest: layer.digest, size: layer.size }] }
  const pushed3 = await pushManifest(registry.url, repo, 'typed', typed, MediaTypes.ociManifest)
  t.equal((await get(`${proxy.url}/v2/${repo}/manifests/${pushed3.digest}`)).status, 200, 'a notation-shaped manifest passes as metadata')
  const res = await get(`${proxy.url}/v2/${repo}/blobs/${layer.digest}`)
  t.equal(res.status, 403, 'but a gzip layer typed as COSE is not served: it is not a COSE_Sign1')
  t.match(res.body.toString(), /not a text document or a COSE_Sign1 envelope/)
})

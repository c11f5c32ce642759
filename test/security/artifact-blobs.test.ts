// A manifest that merely claims to be a signature artifact passes through, but it must not become
// a way to fetch the layers of a refused image: its blobs are served only as small text documents.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { pushBlob, pushImage, pushManifest } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json'
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

t.test('blobs listed only by a signature artifact', async (t) => {
  const registry = await startRegistry(t)
  const keys = await generateKeyPair(await tempDir(t))
  const refused = await pushImage(registry.url, 'org/app', 'refused', { seed: 'refused', layers: 2, layerSize: 512 * 1024 })
  const signed = await pushImage(registry.url, 'org/app', 'signed', { seed: 'signed' })
  await signImage(`${registry.host}/org/app@${signed.digest}`, keys.privateKeyPath)
  const textDoc = await pushBlob(registry.url, 'org/app', '{"critical":{"type":"note"}}')
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const proxy = await startProxy(t, {
    upstreams: [{ name: 'registry.test', url: registry.url, default: true }],
    policies: [{ name: 'org', images: [{ glob: 'registry.test/org/**' }], authorities: [{ key: { data: keys.publicKeyPem } }, { key: { data: otherKey } }] }],
  })
  const get = (path: string) => request(`${proxy.url}/v2/org/app/${path}`)

  const before = await get('manifests/refused')
  t.equal(before.statusCode, 403, 'the image itself is refused')
  await before.body.dump()

  // A forged "signature": its config is the refused image's first layer, its layers claim the
  // simple-signing type (with a lie about the size) for the second layer and for a real text document.
  const [layer0, layer1] = refused.layers
  const forged = await pushManifest(
    registry.url,
    'org/app',
    'sha256-0000000000000000000000000000000000000000000000000000000000000000.sig',
    {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: layer0!.digest, size: 10 },
      layers: [
        { mediaType: SIMPLE_SIGNING, digest: layer1!.digest, size: 10 },
        { mediaType: SIMPLE_SIGNING, digest: textDoc.digest, size: textDoc.size },
      ],
    },
    OCI_MANIFEST,
  )
  const artifact = await get(`manifests/${forged.digest}`)
  t.equal(artifact.statusCode, 200, 'the artifact manifest passes through (cosign verify needs them)')
  await artifact.body.dump()

  for (const layer of [layer0!, layer1!]) {
    const res = await get(`blobs/${layer.digest}`)
    t.equal(res.statusCode, 403, `refused layer ${layer.digest.slice(0, 19)} stays inside`)
    t.match(await res.body.json(), { errors: [{ code: 'DENIED', message: /listed only by a signature artifact, and it is not a text document/ }] })
  }
  const doc = await get(`blobs/${textDoc.digest}`)
  t.equal(doc.statusCode, 200, 'a text document an artifact lists is served')
  t.equal(await doc.body.text(), '{"critical":{"type":"note"}}')

  const signedSig = await get(`manifests/sha256-${signed.digest.slice(7)}.sig`)
  t.equal(signedSig.statusCode, 200)
  const sig = (await signedSig.body.json()) as { layers: { digest: string }[] }
  const payload = await get(`blobs/${sig.layers[0]!.digest}`)
  t.equal(payload.statusCode, 200, "a real signature's payload is served")
  t.match(await payload.body.json(), { critical: { type: 'cosign container image signature' } })
})

// Artifacts other than cosign's (an SPDX SBOM typed by artifactType, a SARIF report typed by its
// config, an artifact about an artifact) pass through trustpull when their `subject` is an image
// the proxy serves, and their blobs are served as the documents they are. An artifact about a
// refused image is judged as an image (refused), and so is anything runnable wearing an
// artifactType and a subject: an image config or a filesystem layer makes it an image.
import t from 'tap'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, MediaTypes, pushBlob, pushImage, pushManifest, sha256, type PushedImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const EMPTY = 'application/vnd.oci.empty.v1+json'

t.test('artifacts with a subject', async (t) => {
  const registry = await startRegistry(t)
  const key = await generateKeyPair(await tempDir(t))
  const app = await pushImage(registry.url, 'library/app', '1')
  const plain = await pushImage(registry.url, 'library/app', 'unsigned', { seed: 'unsigned' })
  await signImage(`${registry.host}/library/app@${app.digest}`, key.privateKeyPath)

  const empty = await pushBlob(registry.url, 'library/app', '{}')
  const spdxText = JSON.stringify({ spdxVersion: 'SPDX-2.3', name: 'app' })
  const spdx = await pushBlob(registry.url, 'library/app', spdxText)
  const sarif = await pushBlob(registry.url, 'library/app', JSON.stringify({ version: '2.1.0', runs: [] }))
  const subjectOf = (i: { digest: string; size: number }) => ({ mediaType: MediaTypes.ociManifest, digest: i.digest, size: i.size })
  const push = async (manifest: object) => {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociManifest, ...manifest }))
    return pushManifest(registry.url, 'library/app', sha256(bytes), bytes, MediaTypes.ociManifest)
  }
  const emptyConfig = { mediaType: EMPTY, digest: empty.digest, size: empty.size }
  const spdxLayer = { mediaType: 'application/spdx+json', digest: spdx.digest, size: spdx.size }

  const sbom = await push({ artifactType: 'application/spdx+json', config: emptyConfig, layers: [spdxLayer], subject: subjectOf(app) })
  const report = await push({ config: { mediaType: 'application/sarif+json', digest: sarif.digest, size: sarif.size }, layers: [], subject: subjectOf(app) })
  const aboutSbom = await push({
    artifactType: 'application/vnd.example.review',
    config: emptyConfig,
    layers: [{ mediaType: 'application/vnd.example.review+json', digest: sarif.digest, size: sarif.size }],
    subject: subjectOf(sbom),
  })
  // Typed as a document no signature rule knows (an SPDX layer would pass as a signature-artifact document on its own).
  const reviewLayer = { mediaType: 'application/vnd.example.review+json', digest: sarif.digest, size: sarif.size }
  const aboutRefused = await push({ artifactType: 'application/vnd.example.review', config: emptyConfig, layers: [reviewLayer], subject: subjectOf(plain) })
  const layer = app.layers[0]!
  const posingConfig = await push({
    artifactType: 'application/spdx+json',
    config: { mediaType: MediaTypes.ociConfig, digest: app.configDigest, size: app.config.length },
    layers: [reviewLayer],
    subject: subjectOf(app),
  })
  const posingLayer = await push({
    artifactType: 'application/spdx+json',
    config: emptyConfig,
    layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    subject: subjectOf(plain),
  })

  // What oras writes on a registry without the referrers API: the fallback tag's index.
  const listed = [
    [sbom, 'application/spdx+json'],
    [report, 'application/sarif+json'],
    [posingConfig, 'application/spdx+json'],
  ] as const
  await pushManifest(
    registry.url,
    'library/app',
    app.digest.replace(':', '-'),
    {
      schemaVersion: 2,
      mediaType: MediaTypes.ociIndex,
      manifests: listed.map(([m, artifactType]) => ({ mediaType: MediaTypes.ociManifest, digest: m.digest, size: m.size, artifactType })),
    },
    MediaTypes.ociIndex,
  )

  const proxy = await startProxy(
    t,
    hubConfig(registry.url, { policies: [{ name: 'library', images: [{ glob: 'library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }] }),
  )
  const manifest = async (digest: string) => {
    const res = await request(`${proxy.url}/v2/library/app/manifests/${digest}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    return { status: res.statusCode, body: await res.body.text() }
  }
  const blob = async (digest: string) => {
    const res = await request(`${proxy.url}/v2/library/app/blobs/${digest}`)
    return { status: res.statusCode, body: await res.body.text() }
  }
  const verdictFor = (digest: string) => proxy.logs.find((l) => l.audit === 'verdict' && l.digest === digest)

  t.test('an SBOM typed by artifactType, about a served image: served unverified, its document too', async (t) => {
    t.equal((await manifest(sbom.digest)).status, 200)
    t.equal(verdictFor(sbom.digest), undefined, 'no policy evaluation of the artifact itself')
    const doc = await blob(spdx.digest)
    t.equal(doc.status, 200)
    t.equal(doc.body, spdxText)
  })

  t.test('a SARIF report typed by its config media type: served', async (t) => {
    t.equal((await manifest(report.digest)).status, 200)
  })

  t.test('an artifact about that SBOM (subject followed): served', async (t) => {
    t.equal((await manifest(aboutSbom.digest)).status, 200)
  })

  t.test('listed by the referrers endpoint (from the fallback tag) with their types', async (t) => {
    const res = await request(`${proxy.url}/v2/library/app/referrers/${app.digest}`)
    const index = (await res.body.json()) as { manifests: { digest: string; artifactType: string }[] }
    const types = Object.fromEntries(index.manifests.map((m) => [m.digest, m.artifactType]))
    t.equal(types[sbom.digest], 'application/spdx+json')
    t.equal(types[report.digest], 'application/sarif+json')
    t.equal(types[posingConfig.digest], 'application/spdx+json', 'listing is not serving: the posing one is listed, and refused when fetched')
  })

  for (const [what, posing, subject] of [
    ['an artifact about a refused image is judged as an image: refused', aboutRefused, plain],
    ['artifactType and a subject on an image config: an image, refused', posingConfig, app],
    ['artifactType and a subject on a filesystem layer: an image, refused', posingLayer, plain],
  ] as [string, { digest: string }, PushedImage][]) {
    t.test(what, async (t) => {
      const r = await manifest(posing.digest)
      t.equal(r.status, 403)
      t.match(r.body, 'no signatures found')
      t.equal(verdictFor(posing.digest)?.result, 'deny', `judged by policy (subject ${subject.tag})`)
    })
  }

  t.test('a chain of artifacts is followed 4 deep: the 5th above the image is judged as an image', async (t) => {
    const chain: { digest: string; size: number }[] = []
    let subject: { digest: string; size: number } = app
    for (let i = 0; i < 5; i++) {
      subject = await push({
        artifactType: 'application/vnd.example.review',
        config: emptyConfig,
        layers: [reviewLayer],
        subject: subjectOf(subject),
        annotations: { n: String(i) },
      })
      chain.push(subject)
    }
    const fifth = await manifest(chain[4]!.digest)
    t.equal(fifth.status, 403, 'the 5th: its subjects are not followed to the image')
    t.match(fifth.body, 'no signatures found')
    t.equal((await manifest(chain[3]!.digest)).status, 200, 'the 4th is served')
  })

  t.test('the layer of the refused image is not reachable through the posing artifact', async (t) => {
    t.equal((await manifest(plain.digest)).status, 403)
    t.equal((await blob(plain.layers[0]!.digest)).status, 403)
  })
})

// GET /v2/<name>/referrers/<digest> through trustpull, for an upstream without the referrers API
// (real docker-registry 2.8, whose signatures real cosign 2.5 stores in the fallback tag and the
// `.sig` tag) and for one with it (docker-registry behind the test fault proxy, which answers
// /referrers/ itself: no registry with the API installs here). Real cosign `verify
// --experimental-oci11`, `verify-attestation --new-bundle-format` and `tree` run through trustpull.
// Hostile listings (the subject listing itself, 10,000 entries, entries about another digest) are
// bounded; a refused subject and an unconfigured upstream get no listing at all.
import type { SerializedBundle } from '@sigstore/bundle'
import t from 'tap'
import { request } from 'undici'
import { attest, cosign, generateKeyPair, signImage, verifyAttestation, verifyImage, writeSlsaPredicate } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { pushBundleReferrer } from '../helpers/mock-sigstore.ts'
import { getManifest, MediaTypes, pushBlob, pushImage, pushManifest, sha256, type Descriptor } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const COSIGN_SIG = 'application/vnd.dev.cosign.artifact.sig.v1+json'
const BUNDLE_V03 = 'application/vnd.dev.sigstore.bundle.v0.3+json'
const EMPTY = 'application/vnd.oci.empty.v1+json'

interface Index {
  schemaVersion: number
  mediaType: string
  manifests: Descriptor[]
}

async function referrers(base: string, repo: string, digest: string, artifactType?: string) {
  const query = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : ''
  const res = await request(`${base}/v2/${repo}/referrers/${digest}${query}`)
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, body: res.statusCode === 200 ? (JSON.parse(text) as Index) : undefined, text }
}

t.test('referrers for an upstream without the API: built from the fallback tag and the cosign tags', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const key = await generateKeyPair(dir)
  const image = await pushImage(registry.url, 'library/app', '1')
  const legacy = await pushImage(registry.url, 'library/legacy', '1')
  const unsigned = await pushImage(registry.url, 'library/plain', '1')
  const at = (repo: string, digest: string) => `${registry.host}/${repo}@${digest}`
  // Signature as a referrer (fallback tag, typed correctly by cosign), attestation as a v0.3
  // bundle referrer (fallback entry typed oci.empty by cosign), and a legacy .sig elsewhere.
  await signImage(at('library/app', image.digest), key.privateKeyPath, { referrersMode: 'oci-1-1' })
  await attest(at('library/app', image.digest), key.privateKeyPath, await writeSlsaPredicate(dir, 'https://builder.test/b'), 'slsaprovenance', { newBundleFormat: true })
  await signImage(at('library/legacy', legacy.digest), key.privateKeyPath)

  const fallbackTag = image.digest.replace(':', '-')
  const fallback = JSON.parse(Buffer.from((await getManifest(registry.url, 'library/app', fallbackTag, MediaTypes.ociIndex)).bytes).toString()) as Index
  t.same(fallback.manifests.map((m) => m.artifactType).sort(), [COSIGN_SIG, EMPTY].sort(), 'cosign left one entry typed oci.empty in the fallback index')
  const direct = await request(`${registry.url}/v2/library/app/referrers/${image.digest}`)
  t.equal(direct.statusCode, 404, 'the registry has no referrers API')
  await direct.body.dump()

  const proxy = await startProxy(
    t,
    hubConfig(registry.url, { policies: [{ name: 'library', images: [{ glob: 'library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }] }),
  )

  t.test('an OCI index with every entry typed as the manifest it points at is', async (t) => {
    const r = await referrers(proxy.url, 'library/app', image.digest)
    t.equal(r.status, 200, r.text)
    t.equal(r.headers['content-type'], MediaTypes.ociIndex)
    t.equal(r.body?.mediaType, MediaTypes.ociIndex)
    t.equal(r.body?.schemaVersion, 2)
    const types = r.body!.manifests.map((m) => m.artifactType).sort()
    t.same(types, [COSIGN_SIG, BUNDLE_V03].sort(), "the oci.empty entry is listed under its manifest's artifactType")
    for (const m of r.body!.manifests) {
      t.equal(m.mediaType, MediaTypes.ociManifest)
      const listed = fallback.manifests.find((f) => f.digest === m.digest)
      t.ok(listed, `${m.digest} is in the fallback index`)
      t.equal(m.size, listed?.size)
    }
    t.equal(r.headers['oci-filters-applied'], undefined, 'no filter asked, none applied')
  })

  t.test("the test fixture's v0.3 bundle referrer has the layout real cosign writes (test/helpers/mock-sigstore.ts)", async (t) => {
    const real = fallback.manifests.find((m) => m.artifactType === EMPTY)!
    const realBytes = Buffer.from((await getManifest(registry.url, 'library/app', real.digest, MediaTypes.ociManifest)).bytes).toString()
    const bundleDigest = (JSON.parse(realBytes) as { layers: Descriptor[] }).layers[0]!.digest
    const bundle = JSON.parse(await (await request(`${registry.url}/v2/library/app/blobs/${bundleDigest}`)).body.text()) as SerializedBundle
    const mine = await pushBundleReferrer(registry.url, 'library/app', { mediaType: MediaTypes.ociManifest, digest: image.digest, size: image.size }, bundle)
    const mineBytes = Buffer.from((await getManifest(registry.url, 'library/app', mine, MediaTypes.ociManifest)).bytes).toString()
    // Only the bundle blob's own bytes (protojson's spacing) and the creation time may differ.
    const normal = (text: string) =>
      text.replace(/"size":\d+,"digest":"sha256:[0-9a-f]{64}"}\],"annotations"/, 'LAYER').replace(/"org.opencontainers.image.created":"[^"]+"/, 'CREATED')
    t.equal(normal(mineBytes), normal(realBytes))
    const index = JSON.parse(Buffer.from((await getManifest(registry.url, 'library/app', fallbackTag, MediaTypes.ociIndex)).bytes).toString()) as Index
    t.same(Object.keys(index.manifests.at(-1)!), Object.keys(real), 'its fallback index entry too')
    // Back as it was for the other subtests: the fixture's entry is removed from the fallback index.
    await pushManifest(registry.url, 'library/app', fallbackTag, fallback, MediaTypes.ociIndex)
  })

  t.test('the artifactType filter, and OCI-Filters-Applied', async (t) => {
    const r = await referrers(proxy.url, 'library/app', image.digest, BUNDLE_V03)
    t.equal(r.status, 200)
    t.equal(r.headers['oci-filters-applied'], 'artifactType')
    t.same(
      r.body!.manifests.map((m) => m.artifactType),
      [BUNDLE_V03],
    )
    const none = await referrers(proxy.url, 'library/app', image.digest, 'application/example')
    t.same(none.body!.manifests, [])
    t.equal(none.headers['oci-filters-applied'], 'artifactType')
  })

  t.test("a legacy .sig tag is listed too, typed by the spec's rule (its config's media type)", async (t) => {
    const r = await referrers(proxy.url, 'library/legacy', legacy.digest)
    t.equal(r.status, 200, r.text)
    t.equal(r.body!.manifests.length, 1)
    t.equal(r.body!.manifests[0]!.artifactType, MediaTypes.ociConfig)
    const sig = await request(`${registry.url}/v2/library/legacy/manifests/${legacy.digest.replace(':', '-')}.sig`, { headers: { accept: MediaTypes.ociManifest } })
    t.equal(r.body!.manifests[0]!.digest, sig.headers['docker-content-digest'])
    await sig.body.dump()
  })

  t.test('cosign verify --experimental-oci11 finds the fallback-tag signature through the referrers endpoint', async (t) => {
    const r = await verifyImage(`${proxy.host}/library/app@${image.digest}`, key.publicKeyPath, { experimentalOci11: true })
    t.ok(r.ok, 'verified', { stderr: r.stderr })
    const asked = proxy.logs.filter((l) => l.msg === 'request' && String(l.url).includes(`/referrers/${image.digest}`))
    t.ok(asked.length > 0 && asked.every((l) => l.status === 200), "cosign asked trustpull's referrers endpoint, and got a listing")
  })

  t.test('cosign verify-attestation --new-bundle-format finds the bundle through trustpull', async (t) => {
    const r = await verifyAttestation(`${proxy.host}/library/app@${image.digest}`, key.publicKeyPath, 'slsaprovenance', { newBundleFormat: true })
    t.ok(r.ok, 'verified', { stderr: r.stderr })
  })

  // cosign 2.5's `tree` has no --experimental-oci11 (later releases add it): it reads the
  // `.sig` / `.att` / `.sbom` tags only, so it is run to show it sees through trustpull exactly
  // what it sees at the registry.
  t.test('cosign tree through trustpull shows what it shows at the registry', async (t) => {
    for (const [repo, digest] of [
      ['library/legacy', legacy.digest],
      ['library/app', image.digest],
    ] as const) {
      const via = await cosign(['tree', '--allow-http-registry', `${proxy.host}/${repo}@${digest}`])
      const direct = await cosign(['tree', '--allow-http-registry', `${registry.host}/${repo}@${digest}`])
      t.equal(via.code, 0, via.stderr)
      t.equal(via.stdout.replaceAll(proxy.host, 'HOST'), direct.stdout.replaceAll(registry.host, 'HOST'), repo)
    }
    const legacyTree = await cosign(['tree', '--allow-http-registry', `${proxy.host}/library/legacy@${legacy.digest}`])
    t.match(legacyTree.stdout, `${legacy.digest.replace(':', '-')}.sig`, 'the .sig tag, through trustpull')
  })

  t.test('a subject the policy refuses gets no listing: 403, as its manifest would', async (t) => {
    const r = await referrers(proxy.url, 'library/plain', unsigned.digest)
    t.equal(r.status, 403)
    t.match(r.text, 'DENIED')
  })

  t.test('an unknown subject is 404; an unconfigured upstream is refused before anything is asked', async (t) => {
    const missing = await referrers(proxy.url, 'library/app', sha256('nothing'))
    t.equal(missing.status, 404)
    const other = await referrers(proxy.url, 'ghcr.io/org/app', image.digest)
    t.equal(other.status, 403)
    t.match(other.text, 'not an upstream of this proxy')
  })
})

t.test('referrers for an upstream with the API, and hostile listings', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/api', '1')
  const other = await pushImage(registry.url, 'library/api', '2', { seed: 'other' })
  const subject = { mediaType: MediaTypes.ociManifest, digest: image.digest, size: image.size }

  // Three artifacts pushed by digest: an SBOM with artifactType, an oci.empty-configured one
  // without, and one about another image.
  const empty = await pushBlob(registry.url, 'library/api', '{}')
  const doc = await pushBlob(registry.url, 'library/api', '{"spdxVersion":"SPDX-2.3"}')
  const artifact = (extra: Record<string, unknown>) => ({
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: EMPTY, digest: empty.digest, size: empty.size },
    layers: [{ mediaType: 'application/spdx+json', digest: doc.digest, size: doc.size }],
    ...extra,
  })
  const sbom = await pushArtifact(registry.url, 'library/api', artifact({ artifactType: 'application/spdx+json', subject, annotations: { 'org.example': 'sbom' } }))
  const untyped = await pushArtifact(registry.url, 'library/api', artifact({ subject }))
  const elsewhere = await pushArtifact(
    registry.url,
    'library/api',
    artifact({ artifactType: 'application/spdx+json', subject: { ...subject, digest: other.digest, size: other.size } }),
  )

  const entry = (a: { digest: string; size: number }, artifactType?: string) => ({
    mediaType: MediaTypes.ociManifest,
    digest: a.digest,
    size: a.size,
    ...(artifactType ? { artifactType } : {}),
  })
  let listing: object[] = []
  const front = await startFaultProxy(t, registry.url, (req) =>
    req.path.includes('/referrers/')
      ? {
          kind: 'status',
          status: 200,
          body: JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: listing }),
          headers: { 'content-type': MediaTypes.ociIndex },
        }
      : undefined,
  )
  const proxy = await startProxy(
    t,
    hubConfig(front.url, { policies: [{ name: 'open', images: [{ glob: '**' }], authorities: [{ static: { action: 'pass' } }] }], limits: { maxReferrers: 16 } }),
  )

  t.test("the upstream's own answer: its entries, each typed by its manifest", async (t) => {
    listing = [entry(sbom, 'application/spdx+json'), entry(untyped, EMPTY)]
    const r = await referrers(proxy.url, 'library/api', image.digest)
    t.equal(r.status, 200, r.text)
    t.same(
      r.body!.manifests.map((m) => [m.digest, m.artifactType]),
      [
        [sbom.digest, 'application/spdx+json'],
        [untyped.digest, EMPTY],
      ],
      "an artifact with no artifactType of its own is typed by its config (the spec's rule)",
    )
    t.same(r.body!.manifests[0]!.annotations, { 'org.example': 'sbom' }, "the manifest's annotations are carried")
    t.ok(
      front.requests.some((q) => q.path === `/v2/library/api/referrers/${image.digest}`),
      'the upstream API was asked',
    )
    t.notOk(
      front.requests.some((q) => q.path.endsWith(`/manifests/${image.digest.replace(':', '-')}`)),
      'the fallback tag was not',
    )
  })

  t.test('asked again: the listing is asked upstream again, the referrer manifests are not read again', async (t) => {
    front.clearRequests()
    const r = await referrers(proxy.url, 'library/api', image.digest)
    t.equal(r.body!.manifests.length, 2)
    t.ok(
      front.requests.some((q) => q.path.includes('/referrers/')),
      'a listing changes like a tag: asked again',
    )
    t.notOk(
      front.requests.some((q) => q.path.endsWith(`/manifests/${sbom.digest}`) || q.path.endsWith(`/manifests/${untyped.digest}`)),
      'manifests by digest are remembered',
    )
  })

  t.test('a hostile listing: the subject itself, duplicates, an entry about another image, an unknown digest', async (t) => {
    listing = [
      entry(image, 'x/cycle'),
      entry(sbom, 'lie/type'),
      entry(sbom, 'lie/type'),
      entry(elsewhere, 'application/spdx+json'),
      entry({ digest: sha256('gone'), size: 10 }, 'x/y'),
    ]
    const r = await referrers(proxy.url, 'library/api', image.digest)
    t.equal(r.status, 200, r.text)
    t.same(
      r.body!.manifests.map((m) => [m.digest, m.artifactType]),
      [[sbom.digest, 'application/spdx+json']],
      'only the real referrer, with its real type',
    )
  })

  t.test('10,000 entries: at most limits.maxReferrers read and listed, with a warning', async (t) => {
    listing = Array.from({ length: 9_999 }, (_, i) => entry({ digest: sha256(`n${i}`), size: 100 }, 'x/y'))
    listing.unshift(entry(sbom, 'application/spdx+json'))
    front.clearRequests()
    const r = await referrers(proxy.url, 'library/api', image.digest)
    t.equal(r.status, 200, r.text.slice(0, 300))
    t.same(
      r.body!.manifests.map((m) => m.digest),
      [sbom.digest],
    )
    t.match(String(r.headers.warning), 'maxReferrers')
    const reads = front.requests.filter((q) => q.path.includes('/manifests/sha256:'))
    t.ok(reads.length <= 16 + 1, `${reads.length} manifests read upstream`)
  })

  t.test('a listing that cannot be read (over 10,000 entries) is a 502, never an empty answer', async (t) => {
    listing = Array.from({ length: 10_001 }, (_, i) => entry({ digest: sha256(`m${i}`), size: 100 }, 'x/y'))
    const r = await referrers(proxy.url, 'library/api', image.digest)
    t.equal(r.status, 502)
    t.match(r.text, 'could not be listed')
  })
})

async function pushArtifact(registryUrl: string, repo: string, manifest: object) {
  const bytes = Buffer.from(JSON.stringify(manifest))
  return pushManifest(registryUrl, repo, sha256(bytes), bytes, MediaTypes.ociManifest)
}

// Attestation policies end to end: real `cosign attest --type slsaprovenance` (legacy `.att` tag and
// the `--new-bundle-format` Sigstore bundle found through the referrers fallback tag), a CEL
// condition on the SLSA builder, and what a client pulling through trustpull gets.
import t from 'tap'
import { join } from 'node:path'
import { request } from 'undici'
import { attest, generateKeyPair, signImage, writeSlsaPredicate } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, listTags, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const BUILDER = 'https://ci.example/builder@v1'
const SLSA_V02 = 'https://slsa.dev/provenance/v0.2'

interface ErrorBody {
  errors: { code: string; message: string; detail?: { reasons: string[] } }[]
}

t.test('SLSA provenance attestations with a CEL condition', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const key = await generateKeyPair(dir)
  const goodPredicate = await writeSlsaPredicate(dir, BUILDER, 'good.json')
  const badPredicate = await writeSlsaPredicate(dir, 'https://evil.example/builder@v1', 'bad.json')
  const ref = (image: PushedImage) => `${registry.host}/${image.repo}@${image.digest}`

  const good = await pushImage(registry.url, 'library/good', '1')
  const bad = await pushImage(registry.url, 'library/bad', '1')
  const missing = await pushImage(registry.url, 'library/missing', '1')
  const bundled = await pushImage(registry.url, 'library/bundled', '1')
  const bundledBad = await pushImage(registry.url, 'library/bundled-bad', '1')
  await Promise.all([
    attest(ref(good), key.privateKeyPath, goodPredicate, 'slsaprovenance'),
    attest(ref(bad), key.privateKeyPath, badPredicate, 'slsaprovenance'),
    // Signed, so the refusal can only be about the attestation.
    signImage(ref(missing), key.privateKeyPath),
    attest(ref(bundled), key.privateKeyPath, goodPredicate, 'slsaprovenance', { newBundleFormat: true }),
    attest(ref(bundledBad), key.privateKeyPath, badPredicate, 'slsaprovenance', { newBundleFormat: true }),
  ])

  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      policies: [
        {
          name: 'provenance',
          images: [{ glob: 'library/*' }],
          authorities: [
            {
              name: 'release-key',
              key: { data: key.publicKeyPem },
              attestations: [{ name: 'built-by-ci', predicateType: 'slsaprovenance', policy: { type: 'cel', data: `predicate.builder.id == "${BUILDER}"` } }],
            },
          ],
        },
      ],
    }),
  )
  const get = async (image: PushedImage) => {
    const res = await request(`${proxy.url}/v2/${image.repo}/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, digest: res.headers['docker-content-digest'], body }
  }
  const refusal = (body: Buffer) => (JSON.parse(body.toString()) as ErrorBody).errors[0]!

  t.test('a matching builder passes: skopeo pulls it', async (t) => {
    const r = await skopeoCopy(`${proxy.host}/library/good:1`, join(dir, 'good'))
    t.equal(r.code, 0, r.stderr)
    t.equal(r.digest, good.digest)
    const verdict = proxy.logs.find((l) => l.audit === 'verdict' && l.digest === good.digest)
    t.match(verdict, { result: 'allow', signers: [{ policy: 'provenance', authority: 'release-key' }] })
  })

  t.test('a different builder is denied, and the reason names the attestation and its condition', async (t) => {
    const r = await get(bad)
    t.equal(r.status, 403)
    const e = refusal(r.body)
    t.equal(e.code, 'DENIED')
    t.match(e.message, `docker.io/library/bad@${bad.digest} denied: policy "provenance": attestation "built-by-ci": none of 1 of type ${SLSA_V02} passed`)
    t.match(e.message, 'condition')
    t.match(e.detail?.reasons.join('\n'), `predicate.builder.id == "${BUILDER}"`)
  })

  t.test('a signed image without the attestation is denied', async (t) => {
    const r = await get(missing)
    t.equal(r.status, 403)
    t.match(refusal(r.body).message, `docker.io/library/missing@${missing.digest} denied: policy "provenance": attestation "built-by-ci": no attestation of type ${SLSA_V02} found`)
  })

  t.test('a --new-bundle-format attestation is found through the referrers fallback tag and verified', async (t) => {
    const r = await get(bundled)
    // The bundle is the only attestation: cosign wrote no `.att` tag, only the fallback index.
    const tags = await listTags(registry.url, 'library/bundled')
    t.same(tags.sort(), ['1', bundled.digest.replace(':', '-')], 'upstream tags: the image and its referrers fallback index')
    t.equal(r.status, 200, 'allowed', { body: r.body.toString() })
    t.equal(r.digest, bundled.digest)
  })

  t.test('...and its condition is evaluated too: a bundle from another builder is denied', async (t) => {
    const r = await get(bundledBad)
    t.equal(r.status, 403)
    t.match(refusal(r.body).message, `attestation "built-by-ci": none of 1 of type ${SLSA_V02} passed`)
    t.match(refusal(r.body).detail?.reasons.join('\n'), 'fallback-tag', 'the candidate came from the fallback tag')
  })
})

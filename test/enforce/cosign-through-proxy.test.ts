// `cosign verify` keeps working through trustpull: signature artifacts (the `.sig` tag, the
// referrers fallback index and what it lists) pass through unverified and their blobs are served.
// What passes is decided by content: a runnable image pushed under a `sha256-<hex>.sig` tag is
// an image like any other, judged by policy.
import t from 'tap'
import { request } from 'undici'
import { generateKeyPair, signImage, verifyImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, getManifest, pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

interface SimpleSigning {
  critical: { image: { 'docker-manifest-digest': string }; type: string }
}

t.test('cosign through trustpull', async (t) => {
  const registry = await startRegistry(t)
  const key = await generateKeyPair(await tempDir(t))
  const otherKey = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'library/app', '1')
  const unsigned = await pushImage(registry.url, 'library/plain', '1')
  const referrerSigned = await pushImage(registry.url, 'library/oci11', '1')
  await Promise.all([
    signImage(`${registry.host}/library/app@${signed.digest}`, key.privateKeyPath),
    signImage(`${registry.host}/library/oci11@${referrerSigned.digest}`, key.privateKeyPath, { referrersMode: 'oci-1-1' }),
  ])
  const proxy = await startProxy(
    t,
    hubConfig(registry.url, { policies: [{ name: 'library', images: [{ glob: 'library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }] }),
  )
  const requests = () => proxy.logs.filter((l) => l.msg === 'request').map((l) => ({ method: String(l.method), url: String(l.url), status: Number(l.status) }))

  t.test('cosign verify --key succeeds for a signed image, by digest and by tag', async (t) => {
    for (const ref of [`library/app@${signed.digest}`, 'library/app:1']) {
      const before = requests().length
      const r = await verifyImage(`${proxy.host}/${ref}`, key.publicKeyPath)
      t.ok(r.ok, ref, { stderr: r.stderr })
      const payloads = r.payloads as SimpleSigning[]
      t.equal(payloads.length, 1, ref)
      t.equal(payloads[0]?.critical.image['docker-manifest-digest'], signed.digest, ref)
      const seen = requests().slice(before)
      const sig = seen.find((s) => s.url.includes(`/manifests/${signed.digest.replace(':', '-')}.sig`))
      t.equal(sig?.status, 200, `${ref}: the .sig manifest passed through`)
      const blobs = seen.filter((s) => s.url.includes('/blobs/'))
      t.ok(blobs.length > 0 && blobs.every((b) => b.status === 200), `${ref}: the signature's blobs were served`)
    }
  })

  t.test('cosign verify with another key fails through the proxy, as it would at the registry', async (t) => {
    const r = await verifyImage(`${proxy.host}/library/app@${signed.digest}`, otherKey.publicKeyPath)
    t.notOk(r.ok)
    t.match(r.stderr, 'no matching signatures')
  })

  t.test('cosign verify --experimental-oci11 finds a referrers-mode signature kept in the fallback tag, through the referrers endpoint', async (t) => {
    const r = await verifyImage(`${proxy.host}/library/oci11@${referrerSigned.digest}`, key.publicKeyPath, { experimentalOci11: true })
    t.ok(r.ok, 'verified', { stderr: r.stderr })
    t.equal((r.payloads as SimpleSigning[])[0]?.critical.image['docker-manifest-digest'], referrerSigned.digest)
    const listing = requests().find((s) => s.url.endsWith(`/referrers/${referrerSigned.digest}`))
    t.equal(listing?.status, 200, 'trustpull answered the referrers API the registry lacks')
  })

  t.test('cosign verify of an unsigned image fails', async (t) => {
    const r = await verifyImage(`${proxy.host}/library/plain@${unsigned.digest}`, key.publicKeyPath)
    t.notOk(r.ok)
    t.match(r.stderr, 'no signatures found')
    const byTag = await verifyImage(`${proxy.host}/library/plain:1`, key.publicKeyPath)
    t.notOk(byTag.ok)
    t.match(byTag.stderr, 'DENIED', 'by tag, cosign cannot even resolve the refused image')
  })

  t.test('a runnable image under a sha256-<hex>.sig tag is judged as an image, not passed through', async (t) => {
    const tag = `${unsigned.digest.replace(':', '-')}.sig`
    const disguised = await pushImage(registry.url, 'library/plain', tag, { seed: 'disguised', layerSize: 8 * 1024 })
    const direct = await getManifest(registry.url, 'library/plain', tag)
    t.equal(direct.status, 200, 'the registry serves it')

    const res = await request(`${proxy.url}/v2/library/plain/manifests/${tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    t.equal(res.statusCode, 403)
    const body = (await res.body.json()) as { errors: { code: string; message: string }[] }
    t.equal(body.errors[0]?.code, 'DENIED')
    t.match(body.errors[0]?.message, `docker.io/library/plain@${disguised.digest} denied: policy "library": no signatures found`)
    const verdict = proxy.logs.find((l) => l.audit === 'verdict' && l.digest === disguised.digest)
    t.equal(verdict?.result, 'deny', 'it went through policy evaluation')

    for (const digest of [disguised.configDigest, ...disguised.layerDigests]) {
      const blob = await request(`${proxy.url}/v2/library/plain/blobs/${digest}`)
      t.equal(blob.statusCode, 403, `its blob ${digest} is refused too`)
      await blob.body.dump()
    }

    // cosign sees a `.sig` tag whose layers are no signatures: still no verified signature.
    const r = await verifyImage(`${proxy.host}/library/plain@${unsigned.digest}`, key.publicKeyPath)
    t.notOk(r.ok)
  })
})

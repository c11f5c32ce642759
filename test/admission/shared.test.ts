// The admission webhook with what the pull path has besides single images: an index with a
// signature per platform, a forged signature (valid, but over another digest), and a second
// replica sharing the verdict cache through a real redis-server.
import t from 'tap'
import { admissionReview, kubectlObject, servingCert, webhookClient } from '../helpers/admission.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { getManifest, pushImage, pushIndex, pushManifest } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const isSignatureFetch = (path: string) => /\/manifests\/sha256-[0-9a-f]{64}(\.sig|\.att)?$/.test(path) || path.includes('/referrers/')

t.test('indexes, forgeries and a second replica', async (t) => {
  const registry = await startRegistry(t)
  const front = await startFaultProxy(t, registry.url)
  const redis = await startRedis(t)
  const key = await generateKeyPair(await tempDir(t))
  const signedIndex = await pushIndex(registry.url, 'multi/signed', 'v1')
  const halfSigned = await pushIndex(registry.url, 'multi/half', 'v1')
  const genuine = await pushImage(registry.url, 'app/forged', 'genuine', { seed: 'genuine' })
  const target = await pushImage(registry.url, 'app/forged', 'target', { seed: 'target' })
  const shared = await pushImage(registry.url, 'app/shared', 'v1')
  await Promise.all([
    signImage(`${registry.host}/${signedIndex.repo}@${signedIndex.digest}`, key.privateKeyPath, { recursive: true }),
    signImage(`${registry.host}/${halfSigned.repo}@${halfSigned.digest}`, key.privateKeyPath),
    signImage(`${registry.host}/${genuine.repo}@${genuine.digest}`, key.privateKeyPath),
    signImage(`${registry.host}/${shared.repo}@${shared.digest}`, key.privateKeyPath),
  ])
  // The forgery: the genuine image's signature, valid under the key, filed under the target's tag.
  const sigTag = (digest: string) => `${digest.replace(':', '-')}.sig`
  const sig = await getManifest(registry.url, genuine.repo, sigTag(genuine.digest))
  await pushManifest(registry.url, target.repo, sigTag(target.digest), sig.bytes, sig.mediaType!)

  const cert = await servingCert(t)
  const config = () =>
    hubConfig(front.url, {
      cache: { url: redis.url },
      admission: { listen: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key } },
      policies: [
        { name: 'multi', images: [{ glob: 'multi/**' }], requirePlatformSignatures: true, authorities: [{ key: { data: key.publicKeyPem } }] },
        { name: 'apps', images: [{ glob: 'app/**' }], authorities: [{ key: { data: key.publicKeyPem } }] },
      ],
    })
  const a = await startProxy(t, config())
  const b = await startProxy(t, config())
  const postA = webhookClient(t, a.running.admissionUrl!, cert.pem)
  const postB = webhookClient(t, b.running.admissionUrl!, cert.pem)

  t.test('an index signed per platform is allowed and pinned to the index digest; one signed only as a whole is refused', async (t) => {
    const r = await postA('validate', admissionReview(await kubectlObject('deployment', 'multi', 'multi/signed:v1')).review)
    t.equal(r.body.response?.allowed, true)
    const m = await postA('mutate', admissionReview(await kubectlObject('deployment', 'multi', 'multi/signed:v1')).review)
    t.same(m.patch, [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: `multi/signed:v1@${signedIndex.digest}` }])
    const half = await postA('validate', admissionReview(await kubectlObject('deployment', 'half', 'multi/half:v1')).review)
    t.equal(half.body.response?.allowed, false)
    t.match(half.body.response?.status?.message, `image multi/half:v1: docker.io/multi/half@${halfSigned.digest} denied`)
    const pinned = await postA('mutate', admissionReview(await kubectlObject('deployment', 'half', 'multi/half:v1')).review)
    t.equal(pinned.patch, undefined, 'a refused index is not pinned')
  })

  t.test('a valid signature over another digest is refused', async (t) => {
    const r = await postA('validate', admissionReview(await kubectlObject('deployment', 'forged', 'app/forged:target')).review)
    t.equal(r.body.response?.allowed, false)
    t.match(r.body.response?.status?.message, `image app/forged:target: docker.io/app/forged@${target.digest} denied: policy "apps"`)
    const ok = await postA('validate', admissionReview(await kubectlObject('deployment', 'genuine', 'app/forged:genuine')).review)
    t.equal(ok.body.response?.allowed, true, 'the image it was made for passes')
  })

  t.test('a verdict reached on one replica is a hit on the other through Redis', async (t) => {
    const { review } = admissionReview(await kubectlObject('deployment', 'shared', 'app/shared:v1'))
    front.clearRequests()
    t.equal((await postA('validate', review)).body.response?.allowed, true)
    t.ok(
      front.requests.some((r) => isSignatureFetch(r.path)),
      'replica A verified',
    )
    front.clearRequests()
    t.equal((await postB('validate', review)).body.response?.allowed, true)
    t.equal(front.requests.filter((r) => isSignatureFetch(r.path)).length, 0, 'replica B fetched no signature')
    t.match(b.logs.filter((l) => l.audit === 'verdict' && l.digest === shared.digest).at(-1), { cached: true, result: 'allow' })
  })
})

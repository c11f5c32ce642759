// Signatures and attestations written by the real cosign 2.5 to a real docker-registry (no
// referrers API), discovered through the real upstream client and verified by the engine.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { discoverSignatures } from '../../src/signatures/discover.ts'
import { createRegistryClient } from '../../src/upstream/client.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { keyHint, parsePublicKey } from '../../src/verify/keys.ts'
import { publicGoodTrustRoot } from '../../src/verify/trust-root.ts'
import type { AuthorityMaterial, Candidate } from '../../src/verify/types.ts'
import { attest, generateKeyPair, signImage, writeSlsaPredicate } from '../helpers/cosign.ts'
import { getManifest, pushBlob, pushImage, pushIndex, pushManifest } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const BUILDER = 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main'

t.test('cosign 2.5 signatures and attestations are discovered and verified', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const keys = await generateKeyPair(dir)
  const otherKeys = await generateKeyPair(await tempDir(t))
  const predicate = await writeSlsaPredicate(dir, BUILDER)

  const config = parseConfig({ upstreams: [{ name: 'local', url: registry.url, default: true }] })
  const client = createRegistryClient(config.upstreams[0]!, { timeouts: config.timeouts, limits: config.limits })
  t.teardown(() => client.close())
  const discover = (repo: string, digest: string) => discoverSignatures(client, repo, digest, config.limits)

  const key = parsePublicKey(keys.publicKeyPem)
  const byKey: AuthorityMaterial = { type: 'key', keys: [{ key }], requireTlog: false }
  const byOtherKey: AuthorityMaterial = { type: 'key', keys: [{ key: parsePublicKey(otherKeys.publicKeyPem) }], requireTlog: false }

  const app = await pushImage(registry.url, 'demo/app', 'v1')
  await signImage(`${registry.host}/demo/app@${app.digest}`, keys.privateKeyPath)
  await attest(`${registry.host}/demo/app@${app.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance')

  t.test('key-based sign (.sig) and attest (.att)', async (t) => {
    const found = await discover('demo/app', app.digest)
    t.same(found.problems, [])
    const signature = found.candidates.find((c) => c.kind === 'signature')!
    const attestation = found.candidates.find((c) => c.kind === 'attestation')!
    t.match(signature, { format: 'cosign-legacy', origin: { repository: 'demo/app', via: 'sig-tag' } })
    t.match(attestation, { format: 'cosign-legacy', origin: { via: 'att-tag' }, predicateType: 'https://slsa.dev/provenance/v0.2' })
    t.equal(found.candidates.length, 2)

    const ok = verifyCandidate(signature, byKey, app.digest, { expectedRepository: 'demo/app' })
    t.equal(ok.ok, true, ok.reason ?? 'verified')
    t.same(ok.signer, { keyHint: keyHint(key) })
    t.same(ok.checks, ['bundle', 'simple-signing payload', 'docker-manifest-digest', 'docker-reference', 'signature (key)', 'tlog (not required)'])

    const wrongKey = verifyCandidate(signature, byOtherKey, app.digest)
    t.match(wrongKey, { ok: false, code: 'UNTRUSTED_KEY' })
    const otherRepository = verifyCandidate(signature, byKey, app.digest, { expectedRepository: 'demo/other' })
    t.match(otherRepository, { ok: false, code: 'REFERENCE_MISMATCH' })
    const tlogRequired = verifyCandidate(signature, { ...byKey, requireTlog: true, trustRoot: publicGoodTrustRoot() }, app.digest)
    t.match(tlogRequired, { ok: false, code: 'TLOG_MISSING' }, '--tlog-upload=false signatures fail an authority that wants Rekor')

    const att = verifyCandidate(attestation, byKey, app.digest)
    t.equal(att.ok, true, att.reason ?? 'verified')
    t.equal(att.predicateType, 'https://slsa.dev/provenance/v0.2')
    t.match(att.statement, { _type: 'https://in-toto.io/Statement/v0.1', predicate: { builder: { id: BUILDER } } })
    t.match(att.statement!.subject, [{ name: `${registry.host}/demo/app`, digest: { sha256: app.digest.slice(7) } }])
    t.match(verifyCandidate(attestation, byOtherKey, app.digest), { ok: false, code: 'UNTRUSTED_KEY' })
  })

  t.test('signatures live under the digest they sign: another image gets none', async (t) => {
    const other = await pushImage(registry.url, 'demo/app', 'v2', { seed: 'other' })
    const found = await discover('demo/app', other.digest)
    t.same(found, { candidates: [], problems: [] })
  })

  t.test('--recursive on an index signs the index and every child', async (t) => {
    const index = await pushIndex(registry.url, 'demo/multi', 'v1')
    await signImage(`${registry.host}/demo/multi@${index.digest}`, keys.privateKeyPath, { recursive: true })
    const digests = [index.digest, ...index.children.map((c) => c.digest)]
    const signatures: Candidate[] = []
    for (const digest of digests) {
      const found = await discover('demo/multi', digest)
      t.equal(found.candidates.length, 1, `one signature for ${digest}`)
      const evidence = verifyCandidate(found.candidates[0]!, byKey, digest)
      t.equal(evidence.ok, true, evidence.reason ?? 'verified')
      signatures.push(found.candidates[0]!)
    }
    // A child's signature says which digest it is for: it does not vouch for the index.
    const swapped = verifyCandidate(signatures[1]!, byKey, index.digest)
    t.match(swapped, { ok: false, code: 'DIGEST_MISMATCH' })
  })

  t.test('attest --new-bundle-format: a v0.3 bundle behind the fallback tag (entry typed oci.empty)', async (t) => {
    const image = await pushImage(registry.url, 'demo/bundled', 'v1')
    await attest(`${registry.host}/demo/bundled@${image.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance', { newBundleFormat: true })
    const fallback = await getManifest(registry.url, 'demo/bundled', `sha256-${image.digest.slice(7)}`)
    t.match(JSON.parse(Buffer.from(fallback.bytes).toString()), { manifests: [{ artifactType: 'application/vnd.oci.empty.v1+json' }] })

    const found = await discover('demo/bundled', image.digest)
    t.same(found.problems, [])
    t.equal(found.candidates.length, 1)
    const candidate = found.candidates[0]!
    t.match(candidate, {
      kind: 'attestation',
      format: 'sigstore-bundle',
      origin: { via: 'fallback-tag' },
      predicateType: 'https://slsa.dev/provenance/v0.2',
      bundle: { mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json' },
    })
    const evidence = verifyCandidate(candidate, byKey, image.digest)
    t.equal(evidence.ok, true, evidence.reason ?? 'verified')
    t.match(evidence.statement, { predicate: { builder: { id: BUILDER } } })
    t.match(verifyCandidate(candidate, byOtherKey, image.digest), { ok: false, code: 'UNTRUSTED_KEY' })
    t.match(verifyCandidate(candidate, byKey, app.digest), { ok: false, code: 'DIGEST_MISMATCH' })
  })

  t.test('sign --registry-referrers-mode=oci-1-1: a referrer listed in the fallback tag', async (t) => {
    const image = await pushImage(registry.url, 'demo/oci11', 'v1')
    await signImage(`${registry.host}/demo/oci11@${image.digest}`, keys.privateKeyPath, { referrersMode: 'oci-1-1' })
    const found = await discover('demo/oci11', image.digest)
    t.same(found.problems, [])
    t.equal(found.candidates.length, 1)
    t.match(found.candidates[0], { kind: 'signature', format: 'cosign-legacy', origin: { via: 'fallback-tag' } })
    t.equal(verifyCandidate(found.candidates[0]!, byKey, image.digest, { expectedRepository: 'demo/oci11' }).ok, true)
  })

  t.test('signatures kept in another repository (source.oci) are found there', async (t) => {
    // Copy demo/app's .sig tag into sigs/app, as cosign does with COSIGN_REPOSITORY.
    const tag = `sha256-${app.digest.slice(7)}.sig`
    const sig = await getManifest(registry.url, 'demo/app', tag)
    const manifest = JSON.parse(Buffer.from(sig.bytes).toString()) as { config: { digest: string }; layers: { digest: string }[] }
    for (const digest of [manifest.config.digest, ...manifest.layers.map((l) => l.digest)]) {
      const res = await fetch(`${registry.url}/v2/demo/app/blobs/${digest}`)
      await pushBlob(registry.url, 'sigs/app', new Uint8Array(await res.arrayBuffer()))
    }
    await pushManifest(registry.url, 'sigs/app', tag, sig.bytes, sig.mediaType!)

    const found = await discover('sigs/app', app.digest)
    t.equal(found.candidates.length, 1)
    t.match(found.candidates[0], { origin: { repository: 'sigs/app', via: 'sig-tag' } })
    t.equal(verifyCandidate(found.candidates[0]!, byKey, app.digest, { expectedRepository: 'demo/app' }).ok, true)
  })

  t.test('the public key file cosign wrote parses; its hint is what cosign writes into bundles', async (t) => {
    const pem = await readFile(keys.publicKeyPath, 'utf8')
    const image = await pushImage(registry.url, 'demo/hint', 'v1')
    await attest(`${registry.host}/demo/hint@${image.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance', { newBundleFormat: true })
    const found = await discover('demo/hint', image.digest)
    t.equal(found.candidates[0]?.bundle.verificationMaterial.publicKey?.hint, keyHint(parsePublicKey(pem)))
  })
})

// Keyless signatures end to end: @sigstore/sign (the real signing library) gets certificates from
// @sigstore/mock's Fulcio, entries from its Rekor and timestamps from its TSA, all served over
// loopback HTTP; the trust root is built from the mock's keys. The signatures are stored in a real
// docker-registry in each format trustpull discovers, found through the real client and verified.
import { createHash } from 'node:crypto'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { discoverSignatures } from '../../src/signatures/discover.ts'
import { createRegistryClient } from '../../src/upstream/client.ts'
import type { RegistryClient } from '../../src/upstream/types.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { cachedSigningCertificates } from '../../src/verify/memo.ts'
import { publicGoodTrustRoot, trustRootFromJSON } from '../../src/verify/trust-root.ts'
import type { AuthorityMaterial, Candidate, Identity } from '../../src/verify/types.ts'
import { pushImage, type PushedImage } from '../helpers/images.ts'
import { MOCK_ISSUER as ISSUER, pushBundleReferrer, pushKeylessSignature, startMockSigstore } from '../helpers/mock-sigstore.ts'
import { startRegistry } from '../helpers/registry.ts'

const SUBJECT = 'https://github.com/x/app/.github/workflows/release.yml@refs/heads/main'
const COSIGN_SIGN = 'https://sigstore.dev/cosign/sign/v1'
const SLSA = 'https://slsa.dev/provenance/v1'

function inToto(image: PushedImage, predicateType: string, predicate: object): object {
  return { _type: 'https://in-toto.io/Statement/v1', subject: [{ name: `registry.test/${image.repo}`, digest: { sha256: image.digest.slice(7) } }], predicateType, predicate }
}

t.test('keyless signatures from a mock Fulcio/Rekor/TSA, in every stored format', async (t) => {
  const sigstore = await startMockSigstore(t)
  const trustRoot = trustRootFromJSON('mock', sigstore.trustedRoot, 'test')
  const registry = await startRegistry(t)
  const config = parseConfig({ upstreams: [{ name: 'local', url: registry.url, default: true }] })
  const client = createRegistryClient(config.upstreams[0]!, { timeouts: config.timeouts, limits: config.limits })
  t.teardown(() => client.close())
  const keyless = (identities: Identity[]): AuthorityMaterial => ({ type: 'keyless', identities, trustRoot, ignoreSCT: false })
  const exact = keyless([{ issuer: ISSUER, subject: SUBJECT }])

  const image = await pushImage(registry.url, 'x/app', 'v1')
  await pushKeylessSignature(sigstore, registry.url, 'x/app', `${registry.host}/x/app`, image, SUBJECT)
  for (const bundle of [
    await sigstore.signStatement(inToto(image, COSIGN_SIGN, {}), SUBJECT),
    await sigstore.signStatement(inToto(image, SLSA, { buildDefinition: { buildType: 'https://example.test/build' } }), SUBJECT),
    await sigstore.signMessage(Buffer.from(image.manifest), SUBJECT),
  ]) {
    await pushBundleReferrer(registry.url, 'x/app', image, bundle)
  }

  const found = await discoverSignatures(client, 'x/app', image.digest, config.limits)
  t.same(found.problems, [])
  const byShape = (c: Candidate) => `${c.kind}/${c.format}/${c.origin.via}/${c.bundle.dsseEnvelope ? 'dsse' : 'message'}`
  t.same(found.candidates.map(byShape).sort(), [
    'attestation/sigstore-bundle/fallback-tag/dsse',
    'signature/cosign-legacy/sig-tag/message',
    'signature/sigstore-bundle/fallback-tag/dsse',
    'signature/sigstore-bundle/fallback-tag/message',
  ])

  t.test('every format verifies with the full chain: Fulcio certificate, SCT, Rekor, TSA, identity', async (t) => {
    for (const candidate of found.candidates) {
      const evidence = verifyCandidate(candidate, exact, image.digest, candidate.format === 'cosign-legacy' ? { expectedRepository: 'x/app' } : {})
      t.equal(evidence.ok, true, `${byShape(candidate)}: ${evidence.reason ?? 'verified'}`)
      t.same(evidence.signer, { issuer: ISSUER, subject: SUBJECT })
      t.match(evidence.tlog, { logIndex: /^\d+$/, integratedTime: /^20\d\d-/ })
      t.same(
        evidence.checks.slice(-7),
        ['certificate chain', 'sct', 'tlog', 'signing time (tlog)', 'signing time (RFC 3161)', 'signature', 'identity'],
        `${byShape(candidate)}: chain, SCT, SET, TSA timestamp, signature and identity were checked`,
      )
    }
    const attestation = found.candidates.find((c) => c.kind === 'attestation')!
    const evidence = verifyCandidate(attestation, exact, image.digest)
    t.equal(evidence.predicateType, SLSA)
    t.match(evidence.statement, { predicate: { buildDefinition: { buildType: 'https://example.test/build' } } })
  })

  t.test('identities: exact values are whole strings, regular expressions are unanchored as in cosign', async (t) => {
    const candidate = found.candidates.find((c) => c.format === 'cosign-legacy')!
    const check = (identities: Identity[]) => verifyCandidate(candidate, keyless(identities), image.digest)
    t.equal(check([{ issuer: ISSUER, subject: SUBJECT }]).ok, true)
    t.match(
      check([{ issuer: ISSUER, subject: 'x' }]),
      { ok: false, code: 'IDENTITY_MISMATCH', reason: /certificate subject "https:\/\/github\.com\/x\/app/ },
      'subject "x" does not match https://github.com/x/...',
    )
    t.match(check([{ issuer: ISSUER, subject: 'https://github.com/x' }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.match(check([{ issuer: ISSUER, subject: SUBJECT.replaceAll('.', '?') }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.match(check([{ issuer: 'https://token.actions.githubusercontent', subject: SUBJECT }]), { ok: false, code: 'IDENTITY_MISMATCH', reason: /issuer/ })
    t.equal(check([{ issuer: ISSUER, subjectRegExp: '^https://github\\.com/x/' }]).ok, true)
    t.equal(check([{ issuer: ISSUER, subjectRegExp: 'github\\.com/x/' }]).ok, true, 'a regexp is unanchored, like cosign')
    t.match(check([{ issuer: ISSUER, subjectRegExp: '^https://github\\.com/y/' }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.equal(check([{ issuerRegExp: '^https://token\\.actions\\.githubusercontent\\.com$', subject: SUBJECT }]).ok, true)
    t.equal(
      check([
        { issuer: 'https://accounts.google.com', subject: SUBJECT },
        { issuer: ISSUER, subject: SUBJECT },
      ]).ok,
      true,
      'any one identity suffices',
    )
    t.match(check([{ issuer: ISSUER }]), { ok: false, code: 'IDENTITY_MISMATCH' }, 'an identity without a subject matches nothing')
    t.match(check([]), { ok: false, code: 'IDENTITY_MISMATCH' })
  })

  t.test('another trust root (public-good) does not accept the mock CA, even with warm caches', async (t) => {
    for (const candidate of found.candidates) {
      const evidence = verifyCandidate(candidate, { ...exact, trustRoot: publicGoodTrustRoot() } as AuthorityMaterial, image.digest)
      t.equal(evidence.ok, false, byShape(candidate))
      t.ok(['CERTIFICATE_INVALID', 'TLOG_INVALID', 'TIMESTAMP_INVALID'].includes(evidence.code!), `${byShape(candidate)}: ${evidence.code}`)
    }
  })

  t.test('a signing certificate is parsed once and reused; the evidence does not change', async (t) => {
    const candidate = found.candidates.find((c) => c.format === 'cosign-legacy')!
    const first = verifyCandidate(candidate, exact, image.digest)
    const cached = cachedSigningCertificates()
    const again = verifyCandidate(candidate, exact, image.digest)
    t.equal(cachedSigningCertificates(), cached, 'no new certificate parsed')
    t.same(again, first)
    t.match(verifyCandidate(candidate, keyless([{ issuer: ISSUER, subject: 'https://github.com/y/app' }]), image.digest), { ok: false, code: 'IDENTITY_MISMATCH' })
  })

  t.test('a registry with the OCI 1.1 referrers API: the same bundles found through it', async (t) => {
    // docker-registry 2.8 has no referrers API; this client answers it as a registry that has one
    // would: an index of the referrers (here, the fallback tag's), typed by each bundle's type.
    const fallback = await client.getManifest('x/app', `sha256-${image.digest.slice(7)}`)
    const index = JSON.parse(fallback!.bytes.toString()) as { manifests: { artifactType?: string }[] }
    for (const entry of index.manifests) entry.artifactType = 'application/vnd.dev.sigstore.bundle.v0.3+json'
    const bytes = Buffer.from(JSON.stringify(index))
    const calls: string[] = []
    const withReferrers: RegistryClient = {
      name: client.name,
      getReferrers: async () => {
        calls.push('referrers')
        return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, mediaType: 'application/vnd.oci.image.index.v1+json' }
      },
      getManifest: (...args: Parameters<typeof client.getManifest>) => {
        calls.push(`manifest ${args[1]}`)
        return client.getManifest(...args)
      },
      getBlobBytes: client.getBlobBytes.bind(client),
      getBlob: client.getBlob.bind(client),
      listTags: client.listTags.bind(client),
    }
    const viaApi = await discoverSignatures(withReferrers, 'x/app', image.digest, config.limits)
    t.same(viaApi.problems, [])
    t.same(viaApi.candidates.filter((c) => c.origin.via === 'referrers').length, 3)
    t.notOk(calls.includes(`manifest sha256-${image.digest.slice(7)}`), 'the fallback tag is not read when the API answers')
    for (const candidate of viaApi.candidates) t.equal(verifyCandidate(candidate, exact, image.digest).ok, true, byShape(candidate))
  })

  t.test('a tlog is required for keyless unless the authority accepts TSA timestamps alone', async (t) => {
    const noTlog = { ...found.candidates.find((c) => c.format === 'cosign-legacy')! }
    noTlog.bundle = {
      ...noTlog.bundle,
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: { ...noTlog.bundle.verificationMaterial, tlogEntries: [] },
    }
    t.match(verifyCandidate(noTlog, exact, image.digest), { ok: false, code: 'TLOG_MISSING' })
    const tsaOnly = verifyCandidate(noTlog, { ...exact, requireTlog: false } as AuthorityMaterial, image.digest)
    t.equal(tsaOnly.ok, true, tsaOnly.reason ?? 'verified')
    t.same(tsaOnly.checks.slice(-4), ['sct', 'signing time (RFC 3161)', 'signature', 'identity'])
  })
})

// Keyless signatures end to end: @sigstore/sign (the real signing library) gets certificates from
// @sigstore/mock's Fulcio, entries from its Rekor and timestamps from its TSA, all served over
// loopback HTTP; the trust root is built from the mock's keys. The signatures are stored in a real
// docker-registry in each format trustpull discovers, found through the real client and verified.
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { bundleToJSON, type SerializedBundle } from '@sigstore/bundle'
import { fulcioHandler, initializeCA, initializeCTLog, initializeTLog, initializeTSA, rekorHandler, tsaHandler, type HandlerFn } from '@sigstore/mock'
import { DSSEBundleBuilder, FulcioSigner, MessageSignatureBundleBuilder, RekorWitness, TSAWitness } from '@sigstore/sign'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { discoverSignatures } from '../../src/signatures/discover.ts'
import { CosignAnnotation } from '../../src/signatures/legacy.ts'
import { createRegistryClient } from '../../src/upstream/client.ts'
import type { RegistryClient } from '../../src/upstream/types.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { cachedSigningCertificates } from '../../src/verify/memo.ts'
import { publicGoodTrustRoot, trustRootFromJSON } from '../../src/verify/trust-root.ts'
import type { AuthorityMaterial, Candidate, Identity } from '../../src/verify/types.ts'
import { pushBlob, pushImage, pushManifest, type PushedImage } from '../helpers/images.ts'
import type { Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const ISSUER = 'https://token.actions.githubusercontent.com'
const SUBJECT = 'https://github.com/x/app/.github/workflows/release.yml@refs/heads/main'
const COSIGN_SIGN = 'https://sigstore.dev/cosign/sign/v1'
const SLSA = 'https://slsa.dev/provenance/v1'
const b64 = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
const spki = (key: KeyObject): Buffer => key.export({ format: 'der', type: 'spki' })

/** Fulcio (v2 API), Rekor (v1) and a TSA from @sigstore/mock on one loopback HTTP server. */
async function startMockSigstore(t: Teardown) {
  const keys = { ca: p256(), ct: p256(), tlog: p256(), tsa: p256() }
  const ctlog = await initializeCTLog(keys.ct)
  const ca = await initializeCA(keys.ca, ctlog)
  const tlog = await initializeTLog('http://rekor.mock.test', keys.tlog)
  const tsa = await initializeTSA(keys.tsa, tsaClock())
  const handlers = new Map<string, HandlerFn>(
    [fulcioHandler(ca), rekorHandler(tlog), tsaHandler(tsa)].map((h) => [h.path, h.fn] as const),
  )
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const handler = handlers.get(new URL(req.url ?? '/', 'http://x').pathname)
      if (!handler || req.method !== 'POST') return void res.writeHead(404).end()
      handler(Buffer.concat(chunks).toString('utf8')).then(
        (r) => res.writeHead(r.statusCode, { 'content-type': r.contentType ?? 'application/json' }).end(r.response),
        (err: Error) => res.writeHead(500).end(err.message),
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const start = '2019-01-01T00:00:00Z'
  const logKey = (key: KeyObject) => ({ rawBytes: b64(spki(key)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } })
  const trustRoot = trustRootFromJSON(
    'mock',
    {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [{ baseUrl: 'http://rekor.mock.test', hashAlgorithm: 'SHA2_256', publicKey: logKey(keys.tlog.publicKey), logId: { keyId: createHash('sha256').update(spki(keys.tlog.publicKey)).digest('base64') } }],
      certificateAuthorities: [{ subject: { organization: 'sigstore.mock', commonName: 'sigstore' }, uri: url, certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] }, validFor: { start } }],
      ctlogs: [{ baseUrl: url, hashAlgorithm: 'SHA2_256', publicKey: logKey(keys.ct.publicKey), logId: { keyId: b64(ctlog.logID) } }],
      timestampAuthorities: [
        { subject: { organization: 'sigstore.mock', commonName: 'tsa' }, uri: url, certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] }, validFor: { start } },
      ],
    },
    'test',
  )

  // An OIDC token as Fulcio's mock reads it: unsigned, with iss and sub.
  const token = (sub: string) =>
    [{ alg: 'none', typ: 'JWT' }, { iss: ISSUER, sub, aud: 'sigstore', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 }]
      .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
      .join('.') + '.'
  // DSSE bundles use Rekor `intoto` entries (cosign 2's choice): the mock Rekor stores the proposed
  // entry as the body, which for `intoto` already is the canonical form a real Rekor would keep.
  const options = (subject: string, entryType?: 'intoto') => ({
    signer: new FulcioSigner({ identityProvider: { getToken: async () => token(subject) }, fulcioBaseURL: url, retry: false }),
    witnesses: [new RekorWitness({ rekorBaseURL: url, retry: false, ...(entryType ? { entryType } : {}) }), new TSAWitness({ tsaBaseURL: url, retry: false })],
  })
  return {
    trustRoot,
    /** A message-signature bundle over `data` (what cosign's legacy `.sig` carries, as a bundle). */
    signMessage: async (data: Buffer, subject = SUBJECT) => bundleToJSON(await new MessageSignatureBundleBuilder(options(subject)).create({ data })),
    /** A DSSE bundle over an in-toto statement. */
    signStatement: async (statement: object, subject = SUBJECT) =>
      bundleToJSON(await new DSSEBundleBuilder(options(subject, 'intoto')).create({ data: Buffer.from(JSON.stringify(statement)), type: 'application/vnd.in-toto+json' })),
  }
}

/**
 * The mock TSA writes genTime with trailing zeros of the milliseconds dropped (".12Z"), which
 * @sigstore/core's parser refuses (it wants exactly three digits): one timestamp in ten would fail.
 * A fixed clock with 123 ms avoids that; it is set ahead so that certificates issued during the
 * test (valid from their issuance, for ten minutes) cover it.
 */
function tsaClock(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000 + 30_123)
}

function p256(): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
}

function inToto(image: PushedImage, predicateType: string, predicate: object): object {
  return { _type: 'https://in-toto.io/Statement/v1', subject: [{ name: `registry.test/${image.repo}`, digest: { sha256: image.digest.slice(7) } }], predicateType, predicate }
}

/** The `.sig` layer annotations cosign writes, from a message-signature bundle made by @sigstore/sign. */
function cosignAnnotations(bundle: SerializedBundle): Record<string, string> {
  const certificate = bundle.verificationMaterial.certificate?.rawBytes ?? bundle.verificationMaterial.x509CertificateChain!.certificates[0]!.rawBytes
  const entry = bundle.verificationMaterial.tlogEntries[0]!
  return {
    [CosignAnnotation.signature]: bundle.messageSignature!.signature,
    [CosignAnnotation.certificate]: `-----BEGIN CERTIFICATE-----\n${certificate}\n-----END CERTIFICATE-----\n`,
    [CosignAnnotation.rekorBundle]: JSON.stringify({
      SignedEntryTimestamp: entry.inclusionPromise!.signedEntryTimestamp,
      Payload: {
        body: entry.canonicalizedBody,
        integratedTime: Number(entry.integratedTime),
        logIndex: Number(entry.logIndex),
        logID: Buffer.from(entry.logId.keyId, 'base64').toString('hex'),
      },
    }),
    [CosignAnnotation.rfc3161Timestamp]: JSON.stringify({ SignedRFC3161Timestamp: bundle.verificationMaterial.timestampVerificationData!.rfc3161Timestamps[0]!.signedTimestamp }),
  }
}

async function pushSigManifest(registryUrl: string, image: PushedImage, payload: Buffer, annotations: Record<string, string>): Promise<void> {
  const config = await pushBlob(registryUrl, image.repo, '{}')
  const layer = await pushBlob(registryUrl, image.repo, payload)
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', ...layer, annotations }],
  }
  await pushManifest(registryUrl, image.repo, `sha256-${image.digest.slice(7)}.sig`, manifest, manifest.mediaType)
}

/** Bundles attached as OCI 1.1 referrers, listed in the fallback tag (docker-registry has no referrers API). */
async function pushBundleReferrers(registryUrl: string, image: PushedImage, bundles: SerializedBundle[]): Promise<void> {
  const empty = await pushBlob(registryUrl, image.repo, '{}')
  const entries = []
  for (const bundle of bundles) {
    const layer = await pushBlob(registryUrl, image.repo, JSON.stringify(bundle))
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
      layers: [{ mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', ...layer }],
      subject: { mediaType: image.mediaType, digest: image.digest, size: image.size },
    }
    const pushed = await pushManifest(registryUrl, image.repo, `bundle-${entries.length}-${image.digest.slice(7, 19)}`, manifest, manifest.mediaType)
    // As cosign writes the fallback index: the entry is typed with the config's (empty) type.
    entries.push({ mediaType: manifest.mediaType, digest: pushed.digest, size: pushed.size, artifactType: 'application/vnd.oci.empty.v1+json' })
  }
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: entries }
  await pushManifest(registryUrl, image.repo, `sha256-${image.digest.slice(7)}`, index, index.mediaType)
}

t.test('keyless signatures from a mock Fulcio/Rekor/TSA, in every stored format', async (t) => {
  const sigstore = await startMockSigstore(t)
  const registry = await startRegistry(t)
  const config = parseConfig({ upstreams: [{ name: 'local', url: registry.url, default: true }] })
  const client = createRegistryClient(config.upstreams[0]!, { timeouts: config.timeouts, limits: config.limits })
  t.teardown(() => client.close())
  const keyless = (identities: Identity[]): AuthorityMaterial => ({ type: 'keyless', identities, trustRoot: sigstore.trustRoot, ignoreSCT: false })
  const exact = keyless([{ issuer: ISSUER, subject: SUBJECT }])

  const image = await pushImage(registry.url, 'x/app', 'v1')
  const payload = Buffer.from(
    JSON.stringify({ critical: { identity: { 'docker-reference': `${registry.host}/x/app` }, image: { 'docker-manifest-digest': image.digest }, type: 'cosign container image signature' }, optional: null }),
  )
  const legacy = await sigstore.signMessage(payload)
  await pushSigManifest(registry.url, image, payload, cosignAnnotations(legacy))
  await pushBundleReferrers(registry.url, image, [
    await sigstore.signStatement(inToto(image, COSIGN_SIGN, {})),
    await sigstore.signStatement(inToto(image, SLSA, { buildDefinition: { buildType: 'https://example.test/build' } })),
    await sigstore.signMessage(Buffer.from(image.manifest)),
  ])

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
    t.match(check([{ issuer: ISSUER, subject: 'x' }]), { ok: false, code: 'IDENTITY_MISMATCH', reason: /certificate subject "https:\/\/github\.com\/x\/app/ }, 'subject "x" does not match https://github.com/x/...')
    t.match(check([{ issuer: ISSUER, subject: 'https://github.com/x' }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.match(check([{ issuer: ISSUER, subject: SUBJECT.replaceAll('.', '?') }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.match(check([{ issuer: 'https://token.actions.githubusercontent', subject: SUBJECT }]), { ok: false, code: 'IDENTITY_MISMATCH', reason: /issuer/ })
    t.equal(check([{ issuer: ISSUER, subjectRegExp: '^https://github\\.com/x/' }]).ok, true)
    t.equal(check([{ issuer: ISSUER, subjectRegExp: 'github\\.com/x/' }]).ok, true, 'a regexp is unanchored, like cosign')
    t.match(check([{ issuer: ISSUER, subjectRegExp: '^https://github\\.com/y/' }]), { ok: false, code: 'IDENTITY_MISMATCH' })
    t.equal(check([{ issuerRegExp: '^https://token\\.actions\\.githubusercontent\\.com$', subject: SUBJECT }]).ok, true)
    t.equal(check([{ issuer: 'https://accounts.google.com', subject: SUBJECT }, { issuer: ISSUER, subject: SUBJECT }]).ok, true, 'any one identity suffices')
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
    noTlog.bundle = { ...noTlog.bundle, mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', verificationMaterial: { ...noTlog.bundle.verificationMaterial, tlogEntries: [] } }
    t.match(verifyCandidate(noTlog, exact, image.digest), { ok: false, code: 'TLOG_MISSING' })
    const tsaOnly = verifyCandidate(noTlog, { ...exact, requireTlog: false } as AuthorityMaterial, image.digest)
    t.equal(tsaOnly.ok, true, tsaOnly.reason ?? 'verified')
    t.same(tsaOnly.checks.slice(-4), ['sct', 'signing time (RFC 3161)', 'signature', 'identity'])
  })
})

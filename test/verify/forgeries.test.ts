// Forgeries, each denied with its own code. Keyless signatures come from @sigstore/mock's CA,
// CT log, Rekor and TSA (in-process; a trust root is built from their keys), key-based ones from
// node:crypto keys, in cosign's own formats. The discovery forgeries are served by a real
// docker-registry and read through the real upstream client.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { initializeTLog, initializeTSA } from '@sigstore/mock'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { discoverSignatures, type DiscoveryLimits } from '../../src/signatures/discover.ts'
import { CosignAnnotation, legacyAttestationBundles, legacySignatureBundle } from '../../src/signatures/legacy.ts'
import { createRegistryClient } from '../../src/upstream/client.ts'
import type { RegistryClient } from '../../src/upstream/types.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { trustRootFromJSON } from '../../src/verify/trust-root.ts'
import type { AuthorityMaterial, Candidate, Identity, LoadedTrustRoot, VerifyCode } from '../../src/verify/types.ts'
import { pushBlob, pushImage, pushManifest } from '../helpers/images.ts'
import { mockAuthorities, mockTrustedRoot, tsaClock } from '../helpers/mock-sigstore.ts'
import { startRegistry } from '../helpers/registry.ts'

const ISSUER = 'https://token.actions.githubusercontent.com'
const SUBJECT = 'https://github.com/org/app/.github/workflows/release.yml@refs/heads/main'
const OID_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1'
const OID_ISSUER_V2 = '1.3.6.1.4.1.57264.1.8'
const DIGEST = `sha256:${'a'.repeat(64)}`
const OTHER_DIGEST = `sha256:${'b'.repeat(64)}`

/** What @sigstore/mock's Rekor answers for one entry (Rekor's v1 API shape). */
interface RekorEntry {
  body: string
  integratedTime: number
  logIndex: number
  logID: string
  verification: { signedEntryTimestamp: string }
}

type KeyPair = { publicKey: KeyObject; privateKey: KeyObject }
const p256 = (): KeyPair => generateKeyPairSync('ec', { namedCurve: 'P-256' })
const spki = (key: KeyObject): Uint8Array<ArrayBuffer> => new Uint8Array(key.export({ format: 'der', type: 'spki' }))
const b64 = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
const pemCertificate = (der: ArrayBufferView): string => `-----BEGIN CERTIFICATE-----\n${b64(der)}\n-----END CERTIFICATE-----\n`

// ---------------------------------------------------------------------------------------------
// An in-process Sigstore: Fulcio CA (+ CT log), Rekor, TSA, and the trusted root naming them.

async function sigstoreInABox(options: { caClock?: Date; withCTLog?: boolean } = {}) {
  const authorities = await mockAuthorities(options)
  const { ca, tlog } = authorities
  const tsa = authorities.tsa!

  interface KeylessOptions {
    subject?: string
    issuer?: string
    /** Sign with this key instead of the one the certificate names. */
    signingKey?: KeyPair
    tlog?: boolean
    tsa?: boolean
    /** Another Rekor (or TSA) than the trusted one writes the entry (timestamp). */
    tlogFrom?: Awaited<ReturnType<typeof initializeTLog>>
    tsaFrom?: Awaited<ReturnType<typeof initializeTSA>>
    /** Change the SET after the fact. */
    tamperSET?: boolean
  }

  /** cosign-style annotations for a keyless signature over `payload`. */
  async function keyless(payload: Buffer, o: KeylessOptions = {}): Promise<Record<string, string>> {
    const certified = p256()
    const issuer = o.issuer ?? ISSUER
    const cert = await ca.issueCertificate({
      publicKey: spki(certified.publicKey),
      subjectAltName: o.subject ?? SUBJECT,
      extensions: [
        { oid: OID_ISSUER_V1, value: issuer, legacy: true },
        { oid: OID_ISSUER_V2, value: issuer },
      ],
    })
    const signature = sign('sha256', payload, (o.signingKey ?? certified).privateKey)
    const pem = pemCertificate(cert)
    const annotations: Record<string, string> = { [CosignAnnotation.signature]: b64(signature), [CosignAnnotation.certificate]: pem }
    if (o.tlog ?? true) {
      const entry = {
        apiVersion: '0.0.1',
        kind: 'hashedrekord',
        spec: {
          data: { hash: { algorithm: 'sha256', value: createHash('sha256').update(payload).digest('hex') } },
          signature: { content: b64(signature), publicKey: { content: Buffer.from(pem).toString('base64') } },
        },
      }
      const logged = Object.values(await (o.tlogFrom ?? tlog).log(entry))[0] as RekorEntry
      let set = Buffer.from(logged.verification.signedEntryTimestamp, 'base64')
      if (o.tamperSET) set = Buffer.from(set.map((byte, i) => (i === set.length - 3 ? byte ^ 0x01 : byte)))
      annotations[CosignAnnotation.rekorBundle] = JSON.stringify({
        SignedEntryTimestamp: set.toString('base64'),
        Payload: { body: logged.body, integratedTime: logged.integratedTime, logIndex: logged.logIndex, logID: logged.logID },
      })
    }
    if (o.tsa) {
      const stamp = await (o.tsaFrom ?? tsa).timestamp({
        artifactHash: createHash('sha256').update(signature).digest(),
        hashAlgorithmOID: '2.16.840.1.101.3.4.2.1',
        nonce: 7,
        policyOID: '1.2.3.4',
        certReq: true,
      })
      annotations[CosignAnnotation.rfc3161Timestamp] = JSON.stringify({ SignedRFC3161Timestamp: b64(stamp) })
    }
    return annotations
  }

  return { trustRoot: trustRootFromJSON('mock', mockTrustedRoot(authorities), 'test'), keyless }
}

// ---------------------------------------------------------------------------------------------
// cosign's payloads and envelopes

function simpleSigning(digest: string, type = 'cosign container image signature'): Buffer {
  return Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': 'registry.test/org/app' }, image: { 'docker-manifest-digest': digest }, type }, optional: null }))
}

function statement(digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: 'registry.test/org/app', digest: { sha256: digest.slice(7) } }],
      predicateType: 'https://slsa.dev/provenance/v1',
      predicate: { buildDefinition: { buildType: 'https://example.test/build' } },
    }),
  )
}

function pae(payloadType: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${payload.length} `), payload])
}

function signatureCandidate(payload: Buffer, annotations: Record<string, string>): Candidate {
  return {
    kind: 'signature',
    format: 'cosign-legacy',
    origin: { repository: 'org/app', via: 'sig-tag', manifestDigest: OTHER_DIGEST },
    bundle: legacySignatureBundle(payload, annotations),
    payload,
  }
}

function keySignature(payload: Buffer, key: KeyPair, signedPayload = payload): Candidate {
  return signatureCandidate(payload, { [CosignAnnotation.signature]: b64(sign('sha256', signedPayload, key.privateKey)) })
}

function attestationCandidate(key: KeyPair, payload: Buffer, payloadType = 'application/vnd.in-toto+json', signedPayload = payload): Candidate {
  const envelope = { payloadType, payload: b64(payload), signatures: [{ keyid: '', sig: b64(sign('sha256', pae(payloadType, signedPayload), key.privateKey)) }] }
  const [bundle] = legacyAttestationBundles(Buffer.from(JSON.stringify(envelope)), { predicateType: 'https://slsa.dev/provenance/v1' })
  return { kind: 'attestation', format: 'cosign-legacy', origin: { repository: 'org/app', via: 'att-tag', manifestDigest: OTHER_DIGEST }, bundle: bundle! }
}

// ---------------------------------------------------------------------------------------------

t.test('forged signatures and attestations are each denied with their own code', async (t) => {
  const box = await sigstoreInABox()
  const otherCA = await sigstoreInABox()
  const pastCA = await sigstoreInABox({ caClock: new Date('2020-06-01T00:00:00Z') })
  const noCT = await sigstoreInABox({ withCTLog: false })
  const rogueLog = await initializeTLog('https://rekor.mock.test', p256())
  const rogueTSA = await initializeTSA(p256(), tsaClock())

  const trusted = p256()
  const untrusted = p256()
  const byKey: AuthorityMaterial = { type: 'key', keys: [{ key: trusted.publicKey }], requireTlog: false }
  const identities: Identity[] = [{ issuer: ISSUER, subject: SUBJECT }]
  const keyless = (root: LoadedTrustRoot = box.trustRoot, extra: Partial<Extract<AuthorityMaterial, { type: 'keyless' }>> = {}): AuthorityMaterial => ({
    type: 'keyless',
    identities,
    trustRoot: root,
    ignoreSCT: false,
    ...extra,
  })
  const good = simpleSigning(DIGEST)
  const genuine = await box.keyless(good)

  const rows: { name: string; candidate: Candidate; material: AuthorityMaterial; code: VerifyCode | 'OK' }[] = [
    // Controls: the same constructions, unforged, verify.
    { name: 'control: key-based signature', candidate: keySignature(good, trusted), material: byKey, code: 'OK' },
    { name: 'control: key-based attestation', candidate: attestationCandidate(trusted, statement(DIGEST)), material: byKey, code: 'OK' },
    { name: 'control: keyless signature with SET', candidate: signatureCandidate(good, await box.keyless(good)), material: keyless(), code: 'OK' },
    {
      name: 'control: keyless signature with only a TSA timestamp (tlog not required)',
      candidate: signatureCandidate(good, await box.keyless(good, { tlog: false, tsa: true })),
      material: keyless(box.trustRoot, { requireTlog: false }),
      code: 'OK',
    },
    {
      name: 'control: certificate without SCT when the authority ignores SCTs',
      candidate: signatureCandidate(good, await noCT.keyless(good)),
      material: keyless(noCT.trustRoot, { ignoreSCT: true }),
      code: 'OK',
    },

    // Key-based
    { name: 'signed with another key', candidate: keySignature(good, untrusted), material: byKey, code: 'UNTRUSTED_KEY' },
    { name: 'payload changed after signing', candidate: keySignature(good, trusted, simpleSigning(OTHER_DIGEST)), material: byKey, code: 'UNTRUSTED_KEY' },
    { name: 'payload names another digest', candidate: keySignature(simpleSigning(OTHER_DIGEST), trusted), material: byKey, code: 'DIGEST_MISMATCH' },
    {
      name: 'simple-signing type is not a container signature',
      candidate: keySignature(simpleSigning(DIGEST, 'atomic container signature'), trusted),
      material: byKey,
      code: 'PAYLOAD_INVALID',
    },
    { name: 'signed payload is not JSON', candidate: keySignature(Buffer.from('{"critical":'), trusted), material: byKey, code: 'PAYLOAD_INVALID' },
    { name: 'DSSE with a payloadType other than in-toto', candidate: attestationCandidate(trusted, statement(DIGEST), 'text/plain'), material: byKey, code: 'PAYLOAD_INVALID' },
    { name: 'attestation subject is another digest', candidate: attestationCandidate(trusted, statement(OTHER_DIGEST)), material: byKey, code: 'DIGEST_MISMATCH' },
    {
      name: 'DSSE statement swapped under a valid signature',
      candidate: attestationCandidate(trusted, statement(DIGEST), 'application/vnd.in-toto+json', statement(OTHER_DIGEST)),
      material: byKey,
      code: 'UNTRUSTED_KEY',
    },
    {
      name: 'unknown bundle media type',
      candidate: { ...keySignature(good, trusted), bundle: { ...keySignature(good, trusted).bundle, mediaType: 'application/vnd.dev.sigstore.bundle.v9.9+json' } },
      material: byKey,
      code: 'MALFORMED',
    },

    // Keyless
    {
      name: 'identity (subject) mismatch',
      candidate: signatureCandidate(good, await box.keyless(good, { subject: 'https://github.com/evil/app/.github/workflows/release.yml@refs/heads/main' })),
      material: keyless(),
      code: 'IDENTITY_MISMATCH',
    },
    {
      name: 'issuer mismatch',
      candidate: signatureCandidate(good, await box.keyless(good, { issuer: 'https://accounts.google.com' })),
      material: keyless(),
      code: 'IDENTITY_MISMATCH',
    },
    {
      name: 'exact subject "https://github.com/org" is not a prefix match',
      candidate: signatureCandidate(good, await box.keyless(good)),
      material: { ...keyless(), identities: [{ issuer: ISSUER, subject: 'https://github.com/org' }] } as AuthorityMaterial,
      code: 'IDENTITY_MISMATCH',
    },
    { name: 'certificate from another CA', candidate: signatureCandidate(good, await otherCA.keyless(good)), material: keyless(), code: 'CERTIFICATE_INVALID' },
    {
      name: 'expired certificate with no timestamp inside its validity',
      candidate: signatureCandidate(good, await pastCA.keyless(good)),
      material: keyless(pastCA.trustRoot),
      code: 'CERTIFICATE_EXPIRED',
    },
    { name: 'tampered SET', candidate: signatureCandidate(good, await box.keyless(good, { tamperSET: true })), material: keyless(), code: 'TLOG_INVALID' },
    { name: 'SET from an untrusted Rekor', candidate: signatureCandidate(good, await box.keyless(good, { tlogFrom: rogueLog })), material: keyless(), code: 'TLOG_INVALID' },
    { name: 'no tlog entry', candidate: signatureCandidate(good, await box.keyless(good, { tlog: false, tsa: true })), material: keyless(), code: 'TLOG_MISSING' },
    {
      name: 'timestamp from an untrusted TSA',
      candidate: signatureCandidate(good, await box.keyless(good, { tlog: false, tsa: true, tsaFrom: rogueTSA })),
      material: keyless(box.trustRoot, { requireTlog: false }),
      code: 'TIMESTAMP_INVALID',
    },
    {
      name: 'signature by another key than the certificate names',
      candidate: signatureCandidate(good, await box.keyless(good, { signingKey: untrusted })),
      material: keyless(),
      code: 'SIGNATURE_INVALID',
    },
    { name: 'certificate without SCT', candidate: signatureCandidate(good, await noCT.keyless(good)), material: keyless(noCT.trustRoot), code: 'CERTIFICATE_INVALID' },
    { name: 'key-signed signature offered to a keyless authority', candidate: keySignature(good, trusted), material: keyless(), code: 'CERTIFICATE_INVALID' },
    {
      name: 'keyless payload changed after signing (the tlog entry no longer matches)',
      candidate: signatureCandidate(Buffer.from(`${good.toString()} `), genuine),
      material: keyless(),
      code: 'TLOG_INVALID',
    },
  ]

  const codes = new Map<string, VerifyCode>()
  for (const row of rows) {
    const evidence = verifyCandidate(row.candidate, row.material, DIGEST)
    if (row.code === 'OK') {
      t.equal(evidence.ok, true, `${row.name}: verified${evidence.ok ? '' : ` (${evidence.code}: ${evidence.reason})`}`)
      continue
    }
    t.equal(evidence.ok, false, `${row.name}: denied`)
    t.equal(evidence.code, row.code, `${row.name}: ${row.code}${evidence.code === row.code ? '' : ` (got ${evidence.code}: ${evidence.reason})`}`)
    t.ok(evidence.reason && evidence.reason.length > 10, `${row.name}: a reason is given`)
    codes.set(row.name, evidence.code!)
  }
  t.ok(new Set(codes.values()).size >= 10, 'forgeries are told apart by at least 10 distinct codes')
})

// ---------------------------------------------------------------------------------------------
// Discovery: hostile registry content

/** A RegistryClient that counts the calls it passes on. */
function counting(client: RegistryClient): RegistryClient & { calls: Record<string, number> } {
  const calls: Record<string, number> = {}
  const count =
    <A extends unknown[], R>(name: string, fn: (...args: A) => R) =>
    (...args: A): R => {
      calls[name] = (calls[name] ?? 0) + 1
      return fn(...args)
    }
  return {
    name: client.name,
    calls,
    getManifest: count('getManifest', client.getManifest.bind(client)),
    getBlobBytes: count('getBlobBytes', client.getBlobBytes.bind(client)),
    getBlob: count('getBlob', client.getBlob.bind(client)),
    getReferrers: count('getReferrers', client.getReferrers.bind(client)),
    listTags: count('listTags', client.listTags.bind(client)),
  }
}

interface Layer {
  mediaType: string
  bytes: Buffer
  annotations?: Record<string, string>
  /** Lie about the size in the descriptor. */
  declaredSize?: number
}

/** Pushes a cosign-style signature manifest (`.sig`/`.att`/referrer) with the given layers. */
async function pushSignatureManifest(registryUrl: string, repo: string, tag: string, layers: Layer[], extra: Record<string, unknown> = {}) {
  const config = await pushBlob(registryUrl, repo, '{}')
  const descriptors = []
  for (const layer of layers) {
    const blob = await pushBlob(registryUrl, repo, layer.bytes)
    descriptors.push({ mediaType: layer.mediaType, digest: blob.digest, size: layer.declaredSize ?? blob.size, ...(layer.annotations ? { annotations: layer.annotations } : {}) })
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: descriptors,
    ...extra,
  }
  return pushManifest(registryUrl, repo, tag, manifest, manifest.mediaType)
}

t.test('hostile signature content in the registry becomes problems, never crashes or unbounded reads', async (t) => {
  const registry = await startRegistry(t)
  const config = parseConfig({ upstreams: [{ name: 'local', url: registry.url, default: true }] })
  const client = createRegistryClient(config.upstreams[0]!, { timeouts: config.timeouts, limits: config.limits })
  t.teardown(() => client.close())
  const limits: DiscoveryLimits = { ...config.limits, signatureLayerBytes: 4096, bundleBytes: 4096, maxSignatures: 8, maxReferrers: 16 }
  const key = p256()
  const byKey: AuthorityMaterial = { type: 'key', keys: [{ key: key.publicKey }], requireTlog: false }
  const simpleSigningLayer = (digest: string, extra: Partial<Layer> = {}): Layer => {
    const payload = simpleSigning(digest)
    return {
      mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
      bytes: payload,
      annotations: { [CosignAnnotation.signature]: b64(sign('sha256', payload, key.privateKey)) },
      ...extra,
    }
  }
  const sigTag = (digest: string) => `sha256-${digest.slice(7)}.sig`

  t.test('an oversized layer is refused by its descriptor, without being fetched', async (t) => {
    const image = await pushImage(registry.url, 'h/oversized', 'v1')
    const big = Buffer.alloc(limits.signatureLayerBytes + 1, 0x20)
    await pushSignatureManifest(registry.url, 'h/oversized', sigTag(image.digest), [
      simpleSigningLayer(image.digest, { bytes: big, annotations: {} }),
      simpleSigningLayer(image.digest),
    ])
    const counted = counting(client)
    const found = await discoverSignatures(counted, 'h/oversized', image.digest, limits)
    t.match(found.problems, [{ code: 'LIMIT_EXCEEDED', message: /over the 4096-byte limit/, origin: { via: 'sig-tag' } }])
    t.equal(counted.calls.getBlobBytes, 1, 'only the good layer was fetched')
    t.equal(found.candidates.length, 1)
    t.equal(verifyCandidate(found.candidates[0]!, byKey, image.digest).ok, true, 'the other signature still verifies')
  })

  t.test('a truncated bundle and unparseable annotations are MALFORMED; the good signature survives', async (t) => {
    const image = await pushImage(registry.url, 'h/garbage', 'v1')
    const bundle = JSON.stringify({ mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', verificationMaterial: { publicKey: { hint: '' } } })
    await pushSignatureManifest(registry.url, 'h/garbage', sigTag(image.digest), [
      { mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json', bytes: Buffer.from(bundle.slice(0, 40)) },
      simpleSigningLayer(image.digest, { annotations: { [CosignAnnotation.signature]: 'c2ln', [CosignAnnotation.rekorBundle]: '{"SignedEntryTimestamp": ' } }),
      simpleSigningLayer(image.digest, { annotations: { [CosignAnnotation.signature]: 'not base64!' } }),
      { mediaType: 'application/vnd.dsse.envelope.v1+json', bytes: Buffer.from('{"payloadType": 1}') },
      simpleSigningLayer(image.digest),
    ])
    const found = await discoverSignatures(client, 'h/garbage', image.digest, limits)
    t.equal(found.problems.length, 4)
    t.ok(
      found.problems.every((p) => p.code === 'MALFORMED'),
      'each unreadable layer is MALFORMED',
    )
    const messages = found.problems.map((p) => p.message).join('\n')
    for (const expected of [
      /bundle layer .*: Sigstore bundle is not JSON/,
      /dev\.sigstore\.cosign\/bundle is not JSON/,
      /signature is not base64/,
      /DSSE envelope has no payloadType/,
    ]) {
      t.match(messages, expected)
    }
    t.equal(found.candidates.length, 1)
    t.equal(verifyCandidate(found.candidates[0]!, byKey, image.digest).ok, true)
  })

  t.test('a .sig tag that is an index, not a signature manifest, yields nothing', async (t) => {
    const image = await pushImage(registry.url, 'h/indextag', 'v1')
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: image.mediaType, digest: image.digest, size: image.size }] }
    await pushManifest(registry.url, 'h/indextag', sigTag(image.digest), index, index.mediaType)
    const found = await discoverSignatures(client, 'h/indextag', image.digest, limits)
    // Discovery asks for image manifests only; docker-registry answers an index with 404 then. (A
    // registry that sent it anyway would get a MALFORMED problem: "tag ... is not an image manifest".)
    t.same(found, { candidates: [], problems: [] })
  })

  t.test('more signature layers than maxSignatures: the rest are not read', async (t) => {
    const image = await pushImage(registry.url, 'h/many', 'v1')
    const layers = Array.from({ length: 20 }, (_, i) => simpleSigningLayer(image.digest, { annotations: { [CosignAnnotation.signature]: b64(Buffer.from(`sig-${i}`)) } }))
    await pushSignatureManifest(registry.url, 'h/many', sigTag(image.digest), layers)
    const counted = counting(client)
    const found = await discoverSignatures(counted, 'h/many', image.digest, limits)
    t.equal(found.candidates.length, limits.maxSignatures)
    t.equal(counted.calls.getBlobBytes, limits.maxSignatures)
    t.match(found.problems, [{ code: 'LIMIT_EXCEEDED', message: /more than 8 signatures/ }])
  })

  t.test('a referrer about another image is refused', async (t) => {
    const image = await pushImage(registry.url, 'h/subject', 'v1')
    const other = await pushImage(registry.url, 'h/subject', 'v2', { seed: 'other' })
    const referrer = await pushSignatureManifest(registry.url, 'h/subject', 'ref', [simpleSigningLayer(image.digest)], {
      artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json',
      subject: { mediaType: other.mediaType, digest: other.digest, size: other.size },
    })
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: referrer.digest, size: referrer.size, artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' },
      ],
    }
    await pushManifest(registry.url, 'h/subject', `sha256-${image.digest.slice(7)}`, index, index.mediaType)
    const found = await discoverSignatures(client, 'h/subject', image.digest, limits)
    t.same(found.candidates, [])
    t.match(found.problems, [{ code: 'MALFORMED', message: /is about sha256:/, origin: { via: 'fallback-tag' } }])
  })

  t.test('1,000 junk referrers: a bounded walk, a LIMIT_EXCEEDED problem, and the real signature still found', async (t) => {
    const image = await pushImage(registry.url, 'h/junk', 'v1')
    await pushSignatureManifest(registry.url, 'h/junk', sigTag(image.digest), [simpleSigningLayer(image.digest)])
    // docker-registry only accepts an index whose entries exist: 40 distinct junk manifests typed as
    // bundles (they sort first and must be read), and 960 entries typed as something else.
    const junk: { digest: string; size: number }[] = []
    for (let i = 0; i < 40; i++)
      junk.push(await pushSignatureManifest(registry.url, 'h/junk', `junk-${i}`, [{ mediaType: 'application/octet-stream', bytes: Buffer.from(`junk ${i}`) }]))
    const manifests = Array.from({ length: 1000 }, (_, i) => {
      const target = i < 40 ? junk[i]! : { digest: image.digest, size: image.size }
      const artifactType = i < 40 ? 'application/vnd.dev.sigstore.bundle.v0.3+json' : `application/vnd.junk.${i}+json`
      return { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: target.digest, size: target.size, artifactType }
    })
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }
    await pushManifest(registry.url, 'h/junk', `sha256-${image.digest.slice(7)}`, index, index.mediaType)

    const counted = counting(client)
    const found = await discoverSignatures(counted, 'h/junk', image.digest, limits)
    t.match(found.problems[0], { code: 'LIMIT_EXCEEDED', message: /40 possible signature referrers listed; only the first 16 were read/ })
    t.ok(counted.calls.getManifest! <= limits.maxReferrers + 3, `${counted.calls.getManifest} manifest reads for 1,000 referrers`)
    t.equal(found.candidates.length, 1)
    t.match(found.candidates[0], { origin: { via: 'sig-tag' } })
    t.equal(verifyCandidate(found.candidates[0]!, byKey, image.digest).ok, true)
  })

  t.test('an image with nothing attached has no candidates and no problems', async (t) => {
    const image = await pushImage(registry.url, 'h/none', 'v1')
    t.same(await discoverSignatures(client, 'h/none', image.digest, limits), { candidates: [], problems: [] })
  })

  t.test('an aborted discovery rejects', async (t) => {
    const image = await pushImage(registry.url, 'h/abort', 'v1')
    const controller = new AbortController()
    controller.abort()
    await t.rejects(discoverSignatures(client, 'h/abort', image.digest, limits, { signal: controller.signal }))
  })
})

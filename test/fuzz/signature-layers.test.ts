// Property-based fuzzing of the signature-layer decoder (src/signatures/legacy.ts: cosign's `.sig`
// and `.att` layers and their annotations → Sigstore bundles), of discovery over a registry that
// answers garbage, and of the duplicate-key scan that guards signed payloads. Properties: the
// decoder throws nothing but LegacyFormatError; what it returns is bound to the bytes it was
// given; garbage never becomes a candidate, and no candidate made of random material verifies.
import t from 'tap'
import fc from 'fast-check'
import { createHash, generateKeyPairSync } from 'node:crypto'
import { digestOf } from '../../src/oci/digest.ts'
import { MediaType } from '../../src/oci/media-types.ts'
import { discoverSignatures, type DiscoveryLimits } from '../../src/signatures/discover.ts'
import { CosignAnnotation, envelopePredicateType, legacyAttestationBundles, legacySignatureBundle, LegacyFormatError } from '../../src/signatures/legacy.ts'
import type { FetchedManifest, RegistryClient } from '../../src/upstream/types.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { firstDuplicateKey } from '../../src/verify/duplicate-keys.ts'
import type { AuthorityMaterial, Candidate } from '../../src/verify/types.ts'

const RUNS = 5_000
const IMAGE = `sha256:${'c'.repeat(64)}`

/** Runs `fn`; anything thrown that is not a LegacyFormatError fails the property. */
function decoded<T>(fn: () => T): T | undefined {
  try {
    return fn()
  } catch (err) {
    if (err instanceof LegacyFormatError) return undefined
    throw new Error(`threw ${(err as Error)?.name}: ${(err as Error)?.message}`, { cause: err })
  }
}

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64')
const base64 = fc.uint8Array({ maxLength: 80 }).map(b64)
const junk = fc.oneof(fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 60 }), base64, fc.json({ maxDepth: 3 }))
const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)
/** A Rekor SET annotation, well-formed in places and hostile in others. */
const rekorBundle = fc.oneof(
  junk,
  fc
    .record({
      SignedEntryTimestamp: fc.oneof(base64, junk),
      Payload: fc.oneof(
        junk,
        fc.record({
          body: fc.oneof(
            base64,
            fc.json({ maxDepth: 2 }).map((j) => Buffer.from(j).toString('base64')),
            fc.constant(Buffer.from('{"kind":"hashedrekord","apiVersion":"0.0.1"}').toString('base64')),
          ),
          integratedTime: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 5 })),
          logIndex: fc.oneof(fc.integer(), fc.string({ maxLength: 5 })),
          logID: fc.oneof(hex64, fc.string({ maxLength: 10 })),
        }),
      ),
    })
    .map((r) => JSON.stringify(r)),
)
const pem = fc.oneof(
  junk,
  fc.oneof(base64, junk).map((body) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`),
)
const annotations = fc.record(
  {
    [CosignAnnotation.signature]: fc.oneof(base64, junk, fc.constant('')),
    [CosignAnnotation.certificate]: pem,
    [CosignAnnotation.chain]: pem,
    [CosignAnnotation.rekorBundle]: rekorBundle,
    [CosignAnnotation.rfc3161Timestamp]: fc.oneof(
      junk,
      fc.oneof(base64, junk).map((s) => JSON.stringify({ SignedRFC3161Timestamp: s })),
    ),
    predicateType: fc.string({ maxLength: 30 }),
    other: junk,
  },
  { requiredKeys: [] },
)
/** Mostly well-formed annotations, each field hostile now and then: reaches the deeper paths. */
const mostlyGood = <T>(good: fc.Arbitrary<T>) => fc.oneof({ weight: 4, arbitrary: good }, { weight: 1, arbitrary: junk })
const goodRekor = fc.record({ set: base64, time: fc.integer({ min: 0 }), index: fc.integer({ min: 0 }), logID: hex64 }).map(({ set, time, index, logID }) =>
  JSON.stringify({
    SignedEntryTimestamp: set,
    Payload: { body: Buffer.from('{"kind":"hashedrekord","apiVersion":"0.0.1","spec":{}}').toString('base64'), integratedTime: time, logIndex: index, logID },
  }),
)
const plausibleAnnotations = fc.record(
  {
    [CosignAnnotation.signature]: mostlyGood(base64.filter((s) => s.length > 0)),
    [CosignAnnotation.certificate]: mostlyGood(
      fc.uint8Array({ minLength: 1, maxLength: 200 }).map((der) => `-----BEGIN CERTIFICATE-----\n${b64(der)}\n-----END CERTIFICATE-----\n`),
    ),
    [CosignAnnotation.rekorBundle]: mostlyGood(goodRekor),
    [CosignAnnotation.rfc3161Timestamp]: mostlyGood(base64.map((s) => JSON.stringify({ SignedRFC3161Timestamp: s }))),
  },
  { requiredKeys: [CosignAnnotation.signature] },
)
const anyAnnotations = fc.oneof(annotations, plausibleAnnotations)
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.json({ maxDepth: 4 }).map((j) => Buffer.from(j)),
)
/** A DSSE envelope, well-formed in places and hostile in others. */
const envelope = fc.oneof(
  bytes,
  fc
    .record(
      {
        payloadType: fc.oneof(fc.constant('application/vnd.in-toto+json'), junk),
        payload: fc.oneof(base64, junk),
        signatures: fc.oneof(junk, fc.array(fc.oneof(junk, fc.record({ sig: fc.oneof(base64, junk), keyid: junk }, { requiredKeys: [] })), { maxLength: 3 })),
      },
      { requiredKeys: [] },
    )
    .map((e) => Buffer.from(JSON.stringify(e))),
)

/** A plausible in-toto statement about IMAGE (or not), and an envelope around it, hostile in places. */
const statement = fc
  .record({
    about: fc.oneof(fc.constant(IMAGE.slice(7)), hex64),
    predicateType: fc.oneof(fc.constant('https://slsa.dev/provenance/v1'), fc.string({ maxLength: 20 })),
    predicate: fc.jsonValue({ maxDepth: 3 }),
  })
  .map(({ about, predicateType, predicate }) =>
    JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [{ name: 'x', digest: { sha256: about } }], predicateType, predicate }),
  )
const plausibleEnvelope = fc
  .record({
    payloadType: mostlyGood(fc.constant('application/vnd.in-toto+json')),
    payload: mostlyGood(statement.map((st) => Buffer.from(st).toString('base64'))),
    signatures: mostlyGood(fc.array(fc.record({ sig: mostlyGood(base64.filter((x) => x.length > 0)), keyid: fc.string({ maxLength: 8 }) }), { minLength: 1, maxLength: 3 })),
  })
  .map((e) => Buffer.from(JSON.stringify(e)))
const anyEnvelope = fc.oneof(envelope, plausibleEnvelope)

t.test('the .sig decoder: only LegacyFormatError, and a bundle is bound to the payload and signature given', async (t) => {
  let bundles = 0
  fc.assert(
    fc.property(bytes, anyAnnotations, (payload, notes) => {
      const bundle = decoded(() => legacySignatureBundle(Buffer.from(payload), notes as Record<string, string>))
      if (!bundle) return
      bundles++
      const digest = createHash('sha256').update(payload).digest('base64')
      if (bundle.messageSignature?.messageDigest?.digest !== digest) throw new Error('the bundle is not over the payload')
      if (bundle.messageSignature.signature !== notes[CosignAnnotation.signature]) throw new Error('the signature is not the annotation')
    }),
    { numRuns: RUNS },
  )
  t.ok(bundles > 0, `${bundles} of ${RUNS} inputs decoded, each bound to its payload`)
})

t.test('the .att decoder: only LegacyFormatError, and only from a DSSE envelope', async (t) => {
  let decodedEnvelopes = 0
  fc.assert(
    fc.property(anyEnvelope, anyAnnotations, (raw, notes) => {
      const bundles = decoded(() => legacyAttestationBundles(Buffer.from(raw), notes as Record<string, string>))
      if (!bundles) return
      decodedEnvelopes++
      const doc = JSON.parse(Buffer.from(raw).toString('utf8')) as { payloadType?: unknown; payload?: unknown; signatures?: unknown[] }
      if (typeof doc.payloadType !== 'string' || typeof doc.payload !== 'string' || !Array.isArray(doc.signatures) || doc.signatures.length !== bundles.length) {
        throw new Error(`${bundles.length} bundles from ${Buffer.from(raw).toString('utf8').slice(0, 200)}`)
      }
      for (const b of bundles) if (b.dsseEnvelope?.payload !== doc.payload) throw new Error('an envelope payload was changed')
    }),
    { numRuns: RUNS },
  )
  fc.assert(
    fc.property(fc.oneof(base64, junk), (p) => void envelopePredicateType(p)),
    { numRuns: RUNS },
  )
  t.ok(decodedEnvelopes > 0, `${decodedEnvelopes} of ${RUNS} envelopes decoded, each from a real DSSE shape; ${RUNS} predicate-type probes`)
})

t.test('no candidate made of random material verifies, and verification never throws', async (t) => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey
  const material: AuthorityMaterial = { type: 'key', keys: [{ key }], requireTlog: false }
  const origin = { repository: 'fuzz/app', via: 'sig-tag', manifestDigest: IMAGE } as const
  let tried = 0
  fc.assert(
    fc.property(bytes, anyAnnotations, anyEnvelope, (payload, notes, raw) => {
      const candidates: Candidate[] = []
      const sig = decoded(() => legacySignatureBundle(Buffer.from(payload), notes as Record<string, string>))
      if (sig) candidates.push({ kind: 'signature', format: 'cosign-legacy', origin, bundle: sig, payload: Buffer.from(payload) })
      for (const bundle of decoded(() => legacyAttestationBundles(Buffer.from(raw), notes as Record<string, string>)) ?? []) {
        candidates.push({ kind: 'attestation', format: 'cosign-legacy', origin, bundle })
      }
      for (const c of candidates) {
        tried++
        const evidence = verifyCandidate(c, material, IMAGE)
        if (evidence.ok || !evidence.code) throw new Error(`random material verified: ${JSON.stringify(evidence)}`)
      }
    }),
    { numRuns: RUNS },
  )
  t.ok(tried > 0, `${tried} candidates from random material, none verified, each refused with a code`)
})

t.test('discovery over a registry that answers garbage finds nothing and never throws', async (t) => {
  const limits: DiscoveryLimits = { manifestBytes: 4096, signatureManifestBytes: 4096, signatureLayerBytes: 4096, bundleBytes: 4096, maxSignatures: 8, maxReferrers: 8 }
  /** A registry whose every document is `garbage`, served under a manifest media type. */
  const answering = (garbage: Uint8Array, mediaType: string, referrers: boolean): RegistryClient => {
    const fetched = (): FetchedManifest => ({ bytes: Buffer.from(garbage), digest: digestOf(garbage), mediaType })
    return {
      name: 'fuzz.test',
      getManifest: async () => fetched(),
      getReferrers: async () => (referrers ? fetched() : undefined),
      getBlobBytes: async () => Buffer.from(garbage),
      getBlob: async () => undefined,
      listTags: async () => undefined,
    }
  }
  let runs = 0
  let candidates = 0
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 400 }),
      fc.constantFrom(MediaType.ociManifest, MediaType.ociIndex, MediaType.dockerManifest, 'application/octet-stream'),
      fc.boolean(),
      async (garbage, mediaType, referrers) => {
        runs++
        const found = await discoverSignatures(answering(garbage, mediaType, referrers), 'fuzz/app', IMAGE, limits)
        if (found.candidates.length > 0) throw new Error(`a candidate from garbage: ${JSON.stringify(found.candidates[0])}`)
      },
    ),
    { numRuns: 500 },
  )
  // A registry with a well-formed `.sig` manifest whose layer and annotations are random: whatever
  // candidates that makes, none verifies.
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey
  const material: AuthorityMaterial = { type: 'key', keys: [{ key }], requireTlog: false }
  await fc.assert(
    fc.asyncProperty(bytes, anyAnnotations, async (layer, notes) => {
      const layerBytes = Buffer.from(layer)
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: MediaType.ociManifest,
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(Buffer.from('{}')), size: 2 },
          layers: [{ mediaType: MediaType.cosignSimpleSigning, digest: digestOf(layerBytes), size: layerBytes.length, annotations: notes }],
        }),
      )
      const client: RegistryClient = {
        name: 'fuzz.test',
        getManifest: async (_repo, ref) => (ref.endsWith('.sig') ? { bytes: manifest, digest: digestOf(manifest), mediaType: MediaType.ociManifest } : undefined),
        getReferrers: async () => undefined,
        getBlobBytes: async () => layerBytes,
        getBlob: async () => undefined,
        listTags: async () => undefined,
      }
      const found = await discoverSignatures(client, 'fuzz/app', IMAGE, limits)
      for (const c of found.candidates) {
        candidates++
        if (verifyCandidate(c, material, IMAGE).ok) throw new Error('a random signature verified')
      }
    }),
    { numRuns: 500 },
  )
  t.pass(`${runs} garbage registries found nothing; ${candidates} candidates from random .sig layers, none verified`)
})

t.test('the duplicate-key scan: silent on JSON.stringify output, finds every injected duplicate', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (value) => firstDuplicateKey(JSON.stringify(value)) === undefined),
    { numRuns: RUNS },
  )
  // An object with `key` twice (the second spelt with escapes or not), nested anywhere.
  const spelling = (key: string) =>
    fc.constantFrom(
      JSON.stringify(key),
      JSON.stringify(key).replace(/[a-z]/, (c) => `\\u00${c.charCodeAt(0).toString(16)}`),
    )
  const withDuplicate = fc
    .tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), fc.jsonValue({ maxDepth: 2 }), fc.jsonValue({ maxDepth: 2 }), fc.integer({ min: 0, max: 3 }))
    .chain(([key, a, b, around, depth]) =>
      spelling(key).map((second) => {
        let text = `{"x":${JSON.stringify(around)},${JSON.stringify(key)}:${JSON.stringify(a)},"y":[1,"${'\\"'}"],${second}:${JSON.stringify(b)}}`
        for (let i = 0; i < depth; i++) text = `[{"wrap":${text}}]`
        return { key, text }
      }),
    )
  fc.assert(
    fc.property(withDuplicate, ({ key, text }) => {
      JSON.parse(text) // valid JSON
      const found = firstDuplicateKey(text)
      // "x" or "y" may be the key itself: then that is the duplicate found first.
      if (found !== key && !(found === 'x' && key === 'x') && !(found === 'y' && key === 'y')) throw new Error(`${text}: found ${found}, not ${key}`)
    }),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} clean documents, ${RUNS} with a duplicate`)
})

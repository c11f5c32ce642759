// Keyless signing for tests: @sigstore/mock's Fulcio (v2 API), Rekor and TSA on one loopback HTTP
// server, @sigstore/sign (the real signing library) as the client, and a Sigstore TrustedRoot
// document built from the mock's keys (write it to a trusted_root.json for an offline trust root).
// Also stores the results in a registry the way cosign does: a legacy `.sig` tag with the
// certificate, Rekor SET and RFC 3161 timestamp in annotations, and Sigstore bundles as OCI 1.1
// referrers listed in the fallback tag `sha256-<hex>` (docker-registry has no referrers API).
import { createHash, generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { bundleToJSON, type SerializedBundle } from '@sigstore/bundle'
import { fulcioHandler, initializeCA, initializeCTLog, initializeTLog, initializeTSA, rekorHandler, tsaHandler, type HandlerFn } from '@sigstore/mock'
import { DSSEBundleBuilder, FulcioSigner, MessageSignatureBundleBuilder, RekorWitness, TSAWitness } from '@sigstore/sign'
import { getManifest, pushBlob, pushManifest, sha256 } from './images.ts'
import type { Teardown } from './proc.ts'

export const MOCK_ISSUER = 'https://token.actions.githubusercontent.com'
export const MOCK_SUBJECT = 'https://github.com/example/app/.github/workflows/release.yml@refs/heads/main'
const REKOR_URL = 'http://rekor.mock.test'

const b64 = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' })

/**
 * The mock TSA writes genTime with trailing zeros of the milliseconds dropped (".12Z"), which
 * @sigstore/core's parser refuses (it wants exactly three digits): one timestamp in ten would fail.
 * A fixed clock with 123 ms avoids that; it is set ahead so that certificates issued within 30 s
 * (valid from their issuance, for ten minutes) cover it.
 */
export function tsaClock(): Date {
  return new Date(Math.floor(Date.now() / 1000) * 1000 + 30_123)
}

export interface MockAuthorities {
  ca: Awaited<ReturnType<typeof initializeCA>>
  ctlog: Awaited<ReturnType<typeof initializeCTLog>>
  tlog: Awaited<ReturnType<typeof initializeTLog>>
  tsa: Awaited<ReturnType<typeof initializeTSA>> | undefined
}

/**
 * @sigstore/mock's Fulcio CA with its CT log, a Rekor and (unless `tsa: false`) a TSA, in process,
 * each with a fresh P-256 key. `caClock` backdates the CA and CT log; `withCTLog: false` gives
 * certificates without an SCT.
 */
export async function mockAuthorities(options: { caClock?: Date; withCTLog?: boolean; tsa?: boolean } = {}): Promise<MockAuthorities> {
  const ctlog = await initializeCTLog(p256(), options.caClock)
  const ca = await initializeCA(p256(), options.withCTLog === false ? undefined : ctlog, options.caClock)
  const tlog = await initializeTLog(REKOR_URL, p256())
  const tsa = options.tsa === false ? undefined : await initializeTSA(p256(), tsaClock())
  return { ca, ctlog, tlog, tsa }
}

/** A Sigstore TrustedRoot document naming the authorities' keys; `url` is where they are served. */
export function mockTrustedRoot(authorities: MockAuthorities, url = 'https://sigstore.mock.test'): object {
  const { ca, ctlog, tlog, tsa } = authorities
  const start = '2019-01-01T00:00:00Z'
  const logKey = (spki: Buffer) => ({ rawBytes: b64(spki), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } })
  return {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{ baseUrl: REKOR_URL, hashAlgorithm: 'SHA2_256', publicKey: logKey(tlog.publicKey), logId: { keyId: createHash('sha256').update(tlog.publicKey).digest('base64') } }],
    certificateAuthorities: [
      { subject: { organization: 'sigstore.mock', commonName: 'sigstore' }, uri: url, certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] }, validFor: { start } },
    ],
    ctlogs: [{ baseUrl: url, hashAlgorithm: 'SHA2_256', publicKey: logKey(ctlog.publicKey), logId: { keyId: b64(ctlog.logID) } }],
    timestampAuthorities: tsa
      ? [
          {
            subject: { organization: 'sigstore.mock', commonName: 'tsa' },
            uri: url,
            certChain: { certificates: [{ rawBytes: b64(tsa.intCertificate) }, { rawBytes: b64(tsa.rootCertificate) }] },
            validFor: { start },
          },
        ]
      : [],
  }
}

export interface MockSigstore {
  /** A Sigstore TrustedRoot document naming the mock's CA, CT log, Rekor and TSA. */
  trustedRoot: object
  /** A message-signature bundle over `data` (certificate, SCT, Rekor entry with SET, TSA timestamp). */
  signMessage(data: Buffer, subject?: string): Promise<SerializedBundle>
  /** A DSSE bundle over an in-toto statement (Rekor `intoto` entry, as cosign 2 makes them). */
  signStatement(statement: object, subject?: string): Promise<SerializedBundle>
}

/**
 * The authorities served over loopback HTTP (Fulcio v2 API, Rekor v1, TSA) with @sigstore/sign as
 * the client. `tsa: false` leaves the timestamp out of bundles and trusted root: the TSA's clock is
 * fixed, so a test that signs long after start-up should not use one.
 */
export async function startMockSigstore(t: Teardown, options: { tsa?: boolean } = {}): Promise<MockSigstore> {
  const authorities = await mockAuthorities({ tsa: options.tsa })
  const { ca, tlog, tsa } = authorities
  const handlers = new Map<string, HandlerFn>([fulcioHandler(ca), rekorHandler(tlog), ...(tsa ? [tsaHandler(tsa)] : [])].map((h) => [h.path, h.fn] as const))
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

  // An OIDC token as the mock Fulcio reads it: unsigned, with iss and sub.
  const token = (sub: string) => {
    const now = Math.floor(Date.now() / 1000)
    return `${[
      { alg: 'none', typ: 'JWT' },
      { iss: MOCK_ISSUER, sub, aud: 'sigstore', iat: now, exp: now + 600 },
    ]
      .map((p) => Buffer.from(JSON.stringify(p)).toString('base64url'))
      .join('.')}.`
  }
  // DSSE bundles use Rekor `intoto` entries (cosign 2's choice): the mock Rekor stores the proposed
  // entry as the body, which for `intoto` already is the canonical form a real Rekor would keep.
  const builderOptions = (subject: string, entryType?: 'intoto') => ({
    signer: new FulcioSigner({ identityProvider: { getToken: async () => token(subject) }, fulcioBaseURL: url, retry: false }),
    witnesses: [new RekorWitness({ rekorBaseURL: url, retry: false, ...(entryType ? { entryType } : {}) }), ...(tsa ? [new TSAWitness({ tsaBaseURL: url, retry: false })] : [])],
  })
  return {
    trustedRoot: mockTrustedRoot(authorities, url),
    signMessage: async (data, subject = MOCK_SUBJECT) => bundleToJSON(await new MessageSignatureBundleBuilder(builderOptions(subject)).create({ data })),
    signStatement: async (statement, subject = MOCK_SUBJECT) =>
      bundleToJSON(await new DSSEBundleBuilder(builderOptions(subject, 'intoto')).create({ data: Buffer.from(JSON.stringify(statement)), type: 'application/vnd.in-toto+json' })),
  }
}

/** The `.sig` layer annotations cosign writes for a keyless signature. */
function cosignAnnotations(bundle: SerializedBundle): Record<string, string> {
  const certificate = bundle.verificationMaterial.certificate?.rawBytes ?? bundle.verificationMaterial.x509CertificateChain!.certificates[0]!.rawBytes
  const entry = bundle.verificationMaterial.tlogEntries[0]!
  return {
    'dev.cosignproject.cosign/signature': bundle.messageSignature!.signature,
    'dev.sigstore.cosign/certificate': `-----BEGIN CERTIFICATE-----\n${certificate}\n-----END CERTIFICATE-----\n`,
    'dev.sigstore.cosign/bundle': JSON.stringify({
      SignedEntryTimestamp: entry.inclusionPromise!.signedEntryTimestamp,
      Payload: {
        body: entry.canonicalizedBody,
        integratedTime: Number(entry.integratedTime),
        logIndex: Number(entry.logIndex),
        logID: Buffer.from(entry.logId.keyId, 'base64').toString('hex'),
      },
    }),
    'dev.sigstore.cosign/rfc3161timestamp': JSON.stringify({
      SignedRFC3161Timestamp: bundle.verificationMaterial.timestampVerificationData!.rfc3161Timestamps[0]!.signedTimestamp,
    }),
  }
}

export interface Subject {
  mediaType: string
  digest: string
  size: number
}

/**
 * Signs `subject` keylessly as cosign does: simple-signing payload in a `sha256-<hex>.sig` manifest.
 * Needs a mock with a TSA (cosign's annotations carry the timestamp).
 */
export async function pushKeylessSignature(
  sigstore: MockSigstore,
  registryUrl: string,
  repo: string,
  dockerReference: string,
  subject: Subject,
  signer = MOCK_SUBJECT,
): Promise<void> {
  const payload = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': dockerReference }, image: { 'docker-manifest-digest': subject.digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  )
  const bundle = await sigstore.signMessage(payload, signer)
  const config = await pushBlob(registryUrl, repo, '{}')
  const layer = await pushBlob(registryUrl, repo, payload)
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', ...layer, annotations: cosignAnnotations(bundle) }],
  }
  await pushManifest(registryUrl, repo, `sha256-${subject.digest.slice(7)}.sig`, manifest, manifest.mediaType)
}

/**
 * Attaches a Sigstore bundle to `subject` as an OCI 1.1 referrer, added to the fallback tag
 * `sha256-<hex>` (kept with what it listed before; docker-registry has no referrers API).
 * Returns the referrer's digest.
 */
export async function pushBundleReferrer(registryUrl: string, repo: string, subject: Subject, bundle: SerializedBundle): Promise<string> {
  const BUNDLE = 'application/vnd.dev.sigstore.bundle.v0.3+json'
  const EMPTY = 'application/vnd.oci.empty.v1+json'
  const empty = await pushBlob(registryUrl, repo, '{}')
  const layer = await pushBlob(registryUrl, repo, JSON.stringify(bundle))
  const predicateType = bundle.dsseEnvelope
    ? (JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8')) as { predicateType?: string }).predicateType
    : undefined
  // The layout real cosign 2.5 `attest --new-bundle-format` writes to docker-registry (bytes read
  // back from it): descriptor fields in go-containerregistry's order (mediaType, size, digest), the
  // bundle's type repeated on the config descriptor, the manifest's annotations, artifactType last.
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: EMPTY, size: empty.size, digest: empty.digest, artifactType: BUNDLE },
    layers: [{ mediaType: BUNDLE, size: layer.size, digest: layer.digest }],
    annotations: {
      'dev.sigstore.bundle.content': bundle.dsseEnvelope ? 'dsse-envelope' : 'message-signature',
      ...(predicateType ? { 'dev.sigstore.bundle.predicateType': predicateType } : {}),
      'org.opencontainers.image.created': new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
    },
    subject: { mediaType: subject.mediaType, size: subject.size, digest: subject.digest },
    artifactType: BUNDLE,
  }
  const bytes = Buffer.from(JSON.stringify(manifest))
  const pushed = await pushManifest(registryUrl, repo, sha256(bytes), bytes, manifest.mediaType)
  const tag = `sha256-${subject.digest.slice(7)}`
  const existing = await getManifest(registryUrl, repo, tag, 'application/vnd.oci.image.index.v1+json')
  const listed = existing.status === 200 ? (JSON.parse(Buffer.from(existing.bytes).toString()) as { manifests: object[] }).manifests : []
  // As cosign writes the fallback index: no annotations, the entry typed with the config's (empty) type.
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [...listed, { mediaType: manifest.mediaType, size: pushed.size, digest: pushed.digest, artifactType: EMPTY }],
  }
  await pushManifest(registryUrl, repo, tag, index, index.mediaType)
  return pushed.digest
}

/** Attests `subject` keylessly with a Sigstore bundle v0.3 referrer (DSSE over an in-toto statement). */
export async function pushKeylessAttestation(
  sigstore: MockSigstore,
  registryUrl: string,
  repo: string,
  subject: Subject,
  predicateType: string,
  predicate: object,
): Promise<string> {
  const statement = { _type: 'https://in-toto.io/Statement/v1', subject: [{ name: repo, digest: { sha256: subject.digest.slice(7) } }], predicateType, predicate }
  return pushBundleReferrer(registryUrl, repo, subject, await sigstore.signStatement(statement))
}

// Keyless signatures for the benchmarks: @sigstore/mock's Fulcio (certificates with embedded SCTs)
// and Rekor (entries with signed inclusion promises) served over loopback HTTP, the real signing
// library @sigstore/sign talking to them, and a trusted_root.json holding the mock's keys for
// trustpull to load. Each image gets what cosign 3 writes by default: a Sigstore bundle v0.3 (DSSE,
// predicate https://sigstore.dev/cosign/sign/v1) as an OCI referrer, listed in the `sha256-<hex>`
// fallback index because docker-registry 2.8 has no referrers API.
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { bundleToJSON } from '@sigstore/bundle'
import { fulcioHandler, initializeCA, initializeCTLog, initializeTLog, rekorHandler, type HandlerFn } from '@sigstore/mock'
import { DSSEBundleBuilder, FulcioSigner, RekorWitness } from '@sigstore/sign'
import { pushBlob, pushManifest, type PushedImage } from '../../test/helpers/images.ts'
import type { Scope } from './harness.ts'

export const KEYLESS_ISSUER = 'https://token.actions.githubusercontent.com'
export const KEYLESS_SUBJECT = 'https://github.com/bench-org/app/.github/workflows/release.yml@refs/heads/main'
const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1'
const BUNDLE_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json'

const b64 = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
const spki = (key: KeyObject): Buffer => key.export({ format: 'der', type: 'spki' })
const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' })

export interface KeylessSigner {
  /** A trusted_root.json with the mock's CA and log keys, for trustpull's `trustRoots[].file`. */
  trustRootFile: string
  /** Signs `image` keylessly and stores the bundle beside it in the registry. */
  sign(registryUrl: string, image: PushedImage): Promise<void>
}

export async function startKeylessSigner(scope: Scope): Promise<KeylessSigner> {
  const keys = { ca: p256(), ct: p256(), tlog: p256() }
  const ctlog = await initializeCTLog(keys.ct)
  const ca = await initializeCA(keys.ca, ctlog)
  const tlog = await initializeTLog('http://rekor.bench.test', keys.tlog)
  const handlers = new Map<string, HandlerFn>([fulcioHandler(ca), rekorHandler(tlog)].map((h) => [h.path, h.fn] as const))
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
  scope.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  const start = '2019-01-01T00:00:00Z'
  const logKey = (key: KeyObject) => ({ rawBytes: b64(spki(key)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } })
  const trustRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [{ baseUrl: 'http://rekor.bench.test', hashAlgorithm: 'SHA2_256', publicKey: logKey(keys.tlog.publicKey), logId: { keyId: createHash('sha256').update(spki(keys.tlog.publicKey)).digest('base64') } }],
    certificateAuthorities: [{ subject: { organization: 'sigstore.mock', commonName: 'sigstore' }, uri: url, certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] }, validFor: { start } }],
    ctlogs: [{ baseUrl: url, hashAlgorithm: 'SHA2_256', publicKey: logKey(keys.ct.publicKey), logId: { keyId: b64(ctlog.logID) } }],
    timestampAuthorities: [],
  }
  const dir = await scope.tempDir('trustpull-bench-keyless-')
  const trustRootFile = join(dir, 'trusted_root.json')
  writeFileSync(trustRootFile, JSON.stringify(trustRoot))

  // An OIDC token as the mock Fulcio reads it: unsigned, with iss and sub.
  const token = () =>
    [{ alg: 'none', typ: 'JWT' }, { iss: KEYLESS_ISSUER, sub: KEYLESS_SUBJECT, aud: 'sigstore', iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600 }]
      .map((part) => Buffer.from(JSON.stringify(part)).toString('base64url'))
      .join('.') + '.'
  const builder = new DSSEBundleBuilder({
    signer: new FulcioSigner({ identityProvider: { getToken: async () => token() }, fulcioBaseURL: url, retry: false }),
    witnesses: [new RekorWitness({ rekorBaseURL: url, retry: false, entryType: 'intoto' })],
  })

  return {
    trustRootFile,
    async sign(registryUrl, image) {
      const statement = {
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: image.repo, digest: { sha256: image.digest.slice(7) } }],
        predicateType: COSIGN_SIGN_PREDICATE,
        predicate: {},
      }
      const bundle = bundleToJSON(await builder.create({ data: Buffer.from(JSON.stringify(statement)), type: 'application/vnd.in-toto+json' }))
      const empty = await pushBlob(registryUrl, image.repo, '{}')
      const layer = await pushBlob(registryUrl, image.repo, JSON.stringify(bundle))
      const referrer = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        artifactType: BUNDLE_TYPE,
        config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
        layers: [{ mediaType: BUNDLE_TYPE, ...layer }],
        subject: { mediaType: image.mediaType, digest: image.digest, size: image.size },
      }
      const pushed = await pushManifest(registryUrl, image.repo, `bundle-${image.digest.slice(7, 19)}`, referrer, referrer.mediaType)
      const index = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        manifests: [{ mediaType: referrer.mediaType, digest: pushed.digest, size: pushed.size, artifactType: BUNDLE_TYPE }],
      }
      await pushManifest(registryUrl, image.repo, `sha256-${image.digest.slice(7)}`, index, index.mediaType)
    },
  }
}

/** A policy for images under `glob`: keyless, by the bench's CI identity, under the mock's root. */
export function keylessPolicy(glob: string, trustRootRef = 'bench-sigstore'): Record<string, unknown> {
  return {
    name: 'keyless-ci',
    images: [{ glob }],
    authorities: [{ name: 'release-workflow', keyless: { trustRootRef, identities: [{ issuer: KEYLESS_ISSUER, subject: KEYLESS_SUBJECT }] } }],
  }
}

// Attack corpus, signature side: hostile signature material in a real docker-registry, read by
// trustpull through a fault proxy. Every case asserts that the image is refused (403 DENIED with
// the reason, or 502/503/504 when the upstream misbehaved), that no manifest bytes and no digest
// leave the proxy, and that the proxy stays healthy. Signatures are made in cosign's own legacy
// format with node:crypto keys, so a payload can be crafted byte by byte (duplicate keys, invalid
// UTF-8, deep nesting) and still carry a valid signature from the trusted key.
import t from 'tap'
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { MediaTypes, pushBlob, pushImage, pushManifest, sha256, type PushedImage } from '../helpers/images.ts'
import type { Teardown } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { oneRequest as get, ociError, type Answer, type OciError } from '../helpers/one-request.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'hostile.test'
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json'
const DSSE = 'application/vnd.dsse.envelope.v1+json'
const COSIGN_SIG_ARTIFACT = 'application/vnd.dev.cosign.artifact.sig.v1+json'
const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature'
const GiB = 1024 ** 3

type Asserts = Pick<typeof t, 'equal' | 'match' | 'ok' | 'notOk'>

/**
 * The refusal every hostile case must end in: the status and OCI code, a JSON error body, no
 * Docker-Content-Digest, and none of the hostile bytes in what was sent.
 */
function refused(t: Asserts, res: Answer, status: number, code: string, hostile: (Buffer | Uint8Array | string)[] = []): OciError {
  t.equal(res.status, status, `answered ${status}`)
  t.equal(res.headers['content-type'], 'application/json', 'with an OCI error body')
  t.notOk(res.headers['docker-content-digest'], 'claiming no digest')
  const err = ociError(res)
  t.equal(err.code, code, `code ${code}`)
  for (const bytes of hostile) {
    const needle = Buffer.from(bytes)
    t.notOk(needle.length > 16 && res.body.includes(needle), 'no byte of the hostile content left the proxy')
  }
  return err
}

/** All the reasons of a DENIED answer, as one string to match against. */
function reasons(err: OciError): string {
  return [err.message, ...(err.detail?.reasons ?? [])].join('\n')
}

// ---------------------------------------------------------------------------------------------
// cosign's legacy signature format, made by hand

const trusted = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const untrusted = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const trustedPem = trusted.publicKey.export({ type: 'spki', format: 'pem' }).toString()

function payloadFor(repo: string, digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': `${UPSTREAM}/${repo}` }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  )
}

const sigTag = (digest: string, suffix = '.sig') => `${digest.replace(':', '-')}${suffix}`

/** Pushes a `.sig` (or `.att`) manifest whose layers are `layers`, under the image digest's tag. */
async function pushSignatureManifest(
  registryUrl: string,
  repo: string,
  imageDigest: string,
  layers: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[],
  suffix = '.sig',
): Promise<{ digest: string; bytes: Uint8Array }> {
  const config = await pushBlob(registryUrl, repo, '{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}')
  const manifest = { schemaVersion: 2, mediaType: MediaTypes.ociManifest, config: { mediaType: MediaTypes.ociConfig, ...config }, layers }
  return pushManifest(registryUrl, repo, sigTag(imageDigest, suffix), manifest, MediaTypes.ociManifest)
}

/** A legacy cosign signature: the payload as the layer, signed (by default) with the trusted key. */
async function attachSignature(registryUrl: string, repo: string, imageDigest: string, payload: Buffer, key: KeyObject = trusted.privateKey) {
  const layer = await pushBlob(registryUrl, repo, payload)
  const annotations = { [SIGNATURE_ANNOTATION]: sign('sha256', payload, key).toString('base64') }
  return pushSignatureManifest(registryUrl, repo, imageDigest, [{ mediaType: SIMPLE_SIGNING, ...layer, annotations }])
}

function pae(payloadType: string, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${payload.length} `), payload])
}

/** A legacy `.att` attestation: a DSSE envelope layer over `statement`, signed with `key`. */
async function attachAttestation(registryUrl: string, repo: string, imageDigest: string, statement: Buffer, key: KeyObject) {
  const payloadType = 'application/vnd.in-toto+json'
  const envelope = Buffer.from(
    JSON.stringify({ payloadType, payload: statement.toString('base64'), signatures: [{ keyid: '', sig: sign('sha256', pae(payloadType, statement), key).toString('base64') }] }),
  )
  const layer = await pushBlob(registryUrl, repo, envelope)
  return pushSignatureManifest(
    registryUrl,
    repo,
    imageDigest,
    [{ mediaType: DSSE, ...layer, annotations: { predicateType: 'https://slsa.dev/provenance/v1', [SIGNATURE_ANNOTATION]: '' } }],
    '.att',
  )
}

/** `{"a":{"a":...}}` nested `depth` times around `inner`. */
function nested(depth: number, inner = '1'): string {
  return '{"a":'.repeat(depth) + inner + '}'.repeat(depth)
}

/** A server on another origin that sends `GiB` bytes of a blob for as long as anyone reads. */
async function startEndlessOrigin(t: Teardown): Promise<{ url: string; written: () => number }> {
  let written = 0
  const chunk = Buffer.alloc(64 * 1024, 0x41)
  const sockets = new Set<Socket>()
  const server = createServer((req, res) => {
    req.resume()
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(req.url?.includes('declared') ? { 'content-length': String(GiB) } : {}) })
    const pump = (): void => {
      while (!res.destroyed && written < GiB) {
        written += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
    }
    pump()
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  )
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, written: () => written }
}

// ---------------------------------------------------------------------------------------------

const registry = await startRegistry(t)
const front = await startFaultProxy(t, registry.url)
const redis = await startRedis(t)
const policies = [
  { name: 'signed', images: [{ glob: `${UPSTREAM}/attack/**` }], authorities: [{ key: { data: trustedPem } }] },
  {
    name: 'provenance',
    images: [{ glob: `${UPSTREAM}/attested/**` }],
    authorities: [{ key: { data: trustedPem }, attestations: [{ name: 'slsa', predicateType: 'slsaprovenance1' }] }],
  },
]
const config = {
  upstreams: [{ name: UPSTREAM, url: front.url, default: true }],
  policies,
  cache: { url: redis.url },
  timeouts: { connect: '2s', headers: '2s', body: '2s' },
}
const proxy = await startProxy(t, config)
t.afterEach(() => front.setFault(undefined))

let count = 0
async function image(prefix = 'attack'): Promise<PushedImage> {
  return pushImage(registry.url, `${prefix}/s${++count}`, 'v1', { layerSize: 2048 })
}
const manifestUrl = (img: PushedImage, ref = img.tag!) => `${proxy.url}/v2/${img.repo}/manifests/${ref}`

/** The proxy answers and still has Redis: no hostile input took either down. */
async function stillHealthy(t: Asserts): Promise<void> {
  t.equal((await get(`${proxy.url}/healthz`)).status, 200, 'the proxy still answers')
  const metrics = (await get(`${proxy.url}/metrics`)).body.toString('utf8')
  t.match(metrics, /^trustpull_redis_up 1$/m, 'and still counts Redis as up')
}

t.test('control: an image signed with the trusted key is served, byte for byte', async (t) => {
  const img = await image()
  await attachSignature(registry.url, img.repo, img.digest, payloadFor(img.repo, img.digest))
  const res = await get(manifestUrl(img))
  t.equal(res.status, 200)
  t.equal(res.headers['docker-content-digest'], img.digest)
  t.equal(sha256(res.body), img.digest)
})

t.test('duplicate JSON keys in a simple-signing payload signed by the trusted key', async (t) => {
  // A signing service that checks payloads with a first-key-wins parser would approve digest A;
  // JSON.parse (and Go) read the last key, B. A payload that two parsers read differently must
  // approve neither image, whatever key spelling makes the duplicate.
  const variants: [string, (a: string, b: string, repo: string) => string][] = [
    [
      'two exact keys',
      (a, b, repo) =>
        `{"critical":{"identity":{"docker-reference":"${UPSTREAM}/${repo}"},"image":{"docker-manifest-digest":"${a}","docker-manifest-digest":"${b}"},"type":"cosign container image signature"},"optional":null}`,
    ],
    [
      'an escaped spelling of the same key',
      (a, b, repo) =>
        `{"critical":{"identity":{"docker-reference":"${UPSTREAM}/${repo}"},"image":{"docker-manifest-digest":"${a}","docker\\u002dmanifest-digest":"${b}"},"type":"cosign container image signature"},"optional":null}`,
    ],
    [
      'keys that differ only in case (Go matches them case-insensitively)',
      (a, b, repo) =>
        `{"critical":{"identity":{"docker-reference":"${UPSTREAM}/${repo}"},"image":{"docker-manifest-digest":"${a}","Docker-Manifest-Digest":"${b}"},"type":"cosign container image signature"},"optional":null}`,
    ],
    [
      'two critical sections',
      (a, b, repo) =>
        `{"critical":{"identity":{"docker-reference":"${UPSTREAM}/${repo}"},"image":{"docker-manifest-digest":"${a}"},"type":"cosign container image signature"},"critical":{"identity":{"docker-reference":"${UPSTREAM}/${repo}"},"image":{"docker-manifest-digest":"${b}"},"type":"cosign container image signature"},"optional":null}`,
    ],
  ]
  for (const [what, payloadOf] of variants) {
    const repo = `attack/dup${++count}`
    const a = await pushImage(registry.url, repo, 'a', { seed: `${repo}-a` })
    const b = await pushImage(registry.url, repo, 'b', { seed: `${repo}-b` })
    const payload = Buffer.from(payloadOf(a.digest, b.digest, repo))
    await attachSignature(registry.url, repo, a.digest, payload)
    await attachSignature(registry.url, repo, b.digest, payload)
    for (const img of [a, b]) {
      const res = await get(manifestUrl(img))
      const err = refused(t, res, 403, 'DENIED', [img.manifest])
      t.match(reasons(err), /PAYLOAD_INVALID: .*duplicate/, `${what}: image ${img.tag} refused because the payload is ambiguous`)
    }
  }
  await stillHealthy(t)
})

t.test('deeply nested JSON in signature payloads', async (t) => {
  t.test('a forged payload nested 100,000 deep is refused', async (t) => {
    const img = await image()
    const payload = Buffer.from(`{"critical":${nested(100_000)},"optional":null}`)
    await attachSignature(registry.url, img.repo, img.digest, payload, untrusted.privateKey)
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /PAYLOAD_INVALID/)
  })
  t.test('a payload with a 100,000-deep optional section, signed by the trusted key, verifies without a stack overflow', async (t) => {
    const img = await image()
    const good = JSON.parse(payloadFor(img.repo, img.digest).toString('utf8')) as Record<string, unknown>
    const payload = Buffer.from(JSON.stringify({ ...good, optional: null }).replace('"optional":null', `"optional":${nested(100_000)}`))
    await attachSignature(registry.url, img.repo, img.digest, payload)
    const res = await get(manifestUrl(img))
    t.equal(res.status, 200, 'the signature is over these very bytes: served')
    t.equal(sha256(res.body), img.digest)
  })
  t.test('a forged attestation whose predicate is nested 100,000 deep: denied, and the verdict still reaches Redis', async (t) => {
    const img = await image('attested')
    const statement = Buffer.from(
      `{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"x","digest":{"sha256":"${img.digest.slice(7)}"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":${nested(100_000)}}`,
    )
    await attachAttestation(registry.url, img.repo, img.digest, statement, untrusted.privateKey)
    await attachSignature(registry.url, img.repo, img.digest, payloadFor(img.repo, img.digest))
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /attestation "slsa"/)
    await stillHealthy(t)
  })
})

t.test('invalid UTF-8 in signature payloads', async (t) => {
  const cases: [string, (good: Buffer, digest: string) => Buffer, RegExp][] = [
    ['inside the signed digest', (good, digest) => Buffer.from(good.toString('latin1').replace(digest, `${digest}\xff`), 'latin1'), /DIGEST_MISMATCH/],
    ['inside the signature type', (good) => Buffer.from(good.toString('latin1').replace('cosign container', 'cosign\xc0\xa0container'), 'latin1'), /PAYLOAD_INVALID/],
    ['a byte-order mark before the JSON', (good) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), good]), /PAYLOAD_INVALID/],
    ['UTF-16 instead of UTF-8', (good) => Buffer.from(good.toString('utf8'), 'utf16le'), /PAYLOAD_INVALID/],
  ]
  for (const [what, mangle, reason] of cases) {
    const img = await image()
    await attachSignature(registry.url, img.repo, img.digest, mangle(payloadFor(img.repo, img.digest), img.digest))
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), reason, `${what}: refused with the right reason`)
  }
})

t.test('a signature type that is almost right is refused', async (t) => {
  for (const type of ['cosign container image signature ', 'Cosign Container Image Signature', 'cosign container image signature\u0000']) {
    const img = await image()
    const payload = Buffer.from(payloadFor(img.repo, img.digest).toString('utf8').replace('"cosign container image signature"', JSON.stringify(type)))
    await attachSignature(registry.url, img.repo, img.digest, payload)
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /PAYLOAD_INVALID: simple-signing type/)
  }
})

t.test('10,000 referrers: the walk is bounded, and a real signature is still found', async (t) => {
  /** An index of `n` signature-typed entries pointing at manifests that do not exist. */
  const junkIndex = (n: number) =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociIndex,
        manifests: Array.from({ length: n }, (_, i) => ({
          mediaType: MediaTypes.ociManifest,
          artifactType: COSIGN_SIG_ARTIFACT,
          digest: sha256(`junk referrer ${i}`),
          size: 500,
        })),
      }),
    )
  const index = junkIndex(10_000)
  t.ok(index.length > 1024 * 1024, `the index is ${index.length} bytes`)
  const asIndex = { 'content-type': MediaTypes.ociIndex }
  // A proxy with room for the whole list, so that the count limit (not the size limit) is what stops it.
  // Without Redis: the first proxy's cached verdicts must not answer for it.
  const roomy = await startProxy(t, { ...config, cache: {}, limits: { signatureManifestBytes: '4MiB', maxReferrers: 50 } })

  for (const via of ['fallback tag', 'referrers API'] as const) {
    const unsigned = await image()
    const signed = await image()
    await attachSignature(registry.url, signed.repo, signed.digest, payloadFor(signed.repo, signed.digest))
    const listed = new Set([unsigned.digest, signed.digest].map((d) => (via === 'fallback tag' ? `/manifests/${sigTag(d, '')}` : `/referrers/${d}`)))
    front.setFault((req) => ([...listed].some((p) => req.path.endsWith(p)) ? { kind: 'status', status: 200, body: index, headers: asIndex } : undefined))

    const bySize = await get(manifestUrl(unsigned))
    t.match(reasons(refused(t, bySize, 403, 'DENIED', [unsigned.manifest])), /LIMIT_EXCEEDED: .*1048576-byte limit/, `${via}, default limits: the list is refused by its size`)

    // The listed referrers do not exist: upstream trouble, so undecided (502, never cached as a
    // deny: the signature that would pass may be among those not read), and still nothing served.
    front.clearRequests()
    const byCount = await get(`${roomy.url}/v2/${unsigned.repo}/manifests/v1`)
    t.match(refused(t, byCount, 502, 'UPSTREAM_ERROR', [unsigned.manifest]).message, /listed referrer manifest is missing/, `${via}: undecided`)
    const audit = roomy.logs.find((l) => l.audit === 'verdict' && l.digest === unsigned.digest)
    t.match(JSON.stringify(audit?.reasons), /LIMIT_EXCEEDED: 10000 possible signature referrers listed; only the first 50 were read/, `${via}: the audit line gives the count`)
    const reads = front.requests.filter((r) => /\/manifests\/sha256:/.test(r.path)).length
    t.ok(reads <= 50, `${via}: ${reads} referrer manifests were asked for, not 10,000`)

    t.equal((await get(manifestUrl(signed))).status, 200, `${via}: a signed image with the same junk list is still served`)
  }
  await stillHealthy(t)
})

t.test('a 1 GiB "signature layer" is cut off at the layer limit', async (t) => {
  const endless = await startEndlessOrigin(t)
  for (const how of ['declared', 'chunked'] as const) {
    const img = await image()
    // The descriptor claims a small layer; the blob behind it never ends.
    const layer = await pushBlob(registry.url, img.repo, payloadFor(img.repo, img.digest))
    const annotations = { [SIGNATURE_ANNOTATION]: sign('sha256', payloadFor(img.repo, img.digest), trusted.privateKey).toString('base64') }
    await pushSignatureManifest(registry.url, img.repo, img.digest, [{ mediaType: SIMPLE_SIGNING, ...layer, annotations }])
    front.setFault((req) => (req.path.endsWith(`/blobs/${layer.digest}`) ? { kind: 'redirect', location: `${endless.url}/${how}` } : undefined))
    const before = endless.written()
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /LIMIT_EXCEEDED: .*4194304-byte limit/, `${how}: refused at the limit`)
    const read = endless.written() - before
    t.ok(read < 64 * 1024 * 1024, `${how}: the origin wrote ${(read / 2 ** 20).toFixed(1)} MiB before it was cut off, not 1 GiB`)
  }

  t.test('a layer whose descriptor declares 1 GiB is never fetched', async (t) => {
    const img = await image()
    const annotations = { [SIGNATURE_ANNOTATION]: sign('sha256', payloadFor(img.repo, img.digest), trusted.privateKey).toString('base64') }
    const digest = sha256('never fetched')
    // docker-registry refuses a manifest naming a blob it lacks: the front serves this one.
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaTypes.ociManifest,
        config: { mediaType: MediaTypes.ociConfig, digest: sha256('{}'), size: 2 },
        layers: [{ mediaType: SIMPLE_SIGNING, digest, size: GiB, annotations }],
      }),
    )
    front.setFault((req) =>
      req.path.endsWith(`/manifests/${sigTag(img.digest)}`) ? { kind: 'status', status: 200, body: manifest, headers: { 'content-type': MediaTypes.ociManifest } } : undefined,
    )
    front.clearRequests()
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /LIMIT_EXCEEDED: simple-signing layer .* is 1073741824 bytes/)
    t.notOk(
      front.requests.some((r) => r.path.endsWith(digest)),
      'the layer was not asked for',
    )
  })
  await stillHealthy(t)
})

t.test('signature artifacts that are really runnable images', async (t) => {
  t.test('a runnable image stored under a .sig tag is judged as an image: refused, and it is no signature', async (t) => {
    const img = await image()
    const disguised = await pushImage(registry.url, img.repo, sigTag(img.digest), { seed: 'runnable under .sig', layerSize: 4096 })
    const asArtifact = await get(manifestUrl(img, sigTag(img.digest)))
    refused(t, asArtifact, 403, 'DENIED', [disguised.manifest])
    const layer = await get(`${proxy.url}/v2/${img.repo}/blobs/${disguised.layerDigests[0]}`)
    t.match(refused(t, layer, 403, 'DENIED').message, /not referenced by a manifest this proxy has allowed/, 'its layer is refused too')
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /no signatures found/, 'and the image it claims to sign gains nothing from it')
  })

  t.test('a runnable image listed in a referrers fallback index: the index is metadata, the image is still refused', async (t) => {
    const img = await image()
    const runnable = await pushImage(registry.url, img.repo, undefined, { seed: 'runnable in fallback index', layerSize: 4096 })
    const fallback = { schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [{ ...runnable.descriptor, artifactType: COSIGN_SIG_ARTIFACT }] }
    await pushManifest(registry.url, img.repo, sigTag(img.digest, ''), fallback, MediaTypes.ociIndex)
    t.equal((await get(manifestUrl(img, sigTag(img.digest, '')))).status, 200, 'the fallback index itself passes, as signature metadata')
    refused(t, await get(manifestUrl(img, runnable.digest)), 403, 'DENIED', [runnable.manifest])
    for (const digest of [runnable.configDigest, ...runnable.layerDigests]) {
      refused(t, await get(`${proxy.url}/v2/${img.repo}/blobs/${digest}`), 403, 'DENIED')
    }
    const err = refused(t, await get(manifestUrl(img)), 403, 'DENIED', [img.manifest])
    t.match(reasons(err), /no signatures found/, 'its tar layers are no signatures')
  })

  t.test('a tar layer typed as a signature, larger than a signature can be, is not served', async (t) => {
    const img = await image()
    const runnable = await pushImage(registry.url, img.repo, undefined, { seed: 'big tar typed as signature', layerSize: 5 * 1024 * 1024 })
    const tar = runnable.layers[0]!
    const artifact = await pushSignatureManifest(registry.url, img.repo, img.digest, [
      { mediaType: SIMPLE_SIGNING, digest: tar.digest, size: tar.size, annotations: { [SIGNATURE_ANNOTATION]: 'AAAA' } },
    ])
    t.equal((await get(manifestUrl(img, sigTag(img.digest)))).status, 200, 'the artifact manifest passes (no runtime unpacks a simple-signing layer)')
    t.equal(sha256((await get(manifestUrl(img, sigTag(img.digest)))).body), artifact.digest)
    refused(t, await get(`${proxy.url}/v2/${img.repo}/blobs/${tar.digest}`), 403, 'DENIED')
  })
})

// Attack corpus, manifest side: a hostile upstream (a real docker-registry behind the fault proxy)
// lies about bytes, digests and media types, moves tags at the worst moment, and serves documents
// built to confuse parsers. Each case asserts what leaves trustpull: either exactly the bytes a
// verified signature covers, under their own digest, or a clear OCI error without a digest and
// without a byte of the hostile manifest. Signatures are made by the real cosign 2.5 where a plain
// signature will do, and in cosign's format with node:crypto where the signed bytes are crafted.
import t from 'tap'
import { generateKeyPairSync, sign } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy, type FaultChooser } from '../helpers/fault-proxy.ts'
import { MediaTypes, pushBlob, pushImage, pushIndex, pushManifest, sha256, type PushedImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { oneRequest as get, ociError, type Answer, type OciError } from '../helpers/one-request.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'hostile.test'

type Asserts = Pick<typeof t, 'equal' | 'match' | 'ok' | 'notOk'>

/** A refusal: status, OCI code, JSON body, no digest, none of the hostile bytes. */
function refused(t: Asserts, res: Answer, status: number, code: string, hostile: (Uint8Array | string)[] = []): OciError {
  t.equal(res.status, status, `answered ${status}`)
  t.equal(res.headers['content-type'], 'application/json', 'with an OCI error body')
  t.notOk(res.headers['docker-content-digest'], 'claiming no digest')
  const err = ociError(res)
  t.equal(err.code, code, `code ${code}`)
  for (const bytes of hostile) t.notOk(res.body.includes(Buffer.from(bytes)), 'no byte of the hostile manifest left the proxy')
  return err
}

/** Served: exactly these bytes, under their own digest. */
function served(t: Asserts, res: Answer, expected: { digest: string; manifest: Uint8Array }): void {
  t.equal(res.status, 200, 'answered 200')
  t.equal(res.headers['docker-content-digest'], expected.digest, 'under the verified digest')
  t.equal(sha256(res.body), expected.digest, 'with exactly the verified bytes')
  t.ok(Buffer.from(expected.manifest).equals(res.body))
}

const reasons = (err: OciError) => [err.message, ...(err.detail?.reasons ?? [])].join('\n')

// ---------------------------------------------------------------------------------------------

const registry = await startRegistry(t)
const front = await startFaultProxy(t, registry.url)
const keys = await generateKeyPair(await tempDir(t, 'trustpull-attack-keys-'))
// The same key, for signatures over crafted bytes (cosign signs only what a registry holds).
const crafted = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const policies = [
  {
    name: 'signed',
    images: [{ glob: `${UPSTREAM}/app/**` }],
    authorities: [
      { name: 'cosign', key: { data: keys.publicKeyPem } },
      { name: 'crafted', key: { data: crafted.publicKey.export({ type: 'spki', format: 'pem' }).toString() } },
    ],
  },
  { name: 'platforms', images: [{ glob: `${UPSTREAM}/plat/**` }], requirePlatformSignatures: true, authorities: [{ key: { data: keys.publicKeyPem } }] },
]
const proxy = await startProxy(t, { upstreams: [{ name: UPSTREAM, url: front.url, default: true }], policies, timeouts: { connect: '2s', headers: '5s', body: '5s' } })
t.afterEach(() => front.setFault(undefined))

let count = 0
const fresh = (prefix = 'app') => `${prefix}/m${++count}`
const at = (repo: string, digest: string) => `${registry.host}/${repo}@${digest}`
const manifestUrl = (repo: string, ref: string) => `${proxy.url}/v2/${repo}/manifests/${ref}`
const blobUrl = (repo: string, digest: string) => `${proxy.url}/v2/${repo}/blobs/${digest}`

/** A cosign legacy signature over arbitrary manifest bytes' digest, by the crafted key. */
async function signCrafted(repo: string, digest: string): Promise<void> {
  const payload = Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': `${UPSTREAM}/${repo}` }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  )
  const layer = await pushBlob(registry.url, repo, payload)
  const config = await pushBlob(registry.url, repo, '{}')
  const annotations = { 'dev.cosignproject.cosign/signature': sign('sha256', payload, crafted.privateKey).toString('base64') }
  const sig = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: MediaTypes.ociConfig, ...config },
    layers: [{ mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', ...layer, annotations }],
  }
  await pushManifest(registry.url, repo, `${digest.replace(':', '-')}.sig`, sig, MediaTypes.ociManifest)
}

/** A signed image (real cosign) and an unsigned one in the same repository. */
async function signedAndUnsigned(repo = fresh()): Promise<{ signed: PushedImage; unsigned: PushedImage }> {
  const signed = await pushImage(registry.url, repo, 'v1', { seed: `${repo} signed` })
  const unsigned = await pushImage(registry.url, repo, 'unsigned', { seed: `${repo} unsigned` })
  await signImage(at(repo, signed.digest), keys.privateKeyPath)
  return { signed, unsigned }
}

/** Serve `body` with `contentType` (and no digest header) for requests whose path ends with `suffix`. */
function serveInstead(suffix: string, body: Uint8Array | string, contentType: string): FaultChooser {
  return (req) => (req.path.endsWith(suffix) ? { kind: 'status', status: 200, body, headers: { 'content-type': contentType } } : undefined)
}

t.test('control: a signed image is served through the fault proxy', async (t) => {
  const { signed } = await signedAndUnsigned()
  served(t, await get(manifestUrl(signed.repo, 'v1')), signed)
})

t.test('wrong bytes for a digest', async (t) => {
  t.test('a tag answer with an unsigned manifest under the signed digest header: refused as a lie', async (t) => {
    const { signed, unsigned } = await signedAndUnsigned()
    front.setFault((req) => (req.path.endsWith('/manifests/v1') ? { kind: 'replace', body: unsigned.manifest } : undefined))
    const err = refused(t, await get(manifestUrl(signed.repo, 'v1')), 502, 'UPSTREAM_ERROR', [unsigned.manifest])
    t.match(err.message, /do not match its Docker-Content-Digest/)
  })
  t.test('the same swap with the header dropped: trustpull hashes the bytes itself and refuses the unsigned digest', async (t) => {
    const { signed, unsigned } = await signedAndUnsigned()
    front.setFault(serveInstead('/manifests/v1', unsigned.manifest, MediaTypes.ociManifest))
    const err = refused(t, await get(manifestUrl(signed.repo, 'v1')), 403, 'DENIED', [unsigned.manifest])
    t.match(err.message, new RegExp(`${unsigned.digest} denied`), 'the deny names the digest of the bytes actually received')
  })
  t.test('a signature layer with wrong bytes: undecided (502), never allowed; allowed once the upstream is honest', async (t) => {
    const { signed } = await signedAndUnsigned()
    const sig = JSON.parse(
      await (await fetch(`${registry.url}/v2/${signed.repo}/manifests/${signed.digest.replace(':', '-')}.sig`, { headers: { accept: MediaTypes.ociManifest } })).text(),
    ) as { layers: { digest: string }[] }
    const layer = sig.layers[0]!.digest
    front.setFault((req) =>
      req.path.endsWith(`/blobs/${layer}`)
        ? { kind: 'replace', body: (b) => Buffer.from(b.toString('utf8').replace('cosign container image signature', 'cosign container image signaturX')) }
        : undefined,
    )
    const err = refused(t, await get(manifestUrl(signed.repo, 'v1')), 502, 'UPSTREAM_ERROR', [signed.manifest])
    t.match(err.message, /do not match blob/)
    front.setFault(undefined)
    served(t, await get(manifestUrl(signed.repo, 'v1')), signed)
  })
})

t.test('a manifest that changes between HEAD and GET', async (t) => {
  const { signed, unsigned } = await signedAndUnsigned()
  const head = await get(manifestUrl(signed.repo, 'v1'), { method: 'HEAD' })
  t.equal(head.status, 200, 'HEAD: the signed manifest')
  t.equal(head.headers['docker-content-digest'], signed.digest)
  await pushManifest(registry.url, signed.repo, 'v1', unsigned.manifest, MediaTypes.ociManifest)
  const err = refused(t, await get(manifestUrl(signed.repo, 'v1')), 403, 'DENIED', [unsigned.manifest])
  t.match(err.message, new RegExp(`${unsigned.digest} denied`), 'GET by tag: the new bytes are judged on their own')
  served(t, await get(manifestUrl(signed.repo, signed.digest)), signed)
  const again = await get(manifestUrl(signed.repo, 'v1'), { method: 'HEAD' })
  t.equal(again.status, 403, 'a HEAD now is refused too')
  t.notOk(again.headers['docker-content-digest'], 'and claims no digest')
  t.match(String(again.headers['content-length']), /^\d+$/)
})

t.test('an upstream that flips between a signed and an unsigned manifest for one tag, under concurrency', async (t) => {
  const { signed, unsigned } = await signedAndUnsigned()
  let n = 0
  front.setFault((req) =>
    req.path.endsWith('/manifests/v1') && n++ % 2 === 1 ? { kind: 'status', status: 200, body: unsigned.manifest, headers: { 'content-type': MediaTypes.ociManifest } } : undefined,
  )
  // Rounds of concurrent requests (concurrent ones may share one upstream fetch; rounds do not).
  const answers: Answer[] = []
  for (let round = 0; round < 10; round++) answers.push(...(await Promise.all(Array.from({ length: 4 }, () => get(manifestUrl(signed.repo, 'v1'))))))
  const statuses = new Set(answers.map((a) => a.status))
  t.ok(statuses.has(403) && statuses.has(200), `both answers occurred (${[...statuses].join(', ')})`)
  for (const a of answers) {
    if (a.status === 200) {
      t.equal(a.headers['docker-content-digest'], signed.digest)
      t.equal(sha256(a.body), signed.digest)
    } else {
      refused(t, a, 403, 'DENIED', [unsigned.manifest])
    }
  }
})

t.test('a tag that moves while its signature is being fetched', async (t) => {
  t.test('from signed to unsigned: the bytes that were verified are served, under their digest', async (t) => {
    const { signed, unsigned } = await signedAndUnsigned()
    front.setFault((req) => (req.path.endsWith(`/manifests/${signed.digest.replace(':', '-')}.sig`) ? { kind: 'delay', ms: 1_500 } : undefined))
    const pending = get(manifestUrl(signed.repo, 'v1'))
    await sleep(500)
    await pushManifest(registry.url, signed.repo, 'v1', unsigned.manifest, MediaTypes.ociManifest)
    served(t, await pending, signed)
    front.setFault(undefined)
    refused(t, await get(manifestUrl(signed.repo, 'v1')), 403, 'DENIED', [unsigned.manifest])
  })
  t.test('from unsigned to signed: the unsigned bytes are refused, the signed ones are never served under the old answer', async (t) => {
    const { signed, unsigned } = await signedAndUnsigned()
    await pushManifest(registry.url, signed.repo, 'v1', unsigned.manifest, MediaTypes.ociManifest)
    front.setFault((req) => (req.path.endsWith(`/manifests/${unsigned.digest.replace(':', '-')}.sig`) ? { kind: 'delay', ms: 1_500 } : undefined))
    const pending = get(manifestUrl(signed.repo, 'v1'))
    await sleep(500)
    await pushManifest(registry.url, signed.repo, 'v1', signed.manifest, MediaTypes.ociManifest)
    const err = refused(t, await pending, 403, 'DENIED', [unsigned.manifest, signed.manifest])
    t.match(err.message, new RegExp(`${unsigned.digest} denied`))
    front.setFault(undefined)
    served(t, await get(manifestUrl(signed.repo, 'v1')), signed)
  })
})

t.test('an index with an unsigned platform under requirePlatformSignatures', async (t) => {
  const repo = fresh('plat')
  const index = await pushIndex(registry.url, repo, 'v1', { layerSize: 4096 })
  const [amd64, arm64] = index.children as [PushedImage, PushedImage]
  await signImage(at(repo, index.digest), keys.privateKeyPath)
  await signImage(at(repo, amd64.digest), keys.privateKeyPath)
  const err = refused(t, await get(manifestUrl(repo, 'v1')), 403, 'DENIED', [index.manifest])
  t.match(reasons(err), /platform linux\/arm64: no signatures found/, 'the index is refused, naming the unsigned platform, though the index itself is signed')
  served(t, await get(manifestUrl(repo, amd64.digest)), amd64)
  refused(t, await get(manifestUrl(repo, arm64.digest)), 403, 'DENIED', [arm64.manifest])
  for (const digest of [arm64.configDigest, ...arm64.layerDigests]) refused(t, await get(blobUrl(repo, digest)), 403, 'DENIED')
})

t.test('media-type confusion', async (t) => {
  const { signed } = await signedAndUnsigned()
  const indexBody = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [signed.descriptor] }))
  const undeclared = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(signed.manifest).toString('utf8')), mediaType: undefined }))
  const cases: [string, Uint8Array, string, RegExp][] = [
    [
      'Content-Type says index, the body is a manifest naming itself one',
      signed.manifest,
      MediaTypes.ociIndex,
      /declares media type .* but was served as "application\/vnd.oci.image.index.v1\+json"/,
    ],
    ['Content-Type says index, the body is a manifest without mediaType', undeclared, MediaTypes.ociIndex, /malformed image index/],
    ['Content-Type says manifest, the body is an index', indexBody, MediaTypes.ociManifest, /declares media type/],
    ['Content-Type says Docker manifest list, the body is an OCI manifest', undeclared, MediaTypes.dockerManifestList, /malformed image index/],
    [
      'a schema-1 signed manifest',
      Buffer.from('{"schemaVersion":1,"name":"x","tag":"v1","fsLayers":[],"signatures":[]}'),
      'application/vnd.docker.distribution.manifest.v1+prettyjws',
      /unsupported manifest media type/,
    ],
    ['text/html', Buffer.from('<html><body>{"schemaVersion":2}</body></html>'), 'text/html', /unsupported manifest media type/],
  ]
  for (const [what, body, contentType, why] of cases) {
    front.setFault(serveInstead('/manifests/v1', body, contentType))
    const err = refused(t, await get(manifestUrl(signed.repo, 'v1')), 502, 'UPSTREAM_ERROR', [body])
    t.match(err.message, why, what)
  }
  front.setFault((req) => (req.path.endsWith('/manifests/v1') ? { kind: 'headers', set: { 'content-type': 'application/json' } } : undefined))
  const generic = await get(manifestUrl(signed.repo, 'v1'))
  served(t, generic, signed)
  t.equal(generic.headers['content-type'], MediaTypes.ociManifest, 'a generic Content-Type: the type the document declares is the one served')
})

t.test('duplicate "layers" keys in a signed manifest: blobs are vouched for as Go clients read it', async (t) => {
  const repo = fresh()
  const a = await pushImage(registry.url, repo, 'a', { seed: `${repo} a` })
  const b = await pushImage(registry.url, repo, 'b', { seed: `${repo} b` })
  const layer = (img: PushedImage) => JSON.stringify(img.layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })))
  const bytes = Buffer.from(
    `{"schemaVersion":2,"mediaType":"${MediaTypes.ociManifest}","config":{"mediaType":"${MediaTypes.ociConfig}","digest":"${b.configDigest}","size":${b.config.length}},"layers":${layer(a)},"layers":${layer(b)}}`,
  )
  const pushed = await pushManifest(registry.url, repo, 'dup', bytes, MediaTypes.ociManifest)
  await signCrafted(repo, pushed.digest)
  served(t, await get(manifestUrl(repo, 'dup')), { digest: pushed.digest, manifest: bytes })
  t.equal((await get(blobUrl(repo, b.layerDigests[0]!))).status, 200, 'the last "layers" (what containerd reads) is served')
  refused(t, await get(blobUrl(repo, a.layerDigests[0]!)), 403, 'DENIED')
})

t.test('deeply nested JSON in a manifest', async (t) => {
  const { signed } = await signedAndUnsigned()
  const depth = 100_000
  for (const [what, body, contentType] of [
    [
      'an image manifest',
      `{"schemaVersion":2,"mediaType":"${MediaTypes.ociManifest}","config":${JSON.stringify(signed.descriptor)},"layers":[],"x":${'['.repeat(depth)}${']'.repeat(depth)}}`,
      MediaTypes.ociManifest,
    ],
    ['an index', `{"schemaVersion":2,"mediaType":"${MediaTypes.ociIndex}","manifests":[],"annotations":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`, MediaTypes.ociIndex],
  ] as const) {
    front.setFault(serveInstead('/manifests/v1', body, contentType))
    const res = await get(manifestUrl(signed.repo, 'v1'))
    t.ok(res.status === 403 || res.status === 502, `${what}: refused (${res.status})`)
    refused(t, res, res.status, res.status === 403 ? 'DENIED' : 'UPSTREAM_ERROR', [body.slice(0, 200)])
  }
  t.equal((await get(`${proxy.url}/healthz`)).status, 200, 'the proxy is still up')
})

t.test('invalid UTF-8 and byte-order marks in manifests', async (t) => {
  const repo = fresh()
  const img = await pushImage(registry.url, repo, 'v1')
  const text = Buffer.from(img.manifest).toString('latin1')
  const withAnnotation = (value: string) => Buffer.from(text.replace(/}$/, `,"annotations":{"note":"${value}"}}`), 'latin1')
  const invalid = withAnnotation('caf\xe9 \xff\xfe \xc0\xaf')

  const unsigned = await pushManifest(registry.url, repo, 'invalid-unsigned', invalid, MediaTypes.ociManifest)
  t.match(refused(t, await get(manifestUrl(repo, 'invalid-unsigned')), 403, 'DENIED', [invalid]).message, unsigned.digest, 'unsigned: refused under the digest of its raw bytes')

  const signedInvalid = withAnnotation('\xff signed anyway \xfe')
  const pushed = await pushManifest(registry.url, repo, 'invalid-signed', signedInvalid, MediaTypes.ociManifest)
  await signCrafted(repo, pushed.digest)
  served(t, await get(manifestUrl(repo, 'invalid-signed')), { digest: pushed.digest, manifest: signedInvalid })

  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), img.manifest])
  front.setFault(serveInstead('/manifests/bom', bom, MediaTypes.ociManifest))
  t.match(refused(t, await get(manifestUrl(repo, 'bom')), 502, 'UPSTREAM_ERROR', [bom]).message, /not valid JSON/, 'a byte-order mark: not JSON')
})

t.test('oversized lists in a manifest are refused by the parser, not walked', async (t) => {
  const { signed } = await signedAndUnsigned()
  const layer = signed.layers[0]!
  const many = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaTypes.ociManifest,
      config: signed.descriptor,
      layers: Array.from({ length: 10_001 }, () => ({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size })),
    }),
  )
  front.setFault(serveInstead('/manifests/v1', many, MediaTypes.ociManifest))
  t.match(refused(t, await get(manifestUrl(signed.repo, 'v1')), 502, 'UPSTREAM_ERROR', [many.subarray(0, 200)]).message, /malformed image manifest: layers/)
})

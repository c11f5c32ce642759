// Policy semantics as a client sees them through trustpull, with real cosign signatures: warn mode,
// noMatchPolicy, static exceptions, several matching policies (all must pass), several authorities
// (any one suffices), blobs of refused images, verdict caching, and blobs.requireAllowedManifest.
import t from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy, type TestProxy } from '../helpers/trustpull.ts'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
  /** `errors[0]` of an error answer. */
  error?: { code: string; message: string; detail?: unknown }
}

async function fetchFrom(proxy: TestProxy, path: string, method: 'GET' | 'HEAD' = 'GET'): Promise<Answer> {
  const res = await request(`${proxy.url}/v2/${path}`, { method, headers: { accept: ACCEPT_ANY_MANIFEST } })
  const body = Buffer.from(await res.body.arrayBuffer())
  const error = res.statusCode >= 400 && body.length > 0 ? (JSON.parse(body.toString()) as { errors: Answer['error'][] }).errors[0] : undefined
  return { status: res.statusCode, headers: res.headers, body, error }
}

const manifestOf = (proxy: TestProxy, image: PushedImage, ref = image.tag!) => fetchFrom(proxy, `${image.repo}/manifests/${ref}`)
const verdictsFor = (proxy: TestProxy, image: PushedImage) => proxy.logs.filter((l) => l.audit === 'verdict' && l.digest === image.digest)
const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

t.test('policy modes and semantics through the proxy', async (t) => {
  const registry = await startRegistry(t)
  const [keyA, keyB] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
  const unsigned = await pushImage(registry.url, 'library/unsigned', '1')
  const signedA = await pushImage(registry.url, 'library/signed-a', '1', { layerSize: 16 * 1024 })
  const signedAB = await pushImage(registry.url, 'library/signed-ab', '1')
  const unmatched = await pushImage(registry.url, 'other/unsigned', '1')
  const bootstrap = await pushImage(registry.url, 'system/bootstrap', '1')
  const blocked = await pushImage(registry.url, 'blocked/app', '1')
  const ref = (image: PushedImage) => `${registry.host}/${image.repo}@${image.digest}`
  await Promise.all([
    signImage(ref(signedA), keyA.privateKeyPath),
    signImage(ref(signedAB), keyA.privateKeyPath).then(() => signImage(ref(signedAB), keyB.privateKeyPath)),
    signImage(ref(blocked), keyA.privateKeyPath),
  ])
  const keyPolicy = (name: string, glob: string, pem: string, extra: Record<string, unknown> = {}) => ({
    name,
    images: [{ glob }],
    authorities: [{ key: { data: pem } }],
    ...extra,
  })

  t.test('mode: warn serves an unsigned image with a Warning header and audits it as warn', async (t) => {
    const proxy = await startProxy(t, hubConfig(registry.url, { policies: [keyPolicy('lib', 'library/*', keyA.publicKeyPem, { mode: 'warn' })] }))
    const r = await manifestOf(proxy, unsigned)
    t.equal(r.status, 200)
    t.equal(r.headers['docker-content-digest'], unsigned.digest)
    t.same(r.body, Buffer.from(unsigned.manifest))
    t.match(r.headers.warning, /^299 trustpull "not verified \(warn mode\): policy +lib +: no signatures found/)
    const again = await manifestOf(proxy, unsigned)
    t.ok(again.headers.warning, 'every answer warns, cached verdict or not')
    t.match(verdictsFor(proxy, unsigned)[0], { result: 'warn', policies: [{ name: 'lib', mode: 'warn', result: 'fail' }], reasons: [/no signatures found/] })
    const blob = await fetchFrom(proxy, `library/unsigned/blobs/${unsigned.layerDigests[0]}`)
    t.equal(blob.status, 200, 'its blobs are served')

    const ok = await manifestOf(proxy, signedA)
    t.equal(ok.status, 200)
    t.equal(ok.headers.warning, undefined, 'a verified image carries no warning')
    t.match(verdictsFor(proxy, signedA)[0], { result: 'allow' })
  })

  t.test('noMatchPolicy decides images no policy matches, and only those', async (t) => {
    const expected = {
      deny: { status: 403, warning: undefined },
      warn: { status: 200, warning: /^299 trustpull "not verified \(warn mode\): no policy matches docker\.io\/other\/unsigned \(noMatchPolicy: warn\)"$/ },
      allow: { status: 200, warning: undefined },
    } as const
    for (const [noMatchPolicy, want] of Object.entries(expected)) {
      const proxy = await startProxy(t, hubConfig(registry.url, { noMatchPolicy, policies: [keyPolicy('lib', 'library/*', keyA.publicKeyPem)] }))
      const r = await manifestOf(proxy, unmatched)
      t.equal(r.status, want.status, `${noMatchPolicy}: status`)
      if (want.warning) t.match(r.headers.warning, want.warning, `${noMatchPolicy}: warning`)
      else t.equal(r.headers.warning, undefined, `${noMatchPolicy}: no warning`)
      if (noMatchPolicy === 'deny') {
        t.equal(r.error?.code, 'DENIED')
        t.equal(r.error?.message, `docker.io/other/unsigned@${unmatched.digest} denied: no policy matches docker.io/other/unsigned (noMatchPolicy: deny)`)
      }
      t.match(verdictsFor(proxy, unmatched)[0], { result: noMatchPolicy, policies: [] }, `${noMatchPolicy}: audited`)
      t.equal((await manifestOf(proxy, unsigned)).status, 403, `${noMatchPolicy}: an image a policy matches is still judged by it`)
    }
  })

  t.test('static exceptions: pass admits an unsigned image, fail refuses a signed one', async (t) => {
    const proxy = await startProxy(
      t,
      hubConfig(registry.url, {
        policies: [
          { name: 'bootstrap', images: [{ glob: 'system/*' }], authorities: [{ static: { action: 'pass' } }] },
          { name: 'blocked', images: [{ glob: 'blocked/**' }], authorities: [{ static: { action: 'fail', message: 'blocked by the security team' } }] },
          keyPolicy('lib', 'library/*', keyA.publicKeyPem),
        ],
      }),
    )
    const pass = await manifestOf(proxy, bootstrap)
    t.equal(pass.status, 200)
    t.equal(pass.headers.warning, undefined)
    t.match(verdictsFor(proxy, bootstrap)[0], { result: 'allow', policies: [{ name: 'bootstrap', result: 'pass' }] })

    const fail = await manifestOf(proxy, blocked)
    t.equal(fail.status, 403)
    t.equal(fail.error?.message, `docker.io/blocked/app@${blocked.digest} denied: policy "blocked": blocked by the security team`)
    t.equal((await manifestOf(proxy, unsigned)).status, 403, 'the exception covers only what it names')
  })

  t.test('every matching policy must pass', async (t) => {
    const proxy = await startProxy(
      t,
      hubConfig(registry.url, { policies: [keyPolicy('team-a', 'library/**', keyA.publicKeyPem), keyPolicy('team-b', 'library/signed-*', keyB.publicKeyPem)] }),
    )
    const onlyA = await manifestOf(proxy, signedA)
    t.equal(onlyA.status, 403, 'signed by A only: team-b fails')
    t.match(onlyA.error?.message, `docker.io/library/signed-a@${signedA.digest} denied: policy "team-b": no signature verified (1 found)`)
    t.match(verdictsFor(proxy, signedA)[0], {
      result: 'deny',
      policies: [
        { name: 'team-a', result: 'pass' },
        { name: 'team-b', result: 'fail' },
      ],
    })

    const both = await manifestOf(proxy, signedAB)
    t.equal(both.status, 200, 'signed by A and B: both pass')
    t.match(verdictsFor(proxy, signedAB)[0], {
      result: 'allow',
      policies: [
        { name: 'team-a', result: 'pass' },
        { name: 'team-b', result: 'pass' },
      ],
      reasons: ['allowed by policies "team-a", "team-b"'],
    })
  })

  t.test('within a policy any one authority suffices', async (t) => {
    const proxy = await startProxy(
      t,
      hubConfig(registry.url, {
        policies: [
          {
            name: 'either',
            images: [{ glob: 'library/*' }],
            authorities: [
              { name: 'team-b', key: { data: keyB.publicKeyPem } },
              { name: 'team-a', key: { data: keyA.publicKeyPem } },
            ],
          },
        ],
      }),
    )
    t.equal((await manifestOf(proxy, signedA)).status, 200, 'the second authority verifies it')
    t.match(verdictsFor(proxy, signedA)[0], { result: 'allow', signers: [{ policy: 'either', authority: 'team-a' }] })
    const none = await manifestOf(proxy, unsigned)
    t.equal(none.status, 403)
    t.match(none.error?.message, 'policy "either": team-b: no signatures found for sha256:', 'every authority is named')
    t.match(none.error?.message, '; team-a: no signatures found')
  })

  t.test("blobs: only an allowed manifest opens them, a refused image's blobs stay refused", async (t) => {
    const proxy = await startProxy(t, hubConfig(registry.url, { policies: [keyPolicy('lib', 'library/*', keyA.publicKeyPem)] }))
    const blobPaths = (image: PushedImage) => [image.configDigest, ...image.layerDigests].map((d) => `${image.repo}/blobs/${d}`)

    for (const path of blobPaths(signedA)) t.equal((await fetchFrom(proxy, path)).status, 403, `before its manifest was allowed: ${path}`)
    t.equal((await manifestOf(proxy, signedA)).status, 200)
    for (const path of blobPaths(signedA)) {
      const r = await fetchFrom(proxy, path)
      t.equal(r.status, 200, `after: ${path}`)
      t.equal(sha256(r.body), path.split('/blobs/')[1], 'the blob itself')
    }

    t.equal((await manifestOf(proxy, unsigned)).status, 403)
    for (const path of blobPaths(unsigned)) {
      for (const method of ['GET', 'HEAD'] as const) {
        const r = await fetchFrom(proxy, path, method)
        t.equal(r.status, 403, `${method} ${path}`)
        if (method === 'GET') t.match(r.error, { code: 'DENIED', message: /is not referenced by a manifest this proxy has allowed/ })
      }
    }
  })

  t.test('blobs.requireAllowedManifest: false serves any blob, while manifests are still judged', async (t) => {
    const proxy = await startProxy(t, hubConfig(registry.url, { blobs: { requireAllowedManifest: false }, policies: [keyPolicy('lib', 'library/*', keyA.publicKeyPem)] }))
    t.equal((await manifestOf(proxy, unsigned)).status, 403)
    const layer = unsigned.layerDigests[0]!
    const r = await fetchFrom(proxy, `library/unsigned/blobs/${layer}`)
    t.equal(r.status, 200)
    t.equal(sha256(r.body), layer)
  })

  t.test('verdict caching: a second pull of the same digest does not verify again', async (t) => {
    const upstream = await startFaultProxy(t, registry.url)
    const proxy = await startProxy(t, { upstreams: [{ name: 'docker.io', url: upstream.url, default: true }], policies: [keyPolicy('lib', 'library/*', keyA.publicKeyPem)] })
    const signatureLookups = () => upstream.requests.filter((r) => r.path.includes('/referrers/') || /\/manifests\/sha256-[a-f0-9]{64}(\.sig|\.att)?$/.test(r.path))

    t.equal((await manifestOf(proxy, signedA)).status, 200)
    t.ok(signatureLookups().length > 0, 'the first pull looked up signatures upstream')
    upstream.clearRequests()

    for (const reference of ['1', signedA.digest]) {
      t.equal((await manifestOf(proxy, signedA, reference)).status, 200, reference)
    }
    t.equal(signatureLookups().length, 0, 'later pulls looked up no signatures')
    const verdicts = verdictsFor(proxy, signedA)
    t.equal(verdicts.length, 3, 'one audit line per verdict')
    t.match(verdicts, [
      { cached: false, result: 'allow' },
      { cached: true, result: 'allow' },
      { cached: true, result: 'allow' },
    ])

    // A deny is cached as well (for denyTTL).
    for (let i = 0; i < 2; i++) t.equal((await manifestOf(proxy, unsigned)).status, 403)
    t.match(verdictsFor(proxy, unsigned), [
      { cached: false, result: 'deny' },
      { cached: true, result: 'deny' },
    ])
  })
})

// The trust-root file replaced with garbage, six ways, and reloaded while 20 clients pull keyless
// images (signed by @sigstore/mock's Fulcio and Rekor through @sigstore/sign) that verify against
// it. Every reload is refused, the old root stays in force (images never seen before still verify
// against it, mid-load), and no request fails. A valid new root then does take effect.
import t from 'tap'
import { createHash } from 'node:crypto'
import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { MOCK_ISSUER, MOCK_SUBJECT, pushKeylessSignature, startMockSigstore } from '../helpers/mock-sigstore.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'registry.test'
const CLIENTS = 20
const LOAD_MS = 6_000

const registry = await startRegistry(t)
const sigstore = await startMockSigstore(t)
const dir = await tempDir(t)
const rootFile = join(dir, 'trusted_root.json')
await writeFile(rootFile, JSON.stringify(sigstore.trustedRoot))

async function keylessImages(prefix: string, n: number): Promise<PushedImage[]> {
  const images = await Promise.all(Array.from({ length: n }, (_, i) => pushImage(registry.url, `keyless/${prefix}${i}`, 'v1', { layerSize: 16 * 1024 })))
  for (const img of images) await pushKeylessSignature(sigstore, registry.url, img.repo, `${UPSTREAM}/${img.repo}`, img)
  return images
}
const warm = await keylessImages('warm', 3)
/** Never pulled before a garbage reload: verified after it, so against whichever root is in force. */
const cold = await keylessImages('cold', 6)
const late = await keylessImages('late', 1)

const proxy = await startProxy(t, {
  upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
  trustRoots: [{ name: 'corp', file: rootFile }],
  policies: [
    {
      name: 'keyless',
      images: [{ glob: `${UPSTREAM}/keyless/**` }],
      authorities: [{ keyless: { trustRootRef: 'corp', identities: [{ issuer: MOCK_ISSUER, subject: MOCK_SUBJECT }] } }],
    },
  ],
})
const runtime = proxy.running.runtime
const agent = new Agent({ connections: CLIENTS + 2, headersTimeout: 15_000, bodyTimeout: 15_000 })
t.teardown(() => agent.close())

/** GET (or HEAD) through the proxy; true when the answer is exactly the image's. */
async function pulled(img: PushedImage, kind: number): Promise<{ ok: boolean; status: number }> {
  const byDigest = kind % 4 === 2
  const blob = kind % 4 === 3
  const method = kind % 4 === 1 ? 'HEAD' : 'GET'
  const path = blob ? `blobs/${img.layerDigests[0]}` : `manifests/${byDigest ? img.digest : 'v1'}`
  const res = await request(`${proxy.url}/v2/${img.repo}/${path}`, { dispatcher: agent, method, headers: { accept: ACCEPT_ANY_MANIFEST } })
  const body = Buffer.from(await res.body.arrayBuffer())
  const expected = blob ? img.layerDigests[0] : img.digest
  const got = method === 'HEAD' ? res.headers['docker-content-digest'] : `sha256:${createHash('sha256').update(body).digest('hex')}`
  return { ok: res.statusCode === 200 && got === expected, status: res.statusCode }
}

const GARBAGE: [string, string | Buffer | null][] = [
  ['truncated JSON', '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "certificateAuthorities": [{"certChain": '],
  ['random bytes', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256))],
  ['an empty file', ''],
  ['the right media type, the wrong shape', '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","certificateAuthorities":"nope","tlogs":7}'],
  [
    'a CA certificate that is not DER',
    JSON.stringify({
      ...sigstore.trustedRoot,
      certificateAuthorities: [
        { subject: {}, uri: 'x', certChain: { certificates: [{ rawBytes: Buffer.from('not a certificate').toString('base64') }] }, validFor: { start: '2019-01-01T00:00:00Z' } },
      ],
    }),
  ],
  ['no file at all', null],
]

t.test('garbage trust roots reloaded under load: refused, the old root in force, no request fails', async (t) => {
  for (const img of warm) for (let k = 0; k < 4; k++) t.ok((await pulled(img, k)).ok, `warm-up ${img.repo} ${k}`)
  const fingerprint = runtime.policySet().fingerprint

  const started = Date.now()
  const results: boolean[] = []
  const workers = Array.from({ length: CLIENTS }, async (_, w) => {
    for (let i = 0; Date.now() - started < LOAD_MS; i++) results.push((await pulled(warm[(w + i) % warm.length]!, w + i)).ok)
  })
  const reloads = (async () => {
    for (const [i, [what, content]] of GARBAGE.entries()) {
      await sleep(LOAD_MS / (GARBAGE.length + 2))
      if (content === null) await rm(rootFile)
      else await writeFile(rootFile, content)
      await t.rejects(runtime.reload({ ...runtime.config }), `${what}: the reload is refused`)
      t.equal(runtime.policySet().fingerprint, fingerprint, `${what}: the policies and root in force are unchanged`)
      // An image never seen before verifies now, mid-load: against the old root, still in memory.
      t.ok((await pulled(cold[i]!, 0)).ok, `${what}: a keyless image never pulled before still verifies`)
      t.ok(
        proxy.logs.some((l) => l.audit === 'verdict' && l.digest === cold[i]!.digest && l.result === 'allow' && l.cached === false),
        `${what}: verified afresh, not from the cache`,
      )
    }
  })()
  await Promise.all([...workers, reloads])
  const failed = results.filter((ok) => !ok).length
  t.equal(failed, 0, `${results.length} requests during ${GARBAGE.length} refused reloads, none failed`)

  // A valid root of another CA is taken: images signed by the first CA are refused from now on.
  const other = await startMockSigstore(t)
  await writeFile(rootFile, JSON.stringify(other.trustedRoot))
  await runtime.reload({ ...runtime.config })
  t.not(runtime.policySet().fingerprint, fingerprint, 'a valid root is taken')
  t.equal((await pulled(late[0]!, 0)).status, 403, 'and the first CA is no longer trusted')
})

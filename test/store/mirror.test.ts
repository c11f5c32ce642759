// The mirror with a real docker-registry behind a fault proxy (which counts what reaches the
// upstream and takes it down on demand), real skopeo pulls and real cosign signatures: a second
// pull costs the upstream no blob request, 20 clients on one cold blob cost one fetch, an outage
// and a restart are served from the store (tags from their last digest, with a Warning), a stored
// file that rotted is never served whole, and a reload that revokes an image stops its stored
// content at once.
import t from 'tap'

const tap = t
import { createHash } from 'node:crypto'
import { readFile, writeFile, mkdir, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { parseConfig } from '../../src/config/load.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy } from '../helpers/trustpull.ts'

const registry = await startRegistry(t)
const upstream = await startFaultProxy(t, registry.url)
const [keys, otherKeys] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
const image = await pushImage(registry.url, 'app', '1', { layers: 3, layerSize: 4 * 1024 * 1024 })
await signImage(`${registry.host}/app@${image.digest}`, keys.privateKeyPath)
const storePath = join(await tempDir(t), 'store')
const work = await tempDir(t)

const config = (publicKeyPem: string) => ({
  upstreams: [{ name: 'registry.test', url: upstream.url, default: true }],
  storage: { enabled: true, path: storePath, staleIfError: '1h' },
  policies: [{ name: 'signed', images: [{ glob: 'registry.test/**' }], authorities: [{ key: { data: publicKeyPem } }] }],
})
const blobGets = () => upstream.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length
const down = () => upstream.setFault(() => ({ kind: 'status', status: 503 }))
const up = () => upstream.setFault(undefined)
const layerFile = (digest: string) => join(storePath, 'blobs', 'sha256', digest.slice('sha256:'.length))

let proxy = await startProxy(t, config(keys.publicKeyPem))
/** Where the audit lines say each of these blobs came from (the last line for each). */
const blobSources = (digests: string[]) => digests.map((d) => proxy.logs.filter((l) => l.audit === 'blob' && l.digest === d).at(-1)?.source)
const saved = async (kind: string) => (await scrape(proxy.url)).value('trustpull_store_upstream_requests_saved_total', { kind }) ?? 0

t.test('first pull: verified, and every blob stored as a plain file holding exactly its bytes', async (t) => {
  const r = await skopeoCopy(`${proxy.host}/app:1`, join(work, 'pull-1'))
  t.equal(r.code, 0, r.stderr)
  t.equal(r.digest, image.digest)
  await proxy.running.runtime.contentStore?.flush()
  for (const digest of [image.configDigest, ...image.layerDigests]) {
    const bytes = await readFile(layerFile(digest))
    t.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, digest, `blobs/sha256/${digest.slice(7, 19)}… holds its bytes`)
  }
  t.same(await readdir(join(storePath, '_spool')), [], 'no spool file left behind')
  t.same(blobSources(image.layerDigests), ['upstream', 'upstream', 'upstream'], 'audit lines: the layers came from the upstream')
  t.match(
    proxy.logs.find((l) => l.audit === 'verdict' && l.digest === image.digest),
    { source: 'upstream', result: 'allow' },
  )
})

t.test('second pull: no blob request reaches the upstream', async (t) => {
  upstream.clearRequests()
  const savedBefore = await saved('blob')
  const r = await skopeoCopy(`${proxy.host}/app:1`, join(work, 'pull-2'))
  t.equal(r.code, 0, r.stderr)
  t.equal(blobGets(), 0)
  t.same(blobSources(image.layerDigests), ['store', 'store', 'store'], 'audit lines: the layers came from the store')
  t.ok((await saved('blob')) - savedBefore >= 4, 'config and three layers counted as upstream requests saved')
  const metrics = await (await request(`${proxy.url}/metrics`)).body.text()
  t.match(metrics, /trustpull_store_lookups_total\{kind="blob",result="hit"\} [1-9]/)
})

t.test('20 clients starting the same cold blob together: one upstream fetch, every client gets the bytes', async (t) => {
  const cold = await pushImage(registry.url, 'app', 'cold', { layers: 1, layerSize: 8 * 1024 * 1024, seed: 'cold' })
  await signImage(`${registry.host}/app@${cold.digest}`, keys.privateKeyPath)
  const m = await request(`${proxy.url}/v2/app/manifests/cold`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  t.equal(m.statusCode, 200)
  await m.body.dump()
  upstream.clearRequests()
  const layer = cold.layerDigests[0]!
  const savedBefore = await saved('blob')
  const bodies = await Promise.all(
    Array.from({ length: 20 }, async () => {
      const res = await request(`${proxy.url}/v2/app/blobs/${layer}`)
      return {
        status: res.statusCode,
        digest: `sha256:${createHash('sha256')
          .update(Buffer.from(await res.body.arrayBuffer()))
          .digest('hex')}`,
      }
    }),
  )
  t.ok(
    bodies.every((b) => b.status === 200 && b.digest === layer),
    'all 20 got the whole, right blob',
  )
  t.equal(blobGets(), 1)
  t.equal((await saved('blob')) - savedBefore, 19, 'the 19 that did not fetch are counted as upstream requests saved')
})

t.test('upstream down: tags from their last verified digest (Warning 110), digests and blobs from the store; unseen content 503', async (t) => {
  down()
  t.teardown(up)
  const r = await skopeoCopy(`${proxy.host}/app:1`, join(work, 'down-tag'))
  t.equal(r.code, 0, r.stderr)
  t.equal(r.digest, image.digest)
  const byDigest = await skopeoCopy(`${proxy.host}/app@${image.digest}`, join(work, 'down-digest'))
  t.equal(byDigest.code, 0, byDigest.stderr)
  const m = await request(`${proxy.url}/v2/app/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  t.equal(m.statusCode, 200)
  t.match(String(m.headers.warning), /^110 trustpull "served from the mirror's store/)
  await m.body.dump()
  const unseen = await request(`${proxy.url}/v2/other/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  t.equal(unseen.statusCode, 503)
  await unseen.body.dump()
})

t.test('restart on the store with the upstream still down: the verdict is made again from the stored signatures', async (t) => {
  await proxy.running.close()
  down()
  t.teardown(up)
  proxy = await startProxy(tap, config(keys.publicKeyPem))
  const r = await skopeoCopy(`${proxy.host}/app:1`, join(work, 'restarted'))
  t.equal(r.code, 0, r.stderr)
  t.equal(r.digest, image.digest)
  t.ok(
    proxy.logs.some((l) => l.audit === 'verdict' && l.result === 'allow' && l.cached === false),
    'verified again, not from a cache',
  )
  t.ok(
    proxy.logs.some((l) => l.audit === 'verdict' && l.digest === image.digest && l.source === 'store'),
    'the audit line says the manifest came from the store',
  )
  t.same(blobSources(image.layerDigests), ['store', 'store', 'store'])
})

t.test('a stored file with a flipped byte is never served whole, and is fetched again', async (t) => {
  const layer = image.layerDigests[1]!
  const file = layerFile(layer)
  const bytes = await readFile(file)
  bytes[100] = bytes[100]! ^ 0xff
  await writeFile(file, bytes)
  const cut = await request(`${proxy.url}/v2/app/blobs/${layer}`)
    .then(
      async (res) => Buffer.from(await res.body.arrayBuffer()).length,
      () => -1,
    )
    .catch(() => -1)
  t.not(cut, bytes.length, 'the client did not receive the whole wrong blob')
  await proxy.running.runtime.contentStore?.flush()
  const again = await request(`${proxy.url}/v2/app/blobs/${layer}`)
  const body = Buffer.from(await again.body.arrayBuffer())
  t.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, layer, 'the next request gets the right bytes, from the upstream')
})

t.test('a reload that revokes the image stops its stored manifests and blobs at once', async (t) => {
  await proxy.running.runtime.reload(parseConfig(config(otherKeys.publicKeyPem), 'test'))
  const m = await request(`${proxy.url}/v2/app/manifests/${image.digest}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  t.equal(m.statusCode, 403)
  await m.body.dump()
  const b = await request(`${proxy.url}/v2/app/blobs/${image.layerDigests[0]}`)
  t.equal(b.statusCode, 403)
  await b.body.dump()
})

t.test('bad storage config stops start-up naming the key', async (t) => {
  const notADir = join(await tempDir(t), 'file')
  await writeFile(notADir, 'x')
  await t.rejects(startProxy(t, { ...config(keys.publicKeyPem), storage: { enabled: true, path: join(notADir, 'store') } }), /storage\.path/)
  t.throws(() => parseConfig({ storage: { maxSize: 'lots' } }, 'test'), /storage\.maxSize/)
  t.throws(() => parseConfig({ storage: { s3: { region: 'x' } } }, 'test'), /storage\.s3\.bucket/)
})

t.test('what a crash left in the spool is swept at start and never served', async (t) => {
  const dir = join(await tempDir(t), 'crashed')
  await mkdir(join(dir, '_spool'), { recursive: true })
  await writeFile(join(dir, '_spool', 'half.part'), 'half a blob')
  const p = await startProxy(t, { ...config(keys.publicKeyPem), storage: { enabled: true, path: dir } })
  t.same(await readdir(join(dir, '_spool')), [])
  await p.running.close()
})

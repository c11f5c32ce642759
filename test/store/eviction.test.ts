// Eviction under a small storage.maxSize, with a real docker-registry: least recently *used* blobs
// go first (a blob read again moves to the back), a blob being served is never evicted (a blob
// that would need it gone is passed through instead), and evictions are counted in
// trustpull_store_evicted_bytes.
import t from 'tap'
import { createHash } from 'node:crypto'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const MiB = 1024 * 1024
const registry = await startRegistry(t)
const sha = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`
const stored = async (store: string, digest: string) => (await stat(join(store, 'blobs', 'sha256', digest.slice(7))).catch(() => undefined)) !== undefined

async function mirror(t: Teardown, maxSize: string): Promise<{ proxy: TestProxy; store: string }> {
  const store = join(await tempDir(t), 'store')
  const proxy = await startProxy(t, { upstreams: [{ name: 'registry.test', url: registry.url, default: true }], noMatchPolicy: 'allow', storage: { path: store, maxSize } })
  return { proxy, store }
}

/** The manifest (so its blobs are vouched for), then every blob whole, each checked. */
async function pull(proxy: TestProxy, image: PushedImage): Promise<void> {
  const m = await request(`${proxy.url}/v2/${image.repo}/manifests/${image.tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  await m.body.dump()
  if (m.statusCode !== 200) throw new Error(`manifest ${image.repo}: ${m.statusCode}`)
  for (const digest of [image.configDigest, ...image.layerDigests]) await blob(proxy, image.repo, digest)
  await proxy.running.runtime.contentStore?.flush()
}

async function blob(proxy: TestProxy, repo: string, digest: string): Promise<void> {
  const res = await request(`${proxy.url}/v2/${repo}/blobs/${digest}`)
  const body = Buffer.from(await res.body.arrayBuffer())
  if (res.statusCode !== 200 || sha(body) !== digest) throw new Error(`blob ${digest}: ${res.statusCode}`)
}

async function evictedBytes(proxy: TestProxy): Promise<number> {
  const text = await (await request(`${proxy.url}/metrics`)).body.text()
  return Number(/^trustpull_store_evicted_bytes(?:_total)?(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0)
}

t.test('least recently used goes first: a blob read again is kept, the one not read since is evicted', async (t) => {
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => pushImage(registry.url, `lru/${n}`, '1', { layerSize: 2 * MiB, seed: `lru-${n}` })))
  const { proxy, store } = await mirror(t, '5MiB')
  await pull(proxy, a!)
  await pull(proxy, b!)
  await blob(proxy, a!.repo, a!.layerDigests[0]!) // a is used again: b is now the least recently used
  t.equal(await evictedBytes(proxy), 0, 'nothing evicted while everything fits')
  await pull(proxy, c!)
  t.ok(await stored(store, a!.layerDigests[0]!), 'a (read again) is kept')
  t.notOk(await stored(store, b!.layerDigests[0]!), 'b (not read since) is evicted')
  t.ok(await stored(store, c!.layerDigests[0]!), 'c is stored')
  t.ok((await evictedBytes(proxy)) >= b!.layers[0]!.size, 'trustpull_store_evicted_bytes counts it')
  t.ok(proxy.running.runtime.contentStore!.bytes <= 5 * MiB, 'the store stays within maxSize')
  t.ok(proxy.logs.some((l) => l.msg === 'content store: least recently used blobs evicted'))
})

t.test('a blob being served is never evicted: what would need its room is passed through', async (t) => {
  const big = await pushImage(registry.url, 'pinned/big', '1', { layerSize: 24 * MiB, seed: 'pinned-big' })
  const other = await pushImage(registry.url, 'pinned/other', '1', { layerSize: 6 * MiB, seed: 'pinned-other' })
  const bigLayer = big.layerDigests[0]!
  const otherLayer = other.layerDigests[0]!
  const { proxy, store } = await mirror(t, '28MiB')
  await pull(proxy, big)
  t.ok(await stored(store, bigLayer))

  // A client that does not read: 24 MiB is more than the socket buffers hold, so the stored file
  // stays open (pinned) until it does.
  const slow = await request(`${proxy.url}/v2/${big.repo}/blobs/${bigLayer}`)
  t.equal(slow.statusCode, 200)
  await pull(proxy, other)
  t.ok(await stored(store, bigLayer), 'the blob being served is still there')
  t.notOk(await stored(store, otherLayer), 'the other blob was passed through, not stored')
  t.equal(await evictedBytes(proxy), 0)
  t.equal(sha(Buffer.from(await slow.body.arrayBuffer())), big.layerDigests[0], 'the slow client gets the whole blob')

  // Served and closed: now it is the least recently used, and makes room.
  await blob(proxy, other.repo, otherLayer)
  await proxy.running.runtime.contentStore?.flush()
  t.notOk(await stored(store, bigLayer), 'evicted once nobody reads it')
  t.ok(await stored(store, otherLayer), 'the other blob is stored now')
  t.ok((await evictedBytes(proxy)) >= big.layers[0]!.size)
})

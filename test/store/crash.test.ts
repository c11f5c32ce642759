// SIGKILL mid-write: a real trustpull process is killed while a cold blob is filling its store
// (the upstream drips it through a fault proxy), then restarted on the same store. Nothing partial
// is ever served: with the upstream down the blob is 503 (never seen whole), and once it is back
// the blob is fetched again, verified and published whole.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdir, readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startTrustpullProcess } from '../helpers/trustpull.ts'

const LAYER = 4 * 1024 * 1024

const registry = await startRegistry(t)
const upstream = await startFaultProxy(t, registry.url)
const image = await pushImage(registry.url, 'app', '1', { layerSize: LAYER, seed: 'crash' })
const layer = image.layers[0]!
const dir = await tempDir(t)
const store = join(dir, 'store')
const config = {
  upstreams: [{ name: 'registry.test', url: upstream.url, default: true }],
  noMatchPolicy: 'allow',
  storage: { path: store, staleIfError: '1h' },
  log: { level: 'info' },
}
const layerFile = join(store, 'blobs', 'sha256', layer.digest.slice('sha256:'.length))
const isLayerGet = (r: { method: string; path: string }) => r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`)
const spoolBytes = async () => {
  let total = 0
  for (const name of await readdir(join(store, '_spool'))) total += (await stat(join(store, '_spool', name))).size
  return total
}
const sha = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

async function manifest(url: string, reference: string): Promise<number> {
  const res = await request(`${url}/v2/app/manifests/${reference}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  await res.body.dump()
  return res.statusCode
}

t.test('killed while the blob fills: no object published, a partial spool file left behind', async (t) => {
  const first = await startTrustpullProcess(t, dir, config)
  t.equal(await manifest(first.url, '1'), 200)
  // The manifest and its record reach the store in the background: wait for them, so the kill
  // below interrupts the blob only.
  const hex = image.digest.slice('sha256:'.length)
  await waitFor(
    async () =>
      (
        await Promise.all(
          [join(store, 'blobs', 'sha256', hex), join(store, 'repositories', 'registry.test', 'app', '_manifests', 'sha256', hex)].map((f) =>
            stat(f).then(
              () => true,
              () => false,
            ),
          ),
        )
      ).every(Boolean),
    { what: 'the manifest to be stored' },
  )
  // 64 KiB every 20 ms: the 4 MiB layer takes over a second to arrive.
  upstream.setFault((r) => (isLayerGet(r) ? { kind: 'drip', intervalMs: 20, bytesPerTick: 64 * 1024 } : undefined))
  const client = request(`${first.url}/v2/app/blobs/${layer.digest}`)
    .then(async (res) => Buffer.from(await res.body.arrayBuffer()).length)
    .catch(() => -1)
  await waitFor(async () => (await spoolBytes()) > 256 * 1024, { what: 'the fill to be under way' })
  first.daemon.child.kill('SIGKILL')
  await waitFor(() => !first.daemon.running(), { what: 'trustpull to die' })
  const partial = await spoolBytes()
  t.ok(partial > 0 && partial < layer.size, `the spool holds part of the blob (${partial} of ${layer.size} bytes)`)
  await t.rejects(stat(layerFile), { code: 'ENOENT' }, "nothing published under the blob's key")
  t.not(await client, layer.size, 'the client of the killed process did not get a whole blob')
  upstream.setFault(undefined)
})

t.test('restarted on the same store, upstream down: the blob is 503, never the partial bytes', async (t) => {
  upstream.setFault(() => ({ kind: 'status', status: 503 }))
  t.teardown(() => upstream.setFault(undefined))
  const again = await startTrustpullProcess(t, dir, config)
  t.same(await readdir(join(store, '_spool')), [], 'the spool was swept at start')
  // The manifest was stored before the kill: it is served from the store, and vouches for the layer.
  t.equal(await manifest(again.url, image.digest), 200)
  const res = await request(`${again.url}/v2/app/blobs/${layer.digest}`)
  t.equal(res.statusCode, 503)
  await res.body.dump()
  await again.daemon.stop()
})

t.test('restarted, upstream back: the blob is fetched again, verified, published whole', async (t) => {
  const again = await startTrustpullProcess(t, dir, config)
  t.equal(await manifest(again.url, image.digest), 200)
  upstream.clearRequests()
  const res = await request(`${again.url}/v2/app/blobs/${layer.digest}`)
  t.equal(res.statusCode, 200)
  t.equal(sha(Buffer.from(await res.body.arrayBuffer())), layer.digest, 'the client got the right bytes')
  t.equal(upstream.requests.filter(isLayerGet).length, 1, 'fetched from the upstream again')
  await waitFor(async () => (await stat(layerFile).catch(() => undefined))?.size === layer.size, { what: 'the blob to be published' })
  t.equal(sha(await readFile(layerFile)), layer.digest, 'the published file holds exactly the blob')
  upstream.clearRequests()
  const stored = await request(`${again.url}/v2/app/blobs/${layer.digest}`)
  t.equal(sha(Buffer.from(await stored.body.arrayBuffer())), layer.digest)
  t.equal(upstream.requests.filter(isLayerGet).length, 0, 'and then served from the store')
})

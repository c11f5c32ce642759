// A full disk under the store: a real tmpfs too small for the blob (`mount -t tmpfs -o size=8m`),
// and one that fills up while a blob is being written. The pull still succeeds, pass-through; the
// store logs once, trustpull_store_writable drops to 0, /readyz says read-only, nothing crashes.
// Mounting needs root: as another user this file fails, saying so (CI runs it as root).
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, rmdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { run, runOk, tempDir, waitFor, type Teardown } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

if (process.getuid?.() !== 0) {
  throw new Error(`test/store/enospc.test.ts mounts a tmpfs and needs root (uid 0); this is uid ${process.getuid?.()}. Run it as root, as CI does.`)
}

const CANNOT_WRITE = 'content store cannot write: serving pass-through until it can'
const registry = await startRegistry(t)
const upstream = await startFaultProxy(t, registry.url)
const work = await tempDir(t)
const sha = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** A tmpfs of `size` on a fresh directory; unmounted (after the proxy on it closed) when the test ends. */
async function tmpfs(t: Teardown, size: string, before: () => Promise<void>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'trustpull-tmpfs-'))
  await runOk('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir])
  t.teardown(async () => {
    await before()
    if ((await run('umount', [dir])).code !== 0) await run('umount', ['-l', dir])
    await rmdir(dir)
  })
  return dir
}

async function proxyOn(t: Teardown, size: string): Promise<{ proxy: TestProxy; store: string }> {
  const started: { proxy?: TestProxy } = {}
  const store = await tmpfs(t, size, async () => started.proxy?.running.close())
  const proxy = await startProxy(t, { upstreams: [{ name: 'registry.test', url: upstream.url, default: true }], noMatchPolicy: 'allow', storage: { path: store } })
  started.proxy = proxy
  return { proxy, store }
}

const cannotWriteLines = (proxy: TestProxy) => proxy.logs.filter((l) => l.msg === CANNOT_WRITE)

/** What the store says about itself, everywhere it says it: log lines, the gauge, /readyz. */
async function storeState(proxy: TestProxy) {
  const ready = await request(`${proxy.url}/readyz`)
  const body = (await ready.body.json()) as { checks: { store: string } }
  const lines = cannotWriteLines(proxy)
  return { logLines: lines.length, firstLine: lines[0], writable: (await scrape(proxy.url)).value('trustpull_store_writable'), ready: ready.statusCode, store: body.checks.store }
}

const READ_ONLY = {
  logLines: 1,
  firstLine: { level: 'error', reason: /^ENOSPC/ },
  writable: 0,
  ready: 200, // the upstream answers
  store: /^read-only, serving pass-through \(ENOSPC/,
}

t.test('a tmpfs too small for the blob: the pull succeeds pass-through, and keeps succeeding', async (t) => {
  const image = await pushImage(registry.url, 'small-disk', '1', { layerSize: 12 * 1024 * 1024, seed: 'enospc-a' })
  const { proxy, store } = await proxyOn(t, '8m')
  for (const round of [1, 2]) {
    const r = await skopeoCopy(`${proxy.host}/small-disk:1`, join(work, `pull-${round}`))
    t.equal(r.code, 0, r.stderr)
    t.equal(r.digest, image.digest, `pull ${round}`)
  }
  await proxy.running.runtime.contentStore?.flush()
  t.match(await storeState(proxy), READ_ONLY, 'one log line, trustpull_store_writable 0, /readyz says read-only')
  await t.rejects(stat(join(store, 'blobs', 'sha256', image.layerDigests[0]!.slice(7))), { code: 'ENOENT' }, 'the layer was not stored')
  t.same(await readdir(join(store, '_spool')), [], 'no spool file left')
})

t.test('the disk fills while a blob is written: no wrong blob served, the next request passes through, one log line', async (t) => {
  const image = await pushImage(registry.url, 'filling-disk', '1', { layerSize: 8 * 1024 * 1024, seed: 'enospc-b' })
  const layer = image.layers[0]!
  const { proxy, store } = await proxyOn(t, '32m')
  const m = await request(`${proxy.url}/v2/filling-disk/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  t.equal(m.statusCode, 200)
  await m.body.dump()
  await proxy.running.runtime.contentStore?.flush()
  // The layer drips in (64 KiB every 20 ms); once it is being written, something else fills the disk.
  upstream.setFault((r) => (r.method === 'GET' && r.path.endsWith(`/blobs/${layer.digest}`) ? { kind: 'drip', intervalMs: 20, bytesPerTick: 64 * 1024 } : undefined))
  t.teardown(() => upstream.setFault(undefined))
  const first = request(`${proxy.url}/v2/filling-disk/blobs/${layer.digest}`)
    .then(async (res) => sha(Buffer.from(await res.body.arrayBuffer())))
    .catch((err: Error) => `cut: ${err.message}`)
  const spooled = async () => (await Promise.all((await readdir(join(store, '_spool'))).map(async (f) => (await stat(join(store, '_spool', f))).size))).reduce((a, b) => a + b, 0)
  await waitFor(async () => (await spooled()) > 256 * 1024, { what: 'the blob to be spooled' })
  const filler = await run('dd', ['if=/dev/zero', `of=${join(store, 'filler')}`, 'bs=1M'])
  t.match(filler.stderr, /No space left on device/, 'the disk is full')
  const got = await first
  t.ok(got === layer.digest || got.startsWith('cut: '), `the first client got the right blob or was cut, never a wrong one (${got})`)
  upstream.setFault(undefined)
  const again = await request(`${proxy.url}/v2/filling-disk/blobs/${layer.digest}`)
  t.equal(again.statusCode, 200)
  t.equal(sha(Buffer.from(await again.body.arrayBuffer())), layer.digest, 'the next request gets the whole blob, pass-through')
  await proxy.running.runtime.contentStore?.flush()
  t.match(await storeState(proxy), READ_ONLY, 'one log line, trustpull_store_writable 0, /readyz says read-only')
  await t.rejects(stat(join(store, 'blobs', 'sha256', layer.digest.slice(7))), { code: 'ENOENT' }, 'the layer was not stored')
  t.same(await readdir(join(store, '_spool')), [], 'the partial spool file was removed')
})

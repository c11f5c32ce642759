// A full disk under the store: a real tmpfs too small for the blob (`mount -t tmpfs -o size=8m`),
// and one that fills up while a blob is being written. The pull still succeeds, pass-through; the
// store logs once, trustpull_store_writable drops to 0, /readyz says read-only, nothing crashes;
// the clients of a blob being written when the disk filled get it whole (or, if its bytes are
// wrong, cut short), from memory, with the upstream held to the pace of the slowest.
// Mounting needs root: as another user this file fails, saying so (CI runs it as root).
import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readdir, rmdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, type Readable } from 'node:stream'
import { request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { run, runOk, tempDir, waitFor, type Teardown } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'
import { Fill, UNSTORED_BYTES } from '../../src/store/fill.ts'

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

t.test('the disk fills while a blob is written: its clients get it whole, the next request passes through, one log line', async (t) => {
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
  const pull = () =>
    request(`${proxy.url}/v2/filling-disk/blobs/${layer.digest}`)
      .then(async (res) => sha(Buffer.from(await res.body.arrayBuffer())))
      .catch((err: Error) => `cut: ${err.message}`)
  const first = pull()
  const spooled = async () => (await Promise.all((await readdir(join(store, '_spool'))).map(async (f) => (await stat(join(store, '_spool', f))).size))).reduce((a, b) => a + b, 0)
  await waitFor(async () => (await spooled()) > 256 * 1024, { what: 'the blob to be spooled' })
  // A second client joins the same fill before the disk fills.
  const second = pull()
  await waitFor(async () => ((await scrape(proxy.url)).value('trustpull_store_upstream_requests_saved_total', { kind: 'blob' }) ?? 0) === 1, {
    what: 'the second client to join the fill',
  })
  const filler = await run('dd', ['if=/dev/zero', `of=${join(store, 'filler')}`, 'bs=1M'])
  t.match(filler.stderr, /No space left on device/, 'the disk is full')
  t.equal(await first, layer.digest, 'the client whose blob was being written gets it whole, from memory once the disk is full')
  t.equal(await second, layer.digest, 'so does the client that joined its fill')
  t.equal(upstream.requests.filter((r) => r.path.endsWith(`/blobs/${layer.digest}`)).length, 1, 'both from one upstream fetch')
  upstream.setFault(undefined)
  const again = await request(`${proxy.url}/v2/filling-disk/blobs/${layer.digest}`)
  t.equal(again.statusCode, 200)
  t.equal(sha(Buffer.from(await again.body.arrayBuffer())), layer.digest, 'the next request gets the whole blob, pass-through')
  await proxy.running.runtime.contentStore?.flush()
  t.match(await storeState(proxy), READ_ONLY, 'one log line, trustpull_store_writable 0, /readyz says read-only')
  await t.rejects(stat(join(store, 'blobs', 'sha256', layer.digest.slice(7))), { code: 'ENOENT' }, 'the layer was not stored')
  t.same(await readdir(join(store, '_spool')), [], 'the partial spool file was removed')
})

/** A Fill spooling onto a 4 MiB tmpfs, fed by hand; `fillDisk` fills what is left of it. */
async function fillOnSmallDisk(t: Teardown, digest: string, size: number) {
  const dir = await tmpfs(t, '4m', async () => {})
  const source = new PassThrough({ highWaterMark: 64 * 1024 })
  const fill = new Fill(digest, join(dir, 'blob.part'), source, size)
  t.teardown(() => fill.finished())
  const fillDisk = async () => {
    const dd = await run('dd', ['if=/dev/zero', `of=${join(dir, 'filler')}`, 'bs=64k'])
    if (!/No space left on device/.test(dd.stderr)) throw new Error(`dd did not fill the disk: ${dd.stderr}`)
  }
  return { dir, source, fill, fillDisk }
}

/** Everything a reader yields, or how far it got before it was cut. */
async function drain(body: Readable): Promise<{ bytes: Buffer } | { cutAfter: number; error: string }> {
  const chunks: Buffer[] = []
  try {
    for await (const chunk of body) chunks.push(chunk as Buffer)
    return { bytes: Buffer.concat(chunks) }
  } catch (err) {
    return { cutAfter: Buffer.concat(chunks).length, error: (err as Error).message }
  }
}

/** Writes `bytes` into the fill's source in 64 KiB chunks, waiting whenever the fill holds it back. */
async function feed(source: PassThrough, bytes: Buffer): Promise<void> {
  for (let at = 0; at < bytes.length; at += 64 * 1024) {
    if (!source.write(bytes.subarray(at, at + 64 * 1024))) await new Promise((resolve) => source.once('drain', resolve))
  }
}

t.test('a fill that loses its disk: readers finish from memory, wrong bytes still cut them, the upstream waits for the slowest', async (t) => {
  await t.test('right bytes: every reader gets them whole; the store is told', async (t) => {
    const blob = randomBytes(12 * 1024 * 1024)
    const { dir, source, fill, fillDisk } = await fillOnSmallDisk(t, sha(blob), blob.length)
    const readers = [drain(fill.reader()), drain(fill.reader())]
    await feed(source, blob.subarray(0, 1024 * 1024))
    await waitFor(() => fill.written >= 1024 * 1024, { what: 'the first MiB to be spooled' })
    await fillDisk()
    await feed(source, blob.subarray(1024 * 1024))
    source.end()
    await t.rejects(fill.done, { code: 'ENOSPC' }, 'the store learns the blob was not stored')
    for (const [i, reader] of readers.entries()) t.same(await reader, { bytes: blob }, `reader ${i + 1} got the whole blob`)
    t.equal(fill.state, 'verified')
    t.notOk(fill.open, 'a new client is not given this fill: it fetches on its own')
    await waitFor(async () => (await readdir(dir)).join() === 'filler', { what: 'the spool file to be removed' })
    t.pass('the spool file is gone')
  })

  await t.test('wrong bytes: readers are cut short, never given the whole blob', async (t) => {
    const blob = randomBytes(6 * 1024 * 1024)
    const { source, fill, fillDisk } = await fillOnSmallDisk(t, sha(blob), blob.length)
    const reader = drain(fill.reader())
    await feed(source, blob.subarray(0, 1024 * 1024))
    await waitFor(() => fill.written >= 1024 * 1024, { what: 'the first MiB to be spooled' })
    await fillDisk()
    const wrong = Buffer.from(blob.subarray(1024 * 1024))
    wrong[wrong.length - 1]! ^= 1
    await feed(source, wrong)
    source.end()
    const got = await reader
    t.match(got, { error: /hash to sha256:/ }, 'the reader fails with the digest mismatch')
    t.ok('cutAfter' in got && got.cutAfter < blob.length, `cut short (${'cutAfter' in got ? got.cutAfter : '-'} of ${blob.length} bytes)`)
    t.equal(fill.state, 'failed')
  })

  await t.test('a reader that stops reading holds the upstream back, at most UNSTORED_BYTES ahead of it', async (t) => {
    const blob = randomBytes(UNSTORED_BYTES + 8 * 1024 * 1024)
    const { source, fill, fillDisk } = await fillOnSmallDisk(t, sha(blob), blob.length)
    const slow = fill.reader()
    slow.pause()
    await feed(source, blob.subarray(0, 1024 * 1024))
    await waitFor(() => fill.written >= 1024 * 1024, { what: 'the first MiB to be spooled' })
    await fillDisk()
    const fed = feed(source, blob.subarray(1024 * 1024)).then(() => source.end())
    await waitFor(() => source.isPaused() && fill.written >= UNSTORED_BYTES, { what: 'the fill to hold UNSTORED_BYTES and pause its upstream' })
    t.ok(fill.written < blob.length, `the upstream waits: ${fill.written} of ${blob.length} bytes taken`)
    // What the 4 MiB disk took, UNSTORED_BYTES, and the one chunk the reader read ahead.
    t.ok(fill.written <= 4 * 1024 * 1024 + UNSTORED_BYTES + 1024 * 1024, 'no more than UNSTORED_BYTES held past the file')
    const got = drain(slow)
    await fed
    t.same(await got, { bytes: blob }, 'once the reader reads again, it gets the whole blob')
  })
})

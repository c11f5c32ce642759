// The stored-blob send path (files read by position straight into the response) with a real
// docker-registry and real cosign signatures: HEAD and Range answers as before, a whole read
// exactly the blob, a client that leaves mid-blob leaves no descriptor open, a file rotted while
// trustpull was down is found by the start-up scrub, and with the scrub off every read is hashed.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { tempDir, waitFor } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const registry = await startRegistry(t)
const keys = await generateKeyPair(await tempDir(t))
const image = await pushImage(registry.url, 'send', '1', { layers: 2, layerSize: 8 * 1024 * 1024, seed: 'send' })
await signImage(`${registry.host}/send@${image.digest}`, keys.privateKeyPath)
const storePath = join(await tempDir(t), 'store')
const config = (storage: Record<string, unknown> = {}) => ({
  upstreams: [{ name: 'registry.test', url: registry.url, default: true }],
  storage: { enabled: true, path: storePath, ...storage },
  policies: [{ name: 'signed', images: [{ glob: 'registry.test/**' }], authorities: [{ key: { data: keys.publicKeyPem } }] }],
})
const layerFile = (digest: string) => join(storePath, 'blobs', 'sha256', digest.slice('sha256:'.length))
const sha256 = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`
/** Descriptors this process holds open on files of the store (the proxy runs in-process). */
const storeFds = async () => {
  let n = 0
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '')
    if (target.startsWith(join(storePath, 'blobs'))) n++
  }
  return n
}

let proxy = await startProxy(t, config())
const [layer, other] = image.layerDigests as [string, string]
const blobUrl = (digest: string) => `${proxy.url}/v2/send/blobs/${digest}`

/** The manifest through trustpull: its verdict is what lets its blobs be served. */
const vouch = async () => {
  const m = await request(`${proxy.url}/v2/send/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  await m.body.dump()
  if (m.statusCode !== 200) throw new Error(`manifest answered ${m.statusCode}`)
}

t.before(async () => {
  await vouch()
  for (const digest of [layer, other]) await (await request(blobUrl(digest))).body.dump()
  await proxy.running.runtime.contentStore?.flush()
})

t.test('a whole stored blob: exactly its bytes, with its headers', async (t) => {
  const res = await request(blobUrl(layer))
  const body = Buffer.from(await res.body.arrayBuffer())
  t.equal(res.statusCode, 200)
  t.equal(sha256(body), layer)
  t.equal(res.headers['content-length'], String(body.length))
  t.equal(res.headers['docker-content-digest'], layer)
  t.equal(res.headers['accept-ranges'], 'bytes')
  t.same(body, await readFile(layerFile(layer)))
})

t.test('HEAD and Range on a stored blob', async (t) => {
  const file = await readFile(layerFile(layer))
  const head = await request(blobUrl(layer), { method: 'HEAD' })
  t.equal(head.statusCode, 200)
  t.equal(head.headers['content-length'], String(file.length))
  t.equal(head.headers['docker-content-digest'], layer)
  t.equal((await head.body.arrayBuffer()).byteLength, 0)

  const cases: [string, number, number][] = [
    ['bytes=10-99', 10, 99],
    ['bytes=-5', file.length - 5, file.length - 1],
    [`bytes=${file.length - 3}-`, file.length - 3, file.length - 1],
    ['bytes=1048570-2097160', 1048570, 2097160],
  ]
  for (const [range, start, end] of cases) {
    const res = await request(blobUrl(layer), { headers: { range } })
    const body = Buffer.from(await res.body.arrayBuffer())
    t.equal(res.statusCode, 206, range)
    t.equal(res.headers['content-range'], `bytes ${start}-${end}/${file.length}`, range)
    t.equal(res.headers['content-length'], String(end - start + 1), range)
    t.same(body, file.subarray(start, end + 1), `${range}: the right bytes`)
  }
  const outside = await request(blobUrl(layer), { headers: { range: `bytes=${file.length}-` } })
  t.equal(outside.statusCode, 416)
  await outside.body.dump()
})

t.test('a client that leaves mid-blob leaves no descriptor open, and the blob is served again', async (t) => {
  t.equal(await storeFds(), 0, 'no descriptor open before')
  await new Promise<void>((resolve, reject) => {
    request(blobUrl(other)).then((res) => {
      let got = 0
      res.body.on('data', (chunk: Buffer) => {
        got += chunk.length
        if (got > 1024 * 1024) {
          res.body.destroy()
          resolve()
        }
      })
      res.body.on('error', () => {})
    }, reject)
  })
  await waitFor(async () => (await storeFds()) === 0, { what: 'the stored file to be closed' })
  t.pass('closed')
  const again = await request(blobUrl(other))
  t.equal(sha256(Buffer.from(await again.body.arrayBuffer())), other)
  await waitFor(async () => (await storeFds()) === 0, { what: 'the stored file to be closed' })
})

t.test('a file that rotted while trustpull was down is removed by the start-up scrub, then fetched again', async (t) => {
  await proxy.running.close()
  const file = layerFile(other)
  const bytes = await readFile(file)
  bytes[4096] = bytes[4096]! ^ 0x01
  await writeFile(file, bytes)
  proxy = await startProxy(t, config())
  await waitFor(
    async () =>
      !(await readFile(file).then(
        () => true,
        () => false,
      )),
    { what: 'the scrub to remove the rotted file' },
  )
  t.ok(
    proxy.logs.some((l) => String(l.msg).includes('does not match its digest')),
    'logged',
  )
  await waitFor(async () => ((await scrape(proxy.url)).value('trustpull_store_scrub_passes_total') ?? 0) >= 1, { what: 'the scrub pass to end' })
  const metrics = await scrape(proxy.url)
  t.equal(metrics.value('trustpull_store_corrupt_objects_total', { found_by: 'scrub' }), 1, 'counted: one corrupt object found by the scrub')
  t.equal(metrics.value('trustpull_store_corrupt_objects_total', { found_by: 'read' }), 0, 'none by reads')
  t.ok((metrics.value('trustpull_store_scrub_bytes_total') ?? 0) >= bytes.length, 'the scrub counted the bytes it hashed')
  t.ok(Math.abs((metrics.value('trustpull_store_scrub_last_pass_timestamp_seconds') ?? 0) - Date.now() / 1000) < 600, 'and when its pass ended')
  await vouch()
  const again = await request(blobUrl(other))
  t.equal(sha256(Buffer.from(await again.body.arrayBuffer())), other, 'the right bytes, from the upstream')
})

t.test('scrubRate 0: every whole read is hashed, so a flipped byte is cut even on a file read before', async (t) => {
  await proxy.running.close()
  proxy = await startProxy(t, config({ scrubRate: 0 }))
  await vouch()
  const first = await request(blobUrl(layer))
  t.equal(sha256(Buffer.from(await first.body.arrayBuffer())), layer)
  const file = layerFile(layer)
  const bytes = await readFile(file)
  bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01
  await writeFile(file, bytes)
  const cut = await request(blobUrl(layer))
    .then(
      async (res) => Buffer.from(await res.body.arrayBuffer()).length,
      () => -1,
    )
    .catch(() => -1)
  t.not(cut, bytes.length, 'the client did not receive the whole wrong blob')
  await proxy.running.runtime.contentStore?.flush()
  const metrics = await scrape(proxy.url)
  t.equal(metrics.value('trustpull_store_corrupt_objects_total', { found_by: 'read' }), 1, 'counted: one corrupt object found by a read')
  t.equal(metrics.value('trustpull_store_scrub_passes_total'), 0, 'scrubRate 0: no scrub pass')
  const again = await request(blobUrl(layer))
  t.equal(sha256(Buffer.from(await again.body.arrayBuffer())), layer, 'fetched again')
})

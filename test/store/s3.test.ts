// The S3 driver against s3rver (a local S3 implementation, on a free port, over a temp dir): objects
// publish and read back whole and by range, absent keys are undefined, readBytes refuses objects
// over its bound, list paginates, publishFile consumes the spool file, a missing bucket fails
// open() naming it; and two trustpull replicas on one bucket: a blob pulled through replica A is
// served by replica B with no upstream blob request.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { S3Driver } from '../../src/store/s3.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startS3rver } from '../helpers/s3rver.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy } from '../helpers/trustpull.ts'

// s3rver accepts the fixed key pair S3RVER/S3RVER; given through env, as an operator would.
process.env.TP_TEST_S3_KEY = 'S3RVER'
process.env.TP_TEST_S3_SECRET = 'S3RVER'
const credentials = { accessKeyIdEnv: 'TP_TEST_S3_KEY', secretAccessKeyEnv: 'TP_TEST_S3_SECRET' }

const { endpoint } = await startS3rver(t, ['mirror'])
const s3config = (bucket = 'mirror', prefix = '') => ({ bucket, endpoint, region: 'us-east-1', prefix, forcePathStyle: true, credentials })

async function openDriver(prefix: string, pageSize?: number, bucket = 'mirror'): Promise<S3Driver> {
  const driver = new S3Driver({ ...s3config(bucket, prefix), spoolDir: join(await tempDir(t), 'spool'), pageSize })
  await driver.open()
  t.teardown(() => driver.close())
  return driver
}

async function text(stream: NodeJS.ReadableStream | undefined): Promise<string | undefined> {
  if (!stream) return undefined
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer))
  return Buffer.concat(chunks).toString()
}

t.test('driver: publish, read whole and by range, stat, absent, readBytes bound, delete', async (t) => {
  const d = await openDriver('one/')
  const spool = join(d.spoolDir, 'a.tmp')
  await writeFile(spool, 'hello, bucket')
  await d.publishFile('blobs/sha256/aa', spool)
  t.same(await readdir(d.spoolDir), [], 'publishFile consumed the spool file')
  t.equal(await text(await d.read('blobs/sha256/aa')), 'hello, bucket')
  t.equal(await text(await d.read('blobs/sha256/aa', { start: 7, end: 12 })), 'bucket')
  const st = await d.stat('blobs/sha256/aa')
  t.equal(st?.size, 13)
  t.type(st?.lastUsed, 'number')
  t.equal(await d.stat('blobs/sha256/none'), undefined)
  t.equal(await d.read('blobs/sha256/none'), undefined)
  t.equal(await d.readBytes('blobs/sha256/none', 100), undefined)
  await d.writeBytes('tags/x', Buffer.from('0123456789'))
  t.equal((await d.readBytes('tags/x', 10))?.toString(), '0123456789')
  t.equal(await d.readBytes('tags/x', 9), undefined, 'over maxBytes → undefined')
  await d.delete('blobs/sha256/aa')
  t.equal(await d.stat('blobs/sha256/aa'), undefined)
  await t.rejects(d.read('../x'), /invalid storage key/)
})

t.test('driver: publishFile consumes the spool file even when the upload fails', async (t) => {
  const d = new S3Driver({ ...s3config('no-such-bucket'), spoolDir: join(await tempDir(t), 'spool') })
  t.teardown(() => d.close())
  await d.sweep().catch(() => {})
  const spool = join(d.spoolDir, 'b.tmp')
  await writeFile(spool, 'x')
  await t.rejects(d.publishFile('blobs/sha256/bb', spool))
  t.same(await readdir(d.spoolDir), [])
})

t.test('driver: a file over the part size is published as a multipart upload, whole', async (t) => {
  const d = await openDriver('mp/')
  const bytes = Buffer.alloc(11 * 1024 * 1024)
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = (i / 4096) % 251
  const spool = join(d.spoolDir, 'big.tmp')
  await writeFile(spool, bytes)
  await d.publishFile('blobs/sha256/big', spool)
  t.same(await readdir(d.spoolDir), [])
  t.equal((await d.stat('blobs/sha256/big'))?.size, bytes.length)
  const back = await d.readBytes('blobs/sha256/big', bytes.length)
  t.ok(back?.equals(bytes), 'read back byte for byte')
  await d.sweep()
})

t.test('driver: list paginates and stays within the prefix', async (t) => {
  const d = await openDriver('two/', 2)
  const other = await openDriver('three/')
  await other.writeBytes('blobs/sha256/other', Buffer.from('o'))
  for (let i = 0; i < 5; i++) await d.writeBytes(`blobs/sha256/k${i}`, Buffer.from('x'.repeat(i + 1)))
  await d.writeBytes('tags/t', Buffer.from('t'))
  const keys: string[] = []
  for await (const o of d.list('blobs/')) keys.push(`${o.key}:${o.size}`)
  t.same(
    keys.sort(),
    [0, 1, 2, 3, 4].map((i) => `blobs/sha256/k${i}:${i + 1}`),
  )
  let all = 0
  for await (const _ of d.list('')) all++
  t.equal(all, 6)
})

t.test('driver: a missing bucket fails open() naming the bucket and endpoint', async (t) => {
  const d = new S3Driver({ ...s3config('absent-bucket'), spoolDir: join(await tempDir(t), 'spool') })
  t.teardown(() => d.close())
  await t.rejects(d.open(), { message: new RegExp(`bucket "absent-bucket" at ${endpoint}.*NoSuchBucket`) })
})

t.test('two replicas on one bucket: a blob fetched through A is served by B with no upstream blob request', async (t) => {
  const registry = await startRegistry(t)
  const upstream = await startFaultProxy(t, registry.url)
  const keys = await generateKeyPair(await tempDir(t))
  const image = await pushImage(registry.url, 'app', '1', { layers: 2, layerSize: 2 * 1024 * 1024 })
  await signImage(`${registry.host}/app@${image.digest}`, keys.privateKeyPath)
  const config = async () => ({
    upstreams: [{ name: 'registry.test', url: upstream.url, default: true }],
    storage: { enabled: true, path: join(await tempDir(t), 'spool'), s3: s3config('mirror', 'shared/') },
    policies: [{ name: 'signed', images: [{ glob: 'registry.test/**' }], authorities: [{ key: { data: keys.publicKeyPem } }] }],
  })
  const a = await startProxy(t, await config())
  const b = await startProxy(t, await config())
  const blobGets = () => upstream.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length
  const work = await tempDir(t)

  const ra = await skopeoCopy(`${a.host}/app:1`, join(work, 'a'))
  t.equal(ra.code, 0, ra.stderr)
  t.ok(blobGets() > 0, 'replica A fetched the blobs upstream')
  await a.running.runtime.contentStore?.flush()

  upstream.clearRequests()
  const rb = await skopeoCopy(`${b.host}/app:1`, join(work, 'b'))
  t.equal(rb.code, 0, rb.stderr)
  t.equal(rb.digest, image.digest)
  t.equal(blobGets(), 0, 'replica B served every blob from the bucket')
  const layer = image.layerDigests[0]!
  const res = await request(`${b.url}/v2/app/blobs/${layer}`)
  t.equal(res.statusCode, 200)
  t.equal(
    `sha256:${createHash('sha256')
      .update(Buffer.from(await res.body.arrayBuffer()))
      .digest('hex')}`,
    layer,
  )
  t.equal(blobGets(), 0)
  t.notMatch(a.logText() + b.logText(), /S3RVER/, 'no credential in the logs')
})

t.test('start-up with an unusable bucket stops naming storage.s3', async (t) => {
  await t.rejects(
    startProxy(t, { upstreams: [{ name: 'r', url: endpoint, default: true }], storage: { enabled: true, path: join(await tempDir(t), 'spool'), s3: s3config('absent-bucket') } }),
    /storage\.s3.*absent-bucket/,
  )
  await t.rejects(
    startProxy(t, {
      upstreams: [{ name: 'r', url: endpoint, default: true }],
      storage: {
        enabled: true,
        path: join(await tempDir(t), 'spool'),
        s3: { ...s3config(), credentials: { accessKeyIdEnv: 'TP_TEST_UNSET_VAR', secretAccessKeyEnv: 'TP_TEST_S3_SECRET' } },
      },
    }),
    /storage\.s3\.credentials\.accessKeyIdEnv/,
  )
})

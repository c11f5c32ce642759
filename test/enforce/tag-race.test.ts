// A tag moved upstream between containerd's HEAD (tag → digest) and its GET (by digest) never
// yields unverified bytes: the GET by digest serves exactly the verified digest's bytes, and the
// moved tag, asked again, is judged afresh (and refused: the new manifest is unsigned). Every 200
// answer a client received carries a Docker-Content-Digest equal to sha256 of the body served.
import t from 'tap'
import { createHash } from 'node:crypto'
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { Socket } from 'node:net'
import { request } from 'undici'
import { ctr, ctrPull, startContainerd, writeHostsToml } from '../helpers/containerd.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, getManifest, pushImage, pushManifest, type PushedImage } from '../helpers/images.ts'
import { tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const sha256 = (bytes: Uint8Array) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

interface Exchange {
  method: string
  url: string
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

/**
 * A recording HTTP front: forwards every request to `target` after `before(method, url)` resolves
 * (so a test can act between two requests of one client), and keeps each answer with its body.
 */
async function startFront(t: Teardown, target: string, before: (method: string, url: string) => Promise<void> = async () => {}) {
  const exchanges: Exchange[] = []
  const server = createServer((req, res) => {
    void (async () => {
      const method = req.method ?? 'GET'
      const url = req.url ?? '/'
      await before(method, url)
      const { host: _host, connection: _connection, ...headers } = req.headers
      const up = await request(`${target}${url}`, { method: method as 'GET', headers: headers as Record<string, string> })
      const body = Buffer.from(await up.body.arrayBuffer())
      exchanges.push({ method, url, status: up.statusCode, headers: up.headers as IncomingHttpHeaders, body })
      const { connection: _c, 'keep-alive': _k, 'transfer-encoding': _te, ...out } = up.headers
      // The status line with its reason phrase, as trustpull wrote it (ctr prints it).
      res.writeHead(up.statusCode, up.statusText, out as Record<string, string>)
      res.end(method === 'HEAD' ? undefined : body)
    })().catch((err: unknown) => {
      res.writeHead(599).end(String(err))
    })
  })
  const sockets = new Set<Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const { port } = server.address() as { port: number }
  return { url: `http://127.0.0.1:${port}`, exchanges }
}

t.test('tag moved between HEAD and GET', async (t) => {
  const registry = await startRegistry(t)
  const key = await generateKeyPair(await tempDir(t))
  const repo = 'library/race'
  const verified = await pushImage(registry.url, repo, 'latest', { layerSize: 8 * 1024 })
  await signImage(`${registry.host}/${repo}@${verified.digest}`, key.privateKeyPath)
  // The manifest the tag will move to: unsigned, every blob already upstream, so moving is one PUT.
  const moved = await pushImage(registry.url, repo, undefined, { seed: 'moved', layerSize: 8 * 1024 })
  const pointTag = (image: PushedImage) => pushManifest(registry.url, repo, 'latest', image.manifest, image.mediaType)
  const config = (extra: Record<string, unknown> = {}) =>
    hubConfig(registry.url, { policies: [{ name: 'library', images: [{ glob: 'library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }], ...extra })

  t.test('containerd-shaped requests: HEAD tag, tag moves, GET digest', async (t) => {
    await pointTag(verified)
    const proxy = await startProxy(t, config())
    const head = await request(`${proxy.url}/v2/${repo}/manifests/latest?ns=docker.io`, { method: 'HEAD', headers: { accept: ACCEPT_ANY_MANIFEST } })
    await head.body.dump()
    t.equal(head.statusCode, 200)
    t.equal(head.headers['docker-content-digest'], verified.digest)
    t.equal(head.headers['content-length'], String(verified.size))

    await pointTag(moved)
    t.equal((await getManifest(registry.url, repo, 'latest')).digest, moved.digest, 'upstream, the tag now names the unsigned manifest')

    const get = await request(`${proxy.url}/v2/${repo}/manifests/${verified.digest}?ns=docker.io`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    const body = Buffer.from(await get.body.arrayBuffer())
    t.equal(get.statusCode, 200)
    t.equal(get.headers['docker-content-digest'], verified.digest)
    t.equal(sha256(body), verified.digest, 'the body is the verified manifest')
    t.same(body, Buffer.from(verified.manifest))

    for (const method of ['HEAD', 'GET'] as const) {
      const again = await request(`${proxy.url}/v2/${repo}/manifests/latest?ns=docker.io`, { method, headers: { accept: ACCEPT_ANY_MANIFEST } })
      const text = await again.body.text()
      t.equal(again.statusCode, 403, `${method} of the moved tag is refused`)
      t.notOk(again.headers['docker-content-digest'], `${method}: no digest leaves with a refusal`)
      if (method === 'GET') t.match(text, `docker.io/${repo}@${moved.digest} denied`)
    }
  })

  // With the manifest cache (default) the GET by digest is answered from the bytes verified at HEAD;
  // without it (and without the store, which would answer it the same way), trustpull fetches the
  // digest upstream, hashes and checks it again.
  for (const [label, extra] of [
    ['manifest cache on', {}],
    ['manifest cache off', { cache: { manifestBytes: 0 }, storage: { enabled: false } }],
  ] as const) {
    t.test(`containerd pull while the tag moves (${label})`, async (t) => {
      await pointTag(verified)
      const upstreamFront = await startFront(t, registry.url)
      const proxy = await startProxy(t, config({ ...extra, upstreams: [{ name: 'docker.io', url: upstreamFront.url, default: true }] }))
      let tagMoved = false
      const front = await startFront(t, proxy.url, async (method, url) => {
        // containerd's GET by digest waits here until the tag has moved upstream.
        if (method === 'GET' && url.startsWith(`/v2/${repo}/manifests/${verified.digest}`) && !tagMoved) {
          await pointTag(moved)
          tagMoved = true
        }
      })
      const containerd = await startContainerd(t)
      const hostsDir = await tempDir(t)
      await writeHostsToml(hostsDir, 'docker.io', front.url)

      const pulled = await ctrPull(containerd.socket, `docker.io/${repo}:latest`, { hostsDir })
      t.equal(pulled.code, 0, pulled.stderr)
      t.ok(tagMoved, "the tag moved between containerd's HEAD and its GET by digest")
      t.match(pulled.stdout, `unpacking linux/amd64 ${verified.digest}`, 'containerd unpacked the verified manifest')
      const listed = await ctr(containerd.socket, ['images', 'ls'])
      t.match(listed.stdout, new RegExp(`docker\\.io/library/race:latest\\s+\\S+\\s+${verified.digest}`), 'and recorded the verified digest for the tag')

      const manifests = front.exchanges.filter((e) => e.url.includes('/manifests/'))
      t.match(
        manifests[0],
        { method: 'HEAD', url: `/v2/${repo}/manifests/latest?ns=docker.io`, status: 200, headers: { 'docker-content-digest': verified.digest } },
        'HEAD of the tag came first',
      )
      t.notOk(
        front.exchanges.some((e) => e.url.includes(moved.digest) || moved.layerDigests.some((d) => e.url.includes(d))),
        'nothing of the moved manifest reached containerd',
      )
      if ('cache' in extra) {
        t.ok(
          upstreamFront.exchanges.some((e) => e.method === 'GET' && e.url === `/v2/${repo}/manifests/${verified.digest}` && e.status === 200),
          'the GET by digest went upstream, by digest',
        )
      }

      t.test('every 200 answer: Docker-Content-Digest is sha256 of the body served', async (t) => {
        const answered = front.exchanges.filter((e) => e.status === 200 && /\/(manifests|blobs)\//.test(e.url))
        t.ok(answered.filter((e) => e.method === 'GET').length >= 3, 'manifest, config and layer were fetched')
        for (const e of answered) {
          if (e.method === 'GET') t.equal(e.headers['docker-content-digest'], sha256(e.body), `${e.method} ${e.url}`)
          else t.equal(e.headers['docker-content-digest'], verified.digest, `${e.method} ${e.url}`)
        }
      })

      t.test('a fresh pull of the moved tag is refused', async (t) => {
        t.equal((await ctr(containerd.socket, ['images', 'rm', `docker.io/${repo}:latest`])).code, 0)
        const again = await ctrPull(containerd.socket, `docker.io/${repo}:latest`, { hostsDir })
        t.not(again.code, 0)
        t.match(again.stderr, `403 Forbidden (DENIED: docker.io/${repo}@${moved.digest} denied: policy "library": no signatures found`)
      })
    })
  }
})

// Happy-path pulls through trustpull from a real docker-registry: the distribution API as clients use it.
import t from 'tap'
import { createHash } from 'node:crypto'
import { request } from 'undici'
import { pushImage, pushIndex } from '../helpers/images.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const OCI_ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

t.test('manifests, blobs, tags and referrers through the proxy', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/app', '1.0', { layers: 2, layerSize: 4096 })
  const index = await pushIndex(registry.url, 'library/multi', 'latest')
  for (const tag of ['a', 'b', 'c', 'd', 'e']) await pushImage(registry.url, 'library/tagged', tag, { seed: 'same' })
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [
      { name: 'docker.io', url: registry.url, default: true },
      { name: 'registry.internal.example', url: registry.url },
    ],
  })

  t.test('GET /v2/ answers with the API version header', async (t) => {
    const res = await request(`${proxy.url}/v2/`)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['docker-distribution-api-version'], 'registry/2.0')
    t.same(await res.body.json(), {})
  })

  t.test('HEAD by tag carries digest and length (containerd needs both), no body', async (t) => {
    const res = await request(`${proxy.url}/v2/library/app/manifests/1.0?ns=docker.io`, { method: 'HEAD', headers: { accept: OCI_ACCEPT } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['docker-content-digest'], image.digest)
    t.equal(res.headers['content-length'], String(image.size))
    t.equal(res.headers['content-type'], image.mediaType)
    t.equal((await res.body.arrayBuffer()).byteLength, 0)
  })

  t.test('GET by tag and by digest serve the exact bytes pushed', async (t) => {
    for (const ref of ['1.0', image.digest]) {
      const res = await request(`${proxy.url}/v2/library/app/manifests/${ref}`, { headers: { accept: OCI_ACCEPT } })
      t.equal(res.statusCode, 200, ref)
      t.equal(res.headers['docker-content-digest'], image.digest, ref)
      t.same(Buffer.from(await res.body.arrayBuffer()), Buffer.from(image.manifest), ref)
    }
  })

  t.test('Docker Hub names: nginx means library/nginx; prefixes docker.io and index.docker.io are the hub', async (t) => {
    for (const path of ['app', 'docker.io/app', 'index.docker.io/library/app', 'registry-1.docker.io/app']) {
      const res = await request(`${proxy.url}/v2/${path}/manifests/1.0`, { headers: { accept: OCI_ACCEPT } })
      t.equal(res.statusCode, 200, path)
      t.equal(res.headers['docker-content-digest'], image.digest, path)
      await res.body.dump()
    }
  })

  t.test('explicit prefix picks the named upstream', async (t) => {
    const res = await request(`${proxy.url}/v2/registry.internal.example/library/app/manifests/1.0`, { headers: { accept: OCI_ACCEPT } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['docker-content-digest'], image.digest)
    await res.body.dump()
  })

  t.test('blobs stream with their digest; Range answers 206', async (t) => {
    const layer = image.layers[0]!
    const res = await request(`${proxy.url}/v2/library/app/blobs/${layer.digest}`)
    t.equal(res.statusCode, 200)
    const bytes = Buffer.from(await res.body.arrayBuffer())
    t.equal(bytes.length, layer.size)
    t.equal(`sha256:${createHash('sha256').update(bytes).digest('hex')}`, layer.digest)
    t.equal(res.headers['docker-content-digest'], layer.digest)

    const head = await request(`${proxy.url}/v2/library/app/blobs/${layer.digest}`, { method: 'HEAD' })
    t.equal(head.statusCode, 200)
    t.equal(head.headers['content-length'], String(layer.size))
    await head.body.dump()

    const ranged = await request(`${proxy.url}/v2/library/app/blobs/${layer.digest}`, { headers: { range: 'bytes=10-19' } })
    t.equal(ranged.statusCode, 206)
    t.same(Buffer.from(await ranged.body.arrayBuffer()), bytes.subarray(10, 20))
    t.match(ranged.headers['content-range'], /^bytes 10-19\/\d+$/)
  })

  t.test('a blob no served manifest references is refused (content of unknown images never leaves)', async (t) => {
    const other = await pushImage(registry.url, 'library/unseen', 'x', { seed: 'unseen' })
    const res = await request(`${proxy.url}/v2/library/unseen/blobs/${other.layerDigests[0]}`)
    t.equal(res.statusCode, 403)
    t.match(await res.body.json(), { errors: [{ code: 'DENIED', message: /not referenced by a manifest/ }] })
  })

  t.test('an index and its children by digest', async (t) => {
    const res = await request(`${proxy.url}/v2/library/multi/manifests/latest`, { headers: { accept: OCI_ACCEPT } })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['docker-content-digest'], index.digest)
    await res.body.dump()
    for (const child of index.children) {
      const c = await request(`${proxy.url}/v2/library/multi/manifests/${child.digest}`, { headers: { accept: OCI_ACCEPT } })
      t.equal(c.statusCode, 200)
      t.same(Buffer.from(await c.body.arrayBuffer()), Buffer.from(child.manifest))
    }
  })

  t.test('tags/list passes through', async (t) => {
    const res = await request(`${proxy.url}/v2/library/tagged/tags/list`)
    t.equal(res.statusCode, 200)
    const body = (await res.body.json()) as { name: string; tags: string[] }
    t.equal(body.name, 'library/tagged')
    t.same(body.tags.sort(), ['a', 'b', 'c', 'd', 'e'])
  })

  t.test('referrers: an upstream without the API gets an (empty) index built by trustpull, not its 404', async (t) => {
    const res = await request(`${proxy.url}/v2/library/app/referrers/${image.digest}`)
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-type'], 'application/vnd.oci.image.index.v1+json')
    t.same(await res.body.json(), { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] })
  })

  t.test('unknown manifest and blob: 404 with OCI codes', async (t) => {
    const m = await request(`${proxy.url}/v2/library/app/manifests/nope`)
    t.equal(m.statusCode, 404)
    t.match(await m.body.json(), { errors: [{ code: 'MANIFEST_UNKNOWN' }] })
  })

  t.test('push and delete are refused: 405 UNSUPPORTED', async (t) => {
    for (const [method, path] of [
      ['PUT', '/v2/library/app/manifests/2.0'],
      ['DELETE', `/v2/library/app/manifests/${image.digest}`],
      ['POST', '/v2/library/app/blobs/uploads/'],
      ['PATCH', '/v2/library/app/blobs/uploads/abc'],
    ] as const) {
      const res = await request(`${proxy.url}${path}`, { method, body: method === 'DELETE' ? undefined : '{}' })
      t.equal(res.statusCode, 405, `${method} ${path}`)
      t.match(await res.body.json(), { errors: [{ code: 'UNSUPPORTED' }] })
    }
  })
})

// docker-registry 2.8 ignores `n`, so the upstream's pagination Link is injected here to see it rewritten.
t.test('tags/list pagination: n and last reach upstream, the next link points back at the proxy', async (t) => {
  const registry = await startRegistry(t)
  await pushImage(registry.url, 'org/paged', 'v1')
  const front = await startFaultProxy(t, registry.url, (req) =>
    req.path.endsWith('/tags/list') ? { kind: 'headers', set: { link: '<https://upstream.example/v2/org/paged/tags/list?n=2&last=b&secret=1>; rel="next"' } } : undefined,
  )
  const proxy = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: 'ghcr.io', url: front.url, default: true }] })
  const res = await request(`${proxy.url}/v2/ghcr.io/org/paged/tags/list?n=2&last=a`)
  t.equal(res.statusCode, 200)
  await res.body.dump()
  t.equal(res.headers['link'], '</v2/ghcr.io/org/paged/tags/list?n=2&last=b>; rel="next"')
  t.ok(
    front.requests.some((r) => r.url === '/v2/org/paged/tags/list?n=2&last=a'),
    'n and last forwarded',
  )
})

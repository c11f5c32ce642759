// Upstream faults, shown end to end: trustpull → fault proxy → real docker-registry. Every fault
// must reach the client as a 5xx OCI error naming the upstream, or (once blob bytes are flowing)
// as an aborted connection, and never as wrong content.
import t from 'tap'
import { request as httpRequest, createServer, type IncomingHttpHeaders } from 'node:http'
import { flipByte, startFaultProxy, type FaultChooser } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { listen } from '../helpers/listen.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'
import type { Teardown } from '../helpers/proc.ts'

const UPSTREAM = 'faulty.test'
const TIMEOUTS = { headers: '1s', body: '1s', connect: '1s' }
const LAYER_SIZE = 1024 * 1024

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The response ended cleanly (all declared bytes, or the final chunk, arrived). */
  complete: boolean
  /** Why the connection broke off, when it did. */
  error?: Error
}

/** One request on a fresh connection; never throws for a broken body: `complete` and `error` say so. */
function get(url: string, { method = 'GET', headers = {} }: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      let settled = false
      const done = (error?: Error) => {
        if (settled) return
        settled = true
        const answer: Answer = { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }
        if (error) answer.error = error
        resolve(answer)
      }
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('end', () => done())
      res.once('error', (e) => done(e))
      res.once('close', () => done(res.complete ? undefined : new Error('connection closed before the body was complete')))
    })
    req.once('error', reject)
    req.end()
  })
}

function ociError(answer: Answer): { code: string; message: string } {
  const parsed = JSON.parse(answer.body.toString('utf8')) as { errors: { code: string; message: string }[] }
  return parsed.errors[0]!
}

/**
 * A little HTTP server on another origin (a "CDN"): records what reached it and serves fixed bytes,
 * with a Content-Length or chunked.
 */
async function startOrigin(t: Teardown, body: Buffer, { chunked = false } = {}): Promise<{ url: string; seen: IncomingHttpHeaders[] }> {
  const seen: IncomingHttpHeaders[] = []
  const server = createServer((req, res) => {
    seen.push(req.headers)
    req.resume()
    res.writeHead(200, { 'content-type': 'application/octet-stream', ...(chunked ? {} : { 'content-length': body.length }) })
    res.end(body)
  })
  return { url: await listen(t, server), seen }
}

const registry = await startRegistry(t)
const faults = await startFaultProxy(t, registry.url)
const proxy = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: UPSTREAM, url: faults.url, default: true }], timeouts: TIMEOUTS })

let repoCount = 0
/** A fresh repository per test, so no cached manifest hides a fault. */
async function freshImage(): Promise<PushedImage> {
  return pushImage(registry.url, `faults/r${++repoCount}`, 'v1', { layerSize: LAYER_SIZE })
}

/** Faults only on requests whose path ends with `suffix`; everything else passes. */
function on(suffix: string, fault: ReturnType<FaultChooser>): FaultChooser {
  return (req) => (req.path.endsWith(suffix) ? fault : undefined)
}

const manifestUrl = (img: PushedImage, ref = img.tag!) => `${proxy.url}/v2/${img.repo}/manifests/${ref}`
const blobUrl = (img: PushedImage, digest = img.layerDigests[0]!) => `${proxy.url}/v2/${img.repo}/blobs/${digest}`
const accept = { accept: ACCEPT_ANY_MANIFEST }

/** Serves the manifest once through the proxy, which then vouches for its blobs. */
async function allowBlobs(img: PushedImage): Promise<void> {
  const res = await get(manifestUrl(img), { headers: accept })
  if (res.status !== 200) throw new Error(`manifest ${img.repo}:${img.tag} answered ${res.status}`)
}

t.afterEach(() => faults.setFault(undefined))

t.test('upstream 500 and 502 become 502 UPSTREAM_ERROR naming the upstream', async (t) => {
  const img = await freshImage()
  for (const status of [500, 502]) {
    faults.setFault(on(`/manifests/${img.tag}`, { kind: 'status', status }))
    const res = await get(manifestUrl(img), { headers: accept })
    t.equal(res.status, 502, `upstream ${status} → 502`)
    const err = ociError(res)
    t.equal(err.code, 'UPSTREAM_ERROR')
    t.match(err.message, UPSTREAM, 'the message names the upstream')
    t.match(err.message, String(status), 'and what it answered')
    t.notOk(res.headers['docker-content-digest'], 'no digest is claimed')
  }
})

t.test('upstream 503 becomes 503 UNAVAILABLE', async (t) => {
  const img = await freshImage()
  faults.setFault(on(`/manifests/${img.tag}`, { kind: 'status', status: 503 }))
  const res = await get(manifestUrl(img), { headers: accept })
  t.equal(res.status, 503)
  t.equal(ociError(res).code, 'UNAVAILABLE')
  t.match(ociError(res).message, UPSTREAM)
  const head = await get(manifestUrl(img), { method: 'HEAD', headers: accept })
  t.equal(head.status, 503, 'HEAD (what containerd sends first) keeps the status')
  t.notOk(head.headers['docker-content-digest'], 'and claims no digest')
})

t.test('a hanging upstream gives 504 UPSTREAM_TIMEOUT after the headers timeout', async (t) => {
  const img = await freshImage()
  faults.setFault(on(`/manifests/${img.tag}`, { kind: 'hang' }))
  const res = await get(manifestUrl(img), { headers: accept })
  t.equal(res.status, 504)
  t.equal(ociError(res).code, 'UPSTREAM_TIMEOUT')
  t.match(ociError(res).message, UPSTREAM)
})

t.test('a manifest reset midway gives 502, no partial manifest', async (t) => {
  const img = await freshImage()
  faults.setFault(on(`/manifests/${img.tag}`, { kind: 'reset' }))
  const res = await get(manifestUrl(img), { headers: accept })
  t.equal(res.status, 502)
  t.equal(ociError(res).code, 'UPSTREAM_ERROR')
  t.match(ociError(res).message, UPSTREAM)
})

t.test('wrong bytes for a manifest by digest (same length) are never served', async (t) => {
  const img = await freshImage()
  faults.setFault(on(`/manifests/${img.digest}`, { kind: 'replace', body: (b) => flipByte(b, 10) }))
  const res = await get(manifestUrl(img, img.digest), { headers: accept })
  t.equal(res.status, 502)
  t.equal(ociError(res).code, 'UPSTREAM_ERROR')
  t.match(ociError(res).message, UPSTREAM)
  t.match(ociError(res).message, /hash|match/)
  t.notOk(res.headers['docker-content-digest'])
  // Still nothing cached: the honest bytes come through once the upstream is honest again.
  faults.setFault(undefined)
  const again = await get(manifestUrl(img, img.digest), { headers: accept })
  t.equal(again.status, 200)
  t.equal(sha256(again.body), img.digest)
})

t.test('a tag answer whose Docker-Content-Digest lies is refused', async (t) => {
  const img = await freshImage()
  const liar = `sha256:${'0'.repeat(64)}`
  faults.setFault(on(`/manifests/${img.tag}`, { kind: 'headers', set: { 'docker-content-digest': liar } }))
  const res = await get(manifestUrl(img), { headers: accept })
  t.equal(res.status, 502)
  t.equal(ociError(res).code, 'UPSTREAM_ERROR')
  t.match(ociError(res).message, UPSTREAM)
  t.match(ociError(res).message, /Docker-Content-Digest/)
})

t.test('a manifest over 4 MiB is refused', async (t) => {
  const img = await freshImage()
  const huge = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: img.mediaType, padding: 'x'.repeat(4 * 1024 * 1024) }))
  faults.setFault(on(`/manifests/${img.tag}`, { kind: 'replace', body: huge }))
  const res = await get(manifestUrl(img), { headers: accept })
  t.equal(res.status, 502)
  t.equal(ociError(res).code, 'UPSTREAM_ERROR')
  t.match(ociError(res).message, UPSTREAM)
  t.match(ociError(res).message, String(4 * 1024 * 1024), 'the message gives the limit')
})

t.test('an endless manifest is cut off at the limit, not read whole', async (t) => {
  // A second upstream that streams manifest bytes for as long as anyone reads them, with and
  // without a (lying, huge) Content-Length. How much it managed to write shows how much was read.
  let written = 0
  const chunk = Buffer.alloc(64 * 1024, 0x20)
  const server = createServer((req, res) => {
    const declared = req.url?.includes('declared')
    res.writeHead(200, {
      'content-type': 'application/vnd.oci.image.manifest.v1+json',
      ...(declared ? { 'content-length': String(1024 ** 3) } : {}),
    })
    res.write('{"schemaVersion":2,"padding":"')
    const pump = () => {
      while (!res.destroyed && written < 1024 ** 3) {
        written += chunk.length
        if (!res.write(chunk)) return void res.once('drain', pump)
      }
    }
    pump()
  })
  const endlessUrl = await listen(t, server)
  const endless = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: 'endless.test', url: endlessUrl, default: true }], timeouts: TIMEOUTS })
  for (const tag of ['chunked', 'declared']) {
    written = 0
    const res = await get(`${endless.url}/v2/big/manifests/${tag}`, { headers: accept })
    t.equal(res.status, 502, `${tag}: refused`)
    t.equal(ociError(res).code, 'UPSTREAM_ERROR')
    t.match(ociError(res).message, 'endless.test')
    t.match(ociError(res).message, /limit/)
    // Socket buffers on loopback hold a few MiB at most; a whole read would be 1 GiB.
    t.ok(written < 64 * 1024 * 1024, `${tag}: the upstream wrote only ${written} bytes before it was cut off`)
  }
})

t.test('a blob with wrong bytes (same length) aborts the client before the whole blob arrives', async (t) => {
  const img = await freshImage()
  await allowBlobs(img)
  const layer = img.layers[0]!
  faults.setFault(on(`/blobs/${layer.digest}`, { kind: 'replace', body: (b) => flipByte(b, b.length - 100) }))
  const res = await get(blobUrl(img))
  t.equal(res.status, 200, 'headers left before the mismatch could be known')
  t.notOk(res.complete, 'the connection was aborted')
  t.ok(res.body.length < layer.size, `only ${res.body.length} of ${layer.size} bytes arrived`)
  t.ok(res.error, 'the client sees an error')
})

t.test('wrong bytes sent chunked (no Content-Length) never look like a complete answer', async (t) => {
  // The client cannot tell a short chunked body from a whole one unless the connection breaks.
  const img = await pushImage(registry.url, `faults/r${++repoCount}`, 'v1', { layerSize: 4 * 1024 * 1024 })
  const layer = img.layers[0]!
  const honest = Buffer.from(await (await fetch(`${registry.url}/v2/${img.repo}/blobs/${layer.digest}`)).arrayBuffer())
  const cdn = await startOrigin(t, Buffer.from(flipByte(honest, honest.length - 1)), { chunked: true })
  await allowBlobs(img)
  faults.setFault(on(`/blobs/${layer.digest}`, { kind: 'redirect', location: `${cdn.url}/blob` }))
  for (let i = 0; i < 3; i++) {
    const res = await get(blobUrl(img))
    t.equal(res.status, 200)
    t.equal(res.headers['transfer-encoding'], 'chunked')
    t.notOk(res.complete, 'the connection was aborted, not ended')
    t.ok(res.body.length < layer.size, `only ${res.body.length} of ${layer.size} bytes arrived`)
    t.notOk(res.body.includes('Error:'), 'no error text was mixed into the blob bytes')
  }
})

t.test('a blob reset midway aborts the client', async (t) => {
  const img = await freshImage()
  await allowBlobs(img)
  const layer = img.layers[0]!
  faults.setFault(on(`/blobs/${layer.digest}`, { kind: 'reset' }))
  const res = await get(blobUrl(img))
  t.notOk(res.complete, 'the connection was aborted')
  t.ok(res.body.length < layer.size, `only ${res.body.length} of ${layer.size} bytes arrived`)
})

t.test('a truncated chunked blob aborts the client', async (t) => {
  const img = await freshImage()
  await allowBlobs(img)
  const layer = img.layers[0]!
  faults.setFault(on(`/blobs/${layer.digest}`, { kind: 'truncate' }))
  const res = await get(blobUrl(img))
  t.notOk(res.complete, 'the connection was aborted')
  t.ok(res.body.length < layer.size, `only ${res.body.length} of ${layer.size} bytes arrived`)
})

t.test('a dripping upstream is cut off after the body timeout', async (t) => {
  const img = await freshImage()
  await allowBlobs(img)
  const layer = img.layers[0]!
  // A manifest never served before: a warm tag would only be revalidated (a 304 has no body to drip).
  const cold = await freshImage()
  const drip = { kind: 'drip', intervalMs: 1_500, bytesPerTick: 16 } as const
  faults.setFault((req) => (req.path.endsWith(`/manifests/${cold.tag}`) || req.path.endsWith(`/blobs/${layer.digest}`) ? drip : undefined))
  const manifest = await get(manifestUrl(cold), { headers: accept })
  t.equal(manifest.status, 504, 'manifest: 504')
  t.equal(ociError(manifest).code, 'UPSTREAM_TIMEOUT')
  t.match(ociError(manifest).message, UPSTREAM)
  const blob = await get(blobUrl(img))
  t.notOk(blob.complete, 'blob: the connection was aborted')
  t.ok(blob.body.length < layer.size)
})

t.test('blob redirects to another origin are followed without credentials', async (t) => {
  const img = await freshImage()
  const layer = img.layers[0]!
  const layerBytes = await (await fetch(`${registry.url}/v2/${img.repo}/blobs/${layer.digest}`)).arrayBuffer()
  const cdn = await startOrigin(t, Buffer.from(layerBytes))
  // A second fault proxy demands basic auth, as a private registry would, so trustpull has
  // credentials to (not) leak.
  const authed = await startFaultProxy(t, registry.url, (req) => {
    if (!req.headers.authorization) return { kind: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="faulty"' } }
    if (req.path.endsWith(`/blobs/${layer.digest}`)) return { kind: 'redirect', location: `${cdn.url}/cdn/blob?sig=abc` }
    return undefined
  })
  const p = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: UPSTREAM, url: authed.url, default: true, auth: { username: 'puller', password: 'pull-secret' } }],
    timeouts: TIMEOUTS,
  })
  t.equal((await get(`${p.url}/v2/${img.repo}/manifests/${img.tag}`, { headers: accept })).status, 200)
  const res = await get(`${p.url}/v2/${img.repo}/blobs/${layer.digest}`)
  t.equal(res.status, 200)
  t.ok(res.complete)
  t.equal(sha256(res.body), layer.digest, 'the blob came from the CDN, checked')
  const blobRequest = authed.requests.find((r) => r.path.endsWith(`/blobs/${layer.digest}`) && r.headers.authorization)
  t.ok(blobRequest, 'the registry itself got credentials')
  t.equal(cdn.seen.length, 1, 'the CDN was asked once')
  t.notOk(cdn.seen[0]!.authorization, 'but no Authorization reached the CDN')
})

t.test('a redirect loop ends in 502 after the hop limit', async (t) => {
  const img = await freshImage()
  await allowBlobs(img)
  const layer = img.layers[0]!
  faults.clearRequests()
  faults.setFault(on(`/blobs/${layer.digest}`, { kind: 'redirect', location: `${faults.url}/v2/${img.repo}/blobs/${layer.digest}?again` }))
  const res = await get(blobUrl(img))
  t.equal(res.status, 502)
  t.equal(ociError(res).code, 'UPSTREAM_ERROR')
  t.match(ociError(res).message, UPSTREAM)
  t.match(ociError(res).message, /redirect/)
  const asked = faults.requests.filter((r) => r.path.endsWith(`/blobs/${layer.digest}`)).length
  t.ok(asked > 1 && asked <= 10, `the loop was followed a bounded number of times (${asked})`)
})

t.test('refusePrivateRedirects refuses link-local and loopback redirect targets', async (t) => {
  const img = await freshImage()
  const layer = img.layers[0]!
  const cdn = await startOrigin(t, Buffer.from('never served'))
  const guarded = await startFaultProxy(t, registry.url)
  const p = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: UPSTREAM, url: guarded.url, default: true, refusePrivateRedirects: true }],
    timeouts: TIMEOUTS,
  })
  t.equal((await get(`${p.url}/v2/${img.repo}/manifests/${img.tag}`, { headers: accept })).status, 200)
  for (const location of ['http://169.254.169.254/latest/meta-data/', `${cdn.url}/cdn/blob`]) {
    guarded.setFault(on(`/blobs/${layer.digest}`, { kind: 'redirect', location }))
    const res = await get(`${p.url}/v2/${img.repo}/blobs/${layer.digest}`)
    t.equal(res.status, 502, `${location}: refused`)
    const err = ociError(res)
    t.equal(err.code, 'UPSTREAM_ERROR')
    t.match(err.message, UPSTREAM)
    t.match(err.message, /private address/, 'says why, without trying to connect (that would time out as 504)')
    t.match(err.message, new URL(location).hostname)
  }
  t.equal(cdn.seen.length, 0, 'the loopback target was never asked')
})

t.test('connection refused: 503 naming the upstream, and service resumes after a restart', async (t) => {
  const img = await freshImage()
  // No store: it would answer the tag from its last digest (test/store/mirror.test.ts).
  const direct = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: 'direct.test', url: registry.url, default: true }],
    timeouts: TIMEOUTS,
    storage: { enabled: false },
  })
  const url = `${direct.url}/v2/${img.repo}/manifests/${img.tag}`
  t.equal((await get(url, { headers: accept })).status, 200, 'served while the registry is up')
  await registry.stop()
  const down = await get(url, { headers: accept })
  t.equal(down.status, 503)
  t.equal(ociError(down).code, 'UNAVAILABLE')
  t.match(ociError(down).message, 'direct.test')
  t.equal((await get(`${direct.url}/healthz`)).status, 200, 'the proxy stays up')
  await registry.restart()
  const back = await get(url, { headers: accept })
  t.equal(back.status, 200, 'served again once the registry is back')
  t.equal(sha256(back.body), img.digest)
})

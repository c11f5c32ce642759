// Attack corpus, transport side: upstreams that drip, hang, truncate, reset, send malformed HTTP,
// or redirect where they must not. Each case asserts a clean 5xx (or, for a missing manifest, 404)
// OCI error naming the upstream, in bounded time (the upstream timeouts, not the attacker, decide
// how long), with nothing of the hostile answer passed on, and the proxy still healthy.
import t from 'tap'
import { createServer } from 'node:http'
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy, type Fault, type FaultChooser } from '../helpers/fault-proxy.ts'
import { MediaTypes, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { oneRequest as get, ociError, type Answer, type OciError } from '../helpers/one-request.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'hostile.test'
/** Short upstream timeouts, so each case ends in about a second whatever the upstream does. */
const TIMEOUTS = { connect: '1s', headers: '1s', body: '1s' }

type Asserts = Pick<typeof t, 'equal' | 'match' | 'ok' | 'notOk'>

/** A clean refusal: status, code, message naming the upstream, JSON body, no digest. */
function refused(t: Asserts, res: Answer, status: number, code: string, upstream = UPSTREAM): OciError {
  t.equal(res.status, status, `answered ${status}`)
  t.equal(res.headers['content-type'], 'application/json', 'with an OCI error body')
  t.notOk(res.headers['docker-content-digest'], 'claiming no digest')
  const err = ociError(res)
  t.equal(err.code, code, `code ${code}`)
  t.match(err.message, upstream, 'naming the upstream')
  return err
}

/** Listens on loopback; every socket is destroyed at teardown. */
async function listen(t: Teardown, server: ReturnType<typeof createServer> | ReturnType<typeof createNetServer>): Promise<{ url: string; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>()
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  )
  const port = (server.address() as AddressInfo).port
  return { url: `http://127.0.0.1:${port}`, port, sockets }
}

/**
 * An upstream speaking raw bytes: `script(socket)` runs for every connection once a request has
 * arrived, so it can answer with anything, or with nothing.
 */
async function startRawUpstream(t: Teardown, script: (socket: Socket) => void): Promise<{ url: string; sockets: Set<Socket> }> {
  const server = createNetServer((socket) => {
    socket.on('error', () => undefined)
    socket.once('data', () => script(socket))
  })
  return listen(t, server)
}

/** A trustpull whose only upstream is `url`, with short timeouts. */
async function proxyFor(t: Teardown, url: string, extra: Record<string, unknown> = {}) {
  return startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: UPSTREAM, url, default: true, ...extra }], timeouts: TIMEOUTS })
}

// ---------------------------------------------------------------------------------------------

const registry = await startRegistry(t)
const front = await startFaultProxy(t, registry.url)
const keys = await generateKeyPair(await tempDir(t, 'trustpull-attack-keys-'))
const proxy = await startProxy(t, {
  upstreams: [{ name: UPSTREAM, url: front.url, default: true }],
  policies: [{ name: 'signed', images: [{ glob: `${UPSTREAM}/**` }], authorities: [{ key: { data: keys.publicKeyPem } }] }],
  timeouts: TIMEOUTS,
})
t.afterEach(() => front.setFault(undefined))

let count = 0
/** A fresh image signed with the real cosign, so each case starts with nothing cached. */
async function signedImage(): Promise<PushedImage> {
  const img = await pushImage(registry.url, `app/t${++count}`, 'v1', { layerSize: 64 * 1024 })
  await signImage(`${registry.host}/${img.repo}@${img.digest}`, keys.privateKeyPath)
  return img
}
const manifestUrl = (img: PushedImage, ref = img.tag!) => `${proxy.url}/v2/${img.repo}/manifests/${ref}`
const sigTag = (img: PushedImage) => `${img.digest.replace(':', '-')}.sig`
const on =
  (suffix: string, fault: Fault): FaultChooser =>
  (req) =>
    req.path.endsWith(suffix) ? fault : undefined

async function healthy(t: Asserts, url = proxy.url): Promise<void> {
  t.equal((await get(`${url}/healthz`)).status, 200, 'the proxy still answers')
}

t.test('slowloris: an upstream dripping a byte at a time, faster than the idle timeout', async (t) => {
  // Each byte comes well within the 1 s idle timeout, so only a deadline for the whole body ends
  // it; without one a 500-byte manifest at 3 bytes a second would hold the request for minutes.
  const drip: Fault = { kind: 'drip', intervalMs: 300, bytesPerTick: 1 }

  t.test('the manifest', async (t) => {
    const img = await signedImage()
    front.setFault(on('/manifests/v1', drip))
    const err = refused(t, await get(manifestUrl(img)), 504, 'UPSTREAM_TIMEOUT')
    t.match(err.message, /took longer than 1000 ms/)
  })
  t.test('the signature manifest: undecided, not allowed', async (t) => {
    const img = await signedImage()
    front.setFault(on(`/manifests/${sigTag(img)}`, drip))
    const err = refused(t, await get(manifestUrl(img)), 502, 'UPSTREAM_ERROR')
    t.match(err.message, /took longer than 1000 ms/)
  })
  t.test('the body of a 404', async (t) => {
    const img = await signedImage()
    front.setFault(on('/manifests/missing', drip))
    const err = refused(t, await get(manifestUrl(img, 'missing')), 404, 'MANIFEST_UNKNOWN')
    t.match(err.message, /not found/)
  })
  t.test('the body of a 500', async (t) => {
    const img = await signedImage()
    // The fault proxy's status fault answers at once; a dripping error body comes from a raw upstream.
    const slow = await startRawUpstream(t, (socket) => {
      socket.write('HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n')
      const timer = setInterval(() => (socket.destroyed ? clearInterval(timer) : socket.write('x')), 300)
      socket.once('close', () => clearInterval(timer))
    })
    const p = await proxyFor(t, slow.url)
    refused(t, await get(`${p.url}/v2/${img.repo}/manifests/v1`), 502, 'UPSTREAM_ERROR')
  })
  t.test('headers sent a byte at a time: the headers timeout ends it', async (t) => {
    const slow = await startRawUpstream(t, (socket) => {
      const text = Buffer.from('HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 2\r\n\r\n{}')
      let i = 0
      const timer = setInterval(() => (socket.destroyed || i >= text.length ? clearInterval(timer) : socket.write(text.subarray(i, ++i))), 100)
      socket.once('close', () => clearInterval(timer))
    })
    const p = await proxyFor(t, slow.url)
    refused(t, await get(`${p.url}/v2/app/x/manifests/v1`), 504, 'UPSTREAM_TIMEOUT')
  })
  await healthy(t)
})

t.test('a hanging TCP accept: connected, never read from, never answered', async (t) => {
  const server = createNetServer({ pauseOnConnect: true }, () => undefined)
  const silent = await listen(t, server)
  const p = await proxyFor(t, silent.url)
  refused(t, await get(`${p.url}/v2/app/x/manifests/v1`), 504, 'UPSTREAM_TIMEOUT')
  // The proxy gives the connection up: nothing is left open towards the silent upstream. (A paused
  // socket never sees the FIN, so the upstream starts reading now, only to learn it was closed.)
  t.ok(silent.sockets.size > 0, 'the upstream did accept a connection')
  for (const s of silent.sockets) s.resume()
  for (let i = 0; i < 50 && silent.sockets.size > 0; i++) await sleep(50)
  t.equal(silent.sockets.size, 0, 'the proxy closed its connection')
  await healthy(t, p.url)
})

t.test('truncated chunked bodies', async (t) => {
  t.test('a manifest', async (t) => {
    const img = await signedImage()
    front.setFault(on('/manifests/v1', { kind: 'truncate' }))
    refused(t, await get(manifestUrl(img)), 502, 'UPSTREAM_ERROR')
  })
  t.test('the signature manifest: undecided, then allowed once whole', async (t) => {
    const img = await signedImage()
    front.setFault(on(`/manifests/${sigTag(img)}`, { kind: 'truncate' }))
    refused(t, await get(manifestUrl(img)), 502, 'UPSTREAM_ERROR')
    front.setFault(undefined)
    t.equal((await get(manifestUrl(img))).status, 200, 'nothing of the failure was cached')
  })
})

t.test('resets midway', async (t) => {
  t.test('the signature layer', async (t) => {
    const img = await signedImage()
    front.setFault((req) => (req.path.includes('/blobs/') && !img.layerDigests.some((d) => req.path.endsWith(d)) ? { kind: 'reset', afterBytes: 10 } : undefined))
    refused(t, await get(manifestUrl(img)), 502, 'UPSTREAM_ERROR')
    front.setFault(undefined)
    t.equal((await get(manifestUrl(img))).status, 200)
  })
  t.test('before any header of the signature manifest', async (t) => {
    const img = await signedImage()
    front.setFault(on(`/manifests/${sigTag(img)}`, { kind: 'reset', beforeHeaders: true }))
    refused(t, await get(manifestUrl(img)), 502, 'UPSTREAM_ERROR')
  })
})

t.test('malformed HTTP from the upstream', async (t) => {
  const cases: [string, string][] = [
    [
      'Content-Length and Transfer-Encoding together (response smuggling)',
      'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
    ],
    ['an invalid chunk size', 'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'],
    ['a garbage status line', 'HTCPCP/1.0 418 I am a teapot\r\n\r\n'],
    [
      'fewer bytes than Content-Length, then a close',
      'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\ncontent-length: 5000\r\n\r\n{"schemaVersion":2',
    ],
    ['a header with a bare CR inside', 'HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\rset-cookie: x=1\r\ncontent-length: 2\r\n\r\n{}'],
    [
      `${70 * 1024} bytes of response headers`,
      `HTTP/1.1 200 OK\r\n${Array.from({ length: 700 }, (_, i) => `x-junk-${i}: ${'j'.repeat(90)}\r\n`).join('')}content-length: 2\r\n\r\n{}`,
    ],
  ]
  for (const [what, raw] of cases) {
    const bad = await startRawUpstream(t, (socket) => socket.end(raw))
    const p = await proxyFor(t, bad.url)
    const res = await get(`${p.url}/v2/app/x/manifests/v1`)
    refused(t, res, 502, 'UPSTREAM_ERROR')
    t.notOk(res.headers['set-cookie'], `${what}: nothing of it reaches the client`)
  }
})

t.test('redirects', async (t) => {
  // A "metadata service" on loopback: it records whoever reaches it.
  const reached: string[] = []
  const metadata = createServer((req, res) => {
    reached.push(req.url ?? '')
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('{"secret":"instance credentials"}')
  })
  const target = await listen(t, metadata)
  const img = await signedImage()
  const layer = img.layerDigests[0]!
  t.equal((await get(manifestUrl(img))).status, 200, 'the image is allowed, so its blobs are vouched for')

  t.test('a manifest answered with a redirect is not followed', async (t) => {
    for (const location of ['http://169.254.169.254/latest/meta-data/', `${target.url}/manifest`]) {
      const other = await signedImage()
      front.setFault(on('/manifests/v1', { kind: 'redirect', location }))
      t.match(refused(t, await get(manifestUrl(other)), 502, 'UPSTREAM_ERROR').message, /answered 307/)
    }
    t.same(reached, [], 'the redirect target was never asked')
  })

  t.test('a blob redirected to a non-HTTP URL', async (t) => {
    for (const location of ['file:///etc/passwd', 'ftp://127.0.0.1/blob', 'gopher://127.0.0.1:6379/_FLUSHALL']) {
      front.setFault(on(`/blobs/${layer}`, { kind: 'redirect', location }))
      t.match(refused(t, await get(`${proxy.url}/v2/${img.repo}/blobs/${layer}`), 502, 'UPSTREAM_ERROR').message, /non-HTTP URL/, location)
    }
  })

  t.test('refusePrivateRedirects: every spelling of loopback, link-local and unspecified is refused', async (t) => {
    const guarded = await startProxy(t, {
      noMatchPolicy: 'allow',
      upstreams: [{ name: UPSTREAM, url: front.url, default: true, refusePrivateRedirects: true }],
      timeouts: TIMEOUTS,
    })
    t.equal((await get(`${guarded.url}/v2/${img.repo}/manifests/v1`)).status, 200)
    const port = target.port
    const spellings = [
      `http://169.254.169.254/latest/meta-data/iam/security-credentials/`,
      `http://[fd00:ec2::254]/latest/meta-data/`,
      `http://2130706433:${port}/decimal`,
      `http://0x7f.0.0.1:${port}/hex`,
      `http://0177.0.0.1:${port}/octal`,
      `http://127.1:${port}/short`,
      `http://[::ffff:127.0.0.1]:${port}/mapped`,
      `http://[::1]:${port}/v6-loopback`,
      `http://localhost:${port}/name`,
      `http://localhost.:${port}/trailing-dot`,
      `http://app.localhost:${port}/sub`,
      `http://0.0.0.0:${port}/unspecified`,
      `http://[::]:${port}/unspecified6`,
      `http://10.0.0.1/private`,
      `http://100.100.100.200/alibaba-metadata`,
    ]
    for (const location of spellings) {
      front.setFault(on(`/blobs/${layer}`, { kind: 'redirect', location }))
      const err = refused(t, await get(`${guarded.url}/v2/${img.repo}/blobs/${layer}`), 502, 'UPSTREAM_ERROR')
      t.match(err.message, /private address/, `${location}: refused as private`)
    }
    t.same(reached, [], 'the loopback target was never reached')
  })

  t.test('refusePrivateRedirects: a token realm at the metadata address is refused before any request to it', async (t) => {
    const challenger = await startFaultProxy(t, registry.url, () => ({
      kind: 'status',
      status: 401,
      headers: { 'www-authenticate': `Bearer realm="http://169.254.169.254/token",service="x"` },
    }))
    const p = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: UPSTREAM, url: challenger.url, default: true, refusePrivateRedirects: true }], timeouts: TIMEOUTS })
    t.match(refused(t, await get(`${p.url}/v2/${img.repo}/manifests/v1`), 502, 'UPSTREAM_ERROR').message, /token realm at a private address \(169\.254\.169\.254\)/)
  })

  t.test('a redirect loop on a signature layer: undecided, bounded', async (t) => {
    const other = await signedImage()
    front.clearRequests()
    front.setFault((req) =>
      req.path.includes('/blobs/') && !other.layerDigests.some((d) => req.path.endsWith(d)) ? { kind: 'redirect', location: `${front.url}${req.path}?again` } : undefined,
    )
    const err = refused(t, await get(manifestUrl(other)), 502, 'UPSTREAM_ERROR')
    t.match(err.message, /redirected .* more than 5 times/)
    const hops = front.requests.filter((r) => r.path.includes('/blobs/')).length
    t.ok(hops <= 6, `${hops} requests, not an endless loop`)
  })
  await healthy(t)
})

t.test('control: after all of this, a signed image is served intact', async (t) => {
  const img = await signedImage()
  const res = await get(manifestUrl(img))
  t.equal(res.status, 200)
  t.equal(sha256(res.body), img.digest)
  t.equal(res.headers['content-type'], MediaTypes.ociManifest)
})

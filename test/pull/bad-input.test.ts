// Bad input from clients: each gets a clear OCI error, and nothing reaches the upstream (the fault
// proxy in front of the registry records every request it sees). Requests are written on raw
// sockets, so no client library normalises `..` or percent-escapes on our behalf.
import t from 'tap'
import { connect } from 'node:net'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

interface RawAnswer {
  status: number
  headers: Record<string, string>
  body: string
}

const registry = await startRegistry(t)
const faults = await startFaultProxy(t, registry.url)
const img = await pushImage(registry.url, 'library/app', 'v1')
const proxy = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: 'docker.io', url: faults.url, default: true }] })
const port = Number(new URL(proxy.url).port)

/**
 * Sends one request exactly as written (`Connection: close`, so the server closes after answering)
 * and reads the answer until the socket closes. A server that refuses a request while it is still
 * being sent may reset the connection: what arrived before counts.
 */
function raw(method: string, target: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    let failure: Error | undefined
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', (e) => (failure = e))
    socket.once('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const end = text.indexOf('\r\n\r\n')
      if (end === -1) return reject(new Error(`no HTTP answer (${failure?.message ?? 'closed'}): ${JSON.stringify(text.slice(0, 200))}`))
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
      const parsed: Record<string, string> = {}
      for (const line of lines) {
        const colon = line.indexOf(':')
        parsed[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      resolve({ status: Number(statusLine!.split(' ')[1]), headers: parsed, body: text.slice(end + 4) })
    })
    const lines = [`${method} ${target} HTTP/1.1`, `Host: ${proxy.host}`, 'Connection: close', ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)]
    // write, not end: a half-closed client may see its request abandoned before the answer
    socket.write(`${lines.join('\r\n')}\r\n\r\n`)
  })
}

function ociError(answer: RawAnswer): { code: string; message: string } {
  return (JSON.parse(answer.body) as { errors: { code: string; message: string }[] }).errors[0]!
}

interface Case {
  method?: string
  target: string
  headers?: Record<string, string>
  status: number
  code: string
  message: RegExp
}

/** Runs each case and shows that the upstream saw none of them. */
async function refused(t: Asserts, cases: Case[]): Promise<void> {
  for (const c of cases) {
    faults.clearRequests()
    const method = c.method ?? 'GET'
    const res = await raw(method, c.target, { accept: ACCEPT_ANY_MANIFEST, ...c.headers })
    const what = `${method} ${c.target.length > 80 ? `${c.target.slice(0, 77)}...` : c.target}`
    t.equal(res.status, c.status, `${what}: ${c.status}`)
    t.equal(res.headers['content-type'], 'application/json', `${what}: an OCI error body`)
    const err = ociError(res)
    t.equal(err.code, c.code, `${what}: ${c.code}`)
    t.match(err.message, c.message, `${what}: says why`)
    t.same(
      faults.requests.map((r) => `${r.method} ${r.url}`),
      [],
      `${what}: nothing reached upstream`,
    )
  }
}
type Asserts = Pick<typeof t, 'equal' | 'match' | 'same'>

const digest = img.digest
const hex = digest.slice('sha256:'.length)

t.test('the recording works: a valid request does reach upstream', async (t) => {
  faults.clearRequests()
  const res = await raw('GET', `/v2/library/app/manifests/v1`, { accept: ACCEPT_ANY_MANIFEST })
  t.equal(res.status, 200)
  t.equal(faults.requests.length, 1)
})

t.test('malformed repository names', (t) =>
  refused(t, [
    { target: '/v2/Library/app/manifests/v1', status: 400, code: 'NAME_INVALID', message: /invalid repository name "Library\/app"/ },
    { target: '/v2/library//app/manifests/v1', status: 400, code: 'NAME_INVALID', message: /empty segments/ },
    { target: '/v2/library/app-/manifests/v1', status: 400, code: 'NAME_INVALID', message: /invalid repository name/ },
    { target: '/v2/library/a..b/manifests/v1', status: 400, code: 'NAME_INVALID', message: /invalid repository name/ },
    { target: '/v2/library/app/manifests/v1/', status: 404, code: 'NOT_FOUND', message: /no such endpoint/ },
    { target: '/v2/library/app//manifests/v1', status: 400, code: 'NAME_INVALID', message: /empty segments/ },
    { target: `/v2/${'a'.repeat(256)}/manifests/v1`, status: 400, code: 'NAME_INVALID', message: /invalid repository name/ },
    { target: `/v2/${'ab/'.repeat(86)}c/manifests/v1`, status: 400, code: 'NAME_INVALID', message: /invalid repository name/ },
    { target: '/v2/_catalog', status: 404, code: 'NOT_FOUND', message: /no such endpoint/ },
  ]),
)

t.test('a backslash in the path is refused before routing', async (t) => {
  // @hono/node-server refuses it itself (400, no OCI body: it runs before the app).
  faults.clearRequests()
  const res = await raw('GET', '/v2/library/app\\..\\secret/manifests/v1')
  t.equal(res.status, 400)
  t.same(faults.requests, [], 'nothing reached upstream')
})

t.test('dot segments and encoded slashes', (t) =>
  refused(t, [
    { target: '/v2/library/../secret/manifests/v1', status: 400, code: 'NAME_INVALID', message: /dot segments/ },
    { target: '/v2/library/./app/manifests/v1', status: 400, code: 'NAME_INVALID', message: /dot segments/ },
    { target: '/v2/../v2/library/app/manifests/v1', status: 400, code: 'NAME_INVALID', message: /dot segments/ },
    { target: '/v2/library/app/manifests/..', status: 400, code: 'NAME_INVALID', message: /dot segments/ },
    { target: '/v2/library/%2e%2e/secret/manifests/v1', status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
    { target: '/v2/library/%2E%2E/secret/manifests/v1', status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
    { target: '/v2/library%2Fapp/manifests/v1', status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
    { target: '/v2/library%2fapp/manifests/v1', status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
    { target: '/v2/library/app/manifests/v1%2F..%2F..', status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
    { target: '/v2/library/app/blobs/sha256%3A' + hex, status: 400, code: 'NAME_INVALID', message: /encoded characters/ },
  ]),
)

t.test('bad tags and digests', (t) =>
  refused(t, [
    { target: '/v2/library/app/manifests/-x', status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest "-x"/ },
    { target: '/v2/library/app/manifests/.x', status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/manifests/${'t'.repeat(129)}`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/manifests/md5:${'a'.repeat(32)}`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest "md5:/ },
    { target: `/v2/library/app/manifests/sha256:${hex.slice(1)}`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/manifests/sha256:${hex.toUpperCase()}`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/manifests/sha256:${'g'.repeat(64)}`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/manifests/sha256:${hex}:x`, status: 400, code: 'MANIFEST_INVALID', message: /invalid tag or digest/ },
    { target: `/v2/library/app/blobs/md5:${'a'.repeat(32)}`, status: 400, code: 'DIGEST_INVALID', message: /invalid digest "md5:/ },
    { target: `/v2/library/app/blobs/sha256:${hex.slice(2)}`, status: 400, code: 'DIGEST_INVALID', message: /invalid digest/ },
    { target: '/v2/library/app/blobs/latest', status: 400, code: 'DIGEST_INVALID', message: /invalid digest/ },
    { target: `/v2/library/app/referrers/md5:${'a'.repeat(32)}`, status: 400, code: 'DIGEST_INVALID', message: /invalid digest/ },
  ]),
)

t.test('registries that are not configured upstreams', (t) =>
  refused(t, [
    { target: '/v2/library/app/manifests/v1?ns=evil.example', status: 403, code: 'DENIED', message: /registry "evil.example" is not an upstream of this proxy/ },
    { target: '/v2/library/app/manifests/v1?ns=169.254.169.254', status: 403, code: 'DENIED', message: /"169.254.169.254" is not an upstream/ },
    { target: '/v2/library/app/manifests/v1?ns=', status: 403, code: 'DENIED', message: /is not an upstream/ },
    { target: '/v2/library/app/manifests/v1?ns=docker.io&ns=docker.io', status: 400, code: 'BAD_REQUEST', message: /more than one ns parameter/ },
    { target: '/v2/library/app/manifests/v1?ns=docker.io&ns=evil.example', status: 400, code: 'BAD_REQUEST', message: /more than one ns parameter/ },
    { target: '/v2/evil.example/x/manifests/1', status: 403, code: 'DENIED', message: /registry "evil.example" is not an upstream of this proxy/ },
    { target: '/v2/localhost/x/manifests/1', status: 403, code: 'DENIED', message: /"localhost" is not an upstream/ },
    { target: '/v2/evil.example:5000/x/manifests/1', status: 400, code: 'NAME_INVALID', message: /invalid repository name/ },
    { target: `/v2/evil.example/x/blobs/${digest}`, status: 403, code: 'DENIED', message: /"evil.example" is not an upstream/ },
  ]),
)

t.test('push, delete and upload endpoints', (t) =>
  refused(t, [
    { method: 'PUT', target: '/v2/library/app/manifests/v1', status: 405, code: 'UNSUPPORTED', message: /PUT is not supported: trustpull is a read-only/ },
    { method: 'DELETE', target: `/v2/library/app/manifests/${digest}`, status: 405, code: 'UNSUPPORTED', message: /DELETE is not supported/ },
    { method: 'DELETE', target: `/v2/library/app/blobs/${digest}`, status: 405, code: 'UNSUPPORTED', message: /DELETE is not supported/ },
    { method: 'POST', target: '/v2/library/app/blobs/uploads/', status: 405, code: 'UNSUPPORTED', message: /read-only/ },
    { method: 'POST', target: `/v2/library/app/blobs/uploads/?mount=${digest}&from=library/other`, status: 405, code: 'UNSUPPORTED', message: /read-only/ },
    { method: 'PATCH', target: '/v2/library/app/blobs/uploads/0b9a3e4c', status: 405, code: 'UNSUPPORTED', message: /PATCH is not supported/ },
    { method: 'PUT', target: `/v2/library/app/blobs/uploads/0b9a3e4c?digest=${digest}`, status: 405, code: 'UNSUPPORTED', message: /read-only/ },
    { method: 'GET', target: '/v2/library/app/blobs/uploads/0b9a3e4c', status: 405, code: 'UNSUPPORTED', message: /read-only/ },
    { method: 'POST', target: '/v2/library/app/tags/list', status: 405, code: 'UNSUPPORTED', message: /read-only/ },
  ]),
)

t.test('malformed Range headers', async (t) => {
  // A blob is served only after a manifest that lists it: vouch for the layer first.
  const m = await raw('GET', `/v2/library/app/manifests/${img.tag}`, { accept: ACCEPT_ANY_MANIFEST })
  t.equal(m.status, 200)
  const target = `/v2/library/app/blobs/${img.layerDigests[0]}`
  const ranges = ['bytes=5-1', 'bytes=a-b', 'bytes=0-1,5-6', 'items=0-1', 'bytes=-', 'bytes', 'bytes=1-2-3', `bytes=0-${'9'.repeat(25)}`]
  await refused(
    t,
    ranges.map((range) => ({ target, headers: { range }, status: 416, code: 'RANGE_INVALID', message: /malformed Range header/ })),
  )
})

t.test('oversized headers get 431 and the proxy stays up', async (t) => {
  faults.clearRequests()
  const res = await raw('GET', '/v2/library/app/manifests/v1', { 'x-padding': 'x'.repeat(20 * 1024) })
  t.equal(res.status, 431)
  const many: Record<string, string> = {}
  for (let i = 0; i < 1_000; i++) many[`x-h${i}`] = 'yyyyyyyyyy'
  t.equal((await raw('GET', '/v2/library/app/manifests/v1', many)).status, 431, 'many small headers too')
  t.same(faults.requests, [], 'nothing reached upstream')
  const after = await raw('GET', '/v2/')
  t.equal(after.status, 200, 'the proxy still answers')
  t.equal(after.headers['docker-distribution-api-version'], 'registry/2.0')
})

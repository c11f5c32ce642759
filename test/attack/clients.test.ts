// Attack corpus, client side: requests written byte for byte on raw sockets (no client library
// to normalise them), against trustpull in front of a fault proxy that records what reaches the
// upstream. Each case asserts the answer (a 4xx with an OCI error, or Node's own 400/408/431 when
// the HTTP parser refuses before trustpull sees anything), that nothing unintended reached the
// upstream, and that the proxy goes on serving. test/pull/bad-input.test.ts has the first round
// (names, dot segments, encoded slashes, digests, push endpoints, 8 malformed Ranges, 431s).
import t from 'tap'
import type { Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

interface RawAnswer {
  status: number
  /** The status line as sent, reason phrase included. */
  statusLine: string
  headers: Record<string, string>
  body: string
}

const registry = await startRegistry(t)
const faults = await startFaultProxy(t, registry.url)
const img = await pushImage(registry.url, 'library/app', 'v1')
const proxy = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: 'docker.io', url: faults.url, default: true }] })
const port = Number(new URL(proxy.url).port)
// connectionsCheckingInterval is a documented Server property that @types/node does not declare.
const server = proxy.running.server as Server & { connectionsCheckingInterval: number }

/** Writes `text` as is and collects everything until the server closes (or `waitMs` passes). */
function exchange(text: string | Buffer, waitMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(Buffer.concat(chunks).toString('latin1'))
    }
    const timer = setTimeout(done, waitMs)
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => undefined)
    socket.once('close', done)
    socket.write(text)
  })
}

/** Every HTTP answer in a stream of them (bodies by Content-Length; OCI errors and manifests have one). */
function answers(stream: string): RawAnswer[] {
  const out: RawAnswer[] = []
  let rest = stream
  while (rest.startsWith('HTTP/')) {
    const end = rest.indexOf('\r\n\r\n')
    if (end === -1) break
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n')
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const length = Number(headers['content-length'] ?? 0)
    out.push({ status: Number(statusLine!.split(' ')[1]), statusLine: statusLine!, headers, body: rest.slice(end + 4, end + 4 + length) })
    rest = rest.slice(end + 4 + length)
  }
  return out
}

/** One request with `Connection: close`; the single answer. */
async function raw(method: string, target: string, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const lines = [
    `${method} ${target} HTTP/1.1`,
    `Host: ${proxy.host}`,
    'Connection: close',
    `Accept: ${ACCEPT_ANY_MANIFEST}`,
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ]
  const [answer] = answers(await exchange(`${lines.join('\r\n')}\r\n\r\n`))
  if (!answer) throw new Error(`no answer to ${method} ${target.slice(0, 80)}`)
  return answer
}

function ociError(answer: RawAnswer): { code: string; message: string } {
  return (JSON.parse(answer.body) as { errors: { code: string; message: string }[] }).errors[0]!
}

type Asserts = Pick<typeof t, 'equal' | 'match' | 'same' | 'ok' | 'notOk'>

function refused(t: Asserts, answer: RawAnswer, status: number, code: string, message: RegExp): void {
  t.equal(answer.status, status, `${status}`)
  t.equal(answer.headers['content-type'], 'application/json', 'an OCI error body')
  const err = ociError(answer)
  t.equal(err.code, code, code)
  t.match(err.message, message, 'says why')
}

/** What reached the upstream since the last clear: `METHOD url` lines. */
const upstreamSaw = () => faults.requests.map((r) => `${r.method} ${r.url}`)

t.beforeEach(() => faults.clearRequests())

t.test('request smuggling: conflicting framing is refused by Node before trustpull, and the hidden request never runs', async (t) => {
  const hidden = `GET /v2/library/app/manifests/smuggled HTTP/1.1\r\nHost: ${proxy.host}\r\n\r\n`
  const cases: [string, string][] = [
    ['CL.TE: Content-Length and Transfer-Encoding', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${5 + hidden.length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
    [
      'TE.CL: Transfer-Encoding first',
      `GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\n\r\n`,
    ],
    ['two different Content-Lengths', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`],
    ['Transfer-Encoding that is not chunked last', `GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n${hidden}`],
    ['an obfuscated Transfer-Encoding', `GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['a space before the colon', `GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['a negative Content-Length', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n${hidden}`],
    ['a hexadecimal Content-Length', `GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n${hidden}`],
    ['a bare LF inside a header', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${hidden}`],
    ['a NUL in a header value', `GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n\r\n${hidden}`],
  ]
  for (const [what, text] of cases) {
    faults.clearRequests()
    const got = answers(await exchange(text))
    t.equal(got.length, 1, `${what}: one answer, not two`)
    t.equal(got[0]?.status, 400, `${what}: 400`)
    t.notOk(
      upstreamSaw().some((r) => r.includes('smuggled')),
      `${what}: the hidden request never reached the upstream`,
    )
  }
})

t.test('a GET whose declared body holds a second request: the body is a body, not a request', async (t) => {
  const hidden = `GET /v2/library/app/manifests/smuggled HTTP/1.1\r\nHost: ${proxy.host}\r\n\r\n`
  const got = answers(await exchange(`GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: ${hidden.length}\r\n\r\n${hidden}`, 1_000))
  t.same(
    got.map((a) => a.status),
    [200],
    'one answer, for /v2/',
  )
  t.notOk(upstreamSaw().some((r) => r.includes('smuggled')))
})

t.test('control: two honest pipelined requests get two answers, in order', async (t) => {
  const one = (target: string) => `GET ${target} HTTP/1.1\r\nHost: x\r\nAccept: ${ACCEPT_ANY_MANIFEST}\r\n\r\n`
  const got = answers(await exchange(one('/v2/') + one('/v2/library/app/manifests/v1'), 1_500))
  t.same(
    got.map((a) => a.status),
    [200, 200],
  )
  t.equal(got[1]!.headers['docker-content-digest'], img.digest)
})

t.test('methods that are not reads: CONNECT, TRACE, OPTIONS', async (t) => {
  const tunnel = await exchange(`CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n`, 1_000)
  t.notOk(/^HTTP\/1\.1 2/.test(tunnel), `CONNECT: no tunnel (${JSON.stringify(tunnel.slice(0, 40))})`)
  const trace = await raw('TRACE', '/v2/library/app/manifests/v1', { cookie: 'session=secret-cookie' })
  refused(t, trace, 405, 'UNSUPPORTED', /TRACE is not supported/)
  t.notOk(trace.body.includes('secret-cookie'), 'TRACE echoes nothing back')
  const options = await raw('OPTIONS', '*')
  t.ok(options.status >= 400 && options.status < 500, `OPTIONS *: ${options.status}`)
  t.same(upstreamSaw(), [], 'nothing reached the upstream')
})

t.test('an absolute-form request line naming another host goes to the configured upstream only', async (t) => {
  const res = await raw('GET', 'http://169.254.169.254/v2/library/app/manifests/v1')
  t.equal(res.status, 200)
  t.equal(res.headers['docker-content-digest'], img.digest)
  t.same(upstreamSaw(), ['GET /v2/library/app/manifests/v1'], 'asked of the configured upstream, by path')
})

t.test('header injection through ns', async (t) => {
  for (const ns of ['docker.io%0D%0ASet-Cookie:%20pwned=1', 'docker.io%0ALocation:%20http://evil.example/', '%0D%0A%0D%0A<html>', 'docker.io%00', 'docker.io%E2%80%A8x']) {
    const res = await raw('GET', `/v2/library/app/manifests/v1?ns=${ns}`)
    refused(t, res, 403, 'DENIED', /is not an upstream of this proxy/)
    t.notOk(res.headers['set-cookie'], `${ns}: no injected header`)
    t.notOk(res.headers['location'], `${ns}: no injected Location`)
    t.match(res.statusLine, /^HTTP\/1\.1 403 Forbidden \(DENIED: registry "[\x20-\x7e]*" is not an upstream of this proxy\)$/, `${ns}: a clean status line`)
    t.notOk(/[^\x20-\x7e]/.test(ociError(res).message), `${ns}: only printable ASCII in the message`)
  }
  const rawCrlf = await exchange(`GET /v2/library/app/manifests/v1?ns=docker.io\rSet-Cookie: x=1 HTTP/1.1\r\nHost: x\r\n\r\n`, 1_000)
  t.match(rawCrlf, /^HTTP\/1\.1 400/, 'a raw CR in the request line: Node refuses it')
  t.same(upstreamSaw(), [], 'nothing reached the upstream')
})

t.test('thousands of query parameters', async (t) => {
  const junk = Array.from({ length: 2_000 }, (_, i) => `p${i}=1`).join('&')
  const served = await raw('GET', `/v2/library/app/manifests/v1?${junk}`)
  t.equal(served.status, 200, `2,000 unknown parameters (${junk.length} bytes): served`)
  t.same(upstreamSaw(), ['GET /v2/library/app/manifests/v1'], 'and none of them is passed upstream')

  faults.clearRequests()
  const manyNs = Array.from({ length: 1_000 }, () => 'ns=docker.io').join('&')
  refused(t, await raw('GET', `/v2/library/app/manifests/v1?${manyNs}`), 400, 'BAD_REQUEST', /more than one ns parameter/)
  const huge = Array.from({ length: 20_000 }, (_, i) => `p${i}=1`).join('&')
  t.equal((await raw('GET', `/v2/library/app/manifests/v1?${huge}`)).status, 431, `a ${huge.length}-byte query: 431 from Node`)

  faults.clearRequests()
  const referrers = await raw('GET', `/v2/library/app/referrers/${img.digest}?artifactType=a%26ns%3Devil.example%23&artifactType=b`)
  // The registry has no referrers API: trustpull builds the index itself and filters it, so the
  // hostile artifactType reaches neither the router nor the upstream.
  t.equal(referrers.status, 200, 'referrers: an index built by trustpull')
  const seen = upstreamSaw()
  t.ok(seen.length > 0 && seen.every((line) => line.startsWith('GET /v2/library/app/') && !line.includes('evil.example') && !line.includes('artifactType')), JSON.stringify(seen))
  t.same((await raw('GET', '/v2/library/app/tags/list?n=1&last=v1%0D%0AX:%201')).status, 400, 'tags/list: last must be a tag')
})

t.test('an Accept header of 600 media types: at most 32 reach the upstream', async (t) => {
  const accept = [ACCEPT_ANY_MANIFEST, ...Array.from({ length: 600 }, (_, i) => `application/x-${i}+json`)].join(',')
  t.ok(accept.length < 16 * 1024)
  const res = await raw('GET', '/v2/library/app/manifests/v1', { accept })
  t.equal(res.status, 200)
  const sent = String(faults.requests[0]?.headers.accept ?? '').split(',')
  t.ok(sent.length <= 32, `${sent.length} types were sent upstream`)
})

t.test('path traversal and encoding tricks beyond the first round', async (t) => {
  const cases: [string, number, string, RegExp][] = [
    ['/v2/library/app%00/manifests/v1', 400, 'NAME_INVALID', /encoded characters/],
    ['/v2/library/%252e%252e/secret/manifests/v1', 400, 'NAME_INVALID', /encoded characters/],
    ['/v2/library/%c0%ae%c0%ae/secret/manifests/v1', 400, 'NAME_INVALID', /encoded characters/],
    ['/v2/library/app;jsessionid=1/manifests/v1', 400, 'NAME_INVALID', /invalid repository name/],
    ['/v2/library/app/manifests/v1#fragment', 400, 'MANIFEST_INVALID', /invalid tag or digest/],
    [`/v2/library/app/blobs/${img.layerDigests[0]}/../../manifests/v1`, 400, 'NAME_INVALID', /dot segments/],
    ['//v2/library/app/manifests/v1', 404, 'NOT_FOUND', /no such endpoint/],
    ['/v2/library/app/manifests/v1/.', 400, 'NAME_INVALID', /dot segments/],
    ['/v2/library/app/manifests/v1;/../../x', 400, 'NAME_INVALID', /dot segments/],
    ['/V2/library/app/manifests/v1', 404, 'NOT_FOUND', /no such endpoint/],
  ]
  for (const [target, status, code, message] of cases) {
    const res = await raw('GET', target)
    t.equal(res.status, status, `${target}: ${status}`)
    t.equal(ociError(res).code, code, `${target}: ${code}`)
    t.match(ociError(res).message, message)
  }
  const query = await raw('GET', '/v2/library/app/manifests/v1?/../../secret')
  t.equal(query.status, 200, 'dot segments in the query are just query text')
  const nonAscii = await exchange(Buffer.concat([Buffer.from('GET /v2/libr'), Buffer.from('а', 'utf8'), Buffer.from('ry/app/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n')]), 1_000)
  t.match(nonAscii, /^HTTP\/1\.1 400/, 'raw non-ASCII bytes in the path: 400')
  t.same(
    upstreamSaw().filter((r) => !r.endsWith('/manifests/v1')),
    [],
    'only the honest request reached the upstream',
  )
})

t.test('malformed Range headers beyond the first round', async (t) => {
  t.equal((await raw('GET', '/v2/library/app/manifests/v1')).status, 200, 'the manifest vouches for the layer')
  const target = `/v2/library/app/blobs/${img.layerDigests[0]}`
  for (const range of ['bytes=0-1, 2-3', 'bytes= 0-1', `bytes=0-${'9'.repeat(20)}`, 'bytes=--1', 'bytes=\u0660-\u0661', 'bytes=0-1;x']) {
    faults.clearRequests()
    const res = await raw('GET', target, { range })
    refused(t, res, 416, 'RANGE_INVALID', /malformed Range header/)
    t.same(upstreamSaw(), [], `${JSON.stringify(range)}: not passed upstream`)
  }
  const twice = answers(await exchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nRange: bytes=5-9\r\nConnection: close\r\n\r\n`))[0]!
  t.equal(twice.status, 416, 'two Range headers: refused')
  const unvouched = await raw('GET', `/v2/library/app/blobs/sha256:${'e'.repeat(64)}`, { range: 'bytes=0-1' })
  refused(t, unvouched, 403, 'DENIED', /not referenced by a manifest/)
})

t.test('slow clients', async (t) => {
  t.equal(server.headersTimeout, 30_000, 'trustpull ends a request whose headers take over 30 s')
  t.equal(server.requestTimeout, 60_000, 'and one that takes over 60 s in all')

  // Node reads connectionsCheckingInterval when the server starts listening; trustpull's server
  // already listens, so the check is re-armed the way Node arms it, with short timeouts for a test.
  server.headersTimeout = 1_000
  server.connectionsCheckingInterval = 200
  server.emit('listening')

  const dribblers = Array.from({ length: 50 }, () => {
    const socket = connect(port, '127.0.0.1')
    const got: Buffer[] = []
    socket.on('data', (c: Buffer) => got.push(c))
    socket.on('error', () => undefined)
    const text = `GET /v2/library/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nX-Slow: ${'s'.repeat(10_000)}`
    let i = 0
    const timer = setInterval(() => (socket.destroyed ? clearInterval(timer) : socket.write(text[i++] ?? 's')), 50)
    const closed = new Promise<string>((resolve) =>
      socket.once('close', () => {
        clearInterval(timer)
        resolve(Buffer.concat(got).toString('latin1'))
      }),
    )
    return closed
  })
  await sleep(300)
  const meanwhile = await raw('GET', '/v2/library/app/manifests/v1')
  t.equal(meanwhile.status, 200, 'a normal client is served while 50 others dribble their headers')
  const endings = await Promise.all(dribblers)
  t.ok(
    endings.every((e) => e.startsWith('HTTP/1.1 408')),
    'every dribbling client got 408 and was disconnected',
  )
  t.notOk(
    upstreamSaw().some((r) => r.includes('X-Slow')),
    'none of them reached the upstream',
  )

  // Connections that never send a byte: Node's timeouts start with the first byte, so without
  // trustpull's own check these stayed open for ever, an fd each.
  let closed = 0
  const silent = await Promise.all(
    Array.from(
      { length: 200 },
      () =>
        new Promise<Socket>((resolve) => {
          const s = connect(port, '127.0.0.1', () => resolve(s))
          s.on('error', () => undefined)
          s.once('close', () => closed++)
        }),
    ),
  )
  t.equal((await raw('GET', '/v2/')).status, 200, '200 silent connections do not stop the proxy from answering')
  for (let i = 0; i < 100 && closed < silent.length; i++) await sleep(50)
  t.equal(closed, silent.length, 'and the proxy closes every one of them once the headers timeout has passed')
})

// Who may use the proxy, and how much: bearer tokens, htpasswd basic auth, mTLS, per-client
// upstream rules, per-client rate, and caps on verifications and upstream requests.
import t from 'tap'
import bcrypt from 'bcryptjs'
import { generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { runOk, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const TOKEN = 'ci-token-0123456789abcdef'
// Any valid public key: the images in the verification-cap test are unsigned.
const TEST_KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
process.env.TRUSTPULL_TEST_CI_TOKEN = TOKEN
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('client authentication and per-client upstream rules', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/app', '1')
  const dir = await tempDir(t)
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, `alice:${bcrypt.hashSync('alice-password', 10)}\nbob:${bcrypt.hashSync('bob-password', 10)}\n`)
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [
      { name: 'docker.io', url: registry.url, default: true },
      { name: 'internal.example', url: registry.url },
    ],
    clients: {
      tokens: [{ name: 'ci', tokenEnv: 'TRUSTPULL_TEST_CI_TOKEN' }],
      htpasswd,
      rules: [{ client: 'bob', upstreams: ['internal.example'] }],
    },
  })
  const manifest = (auth?: string, path = 'library/app') => request(`${proxy.url}/v2/${path}/manifests/1`, { headers: auth ? { authorization: auth } : {} })

  t.test('anonymous: 401 UNAUTHORIZED with a Basic challenge (what docker login answers)', async (t) => {
    const res = await manifest()
    t.equal(res.statusCode, 401)
    t.equal(res.headers['www-authenticate'], 'Basic realm="trustpull"')
    t.match(await res.body.json(), { errors: [{ code: 'UNAUTHORIZED' }] })
  })

  t.test('a static bearer token', async (t) => {
    const ok = await manifest(`Bearer ${TOKEN}`)
    t.equal(ok.statusCode, 200)
    t.equal(ok.headers['docker-content-digest'], image.digest)
    await ok.body.dump()
    const wrong = await manifest(`Bearer ${TOKEN}x`)
    t.equal(wrong.statusCode, 401)
    await wrong.body.dump()
  })

  t.test('htpasswd bcrypt users; a wrong password is refused', async (t) => {
    const ok = await manifest(basic('alice', 'alice-password'))
    t.equal(ok.statusCode, 200)
    await ok.body.dump()
    const again = await manifest(basic('alice', 'alice-password'))
    t.equal(again.statusCode, 200, 'remembered verification answers too')
    await again.body.dump()
    for (const auth of [basic('alice', 'bob-password'), basic('mallory', 'x'), 'Basic !!!', basic('', 'alice-password')]) {
      const res = await manifest(auth)
      t.equal(res.statusCode, 401, auth)
      await res.body.dump()
    }
  })

  t.test('every audit line names the client that pulled and its address, cached verdicts too', async (t) => {
    const audits = proxy.logs.filter((l) => l.audit === 'verdict' && l.digest === image.digest)
    const loopback = /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/
    const ci = audits.filter((l) => l.client === 'ci')
    const alice = audits.filter((l) => l.client === 'alice')
    t.ok(ci.length >= 1, 'the bearer token client')
    t.equal(alice.length, 2, 'alice, twice: the second from the cache, under her name, not the first requester')
    t.ok(
      alice.some((l) => l.cached === true),
      'a cached verdict audited with the current requester',
    )
    for (const line of audits) t.match(line.address, loopback, `${String(line.client)}: the remote address`)
    t.same(
      audits.filter((l) => l.client === undefined),
      [],
      'no authenticated pull is audited without a name',
    )
  })

  t.test('a client restricted to some upstreams is refused the others', async (t) => {
    const own = await manifest(basic('bob', 'bob-password'), 'internal.example/library/app')
    t.equal(own.statusCode, 200)
    await own.body.dump()
    const hub = await manifest(basic('bob', 'bob-password'))
    t.equal(hub.statusCode, 403)
    t.match(await hub.body.json(), { errors: [{ code: 'DENIED', message: 'client bob may not pull from docker.io' }] })
  })

  t.test('health endpoints stay open', async (t) => {
    const res = await request(`${proxy.url}/healthz`)
    t.equal(res.statusCode, 200)
    await res.body.dump()
  })

  t.test('secrets never reach the logs', async (t) => {
    t.notMatch(proxy.logText(), TOKEN)
    t.notMatch(proxy.logText(), 'alice-password')
  })
})

t.test('mTLS: only clients with a certificate from the client CA complete the handshake', async (t) => {
  const registry = await startRegistry(t)
  await pushImage(registry.url, 'library/app', '1')
  const dir = await tempDir(t)
  const ssl = (args: string[]) => runOk('openssl', args, { cwd: dir })
  await ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=test client CA', '-days', '1'])
  await ssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.crt',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-days',
    '1',
  ])
  await ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=node-7'])
  await ssl(['x509', '-req', '-in', 'node.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'node.crt', '-days', '1'])
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: 'docker.io', url: registry.url, default: true }],
    tls: { cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), clientCA: join(dir, 'ca.crt') },
    clients: { mtls: true, rules: [{ client: 'node-7', upstreams: ['docker.io'] }] },
  })
  const { readFile } = await import('node:fs/promises')
  const ca = await readFile(join(dir, 'server.crt'))
  const withCert = new Agent({ connect: { ca, cert: await readFile(join(dir, 'node.crt')), key: await readFile(join(dir, 'node.key')) } })
  const without = new Agent({ connect: { ca } })
  t.teardown(() => Promise.all([withCert.close(), without.close()]))
  const ok = await request(`${proxy.url}/v2/library/app/manifests/1`, { dispatcher: withCert })
  t.equal(ok.statusCode, 200)
  await ok.body.dump()
  t.ok(
    proxy.logs.some((l) => l.msg === 'request' && l.status === 200),
    'served over TLS',
  )
  await t.rejects(request(`${proxy.url}/v2/library/app/manifests/1`, { dispatcher: without }), 'no certificate: the handshake fails')
})

t.test('mTLS configuration that is half done refuses to start', async (t) => {
  await t.rejects(startProxy(t, { clients: { mtls: true } }), /clients\.mtls: needs tls\.clientCA/)
  await t.rejects(startProxy(t, { clients: { rules: [{ client: 'x', upstreams: ['docker.io'] }] } }), /no client authentication/)
  await t.rejects(startProxy(t, { clients: { tokens: [{ name: 'short', token: 'abc' }] } }), /shorter than 16 characters/)
})

t.test('per-client rate: over the burst → 429 with Retry-After, other clients unaffected', async (t) => {
  const registry = await startRegistry(t)
  await pushImage(registry.url, 'library/app', '1')
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: 'docker.io', url: registry.url, default: true }],
    clients: {
      tokens: [
        { name: 'a', token: 'token-a-0123456789abcdef' },
        { name: 'b', token: 'token-b-0123456789abcdef' },
      ],
      requestsPerSecond: 0.5,
      burst: 3,
    },
  })
  const get = (token: string) => request(`${proxy.url}/v2/`, { headers: { authorization: `Bearer ${token}` } })
  const statuses: number[] = []
  for (let i = 0; i < 5; i++) {
    const res = await get('token-a-0123456789abcdef')
    statuses.push(res.statusCode)
    if (res.statusCode === 429) {
      t.match(res.headers['retry-after'], /^\d+$/)
      t.match(await res.body.json(), { errors: [{ code: 'TOOMANYREQUESTS' }] })
    } else await res.body.dump()
  }
  t.same(statuses, [200, 200, 200, 429, 429])
  const other = await get('token-b-0123456789abcdef')
  t.equal(other.statusCode, 200, 'client b has its own bucket')
  await other.body.dump()
})

t.test('caps: concurrent upstream requests and concurrent verifications answer 429, never queue', async (t) => {
  const registry = await startRegistry(t)
  await pushImage(registry.url, 'library/slow', '1', { seed: 'slow' })
  await pushImage(registry.url, 'library/other', '1', { seed: 'other' })
  const front = await startFaultProxy(t, registry.url, (req) => (req.path.includes('/library/slow/manifests/') ? { kind: 'delay', ms: 800 } : undefined))
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [{ name: 'docker.io', url: front.url, default: true }],
    limits: { upstreamConnections: 1 },
  })
  const slow = request(`${proxy.url}/v2/library/slow/manifests/1`)
  await new Promise((r) => setTimeout(r, 200))
  const second = await request(`${proxy.url}/v2/library/other/manifests/1`)
  t.equal(second.statusCode, 429)
  t.equal(second.headers['retry-after'], '1')
  t.match(await second.body.json(), { errors: [{ code: 'TOOMANYREQUESTS', message: /requests to upstream docker\.io are already in flight/ }] })
  const first = await slow
  t.equal(first.statusCode, 200, 'the request holding the slot completes')
  await first.body.dump()
  const after = await request(`${proxy.url}/v2/library/other/manifests/1`)
  t.equal(after.statusCode, 200, 'the slot is released')
  await after.body.dump()
})

t.test('cap on concurrent verifications: one more is refused with 429 while the cap is full', async (t) => {
  const registry = await startRegistry(t)
  const a = await pushImage(registry.url, 'org/a', '1', { seed: 'a' })
  await pushImage(registry.url, 'org/b', '1', { seed: 'b' })
  const sigTagOfA = `/v2/org/a/manifests/sha256-${a.digest.slice('sha256:'.length)}.sig`
  const front = await startFaultProxy(t, registry.url, (req) => (req.path === sigTagOfA ? { kind: 'delay', ms: 800 } : undefined))
  const proxy = await startProxy(t, {
    upstreams: [{ name: 'registry.test', url: front.url, default: true }],
    policies: [{ name: 'org', images: [{ glob: 'registry.test/org/**' }], authorities: [{ key: { data: TEST_KEY } }] }],
    limits: { concurrentVerifications: 1 },
  })
  const first = request(`${proxy.url}/v2/org/a/manifests/1`)
  await new Promise((r) => setTimeout(r, 300))
  const second = await request(`${proxy.url}/v2/org/b/manifests/1`)
  t.equal(second.statusCode, 429)
  t.match(await second.body.json(), { errors: [{ code: 'TOOMANYREQUESTS', message: /verifications are already running/ }] })
  const done = await first
  t.equal(done.statusCode, 403, 'the running verification finishes (unsigned: denied)')
  await done.body.dump()
  const later = await request(`${proxy.url}/v2/org/b/manifests/1`)
  t.equal(later.statusCode, 403, 'then the next one runs')
  await later.body.dump()
})

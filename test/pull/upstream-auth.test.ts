// Upstream authentication: a token front (test/helpers/token-front.ts) stands before a real
// docker-registry, demands a bearer token (or basic auth), issues tokens for correct basic
// credentials only and counts what it issued.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { parseChallenge } from '../../src/upstream/www-authenticate.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { basicAuth, startTokenFront, type TokenFront } from '../helpers/token-front.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'private.test'
const USER = 'puller'
const PASSWORD = `s3cret-${randomBytes(6).toString('hex')}`

const LOGIN = { username: USER, password: PASSWORD }

async function proxyFor(t: Teardown, front: TokenFront, auth?: Record<string, string>): Promise<TestProxy> {
  // No store: every pull must reach the upstream, which is what these tests count.
  return startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: UPSTREAM, url: front.url, default: true, ...(auth ? { auth } : {}) }], storage: { enabled: false } })
}

interface Pulled {
  status: number
  body: Buffer
  error?: { code: string; message: string }
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Pulled> {
  const res = await request(url, { headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  const pulled: Pulled = { status: res.statusCode, body }
  if (res.statusCode >= 400) pulled.error = (JSON.parse(body.toString('utf8')) as { errors: { code: string; message: string }[] }).errors[0]!
  return pulled
}

/** Manifest by tag, then config and layers, each checked against its digest; throws on any failure. */
async function pull(proxy: TestProxy, img: PushedImage): Promise<void> {
  const m = await get(`${proxy.url}/v2/${img.repo}/manifests/${img.tag}`, { accept: ACCEPT_ANY_MANIFEST })
  if (m.status !== 200 || sha256(m.body) !== img.digest) throw new Error(`manifest ${img.repo}: ${m.status} ${m.error?.message ?? ''}`)
  for (const digest of [img.configDigest, ...img.layerDigests]) {
    const b = await get(`${proxy.url}/v2/${img.repo}/blobs/${digest}`)
    if (b.status !== 200 || sha256(b.body) !== digest) throw new Error(`blob ${digest}: ${b.status} ${b.error?.message ?? ''}`)
  }
}

const registry = await startRegistry(t)
const imgA = await pushImage(registry.url, 'team/app', 'v1', { layers: 2 })
const imgB = await pushImage(registry.url, 'team/other', 'v1')

t.test('bearer tokens: pulls work, one token per repository while it lasts', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN)
  const dir = await tempDir(t)
  const passwordFile = join(dir, 'password')
  await writeFile(passwordFile, `${PASSWORD}\n`)
  const proxy = await proxyFor(t, front, { username: USER, passwordFile })
  for (let i = 0; i < 3; i++) await pull(proxy, imgA)
  await pull(proxy, imgB)
  await pull(proxy, imgB)
  t.same(
    Object.fromEntries(front.tokenRequests),
    { 'repository:team/app:pull': 1, 'repository:team/other:pull': 1 },
    'three pulls of one repository (4 requests each) and two of another: one token each',
  )
  t.ok(front.forwarded >= 5 * 3, 'every request reached the registry with a valid token')
})

t.test('a token that expires is renewed', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN, { expiresIn: 1 })
  const proxy = await proxyFor(t, front, { username: USER, password: PASSWORD })
  await pull(proxy, imgB)
  const first = front.tokenRequests.get('repository:team/other:pull') ?? 0
  t.ok(first >= 1)
  await new Promise((resolve) => setTimeout(resolve, 1_100))
  await pull(proxy, imgB)
  const second = front.tokenRequests.get('repository:team/other:pull') ?? 0
  t.ok(second > first, `a new token was fetched after expiry (${first} → ${second})`)
})

t.test('anonymous token flow without configured credentials', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN, { anonymous: true })
  const proxy = await proxyFor(t, front)
  await pull(proxy, imgA)
  t.equal(front.tokenRequests.get('repository:team/app:pull'), 1)
})

t.test('a wrong password is a clear DENIED naming the upstream; nothing reaches the registry', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN)
  process.env.TRUSTPULL_TEST_UPSTREAM_PASSWORD = 'not-the-password'
  t.teardown(() => {
    delete process.env.TRUSTPULL_TEST_UPSTREAM_PASSWORD
  })
  const proxy = await proxyFor(t, front, { username: USER, passwordEnv: 'TRUSTPULL_TEST_UPSTREAM_PASSWORD' })
  for (const path of [`/v2/${imgA.repo}/manifests/v1`, `/v2/${imgA.repo}/tags/list`]) {
    const res = await get(`${proxy.url}${path}`, { accept: ACCEPT_ANY_MANIFEST })
    t.equal(res.status, 403, path)
    t.equal(res.error?.code, 'DENIED')
    t.match(res.error?.message, `token service of upstream ${UPSTREAM} answered 401`, 'the message names the upstream and what failed')
  }
  t.equal(front.forwarded, 0, 'no request got past the token front')
  t.notMatch(proxy.logText(), 'not-the-password')
})

t.test('basic-auth-only upstream', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN, { mode: 'basic' })
  const proxy = await proxyFor(t, front, { username: USER, password: PASSWORD })
  await pull(proxy, imgA)
  await pull(proxy, imgB)
  t.equal(front.tokenRequests.size, 0, 'no token service was asked')

  const wrong = await proxyFor(t, front, { username: USER, password: 'wrong' })
  for (let i = 0; i < 2; i++) {
    // The first request learns the scheme from a 401; the second sends credentials up front.
    const res = await get(`${wrong.url}/v2/${imgA.repo}/manifests/v1`, { accept: ACCEPT_ANY_MANIFEST })
    t.equal(res.status, 403)
    t.equal(res.error?.code, 'DENIED')
    t.match(res.error?.message, `upstream ${UPSTREAM} refused access`)
    t.match(res.error?.message, '401')
  }
})

t.test('the password, its basic-auth form and issued tokens never reach the logs', async (t) => {
  const front = await startTokenFront(t, registry.url, LOGIN)
  process.env.TRUSTPULL_TEST_UPSTREAM_PASSWORD2 = PASSWORD
  t.teardown(() => {
    delete process.env.TRUSTPULL_TEST_UPSTREAM_PASSWORD2
  })
  const proxy = await proxyFor(t, front, { username: USER, passwordEnv: 'TRUSTPULL_TEST_UPSTREAM_PASSWORD2' })
  await pull(proxy, imgA)
  // Refusals too: every request is in the debug access log.
  t.equal((await get(`${proxy.url}/v2/${imgA.repo}/manifests/missing`, { accept: ACCEPT_ANY_MANIFEST })).status, 404)
  t.equal((await get(`${proxy.url}/v2/${imgA.repo}/blobs/sha256:${'a'.repeat(64)}`)).status, 403)
  const logs = proxy.logText()
  t.ok(logs.length > 0, 'the proxy logged (debug level)')
  t.notMatch(logs, PASSWORD)
  t.notMatch(logs, basicAuth(LOGIN).slice('Basic '.length))
  for (const token of front.issued) t.notMatch(logs, token, 'no token is logged')
})

t.test('parseChallenge', async (t) => {
  t.same(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' },
  })
  t.same(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } })
  t.same(parseChallenge('BEARER Realm="x"'), { scheme: 'bearer', params: { realm: 'x' } }, 'scheme and keys are case-insensitive')
  t.same(parseChallenge('Bearer'), { scheme: 'bearer', params: {} }, 'a scheme alone')
  t.same(
    parseChallenge('Bearer realm="r",scope="repository:a/b:pull,push repository:c:pull"'),
    { scheme: 'bearer', params: { realm: 'r', scope: 'repository:a/b:pull,push repository:c:pull' } },
    'commas and spaces inside quotes belong to the value',
  )
  t.same(parseChallenge('Bearer realm="a\\"b\\\\c"'), { scheme: 'bearer', params: { realm: 'a"b\\c' } }, 'backslash escapes')
  t.same(
    parseChallenge('  Bearer   realm = "r" ,\tservice=registry.test , scope="s"  '),
    {
      scheme: 'bearer',
      params: { realm: 'r', service: 'registry.test', scope: 's' },
    },
    'spaces around = and , and unquoted token values',
  )
  t.same(parseChallenge('Bearer realm="https://a/token", Basic realm="b"'), { scheme: 'bearer', params: { realm: 'https://a/token' } }, 'the first of two challenges')
  const polluted = parseChallenge('Bearer __proto__="x",constructor="y"')
  t.equal(polluted?.params['__proto__'], 'x', 'odd keys are plain data')
  t.equal(({} as Record<string, unknown>)['x'], undefined, 'and pollute nothing')
  for (const garbage of [
    '',
    '   ',
    '"',
    '=',
    ',,,',
    'Bearer realm',
    'Bearer realm=',
    'Bearer realm="unterminated',
    'Bearer realm=https://unquoted/url',
    'Bearer realm="r" service="s"',
    'Bearer ,realm="r"',
    'Bearer realm="r",,',
    '\u0000Bearer realm="r"',
    `Bearer realm="${'x'.repeat(10_000)}"`,
  ]) {
    t.equal(parseChallenge(garbage), undefined, `refused: ${JSON.stringify(garbage.slice(0, 40))}`)
  }
})

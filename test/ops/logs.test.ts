// JSON logs as an operator reads them: every line inside a traced request names its trace, one
// audit line per verdict says what was decided and why, and no credential (upstream passwords
// given inline, in a file or in the environment, the tokens they buy, a client's Authorization
// header) reaches any line, even at level trace. The upstreams demand credentials for real: each
// sits behind a token front that issues bearer tokens for its own password only.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SpanKind } from '@opentelemetry/api'
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace'
import { request } from 'undici'
import { setupTracing, shutdownTracing } from '../../src/telemetry/tracing.ts'
import { keyHint, parsePublicKey } from '../../src/verify/keys.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { freePort, tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startTokenFront } from '../helpers/token-front.ts'
import { startProxy } from '../helpers/trustpull.ts'

const exporter = new InMemorySpanExporter()
setupTracing({ exporter })
t.teardown(() => shutdownTracing())

const secret = (what: string) => `${what}-${randomBytes(8).toString('hex')}`
const basic = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString('base64')
const USER = 'puller'

const registry = await startRegistry(t)
const dir = await tempDir(t)
const keys = await generateKeyPair(dir)
const strangerKeys = await generateKeyPair(await tempDir(t))
const HINT = keyHint(parsePublicKey(keys.publicKeyPem))

async function image(repo: string, key: string): Promise<PushedImage> {
  const pushed = await pushImage(registry.url, `team/${repo}`, 'v1')
  await signImage(`${registry.host}/team/${repo}@${pushed.digest}`, key)
  return pushed
}
const [signed, strangers] = await Promise.all([image('signed', keys.privateKeyPath), image('strangers', strangerKeys.privateKeyPath)])

const policies = [{ name: 'release', images: [{ glob: '**' }], authorities: [{ name: 'release-key', key: { data: keys.publicKeyPem } }] }]

interface Pulled {
  status: number
  body: Buffer
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Pulled> {
  const res = await request(url, { headers: { accept: ACCEPT_ANY_MANIFEST, ...headers } })
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
}

t.test('log lines inside a request carry its trace id; one audit line per verdict', async (t) => {
  const proxy = await startProxy(t, { log: { level: 'info' }, upstreams: [{ name: 'registry.test', url: registry.url, default: true }], policies })
  const startup = proxy.logs
  t.ok(
    startup.every((l) => l.trace_id === undefined),
    'lines outside any request have no trace id',
  )

  const audits = (digest: string) => proxy.logs.filter((l) => l.audit === 'verdict' && l.digest === digest)
  const traceIdOf = async (path: string) => {
    let id: string | undefined
    await waitFor(
      () =>
        (id = exporter
          .getFinishedSpans()
          .find((s) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === path)
          ?.spanContext().traceId) !== undefined,
      { what: `span of ${path}` },
    )
    return id!
  }

  const allowed = await get(`${proxy.url}/v2/${signed.repo}/manifests/v1`)
  t.equal(allowed.status, 200)
  t.equal(sha256(allowed.body), signed.digest)
  const [first, ...more] = audits(signed.digest)
  t.same(more, [], 'one audit line for one verdict')
  t.match(first, {
    level: 'info',
    msg: 'verdict allow',
    service: 'trustpull',
    image: `registry.test/${signed.repo}`,
    reference: 'v1',
    digest: signed.digest,
    result: 'allow',
    policies: [{ name: 'release', mode: 'enforce', result: 'pass' }],
    reasons: Array,
    signers: [{ policy: 'release', authority: 'release-key', keyHint: HINT }],
    cached: false,
    durationMs: Number,
    trace_id: await traceIdOf(`/v2/${signed.repo}/manifests/v1`),
    span_id: /^[0-9a-f]{16}$/,
  })
  t.ok((first!.durationMs as number) > 0, `verification took ${String(first!.durationMs)} ms`)
  t.match(first!.time, /^20\d\d-\d\d-\d\dT/, 'ISO time')

  // Again, by digest: a second verdict (from the cache) is a second line, in another trace.
  t.equal((await get(`${proxy.url}/v2/${signed.repo}/manifests/${signed.digest}`)).status, 200)
  const lines = audits(signed.digest)
  t.equal(lines.length, 2, 'a second request, a second audit line')
  t.match(lines[1], { result: 'allow', cached: true, reference: signed.digest, trace_id: await traceIdOf(`/v2/${signed.repo}/manifests/${signed.digest}`) })
  t.not(lines[1]!.trace_id, first!.trace_id)

  const denied = await get(`${proxy.url}/v2/${strangers.repo}/manifests/v1`)
  t.equal(denied.status, 403)
  const deny = audits(strangers.digest)
  t.equal(deny.length, 1)
  t.match(deny[0], {
    level: 'warn',
    msg: 'verdict deny',
    image: `registry.test/${strangers.repo}`,
    digest: strangers.digest,
    result: 'deny',
    policies: [{ name: 'release', mode: 'enforce', result: 'fail' }],
    signers: [],
    cached: false,
    trace_id: await traceIdOf(`/v2/${strangers.repo}/manifests/v1`),
  })
  const reasons = deny[0]!.reasons as string[]
  t.ok(
    reasons.some((r) => r.includes('authority "release-key"') && r.includes('UNTRUSTED_KEY')),
    `the reasons name the authority and the failure: ${JSON.stringify(reasons)}`,
  )
  const body = JSON.parse(denied.body.toString()) as { errors: { code: string; detail: { reasons: string[] } }[] }
  t.same(body.errors[0]!.detail.reasons, reasons, 'the client is told the reasons that were logged')

  const untraced = proxy.logs.filter((l) => l.audit === 'verdict' && typeof l.trace_id !== 'string')
  t.same(untraced, [], 'every audit line has a trace id')
})

t.test('without tracing, lines carry no trace id', async (t) => {
  await shutdownTracing()
  t.teardown(() => setupTracing({ exporter }))
  const proxy = await startProxy(t, { log: { level: 'info' }, upstreams: [{ name: 'registry.test', url: registry.url, default: true }], policies })
  t.equal((await get(`${proxy.url}/v2/${signed.repo}/manifests/v1`)).status, 200)
  const audit = proxy.logs.find((l) => l.audit === 'verdict')
  t.match(audit, { result: 'allow', digest: signed.digest })
  t.notOk('trace_id' in audit!, 'no trace_id field')
})

t.test('credentials never reach a log line, even at level trace', async (t) => {
  const inlinePassword = secret('inline-password')
  const filePassword = secret('file-password')
  const envPassword = secret('env-password')
  const clientToken = secret('client-bearer')
  const clientPassword = secret('client-password')
  const inlineFront = await startTokenFront(t, registry.url, { username: USER, password: inlinePassword })
  const fileFront = await startTokenFront(t, registry.url, { username: USER, password: filePassword })
  const envFront = await startTokenFront(t, registry.url, { username: USER, password: envPassword })
  const passwordFile = join(dir, 'upstream-password')
  await writeFile(passwordFile, `${filePassword}\n`)
  const envName = `TRUSTPULL_TEST_SECRET_${randomBytes(4).toString('hex').toUpperCase()}`
  process.env[envName] = envPassword
  t.teardown(() => {
    delete process.env[envName]
  })
  const wrongPassword = secret('wrong-password')

  const proxy = await startProxy(t, {
    log: { level: 'trace' },
    policies,
    upstreams: [
      { name: 'inline.test', url: inlineFront.url, default: true, auth: { username: USER, password: inlinePassword } },
      { name: 'file.test', url: fileFront.url, auth: { username: USER, passwordFile } },
      { name: 'env.test', url: envFront.url, auth: { username: USER, passwordEnv: envName } },
      // Its front wants inlinePassword: every request through it is refused.
      { name: 'wrong.test', url: inlineFront.url, auth: { username: USER, password: wrongPassword } },
      // Nothing listens there: the failure is logged as an upstream failure.
      { name: 'down.test', url: `http://127.0.0.1:${await freePort()}`, auth: { username: USER, password: wrongPassword } },
    ],
  })
  const clientHeaders = [{ authorization: `Bearer ${clientToken}` }, { authorization: `Basic ${basic('client', clientPassword)}` }]

  for (const upstream of ['inline.test', 'file.test', 'env.test']) {
    for (const headers of clientHeaders) {
      const m = await get(`${proxy.url}/v2/${upstream}/${signed.repo}/manifests/v1`, headers)
      t.equal(m.status, 200, `allowed through ${upstream}, credentials used`)
      const blob = await get(`${proxy.url}/v2/${upstream}/${signed.repo}/blobs/${signed.layerDigests[0]}`, headers)
      t.equal(sha256(blob.body), signed.layerDigests[0])
      t.equal((await get(`${proxy.url}/v2/${upstream}/${strangers.repo}/manifests/v1`, headers)).status, 403, `denied through ${upstream}`)
      t.equal((await get(`${proxy.url}/v2/${upstream}/${signed.repo}/manifests/missing`, headers)).status, 404)
      t.equal((await get(`${proxy.url}/v2/${upstream}/${signed.repo}/tags/list`, headers)).status, 200)
    }
  }
  const refused = await get(`${proxy.url}/v2/wrong.test/${signed.repo}/manifests/v1`, clientHeaders[0])
  t.equal(refused.status, 403, 'a wrong upstream password is refused')
  const unreachable = await get(`${proxy.url}/v2/wrong.test/${signed.repo}/blobs/sha256:${'a'.repeat(64)}`, clientHeaders[1])
  t.equal(unreachable.status, 403)
  t.equal((await get(`${proxy.url}/v2/down.test/${signed.repo}/manifests/v1`, clientHeaders[0])).status, 503, 'an unreachable upstream is a 503')
  for (const front of [inlineFront, fileFront, envFront]) {
    t.ok(front.issued.length > 0, 'tokens were bought with the password')
    t.ok(front.forwarded > 0, 'requests reached the registry with them')
  }

  const text = proxy.logText()
  t.ok(
    proxy.logs.some((l) => l.level === 'debug' && l.msg === 'request'),
    'debug lines (the access log) were written',
  )
  t.ok(proxy.logs.filter((l) => l.audit === 'verdict').length >= 9, 'and audit lines')
  t.ok(
    proxy.logs.some((l) => l.level === 'warn' && l.msg === 'upstream failure'),
    'and the failure of an upstream',
  )
  const secrets: [string, string][] = [
    ['auth.password', inlinePassword],
    ['passwordFile contents', filePassword],
    ['passwordEnv value', envPassword],
    ['a wrong password', wrongPassword],
    ['client bearer token', clientToken],
    ['client basic password', clientPassword],
    ['client basic credentials', basic('client', clientPassword)],
    ...[inlinePassword, filePassword, envPassword, wrongPassword].map((p): [string, string] => ['upstream basic credentials', basic(USER, p)]),
    ...[inlineFront, fileFront, envFront].flatMap((f) => f.issued.map((token): [string, string] => ['an issued token', token])),
  ]
  for (const [what, value] of secrets) t.notOk(text.includes(value), `${what} is not in the log`)
  t.notMatch(text, /authorization/i, 'no Authorization header is logged, not even redacted')
})

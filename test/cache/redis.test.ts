// The shared tier: three in-process trustpull replicas on one real redis-server (started here, on a
// port of its own). A verdict reached by one is a hit on the others; Redis answering garbage is a
// miss, never a verdict; Redis going away costs verification work but no failed pull, and is
// reported in metrics and logs until it is back.
import t from 'tap'
import { request } from 'undici'
import { verdictKey } from '../../src/pull/policy-gate.ts'
import { generateKeyPair, signImage, type KeyPair } from '../helpers/cosign.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage, type PushedImage } from '../helpers/images.ts'
import { run, runOk, tempDir, waitFor } from '../helpers/proc.ts'
import { redisPing, startRedis, type Redis } from '../helpers/redis.ts'
import { startRegistry, type Registry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

type AuditLine = { audit: 'verdict'; digest: string; result: string; cached: boolean }
const audits = (proxy: TestProxy, digest: string): AuditLine[] => (proxy.logs as AuditLine[]).filter((l) => l.audit === 'verdict' && l.digest === digest)
const verifications = (proxy: TestProxy, digest: string): number => audits(proxy, digest).filter((l) => !l.cached).length

async function pull(proxy: TestProxy, repo: string, ref: string): Promise<number> {
  const res = await request(`${proxy.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } })
  await res.body.dump()
  return res.statusCode
}

/** One sample of a Prometheus metric, e.g. `trustpull_redis_up`, or `undefined` when absent. */
async function metric(proxy: TestProxy, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const res = await request(`${proxy.url}/metrics`)
  const text = await res.body.text()
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line)
    if (!m || m[1] !== name) continue
    const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3])
  }
  return undefined
}

function signatureRequests(fault: FaultProxy): string[] {
  return fault.requests.filter((r) => /\/referrers\/|\/manifests\/sha256-|\.sig$|\.att$/.test(r.path)).map((r) => r.path)
}

interface Cluster {
  registry: Registry
  fault: FaultProxy
  redis: Redis
  keys: KeyPair
  replicas: [TestProxy, TestProxy, TestProxy]
  signed(repo: string): Promise<PushedImage>
  redisCli(...args: string[]): Promise<string>
  /** The Redis key of `digest`'s verdict under the replicas' policies. */
  redisKey(repo: string, digest: string): string
}

t.test('three replicas on one redis-server', async (t) => {
  const registry = await startRegistry(t)
  const redis = await startRedis(t)
  const keys = await generateKeyPair(await tempDir(t))
  const fault = await startFaultProxy(t, registry.url)
  const config = {
    upstreams: [{ name: 'docker.io', url: fault.url, default: true }],
    cache: { url: redis.url },
    policies: [{ name: 'signed', images: [{ glob: '**' }], authorities: [{ name: 'key', key: { data: keys.publicKeyPem } }] }],
  }
  const replicas = (await Promise.all([startProxy(t, config), startProxy(t, config), startProxy(t, config)])) as Cluster['replicas']
  const c: Cluster = {
    registry,
    fault,
    redis,
    keys,
    replicas,
    async signed(repo) {
      const image = await pushImage(registry.url, repo, 'v1', { seed: `${repo}-${Math.random()}` })
      await signImage(`${registry.host}/${repo}@${image.digest}`, keys.privateKeyPath)
      return image
    },
    redisCli: async (...args) => (await runOk('/usr/bin/redis-cli', ['-p', String(redis.port), ...args])).stdout.trim(),
    redisKey: (repo, digest) => `trustpull::${verdictKey(replicas[0].running.runtime.policySet().fingerprint, 'docker.io', repo, digest)}`,
  }
  const [a, b, cc] = replicas
  for (const replica of replicas) t.equal(await metric(replica, 'trustpull_redis_up'), 1, 'connected at start-up')

  t.test('a digest verified by one replica is a hit on the other two', async (t) => {
    const image = await c.signed('shared/app')
    t.equal(await pull(a, 'shared/app', image.digest), 200)
    t.equal(verifications(a, image.digest), 1)
    t.not(await c.redisCli('GET', c.redisKey('shared/app', image.digest)), '', 'the verdict is in Redis')

    fault.clearRequests()
    for (const replica of [b, cc]) {
      t.equal(await pull(replica, 'shared/app', image.digest), 200)
      t.same(
        audits(replica, image.digest).map((l) => l.cached),
        [true],
        'a hit, no verification',
      )
      t.equal(await metric(replica, 'trustpull_cache_requests_total', { tier: 'redis', result: 'hit' }), 1, 'served from the Redis tier')
    }
    t.same(signatureRequests(fault), [], 'the other replicas asked upstream for no signature')
    t.same(
      fault.requests.map((r) => r.path),
      [`/v2/shared/app/manifests/${image.digest}`, `/v2/shared/app/manifests/${image.digest}`],
      'only the manifest bytes, once per replica',
    )

    // What the allowed manifest vouched for is shared too: its layer can be pulled from another replica.
    const layer = await request(`${cc.url}/v2/shared/app/blobs/${image.layerDigests[0]}`)
    t.equal(layer.statusCode, 200, 'a blob vouched for on replica A is served by replica C')
    await layer.body.dump()
  })

  t.test('concurrent first requests spread over the replicas: one verification between them', async (t) => {
    const image = await c.signed('shared/herd')
    fault.clearRequests()
    const statuses = await Promise.all(Array.from({ length: 30 }, (_, i) => pull(replicas[i % 3]!, 'shared/herd', image.digest)))
    t.same(new Set(statuses), new Set([200]))
    t.equal(
      replicas.reduce((n, r) => n + verifications(r, image.digest), 0),
      1,
      'one replica verified, the others waited for its verdict',
    )
    t.equal(fault.requests.filter((r) => r.path.endsWith('.sig')).length, 1, 'the signature was fetched once across the replicas')
  })

  t.test('garbage in Redis under a verdict key is a miss, never a verdict', async (t) => {
    const fingerprint = a.running.runtime.policySet().fingerprint
    const cases: [string, (digest: string) => string | Buffer][] = [
      ['not JSON', () => '{"value": {"result": "allow"'],
      ['JSON of another shape', () => '"allow"'],
      ['an allow missing the verdict fields', (digest) => JSON.stringify({ value: { result: 'allow', digest }, expires: null })],
      [
        'a well-formed allow for another digest',
        () =>
          JSON.stringify({
            value: {
              result: 'allow',
              image: 'docker.io/shared/unsigned',
              digest: `sha256:${'0'.repeat(64)}`,
              fingerprint,
              policies: [],
              reasons: [],
              signers: [],
              transient: false,
            },
            expires: null,
          }),
      ],
      ['binary bytes', () => Buffer.from([0, 0xff, 0xfe, 0x7b, 0x0a])],
    ]
    for (const [i, [name, garbage]] of cases.entries()) {
      // An unsigned image per case: none of the replicas holds its verdict in memory yet.
      const unsigned = await pushImage(registry.url, 'shared/unsigned', `case-${i}`, { seed: `garbage-${i}` })
      const value = garbage(unsigned.digest)
      await runOk('/usr/bin/redis-cli', ['-p', String(redis.port), '-x', 'SET', c.redisKey('shared/unsigned', unsigned.digest)], { input: value })
      const replica = replicas[i % 3]!
      t.equal(await pull(replica, 'shared/unsigned', unsigned.digest), 403, `${name}: still denied`)
      t.equal(verifications(replica, unsigned.digest), 1, `${name}: verified, not taken from Redis`)
    }
    // A value of another Redis type answers WRONGTYPE: also a miss.
    const listed = await pushImage(registry.url, 'shared/unsigned', 'listed', { seed: 'garbage-list' })
    await c.redisCli('RPUSH', c.redisKey('shared/unsigned', listed.digest), 'allow')
    t.equal(await pull(a, 'shared/unsigned', listed.digest), 403, 'a list under the key: still denied')
    t.equal(verifications(a, listed.digest), 1)
    t.equal(await metric(a, 'trustpull_redis_up'), 1, 'a Redis that answers, even garbage, is up')
    t.notOk(
      a.logs.some((l) => /redis cache unavailable/.test(String(l.msg))),
      'and no log line says otherwise',
    )

    const signed = await c.signed('shared/garbled')
    await c.redisCli('SET', c.redisKey('shared/garbled', signed.digest), 'garbage')
    t.equal(await pull(b, 'shared/garbled', signed.digest), 200, 'a signed image behind garbage is verified and allowed')
    t.equal(verifications(b, signed.digest), 1)
    t.match(await c.redisCli('GET', c.redisKey('shared/garbled', signed.digest)), /"result":"allow"/, 'and the garbage is replaced by its verdict')
  })

  t.test('a slow Redis is a miss: the pull is verified and served, and the slowness is reported', async (t) => {
    const image = await c.signed('shared/slow')
    // A Lua busy loop keeps this real Redis from answering anyone for a second or two.
    const busy = run('/usr/bin/redis-cli', ['-p', String(redis.port), 'EVAL', 'local i = 0 while i < 250000000 do i = i + 1 end return i', '0'])
    await waitFor(async () => !(await redisPing(redis.port, 100)), { what: 'Redis to be busy' })
    t.equal(await pull(b, 'shared/slow', image.digest), 200, 'served while Redis does not answer')
    t.equal(verifications(b, image.digest), 1)
    t.ok(
      b.logs.some((l) => /redis cache unavailable/.test(String(l.msg)) && /did not answer within/.test(String(l.error))),
      'a log line says Redis is too slow',
    )
    t.equal((await busy).code, 0)

    const next = await c.signed('shared/slow-after')
    t.equal(await pull(b, 'shared/slow-after', next.digest), 200)
    t.equal(await metric(b, 'trustpull_redis_up'), 1, 'up again once it answers')
  })

  t.test('Redis stopped mid-test: pulls keep working, the outage is reported, and it recovers', async (t) => {
    const before = await c.signed('shared/before')
    t.equal(await pull(a, 'shared/before', before.digest), 200)

    await redis.stop()
    const during = await c.signed('shared/during')
    t.equal(await pull(a, 'shared/before', before.digest), 200, 'a verdict held in process still serves')
    t.equal(await pull(b, 'shared/during', during.digest), 200, 'a new digest is verified without Redis')
    t.equal(await pull(cc, 'shared/during', during.digest), 200)
    t.equal(verifications(b, during.digest) + verifications(cc, during.digest), 2, 'each replica verified for itself')
    for (const replica of [a, b, cc]) {
      await waitFor(async () => (await metric(replica, 'trustpull_redis_up')) === 0, { what: 'trustpull_redis_up 0' })
      t.ok(
        replica.logs.some((l) => l.level === 'warn' && /redis cache unavailable/.test(String(l.msg))),
        'a log line says Redis is unavailable',
      )
    }
    const ready = await request(`${a.url}/readyz`)
    t.match(await ready.body.json(), { checks: { redis: 'down' } }, '/readyz names it (and stays ready)')
    t.equal(ready.statusCode, 200)

    await redis.start()
    for (const replica of [a, b, cc]) {
      await waitFor(async () => (await metric(replica, 'trustpull_redis_up')) === 1, { what: 'trustpull_redis_up 1 after Redis is back', timeoutMs: 20_000 })
    }
    t.ok(
      a.logs.some((l) => /redis cache connected/.test(String(l.msg))),
      'a log line says it is back',
    )

    const after = await c.signed('shared/after')
    t.equal(await pull(cc, 'shared/after', after.digest), 200)
    t.match(await c.redisCli('GET', c.redisKey('shared/after', after.digest)), /"result":"allow"/, 'writes land in Redis again')
    t.equal(await pull(a, 'shared/after', after.digest), 200)
    t.same(
      audits(a, after.digest).map((l) => l.cached),
      [true],
      'and the other replicas hit them',
    )
  })
})

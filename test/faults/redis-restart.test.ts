// Redis stopped and started again under load: 20 concurrent clients pull signed images (tags,
// digests, HEADs, blobs) through trustpull with a real redis-server as its verdict cache, and
// new signed digests are pulled while Redis is down. Not one request may fail because of it, and
// trustpull must find Redis again on its own.
import t from 'tap'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir, waitFor } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'registry.test'
const CLIENTS = 20
const LOAD_MS = 7_000
const STOP_AT_MS = 1_500
const START_AT_MS = 4_000

interface Outcome {
  what: string
  status: number
  ok: boolean
  at: number
  error?: string
}

const registry = await startRegistry(t)
const redis = await startRedis(t)
const keys = await generateKeyPair(await tempDir(t, 'trustpull-faults-keys-'))
const proxy = await startProxy(t, {
  upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
  policies: [{ name: 'signed', images: [{ glob: `${UPSTREAM}/**` }], authorities: [{ key: { data: keys.publicKeyPem } }] }],
  cache: { url: redis.url },
  log: { level: 'info' },
})

/** Pushes and signs (real cosign) `n` images in `prefix/…`. */
async function signedImages(prefix: string, n: number): Promise<PushedImage[]> {
  const images = await Promise.all(Array.from({ length: n }, (_, i) => pushImage(registry.url, `${prefix}/app${i}`, 'v1', { layerSize: 32 * 1024 })))
  await Promise.all(images.map((img) => signImage(`${registry.host}/${img.repo}@${img.digest}`, keys.privateKeyPath)))
  return images
}

const warm = await signedImages('warm', 4)
/** Never pulled before Redis goes down: verified while it is down. */
const cold = await signedImages('cold', 4)
const agent = new Agent({ connections: CLIENTS, headersTimeout: 15_000, bodyTimeout: 15_000 })
t.teardown(() => agent.close())

async function metric(name: string): Promise<number | undefined> {
  const res = await request(`${proxy.url}/metrics`, { dispatcher: agent })
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(await res.body.text())
  return m ? Number(m[1]) : undefined
}

/** One request of the mix; `ok` means the answer is exactly right (status, digest, bytes). */
async function pull(img: PushedImage, kind: number, started: number): Promise<Outcome> {
  const base = `${proxy.url}/v2/${img.repo}`
  const [what, url, method] = (
    [
      ['manifest by tag', `${base}/manifests/v1`, 'GET'],
      ['HEAD by tag', `${base}/manifests/v1`, 'HEAD'],
      ['manifest by digest', `${base}/manifests/${img.digest}`, 'GET'],
      ['blob', `${base}/blobs/${img.layerDigests[0]}`, 'GET'],
    ] as const
  )[kind % 4]!
  try {
    const res = await request(url, { dispatcher: agent, method, headers: { accept: ACCEPT_ANY_MANIFEST } })
    const body = Buffer.from(await res.body.arrayBuffer())
    const expected = what === 'blob' ? img.layerDigests[0] : img.digest
    const ok =
      res.statusCode === 200 && (method === 'HEAD' ? res.headers['docker-content-digest'] === expected : `sha256:${createHash('sha256').update(body).digest('hex')}` === expected)
    return { what, status: res.statusCode, ok, at: Date.now() - started, ...(ok ? {} : { error: body.toString('utf8').slice(0, 300) }) }
  } catch (err) {
    return { what, status: 0, ok: false, at: Date.now() - started, error: (err as Error).message }
  }
}

t.test('Redis stopped and started under load: no request fails', async (t) => {
  // Warm: every warm image verified once, its verdict and vouchers in both tiers.
  for (const img of warm) for (let k = 0; k < 4; k++) t.ok((await pull(img, k, Date.now())).ok, `warm-up ${img.repo} ${k}`)
  t.equal(await metric('trustpull_redis_up'), 1, 'Redis is up to begin with')

  const started = Date.now()
  const outcomes: Outcome[] = []
  let phase: 'up' | 'down' | 'back' = 'up'
  const chaos = (async () => {
    await sleep(STOP_AT_MS)
    await redis.stop()
    phase = 'down'
    await sleep(START_AT_MS - STOP_AT_MS)
    await redis.start()
    phase = 'back'
  })()
  const workers = Array.from({ length: CLIENTS }, async (_, w) => {
    for (let i = 0; Date.now() - started < LOAD_MS; i++) {
      // While Redis is down, one worker in four pulls manifests it has never verified (by tag or
      // digest; their blobs are vouched for only once a manifest has been allowed).
      if (phase === 'down' && w % 4 === 0) outcomes.push(await pull(cold[(w + i) % cold.length]!, (i % 2) * 2, started))
      else outcomes.push(await pull(warm[(w + i) % warm.length]!, w + i, started))
    }
  })
  await Promise.all([...workers, chaos])

  const failed = outcomes.filter((o) => !o.ok)
  t.same(failed.slice(0, 5), [], `${outcomes.length} requests in ${LOAD_MS / 1000} s, none failed`)
  const coldPulls = outcomes.filter((o) => o.at > STOP_AT_MS && o.at < START_AT_MS).length
  t.ok(coldPulls > 20, `${coldPulls} requests were answered while Redis was down`)
  for (const img of cold) {
    t.ok(
      proxy.logs.some((l) => l.audit === 'verdict' && l.digest === img.digest && l.result === 'allow' && l.cached === false),
      `${img.repo}: verified while Redis was down`,
    )
  }
  t.ok(
    proxy.logs.some((l) => l.level === 'warn' && /redis cache unavailable/.test(String(l.msg))),
    'the outage was logged',
  )

  // trustpull finds Redis again by itself (reconnect backoff is at most 5 s).
  await waitFor(
    async () => {
      await pull(warm[0]!, 2, started)
      return (await metric('trustpull_redis_up')) === 1
    },
    { timeoutMs: 15_000, what: 'trustpull_redis_up 1' },
  )
  t.ok(
    proxy.logs.some((l) => /redis cache connected/.test(String(l.msg))),
    'and says so',
  )
  const after = await signedImages('after', 1)
  for (let k = 0; k < 4; k++) t.ok((await pull(after[0]!, k, started)).ok, `after: ${k}`)
})

// A password flood against the real CLI (`node src/cli/main.ts serve`): bcrypt runs off the event
// loop, and an address out of failed attempts is answered 429 before any bcrypt runs. The lag is
// read from the process's own nodejs_eventloop_lag_p99_seconds (prom-client resets it at each
// scrape, so the second scrape covers exactly the flood), against the same flood without
// credentials on the same process, which carries the machine's load and the sampling resolution.
import t from 'tap'
import bcrypt from 'bcrypt'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request as httpRequest } from 'node:http'
import { request } from 'undici'
import { pushImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`
const BURST = 10

t.test('200 bad passwords: at most the burst reaches bcrypt, the rest get 429, the loop stays responsive, good credentials still work', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/app', '1')
  const dir = await tempDir(t)
  const htpasswd = join(dir, 'htpasswd')
  await writeFile(htpasswd, `alice:${await bcrypt.hash('alice-password', 10)}\nbob:${await bcrypt.hash('bob-password', 10)}\n`)
  const port = await freePort()
  const configFile = join(dir, 'config.yaml')
  await writeFile(
    configFile,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      noMatchPolicy: 'allow',
      storage: { path: join(dir, 'mirror-store') },
      upstreams: [{ name: 'docker.io', url: registry.url, default: true }],
      clients: { htpasswd, failedAuth: { burst: BURST, perMinute: 1 } },
      reload: { watch: false },
    }),
  )
  await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
    readyTimeoutMs: 60_000,
  })
  const url = `http://127.0.0.1:${port}`
  const manifest = async (auth: string | undefined) => {
    const res = await request(`${url}/v2/library/app/manifests/1`, { headers: auth ? { authorization: auth } : {} })
    await res.body.dump()
    return res
  }
  /** The same request from 127.0.0.2 (undici's connector does not take a local address). */
  const fromOtherAddress = (auth: string) =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${url}/v2/library/app/manifests/1`, { headers: { authorization: auth }, localAddress: '127.0.0.2', agent: false }, (res) => {
        res.resume()
        res.once('end', () => resolve(res.statusCode!))
      })
      req.once('error', reject)
      req.end()
    })

  const good = await manifest(basic('alice', 'alice-password'))
  t.equal(good.statusCode, 200, 'alice pulls before the flood')
  t.equal(good.headers['docker-content-digest'], image.digest)

  /** 10 rounds of 20 requests at once; the event-loop lag p99 over them, from the process's /metrics. */
  const flood = async (auth: (round: number, i: number) => string | undefined) => {
    await scrape(url) // resets the event-loop histogram: the next scrape covers this flood only
    const answers: Awaited<ReturnType<typeof manifest>>[] = []
    for (let round = 0; round < 10; round++) {
      answers.push(...(await Promise.all(Array.from({ length: 20 }, (_, i) => manifest(auth(round, i))))))
    }
    return { answers, p99: (await scrape(url)).value('nodejs_eventloop_lag_p99_seconds') ?? NaN }
  }
  // The same flood without credentials (401 at once, no bcrypt): what the machine's own load and
  // the 10 ms sampling resolution put into the figure, so the bound measures bcrypt's share only.
  await flood(() => undefined) // warm-up (JIT, connections), not measured
  const baseline = await flood(() => undefined)
  t.ok(
    baseline.answers.every((a) => a.statusCode === 401),
    'anonymous: 401, nothing counted against the address',
  )
  const bad = await flood((round, i) => basic('alice', `wrong-${round}-${i}`))
  const statuses = bad.answers.map((a) => a.statusCode)
  const retryAfter = bad.answers.filter((a) => a.statusCode === 429).map((a) => String(a.headers['retry-after']))
  const p99 = bad.p99
  t.comment(`event-loop lag p99: ${(p99 * 1000).toFixed(1)} ms during the bad-password flood, ${(baseline.p99 * 1000).toFixed(1)} ms during the same flood without credentials`)

  const count = (s: number) => statuses.filter((x) => x === s).length
  t.equal(statuses.length, 200)
  t.equal(count(401) + count(429), 200, 'every bad password is refused: 401 or 429')
  t.ok(count(401) >= 1 && count(401) <= BURST + 1, `at most the burst (${BURST}, plus one refilled) reached bcrypt: ${count(401)}`)
  t.ok(count(429) >= 200 - BURST - 1, `the rest were limited before bcrypt: ${count(429)}`)
  t.ok(
    retryAfter.every((r) => /^\d+$/.test(r) && Number(r) >= 1),
    'every 429 says when to come back',
  )
  t.ok(p99 - baseline.p99 < 0.02, `the password checks add under 20 ms to the event-loop lag p99 (${p99} s against ${baseline.p99} s)`)

  const again = await manifest(basic('alice', 'alice-password'))
  t.equal(again.statusCode, 200, 'alice, already verified, still pulls from the flooded address')
  const locked = await manifest(basic('bob', 'bob-password'))
  t.equal(locked.statusCode, 429, 'an unverified password from the flooded address waits: no bcrypt for it either')

  // Another loopback address is another bucket: bob's good password works from there.
  t.equal(await fromOtherAddress(basic('bob', 'bob-password')), 200, 'bob from 127.0.0.2')
  t.equal(await fromOtherAddress(basic('bob', 'nope')), 401, 'a wrong password from a fresh address is a plain 401')
})

// The kill switch across replicas: two trustpull processes share one redis-server; a digest both
// have verified and cached is denied through replica A's API (POST /api/v1/denylist), and replica B
// is polled (every 2 ms) until it answers 403. The figure is the time from sending the POST to
// B's first 403; removal is measured the same way (DELETE, until B serves it again).
//   node bench/kill-switch.ts [--quick]
import { request } from 'undici'
import { startRedis } from '../test/helpers/redis.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, median, percentile, QUICK, round, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'

const ROUNDS = QUICK ? 5 : 30
const POLL_MS = 2

async function status(url: string): Promise<number> {
  const res = await request(url, { headers: { accept: ACCEPT } })
  await res.body.dump()
  return res.statusCode
}

async function until(url: string, wanted: number, timeoutMs = 10_000): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    if ((await status(url)) === wanted) return performance.now()
    if (performance.now() > deadline) throw new Error(`${url} did not answer ${wanted} within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}

async function change(method: 'POST' | 'DELETE', url: string, digest: string): Promise<void> {
  const res = await request(`${url}/api/v1/denylist`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ digest, ...(method === 'POST' ? { reason: 'bench' } : {}) }),
  })
  await res.body.dump()
  if (res.statusCode !== (method === 'POST' ? 201 : 200)) throw new Error(`${method} /api/v1/denylist answered ${res.statusCode}`)
}

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'redis', 'cosign'])
  const registry = await startRegistry(scope)
  const redis = await startRedis(scope)
  const keys = await benchKeys(scope)
  const [image] = await pushSigned(registry, keys, 'bench/kill/app', 1)
  const config = proxyConfig(registry.url, { cache: { url: redis.url }, policies: [keyPolicy(keys)] })
  const a = await startTrustpull(scope, 'replica-a', config)
  const b = await startTrustpull(scope, 'replica-b', config)
  const path = `/v2/${image!.repo}/manifests/${image!.digest}`
  for (const r of [a, b]) if ((await status(`${r.url}${path}`)) !== 200) throw new Error('the signed image is not served before the deny')

  const denied: number[] = []
  const afterAnswer: number[] = []
  const restored: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const sent = performance.now()
    await change('POST', a.url, image!.digest)
    const answered = performance.now()
    const seen = await until(`${b.url}${path}`, 403)
    denied.push(seen - sent)
    afterAnswer.push(seen - answered)
    const removing = performance.now()
    await change('DELETE', a.url, image!.digest)
    restored.push((await until(`${b.url}${path}`, 200)) - removing)
  }
  say(`deny seen by the other replica: median ${round(median(denied))} ms, max ${round(Math.max(...denied))} ms`)

  writeResult({
    scenario: 'kill-switch',
    title: 'Kill switch: a denied digest refused by the other replica',
    quick: QUICK,
    environment: env,
    headlines: [
      { metric: 'deny → first 403 on the other replica, median (ms)', value: median(denied), target: '< 1000', met: median(denied) < 1000 },
      { metric: 'deny → first 403 on the other replica, p95 (ms)', value: percentile(denied, 95) },
      { metric: 'deny → first 403 on the other replica, worst (ms)', value: Math.max(...denied), target: '< 1000', met: Math.max(...denied) < 1000 },
      { metric: 'remove → served again on the other replica, median (ms)', value: median(restored) },
    ],
    details: { rounds: ROUNDS, pollMs: POLL_MS, deniedMs: denied.map((v) => round(v)), afterAnswerMs: afterAnswer.map((v) => round(v)), restoredMs: restored.map((v) => round(v)) },
    tables: [
      {
        caption: `${ROUNDS} rounds; B had verified and cached the digest before each deny. Times from sending the API request on A.`,
        header: ['measure', 'median ms', 'p95 ms', 'max ms'],
        rows: [
          ['deny → B refuses', round(median(denied)), round(percentile(denied, 95)), round(Math.max(...denied))],
          ['A answered → B refuses', round(median(afterAnswer)), round(percentile(afterAnswer, 95)), round(Math.max(...afterAnswer))],
          ['remove → B serves', round(median(restored)), round(percentile(restored, 95)), round(Math.max(...restored))],
        ],
      },
    ],
    notes: [
      'A writes the entry to Redis and publishes on the denylist channel; B reloads its in-process copy on the message and checks it before any cached verdict.',
      `B is polled every ${POLL_MS} ms with a manifest GET, so each figure includes up to one poll interval and one request.`,
    ],
  })
})

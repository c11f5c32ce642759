// Scenario 6: three trustpull processes sharing one redis-server (started here). A digest verified
// by replica A is a hit on B and C: no verification and no upstream signature request (a counting
// proxy in front of the registry records what each phase asked for). Hit latency on B with Redis
// holding only the bench's own entries, then on C after 100,000 valid-shaped verdicts were loaded
// into Redis under other keys (redis-cli --pipe), each beside the registry's own answer.
//   node bench/shared-cache.ts [--quick]
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { startFaultProxy } from '../test/helpers/fault-proxy.ts'
import type { PushedImage } from '../test/helpers/images.ts'
import { runOk } from '../test/helpers/proc.ts'
import { startRedis } from '../test/helpers/redis.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, QUICK, round, say, scenario, startTrustpull, writeResult, type Trustpull } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { latencySummary, timedRequest } from './lib/load.ts'

const PRELOAD = 100_000
const WARMUP = 10
const MEASURED = QUICK ? 20 : 100

/** RESP for `SET key value PX ttl`, what redis-cli --pipe reads. */
function respSet(key: string, value: string, ttlMs: number): string {
  const parts = ['SET', key, value, 'PX', String(ttlMs)]
  return `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`
}

/** Verdicts shaped like trustpull's own (same fields and sizes) for digests nobody will ask for. */
function preloadCommands(count: number, fingerprint: string): Buffer {
  const chunks: string[] = []
  const expires = Date.now() + 3_600_000
  for (let i = 0; i < count; i++) {
    const digest = `sha256:${createHash('sha256').update(`preload ${i}`).digest('hex')}`
    const image = `docker.io/preload/app-${i % 1000}`
    const verdict = {
      result: 'allow',
      image,
      digest,
      fingerprint,
      policies: [
        {
          name: 'signed',
          origin: 'config policies[0]',
          mode: 'enforce',
          result: 'pass',
          authorities: [{ name: 'release-key', type: 'key', ok: true, status: 'pass', evidence: [], reasons: [] }],
        },
      ],
      reasons: ['allowed by policy "signed"'],
      signers: [{ policy: 'signed', authority: 'release-key', keyHint: 'LWe4+A/VViUIpxx7t2lzsBN78QIB9YEjFg1P/9F9Ptg=' }],
      transient: false,
    }
    const key = `trustpull::verdict:${createHash('sha256')
      .update(`${fingerprint}\ndocker.io\npreload/app-${i % 1000}\n${digest}`)
      .digest('hex')}`
    chunks.push(respSet(key, JSON.stringify({ value: verdict, expires }), 3_600_000))
  }
  return Buffer.from(chunks.join(''))
}

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'redis', 'cosign'])
  const registry = await startRegistry(scope)
  const counter = await startFaultProxy(scope, registry.url)
  const redis = await startRedis(scope)
  const redisCli = (args: string[], input?: Buffer) => runOk('/usr/bin/redis-cli', ['-p', String(redis.port), ...args], { input, timeoutMs: 120_000 })
  const keys = await benchKeys(scope)
  say(`pushing and signing ${WARMUP + MEASURED} images`)
  const images = await pushSigned(registry, keys, 'bench/shared/app', WARMUP + MEASURED)
  const warmups = images.slice(0, WARMUP)
  const measured = images.slice(WARMUP)

  const config = proxyConfig(counter.url, { policies: [keyPolicy(keys)], cache: { url: redis.url } })
  const [a, b, c] = await Promise.all(['trustpull-a', 'trustpull-b', 'trustpull-c'].map((name) => startTrustpull(scope, name, config)))
  for (const replica of [a!, b!, c!]) if ((await replica.metric('trustpull_redis_up')) !== 1) throw new Error('a replica is not connected to Redis')

  const headers = { accept: ACCEPT }
  const get = async (base: string, image: PushedImage) => {
    const r = await timedRequest(`${base}/v2/${image.repo}/manifests/${image.digest}`, { headers })
    if (r.status !== 200) throw new Error(`${base}: ${image.repo} answered ${r.status}`)
    return r.ms
  }

  say(`replica A verifies all ${images.length}`)
  for (const image of images) await get(a!.url, image)
  const verifiedByA = a!.audits().filter((x) => !x.cached).length
  for (const image of warmups) {
    await get(b!.url, image)
    await get(c!.url, image)
  }

  /**
   * Each digest of a set once on its replica (a Redis-tier hit there), B and C taking turns, the
   * registry's answer to the same GET just before each.
   */
  const hits = async (turns: [Trustpull, PushedImage[]][]) => {
    counter.clearRequests()
    const before = turns.map(([replica]) => replica.audits().length)
    const direct: number[] = []
    const endToEnd: number[] = []
    const longest = Math.max(...turns.map(([, set]) => set.length))
    for (let i = 0; i < longest; i++) {
      for (const [replica, set] of turns) {
        const image = set[i]
        if (!image) continue
        direct.push(await get(registry.url, image))
        endToEnd.push(await get(replica.url, image))
      }
    }
    const lines = turns.flatMap(([replica], i) => replica.audits().slice(before[i]))
    const signatureRequests = counter.requests.filter((r) => /\/referrers\/|\/manifests\/sha256-|\/blobs\//.test(r.path)).length
    return {
      requests: endToEnd.length,
      verifications: lines.filter((x) => !x.cached).length,
      hits: lines.filter((x) => x.cached).length,
      signatureRequests,
      upstreamRequests: counter.requests.length,
      endToEnd: latencySummary(endToEnd),
      direct: latencySummary(direct),
      verdictLookup: latencySummary(lines.map((x) => x.durationMs)),
    }
  }
  // Four quarters: B and C each measure fresh digests before and after the preload, so neither a
  // replica's own state nor the order decides the comparison.
  const quarter = Math.ceil(measured.length / 4)
  const q = [0, 1, 2, 3].map((i) => measured.slice(i * quarter, (i + 1) * quarter))

  const keysBefore = Number((await redisCli(['DBSIZE'])).stdout.trim())
  say(`B and C: ${q[0]!.length + q[1]!.length} hits, Redis holding ${keysBefore} keys`)
  const small = await hits([
    [b!, q[0]!],
    [c!, q[1]!],
  ])

  say(`preloading ${PRELOAD.toLocaleString('en-US')} verdicts into Redis`)
  const fingerprint = createHash('sha256').update('another policy set').digest('hex')
  const piped = await redisCli(['--pipe'], preloadCommands(PRELOAD, fingerprint))
  if (!/errors: 0, replies: \d+/.test(piped.stdout)) throw new Error(`redis-cli --pipe: ${piped.stdout}`)
  const keysAfter = Number((await redisCli(['DBSIZE'])).stdout.trim())
  const memory = /used_memory_human:(\S+)/.exec((await redisCli(['INFO', 'memory'])).stdout)?.[1] ?? '?'
  // Redis grows its hash table incrementally after a bulk load; measure the steady state.
  await sleep(1_000)

  say(`B and C: ${q[2]!.length + q[3]!.length} hits, Redis holding ${keysAfter} keys (${memory})`)
  const large = await hits([
    [b!, q[2]!],
    [c!, q[3]!],
  ])

  const shared = small.verifications === 0 && large.verifications === 0 && small.signatureRequests === 0 && large.signatureRequests === 0
  const lookupRatio = large.verdictLookup.p50Ms / small.verdictLookup.p50Ms
  const e2eRatio = large.endToEnd.p50Ms / small.endToEnd.p50Ms
  writeResult({
    scenario: 'shared-cache',
    title: 'Shared cache: three trustpull processes on one Redis',
    quick: QUICK,
    environment: env,
    headlines: [
      {
        metric: 'digests verified by A that B and C verified again',
        value: small.verifications + large.verifications,
        target: '0',
        met: small.verifications + large.verifications === 0,
      },
      {
        metric: 'upstream signature requests from B and C',
        value: small.signatureRequests + large.signatureRequests,
        target: '0',
        met: small.signatureRequests + large.signatureRequests === 0,
      },
      { metric: `hit latency p50 (end to end), ${PRELOAD.toLocaleString('en-US')} verdicts in Redis ÷ empty`, value: e2eRatio, target: '≤ 1.2×', met: e2eRatio <= 1.2 },
      { metric: `verdict look-up p50 (trustpull's audit durationMs), ${PRELOAD.toLocaleString('en-US')} ÷ empty`, value: lookupRatio, target: '≤ 1.2×', met: lookupRatio <= 1.2 },
    ],
    details: { verifiedByA, measured: MEASURED, redisKeys: { before: keysBefore, after: keysAfter, usedMemory: memory }, emptyRedis: small, preloadedRedis: large, shared },
    tables: [
      {
        caption: `${MEASURED} digests verified by replica A, each requested once (by digest) on B or C: a miss in that replica's memory, a hit in Redis; it fetches the manifest bytes upstream and no signature. A quarter each: B and C before the preload, B and C after it, taking turns. The registry's answer to the same GET, just before each, is the baseline.`,
        header: ['Redis holds', 'replica', 'verifications', 'hits', 'signature requests', 'hit p50 ms', 'hit p99 ms', 'look-up p50 ms', 'look-up p99 ms', 'registry p50 ms'],
        rows: [
          [
            `${keysBefore} keys (the bench's own)`,
            'B and C',
            small.verifications,
            small.hits,
            small.signatureRequests,
            small.endToEnd.p50Ms,
            small.endToEnd.p99Ms,
            small.verdictLookup.p50Ms,
            small.verdictLookup.p99Ms,
            small.direct.p50Ms,
          ],
          [
            `${keysAfter.toLocaleString('en-US')} keys (${memory})`,
            'B and C',
            large.verifications,
            large.hits,
            large.signatureRequests,
            large.endToEnd.p50Ms,
            large.endToEnd.p99Ms,
            large.verdictLookup.p50Ms,
            large.verdictLookup.p99Ms,
            large.direct.p50Ms,
          ],
        ],
      },
    ],
    notes: [
      `Replica A verified ${verifiedByA} digests (${images.length} expected). B and C were warmed on ${WARMUP} other shared digests first.`,
      '"look-up" is the verdict step as trustpull measures it (in-process miss, Redis GET, validation), from the audit line; "hit" is the client-side latency of the whole request, including the upstream manifest fetch.',
      `The preloaded entries are verdicts of the same shape and size as trustpull's, under keys of another policy fingerprint, with a 1 h TTL; loaded with redis-cli --pipe in ${round(PRELOAD / 1000, 0)}k SET commands.`,
    ],
  })
})

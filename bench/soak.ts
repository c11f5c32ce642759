// `npm run soak`: a bounded run of mixed traffic through trustpull as its users run it (a child
// process, `node src/cli/main.ts serve`) against a real docker-registry, with a real redis-server
// as the verdict cache that is stopped and started once midway. Every few seconds it records the
// proxy's resident memory and open file descriptors (from /proc), its V8 heap and event-loop lag
// (from /metrics, trustpull_process_*), throughput and latency; then bench/results/soak.json and
// soak.md: a table over time and a summary against the targets (RSS growth after warm-up < 10%,
// no fd growth, p99 event-loop lag < 20 ms, no failed request).
//   node bench/soak.ts [--minutes N] [--rate R] [--quick]       (default 10 minutes; --quick: 60 s)
// Traffic (weights): warm manifests by tag, HEAD by tag and by digest; blobs; an index and its
// platforms; unsigned images (denied: expected 403s); cold digests (a new signed image is pushed
// every few seconds, and allows expire after a short TTL so warm digests are verified again).
import { createHash } from 'node:crypto'
import { readdir, readFile, readlink } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { pushImage, pushIndex, type PushedImage, type PushedIndex } from '../test/helpers/images.ts'
import { waitFor } from '../test/helpers/proc.ts'
import { startRedis } from '../test/helpers/redis.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, memoryOf, percentile, QUICK, round, say, scenario, startTrustpull, writeResult, type Headline, type Trustpull } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, pushSigned, signAll } from './lib/images.ts'

function argument(name: string): number | undefined {
  const i = process.argv.indexOf(`--${name}`)
  if (i === -1) return undefined
  const value = Number(process.argv[i + 1])
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} needs a positive number`)
  return value
}

const DURATION_MS = (QUICK ? 1 : (argument('minutes') ?? 10)) * 60_000
/** Requests per second offered (paced, not as fast as possible: a soak watches a steady state). */
const RATE = argument('rate') ?? 200
const CLIENTS = 16
const SAMPLE_MS = 5_000
/** Memory settles (JIT, heap sizing, caches filling) before growth is measured from it. */
const WARM_UP_MS = Math.min(120_000, DURATION_MS / 5)
const PUBLISH_EVERY_MS = QUICK ? 6_000 : 15_000
const ALLOW_TTL = QUICK ? '20s' : '60s'
const REDIS_DOWN_MS = 5_000

interface Sample {
  atS: number
  rssMiB: number
  heapMiB: number
  fds: number
  lagP99Ms: number
  lagMaxMs: number
  rps: number
  p50Ms: number
  p99Ms: number
  requests: number
  failed: number
  redisUp: number
  event?: string
}

interface Kind {
  name: string
  weight: number
  /** The request, and what a correct answer is. */
  make(): { path: string; method: 'GET' | 'HEAD'; status: number; digest?: string }
}

const pick = <T>(list: readonly T[]): T => list[Math.floor(Math.random() * list.length)]!

/**
 * Open fds of `pid`; of its TCP sockets, how many go to `upstreamPort` (the upstream pool, which
 * grows and shrinks with the load) and how many are clients' connections to `listenPort`.
 */
async function descriptors(pid: number, upstreamPort: number, listenPort: number): Promise<{ fds: number; toUpstream: number; clients: number }> {
  const dir = `/proc/${pid}/fd`
  const links = await Promise.all((await readdir(dir)).map((fd) => readlink(join(dir, fd)).catch(() => '')))
  const inodes = new Set(links.map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter(Boolean))
  let toUpstream = 0
  let clients = 0
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8')).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || !inodes.has(f[9]!)) continue
      if (parseInt(f[2]!.split(':')[1]!, 16) === upstreamPort) toUpstream++
      else if (parseInt(f[1]!.split(':')[1]!, 16) === listenPort && f[3] !== '0A') clients++
    }
  }
  return { fds: links.length, toUpstream, clients }
}

async function metrics(proxy: Trustpull): Promise<Record<string, number>> {
  const res = await request(`${proxy.url}/metrics`)
  const out: Record<string, number> = {}
  for (const line of (await res.body.text()).split('\n')) {
    const m = /^(trustpull_process_\w+|trustpull_redis_up) (\S+)$/.exec(line)
    if (m) out[m[1]!] = Number(m[2])
  }
  return out
}

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'redis', 'cosign'])
  say(`soak: ${DURATION_MS / 60_000} min at ${RATE} req/s offered, ${CLIENTS} clients, samples every ${SAMPLE_MS / 1000} s, warm-up ${WARM_UP_MS / 1000} s`)
  const registry = await startRegistry(scope)
  const redis = await startRedis(scope)
  const keys = await benchKeys(scope)

  const warm = await pushSigned(registry, keys, 'soak/warm', 8, { layers: 2, layerSize: 256 * 1024 })
  const big = await pushSigned(registry, keys, 'soak/big', 1, { layerSize: 8 * 1024 * 1024 })
  const unsigned: PushedImage[] = []
  for (let i = 0; i < 4; i++) unsigned.push(await pushImage(registry.url, `soak/unsigned-${i}`, 'v1', { seed: `unsigned-${i}-${Date.now()}` }))
  const index: PushedIndex = await pushIndex(registry.url, 'soak/multi', 'v1', { layerSize: 64 * 1024, seed: `multi-${Date.now()}` })
  await signAll(registry, keys, [{ repo: index.repo, digest: index.digest } as PushedImage])
  /** Signed images pushed during the run: the newest ones are pulled as cold digests. */
  const cold: PushedImage[] = await pushSigned(registry, keys, 'soak/cold-0', 1)

  const proxy = await startTrustpull(scope, 'soak', {
    upstreams: [{ name: 'registry.test', url: registry.url, default: true }],
    policies: [keyPolicy(keys, 'registry.test/soak/**')],
    cache: { url: redis.url, allowTTL: ALLOW_TTL, denyTTL: '10s' },
    log: { level: 'warn' },
  })

  // The big image is in the manifest mix too: a blob is served only while a manifest listing it
  // was allowed within the allow TTL (clients pull the manifest, then its blobs).
  const manifests = [...warm, ...big]
  const kinds: Kind[] = [
    { name: 'manifest by tag', weight: 25, make: () => ((img) => ({ path: `${img.repo}/manifests/v1`, method: 'GET', status: 200, digest: img.digest }))(pick(manifests)) },
    { name: 'HEAD by tag', weight: 15, make: () => ((img) => ({ path: `${img.repo}/manifests/v1`, method: 'HEAD', status: 200, digest: img.digest }))(pick(manifests)) },
    {
      name: 'manifest by digest',
      weight: 15,
      make: () => ((img) => ({ path: `${img.repo}/manifests/${img.digest}`, method: 'GET', status: 200, digest: img.digest }))(pick(manifests)),
    },
    {
      name: 'blob',
      weight: 20,
      make: () =>
        ((img) => ((d) => ({ path: `${img.repo}/blobs/${d}`, method: 'GET' as const, status: 200, digest: d }))(pick(img.layerDigests)))(
          Math.random() < 0.02 ? big[0]! : pick(warm),
        ),
    },
    {
      name: 'index and platforms',
      weight: 5,
      make: () =>
        Math.random() < 0.5
          ? { path: `${index.repo}/manifests/v1`, method: 'GET', status: 200, digest: index.digest }
          : ((c) => ({ path: `${index.repo}/manifests/${c.digest}`, method: 'GET' as const, status: 200, digest: c.digest }))(pick(index.children)),
    },
    { name: 'denied (unsigned)', weight: 10, make: () => ((img) => ({ path: `${img.repo}/manifests/v1`, method: 'GET', status: 403 }))(pick(unsigned)) },
    {
      name: 'cold digest',
      weight: 10,
      make: () => ((img) => ({ path: `${img.repo}/manifests/${img.digest}`, method: 'GET', status: 200, digest: img.digest }))(pick(cold.slice(-3))),
    },
  ]
  const totalWeight = kinds.reduce((s, k) => s + k.weight, 0)
  const chooseKind = () => {
    let r = Math.random() * totalWeight
    for (const k of kinds) if ((r -= k.weight) < 0) return k
    return kinds[0]!
  }

  // Manifests first: blobs are served only once a manifest that lists them has been allowed.
  for (const img of [...warm, ...big, ...cold]) await (await request(`${proxy.url}/v2/${img.repo}/manifests/v1`, { headers: { accept: ACCEPT } })).body.dump()
  await (await request(`${proxy.url}/v2/${index.repo}/manifests/v1`, { headers: { accept: ACCEPT } })).body.dump()

  const started = Date.now()
  const failures: { atS: number; kind: string; detail: string }[] = []
  const byKind = new Map<string, { requests: number; failed: number }>(kinds.map((k) => [k.name, { requests: 0, failed: 0 }]))
  let latencies: number[] = []
  let requests = 0
  let running = true
  let agent = new Agent({ connections: CLIENTS, headersTimeout: 30_000, bodyTimeout: 30_000 })
  let paused: Promise<void> | undefined

  const one = async (): Promise<void> => {
    const kind = chooseKind()
    const want = kind.make()
    const t0 = performance.now()
    let detail: string | undefined
    try {
      const res = await request(`${proxy.url}/v2/${want.path}`, { dispatcher: agent, method: want.method, headers: { accept: ACCEPT } })
      const hash = createHash('sha256')
      for await (const chunk of res.body) hash.update(chunk as Buffer)
      const got = want.method === 'HEAD' ? res.headers['docker-content-digest'] : `sha256:${hash.digest('hex')}`
      if (res.statusCode !== want.status) detail = `${res.statusCode}, not ${want.status}`
      else if (want.digest && got !== want.digest) detail = `wrong digest ${String(got)}`
    } catch (err) {
      detail = (err as Error).message
    }
    latencies.push(performance.now() - t0)
    requests++
    const stats = byKind.get(kind.name)!
    stats.requests++
    if (detail) {
      stats.failed++
      failures.push({ atS: round((Date.now() - started) / 1000, 1), kind: kind.name, detail: detail.slice(0, 200) })
    }
  }

  const workers = Array.from({ length: CLIENTS }, async (_, w) => {
    const interval = (CLIENTS * 1000) / RATE
    let next = performance.now() + (w * interval) / CLIENTS
    while (running) {
      if (paused) await paused
      const wait = next - performance.now()
      if (wait > 0) await sleep(wait)
      next = Math.max(next + interval, performance.now() - interval)
      await one()
    }
  })

  // A new signed image every few seconds: the cold digests of the mix.
  const publisher = (async () => {
    for (let n = 1; running; n++) {
      await sleep(PUBLISH_EVERY_MS)
      if (!running) break
      try {
        cold.push(...(await pushSigned(registry, keys, `soak/cold-${n}`, 1)))
      } catch (err) {
        say(`publishing a cold image failed: ${(err as Error).message}`)
      }
    }
  })()

  /** With the load paused and our connections closed: descriptors other than the upstream pool. */
  const idleDescriptors = async (): Promise<{ fds: number; toUpstream: number; others: number }> => {
    let release!: () => void
    paused = new Promise((r) => (release = r))
    await sleep(500)
    await agent.close()
    agent = new Agent({ connections: CLIENTS, headersTimeout: 30_000, bodyTimeout: 30_000 })
    const listenPort = Number(new URL(proxy.url).port)
    let d = await descriptors(proxy.pid, registry.port, listenPort)
    await waitFor(async () => (d = await descriptors(proxy.pid, registry.port, listenPort)).clients === 0, { timeoutMs: 10_000, what: 'client connections to close' })
    paused = undefined
    release()
    return { ...d, others: d.fds - d.toUpstream }
  }

  const samples: Sample[] = []
  let lastRequests = 0
  let lastFailed = 0
  let events: string[] = []
  let baselineIdle: Awaited<ReturnType<typeof idleDescriptors>> | undefined
  let redisPhase: 'before' | 'down' | 'done' = 'before'

  while (Date.now() - started < DURATION_MS) {
    await sleep(SAMPLE_MS)
    const atMs = Date.now() - started
    if (!baselineIdle && atMs >= WARM_UP_MS) {
      baselineIdle = await idleDescriptors()
      events.push(`warm-up over; idle fds ${baselineIdle.fds} (${baselineIdle.toUpstream} to the registry)`)
    }
    if (redisPhase === 'before' && atMs >= DURATION_MS / 2) {
      await redis.stop()
      redisPhase = 'down'
      events.push('redis stopped')
      setTimeout(() => {
        redis.start().then(
          () => {
            redisPhase = 'done'
            events.push('redis started')
          },
          (err: Error) => say(`redis start failed: ${err.message}`),
        )
      }, REDIS_DOWN_MS)
    }
    const mem = memoryOf(proxy.pid)
    const d = await descriptors(proxy.pid, registry.port, Number(new URL(proxy.url).port))
    const m = await metrics(proxy)
    const window = latencies
    latencies = []
    const sample: Sample = {
      atS: round(atMs / 1000, 0),
      rssMiB: round(mem.rss / 2 ** 20, 1),
      heapMiB: round((m.trustpull_process_heap_used_bytes ?? NaN) / 2 ** 20, 1),
      fds: d.fds,
      lagP99Ms: round((m.trustpull_process_event_loop_lag_p99_seconds ?? NaN) * 1000, 1),
      lagMaxMs: round((m.trustpull_process_event_loop_lag_max_seconds ?? NaN) * 1000, 1),
      rps: round((requests - lastRequests) / (SAMPLE_MS / 1000), 0),
      p50Ms: round(percentile(window, 50), 1),
      p99Ms: round(percentile(window, 99), 1),
      requests,
      failed: failures.length - lastFailed,
      redisUp: m.trustpull_redis_up ?? NaN,
      ...(events.length ? { event: events.join('; ') } : {}),
    }
    events = []
    lastRequests = requests
    lastFailed = failures.length
    samples.push(sample)
    say(
      `${sample.atS}s rss ${sample.rssMiB} MiB heap ${sample.heapMiB} MiB fds ${sample.fds} lag p99 ${sample.lagP99Ms} ms ${sample.rps} req/s p99 ${sample.p99Ms} ms failed ${sample.failed} redis ${sample.redisUp}${sample.event ? ` [${sample.event}]` : ''}`,
    )
  }
  running = false
  await Promise.all([...workers, publisher])
  const endIdle = await idleDescriptors()
  await agent.close()

  // --- summary ---------------------------------------------------------------------------------
  const steady = samples.filter((s) => s.atS * 1000 > WARM_UP_MS)
  const med = (xs: number[]) => percentile(xs, 50)
  const firstRss = med(steady.slice(0, 3).map((s) => s.rssMiB))
  const lastRss = med(steady.slice(-3).map((s) => s.rssMiB))
  const rssGrowth = ((lastRss - firstRss) / firstRss) * 100
  const fdGrowth = endIdle.others - (baselineIdle?.others ?? endIdle.others)
  const lagP99 = Math.max(...steady.map((s) => s.lagP99Ms))
  const lagP99Median = med(steady.map((s) => s.lagP99Ms))
  const headlines: Headline[] = [
    { metric: 'RSS growth after warm-up, %', value: round(rssGrowth, 1), target: '< 10', met: rssGrowth < 10 },
    { metric: 'fd growth (idle, upstream pool excluded)', value: fdGrowth, target: '0', met: fdGrowth <= 0 },
    { metric: 'event-loop lag p99, worst 5 s window, ms', value: lagP99, target: '< 20', met: lagP99 < 20 },
    { metric: 'failed requests', value: failures.length, target: '0', met: failures.length === 0 },
  ]
  writeResult({
    scenario: 'soak',
    title: `Soak: ${DURATION_MS / 60_000} min of mixed traffic through trustpull, Redis restarted midway`,
    quick: QUICK,
    environment: env,
    headlines,
    details: {
      durationMs: DURATION_MS,
      rateOffered: RATE,
      clients: CLIENTS,
      warmUpMs: WARM_UP_MS,
      requests,
      byKind: Object.fromEntries(byKind),
      coldImagesPublished: cold.length,
      rssMiB: { afterWarmUp: firstRss, atEnd: lastRss, peak: round(memoryOf(proxy.pid).peak / 2 ** 20, 1) },
      idleDescriptors: { afterWarmUp: baselineIdle, atEnd: endIdle },
      lagP99Ms: { worstWindow: lagP99, medianWindow: lagP99Median },
      failures: failures.slice(0, 50),
      samples,
    },
    tables: [
      {
        caption: 'Requests by kind',
        header: ['kind', 'weight', 'requests', 'failed'],
        rows: kinds.map((k) => [k.name, k.weight, byKind.get(k.name)!.requests, byKind.get(k.name)!.failed]),
      },
      {
        caption: `Over time (every ${SAMPLE_MS / 1000} s; lag from trustpull_process_event_loop_lag_*, RSS and fds from /proc)`,
        header: ['t (s)', 'RSS MiB', 'heap MiB', 'fds', 'lag p99 ms', 'lag max ms', 'req/s', 'p50 ms', 'p99 ms', 'failed', 'redis up', 'event'],
        rows: samples.map((s) => [s.atS, s.rssMiB, s.heapMiB, s.fds, s.lagP99Ms, s.lagMaxMs, s.rps, s.p50Ms, s.p99Ms, s.failed, s.redisUp, s.event ?? '']),
      },
    ],
    notes: [
      `Traffic is paced at ${RATE} req/s from ${CLIENTS} keep-alive clients (not flat out: a soak looks for drift, and a saturated CPU would make event-loop lag a measure of the load generator). Expected 403s for unsigned images count as successes; a failure is any other status, a wrong digest or a broken connection.`,
      `Cold digests: a new signed image every ${PUBLISH_EVERY_MS / 1000} s (cosign 2.5), the newest three pulled by digest; allows expire after ${ALLOW_TTL}, denies after 10s, so warm digests are verified again during the run.`,
      `Redis (the verdict cache) is stopped at half time for ${REDIS_DOWN_MS / 1000} s and started again; trustpull_redis_up shows the outage and the reconnection.`,
      `RSS growth compares the median of the first three samples after warm-up (${WARM_UP_MS / 1000} s) with the median of the last three. fd growth compares the proxy's descriptors with the load paused and the clients' connections closed, after warm-up and at the end, less its pooled sockets to the registry (keep-alive, up to 64, their count follows the load).`,
      'Event-loop lag is trustpull_process_event_loop_lag_p99_seconds: perf_hooks.monitorEventLoopDelay in 5 s windows, less its 10 ms sampling period. Everything here (registry, Redis, cosign publishing, the load generator, trustpull) shares one machine: lag includes time the proxy waited for a CPU, so read it beside the load average above.',
    ],
  })
  if (failures.length) say(`first failures: ${JSON.stringify(failures.slice(0, 5))}`)
})

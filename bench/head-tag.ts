// Scenario 2: warm HEAD by tag, the request containerd sends first, against the registry directly,
// trustpull with tagTTL 0 (every tag resolved upstream: a GET of the manifest, hashed, its verdict
// looked up) and trustpull with a tag TTL (answered from memory). Same client for all three:
// ApacheBench with keep-alive HEAD (`ab -k -i`), 50 connections, rounds rotating between sides.
// With 50 connections on one tag, trustpull's tagTTL 0 requests share upstream GETs that are in
// flight; a second workload gives each connection a tag of its own (50 tags on one manifest, an
// undici HEAD loop on both sides), so every trustpull request goes upstream.
//   node bench/head-tag.ts [--quick]
import { pushManifest } from '../test/helpers/images.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, QUICK, registryPid, round, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { apacheBenchHead, assertClean, medianRun, rotate, timedRequest, undiciLoop, withServerCpu } from './lib/load.ts'

const CONNECTIONS = 50
const SECONDS = QUICK ? 2 : 3
/** The one-tag-per-connection workload is a check of the same path: shorter runs. */
const DISTINCT_SECONDS = 2
const ROUNDS = QUICK ? 1 : 2

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'ab', 'cosign'])
  const registry = await startRegistry(scope)
  const keys = await benchKeys(scope)
  const [image] = await pushSigned(registry, keys, 'bench/tagged', 1, { layers: 3 })
  const tags = Array.from({ length: CONNECTIONS }, (_, i) => `t${i}`)
  for (const tag of tags) await pushManifest(registry.url, image!.repo, tag, image!.manifest, image!.mediaType)
  const policies = [keyPolicy(keys)]
  const mutable = await startTrustpull(scope, 'trustpull-tagttl0', proxyConfig(registry.url, { policies }))
  const ttl = await startTrustpull(scope, 'trustpull-tagttl30s', proxyConfig(registry.url, { policies, cache: { tagTTL: '30s' } }))

  // containerd's request: HEAD by tag with ?ns= and an Accept list.
  const path = `/v2/${image!.repo}/manifests/v1?ns=docker.io`
  const headers = { accept: ACCEPT }
  for (const side of [mutable, ttl]) {
    const first = await timedRequest(`${side.url}${path}`, { method: 'HEAD', headers })
    if (first.status !== 200) throw new Error(`trustpull answered ${first.status} to HEAD by tag`)
  }
  say('warming all sides')
  for (const url of [registry.url, mutable.url, ttl.url]) await apacheBenchHead(`${url}${path}`, { connections: CONNECTIONS, seconds: 1, headers })
  const upstreamBefore = await mutable.metric('trustpull_upstream_request_duration_seconds_count')

  say(`${ROUNDS} round(s) of ${SECONDS} s per side, ${CONNECTIONS} connections, ab -k -i`)
  const reg = registryPid(registry.storageDir)
  // Server CPU per request counts trustpull and the registry behind it (tagTTL 0 asks it).
  const sides: [string, number[]][] = [
    [registry.url, [reg]],
    [mutable.url, [mutable.pid, reg]],
    [ttl.url, [ttl.pid, reg]],
  ]
  const [directRuns, mutableRuns, ttlRuns] = await rotate(
    ROUNDS,
    sides.map(
      ([url, pids]) =>
        () =>
          withServerCpu(pids, () => apacheBenchHead(`${url}${path}`, { connections: CONNECTIONS, seconds: SECONDS, headers })),
    ),
  )
  for (const [name, runs] of [
    ['registry', directRuns],
    ['tagTTL 0', mutableRuns],
    ['tagTTL 30s', ttlRuns],
  ] as const)
    runs!.forEach((r) => assertClean(name, r))

  say(`distinct tags: ${ROUNDS} round(s) of ${DISTINCT_SECONDS} s per side, one tag per connection, undici HEAD loop`)
  const tagUrls = (base: string) => tags.map((tag) => `${base}/v2/${image!.repo}/manifests/${tag}?ns=docker.io`)
  const before = await mutable.metric('trustpull_upstream_request_duration_seconds_count')
  const [directDistinctRuns, mutableDistinctRuns] = await rotate(
    ROUNDS,
    sides.slice(0, 2).map(
      ([url, pids]) =>
        () =>
          withServerCpu(pids, () => undiciLoop(tagUrls(url), { connections: CONNECTIONS, seconds: DISTINCT_SECONDS, headers })),
    ),
  )
  for (const [name, runs] of [
    ['registry, distinct tags', directDistinctRuns],
    ['tagTTL 0, distinct tags', mutableDistinctRuns],
  ] as const)
    runs!.forEach((r) => assertClean(name, r))
  const distinctUpstream = (await mutable.metric('trustpull_upstream_request_duration_seconds_count')) - before
  const distinctRequests = mutableDistinctRuns!.reduce((n, r) => n + r.requests, 0)
  const directDistinct = medianRun(directDistinctRuns!)
  const mutableDistinct = medianRun(mutableDistinctRuns!)
  const rDistinct = mutableDistinct.rps / directDistinct.rps

  const direct = medianRun(directRuns!)
  const tag0 = medianRun(mutableRuns!)
  const tag30 = medianRun(ttlRuns!)
  const mutableRequests = mutableRuns!.reduce((n, r) => n + r.requests, 0)
  const upstreamDuring = (await mutable.metric('trustpull_upstream_request_duration_seconds_count')) - upstreamBefore
  const verifications = [mutable, ttl].map((p) => p.audits().filter((a) => !a.cached).length)

  const r0 = tag0.rps / direct.rps
  const r30 = tag30.rps / direct.rps
  writeResult({
    scenario: 'head-tag',
    title: 'Warm HEAD by tag (containerd): trustpull vs docker-registry',
    quick: QUICK,
    environment: env,
    headlines: [
      { metric: 'HEAD by tag, tagTTL 0: req/s, trustpull ÷ registry', value: r0, target: '≥ 0.8×', met: r0 >= 0.8 },
      { metric: 'HEAD by tag, tagTTL 0, one tag per connection (all upstream): req/s, trustpull ÷ registry', value: rDistinct, target: '≥ 0.8×', met: rDistinct >= 0.8 },
      { metric: 'HEAD by tag, tagTTL 30s: req/s, trustpull ÷ registry', value: r30, target: '≥ 10×', met: r30 >= 10 },
      { metric: 'HEAD by tag, tagTTL 30s: server CPU per request, registry ÷ trustpull', value: direct.cpuUsPerRequest! / tag30.cpuUsPerRequest! },
      {
        metric: 'HEAD by tag, tagTTL 0, one tag per connection: server CPU per request, registry ÷ (trustpull + registry)',
        value: directDistinct.cpuUsPerRequest! / mutableDistinct.cpuUsPerRequest!,
      },
    ],
    details: {
      connections: CONNECTIONS,
      secondsPerRound: SECONDS,
      distinctTagSecondsPerRound: DISTINCT_SECONDS,
      rounds: ROUNDS,
      registry: directRuns,
      tagTTL0: mutableRuns,
      tagTTL30s: ttlRuns,
      tagTTL0UpstreamRequests: upstreamDuring,
      tagTTL0ClientRequests: mutableRequests,
      distinctTags: { registry: directDistinctRuns, tagTTL0: mutableDistinctRuns, upstreamRequests: distinctUpstream, clientRequests: distinctRequests },
      verifications,
    },
    tables: [
      {
        caption: `\`ab -k -i -c ${CONNECTIONS} -t ${SECONDS}\`, ${ROUNDS} round(s) per side, order rotating; the median round is shown.`,
        header: ['side', 'req/s', 'p50 ms', 'p99 ms', 'requests', '× registry', 'server CPU µs/request'],
        rows: [
          ['docker-registry directly', direct.rps, direct.p50Ms, direct.p99Ms, direct.requests, 1, direct.cpuUsPerRequest!],
          ['trustpull, tagTTL 0 (one tag: in-flight resolutions shared)', tag0.rps, tag0.p50Ms, tag0.p99Ms, tag0.requests, round(r0, 2), tag0.cpuUsPerRequest!],
          ['trustpull, tagTTL 30s', tag30.rps, tag30.p50Ms, tag30.p99Ms, tag30.requests, round(r30, 2), tag30.cpuUsPerRequest!],
        ],
      },
      {
        caption: `One tag per connection (${CONNECTIONS} tags on one manifest), undici HEAD loop with ${CONNECTIONS} keep-alive connections, ${DISTINCT_SECONDS} s per round, ${ROUNDS} round(s); the median round is shown.`,
        header: ['side', 'req/s', 'p50 ms', 'p99 ms', 'requests', '× registry', 'server CPU µs/request'],
        rows: [
          ['docker-registry directly', directDistinct.rps, directDistinct.p50Ms, directDistinct.p99Ms, directDistinct.requests, 1, directDistinct.cpuUsPerRequest!],
          [
            'trustpull, tagTTL 0 (+ the registry behind it)',
            mutableDistinct.rps,
            mutableDistinct.p50Ms,
            mutableDistinct.p99Ms,
            mutableDistinct.requests,
            round(rDistinct, 2),
            mutableDistinct.cpuUsPerRequest!,
          ],
        ],
      },
    ],
    notes: [
      `One tag, tagTTL 0: trustpull sent ${upstreamDuring} upstream requests for ${mutableRequests} client HEADs (${round(upstreamDuring / Math.max(1, mutableRequests), 3)} each): a request for a tag whose upstream GET is in flight joins it (its answer is at most one round trip older than the request), so 50 connections on one tag cost about one upstream GET per round trip.`,
      `One tag per connection, tagTTL 0: ${distinctUpstream} upstream requests for ${distinctRequests} client HEADs (${round(distinctUpstream / Math.max(1, distinctRequests), 3)} each): every request resolved its tag upstream.`,
      `Verifications during the whole run: ${verifications.join(' and ')} (the first request of each trustpull only).`,
      'trustpull answers HEAD from a GET of the manifest upstream (it must hash the bytes it vouches for); the registry answers HEAD from its metadata.',
      'Server CPU µs/request: CPU time (/proc/PID/stat) of the serving processes during the run, divided by the requests answered; for trustpull it includes the registry behind it. It moves far less than req/s when other work shares the machine.',
    ],
  })
})

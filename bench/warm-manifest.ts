// Scenario 1: warm manifest GET by digest, trustpull vs the registry directly, autocannon with 50
// connections against each in turn (alternating rounds). trustpull answers from its manifest and
// verdict caches; the registry reads its storage every time.
//   node bench/warm-manifest.ts [--quick]
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, QUICK, registryPid, round, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { assertClean, cannon, medianRun, rotate, timedRequest, withServerCpu } from './lib/load.ts'

const CONNECTIONS = 50
const SECONDS = QUICK ? 2 : 5
const ROUNDS = QUICK ? 1 : 2

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'autocannon', 'cosign'])
  const registry = await startRegistry(scope)
  const keys = await benchKeys(scope)
  const [image] = await pushSigned(registry, keys, 'bench/warm', 1, { layers: 3 })
  const trustpull = await startTrustpull(scope, 'trustpull', proxyConfig(registry.url, { policies: [keyPolicy(keys)] }))

  const path = `/v2/${image!.repo}/manifests/${image!.digest}`
  const headers = { accept: ACCEPT }
  const first = await timedRequest(`${trustpull.url}${path}`, { headers })
  if (first.status !== 200) throw new Error(`trustpull answered ${first.status} for the signed image`)
  say(`verified once in ${round(first.ms, 1)} ms; warming both sides`)
  await cannon(`${trustpull.url}${path}`, { connections: CONNECTIONS, seconds: 1, headers })
  await cannon(`${registry.url}${path}`, { connections: CONNECTIONS, seconds: 1, headers })

  say(`${ROUNDS} round(s) of ${SECONDS} s per side, ${CONNECTIONS} connections`)
  const registryProcess = registryPid(registry.storageDir)
  const [tpRuns, directRuns] = await rotate(ROUNDS, [
    // trustpull answers alone (nothing goes upstream): its CPU is the whole server-side cost.
    () => withServerCpu([trustpull.pid], () => cannon(`${trustpull.url}${path}`, { connections: CONNECTIONS, seconds: SECONDS, headers })),
    () => withServerCpu([registryProcess], () => cannon(`${registry.url}${path}`, { connections: CONNECTIONS, seconds: SECONDS, headers })),
  ])
  tpRuns!.forEach((r) => assertClean('trustpull', r))
  directRuns!.forEach((r) => assertClean('registry', r))
  const tp = medianRun(tpRuns!)
  const direct = medianRun(directRuns!)
  const verifications = trustpull.audits().filter((a) => !a.cached).length
  const upstreamCalls = await trustpull.metric('trustpull_upstream_request_duration_seconds_count')

  const ratio = tp.rps / direct.rps
  const cpuRatio = direct.cpuUsPerRequest! / tp.cpuUsPerRequest!
  const headlines = [
    { metric: 'warm GET by digest: req/s, trustpull ÷ registry', value: ratio, target: '≥ 10×', met: ratio >= 10 },
    { metric: 'warm GET by digest: trustpull p99 (ms) at 50 connections', value: tp.p99Ms, target: '≤ 5 ms', met: tp.p99Ms <= 5 },
    { metric: 'warm GET by digest: server CPU per request, registry ÷ trustpull', value: cpuRatio },
  ]
  writeResult({
    scenario: 'warm-manifest',
    title: 'Warm manifest GET by digest: trustpull vs docker-registry',
    quick: QUICK,
    environment: env,
    headlines,
    details: {
      connections: CONNECTIONS,
      secondsPerRound: SECONDS,
      rounds: ROUNDS,
      trustpull: tpRuns,
      registry: directRuns,
      verifications,
      upstreamRequestsDuringRun: upstreamCalls,
    },
    tables: [
      {
        caption: `autocannon, ${CONNECTIONS} connections, ${SECONDS} s per round, ${ROUNDS} round(s) per side alternating; the median round is shown.`,
        header: ['side', 'req/s', 'p50 ms', 'p99 ms', 'requests', 'server CPU µs/request'],
        rows: [
          ['trustpull (cached digest)', tp.rps, tp.p50Ms, tp.p99Ms, tp.requests, tp.cpuUsPerRequest!],
          ['docker-registry directly', direct.rps, direct.p50Ms, direct.p99Ms, direct.requests, direct.cpuUsPerRequest!],
        ],
      },
    ],
    notes: [
      `trustpull verified the image ${verifications} time(s) and sent ${upstreamCalls} request(s) upstream in all (the first, cold request only): every measured request was answered from its caches.`,
      'Both servers share the machine with the load generator (and, on a shared machine, with other work): req/s and latency move with that load; the CPU each server process used per request (from /proc/PID/stat) does not, and is the steadier comparison.',
    ],
  })
})

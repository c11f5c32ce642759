// Scenario 4: thundering herd. 500 concurrent first requests for one signed digest that trustpull
// has never seen. A counting proxy (test/helpers/fault-proxy.ts, passing everything) sits between
// trustpull and the registry and records every upstream request; the audit log says how many of
// the 500 verdicts were verified rather than shared. Baseline: the same 500 concurrent GETs against
// the registry directly. Each round uses a new digest.
//   node bench/herd.ts [--quick]
import { startFaultProxy } from '../test/helpers/fault-proxy.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, QUICK, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { latencySummary, timedRequest } from './lib/load.ts'

const HERD = 500
const ROUNDS = QUICK ? 1 : 3

interface Round {
  digest: string
  statuses: Record<number, number>
  directStatuses: Record<number, number>
  verifications: number
  auditLines: number
  upstreamRequests: number
  maxFetchesOfOneResource: number
  perResource: Record<string, number>
  trustpull: ReturnType<typeof latencySummary>
  registry: ReturnType<typeof latencySummary>
}

async function burst(url: string): Promise<{ statuses: Map<number, number>; ms: number[] }> {
  const answers = await Promise.all(Array.from({ length: HERD }, () => timedRequest(url, { headers: { accept: ACCEPT } })))
  const statuses = new Map<number, number>()
  for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
  return { statuses, ms: answers.map((a) => a.ms) }
}

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'cosign'])
  const registry = await startRegistry(scope)
  const counter = await startFaultProxy(scope, registry.url)
  const keys = await benchKeys(scope)
  const [warmup, ...images] = await pushSigned(registry, keys, 'bench/herd/app', ROUNDS + 1)
  const trustpull = await startTrustpull(scope, 'trustpull', proxyConfig(counter.url, { policies: [keyPolicy(keys)] }))
  await timedRequest(`${trustpull.url}/v2/${warmup!.repo}/manifests/v1`, { headers: { accept: ACCEPT } })

  const rounds: Round[] = []
  for (const image of images) {
    const path = `/v2/${image.repo}/manifests/${image.digest}`
    say(`${HERD} concurrent first requests for ${image.repo}@${image.digest.slice(0, 19)}…`)
    const direct = await burst(`${registry.url}${path}`)
    counter.clearRequests()
    const herd = await burst(`${trustpull.url}${path}`)
    const perResource = new Map<string, number>()
    for (const r of counter.requests) {
      const resource = `${r.method} ${r.path.replaceAll(image.digest.slice(7), '<hex>')}`
      perResource.set(resource, (perResource.get(resource) ?? 0) + 1)
    }
    const audits = trustpull.audits().filter((a) => a.digest === image.digest)
    rounds.push({
      digest: image.digest,
      statuses: Object.fromEntries(herd.statuses),
      directStatuses: Object.fromEntries(direct.statuses),
      verifications: audits.filter((a) => !a.cached).length,
      auditLines: audits.length,
      upstreamRequests: counter.requests.length,
      maxFetchesOfOneResource: Math.max(...perResource.values()),
      perResource: Object.fromEntries(perResource),
      trustpull: latencySummary(herd.ms),
      registry: latencySummary(direct.ms),
    })
  }

  const worst = (f: (r: Round) => number) => Math.max(...rounds.map(f))
  const allAllowed = rounds.every((r) => r.statuses[200] === HERD)
  const verifications = worst((r) => r.verifications)
  const maxFetches = worst((r) => r.maxFetchesOfOneResource)
  const last = rounds.map((r) => r.trustpull.maxMs).sort((a, b) => a - b)[Math.floor((rounds.length - 1) / 2)]!
  const lastDirect = rounds.map((r) => r.registry.maxMs).sort((a, b) => a - b)[Math.floor((rounds.length - 1) / 2)]!
  if (!allAllowed) throw new Error(`not every request was allowed: ${JSON.stringify(rounds.map((r) => r.statuses))}`)

  writeResult({
    scenario: 'herd',
    title: `Thundering herd: ${HERD} concurrent first requests for one signed digest`,
    quick: QUICK,
    environment: env,
    headlines: [
      { metric: `verifications per herd of ${HERD} (worst round)`, value: verifications, target: '= 1', met: verifications === 1 },
      { metric: 'upstream fetches of any one resource per herd (worst round)', value: maxFetches, target: '= 1', met: maxFetches === 1 },
      { metric: `latency of the ${HERD}th answer, trustpull (ms, median round)`, value: last },
      { metric: `latency of the ${HERD}th answer, registry directly (ms, median round)`, value: lastDirect },
    ],
    details: { herd: HERD, rounds },
    tables: [
      {
        caption: `${HERD} requests started at once (undici, one connection each), a new digest per round. The registry side serves the same manifest GET with no verification.`,
        header: [
          'round',
          'allowed',
          'verifications',
          'audit lines',
          'upstream requests',
          'max fetches of one resource',
          'trustpull p50 ms',
          `trustpull ${HERD}th ms`,
          'registry p50 ms',
          `registry ${HERD}th ms`,
        ],
        rows: rounds.map((r, i) => [
          i + 1,
          r.statuses[200] ?? 0,
          r.verifications,
          r.auditLines,
          r.upstreamRequests,
          r.maxFetchesOfOneResource,
          r.trustpull.p50Ms,
          r.trustpull.maxMs,
          r.registry.p50Ms,
          r.registry.maxMs,
        ]),
      },
    ],
    notes: [
      `Upstream requests of one herd: ${Object.keys(rounds[0]!.perResource).join(', ')}.`,
      'Every request gets its own audit line: the one that verified says cached: false, the ones that shared its verdict cached: true.',
      `The ${HERD}th answer's latency is mostly the client's: ${HERD} connections opened at once by one Node process on the same machine.`,
    ],
  })
})

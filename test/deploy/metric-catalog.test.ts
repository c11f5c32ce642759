// test/helpers/metric-catalog.ts (what the dashboard and the alerts may query) is what
// src/telemetry/metrics.ts really exports: every trustpull_* family of a scrape, with its type and
// labels, once each series has a sample.
import t from 'tap'
import { Metrics } from '../../src/telemetry/metrics.ts'
import { METRICS } from '../helpers/metric-catalog.ts'
import { parsePrometheus } from '../helpers/prometheus.ts'

const metrics = new Metrics()
t.teardown(() => metrics.shutdown())
// One sample on every instrument, with every label the code sets (src/server.ts, src/http/app.ts).
metrics.verdicts.add(1, { result: 'allow', policy: 'p', upstream: 'u' })
metrics.verificationDuration.record(0.1)
metrics.cacheRequests.add(1, { tier: 'memory', result: 'hit' })
metrics.upstreamDuration.record(0.1, { upstream: 'u', status: '200' })
metrics.bytesServed.add(1, { kind: 'blob_from_store' })
metrics.inFlight.add(1)
metrics.httpRequests.add(1, { method: 'GET', route: 'blob', status: '200' })
metrics.storeLookups.add(1, { kind: 'blob', result: 'hit' })
metrics.storeEvictedBytes.add(1)
metrics.observeStore(() => ({ bytes: 1, objects: 1, writable: true, integrity: { corrupt: { read: 0, scrub: 1 }, scrubbedBytes: 1, scrubPasses: 1, lastScrubPassAt: Date.now() } }))
metrics.setRedisUp(true)

const { samples, types } = parsePrometheus(await metrics.prometheus())
/** Family name of a sample: histograms expose _bucket, _sum and _count. */
const family = (name: string) => (types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, ''))

t.test('every trustpull family scraped is in the catalog, with its type', async (t) => {
  const scraped = [...types.keys()].filter((n) => n.startsWith('trustpull_'))
  t.same(scraped.sort(), Object.keys(METRICS).sort())
  for (const name of scraped) t.equal(types.get(name), METRICS[name]?.type, `${name} is a ${types.get(name)}`)
})

t.test('each family has exactly the catalog labels', async (t) => {
  for (const [name, { type, labels }] of Object.entries(METRICS)) {
    const series = samples.filter((s) => family(s.name) === name)
    t.ok(series.length > 0, `${name} has samples`)
    const seen = new Set(series.flatMap((s) => Object.keys(s.labels)).filter((l) => l !== 'le'))
    t.same([...seen].sort(), [...labels].sort(), `${name} labels`)
    if (type === 'histogram')
      t.ok(
        series.some((s) => s.name === `${name}_bucket` && s.labels.le === '+Inf'),
        `${name} has buckets`,
      )
  }
})

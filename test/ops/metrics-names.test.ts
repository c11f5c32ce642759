// The standard process_* and nodejs_* families (prom-client's names and types, what stock Node.js
// dashboards and alerts query) and trustpull_build_info, scraped from a real server's /metrics
// with a real docker-registry upstream and a pull through it, each with a sane value; the
// deprecated trustpull_process_* gauges are still there.
import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, waitFor } from '../helpers/proc.ts'
import { scrape, type Scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const started = Date.now() / 1000
process.env.TRUSTPULL_REVISION = 'abc1234'
const registry = await startRegistry(t)
const image = await pushImage(registry.url, 'team/app', 'v1')
const proxy = await startProxy(t, { upstreams: [{ name: 'registry.test', url: registry.url, default: true }], noMatchPolicy: 'allow' })
const pulled = await request(`${proxy.url}/v2/${image.repo}/manifests/${image.tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
await pulled.body.dump()

/** Allocates until V8 has collected garbage at least once (the GC histogram has a sample). */
let metrics: Scrape = await scrape(proxy.url)
await waitFor(
  async () => {
    const junk = Array.from({ length: 200_000 }, (_, i) => ({ i }))
    metrics = await scrape(proxy.url)
    return junk.length > 0 && metrics.all('nodejs_gc_duration_seconds_count').some((s) => s.value > 0)
  },
  { what: 'a garbage collection to be observed' },
)

const type = (name: string) => metrics.types.get(name)
const one = (name: string, labels?: Record<string, string>) => {
  const value = metrics.value(name, labels)
  if (value === undefined) throw new Error(`${name} is absent`)
  return value
}

t.test('CPU and start time', async (t) => {
  for (const name of ['process_cpu_user_seconds_total', 'process_cpu_system_seconds_total', 'process_cpu_seconds_total']) {
    t.equal(type(name), 'counter', `${name} is a counter`)
    t.ok(one(name) >= 0, `${name} is not negative`)
  }
  t.ok(one('process_cpu_seconds_total') > 0, 'the process has used some CPU')
  t.ok(Math.abs(one('process_cpu_seconds_total') - one('process_cpu_user_seconds_total') - one('process_cpu_system_seconds_total')) < 1e-6, 'total = user + system')
  t.equal(type('process_start_time_seconds'), 'gauge')
  const start = one('process_start_time_seconds')
  t.ok(start <= started + 1 && start > started - 3600, `process_start_time_seconds (${start}) is within the last hour`)
})

t.test('memory and file descriptors', async (t) => {
  for (const name of [
    'process_resident_memory_bytes',
    'process_virtual_memory_bytes',
    'process_heap_bytes',
    'nodejs_heap_size_total_bytes',
    'nodejs_heap_size_used_bytes',
    'nodejs_external_memory_bytes',
    'process_open_fds',
    'process_max_fds',
  ]) {
    t.equal(type(name), 'gauge', `${name} is a gauge`)
    t.ok(one(name) > 0, `${name} is positive`)
  }
  t.ok(one('process_virtual_memory_bytes') >= one('process_resident_memory_bytes'), 'virtual memory is at least the resident set')
  t.ok(one('nodejs_heap_size_used_bytes') <= one('nodejs_heap_size_total_bytes'), 'heap used fits in the heap')
  t.ok(one('process_resident_memory_bytes') > 10 * 1024 * 1024 && one('process_resident_memory_bytes') < 16 * 1024 ** 3, 'resident memory is between 10 MiB and 16 GiB')
  t.ok(one('process_open_fds') <= one('process_max_fds'), 'open fds within the limit')
})

t.test('event loop and garbage collection', async (t) => {
  for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p90_seconds', 'nodejs_eventloop_lag_p99_seconds']) {
    t.equal(type(name), 'gauge', `${name} is a gauge`)
    const value = one(name)
    t.ok(Number.isFinite(value) && value >= 0 && value < 60, `${name} (${value}) is a sane number of seconds`)
  }
  t.ok(one('nodejs_eventloop_lag_p50_seconds') <= one('nodejs_eventloop_lag_p99_seconds'), 'p50 <= p99')
  t.equal(type('nodejs_gc_duration_seconds'), 'histogram')
  const kinds = metrics.all('nodejs_gc_duration_seconds_count').filter((s) => s.value > 0)
  t.ok(kinds.length > 0, 'a collection was counted')
  for (const s of kinds) t.match(s.labels.kind, /^(minor|major|incremental|weakcb)$/, `gc kind ${s.labels.kind}`)
})

t.test('versions', async (t) => {
  const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  t.equal(type('nodejs_version_info'), 'gauge')
  t.equal(one('nodejs_version_info', { version: process.version }), 1, 'nodejs_version_info names this Node')
  t.equal(type('trustpull_build_info'), 'gauge')
  t.same(
    metrics.all('trustpull_build_info'),
    [{ name: 'trustpull_build_info', labels: { version, revision: 'abc1234', node: process.version }, value: 1 }],
    'trustpull_build_info is 1 with version, revision and node',
  )
})

t.test('the deprecated trustpull_process_* gauges are still served', async (t) => {
  for (const name of [
    'trustpull_process_resident_memory_bytes',
    'trustpull_process_heap_used_bytes',
    'trustpull_process_open_fds',
    'trustpull_process_event_loop_lag_p99_seconds',
    'trustpull_process_event_loop_lag_max_seconds',
  ]) {
    t.equal(type(name), 'gauge', `${name} is a gauge`)
    t.ok(one(name) >= 0, `${name} has a value`)
  }
})

// Traces and metrics of real pulls: images signed by the real cosign 2.5 in a real docker-registry,
// pulled through trustpull in-process with an in-memory span exporter, and /metrics scraped and
// parsed as Prometheus would read it (with a real Redis behind the verdict cache).
import t from 'tap'
import { SpanKind } from '@opentelemetry/api'
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace'
import { request } from 'undici'
import { setupTracing, shutdownTracing } from '../../src/telemetry/tracing.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { tempDir, waitFor } from '../helpers/proc.ts'
import { parsePrometheus, scrape } from '../helpers/prometheus.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'registry.test'

const exporter = new InMemorySpanExporter()
setupTracing({ exporter })
t.teardown(() => shutdownTracing())

const registry = await startRegistry(t)
const keys = await generateKeyPair(await tempDir(t))
const strangerKeys = await generateKeyPair(await tempDir(t))

/** Pushes `team/<repo>:v1` and signs it with `key` (or leaves it unsigned). */
async function image(repo: string, key: string | undefined, layerSize?: number): Promise<PushedImage> {
  const pushed = await pushImage(registry.url, `team/${repo}`, 'v1', { layerSize })
  if (key) await signImage(`${registry.host}/team/${repo}@${pushed.digest}`, key)
  return pushed
}

const [signed, strangers, traced, forMetrics, forRedis] = await Promise.all([
  image('signed', keys.privateKeyPath),
  image('strangers', strangerKeys.privateKeyPath),
  image('traced', keys.privateKeyPath),
  image('metrics', keys.privateKeyPath, 64 * 1024),
  image('redis', keys.privateKeyPath),
])

const policyConfig = (extra: Record<string, unknown> = {}) => ({
  upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
  noMatchPolicy: 'deny',
  policies: [{ name: 'team-key', images: [{ glob: `${UPSTREAM}/team/**` }], authorities: [{ name: 'release-key', key: { data: keys.publicKeyPem } }] }],
  ...extra,
})

async function getManifest(proxy: TestProxy, img: PushedImage, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> {
  const res = await request(`${proxy.url}/v2/${img.repo}/manifests/${img.tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST, ...headers } })
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
}

async function getBlob(proxy: TestProxy, img: PushedImage, digest: string): Promise<Buffer> {
  const res = await request(`${proxy.url}/v2/${img.repo}/blobs/${digest}`)
  const body = Buffer.from(await res.body.arrayBuffer())
  if (res.statusCode !== 200 || sha256(body) !== digest) throw new Error(`blob ${digest}: ${res.statusCode}`)
  return body
}

// ---------------------------------------------------------------------------------------------
// Traces

interface Trace {
  root: ReadableSpan
  spans: ReadableSpan[]
  children(of: ReadableSpan, name?: string): ReadableSpan[]
}

/** The finished spans of the trace whose server span is `GET <path>`, waiting for it to end. */
async function traceOf(path: string): Promise<Trace> {
  let root: ReadableSpan | undefined
  const isRoot = (s: ReadableSpan) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === path
  await waitFor(() => (root = exporter.getFinishedSpans().find(isRoot)) !== undefined, { what: `the span of GET ${path}` })
  const traceId = root!.spanContext().traceId
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId)
  return {
    root: root!,
    spans,
    children: (of, name) => spans.filter((s) => s.parentSpanContext?.spanId === of.spanContext().spanId && (name === undefined || s.name === name)),
  }
}

const proxy = await startProxy(t, policyConfig())

t.test('an allowed pull: request → cache.get, policy.evaluate → signatures.discover → upstream.request, verify', async (t) => {
  const got = await getManifest(proxy, signed)
  t.equal(got.status, 200)
  t.equal(sha256(got.body), signed.digest)

  const path = `/v2/${signed.repo}/manifests/v1`
  const trace = await traceOf(path)
  const { root } = trace
  t.equal(root.parentSpanContext, undefined, 'a request without traceparent starts a trace')
  t.equal(root.name, 'GET manifest', 'named by endpoint, not by path')
  t.same(root.attributes, { 'http.request.method': 'GET', 'url.path': path, 'http.response.status_code': 200, 'trustpull.route': 'manifest' })

  const fetches = trace.children(root, 'upstream.request')
  t.ok(fetches.length >= 1, 'the manifest fetch is a child of the request')
  t.match(fetches[0]!.attributes, { 'trustpull.upstream': UPSTREAM, 'http.request.method': 'GET', 'url.path': path, 'http.response.status_code': 200 })
  const [cacheGet] = trace.children(root, 'cache.get')
  t.ok(cacheGet, 'the verdict cache look-up is a child of the request')
  t.match(cacheGet?.attributes, { 'trustpull.cache.key': /^verdict:[0-9a-f]{64}$/ })

  const evaluations = trace.children(root, 'policy.evaluate')
  t.equal(evaluations.length, 1, 'one policy evaluation')
  const evaluate = evaluations[0]!
  t.same(evaluate.attributes, { 'trustpull.image': `${UPSTREAM}/${signed.repo}`, 'trustpull.digest': signed.digest, 'trustpull.verdict': 'allow' })

  const discoveries = trace.children(evaluate, 'signatures.discover')
  t.equal(discoveries.length, 1, 'signature discovery runs inside the evaluation')
  const discover = discoveries[0]!
  t.same(discover.attributes, { 'trustpull.repository': signed.repo, 'trustpull.digest': signed.digest })
  const lookups = trace.children(discover, 'upstream.request')
  const tagPath = (suffix: string) => `/v2/${signed.repo}/manifests/sha256-${signed.digest.slice(7)}${suffix}`
  const statusOf = (p: string) => lookups.find((s) => s.attributes['url.path'] === p)?.attributes['http.response.status_code']
  t.equal(statusOf(`/v2/${signed.repo}/referrers/${signed.digest}`), 404, 'the referrers API is asked first (docker-registry has none)')
  t.equal(statusOf(tagPath('.sig')), 200, 'the .sig tag is read')
  t.equal(statusOf(tagPath('.att')), 404, 'no .att tag')
  t.ok(lookups.every((s) => s.attributes['trustpull.upstream'] === UPSTREAM))

  const verifications = trace.children(evaluate, 'verify')
  t.equal(verifications.length, 1, 'one candidate verified, inside the evaluation')
  t.same(verifications[0]!.attributes, {
    'trustpull.digest': signed.digest,
    'trustpull.signature.kind': 'signature',
    'trustpull.signature.format': 'cosign-legacy',
    'trustpull.authority.type': 'key',
    'trustpull.verify.ok': true,
  })
  for (const s of trace.spans) t.ok(s.endTime[0] > 0 && s.ended, `${s.name} ended`)
})

t.test('a denied pull: the evaluation says deny, the verification failed with its code', async (t) => {
  const got = await getManifest(proxy, strangers)
  t.equal(got.status, 403)
  const trace = await traceOf(`/v2/${strangers.repo}/manifests/v1`)
  t.match(trace.root.attributes, { 'http.response.status_code': 403 })
  const [evaluate] = trace.children(trace.root, 'policy.evaluate')
  t.match(evaluate?.attributes, { 'trustpull.image': `${UPSTREAM}/${strangers.repo}`, 'trustpull.digest': strangers.digest, 'trustpull.verdict': 'deny' })
  const [verify] = trace.children(evaluate!, 'verify')
  t.match(verify?.attributes, { 'trustpull.verify.ok': false, 'trustpull.verify.code': 'UNTRUSTED_KEY' })
  t.equal(trace.children(evaluate!, 'signatures.discover').length, 1)
})

t.test('an incoming traceparent is continued: same trace id, the caller span as parent', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const parentId = '00f067aa0ba902b7'
  const got = await getManifest(proxy, traced, { traceparent: `00-${traceId}-${parentId}-01` })
  t.equal(got.status, 200)
  const trace = await traceOf(`/v2/${traced.repo}/manifests/v1`)
  t.equal(trace.root.spanContext().traceId, traceId)
  t.equal(trace.root.parentSpanContext?.spanId, parentId)
  t.equal(trace.root.parentSpanContext?.isRemote, true)
  const names = new Set(trace.spans.map((s) => s.name))
  for (const name of ['cache.get', 'policy.evaluate', 'signatures.discover', 'upstream.request', 'verify']) t.ok(names.has(name), `${name} is in the caller's trace`)

  // A malformed traceparent is ignored: a new trace starts.
  exporter.reset()
  const blob = `/v2/${traced.repo}/blobs/${traced.configDigest}`
  const res = await request(`${proxy.url}${blob}`, { headers: { traceparent: `00-${'0'.repeat(32)}-${parentId}-01` } })
  await res.body.dump()
  const fresh = await traceOf(blob)
  t.equal(fresh.root.name, 'GET blob')
  t.not(fresh.root.spanContext().traceId, '0'.repeat(32))
  t.equal(fresh.root.parentSpanContext, undefined)
})

// ---------------------------------------------------------------------------------------------
// Metrics

t.test('the Prometheus parser reads what it must', async (t) => {
  const { samples, types } = parsePrometheus('# HELP a_total x\n# TYPE a_total counter\na_total{x="1",y="q\\"uote"} 3\nb 4.5 1700000000\n')
  t.same(samples, [
    { name: 'a_total', labels: { x: '1', y: 'q"uote' }, value: 3 },
    { name: 'b', labels: {}, value: 4.5 },
  ])
  t.equal(types.get('a_total'), 'counter')
  t.throws(() => parsePrometheus('a{x=1} 2'), /bad labels/)
  t.throws(() => parsePrometheus('not a sample'), /not a Prometheus sample/)
})

t.test('/metrics: verdicts, latencies, cache tiers, upstream status, bytes, in-flight, Redis', async (t) => {
  const redis = await startRedis(t)
  const metricsProxy = await startProxy(t, policyConfig({ cache: { url: redis.url } }))
  const before = await scrape(metricsProxy.url)
  t.equal(before.value('trustpull_redis_up'), 1, 'Redis answers')
  t.equal(before.types.get('trustpull_http_requests_in_flight'), 'gauge')
  t.equal(before.types.get('trustpull_redis_up'), 'gauge')

  // Two allowed pulls of one image (the second from the cache), one denied, one matching no policy.
  for (let i = 0; i < 2; i++) t.equal((await getManifest(metricsProxy, forMetrics)).status, 200)
  t.equal((await getManifest(metricsProxy, strangers)).status, 403)
  const unmatched = await request(`${metricsProxy.url}/v2/elsewhere/app/manifests/v1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  await unmatched.body.dump()
  t.equal(unmatched.statusCode, 404, 'an image the registry does not have is a 404 before any verdict')
  const config = await getBlob(metricsProxy, forMetrics, forMetrics.configDigest)
  const layer = await getBlob(metricsProxy, forMetrics, forMetrics.layerDigests[0]!)

  const m = await scrape(metricsProxy.url)
  t.equal(m.types.get('trustpull_verdicts_total'), 'counter')
  t.equal(m.types.get('trustpull_verification_duration_seconds'), 'histogram')
  t.equal(m.types.get('trustpull_cache_requests_total'), 'counter')
  t.equal(m.types.get('trustpull_bytes_served_total'), 'counter')
  const verdict = (result: string, policy: string) => m.value('trustpull_verdicts_total', { result, policy, upstream: UPSTREAM })
  t.equal(verdict('allow', 'team-key'), 2, 'two allows (one verified, one from the cache)')
  t.equal(verdict('deny', 'team-key'), 1, 'one deny')
  t.equal(m.value('trustpull_verification_duration_seconds_count'), 2, 'the latency histogram counts verifications, not cache hits')
  const sum = m.value('trustpull_verification_duration_seconds_sum')!
  t.ok(sum > 0, `verification took ${sum} s in all`)
  t.equal(m.value('trustpull_verification_duration_seconds_bucket', { le: '+Inf' }), 2)
  const buckets = m.all('trustpull_verification_duration_seconds_bucket').map((s) => s.value)
  t.same(
    [...buckets].sort((a, b) => a - b),
    buckets,
    'bucket counts are cumulative',
  )

  t.ok(m.value('trustpull_cache_requests_total', { tier: 'memory', result: 'miss' })! >= 2, 'in-process misses for the first look-ups')
  t.ok(m.value('trustpull_cache_requests_total', { tier: 'redis', result: 'miss' })! >= 2, 'and Redis misses behind them')
  t.ok(m.value('trustpull_cache_requests_total', { tier: 'memory', result: 'hit' })! >= 1, 'the second pull hit the in-process tier')
  t.equal(m.value('trustpull_cache_requests_total', { tier: 'redis', result: 'error' }), undefined, 'no Redis errors')

  // A second replica sharing the Redis: its in-process tier is empty, Redis has the verdict.
  const replica = await startProxy(t, policyConfig({ cache: { url: redis.url } }))
  t.equal((await getManifest(replica, forMetrics)).status, 200)
  const r = await scrape(replica.url)
  t.ok(r.value('trustpull_cache_requests_total', { tier: 'redis', result: 'hit' })! >= 1, 'the replica found the verdict in Redis')
  t.equal(r.value('trustpull_verification_duration_seconds_count'), undefined, 'and verified nothing itself')
  t.equal(r.value('trustpull_verdicts_total', { result: 'allow', policy: 'team-key', upstream: UPSTREAM }), 1)

  const upstream = (status: string) => m.value('trustpull_upstream_request_duration_seconds_count', { upstream: UPSTREAM, status })
  t.ok(upstream('200')! >= 4, `upstream 200s: manifests, .sig tags, blobs (${upstream('200')})`)
  t.ok(upstream('404')! >= 3, `upstream 404s: referrers, .att tags, the missing image (${upstream('404')})`)
  t.equal(m.types.get('trustpull_upstream_request_duration_seconds'), 'histogram')

  const manifestBytes = forMetrics.size * 2 // the 403 carries an error body, not a manifest
  t.equal(m.value('trustpull_bytes_served_total', { kind: 'manifest' }), manifestBytes, 'manifest bytes served')
  t.equal(m.value('trustpull_bytes_served_total', { kind: 'blob' }), config.length + layer.length, 'blob bytes served')
  t.ok(layer.length > 64 * 1024)

  t.equal(m.value('trustpull_http_requests_total', { method: 'GET', route: 'manifest', status: '200' }), 2)
  t.equal(m.value('trustpull_http_requests_total', { method: 'GET', route: 'manifest', status: '403' }), 1)
  t.equal(m.value('trustpull_http_requests_total', { method: 'GET', route: 'blob', status: '200' }), 2)
  t.equal(m.value('trustpull_http_requests_in_flight'), 1, 'the scrape itself is in flight on the main port')

  await redis.stop()
  t.equal((await getManifest(metricsProxy, forRedis)).status, 200, 'a pull still works with Redis down')
  await waitFor(async () => (await scrape(metricsProxy.url)).value('trustpull_redis_up') === 0, { what: 'trustpull_redis_up to fall to 0' })
  const down = await scrape(metricsProxy.url)
  t.ok(down.value('trustpull_cache_requests_total', { tier: 'redis', result: 'error' })! >= 1, 'Redis errors are counted')
  await redis.start()
  await waitFor(async () => (await scrape(metricsProxy.url)).value('trustpull_redis_up') === 1, { what: 'trustpull_redis_up back to 1', timeoutMs: 20_000 })
  t.pass('trustpull_redis_up is 1 again once Redis is back')
})

t.test('metrics on a port of their own; without Redis there is no trustpull_redis_up', async (t) => {
  const separate = await startProxy(t, policyConfig({ telemetry: { metrics: { listen: '127.0.0.1:0' } } }))
  const metricsUrl = separate.running.metricsUrl
  t.ok(metricsUrl, 'a metrics address')
  t.not(metricsUrl, separate.url)
  const onMain = await request(`${separate.url}/metrics`)
  await onMain.body.dump()
  t.equal(onMain.statusCode, 404, 'the registry port does not answer /metrics')
  const other = await request(`${metricsUrl}/v2/`)
  await other.body.dump()
  t.equal(other.statusCode, 404, 'the metrics port answers only /metrics')

  t.equal((await getManifest(separate, signed)).status, 200)
  const m = await scrape(metricsUrl!)
  t.equal(m.value('trustpull_verdicts_total', { result: 'allow', policy: 'team-key', upstream: UPSTREAM }), 1)
  t.equal(m.value('trustpull_http_requests_in_flight'), 0, 'nothing in flight: the scrape is not a registry request')
  t.equal(m.value('trustpull_redis_up'), undefined, 'no Redis configured, no Redis gauge')

  const off = await startProxy(t, policyConfig({ telemetry: { metrics: { enabled: false } } }))
  const none = await request(`${off.url}/metrics`)
  await none.body.dump()
  t.equal(none.statusCode, 404, 'metrics can be switched off')
})

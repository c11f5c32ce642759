// Metrics through OpenTelemetry, read out in Prometheus text format for /metrics. Names are the
// contract of deploy/grafana and the README: change them there too. The standard process_* and
// nodejs_* families come from prom-client (process-metrics.ts) and are appended to the text; the
// trustpull_process_* gauges are kept for existing dashboards and are deprecated.
import { type Attributes, type Histogram, type Meter } from '@opentelemetry/api'
import { VERSION } from '../version.ts'
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { MeterProvider } from '@opentelemetry/sdk-metrics'
import { existsSync, readdirSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { processMetricsText, startProcessMetrics } from './process-metrics.ts'

/** What the content store says about itself at a scrape (store/content-store.ts's IntegrityCounts inside). */
export interface StoreReading {
  bytes: number
  objects: number
  writable: boolean
  integrity: { corrupt: { read: number; scrub: number }; scrubbedBytes: number; scrubPasses: number; lastScrubPassAt: number | undefined }
}

/** Event-loop lag is reported per window of this length (the last complete one). */
const LAG_WINDOW_MS = 5_000
/** The sampling timer's period: Node records the time between its ticks, this much when idle. */
const LAG_RESOLUTION_MS = 10

const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/**
 * A counter on the hot path (several per request): counts in a plain Map keyed by the label
 * values in a fixed order, handed to OpenTelemetry only when metrics are read. The SDK's own
 * add() sorts and serialises the attributes on every call (~2-3 µs each, a fifth of a warm
 * request's CPU with six of them).
 */
export class HotCounter {
  readonly #labels: readonly string[]
  readonly #series = new Map<string, { attributes: Attributes; value: number }>()

  constructor(meter: Meter, name: string, description: string, labels: readonly string[], options: { unit?: string; upDown?: boolean } = {}) {
    this.#labels = labels
    const instrument = options.upDown
      ? meter.createObservableUpDownCounter(name, { description, unit: options.unit })
      : meter.createObservableCounter(name, { description, unit: options.unit })
    instrument.addCallback((result) => {
      for (const { attributes, value } of this.#series.values()) result.observe(value, attributes)
    })
  }

  add(value: number, attributes: Record<string, string> = {}): void {
    let key = ''
    for (const label of this.#labels) key += `${attributes[label]}\u0000`
    const series = this.#series.get(key)
    if (series) series.value += value
    else this.#series.set(key, { attributes: { ...attributes }, value })
  }
}

export class Metrics {
  readonly #provider: MeterProvider
  readonly #reader: PrometheusExporter
  readonly #serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
  readonly verdicts: HotCounter
  readonly verificationDuration: Histogram
  readonly cacheRequests: HotCounter
  readonly upstreamDuration: Histogram
  readonly bytesServed: HotCounter
  readonly inFlight: HotCounter
  readonly httpRequests: HotCounter
  readonly storeLookups: HotCounter
  readonly storeEvictedBytes: HotCounter
  readonly admissionDecisions: HotCounter
  readonly admissionDuration: Histogram
  readonly storeSaved: HotCounter
  #storeRead: (() => StoreReading) | undefined
  #redisUp: number | undefined
  readonly #loopDelay: ReturnType<typeof monitorEventLoopDelay>
  readonly #lagWindow: NodeJS.Timeout
  #lag: { p99: number; max: number } | undefined
  readonly #reload = { ok: 1, at: Date.now() / 1000 }

  constructor() {
    this.#reader = new PrometheusExporter({ preventServerStart: true })
    this.#provider = new MeterProvider({ readers: [this.#reader], resource: resourceFromAttributes({ 'service.name': 'trustpull' }) })
    const meter: Meter = this.#provider.getMeter('trustpull')
    this.verdicts = new HotCounter(meter, 'trustpull_verdicts', 'Verdicts reached, by result, policy and upstream', ['result', 'policy', 'upstream'])
    this.verificationDuration = meter.createHistogram('trustpull_verification_duration_seconds', {
      unit: 's',
      description: 'Time to discover and verify signatures for one digest (cache misses only)',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    })
    this.cacheRequests = new HotCounter(meter, 'trustpull_cache_requests', 'Cache look-ups by tier and result (hit, miss, error)', ['tier', 'result'])
    this.upstreamDuration = meter.createHistogram('trustpull_upstream_request_duration_seconds', {
      unit: 's',
      description: 'Upstream registry requests by upstream and status',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    })
    this.bytesServed = new HotCounter(meter, 'trustpull_bytes_served', 'Bytes served to clients, by kind (manifest, blob)', ['kind'], { unit: 'By' })
    this.inFlight = new HotCounter(meter, 'trustpull_http_requests_in_flight', 'Requests being served', [], { upDown: true })
    this.httpRequests = new HotCounter(meter, 'trustpull_http_requests', 'Requests answered, by method, route and status', ['method', 'route', 'status'])
    this.storeLookups = new HotCounter(
      meter,
      'trustpull_store_lookups',
      'Content store look-ups by kind (blob, manifest, tag) and result (hit, miss); a hit is an upstream request saved',
      ['kind', 'result'],
    )
    this.storeSaved = new HotCounter(
      meter,
      'trustpull_store_upstream_requests_saved',
      'Upstream requests the content store saved, by kind (manifest, blob): answered from the store, or (blob) joined a fetch already under way',
      ['kind'],
    )
    this.storeEvictedBytes = new HotCounter(meter, 'trustpull_store_evicted_bytes', 'Bytes evicted from the content store (least recently used, over storage.maxSize)', [], {
      unit: 'By',
    })
    // The store's own counts, read at scrape time (its first scrub pass may end before this exists).
    const integrity = () => this.#storeRead?.().integrity
    meter
      .createObservableCounter('trustpull_store_corrupt_objects', {
        description: 'Stored blobs that did not match their digest (bit rot, an edit), removed to be fetched again; by who found them (read, scrub)',
      })
      .addCallback((r) => {
        const counts = integrity()
        if (!counts) return
        r.observe(counts.corrupt.read, { found_by: 'read' })
        r.observe(counts.corrupt.scrub, { found_by: 'scrub' })
      })
    meter
      .createObservableCounter('trustpull_store_scrub_bytes', { unit: 'By', description: 'Bytes of stored blobs the scrub re-hashed' })
      .addCallback((r) => integrity() && r.observe(integrity()!.scrubbedBytes))
    meter
      .createObservableCounter('trustpull_store_scrub_passes', {
        description: 'Scrub passes finished over every stored blob (one at start-up, then daily; none with scrubRate 0 or S3)',
      })
      .addCallback((r) => integrity() && r.observe(integrity()!.scrubPasses))
    meter
      .createObservableGauge('trustpull_store_scrub_last_pass_timestamp_seconds', { unit: 's', description: 'When the last scrub pass finished (absent until one has)' })
      .addCallback((r) => {
        const at = integrity()?.lastScrubPassAt
        if (at !== undefined) r.observe(at / 1000)
      })
    this.admissionDecisions = new HotCounter(
      meter,
      'trustpull_admission_decisions',
      'Admission reviews answered, by result (allowed, refused, timeout, skipped, invalid) and object kind',
      ['result', 'kind'],
    )
    this.admissionDuration = meter.createHistogram('trustpull_admission_duration_seconds', {
      unit: 's',
      description: 'Time to answer one admission review, by endpoint (validate, mutate)',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    })
    meter
      .createObservableGauge('trustpull_store_bytes', { unit: 'By', description: 'Bytes of blobs in the content store' })
      .addCallback((r) => this.#storeRead && r.observe(this.#storeRead().bytes))
    meter
      .createObservableGauge('trustpull_store_objects', { description: 'Blobs (and manifests) in the content store' })
      .addCallback((r) => this.#storeRead && r.observe(this.#storeRead().objects))
    meter
      .createObservableGauge('trustpull_store_writable', { description: '1 when the content store writes, 0 when it serves pass-through (disk full, read-only)' })
      .addCallback((r) => this.#storeRead && r.observe(this.#storeRead().writable ? 1 : 0))
    meter.createObservableGauge('trustpull_redis_up', { description: '1 when the shared Redis cache answers, 0 when it does not (absent without Redis)' }).addCallback((result) => {
      if (this.#redisUp !== undefined) result.observe(this.#redisUp)
    })

    startProcessMetrics()
    const build = { version: VERSION, revision: process.env.TRUSTPULL_REVISION || 'unknown', node: process.version }
    meter
      .createObservableGauge('trustpull_build_info', { description: 'Always 1; the labels say which build is running (version, revision, node)' })
      .addCallback((result) => result.observe(1, build))

    // Deprecated (process_* / nodejs_* are the standard names). The process itself (what a soak watches): heap, resident memory, open fds, event-loop lag.
    meter
      .createObservableGauge('trustpull_process_heap_used_bytes', { unit: 'By', description: 'V8 heap in use' })
      .addCallback((result) => result.observe(process.memoryUsage().heapUsed))
    meter
      .createObservableGauge('trustpull_process_resident_memory_bytes', { unit: 'By', description: 'Resident set size' })
      .addCallback((result) => result.observe(process.memoryUsage.rss()))
    if (existsSync('/proc/self/fd')) {
      meter
        .createObservableGauge('trustpull_process_open_fds', { description: 'Open file descriptors (sockets included)' })
        .addCallback((result) => result.observe(readdirSync('/proc/self/fd').length - 1)) // less the one reading the directory
    }
    this.#loopDelay = monitorEventLoopDelay({ resolution: LAG_RESOLUTION_MS })
    this.#loopDelay.enable()
    const lagOf = (ns: number) => Math.max(0, ns / 1e9 - LAG_RESOLUTION_MS / 1000)
    const current = () => ({ p99: lagOf(this.#loopDelay.percentile(99)), max: lagOf(this.#loopDelay.max) })
    this.#lagWindow = setInterval(() => {
      this.#lag = current()
      this.#loopDelay.reset()
    }, LAG_WINDOW_MS).unref()
    const lag = () => this.#lag ?? current()
    meter
      .createObservableGauge('trustpull_process_event_loop_lag_p99_seconds', { unit: 's', description: `Event-loop lag, 99th percentile over the last ${LAG_WINDOW_MS / 1000} s` })
      .addCallback((result) => result.observe(lag().p99))
    meter
      .createObservableGauge('trustpull_process_event_loop_lag_max_seconds', { unit: 's', description: `Event-loop lag, maximum over the last ${LAG_WINDOW_MS / 1000} s` })
      .addCallback((result) => result.observe(lag().max))

    // Prometheus' own names for this (prometheus_config_last_reload_*), so stock alerts carry over.
    meter
      .createObservableGauge('trustpull_config_last_reload_successful', {
        description: '1 when the last reload was applied, 0 when it was refused (the previous configuration stays in force)',
      })
      .addCallback((result) => result.observe(this.#reload.ok))
    meter
      .createObservableGauge('trustpull_config_last_reload_success_timestamp_seconds', {
        unit: 's',
        description: 'When the configuration in force was loaded (start-up or the last successful reload)',
      })
      .addCallback((result) => result.observe(this.#reload.at))
  }

  /** A reload (signal or file change) was applied (true) or refused, keeping the old configuration (false). */
  recordReload(ok: boolean): void {
    this.#reload.ok = ok ? 1 : 0
    if (ok) this.#reload.at = Date.now() / 1000
  }

  /** What the content store holds now (read at each scrape). */
  observeStore(read: () => StoreReading): void {
    this.#storeRead = read
  }

  setRedisUp(up: boolean): void {
    this.#redisUp = up ? 1 : 0
  }

  /** The Prometheus text exposition of every metric. */
  async prometheus(): Promise<string> {
    const { resourceMetrics } = await this.#reader.collect()
    return this.#serializer.serialize(resourceMetrics) + (await processMetricsText())
  }

  async shutdown(): Promise<void> {
    clearInterval(this.#lagWindow)
    this.#loopDelay.disable()
    await this.#provider.shutdown()
  }
}

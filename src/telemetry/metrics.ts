// Metrics through OpenTelemetry, read out in Prometheus text format for /metrics. Names are the
// contract of deploy/grafana and the README: change them there too.
import { type Attributes, type Counter, type Histogram, type Meter, type UpDownCounter } from '@opentelemetry/api'
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { MeterProvider } from '@opentelemetry/sdk-metrics'

const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class Metrics {
  readonly #provider: MeterProvider
  readonly #reader: PrometheusExporter
  readonly #serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
  readonly verdicts: Counter
  readonly verificationDuration: Histogram
  readonly cacheRequests: Counter
  readonly upstreamDuration: Histogram
  readonly bytesServed: Counter
  readonly inFlight: UpDownCounter
  readonly httpRequests: Counter
  #redisUp: number | undefined

  constructor() {
    this.#reader = new PrometheusExporter({ preventServerStart: true })
    this.#provider = new MeterProvider({ readers: [this.#reader], resource: resourceFromAttributes({ 'service.name': 'trustpull' }) })
    const meter: Meter = this.#provider.getMeter('trustpull')
    this.verdicts = meter.createCounter('trustpull_verdicts', { description: 'Verdicts reached, by result, policy and upstream' })
    this.verificationDuration = meter.createHistogram('trustpull_verification_duration_seconds', {
      unit: 's',
      description: 'Time to discover and verify signatures for one digest (cache misses only)',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    })
    this.cacheRequests = meter.createCounter('trustpull_cache_requests', { description: 'Cache look-ups by tier and result (hit, miss, error)' })
    this.upstreamDuration = meter.createHistogram('trustpull_upstream_request_duration_seconds', {
      unit: 's',
      description: 'Upstream registry requests by upstream and status',
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    })
    this.bytesServed = meter.createCounter('trustpull_bytes_served', { unit: 'By', description: 'Bytes served to clients, by kind (manifest, blob)' })
    this.inFlight = meter.createUpDownCounter('trustpull_http_requests_in_flight', { description: 'Requests being served' })
    this.httpRequests = meter.createCounter('trustpull_http_requests', { description: 'Requests answered, by method, route and status' })
    meter
      .createObservableGauge('trustpull_redis_up', { description: '1 when the shared Redis cache answers, 0 when it does not (absent without Redis)' })
      .addCallback((result) => {
        if (this.#redisUp !== undefined) result.observe(this.#redisUp)
      })
  }

  setRedisUp(up: boolean): void {
    this.#redisUp = up ? 1 : 0
  }

  /** The Prometheus text exposition of every metric. */
  async prometheus(): Promise<string> {
    const { resourceMetrics } = await this.#reader.collect()
    return this.#serializer.serialize(resourceMetrics)
  }

  async shutdown(): Promise<void> {
    await this.#provider.shutdown()
  }
}

/** The label sets used across the code, so dashboards and alerts see the same names. */
export type VerdictLabels = Attributes & { result: string; policy: string; upstream: string }

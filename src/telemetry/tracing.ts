// Traces through OpenTelemetry, exported over OTLP/HTTP when `telemetry.otlp.endpoint` is set or
// the standard variables say where (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT;
// also OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER[_ARG], OTEL_SDK_DISABLED).
// Off by default, and then `span()` calls its function directly: no span objects, no context
// switching, nothing on the hot path. A variable that cannot be read stops start-up naming it.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace'
import { ConfigError } from '../errors.ts'

let tracer: Tracer | undefined
let provider: TracerProvider | undefined

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces (config `telemetry.otlp.endpoint`). */
  endpoint?: string
  /** For tests: an exporter that sees every span as it ends (e.g. InMemorySpanExporter). */
  exporter?: SpanExporter
  /** Where the OTEL_* variables are read (default: process.env). */
  env?: NodeJS.ProcessEnv
}

export interface TracingSettings {
  /** Where spans are sent; undefined: tracing stays off. */
  url?: string
  resource: Record<string, string>
  sampler: Sampler
}

/** What the config and the standard OTEL_* variables ask for; the config's endpoint wins over the variables. */
export function tracingSettings(endpoint: string | undefined, env: NodeJS.ProcessEnv): TracingSettings {
  const value = (name: string) => (env[name] ?? '').trim() || undefined
  const disabled = value('OTEL_SDK_DISABLED')?.toLowerCase() === 'true'
  const base = value('OTEL_EXPORTER_OTLP_ENDPOINT')
  const url = disabled ? undefined : (endpoint ?? value('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT') ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined))
  if (url !== undefined && !/^https?:\/\/[^/]/.test(url))
    throw new ConfigError(`${endpoint ? 'telemetry.otlp.endpoint' : 'OTEL_EXPORTER_OTLP_ENDPOINT'}: "${url}" is not an http(s) URL`)
  const resource: Record<string, string> = {}
  for (const pair of (value('OTEL_RESOURCE_ATTRIBUTES') ?? '').split(',')) {
    if (!pair.trim()) continue
    const eq = pair.indexOf('=')
    if (eq < 1) throw new ConfigError(`OTEL_RESOURCE_ATTRIBUTES: "${pair.trim()}" is not key=value`)
    try {
      resource[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim())
    } catch {
      throw new ConfigError(`OTEL_RESOURCE_ATTRIBUTES: "${pair.trim()}" has a bad percent-encoding`)
    }
  }
  resource['service.name'] = value('OTEL_SERVICE_NAME') ?? resource['service.name'] ?? 'trustpull'
  return { url, resource, sampler: samplerFrom(value('OTEL_TRACES_SAMPLER'), value('OTEL_TRACES_SAMPLER_ARG')) }
}

function samplerFrom(name = 'parentbased_always_on', arg: string | undefined): Sampler {
  const ratio = () => {
    const r = arg === undefined ? 1 : Number(arg)
    if (!Number.isFinite(r) || r < 0 || r > 1) throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG: "${arg}" is not a ratio between 0 and 1`)
    return new TraceIdRatioBasedSampler(r)
  }
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler()
    case 'always_off':
      return new AlwaysOffSampler()
    case 'traceidratio':
      return ratio()
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() })
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() })
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio() })
    default:
      throw new ConfigError(
        `OTEL_TRACES_SAMPLER: "${name}" is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio`,
      )
  }
}

export function tracingEnabled(): boolean {
  return tracer !== undefined
}

export function setupTracing(options: TracingOptions): void {
  const settings = tracingSettings(options.endpoint, options.env ?? process.env)
  if (!settings.url && !options.exporter) return
  const processor = options.exporter ? new SimpleSpanProcessor({ exporter: options.exporter }) : new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: settings.url }) })
  provider = new TracerProvider({ resource: resourceFromAttributes(settings.resource), sampler: settings.sampler, spanProcessors: [processor] })
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  tracer = provider.getTracer('trustpull')
}

export async function shutdownTracing(): Promise<void> {
  const p = provider
  provider = undefined
  tracer = undefined
  if (!p) return
  await p.shutdown()
  context.disable()
  propagation.disable()
}

/** Runs `fn` inside a child span of the current one (or directly, when tracing is off). */
export async function span<T>(name: string, attributes: Attributes, fn: (span?: Span) => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  if (!tracer) return fn()
  return tracer.startActiveSpan(name, { attributes, kind }, async (s) => {
    try {
      return await fn(s)
    } catch (err) {
      recordFailure(s, err)
      throw err
    } finally {
      s.end()
    }
  })
}

/** `span()` for synchronous work (signature verification is CPU only); direct call when tracing is off. */
export function spanSync<T>(name: string, attributes: Attributes, fn: (span?: Span) => T): T {
  if (!tracer) return fn()
  return tracer.startActiveSpan(name, { attributes }, (s) => {
    try {
      return fn(s)
    } catch (err) {
      recordFailure(s, err)
      throw err
    } finally {
      s.end()
    }
  })
}

/** Marks the span as failed with `err` (the caller rethrows it). */
function recordFailure(s: Span, err: unknown): void {
  s.recordException(err as Error)
  s.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message })
}

/** The server span of one request, continuing the caller's trace from its `traceparent`. */
export async function requestSpan<T>(name: string, headers: Record<string, string>, attributes: Attributes, fn: (span?: Span) => Promise<T>): Promise<T> {
  if (!tracer) return fn()
  const parent = propagation.extract(ROOT_CONTEXT, headers)
  return context.with(parent, () => span(name, attributes, fn, SpanKind.SERVER))
}

/** Trace and span id of the current span, as log fields (OpenTelemetry's names); empty when tracing is off. */
export function traceFields(): { trace_id?: string; span_id?: string } {
  if (!tracer) return {}
  const active = trace.getActiveSpan()?.spanContext()
  return active ? { trace_id: active.traceId, span_id: active.spanId } : {}
}

// Traces through OpenTelemetry, exported over OTLP/HTTP when `telemetry.otlp.endpoint` is set.
// Off by default, and then `span()` calls its function directly: no span objects, no context
// switching, nothing on the hot path.
import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { resourceFromAttributes } from '@opentelemetry/resources'
import { BatchSpanProcessor, SimpleSpanProcessor, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace'

let tracer: Tracer | undefined
let provider: TracerProvider | undefined

export interface TracingOptions {
  /** OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces */
  endpoint?: string
  /** For tests: an exporter that sees every span as it ends (e.g. InMemorySpanExporter). */
  exporter?: SpanExporter
}

export function tracingEnabled(): boolean {
  return tracer !== undefined
}

export function setupTracing(options: TracingOptions): void {
  if (!options.endpoint && !options.exporter) return
  const processor = options.exporter
    ? new SimpleSpanProcessor({ exporter: options.exporter })
    : new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: options.endpoint }) })
  provider = new TracerProvider({ resource: resourceFromAttributes({ 'service.name': 'trustpull' }), spanProcessors: [processor] })
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


// createApp(deps): the distribution pull API in front of the configured upstreams.
import { Hono, type Context } from 'hono'
import { STATUS_CODES, type ServerResponse } from 'node:http'
import { RegistryError } from '../errors.ts'
import { Header } from '../oci/media-types.ts'
import type { ContentIndex } from '../pull/content-index.ts'
import type { ManifestService } from '../pull/manifests.ts'
import type { ReferrerService } from '../pull/referrers.ts'
import type { UpstreamRouter } from '../upstream/router.ts'
import type { Logger } from '../telemetry/logger.ts'
import type { Metrics } from '../telemetry/metrics.ts'
import { requestSpan, tracingEnabled } from '../telemetry/tracing.ts'
import { serveBlob } from './blobs.ts'
import { serveManifest } from './manifests.ts'
import { serveReferrers } from './referrers.ts'
import { namespaceParam, rawPath, remoteAddress } from './request.ts'
import type { ClientAuthenticator } from './client-auth.ts'
import { rateLimit } from './rate-limit.ts'
import { parseRoute, type Route } from './route.ts'
import { serveTags } from './tags.ts'

export interface AppDeps {
  router: UpstreamRouter
  manifests: ManifestService
  referrers: ReferrerService
  contentIndex: ContentIndex
  requireAllowedManifest: boolean
  /** The largest signature-artifact document served (limits.signatureLayerBytes). */
  artifactBlobBytes: number
  logger: Logger
  metrics: Metrics
  clients: ClientAuthenticator
  clientRate: { requestsPerSecond: number; burst: number }
  /** Answer /metrics on this port (false when it has a port of its own, or is off). */
  serveMetrics: boolean
  /** Readiness beyond "the process answers": config and trust roots loaded, an upstream reachable. */
  ready?: () => Promise<{ ready: boolean; checks: Record<string, unknown> }>
}

const READ_METHODS = new Set(['GET', 'HEAD'])

declare module 'hono' {
  interface ContextVariableMap {
    /** Which distribution endpoint answered: the `route` label of request metrics. */
    route: Route['kind'] | 'health' | 'metrics' | 'admin' | 'unknown'
  }
}

export function createApp(deps: AppDeps): Hono {
  const app = new Hono()

  const { metrics } = deps
  app.use('*', async (c, next) => {
    metrics.inFlight.add(1)
    try {
      if (tracingEnabled()) {
        await requestSpan(c.req.method, headersOf(c.req.raw.headers), { 'http.request.method': c.req.method, 'url.path': c.req.path.slice(0, 1024) }, async (s) => {
          await next()
          // Named by endpoint, not by path: span names must stay few (digests would make each unique).
          const route = c.get('route') ?? 'unknown'
          s?.updateName(`${c.req.method} ${route}`)
          s?.setAttributes({ 'http.response.status_code': c.res.status, 'trustpull.route': route })
        })
      } else {
        await next()
      }
    } finally {
      metrics.inFlight.add(-1)
      const route = c.get('route') ?? 'unknown'
      metrics.httpRequests.add(1, { method: c.req.method, route, status: String(c.res.status) })
      const length = Number(c.res.headers.get('content-length') ?? 0)
      if (length > 0 && c.req.method === 'GET' && route === 'manifest' && c.res.status === 200) metrics.bytesServed.add(length, { kind: route })
    }
  })

  // Access log at debug level: off the hot path unless asked for; inside the request span, so it carries the trace id.
  if (deps.logger.isLevelEnabled('debug')) {
    app.use('*', async (c, next) => {
      const started = performance.now()
      await next()
      deps.logger.debug({ method: c.req.method, url: c.req.url.replace(/^https?:\/\/[^/]+/, ''), status: c.res.status, ms: Math.round(performance.now() - started) }, 'request')
    })
  }

  if (deps.serveMetrics) {
    app.get('/metrics', async (c) => {
      c.set('route', 'metrics')
      return c.text(await metrics.prometheus(), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
    })
  }
  app.get('/healthz', (c) => {
    c.set('route', 'health')
    return c.json({ status: 'ok' })
  })
  app.get('/readyz', async (c) => {
    c.set('route', 'health')
    const state = deps.ready ? await deps.ready() : { ready: true, checks: {} }
    return c.json(state, state.ready ? 200 : 503)
  })

  const blobOptions = {
    contentIndex: deps.contentIndex,
    requireAllowedManifest: deps.requireAllowedManifest,
    artifactBlobBytes: deps.artifactBlobBytes,
    onDigestMismatch: (info: object) => deps.logger.error(info, 'upstream blob does not match its digest; connection aborted'),
    onSent: (bytes: number, error: Error | null | undefined, source: 'store' | 'upstream' = 'upstream') => {
      metrics.bytesServed.add(bytes, { kind: source === 'store' ? 'blob_from_store' : 'blob' })
      if (error) deps.logger.debug({ bytes, err: error.message }, 'blob stream cut short')
    },
  }

  // One audit line per blob sent, saying where its bytes came from. Names and digests only, so
  // (like the verdict lines) it skips the logger's wildcard redaction.
  const auditLog = deps.logger.child({}, { redact: { paths: [] } })
  const auditedBlob = (c: Context, image: string, digest: string) => ({
    ...blobOptions,
    onSent: (bytes: number, error: Error | null | undefined, source?: 'store' | 'upstream') => {
      blobOptions.onSent(bytes, error, source)
      // Signature documents (served whole through getBlobBytes) cannot tell store from upstream: no source then.
      auditLog.info({ audit: 'blob', image, digest, client: c.get('client'), address: remoteAddress(c), source, bytes, complete: !error }, 'blob served')
    },
  })

  app.use('/v2/*', deps.clients.middleware, rateLimit(deps.clientRate))

  app.all('/v2/*', async (c) => {
    c.header(Header.apiVersion, 'registry/2.0')
    const route = parseRoute(rawPath(c))
    if (!route) throw new RegistryError('NOT_FOUND', 'no such endpoint')
    c.set('route', route.kind)
    if (route.kind === 'upload' || !READ_METHODS.has(c.req.method)) {
      throw new RegistryError('UNSUPPORTED', `${c.req.method} is not supported: trustpull is a read-only pull-through proxy`)
    }
    if (route.kind === 'base') return c.json({})
    const target = deps.router.resolve(namespaceParam(c), route.name)
    const client = c.get('client')
    const allowed = deps.clients.allowedUpstreams(client)
    if (allowed && !allowed.has(target.upstream.config.name)) {
      throw new RegistryError('DENIED', `client ${client} may not pull from ${target.upstream.config.name}`)
    }
    switch (route.kind) {
      case 'manifest':
        return serveManifest(c, deps.manifests, target, route.reference)
      case 'blob':
        return serveBlob(c, auditedBlob(c, `${target.upstream.config.name}/${target.repository}`, route.digest), target, route.digest)
      case 'tags':
        if (c.req.method !== 'GET') throw new RegistryError('UNSUPPORTED', 'tags/list answers GET only')
        return serveTags(c, target, route.name)
      case 'referrers':
        if (c.req.method !== 'GET') throw new RegistryError('UNSUPPORTED', 'referrers answers GET only')
        return serveReferrers(c, deps.referrers, target, route.digest)
    }
  })

  app.notFound((c) => errorResponse(c, new RegistryError('NOT_FOUND', 'no such endpoint')))
  app.onError((err, c) => {
    if (err instanceof RegistryError) {
      if (err.status >= 500) deps.logger.warn({ code: err.code, path: c.req.path, err: err.message }, 'upstream failure')
      return errorResponse(c, err)
    }
    deps.logger.error({ err, path: c.req.path }, 'unexpected error')
    return errorResponse(c, new RegistryError('INTERNAL'))
  })
  return app
}

function errorResponse(c: Context, err: RegistryError): Response {
  const body = JSON.stringify(err.body())
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    [Header.apiVersion]: 'registry/2.0',
    ...err.headers,
  }
  // HEAD answers carry no body, and containerd 1.6 reports a refused HEAD by its status line alone
  // ("... failed with status code [manifests 1]: 403 Forbidden"), never GETting the body: put the
  // code and message in the reason phrase too, so the node's pull error says why.
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing
  if (outgoing && !outgoing.headersSent) outgoing.statusMessage = reasonPhrase(err)
  return new Response(c.req.method === 'HEAD' ? null : body, { status: err.status, headers })
}

/** `Forbidden (DENIED: <message>)`, limited to the characters a status line may carry. */
function reasonPhrase(err: RegistryError): string {
  const text = `${STATUS_CODES[err.status] ?? 'Error'} (${err.code}: ${err.message.replace(/[^\x20-\x7e]+/g, ' ')})`
  return text.length > 400 ? `${text.slice(0, 396)}...)` : text
}

function headersOf(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of ['traceparent', 'tracestate']) {
    const v = headers.get(name)
    if (v) out[name] = v
  }
  return out
}

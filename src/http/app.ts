// createApp(deps): the distribution pull API in front of the configured upstreams.
import { Hono, type Context } from 'hono'
import { RegistryError } from '../errors.ts'
import { Header } from '../oci/media-types.ts'
import type { ContentIndex } from '../proxy/content-index.ts'
import type { ManifestService } from '../proxy/manifests.ts'
import type { UpstreamRouter } from '../upstream/router.ts'
import type { Logger } from '../telemetry/logger.ts'
import { serveBlob } from './blobs.ts'
import { serveManifest } from './manifests.ts'
import { serveReferrers } from './referrers.ts'
import { namespaceParam, rawPath } from './request.ts'
import { parseRoute } from './route.ts'
import { serveTags } from './tags.ts'

export interface AppDeps {
  router: UpstreamRouter
  manifests: ManifestService
  contentIndex: ContentIndex
  requireAllowedManifest: boolean
  logger: Logger
  /** Readiness beyond "the process answers": config and trust roots loaded, an upstream reachable. */
  ready?: () => Promise<{ ready: boolean; checks: Record<string, unknown> }>
}

const READ_METHODS = new Set(['GET', 'HEAD'])

export function createApp(deps: AppDeps): Hono {
  const app = new Hono()

  // Access log at debug level: off the hot path unless asked for.
  if (deps.logger.isLevelEnabled('debug')) {
    app.use('*', async (c, next) => {
      const started = performance.now()
      await next()
      deps.logger.debug({ method: c.req.method, url: c.req.url.replace(/^https?:\/\/[^/]+/, ''), status: c.res.status, ms: Math.round(performance.now() - started) }, 'request')
    })
  }

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const state = deps.ready ? await deps.ready() : { ready: true, checks: {} }
    return c.json(state, state.ready ? 200 : 503)
  })

  app.all('/v2/*', async (c) => {
    c.header(Header.apiVersion, 'registry/2.0')
    const route = parseRoute(rawPath(c))
    if (!route) throw new RegistryError('NOT_FOUND', 'no such endpoint')
    if (route.kind === 'upload' || !READ_METHODS.has(c.req.method)) {
      throw new RegistryError('UNSUPPORTED', `${c.req.method} is not supported: trustpull is a read-only pull-through proxy`)
    }
    if (route.kind === 'base') return c.json({})
    const target = deps.router.resolve(namespaceParam(c), route.name)
    switch (route.kind) {
      case 'manifest':
        return serveManifest(c, deps.manifests, target, route.reference)
      case 'blob':
        return serveBlob(c, { contentIndex: deps.contentIndex, requireAllowedManifest: deps.requireAllowedManifest, onDigestMismatch: (info) => deps.logger.error(info, 'upstream blob does not match its digest; connection aborted') }, target, route.digest)
      case 'tags':
        if (c.req.method !== 'GET') throw new RegistryError('UNSUPPORTED', 'tags/list answers GET only')
        return serveTags(c, target, route.name)
      case 'referrers':
        if (c.req.method !== 'GET') throw new RegistryError('UNSUPPORTED', 'referrers answers GET only')
        return serveReferrers(c, target, route.digest)
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
  // HEAD answers carry no body, but keep the status: containerd GETs after a 403 to read the message.
  return new Response(c.req.method === 'HEAD' ? null : body, { status: err.status, headers })
}

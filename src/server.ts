// The proxy: the verification core behind the HTTP app (client access, readiness, reload of what
// may change while running), listening on HTTP or HTTPS, and a graceful shutdown. Everything that
// decides lives in core.ts; this module only serves it.
import { serve, type ServerType } from '@hono/node-server'
import { readFileSync } from 'node:fs'
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { splitHostPort } from './config/listen.ts'
import type { Config } from './config/schema.ts'
import { adminAccess } from './admin/access.ts'
import { mountAdmin, openAdmin, type AdminState } from './admin/index.ts'
import { trustRootsOf } from './admin/views.ts'
import { buildCore, type Core, type CoreOptions } from './core.ts'
import { createApp } from './http/app.ts'
import { createClientAuthenticator, type ClientAuthenticator } from './http/client-auth.ts'
import { openContentStore } from './store/open.ts'
import { createLogger } from './telemetry/logger.ts'
import { startMetricsServer } from './telemetry/metrics-server.ts'
import { startAdmissionListener, type AdmissionListener } from './admission/listener.ts'
import { createWebhookApp } from './admission/webhook.ts'
import { ConfigError } from './errors.ts'

export interface RuntimeOptions extends CoreOptions {
  /** Verdict history, denylist, /api/v1 and /ui/ (the proxy only; verify and copy have none). */
  admin?: boolean
}

/** The core plus the HTTP app that serves it. */
export interface Runtime extends Core {
  app: ReturnType<typeof createApp>
  /** The operator surface (history, denylist), when the runtime serves it. */
  admin?: AdminState
  /** Applies new policies, trust roots and client credentials to new requests; throws (keeping the old ones) when they are invalid. */
  reload(config: Config): Promise<void>
}

export async function buildRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  const logger = options.logger ?? createLogger(config.log.level)
  const admin = options.admin ? await openAdmin(config, logger) : undefined
  // The history notes the trust roots of the policies a verdict was made under; the core holding
  // them is built next, and no verdict is made before it is.
  let policiesInForce = (): ReturnType<Core['policySet']> => {
    throw new Error('no verdict before the core is built')
  }
  const core = await buildCore(config, {
    ...options,
    logger,
    ...(admin && {
      gateHooks: {
        screen: (digest, signers) => admin.denylist.screen(digest, signers),
        denyLink: admin.link,
        onVerdict: (verdict, { cached, durationMs, client, reference }) =>
          admin.history.record({
            verdict,
            reference,
            client,
            cached,
            durationMs,
            trustRoots: trustRootsOf(
              policiesInForce(),
              verdict.policies.map((p) => p.name),
            ),
          }),
      },
    }),
  })
  policiesInForce = core.policySet
  const { contentStore, store } = core

  // Replaced whole on reload (a rotated htpasswd or token file); requests read the one in force.
  let clientAuth = createClientAuthenticator(config.clients)
  const clientAccess: ClientAuthenticator = {
    get enabled() {
      return clientAuth.enabled
    },
    allowedUpstreams: (client) => clientAuth.allowedUpstreams(client),
    middleware: (c, next) => clientAuth.middleware(c, next),
  }

  let lastReadiness: { at: number; reachable: string[] } | undefined
  const app = createApp({
    router: core.router,
    manifests: core.manifests,
    referrers: core.referrers,
    contentIndex: core.contentIndex,
    requireAllowedManifest: config.blobs.requireAllowedManifest,
    artifactBlobBytes: config.limits.signatureLayerBytes,
    logger,
    metrics: core.metrics,
    clients: clientAccess,
    clientRate: { requestsPerSecond: config.clients.requestsPerSecond, burst: config.clients.burst },
    serveMetrics: config.telemetry.metrics.enabled && !config.telemetry.metrics.listen,
    ready: () => ready(),
  })
  const ready = async () => {
    if (!lastReadiness || Date.now() - lastReadiness.at > 10_000) {
      const answers = await Promise.all(core.upstreamClients.map(async (c) => ((await c.ping()) ? c.name : undefined)))
      lastReadiness = { at: Date.now(), reachable: answers.filter((n): n is string => n !== undefined) }
    }
    const redis = store.redisConfigured ? (store.redisUp ? 'up' : 'down') : 'not configured'
    const stored = contentStore ? (contentStore.unwritable ? `read-only, serving pass-through (${contentStore.unwritable})` : 'writable') : 'off'
    return {
      // With a store, a node can pull what it holds while every upstream is down.
      ready: lastReadiness.reachable.length > 0 || (contentStore !== undefined && contentStore.objects > 0),
      checks: { config: 'loaded', policies: core.policySet().policies.length, upstreamsReachable: lastReadiness.reachable, redis, store: stored },
    }
  }
  let admins = new Set(config.clients.admins)
  if (admin) {
    mountAdmin(app, {
      history: admin.history,
      denylist: admin.denylist,
      policySet: core.policySet,
      trustRoots: core.trustRoots,
      health: ready,
      access: adminAccess(clientAccess, () => admins),
    })
  }
  return {
    ...core,
    app,
    admin,
    async reload(next: Config) {
      const nextClients = createClientAuthenticator(next.clients)
      await core.reloadPolicies(next)
      clientAuth = nextClients
      admins = new Set(next.clients.admins)
      const restartNeeded = (Object.keys(next) as (keyof Config)[]).filter((k) => !RELOADABLE_KEYS.includes(k) && JSON.stringify(next[k]) !== JSON.stringify(config[k]))
      if (restartNeeded.length) logger.warn({ keys: restartNeeded }, 'these config changes take effect only after a restart')
      const policySet = core.policySet()
      logger.info({ policies: policySet.policies.length, fingerprint: policySet.fingerprint }, 'policies reloaded')
    },
    async close() {
      await Promise.allSettled([core.close(), admin?.close()])
    },
  }
}

/** What a reload replaces: policies, the trust roots they name, client credentials, TLS files. Everything else needs a restart. */
const RELOADABLE_KEYS: (keyof Config)[] = ['policies', 'policyDirs', 'noMatchPolicy', 'trustRoots', 'clients', 'tls', 'reload']

export interface RunningServer {
  runtime: Runtime
  server: ServerType
  /** e.g. http://127.0.0.1:5000 */
  url: string
  /** Where /metrics is served when it has an address of its own. */
  metricsUrl?: string
  /** The admission webhook's HTTPS address, when `admission` is configured. */
  admissionUrl?: string
  /** Re-reads the TLS certificate, key and client CA (a cert-manager rotation); throws, keeping the old ones, when they do not load. */
  reloadTls(config: Config): void
  /** Graceful: stops accepting, lets in-flight requests finish (cut off after `deadlineMs`), then releases everything. */
  close(deadlineMs?: number): Promise<void>
}

export async function startServer(config: Config, options: RuntimeOptions = {}): Promise<RunningServer> {
  const contentStore = options.contentStore ?? (config.storage.enabled ? await openContentStore(config, options.logger ?? createLogger(config.log.level)) : undefined)
  const runtime = await buildRuntime(config, { admin: true, ...options, contentStore })
  const admission = config.admission ? await startAdmission(config, runtime) : undefined
  const metricsServer = config.telemetry.metrics.enabled && config.telemetry.metrics.listen ? await startMetricsServer(config.telemetry.metrics.listen, runtime.metrics) : undefined
  const { host, port } = splitHostPort(config.listen)
  const tls = config.tls
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve(
      {
        fetch: runtime.app.fetch,
        hostname: host,
        port,
        ...(tls
          ? {
              createServer: createHttpsServer,
              serverOptions: secureContextOptions(tls),
            }
          : {}),
      },
      () => resolve(s),
    )
    s.once('error', reject)
  })
  // Slow or stalled clients must not hold sockets forever.
  const httpServer = server as HttpServer
  httpServer.headersTimeout = config.timeouts.clientHeaders
  httpServer.requestTimeout = config.timeouts.clientRequest
  // Those count from a request's first byte: a connection that never sends one would stay open
  // (an fd each, for whoever opens them). Close it once headersTimeout has passed in silence.
  httpServer.on('connection', (socket: Socket) => {
    setTimeout(() => socket.bytesRead === 0 && socket.destroy(), httpServer.headersTimeout).unref()
  })
  // Requests in flight per connection, counted until their response closes: what a graceful close
  // waits for. Node's closeIdleConnections() took a connection still streaming a blob written
  // straight to the response (a fill) for idle, and cut it.
  const connections = new Set<Socket>()
  const inFlight = new Map<Socket, number>()
  // The socket requests arrive on: the TLS one over HTTPS, the TCP one otherwise.
  httpServer.on(tls ? 'secureConnection' : 'connection', (socket: Socket) => {
    connections.add(socket)
    socket.once('close', () => connections.delete(socket))
  })
  httpServer.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1
      if (left > 0) inFlight.set(socket, left)
      else inFlight.delete(socket)
    })
  })
  const closeIdle = () => {
    for (const socket of connections) if (!inFlight.has(socket)) socket.destroy()
  }
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`
  return {
    runtime,
    server,
    url,
    metricsUrl: metricsServer?.url,
    admissionUrl: admission?.url,
    reloadTls(next: Config) {
      if (admission && next.admission) admission.reloadTls(next.admission.tls)
      if (!tls || !next.tls) return
      ;(server as HttpsServer).setSecureContext(secureContextOptions(next.tls))
    },
    async close(deadlineMs = 30_000) {
      // Stop accepting; in-flight requests (blob downloads too) finish until the deadline.
      const deadline = setTimeout(() => httpServer.closeAllConnections(), deadlineMs)
      deadline.unref()
      // close() drops the connections idle at that moment only; keep-alive clients (containerd,
      // skopeo) would hold theirs open after their last answer until the keep-alive timeout.
      const sweep = setInterval(closeIdle, 100)
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        metricsServer ? new Promise<void>((resolve) => metricsServer.server.close(() => resolve())) : undefined,
        admission?.close(deadlineMs),
      ])
      clearTimeout(deadline)
      clearInterval(sweep)
      await runtime.close()
    },
  }
}

/** The admission webhook beside the registry, deciding through the runtime's own gate and caches. */
async function startAdmission(config: Config, runtime: Runtime): Promise<AdmissionListener> {
  const admission = config.admission!
  const { host, port } = splitHostPort(admission.listen)
  const app = createWebhookApp({
    router: runtime.router,
    manifests: runtime.manifests,
    policySet: runtime.policySet,
    logger: runtime.logger.child({ component: 'admission' }),
    metrics: runtime.metrics,
    budgetMs: admission.budget,
    maxBodyBytes: admission.maxBodyBytes,
  })
  try {
    return await startAdmissionListener(app, { host, port, tls: admission.tls, headersTimeoutMs: config.timeouts.clientHeaders, requestTimeoutMs: config.timeouts.clientRequest })
  } catch (err) {
    await runtime.close()
    throw new ConfigError(`admission: cannot listen on ${admission.listen} with admission.tls (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
}

function secureContextOptions(tls: NonNullable<Config['tls']>) {
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    // mTLS: a client without a certificate from clientCA never completes the handshake.
    ...(tls.clientCA ? { ca: readFileSync(tls.clientCA), requestCert: true, rejectUnauthorized: true } : {}),
  }
}

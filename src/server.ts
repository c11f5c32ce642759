// Start-up: config → dependencies → serve; graceful shutdown.
import { serve, type ServerType } from '@hono/node-server'
import { readFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import type { Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from './config/schema.ts'
import { createApp } from './http/app.ts'
import { StoreContentIndex, type ContentIndex } from './proxy/content-index.ts'
import { TieredStore } from './cache/tiered-store.ts'
import { allowAllGate, type ManifestGate } from './proxy/gate.ts'
import { ManifestCache } from './proxy/manifest-cache.ts'
import { ManifestService } from './proxy/manifests.ts'
import { createLogger, type Logger } from './telemetry/logger.ts'
import { createRegistryClient, type UpstreamRegistryClient } from './upstream/client.ts'
import { UpstreamRouter } from './upstream/router.ts'

export interface RuntimeOptions {
  logger?: Logger
  gate?: ManifestGate
}

export interface Runtime {
  config: Config
  logger: Logger
  router: UpstreamRouter
  app: ReturnType<typeof createApp>
  close(): Promise<void>
}

export async function buildRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  const logger = options.logger ?? createLogger(config.log.level)
  const clients: UpstreamRegistryClient[] = config.upstreams.map((u) =>
    createRegistryClient(u, { timeouts: config.timeouts, limits: config.limits }),
  )
  const router = new UpstreamRouter(config.upstreams.map((u, i) => ({ config: u, client: clients[i]! })))
  const store = new TieredStore({
    memoryEntries: 200_000,
    redisUrl: config.cache.url,
    onRedisStateChange: (up, error) =>
      up ? logger.info('redis cache connected') : logger.warn({ error }, 'redis cache unavailable: serving from the in-process tier'),
  })
  await store.connected()
  const contentIndex: ContentIndex = new StoreContentIndex(store, config.cache.allowTTL)
  const manifests = new ManifestService({
    gate: options.gate ?? allowAllGate,
    contentIndex,
    cache: new ManifestCache(config.cache.manifestBytes),
    tagTTL: config.cache.tagTTL,
  })
  const app = createApp({ router, manifests, contentIndex, requireAllowedManifest: config.blobs.requireAllowedManifest, logger })
  return {
    config,
    logger,
    router,
    app,
    async close() {
      await Promise.allSettled([...clients.map((c) => c.close()), store.close()])
    },
  }
}

export interface RunningServer {
  runtime: Runtime
  server: ServerType
  /** e.g. http://127.0.0.1:5000 */
  url: string
  close(): Promise<void>
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':')
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) }
}

export async function startServer(config: Config, options: RuntimeOptions = {}): Promise<RunningServer> {
  const runtime = await buildRuntime(config, options)
  const { host, port } = splitHostPort(config.listen)
  const tls = config.tls
  const server = await new Promise<ServerType>((resolve, reject) => {
    const s = serve(
      {
        fetch: runtime.app.fetch,
        hostname: host,
        port,
        ...(tls
          ? { createServer: createHttpsServer, serverOptions: { cert: readFileSync(tls.cert), key: readFileSync(tls.key) } }
          : {}),
      },
      () => resolve(s),
    )
    s.once('error', reject)
  })
  // Slow or stalled clients must not hold sockets forever.
  const httpServer = server as HttpServer
  httpServer.headersTimeout = 30_000
  httpServer.requestTimeout = 60_000
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`
  return {
    runtime,
    server,
    url,
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await runtime.close()
    },
  }
}

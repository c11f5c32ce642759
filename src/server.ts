// Start-up: config → trust roots → policies → dependencies → serve; graceful shutdown.
import { serve, type ServerType } from '@hono/node-server'
import { readFileSync } from 'node:fs'
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { TieredStore } from './cache/tiered-store.ts'
import type { Config } from './config/schema.ts'
import { createApp } from './http/app.ts'
import { createClientAuthenticator, type ClientAuthenticator } from './http/client-auth.ts'
import { loadPolicies } from './policy/load.ts'
import type { PolicySet, SignatureLocation } from './policy/types.ts'
import { StoreContentIndex } from './proxy/content-index.ts'
import { ManifestCache } from './proxy/manifest-cache.ts'
import { ManifestService } from './proxy/manifests.ts'
import { PolicyGate } from './proxy/policy-gate.ts'
import { discoverSignatures } from './signatures/discover.ts'
import { createLogger, type Logger } from './telemetry/logger.ts'
import { Metrics } from './telemetry/metrics.ts'
import { span, spanSync } from './telemetry/tracing.ts'
import { createRegistryClient, type UpstreamRegistryClient } from './upstream/client.ts'
import { UpstreamRouter } from './upstream/router.ts'
import type { RegistryClient } from './upstream/types.ts'
import { verifyCandidate } from './verify/candidate.ts'
import { loadTrustRoots } from './verify/trust-root.ts'
import { ContentStore } from './store/content-store.ts'
import { FilesystemDriver } from './store/filesystem.ts'
import { S3Driver } from './store/s3.ts'
import { MirrorClient } from './store/mirror-client.ts'
import { ConfigError } from './config/load.ts'
import type { LoadedTrustRoot } from './verify/types.ts'

export interface RuntimeOptions {
  logger?: Logger
  /** Directory that relative paths in policies are resolved from (the config file's). */
  configDir?: string
  /** A trusted_root.json used instead of the embedded public-good root (the CLI's `--trusted-root`). */
  trustedRoot?: string
  /**
   * Where the signatures of an image are read from instead of the configured upstream named by
   * `location` (`trustpull copy` verifies an OCI archive from the signatures inside it, offline).
   */
  signatureClient?: (location: SignatureLocation, image: { upstream: string; repository: string; digest: string }) => RegistryClient | undefined
  /** The mirror's content store: upstream clients answer from it and fill it (the proxy only; copy and verify go upstream). */
  contentStore?: ContentStore
}

export interface Runtime {
  config: Config
  logger: Logger
  router: UpstreamRouter
  metrics: Metrics
  store: TieredStore
  gate: PolicyGate
  /** The mirror's content store, when the proxy has one. */
  contentStore?: ContentStore
  app: ReturnType<typeof createApp>
  policySet(): PolicySet
  /** Applies new policies and trust roots to new requests; throws (keeping the old ones) when they are invalid. */
  reload(config: Config): Promise<void>
  close(): Promise<void>
}

/** Trust roots and policies: everything a reload replaces. Throws ConfigError on any problem. */
export async function loadPolicyState(config: Config, options: { configDir?: string; trustedRoot?: string; logger: Logger }): Promise<{ policySet: PolicySet; trustRoots: Map<string, LoadedTrustRoot> }> {
  const trustRoots = await loadTrustRoots(config.trustRoots, options.trustedRoot ? { publicGoodFile: options.trustedRoot } : {})
  const { policySet, warnings } = loadPolicies(config, { trustRoots, configDir: options.configDir })
  for (const warning of warnings) options.logger.warn({ warning }, 'policy warning')
  if (policySet.policies.length === 0 && config.noMatchPolicy === 'deny') {
    options.logger.warn('no policies are configured and noMatchPolicy is deny: every image will be refused')
  }
  if (config.noMatchPolicy === 'allow') options.logger.warn('noMatchPolicy is allow: images no policy matches are served unverified')
  return { policySet, trustRoots }
}

export async function buildRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  const logger = options.logger ?? createLogger(config.log.level)
  const metrics = new Metrics()
  let { policySet } = await loadPolicyState(config, { configDir: options.configDir, trustedRoot: options.trustedRoot, logger })

  const clients: UpstreamRegistryClient[] = config.upstreams.map((u) =>
    createRegistryClient(u, {
      timeouts: config.timeouts,
      limits: config.limits,
      maxInFlight: config.limits.upstreamConnections,
      observe: ({ upstream, status, seconds }) => metrics.upstreamDuration.record(seconds, { upstream, status }),
    }),
  )
  const contentStore = options.contentStore
  if (contentStore) {
    metrics.observeStore(() => ({ bytes: contentStore.bytes, objects: contentStore.objects, writable: contentStore.unwritable === undefined }))
    contentStore.observe({ evicted: (bytes) => metrics.storeEvictedBytes.add(bytes) })
  }
  const router = new UpstreamRouter(
    config.upstreams.map((u, i) => ({
      config: u,
      client: contentStore
        ? new MirrorClient(clients[i]!, contentStore, {
            upstream: u.name,
            staleIfError: config.storage.staleIfError,
            manifestBytes: config.limits.manifestBytes,
            blobLookup: (hit) => metrics.storeLookups.add(1, { kind: 'blob', result: hit ? 'hit' : 'miss' }),
            manifestLookup: (kind, hit) => metrics.storeLookups.add(1, { kind, result: hit ? 'hit' : 'miss' }),
            saved: (kind) => metrics.storeSaved.add(1, { kind }),
          })
        : clients[i]!,
    })),
  )
  const store = new TieredStore({
    memoryEntries: 200_000,
    redisUrl: config.cache.url,
    onEvent: ({ tier, result }) => metrics.cacheRequests.add(1, { tier, result }),
    onRedisStateChange: (up, error) => {
      metrics.setRedisUp(up)
      if (up) logger.info('redis cache connected')
      else logger.warn({ error }, 'redis cache unavailable: serving from the in-process tier and verifying again')
    },
  })
  if (config.cache.url) metrics.setRedisUp(false)
  await store.connected()
  const contentIndex = new StoreContentIndex(store, config.cache.allowTTL, () => policySet.fingerprint)

  const gate = new PolicyGate({
    policySet: () => policySet,
    store,
    contentIndex,
    ttl: { allow: config.cache.allowTTL, deny: config.cache.denyTTL },
    concurrentVerifications: config.limits.concurrentVerifications,
    logger,
    onVerdict: (verdict, { cached, durationMs }) => {
      const [upstream] = verdict.image.split('/', 1)
      metrics.verdicts.add(1, { result: verdict.result, policy: verdict.policies.map((p) => p.name).join(',') || 'none', upstream: upstream ?? '' })
      if (!cached) metrics.verificationDuration.record(durationMs / 1000)
    },
    evaluate: {
      discover: (location, digest, image) => {
        const client = options.signatureClient?.(location, image) ?? router.byName(location.upstream)?.client
        if (!client) throw new Error(`signature source ${location.upstream} is not a configured upstream`)
        return span('signatures.discover', { 'trustpull.repository': location.repository, 'trustpull.digest': digest }, () =>
          discoverSignatures(client, location.repository, digest, config.limits, {
            signal: image.signal,
            imageRepository: location.repository !== image.repository ? image.repository : undefined,
            imageManifest: digest === image.digest ? image.bytes : undefined,
          }),
        )
      },
      verify: (candidate, material, digest) =>
        spanSync('verify', { 'trustpull.digest': digest, 'trustpull.signature.kind': candidate.kind, 'trustpull.signature.format': candidate.format, 'trustpull.authority.type': material.type }, (s) => {
          const evidence = verifyCandidate(candidate, material, digest)
          s?.setAttributes({ 'trustpull.verify.ok': evidence.ok, ...(evidence.code ? { 'trustpull.verify.code': evidence.code } : {}) })
          return evidence
        }),
    },
  })
  const manifests = new ManifestService({
    gate,
    contentIndex,
    cache: new ManifestCache(config.cache.manifestBytes),
    tagTTL: config.cache.tagTTL,
    vouchTTL: config.cache.allowTTL,
  })

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
    router,
    manifests,
    contentIndex,
    requireAllowedManifest: config.blobs.requireAllowedManifest,
    artifactBlobBytes: config.limits.signatureLayerBytes,
    logger,
    metrics,
    clients: clientAccess,
    clientRate: { requestsPerSecond: config.clients.requestsPerSecond, burst: config.clients.burst },
    serveMetrics: config.telemetry.metrics.enabled && !config.telemetry.metrics.listen,
    ready: async () => {
      if (!lastReadiness || Date.now() - lastReadiness.at > 10_000) {
        const answers = await Promise.all(clients.map(async (c) => ((await c.ping()) ? c.name : undefined)))
        lastReadiness = { at: Date.now(), reachable: answers.filter((n): n is string => n !== undefined) }
      }
      const redis = store.redisConfigured ? (store.redisUp ? 'up' : 'down') : 'not configured'
      const stored = contentStore ? (contentStore.unwritable ? `read-only, serving pass-through (${contentStore.unwritable})` : 'writable') : 'off'
      return {
        // With a store, a node can pull what it holds while every upstream is down.
        ready: lastReadiness.reachable.length > 0 || (contentStore !== undefined && contentStore.objects > 0),
        checks: { config: 'loaded', policies: policySet.policies.length, upstreamsReachable: lastReadiness.reachable, redis, store: stored },
      }
    },
  })
  return {
    config,
    logger,
    router,
    metrics,
    store,
    gate,
    contentStore,
    app,
    policySet: () => policySet,
    async reload(next: Config) {
      const loaded = await loadPolicyState(next, { configDir: options.configDir, trustedRoot: options.trustedRoot, logger })
      const nextClients = createClientAuthenticator(next.clients)
      policySet = loaded.policySet
      clientAuth = nextClients
      const unchanged = RELOADABLE_KEYS
      const restartNeeded = (Object.keys(next) as (keyof Config)[]).filter((k) => !unchanged.includes(k) && JSON.stringify(next[k]) !== JSON.stringify(config[k]))
      if (restartNeeded.length) logger.warn({ keys: restartNeeded }, 'these config changes take effect only after a restart')
      logger.info({ policies: policySet.policies.length, fingerprint: policySet.fingerprint }, 'policies reloaded')
    },
    async close() {
      await Promise.allSettled([...clients.map((c) => c.close()), store.close(), metrics.shutdown(), contentStore?.close()])
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
  /** Re-reads the TLS certificate, key and client CA (a cert-manager rotation); throws, keeping the old ones, when they do not load. */
  reloadTls(config: Config): void
  /** Graceful: stops accepting, lets in-flight requests finish (cut off after `deadlineMs`), then releases everything. */
  close(deadlineMs?: number): Promise<void>
}

export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':')
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(listen.slice(i + 1)) }
}

export async function startServer(config: Config, options: RuntimeOptions = {}): Promise<RunningServer> {
  const contentStore = options.contentStore ?? (config.storage.enabled ? await openContentStore(config, options.logger ?? createLogger(config.log.level)) : undefined)
  const runtime = await buildRuntime(config, { ...options, contentStore })
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
  const address = server.address() as AddressInfo
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${tls ? 'https' : 'http'}://${shownHost}:${address.port}`
  return {
    runtime,
    server,
    url,
    metricsUrl: metricsServer?.url,
    reloadTls(next: Config) {
      if (!tls || !next.tls) return
      ;(server as HttpsServer).setSecureContext(secureContextOptions(next.tls))
    },
    async close(deadlineMs = 30_000) {
      // Stop accepting; in-flight requests (blob downloads too) finish until the deadline.
      const deadline = setTimeout(() => httpServer.closeAllConnections(), deadlineMs)
      deadline.unref()
      // close() drops the connections idle at that moment only; keep-alive clients (containerd,
      // skopeo) would hold theirs open after their last answer until the keep-alive timeout.
      const sweep = setInterval(() => httpServer.closeIdleConnections(), 100)
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        metricsServer ? new Promise<void>((resolve) => metricsServer.server.close(() => resolve())) : undefined,
      ])
      clearTimeout(deadline)
      clearInterval(sweep)
      await runtime.close()
    },
  }
}

/** The filesystem store under storage.path, or S3 (spooling under storage.path); start-up stops, naming the key, when it cannot be written. */
async function openContentStore(config: Config, logger: Logger): Promise<ContentStore> {
  const s3 = config.storage.s3
  let driver: FilesystemDriver | S3Driver
  if (s3) {
    try {
      driver = new S3Driver({ ...s3, spoolDir: config.storage.path })
    } catch (err) {
      throw new ConfigError(`storage.s3.${(err as Error).message}`)
    }
    try {
      await driver.open()
    } catch (err) {
      await driver.close()
      throw new ConfigError(`storage.s3: ${(err as Error).message}; check storage.s3.bucket, endpoint and credentials (storage.path ${config.storage.path} holds the spool)`)
    }
  } else {
    driver = new FilesystemDriver(config.storage.path)
    try {
      await driver.open()
    } catch (err) {
      throw new ConfigError(`storage.path: ${config.storage.path} cannot be used for the content store (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix its permissions, or set storage.enabled: false`)
    }
  }
  const store = await ContentStore.open({ driver, maxSize: config.storage.maxSize, logger: logger.child({ component: 'store' }) })
  logger.info({ path: config.storage.path, bucket: s3?.bucket, bytes: store.bytes, objects: store.objects, maxSize: config.storage.maxSize }, 'content store opened')
  return store
}

function secureContextOptions(tls: NonNullable<Config['tls']>) {
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    // mTLS: a client without a certificate from clientCA never completes the handshake.
    ...(tls.clientCA ? { ca: readFileSync(tls.clientCA), requestCert: true, rejectUnauthorized: true } : {}),
  }
}

/** /metrics on an address of its own, so scrapers need no access to the registry port. */
async function startMetricsServer(listen: string, metrics: Metrics): Promise<{ server: HttpServer; url: string }> {
  const { host, port } = splitHostPort(listen)
  const server = createHttpServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end()
      return
    }
    metrics.prometheus().then(
      (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      () => res.writeHead(500).end(),
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  return { server, url: `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` }
}

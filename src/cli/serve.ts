// `trustpull serve`: loads the config, starts the proxy, reloads on SIGHUP or file changes, and
// shuts down gracefully on SIGTERM/SIGINT within a deadline.
import { dirname, resolve } from 'node:path'
import { EMBEDDED_DEFAULTS, EMBEDDED_HINT } from '../config/embedded.ts'
import { deprecatedKeys, loadConfig } from '../config/load.ts'
import { watchedPaths, watchFiles } from '../config/watch.ts'
import { startServer } from '../server.ts'
import { createLogger } from '../telemetry/logger.ts'
import { setupTracing, shutdownTracing } from '../telemetry/tracing.ts'

const SHUTDOWN_DEADLINE_MS = 25_000

export async function serveCommand(options: { config?: string; listen?: string }): Promise<void> {
  const overrides = options.listen ? { listen: options.listen } : {}
  const config = loadConfig(options.config, overrides, EMBEDDED_DEFAULTS)
  const logger = createLogger(config.log.level)
  const deprecated = deprecatedKeys(config)
  if (deprecated.length)
    logger.warn({ keys: deprecated }, 'deprecated secret spellings: write each secret as {value | file | env} (e.g. password: {file: /path}); the old keys will be removed')
  setupTracing({ endpoint: config.telemetry.otlp?.endpoint })
  const configDir = options.config ? dirname(resolve(options.config)) : undefined
  const running = await startServer(config, { logger, configDir })
  // Before the ready line: whoever waits for "listening" has seen everything start-up says.
  if (!options.config) logger.info(EMBEDDED_HINT)
  logger.info({ url: running.url, metrics: running.metricsUrl, admission: running.admissionUrl, upstreams: config.upstreams.map((u) => u.name) }, 'trustpull listening')
  const { tokens, htpasswd, mtls } = config.clients
  const clientAuth = tokens.length > 0 || htpasswd !== undefined || mtls
  if (!isLoopback(config.listen) && !clientAuth)
    logger.warn({ listen: config.listen }, 'listening beyond loopback without client authentication: anyone who reaches this port can pull through it')

  // SIGHUP or a changed file: reload policies, trust roots, client credentials and TLS; a bad
  // config is refused and the old one stays in force. One reload at a time, the last one wins.
  let inForce = config
  let reloading: Promise<void> = Promise.resolve()
  const reload = (why: string) => {
    reloading = reloading.then(async () => {
      try {
        const next = loadConfig(options.config, overrides, EMBEDDED_DEFAULTS)
        await running.runtime.reload(next)
        running.reloadTls(next)
        inForce = next
        running.runtime.metrics.recordReload(true)
        logger.info({ why }, 'configuration reloaded')
      } catch (err) {
        running.runtime.metrics.recordReload(false)
        logger.error({ why, err: (err as Error).message }, 'reload refused: keeping the configuration in force')
      }
      watcher?.rebase(watchedPaths(inForce, options.config))
    })
  }
  process.on('SIGHUP', () => reload('SIGHUP'))
  const watcher = config.reload.watch ? watchFiles(watchedPaths(config, options.config), () => reload('file changed'), config.reload.interval) : undefined

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down: finishing in-flight requests')
    watcher?.close()
    await running.close(SHUTDOWN_DEADLINE_MS)
    await shutdownTracing()
    logger.info('stopped')
    await new Promise<void>((resolve) => logger.flush(() => resolve()))
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

function isLoopback(listen: string): boolean {
  return /^(127\.|localhost:|\[::1\]:)/.test(listen)
}

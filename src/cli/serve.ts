import { loadConfig } from '../config/load.ts'
import { startServer } from '../server.ts'

export async function serveCommand(options: { config?: string; listen?: string }): Promise<void> {
  const config = loadConfig(options.config, options.listen ? { listen: options.listen } : {})
  const running = await startServer(config)
  const { logger } = running.runtime
  logger.info({ url: running.url, upstreams: config.upstreams.map((u) => u.name) }, 'trustpull listening')

  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    logger.info({ signal }, 'shutting down: finishing in-flight requests')
    await running.close()
    logger.info('stopped')
    process.exit(0)
  }
  process.on('SIGTERM', () => void stop('SIGTERM'))
  process.on('SIGINT', () => void stop('SIGINT'))
}

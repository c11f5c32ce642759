// Starts trustpull in-process on a free loopback port, with its logs captured for assertions.
import { Writable } from 'node:stream'
import { parseConfig } from '../../src/config/load.ts'
import { startServer, type RunningServer, type RuntimeOptions } from '../../src/server.ts'
import { createLogger } from '../../src/telemetry/logger.ts'
import type { Teardown } from './proc.ts'

export interface TestProxy {
  /** http://127.0.0.1:PORT */
  url: string
  /** 127.0.0.1:PORT */
  host: string
  running: RunningServer
  /** Every JSON log line written so far, parsed. */
  logs: Record<string, unknown>[]
  /** The raw log text (for asserting that secrets never appear). */
  logText(): string
}

export async function startProxy(t: Teardown, rawConfig: Record<string, unknown>, options: Omit<RuntimeOptions, 'logger'> = {}): Promise<TestProxy> {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean))
      cb()
    },
  })
  const config = parseConfig({ listen: '127.0.0.1:0', log: { level: 'debug' }, ...rawConfig }, 'test config')
  const running = await startServer(config, { ...options, logger: createLogger(config.log.level, sink) })
  t.teardown(() => running.close())
  return {
    url: running.url,
    host: running.url.replace(/^https?:\/\//, ''),
    running,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    },
    logText: () => lines.join('\n'),
  }
}

/** A config whose only (default) upstream, called docker.io, is the given registry. */
export function hubConfig(registryUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { upstreams: [{ name: 'docker.io', url: registryUrl, default: true }], ...extra }
}

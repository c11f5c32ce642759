// Starts trustpull in-process on a free loopback port, with its logs captured for assertions.
// Each proxy gets a content store of its own (the product default is on) in a temp dir removed
// when the test ends, unless the config names a storage.path or turns the store off: tests
// never share a store, and never write to the default data directory.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { parseConfig } from '../../src/config/load.ts'
import { startServer, type RunningServer, type RuntimeOptions } from '../../src/server.ts'
import { createLogger } from '../../src/telemetry/logger.ts'
import { freePort, REPO_ROOT, startDaemon, type Daemon, type Teardown } from './proc.ts'

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
  const storage = (rawConfig.storage ?? {}) as Record<string, unknown>
  const ownStore = storage.enabled !== false && storage.path === undefined && !options.contentStore ? await mkdtemp(join(tmpdir(), 'trustpull-store-')) : undefined
  const removeStore = () => (ownStore ? rm(ownStore, { recursive: true, force: true, maxRetries: 3 }) : undefined)
  let running: RunningServer
  try {
    const config = parseConfig({ listen: '127.0.0.1:0', log: { level: 'debug' }, ...rawConfig, ...(ownStore ? { storage: { ...storage, path: ownStore } } : {}) }, 'test config')
    running = await startServer(config, { ...options, logger: createLogger(config.log.level, sink) })
  } catch (err) {
    await removeStore()
    throw err
  }
  // Closed before its store is removed (a write in flight would recreate directories).
  t.teardown(async () => {
    await running.close()
    await removeStore()
  })
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

export interface TrustpullProcess {
  /** http://127.0.0.1:PORT */
  url: string
  host: string
  daemon: Daemon
  configFile: string
  /** Every JSON line printed on stdout so far, parsed. */
  logs(): Record<string, unknown>[]
}

/**
 * `trustpull serve --config FILE` as a child process (for what only a process can show: a
 * SIGKILL, a restart), on a free port; ready once /healthz answers. The config is written to
 * `dir/trustpull.yaml`; its storage.path, when it has none, is `dir/store` (never the default).
 */
export async function startTrustpullProcess(t: Teardown, dir: string, rawConfig: Record<string, unknown>): Promise<TrustpullProcess> {
  const port = await freePort()
  const storage = (rawConfig.storage ?? {}) as Record<string, unknown>
  const config = { listen: `127.0.0.1:${port}`, ...rawConfig, storage: { path: join(dir, 'store'), ...storage } }
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(configFile, JSON.stringify(config))
  const url = `http://127.0.0.1:${port}`
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: dir,
    ready: async () => (await fetch(`${url}/healthz`)).ok,
    // Node compiling the TypeScript at start takes seconds on a busy machine.
    readyTimeoutMs: 60_000,
  })
  return {
    url,
    host: `127.0.0.1:${port}`,
    daemon,
    configFile,
    logs: () =>
      daemon
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

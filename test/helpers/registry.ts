// A real upstream: Debian's docker-registry (distribution 2.8) on a free loopback port, with its
// own storage and config, deletes enabled, no auth. It has no referrers API, like `registry:2`.

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { freePort, startDaemon, tempDir, type Daemon, type Teardown } from './proc.ts'

export const DOCKER_REGISTRY_BIN = process.env.TRUSTPULL_TEST_REGISTRY_BIN ?? '/usr/bin/docker-registry'

export interface Registry {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  readonly url: string
  /** `127.0.0.1:PORT`, as it appears in image references. */
  readonly host: string
  readonly port: number
  /** Where blobs and manifests are stored (survives restart). */
  readonly storageDir: string
  /** What the registry printed on stderr (warn level and above). */
  stderr(): string
  stop(): Promise<void>
  /** Stops (if running) and starts again on the same port and storage. */
  restart(): Promise<void>
}

export interface RegistryOptions {
  /** Log level for the registry's own messages (default warn). */
  logLevel?: 'error' | 'warn' | 'info' | 'debug'
}

function configYaml(port: number, storageDir: string, logLevel: string): string {
  return `version: 0.1
log:
  level: ${logLevel}
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(storageDir)}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  # fixed so uploads started before a restart still validate and no warning is printed
  secret: trustpull-test-secret
health:
  storagedriver:
    enabled: false
`
}

async function answers200(url: string): Promise<boolean> {
  const res = await request(`${url}/v2/`, { headersTimeout: 1_000, bodyTimeout: 1_000 })
  await res.body.dump()
  return res.statusCode === 200
}

/** Starts docker-registry; it is stopped when the test ends. Ready when `GET /v2/` answers 200. */
export async function startRegistry(t: Teardown, opts: RegistryOptions = {}): Promise<Registry> {
  const dir = await tempDir(t, 'trustpull-registry-')
  const storageDir = join(dir, 'storage')
  const configFile = join(dir, 'config.yml')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  await writeFile(configFile, configYaml(port, storageDir, opts.logLevel ?? 'warn'))

  let daemon: Daemon | undefined
  const start = async (): Promise<void> => {
    daemon = await startDaemon(t, DOCKER_REGISTRY_BIN, ['serve', configFile], {
      name: 'docker-registry',
      ready: () => answers200(url),
    })
  }
  await start()

  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    storageDir,
    stderr: () => daemon?.stderr() ?? '',
    stop: async () => {
      await daemon?.stop()
    },
    restart: async () => {
      await daemon?.stop()
      await start()
    },
  }
}

// A private Docker engine (Debian bookworm's docker.io, dockerd 20.10) for pull tests: runs as
// root with its own config file, data root, exec root, pidfile and socket under a temp dir, the
// vfs storage driver and no networking set-up (no iptables, no bridge), so it never touches a
// system dockerd or the host's firewall. `docker pull` against it then goes through
// `registry-mirrors` exactly as on a developer's machine.
//
// dockerd 20.10 starts a containerd of its own (state under the exec root) unless `--containerd`
// is given, and that containerd would start containerd-shim processes for containers. Stopping
// therefore does not end with dockerd: every process still naming this dir on its command line is
// killed, anything mounted under it is unmounted, and then the data and exec roots are removed.

import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { run, runOk, startDaemon, tempDir, type RunResult, type Teardown } from './proc.ts'

export const DOCKERD_BIN = process.env.TRUSTPULL_TEST_DOCKERD ?? '/usr/sbin/dockerd'
/** docker.io's own CLI (20.10), not whatever `docker` comes first on PATH. */
export const DOCKER_BIN = process.env.TRUSTPULL_TEST_DOCKER ?? '/usr/bin/docker'

export interface DockerdOptions {
  /** `registry-mirrors` (for Docker Hub only), e.g. `http://127.0.0.1:PORT`. */
  registryMirrors?: string[]
  /** `insecure-registries`: hosts (`127.0.0.1:PORT`) dockerd may reach over plain HTTP. */
  insecureRegistries?: string[]
  /** dockerd's `log-level` (default info: shows mirror fall-backs, not every request). */
  logLevel?: 'debug' | 'info' | 'warn' | 'error'
}

export interface StopReport {
  /** Processes still naming the temp dir after dockerd exited, which had to be SIGKILLed. */
  killed: { pid: number; cmdline: string }[]
  /** Mount points under the temp dir that had to be unmounted. */
  unmounted: string[]
}

export interface Dockerd {
  /** The API socket path. */
  readonly socket: string
  /** `unix://SOCKET`, for DOCKER_HOST or `docker -H`. */
  readonly host: string
  /** Temp dir holding the config, data root, exec root, pidfile and socket. */
  readonly dir: string
  readonly dataRoot: string
  readonly execRoot: string
  readonly pid: number
  /** What dockerd (and the containerd it started) logged. */
  stderr(): string
  /** `docker ARGS` with DOCKER_HOST set to this daemon and an empty DOCKER_CONFIG; never throws. */
  docker(args: readonly string[], timeoutMs?: number): Promise<RunResult>
  /** Stops dockerd (SIGTERM, then SIGKILL), kills what it left behind, removes its roots. Idempotent. */
  stop(): Promise<StopReport>
}

/** Live processes whose command line names a path inside `dir` (dockerd, its containerd, shims). */
export async function processesUnder(dir: string): Promise<{ pid: number; cmdline: string }[]> {
  const needle = `${dir}/`
  const found: { pid: number; cmdline: string }[] = []
  for (const entry of await readdir('/proc')) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    let cmdline: string
    try {
      cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ').trim()
    } catch {
      continue // exited meanwhile
    }
    if (cmdline.includes(needle)) found.push({ pid, cmdline })
  }
  return found
}

/** Mount points at or under `dir`, deepest first (so they can be unmounted in that order). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8')
  const points = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
  return points.sort((a, b) => b.length - a.length)
}

/** Exited, or a zombie waiting for a PID 1 that may be slow to reap it (it holds nothing). */
async function gone(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')
  } catch {
    return true
  }
}

/** Starts a private dockerd; it is stopped and cleaned up when the test ends. Needs root. */
export async function startDockerd(t: Teardown, opts: DockerdOptions = {}): Promise<Dockerd> {
  if (process.getuid?.() !== 0) throw new Error('dockerd tests need root')
  const dir = await tempDir(t, 'trustpull-dockerd-')
  const dataRoot = join(dir, 'data')
  const execRoot = join(dir, 'exec')
  const clientConfig = join(dir, 'client-config')
  const socket = join(dir, 'docker.sock')
  const host = `unix://${socket}`
  const configFile = join(dir, 'daemon.json')
  await Promise.all([mkdir(dataRoot), mkdir(execRoot), mkdir(clientConfig)])
  await writeFile(
    configFile,
    JSON.stringify({
      'storage-driver': 'vfs',
      iptables: false,
      bridge: 'none',
      'log-level': opts.logLevel ?? 'info',
      'registry-mirrors': opts.registryMirrors ?? [],
      'insecure-registries': opts.insecureRegistries ?? [],
    }),
  )

  // Empty DOCKER_CONFIG: no credentials or CLI settings from this machine's ~/.docker.
  const clientEnv: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: host, DOCKER_CONFIG: clientConfig }
  const docker = (args: readonly string[], timeoutMs = 60_000): Promise<RunResult> => run(DOCKER_BIN, args, { env: clientEnv, timeoutMs })

  // Until dockerd is up there is nothing to stop: startDaemon stops a daemon that never got ready.
  let stopDaemon = async (): Promise<void> => {}

  let stopping: Promise<StopReport> | undefined
  const stop = (): Promise<StopReport> => {
    stopping ??= (async () => {
      await stopDaemon()
      // dockerd stops its containerd on SIGTERM; after a SIGKILL (or a crash) it may not have.
      const killed = await processesUnder(dir)
      for (const p of killed) {
        try {
          process.kill(p.pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
      for (const p of killed) {
        for (let i = 0; i < 100 && !(await gone(p.pid)); i++) await sleep(50)
      }
      const unmounted = await mountsUnder(dir)
      for (const point of unmounted) await runOk('umount', ['-l', point])
      await rm(dataRoot, { recursive: true, force: true, maxRetries: 3 })
      await rm(execRoot, { recursive: true, force: true, maxRetries: 3 })
      return { killed, unmounted }
    })()
    return stopping
  }
  // Registered before startDaemon's own stop, so it runs after it (tap runs teardowns last-first).
  t.teardown(stop)

  const daemon = await startDaemon(
    t,
    DOCKERD_BIN,
    ['--config-file', configFile, '--data-root', dataRoot, '--exec-root', execRoot, '--pidfile', join(dir, 'docker.pid'), '-H', host],
    {
      name: 'dockerd',
      ready: async () => (await docker(['version', '--format', '{{.Server.Version}}'], 5_000)).code === 0,
      readyTimeoutMs: 30_000,
      stopGraceMs: 10_000,
    },
  )
  stopDaemon = daemon.stop
  return {
    socket,
    host,
    dir,
    dataRoot,
    execRoot,
    pid: daemon.pid,
    stderr: () => daemon.stderr(),
    docker,
    stop,
  }
}

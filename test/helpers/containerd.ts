// A private containerd 1.6 (Debian bookworm) for pull tests: runs as root with its own config,
// root, state and socket under a temp dir (CRI plugin disabled), so it never touches a system
// containerd. `ctr images pull --hosts-dir` then pulls through a hosts.toml mirror exactly as a
// Kubernetes node configured with `config_path` would.

import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run, startDaemon, tempDir, type RunResult, type Teardown } from './proc.ts'

export const CONTAINERD_BIN = process.env.TRUSTPULL_TEST_CONTAINERD ?? '/usr/bin/containerd'
export const CTR_BIN = process.env.TRUSTPULL_TEST_CTR ?? '/usr/bin/ctr'

export interface Containerd {
  /** The gRPC socket, for `ctr -a`. */
  readonly socket: string
  /** Temp dir holding config, root, state and socket. */
  readonly dir: string
  /** What containerd logged (stderr). */
  stderr(): string
  stop(): Promise<void>
}

function configToml(dir: string, socket: string): string {
  const q = (p: string): string => JSON.stringify(p)
  return `version = 2
root = ${q(join(dir, 'root'))}
state = ${q(join(dir, 'state'))}
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = ${q(socket)}

[ttrpc]
  address = ${q(`${socket}.ttrpc`)}

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(dir, 'opt'))}
`
}

/** Starts a private containerd; stopped when the test ends. Needs root. */
export async function startContainerd(t: Teardown): Promise<Containerd> {
  if (process.getuid?.() !== 0) throw new Error('containerd tests need root')
  const dir = await tempDir(t, 'trustpull-containerd-')
  const socket = join(dir, 'containerd.sock')
  const config = join(dir, 'config.toml')
  await writeFile(config, configToml(dir, socket))
  const daemon = await startDaemon(t, CONTAINERD_BIN, ['--config', config], {
    name: 'containerd',
    readyLine: /containerd successfully booted/,
    ready: async () => (await run(CTR_BIN, ['-a', socket, 'version'], { timeoutMs: 5_000 })).code === 0,
    readyTimeoutMs: 30_000,
    stopGraceMs: 5_000,
  })
  return { socket, dir, stderr: () => daemon.stderr(), stop: () => daemon.stop() }
}

export interface CtrPullOptions {
  /** `--hosts-dir`: a directory of `<host>/hosts.toml` files. */
  hostsDir?: string
  /** `--plain-http` (default true: loopback registries speak HTTP). */
  plainHttp?: boolean
  /** `--platform`, e.g. `linux/arm64` (default: this machine's). */
  platform?: string
  allPlatforms?: boolean
  /** Snapshotter to unpack into (default: containerd's, overlayfs). */
  snapshotter?: string
  timeoutMs?: number
}

/** `ctr -a SOCK images pull [--plain-http] [--hosts-dir DIR] REF`; never throws for a failed pull. */
export async function ctrPull(socket: string, ref: string, opts: CtrPullOptions = {}): Promise<RunResult> {
  const args = ['-a', socket, 'images', 'pull']
  if (opts.plainHttp ?? true) args.push('--plain-http')
  if (opts.hostsDir) args.push('--hosts-dir', opts.hostsDir)
  if (opts.platform) args.push('--platform', opts.platform)
  if (opts.allPlatforms) args.push('--all-platforms')
  if (opts.snapshotter) args.push('--snapshotter', opts.snapshotter)
  args.push(ref)
  return run(CTR_BIN, args, { timeoutMs: opts.timeoutMs ?? 60_000 })
}

/** Any other `ctr -a SOCK ...` command (e.g. `images ls -q`, `images rm REF`, `content ls`). */
export async function ctr(socket: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return run(CTR_BIN, ['-a', socket, ...args], { timeoutMs })
}

/** Image references containerd has (`ctr images ls -q`). */
export async function ctrImageNames(socket: string): Promise<string[]> {
  const r = await ctr(socket, ['images', 'ls', '-q'])
  if (r.code !== 0) throw new Error(`ctr images ls failed: ${r.stderr}`)
  return r.stdout.split('\n').filter(Boolean)
}

export interface HostsTomlOptions {
  /**
   * `server` line: where containerd goes when every mirror failed. Default: the mirror itself,
   * so a test never dials the real registry; `null` leaves it out (containerd then falls back to
   * `https://<registryHost>`, or registry-1.docker.io for docker.io).
   */
  server?: string | null
  /** Default ["pull", "resolve"]. */
  capabilities?: string[]
}

/**
 * Writes `DIR/<registryHost>/hosts.toml` naming `mirrorUrl` (http://127.0.0.1:PORT) as a plain-HTTP
 * mirror with skip_verify. Returns the file's path.
 */
export async function writeHostsToml(dir: string, registryHost: string, mirrorUrl: string, opts: HostsTomlOptions = {}): Promise<string> {
  const server = opts.server === undefined ? mirrorUrl : opts.server
  const capabilities = opts.capabilities ?? ['pull', 'resolve']
  const lines = [
    ...(server === null ? [] : [`server = ${JSON.stringify(server)}`, '']),
    `[host.${JSON.stringify(mirrorUrl)}]`,
    `  capabilities = ${JSON.stringify(capabilities)}`,
    '  skip_verify = true',
    '',
  ]
  const hostDir = join(dir, registryHost)
  await mkdir(hostDir, { recursive: true })
  const file = join(hostDir, 'hosts.toml')
  await writeFile(file, lines.join('\n'))
  return file
}

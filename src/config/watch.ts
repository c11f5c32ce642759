// Notices when a file the running configuration depends on changes, so an edited ConfigMap or a
// rotated Secret reaches the process without a signal (nothing sends SIGHUP on Kubernetes).
// Kubernetes updates a mounted volume by swapping a `..data` symlink atomically: the files' own
// inodes never change, so inotify on them misses it. Polling a content hash of every watched path
// sees every kind of change (edit, rename over, symlink swap) at the cost of reading a few small
// files every couple of seconds. The threat is a stale policy staying in force after a revocation.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from './schema.ts'
import { secretFile } from './secret.ts'

/** Every file or directory whose contents the configuration reads at start-up or reload. */
export function watchedPaths(config: Config, configFile: string | undefined): string[] {
  const paths: (string | undefined)[] = [configFile, ...config.policyDirs, ...config.trustRoots.map((r) => r.file ?? r.tuf?.root)]
  if (config.tls) paths.push(config.tls.cert, config.tls.key, config.tls.clientCA)
  if (config.admission) paths.push(config.admission.tls.cert, config.admission.tls.key)
  paths.push(config.clients.htpasswd, ...config.clients.tokens.map((t) => secretFile(t.token)))
  for (const u of config.upstreams) paths.push(secretFile(u.auth?.password))
  for (const p of config.policies) for (const a of p.authorities ?? []) paths.push((a as { key?: { file?: string } }).key?.file)
  return [...new Set(paths.filter((p): p is string => typeof p === 'string' && p.length > 0))]
}

/** A hash of what the paths hold now: a directory counts with the names and contents of its files. */
export function contentHash(paths: readonly string[]): string {
  const hash = createHash('sha256')
  for (const path of paths) {
    hash.update(`\0${path}\0`)
    try {
      if (statSync(path).isDirectory()) {
        // Hidden entries are Kubernetes' own (`..data`, `..2024_...`); their files appear under the visible names too.
        for (const name of readdirSync(path)
          .filter((n) => !n.startsWith('.'))
          .sort()) {
          const file = join(path, name)
          hash.update(`\0${name}\0`)
          if (statSync(file).isFile()) hash.update(readFileSync(file))
        }
      } else hash.update(readFileSync(path))
    } catch (err) {
      hash.update(`unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`)
    }
  }
  return hash.digest('hex')
}

export interface FileWatcher {
  /** Takes the current contents as the baseline (after a reload, successful or not). */
  rebase(paths: readonly string[]): void
  close(): void
}

/** Calls `onChange` when the watched contents differ from the baseline; never twice for one change. */
export function watchFiles(paths: readonly string[], onChange: () => void, intervalMs = 2_000): FileWatcher {
  let watched = [...paths]
  let baseline = contentHash(watched)
  const timer = setInterval(() => {
    const now = contentHash(watched)
    if (now === baseline) return
    baseline = now
    onChange()
  }, intervalMs)
  timer.unref()
  return {
    rebase(next) {
      watched = [...next]
      baseline = contentHash(watched)
    },
    close: () => clearInterval(timer),
  }
}

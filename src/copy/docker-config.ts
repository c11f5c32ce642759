// Registry credentials from the files docker, podman and skopeo keep them in:
//   --authfile FILE, else $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
//   $DOCKER_CONFIG/config.json (default ~/.docker/config.json); the first file naming the registry wins.
// Entries are `auths.<registry>.auth` (base64 `user:password`) or `username` + `password`.
// Credential helpers (`credsStore`, `credHelpers`) and identity tokens are not run or used.
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { isDockerHub } from '../upstream/router.ts'
import type { Credentials } from '../upstream/credentials.ts'
import { CopyError } from './errors.ts'

export interface AuthFileOptions {
  /** An explicit file (`--authfile`): the only one consulted. */
  authFile?: string
  env?: NodeJS.ProcessEnv
}

export function authFiles(options: AuthFileOptions = {}): string[] {
  if (options.authFile) return [options.authFile]
  const env = options.env ?? process.env
  const files: string[] = []
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE)
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'))
  files.push(join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json'))
  return files
}

/** `https://index.docker.io/v1/` → `index.docker.io`; `http://host:5000/v2` → `host:5000`. */
function registryKey(key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase()
}

function sameRegistry(a: string, b: string): boolean {
  return a === b || (isDockerHub(a) && isDockerHub(b))
}

/** Credentials for `registry` from the first auth file that names it; `undefined` when none does. */
export function fileCredentials(registry: string, options: AuthFileOptions = {}): Credentials | undefined {
  const wanted = registry.toLowerCase()
  for (const file of authFiles(options)) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      if (options.authFile) throw new CopyError('BAD_ENDPOINT', `cannot read auth file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
      continue
    }
    let auths: Record<string, { auth?: unknown; username?: unknown; password?: unknown }>
    try {
      const doc = JSON.parse(text) as { auths?: unknown }
      auths = typeof doc.auths === 'object' && doc.auths !== null ? (doc.auths as typeof auths) : {}
    } catch {
      throw new CopyError('BAD_ENDPOINT', `auth file ${file} is not JSON`)
    }
    for (const [key, entry] of Object.entries(auths)) {
      if (!sameRegistry(registryKey(key), wanted) || typeof entry !== 'object' || entry === null) continue
      if (typeof entry.auth === 'string' && entry.auth !== '') {
        const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
        const colon = decoded.indexOf(':')
        if (colon <= 0) throw new CopyError('BAD_ENDPOINT', `auth file ${file}: the entry for ${key} is not base64 of user:password`)
        return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
      }
      if (typeof entry.username === 'string' && typeof entry.password === 'string') return { username: entry.username, password: entry.password }
    }
  }
  return undefined
}

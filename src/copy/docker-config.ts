// Registry credentials from the files docker, podman and skopeo keep them in, looked up as
// containers-auth.json(5) and docker's config.json describe:
//   --authfile FILE alone, else $REGISTRY_AUTH_FILE, else $XDG_RUNTIME_DIR/containers/auth.json,
//   $XDG_CONFIG_HOME/containers/auth.json (default ~/.config), $DOCKER_CONFIG/config.json (default
//   ~/.docker/config.json); the first file that has credentials for the image wins.
// In one file: `credHelpers[registry]` (a helper run as `docker-credential-NAME get`), else the most
// specific `auths` key among `registry/ns/repo`, `registry/ns`, `registry` (entries hold base64
// `user:password` in `auth`, or `username` + `password`), else `credsStore` (a helper for every
// registry). Threat: a helper is a program we run; only the `docker-credential-` prefix plus a name
// of letters, digits, `.`, `_` and `-` is accepted, it gets the registry on stdin and nothing else,
// and its output (a secret) is never printed. Identity tokens (OAuth refresh tokens) are refused.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { isDockerHub } from '../oci/image-name.ts'
import type { Credentials } from '../upstream/credentials.ts'
import { CopyError } from './errors.ts'

export interface AuthFileOptions {
  /** An explicit file (`--authfile`): the only one consulted. */
  authFile?: string
  env?: NodeJS.ProcessEnv
}

const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/
const HELPER_TIMEOUT_MS = 30_000

export function authFiles(options: AuthFileOptions = {}): string[] {
  if (options.authFile) return [options.authFile]
  const env = options.env ?? process.env
  if (env.REGISTRY_AUTH_FILE) return [env.REGISTRY_AUTH_FILE]
  const home = env.HOME || homedir()
  const files: string[] = []
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, 'containers', 'auth.json'))
  files.push(join(env.XDG_CONFIG_HOME || join(home, '.config'), 'containers', 'auth.json'))
  files.push(join(env.DOCKER_CONFIG || join(home, '.docker'), 'config.json'))
  return files
}

/** `https://index.docker.io/v1/` → `index.docker.io`; `http://host:5000/v2/ns` → `host:5000/ns`. */
function normaliseKey(key: string): string {
  const bare = key.replace(/^[a-z]+:\/\//i, '').replace(/\/+$/, '')
  const slash = bare.indexOf('/')
  const host = (slash === -1 ? bare : bare.slice(0, slash)).toLowerCase()
  const path = slash === -1 ? '' : bare.slice(slash + 1).replace(/^v[12](\/|$)/, '')
  return path ? `${host}/${path}` : host
}

function sameRegistry(a: string, b: string): boolean {
  return a === b || (isDockerHub(a) && isDockerHub(b))
}

/** How specific `key` is for `registry/repository`: the number of path parts it matches, or -1. */
function specificity(key: string, registry: string, repository: string): number {
  const [host, ...path] = normaliseKey(key).split('/')
  if (!sameRegistry(host!, registry)) return -1
  const repo = repository.split('/')
  if (path.length > repo.length || path.some((part, i) => part !== repo[i])) return -1
  return path.length
}

interface AuthDoc {
  auths?: Record<string, { auth?: unknown; username?: unknown; password?: unknown; identitytoken?: unknown } | null>
  credHelpers?: Record<string, unknown>
  credsStore?: unknown
}

/**
 * Credentials for writing `registry/repository` from the first auth file that has some;
 * `undefined` when none does. `repository` may be omitted (then only registry-wide keys match).
 */
export function fileCredentials(registry: string, options: AuthFileOptions = {}, repository = ''): Credentials | undefined {
  const wanted = registry.toLowerCase()
  for (const file of authFiles(options)) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      if (options.authFile) throw new CopyError('BAD_ENDPOINT', `cannot read auth file ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
      continue
    }
    let doc: AuthDoc
    try {
      const parsed = JSON.parse(text) as unknown
      doc = typeof parsed === 'object' && parsed !== null ? (parsed as AuthDoc) : {}
    } catch {
      throw new CopyError('BAD_ENDPOINT', `auth file ${file} is not JSON`)
    }
    const found = fromDoc(doc, file, wanted, repository, options.env ?? process.env)
    if (found) return found
  }
  return undefined
}

function fromDoc(doc: AuthDoc, file: string, registry: string, repository: string, env: NodeJS.ProcessEnv): Credentials | undefined {
  const helpers = typeof doc.credHelpers === 'object' && doc.credHelpers !== null ? doc.credHelpers : {}
  for (const [key, helper] of Object.entries(helpers)) {
    if (specificity(key, registry, '') === 0 && typeof helper === 'string') return runHelper(helper, key, file, env)
  }
  const auths = typeof doc.auths === 'object' && doc.auths !== null ? doc.auths : {}
  let best: { key: string; depth: number } | undefined
  for (const [key, entry] of Object.entries(auths)) {
    if (typeof entry !== 'object' || entry === null) continue
    const usable =
      (typeof entry.auth === 'string' && entry.auth !== '') || (typeof entry.username === 'string' && typeof entry.password === 'string') || typeof entry.identitytoken === 'string'
    if (!usable) continue
    const depth = specificity(key, registry, repository)
    if (depth >= 0 && (!best || depth > best.depth)) best = { key, depth }
  }
  if (best) {
    const entry = auths[best.key]!
    if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') {
      throw new CopyError(
        'BAD_ENDPOINT',
        `auth file ${file}: the entry for ${best.key} holds an identity token, which trustpull does not use; log in with a password or token instead`,
      )
    }
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon <= 0) throw new CopyError('BAD_ENDPOINT', `auth file ${file}: the entry for ${best.key} is not base64 of user:password`)
      return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
    }
    return { username: entry.username as string, password: entry.password as string }
  }
  if (typeof doc.credsStore === 'string' && doc.credsStore !== '') {
    return runHelper(doc.credsStore, isDockerHub(registry) ? 'https://index.docker.io/v1/' : registry, file, env, true)
  }
  return undefined
}

const helperCache = new Map<string, Credentials | undefined>()

/**
 * `docker-credential-NAME get` with the server on stdin; `{ Username, Secret }` on stdout.
 * A helper that has nothing for the server (non-zero exit) gives `undefined` when it is the
 * file's default store, an error when credHelpers named it for this registry.
 */
function runHelper(name: string, server: string, file: string, env: NodeJS.ProcessEnv, isDefaultStore = false): Credentials | undefined {
  if (!HELPER_NAME.test(name)) throw new CopyError('BAD_ENDPOINT', `auth file ${file}: "${name}" is not a credential helper name`)
  const cacheKey = `${name}\0${server}`
  if (helperCache.has(cacheKey)) return helperCache.get(cacheKey)
  const program = `docker-credential-${name}`
  let out: string
  try {
    out = execFileSync(program, ['get'], { input: server, env, timeout: HELPER_TIMEOUT_MS, stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8' })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { status?: number | null }
    if (e.code === 'ENOENT') {
      if (isDefaultStore) return remember(cacheKey, undefined)
      throw new CopyError('BAD_ENDPOINT', `auth file ${file}: credential helper ${program} is not installed (not on PATH)`)
    }
    if (isDefaultStore) return remember(cacheKey, undefined)
    throw new CopyError('DESTINATION_DENIED', `credential helper ${program} has no credentials for ${server} (exit ${e.status ?? e.code ?? 'error'})`)
  }
  let reply: { Username?: unknown; Secret?: unknown }
  try {
    reply = JSON.parse(out) as typeof reply
  } catch {
    throw new CopyError('BAD_ENDPOINT', `credential helper ${program} did not answer with JSON`)
  }
  if (typeof reply.Username !== 'string' || typeof reply.Secret !== 'string' || reply.Secret === '') {
    throw new CopyError('BAD_ENDPOINT', `credential helper ${program} answered without Username and Secret`)
  }
  if (reply.Username === '<token>') throw new CopyError('BAD_ENDPOINT', `credential helper ${program} gave an identity token for ${server}, which trustpull does not use`)
  return remember(cacheKey, { username: reply.Username, password: reply.Secret })
}

function remember(key: string, value: Credentials | undefined): Credentials | undefined {
  helperCache.set(key, value)
  return value
}

// Secrets in the config have one shape, `{value | file | env}` (schema.ts `secretSource`): inline,
// a file (a mounted Kubernetes Secret; one trailing newline dropped) or an environment variable.
// They are read where they are used, never logged, and a missing one stops start-up naming the key.
// The older spellings (`password` / `passwordFile` / `passwordEnv`, `token` / `tokenFile` /
// `tokenEnv`, `usernameEnv`) are rewritten to this shape before validation by `upgradeSecrets`,
// which lists them so start-up can warn once.
import { readFileSync } from 'node:fs'
import { ConfigError } from '../errors.ts'

export interface SecretSource {
  value?: string
  file?: string
  env?: string
}

/** The secret's value; `where` is its key path for the error message (never the value). */
export function readSecret(source: SecretSource | string, where: string, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof source === 'string') return source
  if (source.value !== undefined) return source.value
  if (source.env !== undefined) {
    const value = env[source.env]
    if (value === undefined || value === '') throw new ConfigError(`${where}.env: environment variable ${source.env} is not set`)
    return value
  }
  try {
    return readFileSync(source.file!, 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(`${where}.file: cannot read ${source.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
}

/** The file a secret is read from, for the reload watcher. */
export function secretFile(source: SecretSource | string | undefined): string | undefined {
  return typeof source === 'object' ? source.file : undefined
}

type Obj = Record<string, unknown>
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * Rewrites `obj[base]`, `obj[base + 'File']`, `obj[base + 'Env']` (and a string `obj[base]`) into
 * `obj[base] = {value | file | env}`; returns the old keys it found. Two of them at once are kept
 * apart (`base` stays an object with both), so validation refuses the ambiguity naming the key.
 */
function upgrade(obj: Obj, base: string, path: string, found: string[], keepString = false): void {
  const given: SecretSource = {}
  if (typeof obj[base] === 'string' && !keepString) {
    given.value = obj[base] as string
    found.push(`${path}.${base}`)
  } else if (obj[base] !== undefined) return // already the new shape (or invalid: validation says so)
  for (const [suffix, key] of [
    ['File', 'file'],
    ['Env', 'env'],
  ] as const) {
    if (obj[base + suffix] === undefined) continue
    given[key] = obj[base + suffix] as string
    found.push(`${path}.${base}${suffix}`)
    delete obj[base + suffix]
  }
  if (Object.keys(given).length > 0) obj[base] = given
}

/** A copy of the raw config with the old secret spellings in the new shape, and the old keys used. */
export function upgradeSecrets(raw: unknown): { raw: unknown; deprecated: string[] } {
  if (!isObj(raw)) return { raw, deprecated: [] }
  const copy = structuredClone(raw)
  const found: string[] = []
  if (Array.isArray(copy.upstreams)) {
    for (const [i, u] of copy.upstreams.entries()) {
      if (!isObj(u) || !isObj(u.auth)) continue
      const where = `upstreams[${i}].auth`
      // A plain username string is not a secret: it stays as it is; usernameEnv becomes {env}.
      upgrade(u.auth, 'username', where, found, true)
      upgrade(u.auth, 'password', where, found)
    }
  }
  const clients = copy.clients
  if (isObj(clients) && Array.isArray(clients.tokens)) {
    for (const [i, tok] of clients.tokens.entries()) if (isObj(tok)) upgrade(tok, 'token', `clients.tokens[${i}]`, found)
  }
  if (isObj(copy.cache)) upgrade(copy.cache, 'password', 'cache', found)
  return { raw: copy, deprecated: found }
}

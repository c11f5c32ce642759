// Who may use the proxy: static bearer tokens, htpasswd (bcrypt) basic auth, and client
// certificates when TLS asks for them. Without any of these configured, every client is anonymous.
import bcrypt from 'bcryptjs'
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'
import type { IncomingMessage } from 'node:http'
import type { Context, MiddlewareHandler } from 'hono'
import { LRUCache } from 'lru-cache'
import { ConfigError } from '../errors.ts'
import type { Config } from '../config/schema.ts'
import { RegistryError } from '../errors.ts'
import { header as requestHeader } from './request.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** The authenticated client's name (token name, htpasswd user, certificate CN); unset when anonymous. */
    client: string | undefined
  }
}

export interface ClientAuthenticator {
  readonly enabled: boolean
  /** Upstreams this client may pull from; undefined means all. */
  allowedUpstreams(client: string | undefined): ReadonlySet<string> | undefined
  middleware: MiddlewareHandler
}

/** bcrypt is slow by design: a successful check is remembered briefly, keyed by a hash of the credentials. */
const VERIFIED_TTL_MS = 5 * 60_000

export function createClientAuthenticator(config: Config['clients'], env: NodeJS.ProcessEnv = process.env): ClientAuthenticator {
  const tokens = config.tokens.map((t) => ({ name: t.name, digest: sha256(readToken(t, env)) }))
  const htpasswd = config.htpasswd ? readHtpasswd(config.htpasswd) : undefined
  const verified = new LRUCache<string, string>({ max: 10_000, ttl: VERIFIED_TTL_MS })
  const enabled = tokens.length > 0 || htpasswd !== undefined || config.mtls
  const rules = new Map<string, Set<string>>()
  for (const rule of config.rules) {
    const set = rules.get(rule.client) ?? new Set()
    for (const u of rule.upstreams) set.add(u)
    rules.set(rule.client, set)
  }

  const identify = async (c: Context): Promise<string | undefined> => {
    if (config.mtls) {
      const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket as TLSSocket | undefined
      if (socket?.authorized) {
        const cn = socket.getPeerCertificate()?.subject?.CN
        if (cn) return Array.isArray(cn) ? cn[0] : cn
      }
    }
    const header = requestHeader(c, 'authorization') ?? ''
    const [scheme, value] = [header.slice(0, header.indexOf(' ')).toLowerCase(), header.slice(header.indexOf(' ') + 1).trim()]
    if (scheme === 'bearer' && tokens.length > 0) {
      const digest = sha256(value)
      return tokens.find((t) => timingSafeEqual(t.digest, digest))?.name
    }
    if (scheme === 'basic' && htpasswd) {
      const decoded = Buffer.from(value, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 1) return undefined
      const user = decoded.slice(0, colon)
      const key = sha256(decoded).toString('hex')
      if (verified.get(key) === user) return user
      const hash = htpasswd.get(user)
      if (hash && (await bcrypt.compare(decoded.slice(colon + 1), hash))) {
        verified.set(key, user)
        return user
      }
    }
    return undefined
  }

  const challenge = htpasswd ? 'Basic realm="trustpull"' : 'Bearer realm="trustpull"'
  return {
    enabled,
    allowedUpstreams: (client) => (client === undefined ? undefined : rules.get(client)),
    middleware: async function clientAuth(c, next) {
      if (!enabled) return next()
      const client = await identify(c)
      if (!client) {
        throw new RegistryError('UNAUTHORIZED', 'authentication required: a valid token, password or client certificate', {
          headers: { 'www-authenticate': challenge },
        })
      }
      c.set('client', client)
      return next()
    },
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

function readToken(t: Config['clients']['tokens'][number], env: NodeJS.ProcessEnv): string {
  let value: string | undefined
  try {
    value = t.token ?? (t.tokenEnv !== undefined ? env[t.tokenEnv] : readFileSync(t.tokenFile!, 'utf8').trim())
  } catch (err) {
    throw new ConfigError(`clients.tokens[${t.name}].tokenFile: cannot read ${t.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (!value || value.length < 16) throw new ConfigError(`clients.tokens[${t.name}]: the token is missing or shorter than 16 characters`)
  return value
}

/** `user:$2y$...` lines; anything but bcrypt is refused (MD5 and SHA-1 htpasswd entries are weak). */
function readHtpasswd(path: string): Map<string, string> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`clients.htpasswd: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const users = new Map<string, string>()
  for (const [i, line] of text.split(/\r?\n/).entries()) {
    if (!line.trim() || line.startsWith('#')) continue
    const colon = line.indexOf(':')
    const hash = line.slice(colon + 1).trim()
    if (colon < 1 || !/^\$2[abxy]\$\d\d\$/.test(hash)) throw new ConfigError(`clients.htpasswd: line ${i + 1} of ${path} is not a bcrypt entry (use htpasswd -B)`)
    users.set(line.slice(0, colon), hash)
  }
  if (users.size === 0) throw new ConfigError(`clients.htpasswd: ${path} has no users`)
  return users
}

// Who may use the proxy: static bearer tokens, htpasswd (bcrypt) basic auth, and client
// certificates when TLS asks for them. Without any of these configured, every client is anonymous.
// Threat: password guessing and CPU exhaustion. bcrypt runs in libuv's thread pool (the native
// `bcrypt` package), never on the event loop, on all cores but one; an address out of failed
// attempts is answered 429 before any bcrypt, and at most BCRYPT_QUEUE checks wait their turn.
import bcrypt from 'bcrypt'
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import type { TLSSocket } from 'node:tls'
import type { IncomingMessage } from 'node:http'
import type { Context, MiddlewareHandler } from 'hono'
import { LRUCache } from 'lru-cache'
import { ConfigError } from '../errors.ts'
import { readSecret } from '../config/secret.ts'
import type { Config } from '../config/schema.ts'
import { RegistryError } from '../errors.ts'
import { FailureLimiter } from './rate-limit.ts'
import { remoteAddress, header as requestHeader } from './request.ts'

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
/**
 * bcrypt checks running at once: one core is left to the event loop (threads in libuv's pool
 * still compete with it for CPU), and up to BCRYPT_QUEUE more wait their turn; beyond that, 429.
 */
const BCRYPT_RUNNING = Math.max(1, availableParallelism() - 1)
const BCRYPT_QUEUE = 32

/** What a request's credentials came to: a client name, nothing presented, presented and wrong (`counted`: already charged to the address). */
type Identity = { client: string } | 'anonymous' | 'failed' | 'counted'

export function createClientAuthenticator(config: Config['clients'], env: NodeJS.ProcessEnv = process.env): ClientAuthenticator {
  const tokens = config.tokens.map((t) => ({ name: t.name, digest: sha256(readToken(t, env)) }))
  const htpasswd = config.htpasswd ? readHtpasswd(config.htpasswd) : undefined
  const verified = new LRUCache<string, string>({ max: 10_000, ttl: VERIFIED_TTL_MS })
  const failures = new FailureLimiter(config.failedAuth)
  let bcryptRunning = 0
  const bcryptWaiting: (() => void)[] = []
  /** bcrypt.compare within BCRYPT_RUNNING at once; throws 429 when BCRYPT_QUEUE already wait. */
  const compare = async (password: string, hash: string): Promise<boolean> => {
    if (bcryptRunning >= BCRYPT_RUNNING) {
      if (bcryptWaiting.length >= BCRYPT_QUEUE) throw new RegistryError('TOOMANYREQUESTS', 'too many password checks in progress', { headers: { 'retry-after': '1' } })
      await new Promise<void>((resolve) => bcryptWaiting.push(resolve))
    }
    bcryptRunning++
    try {
      return await bcrypt.compare(password, hash)
    } finally {
      bcryptRunning--
      bcryptWaiting.shift()?.()
    }
  }
  const enabled = tokens.length > 0 || htpasswd !== undefined || config.mtls
  const rules = new Map<string, Set<string>>()
  for (const rule of config.rules) {
    const set = rules.get(rule.client) ?? new Set()
    for (const u of rule.upstreams) set.add(u)
    rules.set(rule.client, set)
  }

  /** Throws 429 while this address has no failed attempts left (before anything costly runs). */
  const checkFailures = (address: string) => {
    const wait = failures.retryAfter(address)
    if (wait !== undefined) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed authentication attempts from this address', { headers: { 'retry-after': String(wait) } })
    }
  }

  const identify = async (c: Context, address: string): Promise<Identity> => {
    if (config.mtls) {
      const socket = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket as TLSSocket | undefined
      if (socket?.authorized) {
        const cn = socket.getPeerCertificate()?.subject?.CN
        if (cn) return { client: Array.isArray(cn) ? cn[0]! : cn }
      }
    }
    const header = requestHeader(c, 'authorization') ?? ''
    if (!header) return 'anonymous'
    const [scheme, value] = [header.slice(0, header.indexOf(' ')).toLowerCase(), header.slice(header.indexOf(' ') + 1).trim()]
    if (scheme === 'bearer' && tokens.length > 0) {
      const digest = sha256(value)
      const name = tokens.find((t) => timingSafeEqual(t.digest, digest))?.name
      return name ? { client: name } : 'failed'
    }
    if (scheme === 'basic' && htpasswd) {
      const decoded = Buffer.from(value, 'base64').toString('utf8')
      const colon = decoded.indexOf(':')
      if (colon < 1) return 'failed'
      const user = decoded.slice(0, colon)
      const key = sha256(decoded).toString('hex')
      if (verified.get(key) === user) return { client: user }
      const hash = htpasswd.get(user)
      if (!hash) return 'failed'
      checkFailures(address)
      // The attempt is charged before the check, so concurrent guesses cannot all slip under the limit.
      failures.failed(address)
      let ok: boolean
      try {
        ok = await compare(decoded.slice(colon + 1), hash)
      } catch (err) {
        failures.refund(address) // refused as busy: no password was checked
        throw err
      }
      if (!ok) return 'counted'
      failures.refund(address)
      verified.set(key, user)
      return { client: user }
    }
    return 'failed'
  }

  const challenge = htpasswd ? 'Basic realm="trustpull"' : 'Bearer realm="trustpull"'
  return {
    enabled,
    allowedUpstreams: (client) => (client === undefined ? undefined : rules.get(client)),
    middleware: async function clientAuth(c, next) {
      if (!enabled) return next()
      const address = remoteAddress(c) ?? 'unknown'
      const identity = await identify(c, address)
      if (identity === 'failed') {
        checkFailures(address)
        failures.failed(address)
      }
      if (typeof identity !== 'object') {
        throw new RegistryError('UNAUTHORIZED', 'authentication required: a valid token, password or client certificate', {
          headers: { 'www-authenticate': challenge },
        })
      }
      c.set('client', identity.client)
      return next()
    },
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest()
}

function readToken(t: Config['clients']['tokens'][number], env: NodeJS.ProcessEnv): string {
  const value = readSecret(t.token, `clients.tokens[${t.name}].token`, env).trim()
  if (value.length < 16) throw new ConfigError(`clients.tokens[${t.name}]: the token is missing or shorter than 16 characters`)
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

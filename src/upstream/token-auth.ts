// Registry authentication as the distribution token spec has it, for pulls and pushes alike: learn
// the scheme from a 401 challenge, then answer later requests up front with basic credentials or
// with a bearer token bought from the challenge's realm, cached per scope and fetched once however
// many requests wait for it. The caller supplies the HTTP exchange and the errors, so each failure
// names its upstream or destination with that side's own codes.
import type { Dispatcher } from 'undici'
import { discard, readLimited } from './body.ts'
import type { Credentials } from './credentials.ts'
import { resolvesToPrivate } from './private-address.ts'
import { parseChallenge, type Challenge } from './www-authenticate.ts'

const TOKEN_BODY_LIMIT = 64 * 1024
/** Tokens without `expires_in` are valid 60 s by the token spec. */
const DEFAULT_TOKEN_SECONDS = 60
const TOKEN_EARLY_RENEWAL_MS = 10_000

/** `denied`: the token service refused the credentials (401/403); `failed`: anything else about the challenge or token. */
export type TokenFailure = 'denied' | 'failed'

export interface TokenAuthOptions {
  /** How messages name the registry, e.g. `upstream docker.io`. */
  label: string
  credentials: Credentials | undefined
  /** A GET to the token service, carrying `authorization` when given. */
  get: (url: URL, authorization: string | undefined, signal?: AbortSignal) => Promise<Dispatcher.ResponseData>
  /** Reads the token service's answer; by default a bounded read. */
  readBody?: (res: Dispatcher.ResponseData, maxBytes: number, what: string) => Promise<Buffer>
  /** Refuse a realm whose host resolves to a private address (the upstream's `refusePrivateRedirects`). */
  refusePrivateRealms?: boolean
  /** The error to throw; `scope` and `status` say which request and answer it was about. */
  error: (kind: TokenFailure, message: string, about: { scope: string; status?: number }) => Error
}

export class TokenAuth {
  readonly #options: TokenAuthOptions
  /** The last challenge seen, so later requests authenticate up front instead of after a 401. */
  #challenge: Challenge | undefined
  readonly #tokens = new Map<string, { value: string; expiresAt: number }>()
  readonly #pending = new Map<string, Promise<string | undefined>>()

  constructor(options: TokenAuthOptions) {
    this.#options = options
  }

  /** The Authorization header for `scope`: none before a challenge, or when the scheme asks for nothing we have. */
  async authorization(scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const challenge = this.#challenge
    if (!challenge) return undefined
    const { credentials } = this.#options
    if (challenge.scheme === 'basic') return credentials ? basicAuth(credentials) : undefined
    if (challenge.scheme !== 'bearer') return undefined
    const cached = this.#tokens.get(scope)
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`
    let pending = this.#pending.get(scope)
    if (!pending) {
      pending = this.#fetchToken(challenge, scope, signal).finally(() => this.#pending.delete(scope))
      this.#pending.set(scope, pending)
    }
    const token = await pending
    return token ? `Bearer ${token}` : undefined
  }

  /**
   * Learns from a 401's WWW-Authenticate value; false when it holds no challenge. The token
   * cached for `scope` was just refused, so it is dropped.
   */
  learn(wwwAuthenticate: string | undefined, scope: string): boolean {
    const challenge = parseChallenge(wwwAuthenticate ?? '')
    if (!challenge) return false
    this.#challenge = challenge
    this.#tokens.delete(scope)
    return true
  }

  async #fetchToken(challenge: Challenge, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const { label, credentials } = this.#options
    const fail = (message: string, status?: number) => this.#options.error('failed', message, { scope, status })
    const realm = challenge.params['realm']
    if (!realm) throw fail(`${label} sent a bearer challenge without realm`)
    let url: URL
    try {
      url = new URL(realm)
    } catch {
      throw fail(`${label} sent an invalid token realm`)
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw fail(`${label} sent a non-HTTP token realm`)
    if (this.#options.refusePrivateRealms && (await resolvesToPrivate(url.hostname).catch(() => true))) {
      throw fail(`${label} named a token realm at a private address (${url.hostname}); refused`)
    }
    if (challenge.params['service']) url.searchParams.set('service', challenge.params['service'])
    url.searchParams.set('scope', scope)
    const res = await this.#options.get(url, credentials ? basicAuth(credentials) : undefined, signal)
    if (res.statusCode !== 200) {
      await discard(res.body)
      const kind = res.statusCode === 401 || res.statusCode === 403 ? 'denied' : 'failed'
      throw this.#options.error(kind, `token service of ${label} answered ${res.statusCode}`, { scope, status: res.statusCode })
    }
    const read = this.#options.readBody ?? ((r, maxBytes, what) => readLimited(r.body, maxBytes, what))
    const body = await read(res, TOKEN_BODY_LIMIT, `token from ${label}`)
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown }
    try {
      parsed = JSON.parse(body.toString('utf8')) as typeof parsed
    } catch {
      throw fail(`token service of ${label} sent invalid JSON`)
    }
    const token = typeof parsed.token === 'string' ? parsed.token : typeof parsed.access_token === 'string' ? parsed.access_token : undefined
    if (!token) throw fail(`token service of ${label} sent no token`)
    const seconds = typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_SECONDS
    // Renew a little early, but never so early that a short-lived token is not reused at all.
    this.#tokens.set(scope, { value: token, expiresAt: Date.now() + seconds * 1000 - Math.min(TOKEN_EARLY_RENEWAL_MS, (seconds * 1000) / 4) })
    return token
  }
}

export function basicAuth(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`
}

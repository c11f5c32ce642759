// Per-client request rate: a token bucket per client (by name, or by address when anonymous), and
// failed authentications per address. Over either → 429 with Retry-After; buckets live in bounded
// LRUs, so no client can grow memory.
import type { MiddlewareHandler } from 'hono'
import { LRUCache } from 'lru-cache'
import { RegistryError } from '../errors.ts'
import { remoteAddress } from './request.ts'

interface Bucket {
  tokens: number
  updated: number
}

export function rateLimit(options: { requestsPerSecond: number; burst: number; now?: () => number }): MiddlewareHandler {
  const now = options.now ?? (() => performance.now())
  const buckets = new LRUCache<string, Bucket>({ max: 100_000 })
  const { requestsPerSecond: rate, burst } = options
  return async function clientRateLimit(c, next) {
    if (rate <= 0) return next()
    const key = c.get('client') ?? `addr:${remoteAddress(c) ?? 'unknown'}`
    const t = now()
    const bucket = buckets.get(key) ?? { tokens: burst, updated: t }
    bucket.tokens = Math.min(burst, bucket.tokens + ((t - bucket.updated) / 1000) * rate)
    bucket.updated = t
    if (bucket.tokens < 1) {
      buckets.set(key, bucket)
      const wait = Math.max(1, Math.ceil((1 - bucket.tokens) / rate))
      throw new RegistryError('TOOMANYREQUESTS', `more than ${rate} requests per second from this client`, { headers: { 'retry-after': String(wait) } })
    }
    bucket.tokens -= 1
    buckets.set(key, bucket)
    return next()
  }
}

/**
 * Failed authentications per key (the remote address): a bucket of `burst` failures refilled at
 * `perMinute`. `retryAfter` is asked before a credential is checked, so a guesser out of failures
 * costs one map lookup, never a bcrypt.
 */
export class FailureLimiter {
  readonly #buckets = new LRUCache<string, Bucket>({ max: 100_000 })
  readonly #burst: number
  readonly #perSecond: number
  readonly #now: () => number

  constructor(options: { burst: number; perMinute: number; now?: () => number }) {
    this.#burst = options.burst
    this.#perSecond = options.perMinute / 60
    this.#now = options.now ?? (() => performance.now())
  }

  #refilled(key: string): Bucket | undefined {
    const bucket = this.#buckets.get(key)
    if (!bucket) return undefined
    const t = this.#now()
    bucket.tokens = Math.min(this.#burst, bucket.tokens + ((t - bucket.updated) / 1000) * this.#perSecond)
    bucket.updated = t
    return bucket
  }

  /** Seconds until `key` may try again; undefined while it may. */
  retryAfter(key: string): number | undefined {
    const bucket = this.#refilled(key)
    if (!bucket || bucket.tokens >= 1) return undefined
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.#perSecond))
  }

  /** One failure (or one attempt reserved before a costly check: `refund` gives it back on success). */
  failed(key: string): void {
    const bucket = this.#refilled(key) ?? { tokens: this.#burst, updated: this.#now() }
    bucket.tokens = Math.max(0, bucket.tokens - 1)
    this.#buckets.set(key, bucket)
  }

  refund(key: string): void {
    const bucket = this.#refilled(key)
    if (bucket) bucket.tokens = Math.min(this.#burst, bucket.tokens + 1)
  }
}

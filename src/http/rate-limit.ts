// Per-client request rate: a token bucket per client (by name, or by address when anonymous).
// Over the rate → 429 with Retry-After; buckets live in a bounded LRU, so no client can grow memory.
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

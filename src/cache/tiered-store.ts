// Two tiers behind one interface: an in-process LRU (always) and Redis (when configured, shared by
// replicas). Redis trouble never fails a request: a slow, down or garbage-answering Redis is a
// miss, reported through `onEvent` and the `redisUp` state, and the client reconnects by itself.
import { randomUUID } from 'node:crypto'
import { Keyv } from 'keyv'
import KeyvRedis from '@keyv/redis'
import { LRUCache } from 'lru-cache'
import { codedError } from '../errors.ts'

export type CacheTier = 'memory' | 'redis'
export type CacheEvent = { tier: CacheTier; result: 'hit' | 'miss' | 'error'; error?: string }

export interface TieredStoreOptions {
  /** Entries kept in process. */
  memoryEntries: number
  redisUrl?: string
  /** The Redis password when it is not in the URL (config `cache.password`). */
  redisPassword?: string
  /** A Redis answer slower than this is treated as a miss. */
  redisTimeoutMs?: number
  /** Key prefix in Redis, so several deployments can share one server. */
  namespace?: string
  onEvent?: (event: CacheEvent) => void
  onRedisStateChange?: (up: boolean, error?: string) => void
}

const DEFAULT_REDIS_TIMEOUT_MS = 250

class RedisTimeoutError extends codedError('REDIS_TIMEOUT', 'RedisTimeoutError') {}

/** A lock held in Redis; releasing it twice, or after it expired, is harmless. */
export interface ReplicaLock {
  release(): Promise<void>
}

/** The two commands locks need, on the client @keyv/redis connects. */
interface LockClient {
  readonly isReady: boolean
  set(key: string, value: string, options: { condition: 'NX'; expiration: { type: 'PX'; value: number } }): Promise<string | null>
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>
}

// Deletes the lock only if it is still ours: an expired lock may have been taken by another replica.
const RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"

export class TieredStore {
  readonly #memory: LRUCache<string, { value: unknown }>
  readonly #redis: Keyv | undefined
  readonly #options: TieredStoreOptions
  #redisUp = false
  #lockClient: LockClient | undefined
  #connecting: Promise<void> = Promise.resolve()

  constructor(options: TieredStoreOptions) {
    this.#options = options
    this.#memory = new LRUCache({ max: options.memoryEntries, ttlAutopurge: false })
    if (options.redisUrl) {
      const adapter = new KeyvRedis(
        {
          url: options.redisUrl,
          ...(options.redisPassword !== undefined ? { password: options.redisPassword } : {}),
          // Commands fail at once while disconnected instead of piling up in memory.
          disableOfflineQueue: true,
          socket: { connectTimeout: 2_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 5_000) },
        },
        { throwOnConnectError: false, throwOnErrors: true, namespace: options.namespace ?? 'trustpull' },
      )
      adapter.on('error', (err: Error) => this.#troubleUnlessAnswered(err))
      this.#redis = new Keyv({
        store: adapter,
        namespace: options.namespace ?? 'trustpull',
        useKeyPrefix: false,
        throwOnErrors: true,
        serialize: JSON.stringify,
        // Garbage in Redis (another writer, corruption) reads as a miss, never as a verdict.
        deserialize: (data: string) => {
          try {
            return JSON.parse(data)
          } catch {
            return undefined
          }
        },
      })
      this.#redis.on('error', (err: Error) => this.#troubleUnlessAnswered(err))
      this.#connecting = this.#connect(adapter)
    }
  }

  /** Resolves once the first connection attempt to Redis has succeeded or failed (start-up waits for it). */
  connected(timeoutMs = 3_000): Promise<void> {
    return Promise.race([this.#connecting, new Promise<void>((r) => setTimeout(r, timeoutMs).unref())])
  }

  get redisConfigured(): boolean {
    return this.#redis !== undefined
  }

  get redisUp(): boolean {
    return this.#redisUp
  }

  async get<T>(key: string, validate: (value: unknown) => value is T): Promise<T | undefined> {
    const local = this.peek(key, validate)
    this.#emit({ tier: 'memory', result: local === undefined ? 'miss' : 'hit' })
    if (local !== undefined) return local
    return this.#getShared(key, validate, true)
  }

  /** The in-process tier only, synchronously (no metrics): closes the gap between a miss and starting work. */
  peek<T>(key: string, validate: (value: unknown) => value is T): T | undefined {
    const local = this.#memory.get(key)
    return local && validate(local.value) ? local.value : undefined
  }

  /** Redis only, not counted in the cache metrics: for polling while another replica does the work. */
  getShared<T>(key: string, validate: (value: unknown) => value is T): Promise<T | undefined> {
    return this.#getShared(key, validate, false)
  }

  /**
   * Takes a short lock in Redis (SET NX PX) so that replicas do a piece of work once between them.
   * `busy`: another holder has it. `undefined`: no Redis, or it is down: work alone.
   */
  async tryLock(name: string, ttlMs: number): Promise<ReplicaLock | 'busy' | undefined> {
    const client = this.#lockClient
    if (!client || !this.#redisUp) return undefined
    const key = `${this.#options.namespace ?? 'trustpull'}::lock:${name}`
    const token = randomUUID()
    try {
      const answer = await this.#withTimeout(client.set(key, token, { condition: 'NX', expiration: { type: 'PX', value: ttlMs } }))
      if (answer !== 'OK') return 'busy'
    } catch (err) {
      this.#redisError(err)
      return undefined
    }
    return {
      release: async () => {
        try {
          await this.#withTimeout(client.eval(RELEASE_SCRIPT, { keys: [key], arguments: [token] }))
        } catch (err) {
          this.#redisError(err) // it expires by itself
        }
      },
    }
  }

  async #getShared<T>(key: string, validate: (value: unknown) => value is T, count: boolean): Promise<T | undefined> {
    if (!this.#redis) return undefined
    try {
      const raw = await this.#withTimeout(this.#redis.get(key, { raw: true }))
      this.#setRedisUp(true)
      const value = raw?.value
      const expires = raw?.expires
      if (value === undefined || !validate(value)) {
        if (count) this.#emit({ tier: 'redis', result: 'miss' })
        return undefined
      }
      if (count) this.#emit({ tier: 'redis', result: 'hit' })
      const ttl = typeof expires === 'number' ? expires - Date.now() : undefined
      if (ttl === undefined || ttl > 0) this.#memory.set(key, { value }, { ttl })
      return value
    } catch (err) {
      this.#redisError(err)
      return undefined
    }
  }

  async set(key: string, value: unknown, ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return
    this.#memory.set(key, { value }, { ttl: ttlMs })
    if (!this.#redis) return
    try {
      await this.#withTimeout(this.#redis.set(key, value, ttlMs))
      this.#setRedisUp(true)
    } catch (err) {
      this.#redisError(err)
    }
  }

  async close(): Promise<void> {
    if (!this.#redis) return
    await Promise.race([this.#redis.disconnect().catch(() => undefined), new Promise((r) => setTimeout(r, 1_000).unref())])
  }

  async #connect(adapter: KeyvRedis<unknown>): Promise<void> {
    try {
      const client = (await adapter.getClient()) as unknown as LockClient & { on?: (e: string, f: () => void) => void }
      this.#lockClient = client
      this.#setRedisUp(client.isReady)
      client.on?.('ready', () => this.#setRedisUp(true))
      client.on?.('end', () => this.#setRedisUp(false, 'connection closed'))
    } catch (err) {
      this.#setRedisUp(false, (err as Error).message)
    }
  }

  #redisError(err: unknown): void {
    const message = (err as Error)?.message ?? String(err)
    this.#emit({ tier: 'redis', result: 'error', error: message })
    this.#troubleUnlessAnswered(err)
  }

  /** An error reply (WRONGTYPE under a key, say) comes from a Redis that answers: a miss, not an outage. */
  #troubleUnlessAnswered(err: unknown): void {
    const answered = !(err instanceof RedisTimeoutError) && this.#lockClient?.isReady === true
    if (!answered) this.#setRedisUp(false, (err as Error)?.message ?? String(err))
  }

  #withTimeout<T>(promise: Promise<T>): Promise<T> {
    return withRedisTimeout(promise, this.#options.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS)
  }

  #setRedisUp(up: boolean, error?: string): void {
    if (up === this.#redisUp) return
    this.#redisUp = up
    this.#options.onRedisStateChange?.(up, error)
  }

  #emit(event: CacheEvent): void {
    this.#options.onEvent?.(event)
  }
}

/** `promise`, or a RedisTimeoutError after `ms`: a Redis that does not answer is treated as down, never waited on. */
export function withRedisTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisTimeoutError(`redis did not answer within ${ms} ms`)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}

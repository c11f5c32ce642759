// Verdict history: the latest verdict of each digest pulled (with its evidence), when it was made,
// whether it came from the cache, and who pulled it how often. Bounded: the oldest digests are
// dropped past `size`. With Redis every replica writes into one shared history (counts batched
// once a second); without it, or while Redis is down, this process's own history answers.
// Threat: the pull path slowed or failed by bookkeeping; recording is synchronous and in memory,
// Redis writes are batched and their failures only logged.
import { LRUCache } from 'lru-cache'
import type { Verdict, VerdictResult } from '../policy/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { withRedisTimeout } from '../cache/tiered-store.ts'
import { ADMIN_PREFIX, type AdminRedis } from './redis.ts'

export interface VerdictRecord extends Verdict {
  /** The tag or digest the last client asked for. */
  reference: string
  /** When this verdict was last served (ISO 8601). */
  at: string
  /** When this digest was first seen here. */
  firstSeen: string
  cached: boolean
  durationMs: number
  /** Trust roots the deciding policies' authorities use, with their content versions. */
  trustRoots: { name: string; version: string }[]
  /** Pulls by client name (`anonymous` when unauthenticated). */
  clients: Record<string, number>
  pulls: number
}

export interface RecordInput {
  verdict: Verdict
  reference: string
  client?: string
  cached: boolean
  durationMs: number
  trustRoots: { name: string; version: string }[]
}

export interface ListQuery {
  result?: VerdictResult
  /** A policy-style glob over `<upstream>/<repository>`. */
  image?: (upstream: string, repository: string) => boolean
  limit: number
  /** Served at or after this time (ms since the epoch). */
  since?: number
}

const INDEX = `${ADMIN_PREFIX}history:index`
const DOCS = `${ADMIN_PREFIX}history:docs`
const pullsKey = (digest: string): string => `${ADMIN_PREFIX}history:pulls:${digest}`
const FLUSH_MS = 1_000
const REDIS_TIMEOUT_MS = 1_000
const ANONYMOUS = 'anonymous'
const RESULT_ORDER: Record<VerdictResult, number> = { deny: 0, error: 1, warn: 2, allow: 3 }

export class VerdictHistory {
  readonly #memory: LRUCache<string, VerdictRecord>
  readonly #redis: AdminRedis | undefined
  readonly #size: number
  readonly #logger: Logger
  /** Written to Redis at the next flush: the digests pulled since the last one, with their counts by client. */
  readonly #pending = new Map<string, Map<string, number>>()
  readonly #timer: NodeJS.Timeout | undefined

  constructor(options: { size: number; redis?: AdminRedis; logger: Logger }) {
    this.#size = options.size
    this.#memory = new LRUCache({ max: options.size })
    this.#redis = options.redis
    this.#logger = options.logger
    if (this.#redis) {
      this.#timer = setInterval(() => void this.flush(), FLUSH_MS)
      this.#timer.unref()
    }
  }

  record(input: RecordInput): void {
    const { verdict } = input
    const now = new Date().toISOString()
    const previous = this.#memory.get(verdict.digest)
    const client = input.client ?? ANONYMOUS
    const clients = { ...previous?.clients, [client]: (previous?.clients[client] ?? 0) + 1 }
    // A denylist refusal carries no evaluation of its own: keep the evidence found before.
    const policies = verdict.policies.length === 0 && previous ? previous.policies : verdict.policies
    const record: VerdictRecord = {
      ...verdict,
      policies,
      reference: input.reference,
      at: now,
      firstSeen: previous?.firstSeen ?? now,
      cached: input.cached,
      durationMs: Math.round(input.durationMs * 1000) / 1000,
      trustRoots: input.trustRoots,
      clients,
      pulls: (previous?.pulls ?? 0) + 1,
    }
    this.#memory.set(verdict.digest, record)
    if (!this.#redis) return
    const counts = this.#pending.get(verdict.digest) ?? new Map<string, number>()
    counts.set(client, (counts.get(client) ?? 0) + 1)
    this.#pending.set(verdict.digest, counts)
  }

  /** Most recent first, denies before everything else; at most `limit`. */
  async list(query: ListQuery): Promise<VerdictRecord[]> {
    const records = (await this.#shared()) ?? [...this.#memory.values()]
    return records
      .filter(
        (r) =>
          (query.result === undefined || r.result === query.result) &&
          (query.image === undefined || matchesImage(r.image, query.image)) &&
          (query.since === undefined || Date.parse(r.at) >= query.since),
      )
      .sort((a, b) => RESULT_ORDER[a.result] - RESULT_ORDER[b.result] || b.at.localeCompare(a.at))
      .slice(0, query.limit)
  }

  async get(digest: string): Promise<VerdictRecord | undefined> {
    const redis = this.#redis
    if (redis) {
      try {
        const [doc, pulls] = await withRedisTimeout(Promise.all([redis.client.hGet(DOCS, digest), redis.client.hGetAll(pullsKey(digest))]), REDIS_TIMEOUT_MS)
        if (doc) return withCounts(JSON.parse(doc) as VerdictRecord, pulls, this.#unflushed(digest))
      } catch (err) {
        this.#logger.debug({ err: (err as Error).message }, 'verdict history: redis read failed, answering from this process')
      }
    }
    return this.#memory.get(digest)
  }

  /** Writes what changed since the last flush (documents, pull counts, the index) and trims the history. */
  async flush(): Promise<void> {
    const redis = this.#redis
    if (!redis || this.#pending.size === 0) return
    const pending = [...this.#pending]
    this.#pending.clear()
    try {
      const multi = redis.client.multi()
      for (const [digest, counts] of pending) {
        const record = this.#memory.get(digest)
        if (record) {
          // Counts live in their own hash (every replica adds to it); the document is the latest verdict.
          multi.hSet(DOCS, digest, JSON.stringify({ ...record, clients: {}, pulls: 0 }))
          multi.zAdd(INDEX, { score: Date.parse(record.at), value: digest })
        }
        for (const [client, n] of counts) multi.hIncrBy(pullsKey(digest), client, n)
      }
      await withRedisTimeout(multi.exec(), REDIS_TIMEOUT_MS)
      await this.#trim(redis)
    } catch (err) {
      // Lost counts are only statistics; each document is written again at its next pull.
      this.#logger.debug({ err: (err as Error).message }, 'verdict history: redis write failed')
    }
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
    await this.flush()
  }

  async #trim(redis: AdminRedis): Promise<void> {
    const excess = (await redis.client.zCard(INDEX)) - this.#size
    if (excess <= 0) return
    const old = await redis.client.zRange(INDEX, 0, excess - 1)
    if (old.length === 0) return
    const multi = redis.client.multi().zRem(INDEX, old).hDel(DOCS, old)
    for (const digest of old) multi.del(pullsKey(digest))
    await withRedisTimeout(multi.exec(), REDIS_TIMEOUT_MS)
  }

  /** Every record in Redis, newest first; undefined without Redis or when it does not answer. */
  async #shared(): Promise<VerdictRecord[] | undefined> {
    const redis = this.#redis
    if (!redis) return undefined
    try {
      const digests = await withRedisTimeout(redis.client.zRange(INDEX, 0, -1, { REV: true }), REDIS_TIMEOUT_MS)
      if (digests.length === 0) return []
      const docs = await withRedisTimeout(redis.client.hmGet(DOCS, digests), REDIS_TIMEOUT_MS)
      const multi = redis.client.multi()
      for (const digest of digests) multi.hGetAll(pullsKey(digest))
      const counts = (await withRedisTimeout(multi.exec(), REDIS_TIMEOUT_MS)) as unknown as Record<string, string>[]
      const out: VerdictRecord[] = []
      for (const [i, doc] of docs.entries()) {
        if (!doc) continue
        try {
          out.push(withCounts(JSON.parse(doc) as VerdictRecord, counts[i] ?? {}, this.#unflushed(digests[i]!)))
        } catch {
          // another writer's garbage: not a verdict
        }
      }
      return out
    } catch (err) {
      this.#logger.debug({ err: (err as Error).message }, 'verdict history: redis read failed, answering from this process')
      return undefined
    }
  }

  #unflushed(digest: string): Map<string, number> | undefined {
    return this.#pending.get(digest)
  }
}

function withCounts(record: VerdictRecord, stored: Record<string, string>, unflushed: Map<string, number> | undefined): VerdictRecord {
  const clients: Record<string, number> = {}
  for (const [name, n] of Object.entries(stored)) clients[name] = Number(n)
  for (const [name, n] of unflushed ?? []) clients[name] = (clients[name] ?? 0) + n
  const pulls = Object.values(clients).reduce((a, b) => a + b, 0)
  return { ...record, clients, pulls }
}

function matchesImage(image: string, match: (upstream: string, repository: string) => boolean): boolean {
  const slash = image.indexOf('/')
  return slash > 0 && match(image.slice(0, slash), image.slice(slash + 1))
}

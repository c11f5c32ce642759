// The kill switch: digests, signer identities (issuer + subject) and keys that are refused whatever
// the policies say, checked on every pull before any verdict, cached or not, is used. Kept in Redis
// when cache.url is set (a change is published, and every replica reloads its copy at once), else
// in a file; either way it survives restarts. Threat: a compromised signer or image still served by
// some replica, or a denylist lost or half-read: an unreadable file stops start-up, and each change
// is audited with who made it.
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ConfigError } from '../errors.ts'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import type { SignerIdentity } from '../policy/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { KeyError, parsePublicKeys } from '../verify/keys.ts'
import { withRedisTimeout } from '../cache/tiered-store.ts'
import { ADMIN_PREFIX, type AdminRedis } from './redis.ts'

export type DenyTarget = { kind: 'digest'; digest: string } | { kind: 'identity'; issuer: string; subject: string } | { kind: 'key'; keyHint: string }

export type DenyEntry = DenyTarget & {
  /** Derived from the target: adding the same target again replaces its entry. */
  id: string
  reason: string
  addedBy: string
  addedAt: string
}

export interface DenyMatch {
  entry: DenyEntry
  /** One line for the 403 message and the audit log. */
  reason: string
}

const HASH = `${ADMIN_PREFIX}denylist`
export const DENYLIST_CHANNEL = `${ADMIN_PREFIX}denylist:changed`
/** Replicas also re-read the list this often, in case a change message was lost (Redis restarted). */
const RESYNC_MS = 10_000
const REDIS_TIMEOUT_MS = 1_000
const MAX_REASON = 500

export class Denylist {
  #entries = new Map<string, DenyEntry>()
  #digests = new Map<string, DenyEntry>()
  #identities = new Map<string, DenyEntry>()
  #keys = new Map<string, DenyEntry>()
  readonly #redis: AdminRedis | undefined
  readonly #path: string | undefined
  readonly #logger: Logger
  #timer: NodeJS.Timeout | undefined
  /** Called after the in-process copy changed (a local edit or another replica's). */
  onChange: (() => void) | undefined

  private constructor(options: { redis?: AdminRedis; path?: string; logger: Logger }) {
    this.#redis = options.redis
    this.#path = options.path
    this.#logger = options.logger
  }

  /** Loads the list (Redis, else the file); a file that exists but cannot be read stops start-up. */
  static async open(options: { redis?: AdminRedis; path: string; logger: Logger }): Promise<Denylist> {
    if (options.redis) {
      const list = new Denylist({ redis: options.redis, logger: options.logger })
      await options.redis.subscribe(
        DENYLIST_CHANNEL,
        () => void list.#reload(),
        () => void list.#reload(),
      )
      await list.#reload()
      list.#timer = setInterval(() => void list.#reload(), RESYNC_MS)
      list.#timer.unref()
      return list
    }
    const list = new Denylist({ path: options.path, logger: options.logger })
    let text: string | undefined
    try {
      text = await readFile(options.path, 'utf8')
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOENT') throw new ConfigError(`admin.denylistPath: cannot read ${options.path} (${code ?? 'error'})`)
    }
    if (text !== undefined) {
      try {
        list.#replace(parseEntries(JSON.parse(text)))
      } catch (err) {
        throw new ConfigError(`admin.denylistPath: ${options.path} is not a trustpull denylist (${(err as Error).message}); fix or remove it`)
      }
    }
    return list
  }

  get size(): number {
    return this.#entries.size
  }

  list(): DenyEntry[] {
    return [...this.#entries.values()].sort((a, b) => b.addedAt.localeCompare(a.addedAt))
  }

  /** The entry refusing this digest, or one of its verified signers; synchronous, on every pull. */
  screen(digest: string, signers: readonly SignerIdentity[] = []): DenyMatch | undefined {
    const byDigest = this.#digests.get(digest)
    if (byDigest) return { entry: byDigest, reason: `digest ${digest} is on the denylist: ${describe(byDigest)}` }
    for (const s of signers) {
      const byKey = s.keyHint ? this.#keys.get(s.keyHint) : undefined
      if (byKey) return { entry: byKey, reason: `signing key ${s.keyHint} is on the denylist: ${describe(byKey)}` }
      const byIdentity = s.issuer && s.subject ? this.#identities.get(identityKey(s.issuer, s.subject)) : undefined
      if (byIdentity) return { entry: byIdentity, reason: `signer ${s.subject} (${s.issuer}) is on the denylist: ${describe(byIdentity)}` }
    }
    return undefined
  }

  async add(target: DenyTarget, reason: string, addedBy: string): Promise<DenyEntry> {
    const entry: DenyEntry = { ...target, id: entryId(target), reason: reason.slice(0, MAX_REASON), addedBy, addedAt: new Date().toISOString() }
    await this.#write(entry.id, entry)
    this.#logger.warn({ audit: 'denylist', action: 'add', entry, client: addedBy }, 'denylist entry added')
    return entry
  }

  async remove(id: string, removedBy: string): Promise<DenyEntry | undefined> {
    const entry = this.#entries.get(id)
    if (!entry) return undefined
    await this.#write(id, undefined)
    this.#logger.warn({ audit: 'denylist', action: 'remove', entry, client: removedBy }, 'denylist entry removed')
    return entry
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer)
  }

  async #write(id: string, entry: DenyEntry | undefined): Promise<void> {
    const next = new Map(this.#entries)
    if (entry) next.set(id, entry)
    else next.delete(id)
    const redis = this.#redis
    if (redis) {
      try {
        await withRedisTimeout(entry ? redis.client.hSet(HASH, id, JSON.stringify(entry)) : redis.client.hDel(HASH, id), REDIS_TIMEOUT_MS)
        await withRedisTimeout(redis.client.publish(DENYLIST_CHANNEL, id), REDIS_TIMEOUT_MS)
      } catch (err) {
        throw new RegistryError('UNAVAILABLE', `the denylist is kept in Redis, which does not answer (${(err as Error).message}); nothing was changed`)
      }
    } else {
      const path = this.#path!
      await mkdir(dirname(path), { recursive: true })
      const temporary = `${path}.${process.pid}.tmp`
      await writeFile(temporary, `${JSON.stringify({ entries: [...next.values()] }, null, 2)}\n`, { mode: 0o600 })
      await rename(temporary, path)
    }
    this.#replace([...next.values()])
  }

  async #reload(): Promise<void> {
    const redis = this.#redis!
    try {
      const all = await withRedisTimeout(redis.client.hGetAll(HASH), REDIS_TIMEOUT_MS)
      this.#replace(parseEntries({ entries: Object.values(all).map((v) => JSON.parse(v) as unknown) }))
    } catch (err) {
      // Keep the copy we have: an outage must not empty the denylist.
      this.#logger.warn({ err: (err as Error).message, entries: this.#entries.size }, 'denylist: cannot read it from redis; keeping the copy in memory')
    }
  }

  #replace(entries: DenyEntry[]): void {
    const before = JSON.stringify([...this.#entries.keys()].sort())
    this.#entries = new Map(entries.map((e) => [e.id, e]))
    this.#digests = new Map(entries.flatMap((e) => (e.kind === 'digest' ? [[e.digest, e] as const] : [])))
    this.#identities = new Map(entries.flatMap((e) => (e.kind === 'identity' ? [[identityKey(e.issuer, e.subject), e] as const] : [])))
    this.#keys = new Map(entries.flatMap((e) => (e.kind === 'key' ? [[e.keyHint, e] as const] : [])))
    if (before !== JSON.stringify([...this.#entries.keys()].sort())) this.onChange?.()
  }
}

/** The target named by an API request body: `{digest}`, `{issuer, subject}` or `{key: PEM}` (exactly one). */
export function parseTarget(body: Record<string, unknown>): DenyTarget {
  const given = [body.digest !== undefined, body.issuer !== undefined || body.subject !== undefined, body.key !== undefined].filter(Boolean).length
  if (given !== 1) throw new RegistryError('BAD_REQUEST', 'give exactly one of digest, issuer and subject, or key (a PEM public key)')
  if (body.digest !== undefined) {
    if (typeof body.digest !== 'string' || !isDigest(body.digest)) throw new RegistryError('BAD_REQUEST', 'digest: expected sha256:<64 hex> or sha512:<128 hex>')
    return { kind: 'digest', digest: body.digest }
  }
  if (body.key !== undefined) {
    if (typeof body.key !== 'string') throw new RegistryError('BAD_REQUEST', 'key: expected a PEM public key')
    try {
      const keys = parsePublicKeys(body.key)
      if (keys.length !== 1) throw new RegistryError('BAD_REQUEST', `key: ${keys.length} public keys given where one is expected`)
      return { kind: 'key', keyHint: keys[0]!.hint }
    } catch (err) {
      if (err instanceof KeyError) throw new RegistryError('BAD_REQUEST', `key: ${err.message}`)
      throw err
    }
  }
  if (typeof body.issuer !== 'string' || typeof body.subject !== 'string' || !body.issuer || !body.subject) {
    throw new RegistryError('BAD_REQUEST', 'identity: give both issuer and subject (exact, as in the signing certificate)')
  }
  return { kind: 'identity', issuer: body.issuer, subject: body.subject }
}

export function entryId(target: DenyTarget): string {
  const what = target.kind === 'digest' ? target.digest : target.kind === 'key' ? target.keyHint : identityKey(target.issuer, target.subject)
  return `${target.kind}-${createHash('sha256').update(what).digest('hex').slice(0, 16)}`
}

function identityKey(issuer: string, subject: string): string {
  return `${issuer}\n${subject}`
}

function describe(entry: DenyEntry): string {
  return `${entry.reason || 'no reason given'} (added by ${entry.addedBy} at ${entry.addedAt})`
}

function parseEntries(document: unknown): DenyEntry[] {
  const entries = (document as { entries?: unknown } | null)?.entries
  if (!Array.isArray(entries)) throw new Error('expected {"entries": [...]}')
  return entries.map((raw: unknown, i) => {
    const e = (raw ?? {}) as Partial<Record<string, unknown>>
    let target: DenyTarget
    if (e.kind === 'key' && typeof e.keyHint === 'string' && e.keyHint) target = { kind: 'key', keyHint: e.keyHint }
    else if (e.kind === 'digest' || e.kind === 'identity') target = parseTarget(e.kind === 'digest' ? { digest: e.digest } : { issuer: e.issuer, subject: e.subject })
    else throw new Error(`entry ${i}: unknown kind`)
    if (typeof e.id !== 'string' || typeof e.addedBy !== 'string' || typeof e.addedAt !== 'string' || typeof e.reason !== 'string') throw new Error(`entry ${i} is incomplete`)
    return { ...target, id: e.id, reason: e.reason, addedBy: e.addedBy, addedAt: e.addedAt }
  })
}

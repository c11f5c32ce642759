// The operator API under /api/v1: recent verdicts (denies first), one digest's whole verdict,
// the policies and trust roots in force, health, and the denylist (the kill switch). JSON only;
// errors leave as OCI error bodies like every other answer. Threat: a request that makes the
// proxy do unbounded work (limits are capped, bodies are small) or changes the denylist unaudited.
import type { Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { duration } from '../config/units.ts'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import { compileGlob, GlobError, imageNames } from '../policy/glob.ts'
import type { VerdictResult } from '../policy/types.ts'
import { entryId, parseTarget } from './denylist.ts'
import type { AdminDeps } from './deps.ts'
import { policiesView, trustRootsView, verdictDetail, verdictSummary } from './views.ts'

const RESULTS = new Set<VerdictResult>(['deny', 'warn', 'allow', 'error'])
const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1_000
const MAX_BODY = 64 * 1024

export interface VerdictQuery {
  result?: string
  image?: string
  limit?: string
  /** Only verdicts served within this long (a duration: 24h, 90m). */
  since?: string
}

/** The verdict list a query asks for; shared with the page. Throws BAD_REQUEST naming the parameter. */
export async function listVerdicts(deps: AdminDeps, query: VerdictQuery) {
  const result = query.result || undefined
  if (result !== undefined && !RESULTS.has(result as VerdictResult)) throw new RegistryError('BAD_REQUEST', 'result: expected deny, warn, allow or error')
  const limit = query.limit ? Number(query.limit) : DEFAULT_LIMIT
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new RegistryError('BAD_REQUEST', `limit: expected a whole number from 1 to ${MAX_LIMIT}`)
  let image: ((upstream: string, repository: string) => boolean) | undefined
  if (query.image) {
    try {
      const glob = compileGlob(query.image)
      const upstreams = deps.policySet().upstreamNames
      image = (upstream, repository) => imageNames(upstream, repository, upstreams).some((n) => glob.regex.test(n))
    } catch (err) {
      if (err instanceof GlobError) throw new RegistryError('BAD_REQUEST', `image: ${err.message}`)
      throw err
    }
  }
  let since: number | undefined
  if (query.since) {
    const parsed = duration.safeParse(query.since)
    if (!parsed.success) throw new RegistryError('BAD_REQUEST', `since: "${query.since}" is not a duration (e.g. 24h)`)
    since = Date.now() - parsed.data
  }
  const records = await deps.history.list({ result: result as VerdictResult | undefined, image, limit, since })
  return records.map(verdictSummary)
}

export async function getVerdict(deps: AdminDeps, digest: string) {
  if (!isDigest(digest)) throw new RegistryError('BAD_REQUEST', 'expected a digest (sha256:<64 hex>)')
  const record = await deps.history.get(digest)
  if (!record) throw new RegistryError('NOT_FOUND', `no verdict for ${digest} in the history`)
  return { ...verdictDetail(record), denylisted: deps.denylist.screen(digest, record.signers)?.entry ?? null }
}

export function mountApi(app: Hono, deps: AdminDeps): void {
  app.use(
    '/api/v1/*',
    async (c, next) => {
      c.set('route', 'admin')
      await next()
    },
    deps.access,
  )

  app.get('/api/v1/verdicts', async (c) => c.json({ verdicts: await listVerdicts(deps, c.req.query()) }))
  app.get('/api/v1/verdicts/:digest', async (c) => c.json(await getVerdict(deps, c.req.param('digest'))))
  app.get('/api/v1/policies', (c) => c.json(policiesView(deps.policySet())))
  app.get('/api/v1/trust-roots', (c) => c.json({ trustRoots: trustRootsView(deps.trustRoots()) }))
  app.get('/api/v1/health', async (c) => {
    const state = await deps.health()
    return c.json({ ...state, denylist: { entries: deps.denylist.size } }, state.ready ? 200 : 503)
  })

  app.get('/api/v1/denylist', (c) => c.json({ entries: deps.denylist.list() }))
  const limited = bodyLimit({ maxSize: MAX_BODY, onError: () => Promise.reject(new RegistryError('BAD_REQUEST', `the body is larger than ${MAX_BODY} bytes`)) })
  app.post('/api/v1/denylist', limited, async (c) => {
    const body = await jsonBody(c.req.json())
    const reason = body.reason === undefined ? '' : body.reason
    if (typeof reason !== 'string') throw new RegistryError('BAD_REQUEST', 'reason: expected text')
    const entry = await deps.denylist.add(parseTarget(withoutReason(body)), reason, c.get('client') ?? 'loopback')
    return c.json({ entry }, 201)
  })
  app.delete('/api/v1/denylist/:id', async (c) => removeEntry(deps, c.req.param('id'), c.get('client')).then((removed) => c.json({ removed })))
  app.delete('/api/v1/denylist', limited, async (c) => {
    const id = entryId(parseTarget(withoutReason(await jsonBody(c.req.json()))))
    return c.json({ removed: await removeEntry(deps, id, c.get('client')) })
  })
}

async function removeEntry(deps: AdminDeps, id: string, client: string | undefined) {
  const removed = await deps.denylist.remove(id, client ?? 'loopback')
  if (!removed) throw new RegistryError('NOT_FOUND', `no denylist entry ${id}`)
  return removed
}

async function jsonBody(parsing: Promise<unknown>): Promise<Record<string, unknown>> {
  let body: unknown
  try {
    body = await parsing
  } catch {
    throw new RegistryError('BAD_REQUEST', 'the body is not JSON')
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new RegistryError('BAD_REQUEST', 'expected a JSON object')
  return body as Record<string, unknown>
}

function withoutReason(body: Record<string, unknown>): Record<string, unknown> {
  const { reason: _reason, ...target } = body
  return target
}

// The tags/list handler: passes through, paginated, links rewritten to this proxy's own path.
import type { Context } from 'hono'
import { RegistryError } from '../errors.ts'
import type { ResolvedRepository } from '../upstream/router.ts'

/** tags/list passes through, with pagination (`n`, `last`, `Link`) rewritten to this proxy's path. */
export async function serveTags(c: Context, target: ResolvedRepository, clientName: string): Promise<Response> {
  const n = c.req.query('n')
  const last = c.req.query('last')
  if (n !== undefined && !/^\d{1,6}$/.test(n)) throw new RegistryError('BAD_REQUEST', 'n must be a number')
  if (last !== undefined && !/^[\w][\w.-]{0,127}$/.test(last)) throw new RegistryError('BAD_REQUEST', 'last must be a tag')
  const page = await target.upstream.client.listTags(target.repository, { n, last })
  if (!page) throw new RegistryError('NAME_UNKNOWN', `repository ${target.repository} not found on ${target.upstream.config.name}`)
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  const next = page.link ? nextPageLink(page.link, clientName, c.req.query('ns')) : undefined
  if (next) headers['link'] = next
  return new Response(page.body, { status: 200, headers })
}

/** Keeps only `n` and `last` from the upstream's next-page link and points it back at us. */
function nextPageLink(link: string, clientName: string, ns: string | undefined): string | undefined {
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)
  if (!m) return undefined
  const upstreamQuery = new URL(m[1]!, 'http://upstream.invalid').searchParams
  const params = new URLSearchParams()
  for (const key of ['n', 'last']) {
    const v = upstreamQuery.get(key)
    if (v !== null) params.set(key, v)
  }
  if (ns !== undefined) params.set('ns', ns)
  return `</v2/${clientName}/tags/list?${params}>; rel="next"`
}

// Reading what a client sent: the raw path (before URL normalisation), `ns`, Accept, Range.
import type { Context } from 'hono'
import type { IncomingMessage } from 'node:http'
import { RegistryError } from '../errors.ts'

const MAX_ACCEPT_TYPES = 32

/** The path exactly as the client sent it: `..` and `%2F` must be judged before anything decodes them. */
export function rawPath(c: Context): string {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  let raw = incoming?.url ?? new URL(c.req.url).pathname
  // HTTP/1.1 allows the absolute form (`GET http://host/v2/...`): judge only its path.
  const origin = /^https?:\/\/[^/]*/i.exec(raw)
  if (origin) raw = raw.slice(origin[0].length) || '/'
  const q = raw.indexOf('?')
  return q === -1 ? raw : raw.slice(0, q)
}

/** The peer's address as the socket sees it (no forwarded headers: a client could write those). */
export function remoteAddress(c: Context): string | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket.remoteAddress
}

/** containerd names the registry it means in `?ns=`; anything ambiguous is refused. */
export function namespaceParam(c: Context): string | undefined {
  const values = c.req.queries('ns')
  if (!values || values.length === 0) return undefined
  if (values.length > 1) throw new RegistryError('BAD_REQUEST', 'more than one ns parameter')
  return values[0]
}

/**
 * A request header, read from Node's own parsed headers when the request came through
 * @hono/node-server: building a web Headers object for it costs more than the rest of a warm answer.
 */
export function header(c: Context, name: string): string | undefined {
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming
  if (!incoming) return c.req.header(name)
  const value = incoming.headers[name]
  return Array.isArray(value) ? value.join(', ') : value
}

/** Media types from every Accept header line (podman sends several), without parameters. */
export function acceptedTypes(c: Context): string[] {
  const types = (header(c, 'accept') ?? '')
    .split(',')
    .map((t) => t.split(';')[0]!.trim().toLowerCase())
    .filter((t) => t && t !== '*/*' && /^[\w.+-]+\/[\w.+-]+$/.test(t))
  return [...new Set(types)].slice(0, MAX_ACCEPT_TYPES)
}

/** One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`); anything else is refused, not forwarded. */
export function rangeHeader(c: Context): string | undefined {
  const value = header(c, 'range')
  if (value === undefined) return undefined
  const m = /^bytes=(\d{0,19})-(\d{0,19})$/.exec(value.trim())
  if (!m || (m[1] === '' && m[2] === '') || (m[1] !== '' && m[2] !== '' && BigInt(m[1]!) > BigInt(m[2]!))) {
    throw new RegistryError('RANGE_INVALID', 'malformed Range header: one range of the form bytes=START-END is supported')
  }
  return `bytes=${m[1]}-${m[2]}`
}

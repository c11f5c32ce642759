// Who may use the operator surface (/api/v1, /ui/): the clients named in clients.admins, after the
// proxy's own client authentication; with no client authentication configured, loopback callers
// only. Threat: node credentials (or anyone on the network) reading evidence or flipping the kill
// switch, and a cross-site form posting to the denylist with a browser's cached credentials.
import type { MiddlewareHandler } from 'hono'
import ipaddr from 'ipaddr.js'
import { RegistryError } from '../errors.ts'
import type { ClientAuthenticator } from '../http/client-auth.ts'
import { remoteAddress } from '../http/request.ts'

export function adminAccess(clients: ClientAuthenticator, admins: () => ReadonlySet<string>): MiddlewareHandler {
  return async function adminOnly(c, next) {
    if (!clients.enabled) {
      if (!isLoopback(remoteAddress(c))) {
        throw new RegistryError(
          'DENIED',
          'the operator API answers only on loopback while no client authentication is configured (clients.tokens, htpasswd or mtls, with clients.admins)',
        )
      }
    } else {
      // 401 (with a challenge) for no or bad credentials; the proxy's own middleware decides.
      await clients.middleware(c, async () => {})
      const client = c.get('client')
      if (client === undefined || !admins().has(client)) throw new RegistryError('DENIED', `client ${client ?? '(anonymous)'} is not in clients.admins`)
    }
    // Changes need a JSON body: a browser sends none cross-site without a CORS preflight, which is never answered.
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !(c.req.header('content-type') ?? '').startsWith('application/json')) {
      throw new RegistryError('BAD_REQUEST', 'send the request body as application/json')
    }
    c.header('cache-control', 'no-store')
    await next()
  }
}

export function isLoopback(address: string | undefined): boolean {
  if (!address || !ipaddr.isValid(address)) return false
  const parsed = ipaddr.process(address)
  return parsed.range() === 'loopback'
}

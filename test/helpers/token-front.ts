// A "token front": a small HTTP server before a real docker-registry that demands credentials as
// registries do when they split auth and storage (Docker Hub's auth.docker.io before registry-1):
// a bearer token from its token service at /token, issued for the right basic credentials only,
// good for one repository and for the lifetime it announces; or basic credentials on every
// request. What carries them is forwarded to the registry, bodies streamed both ways, and the
// front counts what it issued and passed on.
import { randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { request } from 'undici'
import { listen } from './listen.ts'
import type { Teardown } from './proc.ts'

export interface Login {
  username: string
  password: string
}

export interface TokenFrontOptions {
  /** `bearer` (a token service, the default) or `basic` (the registry takes basic credentials itself). */
  mode?: 'bearer' | 'basic'
  /** What a token may be asked for: `pull` (the default) for a proxy, `pull,push` for a copy destination. */
  actions?: string
  /** Lifetime the token service announces, in seconds. */
  expiresIn?: number
  /** Anyone gets a token, without credentials (Docker Hub's anonymous pulls). */
  anonymous?: boolean
}

export interface TokenFront {
  url: string
  /** `127.0.0.1:<port>`, for image references and auth files. */
  host: string
  /** Token requests per scope. */
  tokenRequests: Map<string, number>
  /** Scopes tokens were asked for, in order. */
  scopes: string[]
  /** Tokens issued, to check none of them is logged. */
  issued: string[]
  /** Requests passed on to the registry. */
  forwarded: number
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding'])

export const basicAuth = (login: Login): string => `Basic ${Buffer.from(`${login.username}:${login.password}`).toString('base64')}`

function repositoryOf(path: string): string | undefined {
  return /^\/v2\/(.+)\/(?:manifests|blobs|tags|referrers)\//.exec(path)?.[1]
}

export async function startTokenFront(t: Teardown, registryUrl: string, login: Login, options: TokenFrontOptions = {}): Promise<TokenFront> {
  const { mode = 'bearer', actions = 'pull', expiresIn = 300 } = options
  const credentials = basicAuth(login)
  const tokens = new Map<string, { scope: string; expiresAt: number }>()
  const front: TokenFront = { url: '', host: '', tokenRequests: new Map(), scopes: [], issued: [], forwarded: 0 }

  const issueToken = (req: IncomingMessage, res: ServerResponse, url: URL) => {
    const scope = url.searchParams.get('scope') ?? ''
    front.tokenRequests.set(scope, (front.tokenRequests.get(scope) ?? 0) + 1)
    front.scopes.push(scope)
    if (!options.anonymous && req.headers.authorization !== credentials) {
      return void res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: 'incorrect username or password' }))
    }
    if (url.searchParams.get('service') !== 'test' || /^repository:[^:]+:(.+)$/.exec(scope)?.[1] !== actions) return void res.writeHead(400).end()
    const token = randomBytes(16).toString('hex')
    tokens.set(token, { scope, expiresAt: Date.now() + expiresIn * 1000 })
    front.issued.push(token)
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: expiresIn, issued_at: new Date().toISOString() }))
  }

  const authorised = (req: IncomingMessage, repository: string | undefined): boolean => {
    const auth = req.headers.authorization ?? ''
    if (mode === 'basic') return auth === credentials
    const held = auth.startsWith('Bearer ') ? tokens.get(auth.slice('Bearer '.length)) : undefined
    if (!held || held.expiresAt < Date.now()) return false
    return repository === undefined || held.scope === `repository:${repository}:${actions}`
  }

  // The Host header goes along, so upload Locations the registry sends point back at the front.
  const forward = async (req: IncomingMessage, res: ServerResponse) => {
    front.forwarded++
    const headers: Record<string, string | string[]> = {}
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && k !== 'authorization' && !HOP_BY_HOP.has(k)) headers[k] = v
    const hasBody = req.method === 'PUT' || req.method === 'POST' || req.method === 'PATCH'
    const up = await request(`${registryUrl}${req.url}`, { method: req.method as 'GET', headers, body: hasBody ? req : null })
    const out: Record<string, string | string[]> = {}
    for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v
    res.writeHead(up.statusCode, out)
    for await (const chunk of up.body) {
      if (!res.write(chunk)) await new Promise((resolve) => res.once('drain', resolve))
    }
    res.end()
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://front.invalid')
    if (url.pathname === '/token') return issueToken(req, res, url)
    const repository = repositoryOf(url.pathname)
    if (!authorised(req, repository)) {
      const challenge =
        mode === 'basic' ? 'Basic realm="test registry"' : `Bearer realm="${front.url}/token",service="test"${repository ? `,scope="repository:${repository}:${actions}"` : ''}`
      req.resume()
      res.writeHead(401, { 'www-authenticate': challenge, 'content-type': 'application/json' })
      return void res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }))
    }
    forward(req, res).catch(() => (res.headersSent ? res.destroy() : res.writeHead(502).end()))
  })
  front.url = await listen(t, server)
  front.host = new URL(front.url).host
  return front
}

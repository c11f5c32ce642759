// The registry client for one configured upstream: pooled keep-alive connections (src/upstream/dispatcher.ts,
// through HTTPS_PROXY when set), authentication through TokenAuth (bearer tokens per scope, or basic), timeouts,
// redirects for blobs without carrying credentials to another origin, and every answer checked before it is trusted.
import { request, type Dispatcher } from 'undici'
import type { Readable } from 'node:stream'
import type { Config, UpstreamConfig } from '../config/schema.ts'
import { LimitExceededError, RegistryError } from '../errors.ts'
import { digestOf, isDigest, parseDigest } from '../oci/digest.ts'
import { baseMediaType, DEFAULT_MANIFEST_ACCEPT, Header, MediaType } from '../oci/media-types.ts'
import { abandon, discard, readLimited } from './body.ts'
import { resolveCredentials } from './credentials.ts'
import { upstreamDispatcher } from './dispatcher.ts'
import { resolvesToPrivate } from './private-address.ts'
import { span } from '../telemetry/tracing.ts'
import { TokenAuth } from './token-auth.ts'
import type { BlobResponse, FetchedManifest, RegistryClient } from './types.ts'

const MAX_REDIRECTS = 5

export interface ClientOptions {
  timeouts: Config['timeouts']
  limits: Config['limits']
  /** Overrides for tests (e.g. a dispatcher that counts). */
  dispatcher?: Dispatcher
  userAgent?: string
  /** Requests in flight to this upstream at once; one more is refused with 429, never queued without bound. */
  maxInFlight?: number
  /** Where HTTPS_PROXY / NO_PROXY are read from (default: process.env). */
  env?: NodeJS.ProcessEnv
  /** Called once per upstream exchange: status is the HTTP status or the error code. */
  observe?: (info: { upstream: string; status: string; seconds: number }) => void
}

type Method = 'GET' | 'HEAD'

export function createRegistryClient(upstream: UpstreamConfig, options: ClientOptions): UpstreamRegistryClient {
  return new UpstreamRegistryClient(upstream, options)
}

export class UpstreamRegistryClient implements RegistryClient {
  readonly name: string
  readonly #base: URL
  readonly #upstream: UpstreamConfig
  readonly #options: ClientOptions
  readonly #dispatcher: Dispatcher
  readonly #auth: TokenAuth
  #inFlight = 0

  constructor(upstream: UpstreamConfig, options: ClientOptions) {
    this.name = upstream.name
    this.#upstream = upstream
    this.#base = new URL(upstream.url)
    this.#options = options
    this.#auth = new TokenAuth({
      label: `upstream ${this.name}`,
      credentials: resolveCredentials(upstream),
      get: (url, authorization, signal) => this.#raw('GET', url, authorization ? { authorization } : {}, signal),
      readBody: (res, maxBytes, what) => this.#readBody(res, maxBytes, what),
      refusePrivateRealms: upstream.refusePrivateRedirects,
      error: (kind, message) => new RegistryError(kind === 'denied' ? 'DENIED' : 'UPSTREAM_ERROR', message),
    })
    this.#dispatcher = options.dispatcher ?? upstreamDispatcher(upstream, options.timeouts, options.env)
  }

  async close(): Promise<void> {
    await this.#dispatcher.close()
  }

  async getManifest(repository: string, reference: string, options: { accept?: string[]; maxBytes?: number; signal?: AbortSignal } = {}): Promise<FetchedManifest | undefined> {
    const fetched = await this.#manifest(repository, reference, options)
    return fetched === 'unchanged' ? undefined : fetched
  }

  async revalidateManifest(
    repository: string,
    reference: string,
    knownDigest: string,
    options: { accept?: string[]; maxBytes?: number; signal?: AbortSignal } = {},
  ): Promise<FetchedManifest | 'unchanged' | undefined> {
    return this.#manifest(repository, reference, options, knownDigest)
  }

  async #manifest(
    repository: string,
    reference: string,
    options: { accept?: string[]; maxBytes?: number; signal?: AbortSignal },
    knownDigest?: string,
  ): Promise<FetchedManifest | 'unchanged' | undefined> {
    const accept = (options.accept?.length ? options.accept : DEFAULT_MANIFEST_ACCEPT).join(', ')
    const headers: Record<string, string> = knownDigest ? { accept, 'if-none-match': `"${knownDigest}"` } : { accept }
    const res = await this.#send('GET', `/v2/${repository}/manifests/${reference}`, repository, headers, options.signal)
    if (res.statusCode === 404) return void (await discard(res.body))
    if (knownDigest && res.statusCode === 304) {
      await discard(res.body)
      return 'unchanged'
    }
    await this.#expectOk(res, `manifest ${repository}:${reference}`)
    const maxBytes = options.maxBytes ?? this.#options.limits.manifestBytes
    checkDeclaredLength(res, maxBytes, `manifest ${repository}:${reference} from ${this.name}`)
    const bytes = await this.#readBody(res, maxBytes, `manifest ${repository}:${reference} from ${this.name}`)
    const digest = this.#checkDigest(bytes, reference, headerValue(res.headers[Header.digest]), `manifest ${repository}:${reference}`)
    return { bytes, digest, mediaType: manifestMediaType(headerValue(res.headers['content-type']), bytes) }
  }

  async getBlobBytes(repository: string, digest: string, options: { maxBytes: number; signal?: AbortSignal }): Promise<Buffer | undefined> {
    const res = await this.#fetchBlob('GET', repository, digest, undefined, options.signal)
    if (!res) return undefined
    checkDeclaredLength(res, options.maxBytes, `blob ${repository}@${digest} from ${this.name}`)
    const bytes = await this.#readBody(res, options.maxBytes, `blob ${repository}@${digest} from ${this.name}`)
    if (digestOf(bytes, parseDigest(digest).algorithm) !== digest) {
      throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} served bytes that do not match blob ${digest}`)
    }
    return bytes
  }

  async getBlob(repository: string, digest: string, options: { range?: string; signal?: AbortSignal; method?: Method } = {}): Promise<BlobResponse | undefined> {
    const res = await this.#fetchBlob(options.method ?? 'GET', repository, digest, options.range, options.signal)
    if (!res) return undefined
    const length = headerValue(res.headers['content-length'])
    return {
      status: res.statusCode === 206 ? 206 : 200,
      headers: {
        contentType: headerValue(res.headers['content-type']),
        contentLength: length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined,
        contentRange: headerValue(res.headers['content-range']),
      },
      body: res.body as unknown as Readable,
    }
  }

  async getReferrers(repository: string, digest: string, options: { artifactType?: string; maxBytes?: number; signal?: AbortSignal } = {}): Promise<FetchedManifest | undefined> {
    const query = options.artifactType ? `?artifactType=${encodeURIComponent(options.artifactType)}` : ''
    const res = await this.#send('GET', `/v2/${repository}/referrers/${digest}${query}`, repository, { accept: MediaType.ociIndex }, options.signal)
    if (res.statusCode === 404) return void (await discard(res.body))
    await this.#expectOk(res, `referrers of ${repository}@${digest}`)
    const maxBytes = options.maxBytes ?? this.#options.limits.manifestBytes
    checkDeclaredLength(res, maxBytes, `referrers of ${repository}@${digest} from ${this.name}`)
    const bytes = await this.#readBody(res, maxBytes, `referrers of ${repository}@${digest} from ${this.name}`)
    return { bytes, digest: digestOf(bytes), mediaType: baseMediaType(headerValue(res.headers['content-type'])) || MediaType.ociIndex }
  }

  async listTags(repository: string, query: { n?: string; last?: string }): Promise<{ body: Buffer; link?: string } | undefined> {
    const params = new URLSearchParams()
    if (query.n !== undefined) params.set('n', query.n)
    if (query.last !== undefined) params.set('last', query.last)
    const qs = params.size ? `?${params}` : ''
    const res = await this.#send('GET', `/v2/${repository}/tags/list${qs}`, repository, { accept: 'application/json' })
    if (res.statusCode === 404) return void (await discard(res.body))
    await this.#expectOk(res, `tags of ${repository}`)
    const body = await this.#readBody(res, this.#options.limits.manifestBytes, `tag list of ${repository} from ${this.name}`)
    return { body, link: headerValue(res.headers['link']) }
  }

  /** Blob fetch with redirects followed by hand: credentials never travel to another origin. */
  async #fetchBlob(method: Method, repository: string, digest: string, range: string | undefined, signal?: AbortSignal) {
    const extra: Record<string, string> = range ? { range } : {}
    let res = await this.#send(method, `/v2/${repository}/blobs/${digest}`, repository, extra, signal)
    let url = new URL(`/v2/${repository}/blobs/${digest}`, this.#base)
    for (let hop = 0; isRedirect(res.statusCode); hop++) {
      const location = headerValue(res.headers['location'])
      await discard(res.body)
      if (!location) throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} sent a redirect without Location for blob ${digest}`)
      if (hop >= MAX_REDIRECTS) throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} redirected blob ${digest} more than ${MAX_REDIRECTS} times`)
      const next = new URL(location, url)
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} redirected blob ${digest} to a non-HTTP URL`)
      }
      if (this.#upstream.refusePrivateRedirects && (await resolvesToPrivate(next.hostname).catch(() => true))) {
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} redirected blob ${digest} to a private address (${next.hostname}); refused`)
      }
      url = next
      const sameOrigin = next.origin === this.#base.origin
      res = sameOrigin ? await this.#send(method, next.pathname + next.search, repository, extra, signal) : await this.#raw(method, next, { ...extra }, signal)
    }
    if (res.statusCode === 404) return void (await discard(res.body))
    if (res.statusCode === 416) {
      await discard(res.body)
      throw new RegistryError('RANGE_INVALID')
    }
    await this.#expectOk(res, `blob ${repository}@${digest}`)
    return res
  }

  /** One request to this upstream with authentication: up front when a scheme is known, else after a 401. */
  async #send(method: Method, path: string, repository: string, headers: Record<string, string>, signal?: AbortSignal) {
    const url = new URL(path, this.#base)
    const scope = `repository:${repository}:pull`
    const auth = await this.#auth.authorization(scope, signal)
    let res = await this.#raw(method, url, auth ? { ...headers, authorization: auth } : headers, signal)
    if (res.statusCode !== 401) return res
    const challenge = headerValue(res.headers['www-authenticate'])
    await discard(res.body)
    if (!this.#auth.learn(challenge, scope)) return this.#raw(method, url, headers, signal)
    const retryAuth = await this.#auth.authorization(scope, signal)
    if (!retryAuth || retryAuth === auth) {
      throw new RegistryError('DENIED', `upstream ${this.name} refused access to ${repository} (401)`)
    }
    res = await this.#raw(method, url, { ...headers, authorization: retryAuth }, signal)
    return res
  }

  /** A whole, bounded body: a connection that breaks or stalls mid-body is an upstream fault too (502/504). */
  async #readBody(res: Dispatcher.ResponseData, maxBytes: number, what: string): Promise<Buffer> {
    try {
      return await readLimited(res.body, maxBytes, what, { deadlineMs: this.#options.timeouts.body })
    } catch (err) {
      throw transportError(this.name, err)
    }
  }

  /** A single HTTP exchange; transport failures become RegistryErrors naming this upstream. */
  async #raw(method: Method, url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const limit = this.#options.maxInFlight ?? Infinity
    if (this.#inFlight >= limit) {
      throw new RegistryError('TOOMANYREQUESTS', `${limit} requests to upstream ${this.name} are already in flight`, { headers: { 'retry-after': '1' } })
    }
    return span('upstream.request', { 'trustpull.upstream': this.name, 'http.request.method': method, 'url.path': url.pathname }, async (s) => {
      const started = performance.now()
      this.#inFlight++
      try {
        const res = await request(url, {
          method,
          headers: { 'user-agent': this.#options.userAgent ?? 'trustpull', ...headers },
          dispatcher: this.#dispatcher,
          signal,
          headersTimeout: this.#options.timeouts.headers,
          bodyTimeout: this.#options.timeouts.body,
        })
        s?.setAttribute('http.response.status_code', res.statusCode)
        this.#options.observe?.({ upstream: this.name, status: String(res.statusCode), seconds: (performance.now() - started) / 1000 })
        // The slot is held until the body is consumed or destroyed: a streaming blob counts.
        res.body.once('close', () => this.#inFlight--)
        return res
      } catch (err) {
        this.#inFlight--
        const failure = transportError(this.name, err)
        this.#options.observe?.({ upstream: this.name, status: failure instanceof RegistryError ? failure.code : 'aborted', seconds: (performance.now() - started) / 1000 })
        throw failure
      }
    })
  }

  /** Whether the upstream answers at all (any HTTP status below 500 on `GET /v2/`), for readiness. */
  async ping(): Promise<boolean> {
    try {
      const res = await this.#raw('GET', new URL('/v2/', this.#base), {}, AbortSignal.timeout(2_000))
      await discard(res.body)
      return res.statusCode < 500
    } catch {
      return false
    }
  }

  async #expectOk(res: Dispatcher.ResponseData, what: string): Promise<void> {
    if (res.statusCode === 200 || res.statusCode === 206) return
    await discard(res.body)
    const status = res.statusCode
    if (status === 429) {
      const retryAfter = headerValue(res.headers['retry-after'])
      throw new RegistryError('TOOMANYREQUESTS', `upstream ${this.name} is rate limiting (${what})`, {
        headers: retryAfter ? { 'retry-after': retryAfter } : {},
      })
    }
    if (status === 401 || status === 403) throw new RegistryError('DENIED', `upstream ${this.name} refused access to ${what} (${status})`)
    if (status === 503) throw new RegistryError('UNAVAILABLE', `upstream ${this.name} is unavailable (503) for ${what}`)
    if (status === 504) throw new RegistryError('UPSTREAM_TIMEOUT', `upstream ${this.name} timed out (504) for ${what}`)
    throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} answered ${status} for ${what}`)
  }

  /** Integrity: the bytes must hash to the requested digest and to the upstream's own digest header. */
  #checkDigest(bytes: Buffer, reference: string, headerDigest: string | undefined, what: string): string {
    if (isDigest(reference)) {
      const actual = digestOf(bytes, parseDigest(reference).algorithm)
      if (actual !== reference) {
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} served bytes for ${what} that hash to ${actual}; refused`)
      }
      return reference
    }
    const digest = digestOf(bytes)
    if (headerDigest && isDigest(headerDigest)) {
      const actual = digestOf(bytes, parseDigest(headerDigest).algorithm)
      if (actual !== headerDigest) {
        throw new RegistryError('UPSTREAM_ERROR', `upstream ${this.name} sent ${what} whose bytes do not match its Docker-Content-Digest; refused`)
      }
    }
    return digest
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function checkDeclaredLength(res: Dispatcher.ResponseData, maxBytes: number, what: string): void {
  const declared = Number(headerValue(res.headers['content-length']) ?? NaN)
  if (declared > maxBytes) {
    abandon(res.body)
    throw new LimitExceededError(`${what} is ${declared} bytes, over the ${maxBytes}-byte limit`, maxBytes)
  }
}

/** The manifest's media type: the Content-Type, or the document's own `mediaType` when the header is generic. */
function manifestMediaType(contentType: string | undefined, bytes: Buffer): string {
  const fromHeader = baseMediaType(contentType)
  if (fromHeader && fromHeader !== 'application/json' && fromHeader !== 'application/octet-stream' && fromHeader !== 'text/plain') return fromHeader
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }
    if (typeof doc.mediaType === 'string') return doc.mediaType
  } catch {
    // not JSON: the manifest handler refuses it
  }
  return fromHeader
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'])
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'])

export function transportError(upstream: string, err: unknown): Error {
  if (err instanceof RegistryError) return err
  const e = err as { code?: string; name?: string; cause?: { code?: string } }
  if (e.name === 'AbortError') return err as Error
  const code = e.code ?? e.cause?.code ?? ''
  if (code === 'EPRIVATEADDRESS')
    return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream}: ${(e.cause as Error | undefined)?.message ?? (err as Error).message}`, { cause: err })
  if (TIMEOUT_CODES.has(code)) return new RegistryError('UPSTREAM_TIMEOUT', `upstream ${upstream} timed out (${code})`, { cause: err })
  if (UNREACHABLE_CODES.has(code)) return new RegistryError('UNAVAILABLE', `upstream ${upstream} is unreachable (${code})`, { cause: err })
  return new RegistryError('UPSTREAM_ERROR', `upstream ${upstream} failed: ${code || (err as Error).message}`, { cause: err })
}

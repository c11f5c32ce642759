// Writing into a registry through the distribution API: HEAD to skip what is there, a monolithic
// upload (POST, then PUT with the whole body) per blob, PUT per manifest. Authentication as for
// upstreams (bearer token flow with `pull,push` scope, or basic), with credentials from the config
// or a docker/podman auth file. A blob body is re-opened from the source when a write must be
// retried after a 401, since a stream cannot be sent twice.
import { pipeline, Transform, type Readable } from 'node:stream'
import { rootCertificates } from 'node:tls'
import { Agent, request, type Dispatcher } from 'undici'
import type { Config } from '../config/schema.ts'
import { digestOf, isDigest } from '../oci/digest.ts'
import { baseMediaType, DEFAULT_MANIFEST_ACCEPT, Header } from '../oci/media-types.ts'
import { verifyingStream } from '../pull/verifying-stream.ts'
import { discard, readLimited } from '../upstream/body.ts'
import type { Credentials } from '../upstream/credentials.ts'
import { TokenAuth } from '../upstream/token-auth.ts'
import type { FetchedManifest } from '../upstream/types.ts'
import { CopyError } from './errors.ts'
import type { ManifestToWrite, Target } from './target.ts'

export interface DestinationRegistry {
  /** The registry as the destination reference names it. */
  name: string
  url: string
  credentials?: Credentials
  tls?: DestinationTls
}

export interface DestinationTls {
  verify: boolean
  /** Extra CA certificates (PEM), added to the system ones. */
  ca?: string[]
  /** Client certificate and key (PEM). */
  cert?: string
  key?: string
}

/** TLS options for the destination's connections: the system CAs plus the extra ones. */
function tlsOptions(tls: DestinationTls | undefined): Record<string, unknown> {
  if (!tls) return {}
  return {
    ...(tls.verify ? {} : { rejectUnauthorized: false }),
    ...(tls.ca?.length ? { ca: [...rootCertificates, ...tls.ca] } : {}),
    ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
  }
}

type Method = 'GET' | 'HEAD' | 'PUT' | 'POST'
type Body = Buffer | Readable | undefined

interface SendOptions {
  headers?: Record<string, string>
  /** Called for every attempt: a retried request gets a fresh body. */
  body?: () => Promise<Body> | Body
}

/** One destination registry: connection pool and tokens, shared by every repository written there. */
export class PushClient {
  readonly name: string
  readonly #base: URL
  readonly #credentials: Credentials | undefined
  readonly #dispatcher: Dispatcher
  readonly #timeouts: Config['timeouts']
  readonly #manifestBytes: number
  readonly #auth: TokenAuth

  constructor(destination: DestinationRegistry, options: { timeouts: Config['timeouts']; manifestBytes: number; dispatcher?: Dispatcher }) {
    this.name = destination.name
    this.#base = new URL(destination.url)
    this.#credentials = destination.credentials
    this.#timeouts = options.timeouts
    this.#manifestBytes = options.manifestBytes
    this.#dispatcher =
      options.dispatcher ?? new Agent({ connect: { timeout: options.timeouts.connect, ...tlsOptions(destination.tls) }, keepAliveTimeout: 30_000, connections: 32 })
    this.#auth = new TokenAuth({
      label: this.name,
      credentials: this.#credentials,
      get: (url, authorization) => this.#raw('GET', url, authorization, {}),
      error: (kind, message, { scope, status }) => (kind === 'denied' ? this.#denied(scope.split(':')[1] ?? '', status ?? 401) : new CopyError('DESTINATION_ERROR', message)),
    })
  }

  target(repository: string): RegistryTarget {
    return new RegistryTarget(this, repository)
  }

  async close(): Promise<void> {
    await this.#dispatcher.close()
  }

  /** One request with authentication: up front once a scheme is known, else after a 401. */
  async send(method: Method, pathOrUrl: string, repository: string, options: SendOptions = {}): Promise<Dispatcher.ResponseData> {
    const url = new URL(pathOrUrl, this.#base)
    const sameOrigin = url.origin === this.#base.origin
    const scope = `repository:${repository}:pull,push`
    const auth = sameOrigin ? await this.#auth.authorization(scope) : undefined
    let res = await this.#raw(method, url, auth, options)
    if (res.statusCode !== 401 || !sameOrigin) return res
    const challenge = headerValue(res.headers['www-authenticate'])
    await discard(res.body)
    if (!this.#auth.learn(challenge, scope)) {
      throw new CopyError('DESTINATION_DENIED', `${this.name} refused ${method} ${url.pathname} (401) without saying how to authenticate`)
    }
    const retryAuth = await this.#auth.authorization(scope)
    if (!retryAuth || retryAuth === auth) throw this.#denied(repository, 401)
    res = await this.#raw(method, url, retryAuth, options)
    if (res.statusCode === 401) {
      await discard(res.body)
      throw this.#denied(repository, 401)
    }
    return res
  }

  #denied(repository: string, status: number): CopyError {
    const hint = this.#credentials ? 'the credentials were refused' : 'no credentials are configured for it (config upstreams[].auth or an auth file)'
    return new CopyError('DESTINATION_DENIED', `${this.name} refused to let us write ${repository} (${status}): ${hint}`)
  }

  async #raw(method: Method, url: URL, authorization: string | undefined, options: SendOptions): Promise<Dispatcher.ResponseData> {
    const body = await options.body?.()
    try {
      return await request(url, {
        method,
        headers: { 'user-agent': 'trustpull', ...options.headers, ...(authorization ? { authorization } : {}) },
        body: body ?? null,
        dispatcher: this.#dispatcher,
        headersTimeout: this.#timeouts.headers,
        bodyTimeout: this.#timeouts.body,
      })
    } catch (err) {
      if (body && typeof (body as Readable).destroy === 'function') (body as Readable).destroy()
      if (err instanceof CopyError) throw err
      const cause = (err as { cause?: unknown }).cause
      if (cause instanceof CopyError) throw cause
      const code = (err as { code?: string }).code ?? (cause as { code?: string } | undefined)?.code
      throw new CopyError('DESTINATION_ERROR', `${method} ${url.pathname} on ${this.name} failed: ${code ?? (err as Error).message}`, { cause: err })
    }
  }

  /** A URL the registry sent (an upload Location), resolved against its address. */
  url(location: string): URL {
    return new URL(location, this.#base)
  }

  get manifestBytes(): number {
    return this.#manifestBytes
  }
}

/** One repository of a destination registry. */
export class RegistryTarget implements Target {
  readonly description: string
  readonly listsRoots = false
  readonly #client: PushClient
  readonly #repository: string

  constructor(client: PushClient, repository: string) {
    this.#client = client
    this.#repository = repository
    this.description = `${client.name}/${repository}`
  }

  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.#client.send('HEAD', `/v2/${this.#repository}/blobs/${digest}`, this.#repository)
    await discard(res.body)
    if (res.statusCode === 200 || res.statusCode === 307 || res.statusCode === 302) return true
    if (res.statusCode === 404) return false
    throw await failure(res, `HEAD blob ${digest} on ${this.description}`)
  }

  async putBlob(digest: string, size: number, open: () => Promise<Readable>, onBytes?: (n: number) => void): Promise<void> {
    const start = await this.#client.send('POST', `/v2/${this.#repository}/blobs/uploads/`, this.#repository, { headers: { 'content-length': '0' } })
    if (start.statusCode !== 202) throw await failure(start, `starting an upload of ${digest} to ${this.description}`)
    await discard(start.body)
    const location = headerValue(start.headers['location'])
    if (!location) throw new CopyError('DESTINATION_ERROR', `${this.description} started an upload without a Location`)
    const upload = this.#client.url(location)
    upload.searchParams.set('digest', digest)
    const path = upload.href

    let streamError: Error | undefined
    let sent = 0
    const res = await this.#client
      .send('PUT', path, this.#repository, {
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
        body: async () => {
          const source = await open()
          sent = 0
          const count = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              sent += chunk.length
              onBytes?.(chunk.length)
              cb(null, chunk)
            },
          })
          const verify = verifyingStream(digest)
          // Recorded as they happen, before the request fails with them: the source is to blame, not the destination.
          for (const stream of [source, count, verify]) stream.once('error', (err: Error) => (streamError ??= err))
          return pipeline(source, count, verify, () => {})
        },
      })
      .catch((err: unknown) => {
        throw streamError ? new CopyError('SOURCE_ERROR', `blob ${digest} from the source: ${streamError.message}`, { cause: streamError }) : err
      })
    if (res.statusCode !== 201) throw await failure(res, `uploading blob ${digest} (${sent} of ${size} bytes) to ${this.description}`)
    await discard(res.body)
  }

  async manifestDigest(reference: string): Promise<string | undefined> {
    const res = await this.#client.send('HEAD', `/v2/${this.#repository}/manifests/${reference}`, this.#repository, { headers: { accept: DEFAULT_MANIFEST_ACCEPT.join(', ') } })
    await discard(res.body)
    if (res.statusCode === 404) return undefined
    if (res.statusCode !== 200) throw await failure(res, `HEAD manifest ${reference} on ${this.description}`)
    if (isDigest(reference)) return reference
    const digest = headerValue(res.headers[Header.digest])
    if (digest && isDigest(digest)) return digest
    return (await this.getManifest(reference))?.digest
  }

  async getManifest(reference: string): Promise<FetchedManifest | undefined> {
    const res = await this.#client.send('GET', `/v2/${this.#repository}/manifests/${reference}`, this.#repository, { headers: { accept: DEFAULT_MANIFEST_ACCEPT.join(', ') } })
    if (res.statusCode === 404) return void (await discard(res.body))
    if (res.statusCode !== 200) throw await failure(res, `GET manifest ${reference} on ${this.description}`)
    const bytes = await readLimited(res.body, this.#client.manifestBytes, `manifest ${reference} on ${this.description}`)
    const digest = digestOf(bytes)
    if (isDigest(reference) && digest !== reference) throw new CopyError('DESTINATION_ERROR', `${this.description} served other bytes for ${reference}`)
    return { bytes, digest, mediaType: baseMediaType(headerValue(res.headers['content-type'])) }
  }

  async putManifest(manifest: ManifestToWrite, options: { tag?: string } = {}): Promise<{ referrersApi: boolean }> {
    const reference = options.tag ?? manifest.digest
    const res = await this.#client.send('PUT', `/v2/${this.#repository}/manifests/${reference}`, this.#repository, {
      headers: { 'content-type': manifest.mediaType },
      body: () => manifest.bytes,
    })
    if (res.statusCode !== 201) throw await failure(res, `storing manifest ${reference} in ${this.description}`)
    await discard(res.body)
    const said = headerValue(res.headers[Header.digest])
    if (said && said !== manifest.digest) throw new CopyError('DESTINATION_ERROR', `${this.description} stored manifest ${manifest.digest} as ${said}`)
    return { referrersApi: headerValue(res.headers['oci-subject']) !== undefined }
  }

  async commit(): Promise<void> {}
  async close(): Promise<void> {}
}

/** A CopyError for an unexpected answer, with the registry's own error message when it sent one. */
async function failure(res: Dispatcher.ResponseData, what: string): Promise<CopyError> {
  let detail = ''
  try {
    const body = await readLimited(res.body, 64 * 1024, 'error body')
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: { code?: string; message?: string }[] }
    const first = parsed.errors?.[0]
    if (first) detail = `: ${[first.code, first.message].filter(Boolean).join(' ')}`
  } catch {
    res.body.destroy()
  }
  const code = res.statusCode === 401 || res.statusCode === 403 ? 'DESTINATION_DENIED' : 'DESTINATION_ERROR'
  return new CopyError(code, `${what}: HTTP ${res.statusCode}${detail}`)
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

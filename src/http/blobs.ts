import type { Context } from 'hono'
import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { LimitExceededError, RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import { Header } from '../oci/media-types.ts'
import type { ContentIndex } from '../pull/content-index.ts'
import { pumpVerified, verifyingStream } from '../pull/verifying-stream.ts'
import type { ResolvedRepository } from '../upstream/router.ts'
import { rangeHeader } from './request.ts'
import { parseCoseSign1 } from '../verify/notation/cose-sign1.ts'

export interface BlobOptions {
  contentIndex: ContentIndex
  requireAllowedManifest: boolean
  onDigestMismatch?: (info: { upstream: string; repository: string; digest: string; actual: string }) => void
  /** Called when a streamed blob answer ends: bytes written, and the error that cut it short, if any. */
  onSent?: (bytes: number, error: Error | null | undefined, source?: 'store' | 'upstream') => void
  /** The largest signature-artifact document served. */
  artifactBlobBytes: number
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * A blob only a signature artifact vouches for is served as what such blobs are: a small text
 * document (simple-signing JSON, DSSE envelope, bundle, SBOM, Notation JWS) or a Notation COSE_Sign1
 * envelope (binary, but the whole blob must be exactly one COSE_Sign1), read whole (size-capped,
 * digest checked) and refused when it is anything else binary. Anyone who can push can write a manifest that claims to
 * be a signature; it must not become a way to fetch the layers of a refused image.
 */
async function serveArtifactDocument(c: Context, options: BlobOptions, target: ResolvedRepository, digest: string): Promise<Response> {
  const name = `${target.upstream.config.name}/${target.repository}`
  const refuse = (why: string) => new RegistryError('DENIED', `blob ${digest} of ${name} is listed only by a signature artifact, and ${why}`)
  let bytes: Buffer | undefined
  try {
    bytes = await target.upstream.client.getBlobBytes(target.repository, digest, { maxBytes: options.artifactBlobBytes, signal: c.req.raw.signal })
  } catch (err) {
    if (err instanceof LimitExceededError) {
      throw refuse(`it is larger than the ${options.artifactBlobBytes}-byte limit for signature documents`)
    }
    throw err
  }
  if (!bytes) throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} not found in ${name}`)
  if (!isTextDocument(bytes) && !parseCoseSign1(bytes)) throw refuse('it is not a text document or a COSE_Sign1 envelope')
  const headers = { 'content-type': 'application/octet-stream', 'content-length': String(bytes.length), [Header.digest]: digest }
  options.onSent?.(c.req.method === 'HEAD' ? 0 : bytes.length, null)
  return new Response(c.req.method === 'HEAD' ? null : bytes, { status: 200, headers })
}

function isTextDocument(bytes: Buffer): boolean {
  if (bytes.includes(0)) return false
  try {
    utf8.decode(bytes)
    return true
  } catch {
    return false
  }
}

/**
 * HEAD and GET of a blob, streamed with backpressure. Whole-blob answers are hashed on the way
 * and cut off before their last bytes on a mismatch; partial (Range) answers cannot be hashed
 * here, and the client checks the digest of what it reassembles.
 */
export async function serveBlob(c: Context, options: BlobOptions, target: ResolvedRepository, digest: string): Promise<Response> {
  if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `invalid digest "${digest.slice(0, 200)}"`)
  const upstream = target.upstream.config.name
  if (options.requireAllowedManifest && !(await options.contentIndex.voucher(upstream, target.repository, 'blobs', digest))) {
    if (await options.contentIndex.voucher(upstream, target.repository, 'artifactBlobs', digest)) return serveArtifactDocument(c, options, target, digest)
    throw new RegistryError('DENIED', `blob ${digest} of ${upstream}/${target.repository} is not referenced by a manifest this proxy has allowed`)
  }
  const range = rangeHeader(c)
  const method = c.req.method === 'HEAD' ? 'HEAD' : 'GET'
  const res = await target.upstream.client.getBlob(target.repository, digest, { range, method, signal: c.req.raw.signal })
  if (!res) throw new RegistryError('BLOB_UNKNOWN', `blob ${digest} not found in ${upstream}/${target.repository}`)
  const headers: Record<string, string> = {
    'content-type': res.headers.contentType ?? 'application/octet-stream',
    [Header.digest]: digest,
    'accept-ranges': 'bytes',
  }
  if (res.headers.contentLength !== undefined) headers['content-length'] = String(res.headers.contentLength)
  if (res.headers.contentRange) headers['content-range'] = res.headers.contentRange
  if (method === 'HEAD') {
    res.body.resume()
    return new Response(null, { status: res.status, headers })
  }
  // A store fill checked the digest already; a stored file is hashed again as it is read (bit rot),
  // unless the scrub is on and this very file hashed right since start-up (see src/store/scrub.ts).
  const verify = res.status === 200 && !res.verified
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing
  if (!outgoing) {
    // Not on @hono/node-server (tests through app.request): a web stream does.
    const body = verify ? res.body.pipe(verifyingStream(digest, res.onMismatch)) : res.body
    return new Response(Readable.toWeb(body) as ReadableStream, { status: res.status, headers })
  }
  // Straight into Node's response, with backpressure; any failure cuts the client's connection.
  // Partial (Range) answers cannot be hashed here: the client checks what it reassembles.
  outgoing.writeHead(res.status, headers)
  outgoing.flushHeaders()
  pumpVerified(res.body, outgoing, {
    digest: verify ? digest : undefined,
    onMismatch: (actual) => (res.onMismatch ? res.onMismatch(actual) : options.onDigestMismatch?.({ upstream, repository: target.repository, digest, actual })),
    done: (bytes, err) => {
      if (verify && !err) res.onVerified?.()
      options.onSent?.(bytes, err, res.source ?? 'upstream')
    },
  })
  return RESPONSE_ALREADY_SENT
}

import type { Context } from 'hono'
import type { ServerResponse } from 'node:http'
import { pipeline, Readable } from 'node:stream'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import { Header } from '../oci/media-types.ts'
import type { ContentIndex } from '../proxy/content-index.ts'
import { verifyingStream } from '../proxy/verifying-stream.ts'
import type { ResolvedRepository } from '../upstream/router.ts'
import { rangeHeader } from './request.ts'

export interface BlobOptions {
  contentIndex: ContentIndex
  requireAllowedManifest: boolean
  onDigestMismatch?: (info: { upstream: string; repository: string; digest: string; actual: string }) => void
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
  let body: Readable = res.body
  if (res.status === 200) {
    const verifier = verifyingStream(digest, (actual) => options.onDigestMismatch?.({ upstream, repository: target.repository, digest, actual }))
    // pipeline destroys both ends on an error in either: a reset upstream or a mismatch aborts the client.
    pipeline(res.body, verifier, () => {})
    body = verifier
  }
  // Cut the client's connection ourselves, first: left to @hono/node-server, a stream error that
  // arrives while the socket waits for `drain` ends the response (final chunk included) before
  // destroying it, and a chunked answer would then look complete to the client.
  const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing
  body.once('error', () => outgoing?.destroy())
  return new Response(Readable.toWeb(body) as ReadableStream, { status: res.status, headers })
}

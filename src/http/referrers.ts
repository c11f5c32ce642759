// The referrers handler (OCI 1.1). Threat: a referrers answer for a repository the proxy does not serve.
import type { Context } from 'hono'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import type { ResolvedRepository } from '../upstream/router.ts'

/** OCI 1.1 referrers pass through; an upstream without the API keeps answering 404. */
export async function serveReferrers(c: Context, target: ResolvedRepository, digest: string): Promise<Response> {
  if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `invalid digest "${digest.slice(0, 200)}"`)
  const artifactType = c.req.query('artifactType')
  const index = await target.upstream.client.getReferrers(target.repository, digest, { artifactType, signal: c.req.raw.signal })
  if (!index) throw new RegistryError('NOT_FOUND', `${target.upstream.config.name} has no referrers API`)
  return new Response(index.bytes, { status: 200, headers: { 'content-type': index.mediaType } })
}

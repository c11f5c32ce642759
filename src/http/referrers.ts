// GET /v2/<name>/referrers/<digest>: an OCI image index of the subject's referrers, for every
// upstream (see src/pull/referrers.ts for where they come from and when they are answered), with
// the distribution spec's `artifactType` filter. The index is built here, never the upstream's
// bytes passed on: every entry in it was read and checked.
import type { Context } from 'hono'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import { Header, MediaType } from '../oci/media-types.ts'
import type { ReferrerService } from '../pull/referrers.ts'
import type { ResolvedRepository } from '../upstream/router.ts'
import { remoteAddress } from './request.ts'

export async function serveReferrers(c: Context, service: ReferrerService, target: ResolvedRepository, digest: string): Promise<Response> {
  if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `invalid digest "${digest.slice(0, 200)}"`)
  const artifactType = c.req.query('artifactType')
  const listing = await service.list(target.upstream, target.repository, digest, { name: c.get('client'), address: remoteAddress(c) })
  const entries = listing.referrers.map((r) => r.descriptor).filter((d) => artifactType === undefined || d.artifactType === artifactType)
  const body = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: entries })
  const headers: Record<string, string> = { 'content-type': MediaType.ociIndex, 'content-length': String(Buffer.byteLength(body)) }
  if (artifactType !== undefined) headers['oci-filters-applied'] = 'artifactType'
  if (listing.truncated) headers[Header.warning] = `299 trustpull "more referrers are listed upstream than limits.maxReferrers; the rest are left out"`
  return new Response(body, { status: 200, headers })
}

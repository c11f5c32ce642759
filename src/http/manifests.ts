// The manifest handler: HEAD and GET answer only the exact bytes the gate allowed, under their own
// digest, with the headers clients check. Threat: any other bytes, or a tag moved under a client.
import type { Context } from 'hono'
import { RegistryError } from '../errors.ts'
import { Header } from '../oci/media-types.ts'
import { parseReference } from '../oci/reference.ts'
import type { ManifestService } from '../pull/manifests.ts'
import type { ResolvedRepository } from '../upstream/router.ts'
import { acceptedTypes, remoteAddress } from './request.ts'

/** HEAD and GET of a manifest: the exact bytes the gate allowed, under their own digest. */
export async function serveManifest(c: Context, service: ManifestService, target: ResolvedRepository, reference: string): Promise<Response> {
  const ref = parseReference(reference)
  if (!ref) throw new RegistryError('MANIFEST_INVALID', `invalid tag or digest "${reference.slice(0, 200)}"`)
  // No client signal: the upstream fetch is shared by concurrent requests (one leaving must not
  // fail the others) and bounded by upstream timeouts; reading it would build a whole web Request.
  const m = await service.get(target.upstream, target.repository, ref, acceptedTypes(c), { name: c.get('client'), address: remoteAddress(c) })
  const headers: Record<string, string> = {
    'content-type': m.mediaType,
    'content-length': String(m.bytes.length),
    [Header.digest]: m.digest,
  }
  // 110 "Response is Stale" for a tag answered from the store during an outage; 299 for the rest.
  if (m.warnings.length)
    headers[Header.warning] = m.warnings
      .map((w) => `${m.stale && w.startsWith("served from the mirror's store") ? 110 : 299} trustpull "${w.replace(/["\\\r\n]/g, ' ')}"`)
      .join(', ')
  return new Response(c.req.method === 'HEAD' ? null : m.bytes, { status: 200, headers })
}

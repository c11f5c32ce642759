// The verdict on one image of a pod spec, reached exactly as a pull reaches it: the tag resolved
// through the proxy's manifest service and the manifest passed through the same policy gate and
// verdict cache, so a digest judged here is a cache hit when a node pulls it (and the other way
// round). Anything that is not a verified allow (a registry that is not an upstream, a name the
// kubelet could not pull, an upstream error) is a refusal: fail closed.
import { RegistryError } from '../errors.ts'
import { DEFAULT_MANIFEST_ACCEPT } from '../oci/media-types.ts'
import { matchingPolicies } from '../policy/evaluate.ts'
import type { PolicySet } from '../policy/types.ts'
import type { RequestClient } from '../pull/gate.ts'
import type { ManifestService } from '../pull/manifests.ts'
import type { UpstreamRouter } from '../upstream/router.ts'
import { parseImageReference } from './image-ref.ts'

export interface ImageJudgement {
  image: string
  allowed: boolean
  /** The digest the reference resolved to (and was judged by), when it resolved. */
  digest?: string
  /** The reference pinned to that digest, when it was given by tag and passed. */
  pinned?: string
  /** Why it was refused. */
  reason?: string
  warnings: string[]
}

export interface JudgeDeps {
  router: UpstreamRouter
  manifests: ManifestService
  policySet: () => PolicySet
}

/** What a pull asks for (containerd, docker): an index resolves to the index, judged as the index. */
const ACCEPT = [...DEFAULT_MANIFEST_ACCEPT]
const MAX_REASON = 300

export async function judgeImage(deps: JudgeDeps, image: unknown, client: RequestClient): Promise<ImageJudgement> {
  if (typeof image !== 'string') return { image: String(image).slice(0, 100), allowed: false, reason: 'no image given', warnings: [] }
  const shown = printable(image)
  const ref = parseImageReference(image)
  if (!ref) return { image: shown, allowed: false, reason: 'not a valid image reference', warnings: [] }
  const upstream = deps.router.byName(ref.registry)
  if (!upstream) return staticException(deps.policySet(), shown, ref.registry, ref.path)
  const { repository } = deps.router.resolve(upstream.config.name, ref.path)
  try {
    const served = await deps.manifests.get(upstream, repository, ref.reference, ACCEPT, client)
    return {
      image: shown,
      allowed: true,
      digest: served.digest,
      ...(ref.digest === undefined ? { pinned: ref.pinned(served.digest) } : {}),
      warnings: served.warnings,
    }
  } catch (err) {
    if (!(err instanceof RegistryError)) throw err
    return { image: shown, allowed: false, reason: err.message.slice(0, MAX_REASON), warnings: [] }
  }
}

/**
 * An image of a registry the proxy does not front cannot be resolved or verified here. It is
 * admitted only when every policy matching it admits it unconditionally (`static: pass`); a
 * warn-mode policy without one admits it with a warning.
 */
function staticException(policySet: PolicySet, shown: string, registry: string, path: string): ImageJudgement {
  const matching = matchingPolicies(policySet, registry, path)
  const passes = (p: (typeof matching)[number]) => p.authorities.some((a) => a.type === 'static' && a.action === 'pass')
  const notAnUpstream = `registry ${registry} is not an upstream of this proxy (no static pass policy covers ${registry}/${path})`
  if (matching.length === 0 || matching.some((p) => p.mode === 'enforce' && !passes(p))) return { image: shown, allowed: false, reason: notAnUpstream, warnings: [] }
  const warned = matching.filter((p) => !passes(p)).map((p) => `${shown}: not verified (warn mode): policy "${p.name}": ${notAnUpstream}`)
  return { image: shown, allowed: true, warnings: warned }
}

/** Image strings come from the object: keep them from shaping log lines or messages. */
function printable(value: string): string {
  return value.slice(0, 300).replace(/[^\x20-\x7e]/g, '?')
}

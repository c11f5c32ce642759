// The distribution API's URL grammar. Repository names contain slashes, so routes are matched
// from the end of the path, as distribution does.
import { RegistryError } from '../errors.ts'
import { isValidRepositoryName } from '../oci/reference.ts'

export type Route =
  | { kind: 'base' }
  | { kind: 'manifest'; name: string; reference: string }
  | { kind: 'blob'; name: string; digest: string }
  | { kind: 'upload'; name: string }
  | { kind: 'tags'; name: string }
  | { kind: 'referrers'; name: string; digest: string }

const PATTERNS: [RegExp, (m: RegExpExecArray) => Route][] = [
  [/^\/v2\/?$/, () => ({ kind: 'base' })],
  [/^\/v2\/(.+)\/manifests\/([^/]+)$/, (m) => ({ kind: 'manifest', name: m[1]!, reference: m[2]! })],
  [/^\/v2\/(.+)\/blobs\/uploads(?:\/[^/]*)?$/, (m) => ({ kind: 'upload', name: m[1]! })],
  [/^\/v2\/(.+)\/blobs\/([^/]+)$/, (m) => ({ kind: 'blob', name: m[1]!, digest: m[2]! })],
  [/^\/v2\/(.+)\/tags\/list$/, (m) => ({ kind: 'tags', name: m[1]! })],
  [/^\/v2\/(.+)\/referrers\/([^/]+)$/, (m) => ({ kind: 'referrers', name: m[1]!, digest: m[2]! })],
]

/**
 * Parses the raw request path (before any URL normalisation). Percent-encoding, `..`, empty
 * segments and backslashes never occur in valid names or references, so they are refused outright:
 * no decoding trick can reach another repository upstream.
 */
export function parseRoute(rawPath: string): Route | undefined {
  if (/[%\\]/.test(rawPath) || /\/\.\.?(\/|$)/.test(rawPath) || rawPath.includes('//')) {
    throw new RegistryError('NAME_INVALID', 'the request path contains encoded characters, dot segments or empty segments')
  }
  for (const [re, build] of PATTERNS) {
    const m = re.exec(rawPath)
    if (!m) continue
    const route = build(m)
    if ('name' in route && route.kind !== 'upload' && !isValidRepositoryName(route.name)) {
      throw new RegistryError('NAME_INVALID', `invalid repository name "${route.name.slice(0, 300)}"`)
    }
    return route
  }
  return undefined
}

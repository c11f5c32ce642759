// From a validated policy spec to a CompiledPolicy: the checks that need the rest of the config
// (trust roots, upstreams, key files and environment) and the material `verify` is handed.
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { isDockerHub, isHostLike, normaliseDockerHubRepository } from '../oci/image-name.ts'
import { isValidRepositoryName } from '../oci/reference.ts'
import type { AuthorityMaterial, LoadedTrustRoot } from '../verify/types.ts'
import { compileCondition } from './cel.ts'
import { compileGlob } from './glob.ts'
import { parsePublicKeys, type PublicKey } from '../verify/keys.ts'
import { loadNotation, NotationConfigError } from '../verify/notation/load.ts'
import { resolvePredicateType } from './predicate-types.ts'
import type { AuthoritySpec, PolicySpec } from './schema.ts'
import type { CompiledAuthority, CompiledPolicy, SignatureLocation } from './types.ts'

export const PUBLIC_GOOD = 'public-good'

export interface CompileContext {
  /** Loaded trust roots by name: `public-good` and every `trustRoots[].name`. */
  trustRoots: ReadonlyMap<string, LoadedTrustRoot>
  upstreamNames: readonly string[]
  env: Readonly<Record<string, string | undefined>>
  /** Relative `key.file` paths are resolved from here. */
  baseDir: string
}

export type IssuePath = (string | number)[]
export interface PolicyIssue {
  path: IssuePath
  message: string
}

export interface CompileResult {
  policy?: CompiledPolicy
  errors: PolicyIssue[]
  warnings: PolicyIssue[]
}

export function compilePolicy(name: string, origin: string, spec: PolicySpec, ctx: CompileContext): CompileResult {
  const errors: PolicyIssue[] = []
  const warnings: PolicyIssue[] = []
  const globs = spec.images.map((image, i) => {
    const glob = compileGlob(image.glob)
    if (glob.tag !== undefined) {
      const widened = `trustpull decides per digest, not per tag, so this policy applies to every tag of ${image.glob.slice(0, image.glob.length - glob.tag.length - 1)}`
      if (spec.authorities.some((a) => a.static?.action === 'pass')) {
        errors.push({ path: ['images', i, 'glob'], message: `"${image.glob}" names a tag, which cannot scope a static pass exception: ${widened}` })
      } else {
        warnings.push({ path: ['images', i, 'glob'], message: `"${image.glob}" names a tag: ${widened}` })
      }
    }
    return glob
  })
  const authorities = spec.authorities.map((a, i) => compileAuthority(a, i, ctx, errors, warnings))
  if (spec.servePassingPlatforms && !spec.requirePlatformSignatures) {
    errors.push({ path: ['servePassingPlatforms'], message: 'servePassingPlatforms needs requirePlatformSignatures: true (it decides per platform, which only that does)' })
  }
  if (errors.length > 0) return { errors, warnings }
  return {
    policy: {
      name,
      origin,
      mode: spec.mode ?? 'enforce',
      globs,
      requirePlatformSignatures: spec.requirePlatformSignatures ?? false,
      servePassingPlatforms: spec.servePassingPlatforms ?? false,
      authorities: authorities as CompiledAuthority[],
    },
    errors,
    warnings,
  }
}

function compileAuthority(a: AuthoritySpec, index: number, ctx: CompileContext, errors: PolicyIssue[], warnings: PolicyIssue[]): CompiledAuthority | undefined {
  const at = (...path: IssuePath): IssuePath => ['authorities', index, ...path]
  const name = a.name ?? `authority-${index}`
  if (a.static) return { name, type: 'static', action: a.static.action, ...(a.static.message ? { message: a.static.message } : {}) }
  if (a.notation) {
    const sources = compileSources(a, at, ctx, errors)
    try {
      const loaded = loadNotation(a.notation, ctx.baseDir)
      for (const w of loaded.warnings) warnings.push({ path: at('notation', w.field), message: w.message })
      return sources ? { name, type: 'notation', material: loaded.material, sources } : undefined
    } catch (err) {
      if (!(err instanceof NotationConfigError)) throw err
      errors.push({ path: at('notation', err.field), message: err.message })
      return undefined
    }
  }

  const before = errors.length
  const root = (ref: string, path: IssuePath): LoadedTrustRoot | undefined => {
    const found = ctx.trustRoots.get(ref)
    if (!found) {
      const known = [...ctx.trustRoots.keys()].join(', ') || 'none loaded'
      errors.push({
        path,
        message:
          ref === PUBLIC_GOOD ? `the built-in ${PUBLIC_GOOD} trust root is not loaded` : `unknown trust root "${ref}": known roots are ${known} (configure it under trustRoots)`,
      })
    }
    return found
  }
  // The schema has ensured every trustRootRef given on the authority names the same root.
  const refPath: IssuePath | undefined = a.keyless?.trustRootRef
    ? at('keyless', 'trustRootRef')
    : a.ctlog?.trustRootRef
      ? at('ctlog', 'trustRootRef')
      : a.rfc3161timestamp?.trustRootRef
        ? at('rfc3161timestamp', 'trustRootRef')
        : undefined
  const ref = a.keyless?.trustRootRef ?? a.ctlog?.trustRootRef ?? a.rfc3161timestamp?.trustRootRef ?? undefined
  const timestamped = a.rfc3161timestamp !== undefined && a.rfc3161timestamp !== null
  const ctlogConfigured = Boolean(a.ctlog && (a.ctlog.url || a.ctlog.trustRootRef))

  if (a.ctlog?.url && !a.ctlog.trustRootRef && !ref && !/^https:\/\/rekor\.sigstore\.dev\/?$/.test(a.ctlog.url)) {
    warnings.push({
      path: at('ctlog', 'url'),
      message: `${a.ctlog.url} is not contacted: log entries are checked offline against the ${PUBLIC_GOOD} trust root; name a trust root holding this log's key with trustRootRef`,
    })
  }

  let material: AuthorityMaterial | undefined
  if (a.keyless) {
    const trustRoot = root(ref ?? PUBLIC_GOOD, refPath ?? at('keyless'))
    if (a.ctlog && !ctlogConfigured) {
      warnings.push({
        path: at('ctlog'),
        message: 'an empty ctlog turns transparency-log checks off in policy-controller; trustpull still requires a log entry (or a timestamp) for keyless signatures',
      })
    }
    if (a.keyless.url && !ref && !/^https:\/\/fulcio\.sigstore\.dev\/?$/.test(a.keyless.url)) {
      warnings.push({
        path: at('keyless', 'url'),
        message: `${a.keyless.url} is not contacted: certificates are checked against the ${PUBLIC_GOOD} trust root; name a trust root holding this CA with trustRootRef`,
      })
    }
    const identities = (a.keyless.identities ?? []).map((id, i) => {
      for (const field of ['issuerRegExp', 'subjectRegExp'] as const) {
        const pattern = id[field]
        if (pattern && isCatchAll(pattern)) {
          const what = field === 'subjectRegExp' ? 'any subject: every identity the issuer vouches for is accepted' : 'any issuer'
          warnings.push({ path: at('keyless', 'identities', i, field), message: `"${pattern}" matches ${what}` })
        }
      }
      return {
        ...(id.issuer ? { issuer: id.issuer } : {}),
        ...(id.issuerRegExp ? { issuerRegExp: id.issuerRegExp } : {}),
        ...(id.subject ? { subject: id.subject } : {}),
        ...(id.subjectRegExp ? { subjectRegExp: id.subjectRegExp } : {}),
      }
    })
    if (trustRoot) {
      // With rfc3161timestamp a TSA timestamp may stand in for the log entry, unless ctlog asks for one too.
      const requireTlog = timestamped ? ctlogConfigured : true
      material = { type: 'keyless', identities, trustRoot, ignoreSCT: a.keyless.insecureIgnoreSCT ?? false, requireTlog }
    }
  } else if (a.key) {
    const keys = readKeys(a.key, at('key'), ctx, errors)
    // Without ctlog a key signature needs no log entry (cosign --tlog-upload=false), as in policy-controller.
    const trustRoot = ref !== undefined ? root(ref, refPath!) : ctlogConfigured ? root(PUBLIC_GOOD, at('ctlog')) : ctx.trustRoots.get(PUBLIC_GOOD)
    const hashAlgorithm = a.key.hashAlgorithm ?? undefined
    if (keys) {
      material = {
        type: 'key',
        keys: keys.map((k) => ({ ...k, ...(hashAlgorithm ? { hashAlgorithm } : {}) })),
        requireTlog: ctlogConfigured,
        ...(trustRoot ? { trustRoot } : {}),
      }
    }
  }

  const sources = compileSources(a, at, ctx, errors) ?? []
  const attestations = (a.attestations ?? []).map((att) => ({
    name: att.name,
    predicateType: resolvePredicateType(att.predicateType)!,
    ...(att.policy?.data ? { condition: compileCondition(att.policy.data) } : {}),
  }))
  if (errors.length > before || !material) return undefined
  return {
    name,
    type: a.keyless ? 'keyless' : 'key',
    material,
    sources,
    ...(a.signatureFormat ? { signatureFormat: a.signatureFormat } : {}),
    attestations,
  }
}

/** `source[].oci` → locations; undefined (with the errors recorded) when one is refused. */
function compileSources(a: AuthoritySpec, at: (...path: IssuePath) => IssuePath, ctx: CompileContext, errors: PolicyIssue[]): SignatureLocation[] | undefined {
  const before = errors.length
  const sources = (a.source ?? []).flatMap((s, i) => {
    const location = s.oci ? parseSourceLocation(s.oci, ctx.upstreamNames) : undefined
    if (typeof location === 'string') errors.push({ path: at('source', i, 'oci'), message: location })
    return typeof location === 'object' ? [location] : []
  })
  return errors.length > before ? undefined : sources
}

function readKeys(key: NonNullable<AuthoritySpec['key']>, path: IssuePath, ctx: CompileContext, errors: PolicyIssue[]): PublicKey[] | undefined {
  let pem: string
  let field: string
  if (key.data) {
    pem = key.data
    field = 'data'
  } else if (key.file) {
    field = 'file'
    const file = resolve(ctx.baseDir, key.file)
    try {
      pem = readFileSync(file, 'utf8')
    } catch (err) {
      errors.push({ path: [...path, field], message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` })
      return undefined
    }
  } else if (key.env) {
    field = 'env'
    const value = ctx.env[key.env]
    if (value === undefined || value === '') {
      errors.push({ path: [...path, field], message: `environment variable ${key.env} is not set` })
      return undefined
    }
    pem = value
  } else {
    return undefined
  }
  try {
    return parsePublicKeys(pem)
  } catch (err) {
    errors.push({ path: [...path, field], message: (err as Error).message })
    return undefined
  }
}

/** `source[].oci`: `[registry/]repository`, the registry being a configured upstream. A string is a reason for refusal. */
export function parseSourceLocation(oci: string, upstreamNames: readonly string[]): SignatureLocation | string {
  const value = oci.trim()
  const segments = value.split('/')
  let registry: string
  let repository: string
  if (segments.length > 1 && isHostLike(segments[0]!)) {
    registry = segments[0]!.toLowerCase()
    repository = segments.slice(1).join('/')
  } else {
    registry = 'docker.io'
    repository = normaliseDockerHubRepository(value)
  }
  if (repository.includes('@') || repository.includes(':')) return `"${oci}" must name a repository, without tag or digest`
  if (!isValidRepositoryName(repository)) return `"${oci}": "${repository}" is not a valid repository name`
  const upstream = isDockerHub(registry) ? upstreamNames.find((u) => isDockerHub(u)) : upstreamNames.find((u) => u.toLowerCase() === registry)
  if (!upstream) return `registry "${registry}" is not a configured upstream (upstreams[].name: ${upstreamNames.join(', ') || 'none'})`
  return { upstream, repository }
}

// Strings that no deliberate identity pattern should match all at once.
const UNRELATED_IDENTITIES = [
  'x',
  'https://github.com/attacker/repo/.github/workflows/evil.yml@refs/heads/main',
  'attacker@evil.example',
  'https://accounts.evil.example',
  'system:serviceaccount:evil:default',
]

/** A regexp (unanchored, as cosign applies it) that matches any identity, e.g. `.*` or `^.+$`. */
export function isCatchAll(pattern: string): boolean {
  const re = new RegExp(pattern)
  return UNRELATED_IDENTITIES.every((s) => re.test(s))
}

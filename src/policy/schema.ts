// The shape of a policy: Sigstore policy-controller's ClusterImagePolicy `spec` (v1alpha1 and
// v1beta1), inline in the config (with a `name`) or as CIP documents in `policyDirs`.
// Everything checkable without the rest of the config is checked here; fields trustpull does not
// support are declared so they can be refused by name, never ignored. Unknown keys are refused.
import { z } from 'zod'
import { compileCondition, ConditionError } from './cel.ts'
import { compileGlob, GlobError } from './glob.ts'
import { PREDICATE_TYPES, resolvePredicateType } from './predicate-types.ts'

// In Kubernetes YAML `field:` with no value means "not set": accept null wherever a value is optional.
const optional = <T extends z.ZodType>(schema: T) => schema.nullish()
const present = (value: unknown) => value !== undefined && value !== null
/** Declared only to be refused with a message naming the feature. */
const refused = z.unknown().optional()

type Ctx = z.core.$RefinementCtx
const fail = (ctx: Ctx, path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message })

const nonEmpty = (what: string) => z.string().min(1, `${what} must not be empty`)

export const HASH_ALGORITHMS = ['sha224', 'sha256', 'sha384', 'sha512'] as const

function kmsScheme(value: unknown): string {
  const scheme = typeof value === 'string' ? /^([a-z0-9]+):\/\//i.exec(value)?.[1] : undefined
  return scheme ? `${scheme}://` : 'kms'
}

/** `key`: a public key PEM given inline (`data`, as CIP) or, as trustpull extensions, from a file or an environment variable. */
const keyRef = z
  .strictObject({
    data: optional(z.string()),
    file: optional(nonEmpty('key.file')),
    env: optional(nonEmpty('key.env')),
    hashAlgorithm: optional(z.enum(HASH_ALGORITHMS, { error: `expected one of ${HASH_ALGORITHMS.join(', ')}` })),
    kms: refused,
    secretRef: refused,
  })
  .superRefine((key, ctx) => {
    if (present(key.kms)) {
      fail(ctx, ['kms'], `KMS keys (${kmsScheme(key.kms)}) are unsupported: give the public key PEM as data, file or env`)
    }
    if (present(key.secretRef)) fail(ctx, ['secretRef'], 'Kubernetes secretRef is unsupported: give the public key PEM as data, file or env')
    const given = (['data', 'file', 'env'] as const).filter((k) => present(key[k]) && key[k] !== '')
    if (given.length === 0 && !present(key.kms) && !present(key.secretRef)) {
      fail(ctx, [], 'give exactly one of data (PEM public key), file or env')
    }
    if (given.length > 1) fail(ctx, [], `give only one of data, file or env (got ${given.join(', ')})`)
    // The PEM itself (data, file or env alike) is parsed by compile.ts, so the message names the policy.
  })

function checkRegExp(ctx: Ctx, field: string, value: string): void {
  try {
    new RegExp(value)
  } catch (err) {
    fail(ctx, [field], `invalid regular expression "${value}": ${(err as Error).message}`)
  }
}

/** A keyless identity: an issuer and a subject, each exact or a regular expression. */
const identity = z
  .strictObject({
    issuer: optional(nonEmpty('issuer')),
    issuerRegExp: optional(nonEmpty('issuerRegExp')),
    subject: optional(nonEmpty('subject')),
    subjectRegExp: optional(nonEmpty('subjectRegExp')),
  })
  .superRefine((id, ctx) => {
    for (const [exact, regexp] of [
      ['issuer', 'issuerRegExp'],
      ['subject', 'subjectRegExp'],
    ] as const) {
      if (present(id[exact]) && present(id[regexp])) fail(ctx, [exact], `give only one of ${exact} or ${regexp}`)
      if (!present(id[exact]) && !present(id[regexp])) {
        fail(ctx, [exact], `missing ${exact} (or ${regexp}): a keyless identity needs both an issuer and a subject`)
      }
      const pattern = id[regexp]
      if (typeof pattern === 'string') checkRegExp(ctx, regexp, pattern)
    }
  })

const keylessRef = z
  .strictObject({
    /** Informational: certificates are checked against the authority's trust root, not fetched from here. */
    url: optional(z.url({ error: 'expected a URL' })),
    identities: optional(z.array(identity)),
    trustRootRef: optional(nonEmpty('trustRootRef')),
    insecureIgnoreSCT: optional(z.boolean()),
    'ca-cert': refused,
  })
  .superRefine((keyless, ctx) => {
    if (!keyless.identities || keyless.identities.length === 0) {
      fail(ctx, ['identities'], 'missing identities: a keyless authority needs at least one identity with both an issuer and a subject')
    }
    const ca = keyless['ca-cert'] as Record<string, unknown> | null | undefined
    if (present(ca)) {
      const how =
        typeof ca === 'object' && ca !== null && present(ca.secretRef)
          ? 'from a Kubernetes secretRef'
          : typeof ca === 'object' && ca !== null && present(ca.kms)
            ? `from KMS (${kmsScheme(ca.kms)})`
            : 'given inline'
      fail(ctx, ['ca-cert'], `custom CA certificates (ca-cert, ${how}) are unsupported: configure a trust root (trustRoots[].file) holding the CA and name it with trustRootRef`)
    }
  })

const NOTATION_LEVELS = ['strict', 'permissive', 'audit', 'skip'] as const

/**
 * `notation`: notation's own files (`trustStore` directory holding `x509/`, `trustPolicy` file), or
 * inline certificates, identities and level (one statement for every image the policy matches).
 * The files' content is checked by compile.ts, with notation's rules.
 */
const notationRef = z
  .strictObject({
    trustStore: optional(nonEmpty('trustStore')),
    trustPolicy: optional(nonEmpty('trustPolicy')),
    certificates: optional(nonEmpty('certificates')),
    trustedIdentities: optional(z.array(z.string())),
    level: optional(z.enum(NOTATION_LEVELS, { error: `expected one of ${NOTATION_LEVELS.join(', ')}` })),
    /** Revocation services are never contacted; `offline` says so explicitly (air gaps). */
    revocation: optional(z.enum(['offline'], { error: 'expected offline' })),
  })
  .superRefine((n, ctx) => {
    const files = present(n.trustStore) || present(n.trustPolicy)
    const inline = present(n.certificates) || present(n.trustedIdentities) || present(n.level)
    if (files && inline) fail(ctx, [], "give either trustStore and trustPolicy (notation's files) or certificates, trustedIdentities and level (inline), not both")
    else if (files) {
      if (!present(n.trustStore)) fail(ctx, ['trustStore'], 'missing trustStore: the directory holding x509/ca/NAME/*.pem')
      if (!present(n.trustPolicy)) fail(ctx, ['trustPolicy'], 'missing trustPolicy: the trustpolicy.json file')
    } else if (inline) {
      if (!present(n.level)) fail(ctx, ['level'], 'missing level: strict, permissive, audit or skip')
    } else fail(ctx, [], 'give trustStore and trustPolicy, or certificates, trustedIdentities and level')
  })

const staticRef = z.strictObject({
  action: z.enum(['pass', 'fail'], { error: 'expected pass or fail' }),
  message: optional(z.string()),
})

const source = z
  .strictObject({
    oci: optional(nonEmpty('oci')),
    signaturePullSecrets: refused,
    tagPrefix: refused,
  })
  .superRefine((s, ctx) => {
    if (present(s.signaturePullSecrets)) {
      fail(ctx, ['signaturePullSecrets'], 'Kubernetes signaturePullSecrets are unsupported: configure credentials with upstreams[].auth')
    }
    if (present(s.tagPrefix)) fail(ctx, ['tagPrefix'], 'tagPrefix (prefixed signature tags) is unsupported')
    if (!present(s.oci) && !present(s.signaturePullSecrets) && !present(s.tagPrefix)) fail(ctx, ['oci'], 'missing oci: the repository holding the signatures')
  })

const tlog = z.strictObject({
  /** Informational: entries are checked offline against the trust root's log keys. */
  url: optional(z.url({ error: 'expected a URL' })),
  trustRootRef: optional(nonEmpty('trustRootRef')),
})

const rfc3161timestamp = z.strictObject({ trustRootRef: optional(nonEmpty('trustRootRef')) })

const POLICY_FEATURES: Record<string, string> = {
  remote: 'remote policies (policy.remote) are unsupported: write the CEL expression inline in policy.data',
  url: 'remote policies (policy.url) are unsupported: write the CEL expression inline in policy.data',
  configMapRef: 'ConfigMap policies (policy.configMapRef) are unsupported: write the CEL expression inline in policy.data',
  fetchConfigFile: 'policy.fetchConfigFile (conditions on the image config) is unsupported',
  includeSpec: 'policy.includeSpec is unsupported: trustpull sees images, not Kubernetes resources',
  includeObjectMeta: 'policy.includeObjectMeta is unsupported: trustpull sees images, not Kubernetes resources',
  includeTypeMeta: 'policy.includeTypeMeta is unsupported: trustpull sees images, not Kubernetes resources',
}

/** A condition (`policy:` of an attestation, or of a whole CIP). Only inline CEL is supported. */
export const condition = z
  .strictObject({
    type: optional(z.string()),
    data: optional(z.string()),
    remote: refused,
    url: refused,
    configMapRef: refused,
    fetchConfigFile: refused,
    includeSpec: refused,
    includeObjectMeta: refused,
    includeTypeMeta: refused,
  })
  .superRefine((p, ctx) => {
    for (const [field, message] of Object.entries(POLICY_FEATURES)) {
      if (present(p[field as keyof typeof p])) fail(ctx, [field], message)
    }
    const type = p.type ?? undefined
    if (type === 'cue' || type === 'rego') {
      fail(ctx, ['type'], `${type === 'cue' ? 'CUE' : 'Rego'} policies are unsupported: write the condition in CEL (type: cel)`)
    } else if (type !== 'cel') {
      fail(ctx, ['type'], type === undefined ? 'missing type: expected cel' : `unknown policy type "${type}": expected cel`)
    } else if (typeof p.data !== 'string' || p.data.trim() === '') {
      fail(ctx, ['data'], 'missing data: the CEL expression')
    } else {
      try {
        compileCondition(p.data)
      } catch (err) {
        if (!(err instanceof ConditionError)) throw err
        fail(ctx, ['data'], `invalid CEL expression: ${err.message}`)
      }
    }
  })

const attestation = z
  .strictObject({
    name: nonEmpty('name'),
    predicateType: nonEmpty('predicateType'),
    policy: optional(condition),
  })
  .superRefine((a, ctx) => {
    if (resolvePredicateType(a.predicateType) === undefined) {
      fail(ctx, ['predicateType'], `unknown predicateType "${a.predicateType}": use a full URI or one of ${Object.keys(PREDICATE_TYPES).join(', ')}`)
    }
  })

const authority = z
  .strictObject({
    name: optional(nonEmpty('name')),
    key: optional(keyRef),
    keyless: optional(keylessRef),
    static: optional(staticRef),
    notation: optional(notationRef),
    source: optional(z.array(source)),
    ctlog: optional(tlog),
    rfc3161timestamp: optional(rfc3161timestamp),
    signatureFormat: optional(z.enum(['legacy', 'bundle'], { error: 'expected legacy or bundle' })),
    attestations: optional(z.array(attestation)),
  })
  .superRefine((a, ctx) => {
    const kinds = (['key', 'keyless', 'static', 'notation'] as const).filter((k) => present(a[k]))
    if (kinds.length !== 1) {
      fail(ctx, [], kinds.length === 0 ? 'give exactly one of key, keyless or static (or notation)' : `give exactly one of key, keyless or static (got ${kinds.join(' and ')})`)
    }
    if (present(a.notation)) {
      for (const k of ['attestations', 'ctlog', 'rfc3161timestamp', 'signatureFormat'] as const) {
        if (present(a[k])) fail(ctx, [k], `a notation authority takes no ${k} (the trust policy decides what is checked)`)
      }
    }
    if (present(a.static)) {
      for (const k of ['attestations', 'source', 'ctlog', 'rfc3161timestamp', 'signatureFormat'] as const) {
        if (present(a[k])) fail(ctx, [k], `a static authority takes no ${k}`)
      }
    }
    if (present(a.key) && present(a.rfc3161timestamp)) {
      fail(ctx, ['rfc3161timestamp'], 'rfc3161timestamp on a key authority (a required TSA timestamp) is unsupported')
    }
    // One trust root per authority: certificates, log entries and timestamps are checked together.
    const refs = [
      ['keyless', a.keyless?.trustRootRef],
      ['ctlog', a.ctlog?.trustRootRef],
      ['rfc3161timestamp', a.rfc3161timestamp?.trustRootRef],
    ].filter((r): r is [string, string] => typeof r[1] === 'string')
    const distinct = new Set(refs.map((r) => r[1]))
    if (distinct.size > 1) {
      fail(ctx, [refs[1]![0], 'trustRootRef'], `different trust roots in one authority are unsupported (${refs.map(([f, r]) => `${f}: ${r}`).join(', ')})`)
    }
  })

const imagePattern = z.strictObject({ glob: nonEmpty('glob') }).superRefine((image, ctx) => {
  try {
    compileGlob(image.glob)
  } catch (err) {
    if (!(err instanceof GlobError)) throw err
    fail(ctx, ['glob'], err.message)
  }
})

/** The fields of a ClusterImagePolicy `spec`, plus trustpull's `requirePlatformSignatures`. */
export const policySpecShape = {
  images: z.array(imagePattern).min(1, 'missing images: at least one glob'),
  authorities: z.array(authority, { error: 'missing authorities' }).min(1, 'missing authorities: at least one key, keyless or static authority'),
  mode: optional(z.enum(['enforce', 'warn'], { error: 'expected enforce or warn' })),
  /** trustpull: an image index passes only when every platform manifest it lists passes on its own. */
  requirePlatformSignatures: optional(z.boolean()),
  /**
   * trustpull, with requirePlatformSignatures: an index is served when at least one platform passes;
   * the platforms that fail are left out of what it vouches for, so each is refused when fetched.
   */
  servePassingPlatforms: optional(z.boolean()),
  policy: refused,
  match: refused,
}

function refuseSpecFeatures(spec: { policy?: unknown; match?: unknown }, ctx: Ctx): void {
  if (present(spec.policy)) {
    fail(ctx, ['policy'], 'a policy over the whole ClusterImagePolicy (spec.policy) is unsupported: put CEL conditions on attestations')
    // Name each feature the document relies on, so the message says what would be lost.
    const p = typeof spec.policy === 'object' && spec.policy !== null ? (spec.policy as Record<string, unknown>) : {}
    for (const [field, message] of Object.entries(POLICY_FEATURES)) if (present(p[field])) fail(ctx, ['policy', field], message)
    if (p.type === 'cue' || p.type === 'rego') fail(ctx, ['policy', 'type'], `${p.type === 'cue' ? 'CUE' : 'Rego'} policies are unsupported`)
  }
  if (present(spec.match)) fail(ctx, ['match'], 'match (selecting Kubernetes resources) is unsupported: trustpull sees images, not resources')
}

export const policySpecSchema = z.strictObject(policySpecShape).superRefine(refuseSpecFeatures)

/** An inline policy in the config: a name plus the fields of a CIP spec. */
export const inlinePolicySchema = z.strictObject({ name: z.string().min(1, 'missing name').max(253), ...policySpecShape }).superRefine(refuseSpecFeatures)

export const CIP_API_VERSIONS = ['policy.sigstore.dev/v1alpha1', 'policy.sigstore.dev/v1beta1'] as const

/** A ClusterImagePolicy document as policy-controller takes it. */
export const clusterImagePolicySchema = z.strictObject({
  apiVersion: z.enum(CIP_API_VERSIONS, { error: `expected apiVersion ${CIP_API_VERSIONS.join(' or ')}` }),
  kind: z.literal('ClusterImagePolicy', { error: 'expected kind ClusterImagePolicy' }),
  metadata: z.looseObject({ name: z.string({ error: 'missing metadata.name' }).min(1, 'missing metadata.name') }),
  spec: policySpecSchema,
  /** Written by the controller in a cluster; meaningless here but harmless in an exported document. */
  status: z.unknown().optional(),
})

export type PolicySpec = z.output<typeof policySpecSchema>
export type InlinePolicy = z.output<typeof inlinePolicySchema>
export type ClusterImagePolicyDocument = z.output<typeof clusterImagePolicySchema>
export type AuthoritySpec = PolicySpec['authorities'][number]
export type IdentitySpec = NonNullable<NonNullable<AuthoritySpec['keyless']>['identities']>[number]

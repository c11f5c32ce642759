// Inline `policies:` through the real config parser, policyDirs, and what start-up refuses or warns about.
import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toTrustMaterial } from '@sigstore/verify'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/errors.ts'
import { loadPolicies, type LoadPoliciesOptions } from '../../src/policy/load.ts'
import type { LoadedTrustRoot } from '../../src/verify/types.ts'

function trustRoot(name: string, version = '1'): LoadedTrustRoot {
  const root = TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  })
  return { name, version, material: toTrustMaterial(root), source: 'test' }
}

const roots = new Map([
  ['public-good', trustRoot('public-good')],
  ['corp-sigstore', trustRoot('corp-sigstore')],
])
const options: LoadPoliciesOptions = { trustRoots: roots, env: {} }

const pem = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }) as string
const KEY = pem()
const GITHUB = 'https://token.actions.githubusercontent.com'
const WORKFLOW = 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main'

const keyless = (identity: Record<string, string> = { issuer: GITHUB, subject: WORKFLOW }, extra: Record<string, unknown> = {}) => ({
  keyless: { identities: [identity], ...extra },
})

/** parseConfig then loadPolicies, as start-up does. */
function load(config: Record<string, unknown>, opts: LoadPoliciesOptions = options) {
  return loadPolicies(parseConfig(config), opts)
}

function refusal(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  throw new Error('expected a ConfigError')
}

t.test('the issue example loads', async (t) => {
  const { policySet, warnings } = load({
    policies: [
      {
        name: 'release-images',
        images: [{ glob: 'ghcr.io/my-org/**' }],
        authorities: [keyless(), { key: { data: KEY } }],
      },
    ],
  })
  t.same(warnings, [])
  t.equal(policySet.noMatchPolicy, 'deny', 'noMatchPolicy defaults to deny')
  const [policy] = policySet.policies
  t.equal(policy?.name, 'release-images')
  t.equal(policy?.mode, 'enforce')
  t.equal(policy?.origin, 'config policies[0]')
  const [first, second] = policy!.authorities
  t.equal(first?.name, 'authority-0', 'authorities are named as policy-controller names them')
  t.ok(first?.type === 'keyless' && first.material.type === 'keyless' && first.material.trustRoot === roots.get('public-good'), 'keyless defaults to the public-good root')
  t.ok(first?.type === 'keyless' && first.material.type === 'keyless' && first.material.requireTlog === true)
  t.ok(second?.type === 'key' && second.material.type === 'key' && second.material.keys[0]!.key.asymmetricKeyType === 'ec')
  t.ok(second?.type === 'key' && second.material.type === 'key' && second.material.requireTlog === false, 'a key without ctlog needs no log entry')
})

t.test('a keyless authority without both issuer and subject refuses start-up, naming the field', async (t) => {
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [keyless({ issuer: GITHUB })] }] })),
    'policies.0.authorities.0.keyless.identities.0.subject: missing subject (or subjectRegExp)',
  )
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [keyless({ subjectRegExp: '^https://github.com/my-org/' })] }] })),
    'policies.0.authorities.0.keyless.identities.0.issuer: missing issuer (or issuerRegExp)',
  )
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [{ keyless: { url: 'https://fulcio.sigstore.dev' } }] }] })),
    'policies.0.authorities.0.keyless.identities: missing identities',
  )
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [keyless({ issuer: GITHUB, issuerRegExp: 'x', subject: WORKFLOW })] }] })),
    'give only one of issuer or issuerRegExp',
  )
})

t.test('an invalid regexp or CEL expression refuses start-up', async (t) => {
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [keyless({ issuer: GITHUB, subjectRegExp: '(unclosed' })] }] })),
    /policies\.0\.authorities\.0\.keyless\.identities\.0\.subjectRegExp: invalid regular expression "\(unclosed"/,
  )
  const withCondition = (data: string) => ({
    policies: [
      {
        name: 'p',
        images: [{ glob: '**' }],
        authorities: [{ ...keyless(), attestations: [{ name: 'built', predicateType: 'slsaprovenance', policy: { type: 'cel', data } }] }],
      },
    ],
  })
  const field = 'policies.0.authorities.0.attestations.0.policy.data: invalid CEL expression'
  t.match(
    refusal(() => load(withCondition('predicate.builder.id =='))),
    field,
    'a syntax error',
  )
  t.match(
    refusal(() => load(withCondition('predicateType + 1 == 2'))),
    field,
    'a type error',
  )
  t.match(
    refusal(() => load(withCondition('predicateType'))),
    `${field}: the expression yields string, not a bool`,
    'a non-bool result',
  )
  t.match(
    refusal(() => load(withCondition('statement.predicate == 1'))),
    field,
    'an unknown variable',
  )
  t.match(
    refusal(() => load(withCondition(' '))),
    'policies.0.authorities.0.attestations.0.policy.data: missing data',
  )
  t.match(
    refusal(() =>
      load({
        ...withCondition('true'),
        policies: [{ ...withCondition('true').policies[0]!, authorities: [{ ...keyless(), attestations: [{ name: 'x', predicateType: 'slsaprovanance' }] }] }],
      }),
    ),
    'policies.0.authorities.0.attestations.0.predicateType: unknown predicateType "slsaprovanance"',
  )
  t.ok(load(withCondition('predicate.builder.id == "https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main"')).policySet.policies[0])
})

t.test('an unknown trust root refuses start-up; a configured one is used', async (t) => {
  const policy = (trustRootRef: string) => ({ name: 'corp', images: [{ glob: 'corp.example/**' }], authorities: [keyless(undefined, { trustRootRef })] })
  t.match(
    refusal(() => load({ policies: [policy('nope')] })),
    /config policies\[0\] \(policy "corp"\): authorities\[0\]\.keyless\.trustRootRef: unknown trust root "nope": known roots are public-good, corp-sigstore/,
  )
  const authority = load({ policies: [policy('corp-sigstore')] }).policySet.policies[0]!.authorities[0]!
  t.equal(authority.type === 'keyless' && authority.material.trustRoot?.name, 'corp-sigstore')

  const keyed = load({ policies: [{ name: 'k', images: [{ glob: '**' }], authorities: [{ key: { data: KEY }, ctlog: { trustRootRef: 'corp-sigstore' } }] }] })
  const k = keyed.policySet.policies[0]!.authorities[0]!
  t.ok(
    k.type === 'key' && k.material.type === 'key' && k.material.requireTlog && k.material.trustRoot?.name === 'corp-sigstore',
    'ctlog.trustRootRef picks the root and requires a log entry',
  )

  t.match(
    refusal(() =>
      load({
        policies: [{ name: 'k', images: [{ glob: '**' }], authorities: [{ ...keyless(undefined, { trustRootRef: 'corp-sigstore' }), ctlog: { trustRootRef: 'public-good' } }] }],
      }),
    ),
    'different trust roots in one authority are unsupported',
  )
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], authorities: [keyless()] }] }, { trustRoots: new Map() })),
    'the built-in public-good trust root is not loaded',
  )
})

t.test('a keyless authority with rfc3161timestamp may use a timestamp instead of a log entry', async (t) => {
  const { policySet } = load({ policies: [{ name: 'tsa', images: [{ glob: '**' }], authorities: [{ ...keyless(), rfc3161timestamp: { trustRootRef: 'corp-sigstore' } }] }] })
  const a = policySet.policies[0]!.authorities[0]!
  t.ok(a.type === 'keyless' && a.material.type === 'keyless' && a.material.requireTlog === false && a.material.trustRoot.name === 'corp-sigstore')
})

t.test('every unsupported feature refuses start-up, saying so', async (t) => {
  const base = { name: 'p', images: [{ glob: '**' }] }
  const cases: [string, unknown, string][] = [
    [
      'KMS key',
      { ...base, authorities: [{ key: { kms: 'awskms:///arn:aws:kms:us-east-2:111122223333:key/1234' } }] },
      'authorities.0.key.kms: KMS keys (awskms://) are unsupported',
    ],
    ['GCP KMS key', { ...base, authorities: [{ key: { kms: 'gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k' } }] }, 'KMS keys (gcpkms://) are unsupported'],
    ['secretRef', { ...base, authorities: [{ key: { secretRef: { name: 's' } } }] }, 'authorities.0.key.secretRef: Kubernetes secretRef is unsupported'],
    [
      'ca-cert',
      { ...base, authorities: [{ ...keyless(), keyless: { ...keyless().keyless, 'ca-cert': { data: 'x' } } }] },
      'keyless.ca-cert: custom CA certificates (ca-cert, given inline) are unsupported',
    ],
    [
      'CUE',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'cue', data: 'x' } }] }] },
      'attestations.0.policy.type: CUE policies are unsupported',
    ],
    [
      'Rego',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'rego', data: 'x' } }] }] },
      'attestations.0.policy.type: Rego policies are unsupported',
    ],
    ['match', { ...base, match: [{ resource: 'pods', version: 'v1' }], authorities: [keyless()] }, 'policies.0.match: match (selecting Kubernetes resources) is unsupported'],
    [
      'policy.remote',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'cel', remote: { url: 'https://x' } } }] }] },
      'policy.remote: remote policies (policy.remote) are unsupported',
    ],
    [
      'policy.url',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'cel', url: 'https://x' } }] }] },
      'policy.url: remote policies (policy.url) are unsupported',
    ],
    [
      'ConfigMap',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'cel', configMapRef: { name: 'cm' } } }] }] },
      'policy.configMapRef: ConfigMap policies (policy.configMapRef) are unsupported',
    ],
    [
      'includeSpec',
      { ...base, authorities: [{ ...keyless(), attestations: [{ name: 'a', predicateType: 'custom', policy: { type: 'cel', data: 'true', includeSpec: true } }] }] },
      'policy.includeSpec: policy.includeSpec is unsupported',
    ],
    [
      'includeObjectMeta',
      { ...base, policy: { type: 'cue', data: 'x', includeObjectMeta: true }, authorities: [keyless()] },
      'policies.0.policy.includeObjectMeta: policy.includeObjectMeta is unsupported',
    ],
    [
      'includeTypeMeta',
      { ...base, policy: { type: 'cue', data: 'x', includeTypeMeta: true }, authorities: [keyless()] },
      'policies.0.policy.includeTypeMeta: policy.includeTypeMeta is unsupported',
    ],
    [
      'CIP policy',
      { ...base, policy: { type: 'cel', data: 'true' }, authorities: [keyless()] },
      'policies.0.policy: a policy over the whole ClusterImagePolicy (spec.policy) is unsupported',
    ],
    [
      'signaturePullSecrets',
      { ...base, authorities: [{ ...keyless(), source: [{ oci: 'ghcr.io/org/sigs', signaturePullSecrets: [{ name: 's' }] }] }] },
      'source.0.signaturePullSecrets: Kubernetes signaturePullSecrets are unsupported',
    ],
    ['tagPrefix', { ...base, authorities: [{ ...keyless(), source: [{ tagPrefix: 'x' }] }] }, 'source.0.tagPrefix: tagPrefix (prefixed signature tags) is unsupported'],
  ]
  for (const [what, policy, expected] of cases)
    t.match(
      refusal(() => load({ policies: [policy] })),
      expected,
      what,
    )
})

t.test('structural mistakes are refused with the field named', async (t) => {
  const base = { name: 'p', images: [{ glob: '**' }] }
  t.match(
    refusal(() => load({ policies: [{ ...base, autorities: [] }] })),
    'policies.0: unknown key "autorities"',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ key: { data: KEY }, keyless: keyless().keyless }] }] })),
    'policies.0.authorities.0: give exactly one of key, keyless or static (got key and keyless)',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ static: { action: 'maybe' } }] }] })),
    'policies.0.authorities.0.static.action: expected pass or fail',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ static: { action: 'pass' }, source: [{ oci: 'ghcr.io/x/y' }] }] }] })),
    'policies.0.authorities.0.source: a static authority takes no source',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, images: [], authorities: [keyless()] }] })),
    'policies.0.images: missing images',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, mode: 'audit', authorities: [keyless()] }] })),
    'policies.0.mode: expected enforce or warn',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ key: { data: KEY, file: '/x' } }] }] })),
    'give only one of data, file or env (got data, file)',
  )
  const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ key: { data: privateKey } }] }] })),
    'config policies[0] (policy "p"): authorities[0].key.data: this is a private key',
  )
  t.match(
    refusal(() =>
      load({
        policies: [
          { ...base, authorities: [keyless()] },
          { ...base, authorities: [keyless()] },
        ],
      }),
    ),
    'policy name "p" is defined twice: in config policies[0] and in config policies[1]',
  )
})

t.test('keys from a file or an environment variable', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trustpull-keys-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'pkcs1', format: 'pem' }) as string
  writeFileSync(join(dir, 'cosign.pub'), KEY + rsa)
  const base = { name: 'p', images: [{ glob: '**' }] }
  const fromFile = load({ policies: [{ ...base, authorities: [{ key: { file: 'cosign.pub', hashAlgorithm: 'sha384' } }] }] }, { ...options, configDir: dir })
  const a = fromFile.policySet.policies[0]!.authorities[0]!
  t.ok(a.type === 'key' && a.material.type === 'key')
  if (a.type !== 'key' || a.material.type !== 'key') return
  t.same(
    a.material.keys.map((k) => [k.key.asymmetricKeyType, k.hashAlgorithm]),
    [
      ['ec', 'sha384'],
      ['rsa', 'sha384'],
    ],
    'a file may hold several keys; relative to the config file',
  )

  const fromEnv = load({ policies: [{ ...base, authorities: [{ key: { env: 'RELEASE_KEY' } }] }] }, { ...options, env: { RELEASE_KEY: KEY } })
  t.ok(fromEnv.policySet.policies[0])
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ key: { env: 'RELEASE_KEY' } }] }] })),
    'authorities[0].key.env: environment variable RELEASE_KEY is not set',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, authorities: [{ key: { file: 'missing.pub' } }] }] }, { ...options, configDir: dir })),
    /authorities\[0\]\.key\.file: cannot read .*missing\.pub: ENOENT/,
  )
})

t.test('warnings: catch-all identities, tag globs, URLs that are not contacted', async (t) => {
  const base = { name: 'p', images: [{ glob: 'ghcr.io/org/**' }] }
  for (const pattern of ['.*', '^.*$', '.+', '(.*)', '[\\s\\S]*']) {
    const { warnings } = load({ policies: [{ ...base, authorities: [keyless({ issuer: GITHUB, subjectRegExp: pattern })] }] })
    t.match(warnings.join('\n'), `authorities[0].keyless.identities[0].subjectRegExp: "${pattern}" matches any subject`, pattern)
  }
  const issuer = load({ policies: [{ ...base, authorities: [keyless({ issuerRegExp: '.*', subject: WORKFLOW })] }] })
  t.match(issuer.warnings.join('\n'), 'issuerRegExp: ".*" matches any issuer')
  const precise = load({
    policies: [{ ...base, authorities: [keyless({ issuer: GITHUB, subjectRegExp: '^https://github\\.com/org/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v' })] }],
  })
  t.same(precise.warnings, [], 'a precise regexp is not warned about')

  const tagged = load({ policies: [{ ...base, images: [{ glob: 'ghcr.io/org/app:v1' }], authorities: [keyless()] }] })
  t.match(
    tagged.warnings.join('\n'),
    'images[0].glob: "ghcr.io/org/app:v1" names a tag: trustpull decides per digest, not per tag, so this policy applies to every tag of ghcr.io/org/app',
  )
  t.match(
    refusal(() => load({ policies: [{ ...base, images: [{ glob: 'ghcr.io/org/app:trusted' }], authorities: [{ static: { action: 'pass' } }] }] })),
    'images[0].glob: "ghcr.io/org/app:trusted" names a tag, which cannot scope a static pass exception',
  )
  const emptyCtlog = load({ policies: [{ ...base, authorities: [{ ...keyless(), ctlog: {} }] }] })
  t.match(emptyCtlog.warnings.join('\n'), 'authorities[0].ctlog: an empty ctlog turns transparency-log checks off in policy-controller')
})

t.test('source.oci names a repository of a configured upstream', async (t) => {
  const base = { name: 'p', images: [{ glob: '**' }] }
  const upstreams = [
    { name: 'docker.io', url: 'https://registry-1.docker.io', default: true },
    { name: 'ghcr.io', url: 'https://ghcr.io' },
  ]
  const { policySet } = load({
    upstreams,
    policies: [{ ...base, authorities: [{ ...keyless(), source: [{ oci: 'ghcr.io/org/signatures' }, { oci: 'org/sigs' }, { oci: 'index.docker.io/other/sigs' }] }] }],
  })
  const a = policySet.policies[0]!.authorities[0]!
  t.same(a.type === 'keyless' && a.sources, [
    { upstream: 'ghcr.io', repository: 'org/signatures' },
    { upstream: 'docker.io', repository: 'org/sigs' },
    { upstream: 'docker.io', repository: 'other/sigs' },
  ])
  t.match(
    refusal(() => load({ upstreams, policies: [{ ...base, authorities: [{ ...keyless(), source: [{ oci: 'quay.io/org/sigs' }] }] }] })),
    'authorities[0].source[0].oci: registry "quay.io" is not a configured upstream (upstreams[].name: docker.io, ghcr.io)',
  )
  t.match(
    refusal(() => load({ upstreams, policies: [{ ...base, authorities: [{ ...keyless(), source: [{ oci: 'ghcr.io/org/sigs:latest' }] }] }] })),
    'must name a repository, without tag or digest',
  )
})

t.test('policyDirs: every ClusterImagePolicy document, files only', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'trustpull-policies-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cip = (name: string, glob: string) => `apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata:
  name: ${name}
spec:
  images:
  - glob: "${glob}"
  authorities:
  - static:
      action: pass
`
  writeFileSync(join(dir, 'a.yaml'), `${cip('one', 'ghcr.io/one/**')}---\n${cip('two', 'ghcr.io/two/**')}---\n`)
  writeFileSync(join(dir, 'README.md'), 'notes')
  mkdirSync(join(dir, 'nested'))
  mkdirSync(join(dir, '..data')) // a Kubernetes ConfigMap mount's internals
  writeFileSync(join(dir, '..data', 'a.yaml'), cip('one', 'x'))
  const { policySet, warnings } = load({ policyDirs: [dir], policies: [{ name: 'inline', images: [{ glob: '**' }], authorities: [{ static: { action: 'pass' } }] }] })
  t.same(
    policySet.policies.map((p) => [p.name, p.origin]),
    [
      ['inline', 'config policies[0]'],
      ['one', `${join(dir, 'a.yaml')} (document 1)`],
      ['two', `${join(dir, 'a.yaml')} (document 2)`],
    ],
  )
  t.match(warnings.join('\n'), `${join(dir, 'README.md')} not read: not a .yaml, .yml or .json file`)
  t.match(warnings.join('\n'), `${join(dir, 'nested')} not read: subdirectories are not searched`)

  writeFileSync(join(dir, 'b.yml'), cip('inline', '**'))
  t.match(
    refusal(() => load({ policyDirs: [dir], policies: [{ name: 'inline', images: [{ glob: '**' }], authorities: [{ static: { action: 'pass' } }] }] })),
    `policy name "inline" is defined twice: in config policies[0] and in ${join(dir, 'b.yml')}`,
  )
  rmSync(join(dir, 'b.yml'))

  writeFileSync(join(dir, 'c.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n')
  t.match(
    refusal(() => load({ policyDirs: [dir] })),
    `${join(dir, 'c.yaml')} (ClusterImagePolicy "x"): kind: expected kind ClusterImagePolicy`,
  )
  writeFileSync(join(dir, 'c.yaml'), 'kind: [unclosed\n')
  t.match(
    refusal(() => load({ policyDirs: [dir] })),
    `${join(dir, 'c.yaml')}: not valid YAML`,
  )
  rmSync(join(dir, 'c.yaml'))

  t.match(
    refusal(() => load({ policyDirs: [join(dir, 'absent')] })),
    /policyDirs: cannot read .*absent: ENOENT/,
  )
})

t.test('the fingerprint changes with anything that changes a verdict, and only then', async (t) => {
  const policies = [
    { name: 'a', images: [{ glob: 'ghcr.io/a/**' }], authorities: [{ key: { data: KEY } }] },
    { name: 'b', images: [{ glob: 'ghcr.io/b/**' }], authorities: [keyless(undefined, { trustRootRef: 'corp-sigstore' })] },
  ]
  const fp = (config: Parameters<typeof load>[0], opts = options) => load(config, opts).policySet.fingerprint
  const base = fp({ policies })
  t.match(base, /^[0-9a-f]{64}$/)
  t.equal(fp({ policies }), base, 'stable across loads')
  t.equal(fp({ policies: [...policies].reverse() }), base, 'policy order does not count')
  t.not(fp({ policies, noMatchPolicy: 'allow' }), base, 'noMatchPolicy')
  t.not(fp({ policies: [{ ...policies[0]!, authorities: [{ key: { data: pem() } }] }, policies[1]!] }), base, 'a key')
  t.not(fp({ policies: [{ ...policies[0]!, mode: 'warn' }, policies[1]!] }), base, 'a mode')
  t.not(fp({ policies: [{ ...policies[0]!, images: [{ glob: 'ghcr.io/a/*' }] }, policies[1]!] }), base, 'a glob')
  t.not(fp({ policies }, { ...options, trustRoots: new Map([...roots, ['corp-sigstore', trustRoot('corp-sigstore', '2')]]) }), base, "a trust root's version")
})

t.test('servePassingPlatforms needs requirePlatformSignatures', async (t) => {
  t.match(
    refusal(() => load({ policies: [{ name: 'p', images: [{ glob: '**' }], servePassingPlatforms: true, authorities: [{ key: { data: KEY } }] }] })),
    /servePassingPlatforms.*needs requirePlatformSignatures/,
  )
  const { policySet } = load({
    policies: [{ name: 'p', images: [{ glob: '**' }], requirePlatformSignatures: true, servePassingPlatforms: true, authorities: [{ key: { data: KEY } }] }],
  })
  t.equal(policySet.policies[0]?.servePassingPlatforms, true)
  const off = load({ policies: [{ name: 'p', images: [{ glob: '**' }], requirePlatformSignatures: true, authorities: [{ key: { data: KEY } }] }] })
  t.equal(off.policySet.policies[0]?.servePassingPlatforms, false, 'off by default')
  t.not(off.policySet.fingerprint, policySet.fingerprint, 'part of the verdict cache key')
})

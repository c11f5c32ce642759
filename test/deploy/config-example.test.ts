// config.example.yaml is the reference users copy from: it must load as it is, and it must
// mention every key the config schema knows.
import t from 'tap'
import { createPublicKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { parseConfig } from '../../src/config/load.ts'
import { configSchema } from '../../src/config/schema.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { PUBLIC_GOOD, publicGoodTrustRoot } from '../../src/verify/trust-root.ts'

const EXAMPLE = new URL('../../config.example.yaml', import.meta.url)
const text = readFileSync(EXAMPLE, 'utf8')
const example = parseYaml(text, { uniqueKeys: true }) as Record<string, unknown>

/** Every key path of an object schema (through defaults, optionals, arrays and transforms). */
function keyPaths(schema: z.core.$ZodType, prefix: string[] = [], skip: ReadonlySet<string> = new Set()): string[][] {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string }
  switch (def.type) {
    case 'object': {
      const shape = def.shape as Record<string, z.core.$ZodType>
      return Object.entries(shape).flatMap(([key, child]) => {
        const path = [...prefix, key]
        return skip.has(path.join('.')) ? [path] : [path, ...keyPaths(child, path, skip)]
      })
    }
    case 'default':
    case 'prefault':
    case 'optional':
    case 'nullable':
    case 'readonly':
      return keyPaths(def.innerType as z.core.$ZodType, prefix, skip)
    case 'array':
      return keyPaths(def.element as z.core.$ZodType, prefix, skip)
    case 'pipe':
      return keyPaths(def.in as z.core.$ZodType, prefix, skip)
    case 'union':
      return (def.options as z.core.$ZodType[]).flatMap((o) => keyPaths(o, prefix, skip))
    default:
      return []
  }
}

interface ExamplePolicy {
  name: string
  images: { glob: string }[]
  authorities: {
    keyless?: { identities: { issuer?: string; subjectRegExp?: string }[] }
    key?: { data?: string }
    static?: { action: string }
  }[]
}

t.test('config.example.yaml loads with parseConfig', async (t) => {
  const config = parseConfig(example, 'config.example.yaml')
  t.equal(config.listen, '0.0.0.0:5000', 'listens on every interface, as in a container')
  t.same(
    config.upstreams.map((u) => u.name),
    ['docker.io', 'ghcr.io', 'registry.corp.example'],
  )
  t.same(
    config.upstreams.filter((u) => u.default).map((u) => u.name),
    ['docker.io'],
    'Docker Hub is the one default upstream (registry-mirrors clients name no registry)',
  )
  t.equal(config.upstreams.find((u) => u.name === 'registry.corp.example')?.auth?.password.file, '/etc/trustpull/credentials/registry.corp.example')
  t.equal(config.noMatchPolicy, 'deny', 'the example keeps the fail-closed default')
  t.equal(config.cache.allowTTL, 3_600_000)
  t.equal(config.cache.denyTTL, 60_000)
  t.equal(config.limits.manifestBytes, 4 * 1024 * 1024)
  t.equal(config.blobs.requireAllowedManifest, true)
  t.equal(config.telemetry.metrics.listen, '0.0.0.0:9090')
  t.equal(config.telemetry.otlp?.endpoint, 'http://otel-collector.observability.svc:4318')
})

t.test('its inline policies compile as start-up compiles them', async (t) => {
  const config = parseConfig(example, 'config.example.yaml')
  // The example's own trust root file does not exist here; any loaded root stands in for it.
  const publicGood = publicGoodTrustRoot()
  const trustRoots = new Map([
    [PUBLIC_GOOD, publicGood],
    ['corp-sigstore', { ...publicGood, name: 'corp-sigstore' }],
  ])
  const { policySet, warnings } = loadPolicies({ ...config, policyDirs: [] }, { trustRoots })
  t.same(
    policySet.policies.map((p) => p.name),
    ['my-org-release', 'corp-internal', 'trustpull-bootstrap'],
  )
  t.same(warnings, [], 'no start-up warnings (no catch-all identities)')
  t.throws(
    () => loadPolicies({ ...config, policyDirs: [] }, { trustRoots: new Map([[PUBLIC_GOOD, publicGood]]) }),
    { name: 'ConfigError', message: /corp-sigstore/ },
    'a trustRootRef naming no configured trust root refuses start-up',
  )
})

t.test('the example has the policies it promises', async (t) => {
  const policies = example.policies as ExamplePolicy[]
  const byName = new Map(policies.map((p) => [p.name, p]))

  const release = byName.get('my-org-release')
  t.same(release?.images, [{ glob: 'ghcr.io/my-org/**' }])
  const identity = release?.authorities[0]?.keyless?.identities[0]
  t.equal(identity?.issuer, 'https://token.actions.githubusercontent.com', 'keyless names an issuer')
  t.ok(new RegExp(identity?.subjectRegExp ?? '').test('https://github.com/my-org/app/.github/workflows/release.yml@refs/tags/v1.2.3'))
  t.notOk(new RegExp(identity?.subjectRegExp ?? '').test('https://github.com/evil/app/.github/workflows/release.yml@refs/tags/v1.2.3'), 'the subject is not a catch-all')

  const corp = byName.get('corp-internal')
  const pem = corp?.authorities[0]?.key?.data ?? ''
  t.equal(createPublicKey(pem).asymmetricKeyType, 'ec', 'the key policy carries a real public key')

  const bootstrap = byName.get('trustpull-bootstrap')
  t.same(bootstrap?.images, [{ glob: 'ghcr.io/trustpull/trustpull' }], 'exact glob for the proxy image')
  t.same(bootstrap?.authorities, [{ static: { action: 'pass' } }])
})

t.test('every key of the config schema is documented in the example', async (t) => {
  // Inline policies are ClusterImagePolicy specs, documented in the comment above `policies:`.
  const paths = keyPaths(configSchema, [], new Set(['policies']))
  t.ok(paths.length > 30, `walked the schema (${paths.length} keys)`)
  for (const key of Object.keys(configSchema.shape)) {
    t.match(text, new RegExp(`^#? ?${key}:`, 'm'), `top-level key ${key} appears`)
  }
  for (const path of paths) {
    const leaf = path.at(-1)!
    t.match(text, new RegExp(`(^|[\\s{,-])${leaf}:`, 'm'), `${path.join('.')} appears`)
  }
  for (const key of ['otlp', 'endpoint', 'metrics', 'listen']) t.match(text, new RegExp(`\\b${key}:`), `telemetry ${key} appears`)
})

t.test('a typo in a copied example is refused, naming the key', async (t) => {
  const typo = structuredClone(example)
  ;(typo.cache as Record<string, unknown>).allowTtl = '2h'
  t.throws(() => parseConfig(typo), { name: 'ConfigError', message: /cache: unknown key "allowTtl"/ })
  const badTtl = structuredClone(example)
  ;(badTtl.cache as Record<string, unknown>).denyTTL = 'one minute'
  t.throws(() => parseConfig(badTtl), { name: 'ConfigError', message: /cache\.denyTTL: "one minute" is not a duration/ })
})

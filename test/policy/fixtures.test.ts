// policy-controller's own ClusterImagePolicy documents, loaded as a user's policyDirs would be.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toTrustMaterial } from '@sigstore/verify'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { ConfigError } from '../../src/errors.ts'
import { loadPolicies, loadPolicyFile } from '../../src/policy/load.ts'
import type { LoadedTrustRoot } from '../../src/verify/types.ts'

const FIXTURES = join(import.meta.dirname, '../fixtures/policy-controller-cip')

function trustRoot(name: string): LoadedTrustRoot {
  const root = TrustedRoot.fromJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [],
    certificateAuthorities: [],
    ctlogs: [],
    timestampAuthorities: [],
  })
  return { name, version: `${name}@1`, material: toTrustMaterial(root), source: 'test' }
}

const publicGoodOnly = new Map([['public-good', trustRoot('public-good')]])
// The roots the e2e documents name, as a user running them would configure under trustRoots.
const withE2eRoots = new Map(['public-good', 'my-sigstore-keys', 'my-remote', 'my-repository-serialized'].map((n) => [n, trustRoot(n)]))
const context = (trustRoots: ReadonlyMap<string, LoadedTrustRoot>) => ({ trustRoots, upstreamNames: ['docker.io', 'registry.local:5000'], env: {} })

function refusal(file: string, trustRoots: ReadonlyMap<string, LoadedTrustRoot> = withE2eRoots): string | undefined {
  try {
    loadPolicyFile(file, context(trustRoots))
    return undefined
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.message
  }
}

const files = (dir: string) =>
  readdirSync(join(FIXTURES, dir))
    .filter((f) => f.endsWith('.yaml'))
    .sort()

// Each invalid document, with what its `# ERROR:` comment says policy-controller rejects, as trustpull words it.
const INVALID: Record<string, string[]> = {
  'empty-keyref-and-keylessref.yaml': ['spec.authorities[0].keyless.identities: missing identities', 'spec.authorities[0]: give exactly one of key, keyless or static'],
  'empty-keyref.yaml': ['spec.authorities[0].key: give exactly one of data'],
  'invalid-authority.yaml': ['spec.authorities[0]: give exactly one of key, keyless or static'],
  'invalid-glob.yaml': ['spec.images[0].glob: invalid glob "["'],
  'invalid-keyref-awskms.yaml': [0, 1, 2, 3].map((i) => `spec.authorities[${i}].key.kms: KMS keys (awskms://) are unsupported`),
  'invalid-mode.yaml': ['spec.mode: expected enforce or warn'],
  'invalid-pubkey.yaml': ['spec.authorities[0].key.data: not a PEM public key'],
  'keylessref-with-empty-authorities.yaml': ['spec.authorities: missing authorities'],
  'keylessref-with-malformed-issuer.yaml': ['spec.authorities[0].keyless.identities[0].issuerRegExp: invalid regular expression "****"'],
  'keylessref-with-malformed-subject.yaml': ['spec.authorities[0].keyless.identities[0].subjectRegExp: invalid regular expression "****"'],
  'keylessref-with-multiple-properties.yaml': ['spec.authorities[0].keyless.ca-cert: custom CA certificates (ca-cert, from a Kubernetes secretRef) are unsupported'],
  'keyref-with-multiple-properties.yaml': ['spec.authorities[0].key.kms: KMS keys (hashivault://) are unsupported'],
  'missing-identity.yaml': ['spec.authorities[0].keyless.identities: missing identities'],
  'missing-issuer.yaml': ['spec.authorities[0].keyless.identities[0].issuer: missing issuer (or issuerRegExp)'],
  'missing-subject.yaml': ['spec.authorities[0].keyless.identities[0].subject: missing subject (or subjectRegExp)'],
  'v1beta1-empty-keyref-and-keylessref.yaml': ['spec.authorities[0].key: give exactly one of data'],
  'v1beta1-empty-keyref.yaml': ['spec.authorities[0].key: give exactly one of data'],
  'v1beta1-invalid-glob.yaml': ['spec.images[0].glob: invalid glob "["'],
  'v1beta1-invalid-hash-algo.yaml': ['spec.authorities[0].key.hashAlgorithm: expected one of sha224, sha256, sha384, sha512'],
  'v1beta1-invalid-keyref-awskms.yaml': [0, 1, 2, 3].map((i) => `spec.authorities[${i}].key.kms: KMS keys (awskms://) are unsupported`),
  'v1beta1-invalid-match-resource.yaml': ['spec.match: match (selecting Kubernetes resources) is unsupported'],
  'v1beta1-invalid-mode.yaml': ['spec.mode: expected enforce or warn'],
  'v1beta1-invalid-pubkey.yaml': ['spec.authorities[0].key.data: not a PEM public key'],
  'v1beta1-keylessref-with-empty-authorities.yaml': ['spec.authorities: missing authorities'],
  'v1beta1-keylessref-with-malformed-issuer.yaml': ['spec.authorities[0].keyless.identities[0].issuerRegExp: invalid regular expression "****"'],
  'v1beta1-keylessref-with-malformed-subject.yaml': ['spec.authorities[0].keyless.identities[0].subjectRegExp: invalid regular expression "****"'],
  'v1beta1-keylessref-with-multiple-properties.yaml': ['spec.authorities[0].keyless.ca-cert: custom CA certificates (ca-cert, from a Kubernetes secretRef) are unsupported'],
  'v1beta1-keyref-with-multiple-properties.yaml': ['spec.authorities[0].key.kms: KMS keys (hashivault://) are unsupported'],
  'v1beta1-missing-identity.yaml': ['spec.authorities[0].keyless.identities: missing identities'],
  'v1beta1-missing-issuer.yaml': ['spec.authorities[0].keyless.identities[0].issuer: missing issuer (or issuerRegExp)'],
  'v1beta1-missing-subject.yaml': ['spec.authorities[0].keyless.identities[0].subject: missing subject (or subjectRegExp)'],
  'v1beta1-valid-keyref-and-keylessref.yaml': ['spec.authorities[0]: give exactly one of key, keyless or static (got key and keyless)'],
  'valid-keyref-and-keylessref.yaml': ['spec.authorities[0]: give exactly one of key, keyless or static (got key and keyless)'],
}

const CA_CERT_SECRET = 'keyless.ca-cert: custom CA certificates (ca-cert, from a Kubernetes secretRef) are unsupported'
const CA_CERT_KMS = 'keyless.ca-cert: custom CA certificates (ca-cert, from KMS (awskms://)) are unsupported'
const HASHIVAULT = 'key.kms: KMS keys (hashivault://) are unsupported'
const SECRET_REF = 'key.secretRef: Kubernetes secretRef is unsupported'
const CUE = 'policy.type: CUE policies are unsupported'
const CIP_POLICY = 'spec.policy: a policy over the whole ClusterImagePolicy (spec.policy) is unsupported'
const MATCH = 'spec.match: match (selecting Kubernetes resources) is unsupported'

// Each valid and e2e document: 'load', or the unsupported features its refusal must name.
const SUPPORTED_OR_NOT: Record<string, 'load' | string[]> = {
  'valid/v1beta1-valid-keylessref-awskms.yaml': [CA_CERT_KMS],
  'valid/v1beta1-valid-keyref-awskms.yaml': ['key.kms: KMS keys (awskms://) are unsupported'],
  'valid/v1beta1-valid-policy-glob.yaml': [CA_CERT_SECRET, HASHIVAULT, SECRET_REF],
  'valid/v1beta1-valid-policy.yaml': [CA_CERT_SECRET, CUE, HASHIVAULT, SECRET_REF],
  'valid/valid-keyless-with-source.yaml': [CA_CERT_SECRET, 'source[0].signaturePullSecrets: Kubernetes signaturePullSecrets are unsupported'],
  'valid/valid-keylessref-awskms.yaml': [CA_CERT_KMS],
  'valid/valid-keyref-awskms.yaml': ['key.kms: KMS keys (awskms://) are unsupported'],
  'valid/valid-policy-glob.yaml': [CA_CERT_SECRET, HASHIVAULT, SECRET_REF],
  'valid/valid-policy-hash-algo-sha512.yaml': 'load',
  'valid/valid-policy-hash-algo.yaml': [CA_CERT_SECRET, CUE, HASHIVAULT, SECRET_REF],
  'valid/valid-policy-keyless-ignore-sct.yaml': [CA_CERT_SECRET, HASHIVAULT, SECRET_REF],
  'valid/valid-policy-match-resource-label.yaml': [CA_CERT_SECRET, CUE, MATCH],
  'valid/valid-policy-match-resource.yaml': [CA_CERT_SECRET, CUE, MATCH],
  'valid/valid-policy.yaml': [CA_CERT_SECRET, CUE, HASHIVAULT, SECRET_REF],
  'e2e/cip-config-file-policy-fails.yaml': [CIP_POLICY, 'spec.policy.fetchConfigFile', CUE],
  'e2e/cip-config-file-policy-from-configmap.yaml': [CIP_POLICY, 'spec.policy.configMapRef: ConfigMap policies (policy.configMapRef) are unsupported'],
  'e2e/cip-config-file-policy.yaml': [CIP_POLICY, 'spec.policy.fetchConfigFile: policy.fetchConfigFile (conditions on the image config) is unsupported'],
  'e2e/cip-include-objectmeta-fails.yaml': [CIP_POLICY, 'spec.policy.includeObjectMeta: policy.includeObjectMeta is unsupported'],
  'e2e/cip-include-objectmeta.yaml': [CIP_POLICY, 'spec.policy.includeObjectMeta: policy.includeObjectMeta is unsupported'],
  'e2e/cip-include-spec-fails.yaml': [CIP_POLICY, 'spec.policy.includeSpec: policy.includeSpec is unsupported'],
  'e2e/cip-include-spec.yaml': [CIP_POLICY, 'spec.policy.includeSpec: policy.includeSpec is unsupported'],
  'e2e/cip-include-typemeta.yaml': [CIP_POLICY, 'spec.policy.includeTypeMeta: policy.includeTypeMeta is unsupported'],
  'e2e/cip-key-and-keyless-ignore-sct.yaml': 'load',
  'e2e/cip-key-and-keyless.yaml': 'load',
  'e2e/cip-key-hash-algorithm.yaml': 'load',
  'e2e/cip-key-no-rekor.yaml': 'load',
  'e2e/cip-key-secret.yaml': [SECRET_REF],
  'e2e/cip-key-tsa.yaml': ['spec.authorities[0].rfc3161timestamp: rfc3161timestamp on a key authority (a required TSA timestamp) is unsupported'],
  'e2e/cip-key-with-attestations-no-rekor.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-key-with-attestations-rego.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-key-with-attestations.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-key.yaml': 'load',
  'e2e/cip-keyless-warn.yaml': 'load',
  'e2e/cip-keyless-with-attestations-rego.yaml': ['attestations[0].policy.type: Rego policies are unsupported'],
  'e2e/cip-keyless-with-attestations.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-keyless-with-identities-mismatch.yaml': 'load',
  'e2e/cip-keyless-with-identities.yaml': 'load',
  'e2e/cip-keyless-with-source-prefix-tag.yaml': ['source[0].tagPrefix: tagPrefix (prefixed signature tags) is unsupported', CUE],
  'e2e/cip-keyless-with-source.yaml': 'load',
  'e2e/cip-keyless-with-trustroot-remote-with-attestations.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-keyless-with-trustroot-repository-with-attestations.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-keyless-with-trustroot-with-attestations.yaml': [`attestations[0].${CUE}`],
  'e2e/cip-keyless.yaml': 'load',
  'e2e/cip-match-resource-label.yaml': [MATCH],
  'e2e/cip-policy-from-url.yaml': [CIP_POLICY, 'spec.policy.remote: remote policies (policy.remote) are unsupported'],
  'e2e/cip-requires-two-signatures-and-two-attestations-rego.yaml': [CIP_POLICY, `attestations[0].${CUE}`, `attestations[1].${CUE}`],
  'e2e/cip-requires-two-signatures-and-two-attestations.yaml': [CIP_POLICY, `attestations[0].${CUE}`, `attestations[1].${CUE}`],
  'e2e/cip-static-fail.yaml': 'load',
  'e2e/cip-static-pass.yaml': 'load',
}

// ../shared/fixtures/SOURCES.md: "these must load".
const MUST_LOAD = [
  'e2e/cip-key.yaml',
  'e2e/cip-key-no-rekor.yaml',
  'e2e/cip-key-and-keyless.yaml',
  'e2e/cip-key-and-keyless-ignore-sct.yaml',
  'e2e/cip-key-hash-algorithm.yaml',
  'e2e/cip-keyless.yaml',
  'e2e/cip-keyless-warn.yaml',
  'e2e/cip-keyless-with-identities.yaml',
  'e2e/cip-keyless-with-identities-mismatch.yaml',
  'e2e/cip-keyless-with-source.yaml',
  'e2e/cip-static-pass.yaml',
  'e2e/cip-static-fail.yaml',
  'valid/valid-policy-hash-algo-sha512.yaml',
]

t.test('every invalid document refuses start-up, naming the field', async (t) => {
  t.same(files('invalid'), Object.keys(INVALID).sort(), 'the table covers every invalid document')
  for (const file of files('invalid')) {
    const message = refusal(join(FIXTURES, 'invalid', file))
    if (message === undefined) {
      t.fail(`${file} was loaded`)
      continue
    }
    t.match(message, join('invalid', file), `${file}: the message names the file`)
    for (const expected of INVALID[file]!) t.ok(message.includes(expected), `${file}: "${expected}"`, { refusal: message })
  }
})

t.test('every valid and e2e document loads or is refused as unsupported, never ignored', async (t) => {
  const all = [...files('valid').map((f) => `valid/${f}`), ...files('e2e').map((f) => `e2e/${f}`)]
  t.same(all.sort(), Object.keys(SUPPORTED_OR_NOT).sort(), 'the table covers every valid and e2e document')
  for (const file of all) {
    const expected = SUPPORTED_OR_NOT[file]!
    const message = refusal(join(FIXTURES, file))
    if (expected === 'load') {
      t.equal(message, undefined, `${file} loads`)
      continue
    }
    if (message === undefined) {
      t.fail(`${file} was loaded but uses unsupported features`)
      continue
    }
    const lines = message.split('\n').slice(1)
    t.ok(lines.length > 0 && lines.every((line) => line.includes('unsupported')), `${file}: every problem is an unsupported feature`, { refusal: message })
    for (const part of expected) t.ok(message.includes(part), `${file}: "${part}"`, { refusal: message })
  }
  const loaded = all.filter((f) => SUPPORTED_OR_NOT[f] === 'load').length
  t.equal(loaded, MUST_LOAD.length, '13 of 49 load (the must-load list); 36 are refused as unsupported')
})

t.test('the SOURCES.md must-load list loads, and each loads what it says', async (t) => {
  for (const file of MUST_LOAD) {
    const { policies } = loadPolicyFile(join(FIXTURES, file), context(publicGoodOnly))
    t.equal(policies.length, 1, `${file}: one policy`)
  }
  const keyless = loadPolicyFile(join(FIXTURES, 'e2e/cip-keyless-with-source.yaml'), context(publicGoodOnly)).policies[0]!
  const authority = keyless.authorities[0]!
  t.equal(authority.type, 'keyless')
  if (authority.type !== 'keyless') return
  t.same(authority.sources, [{ upstream: 'registry.local:5000', repository: 'policy-controller/demo' }])
  t.same(authority.material.type === 'keyless' && authority.material.identities, [
    { issuerRegExp: '.*kubernetes.default.*', subjectRegExp: '.*kubernetes.io/namespaces/default/serviceaccounts/default' },
  ])

  const warn = loadPolicyFile(join(FIXTURES, 'e2e/cip-keyless-warn.yaml'), context(publicGoodOnly)).policies[0]!
  t.equal(warn.mode, 'warn')

  const sha512 = loadPolicyFile(join(FIXTURES, 'e2e/cip-key-hash-algorithm.yaml'), context(publicGoodOnly)).policies[0]!.authorities[0]!
  t.ok(sha512.type === 'key' && sha512.material.type === 'key' && sha512.material.keys[0]!.hashAlgorithm === 'sha512', 'hashAlgorithm reaches the material')
  t.ok(sha512.type === 'key' && sha512.material.type === 'key' && sha512.material.keys[0]!.key.asymmetricKeyType === 'rsa')

  const noRekor = loadPolicyFile(join(FIXTURES, 'e2e/cip-key-no-rekor.yaml'), context(publicGoodOnly)).policies[0]!.authorities[0]!
  const withRekor = loadPolicyFile(join(FIXTURES, 'e2e/cip-key.yaml'), context(publicGoodOnly)).policies[0]!.authorities[0]!
  t.ok(noRekor.type === 'key' && noRekor.material.type === 'key' && !noRekor.material.requireTlog, 'a key without ctlog needs no log entry')
  t.ok(withRekor.type === 'key' && withRekor.material.type === 'key' && withRekor.material.requireTlog, 'with ctlog it does')

  const sct = loadPolicyFile(join(FIXTURES, 'e2e/cip-key-and-keyless-ignore-sct.yaml'), context(publicGoodOnly)).policies[0]!.authorities[1]!
  t.ok(sct.type === 'keyless' && sct.material.type === 'keyless' && sct.material.ignoreSCT)

  const tagged = loadPolicyFile(join(FIXTURES, 'valid/valid-policy-hash-algo-sha512.yaml'), context(publicGoodOnly))
  t.match(tagged.warnings.join('\n'), /spec\.images\[0\]\.glob: "ghcr\.io\/sgtcodfish\/ace:0\.5" names a tag/, 'a tag glob is loaded with a warning')

  const e2eKey = loadPolicyFile(join(FIXTURES, 'e2e/cip-key.yaml'), context(publicGoodOnly))
  t.match(e2eKey.warnings.join('\n'), /spec\.authorities\[0\]\.ctlog\.url: http:\/\/rekor\.rekor-system\.svc is not contacted/, 'an unused URL is reported, not silently ignored')
})

t.test('trust roots named by e2e documents are used when configured', async (t) => {
  const file = join(FIXTURES, 'e2e/cip-keyless-with-trustroot-with-attestations.yaml')
  // The document's CUE condition is unsupported; with the condition in CEL it loads.
  const cel = readFileSync(file, 'utf8').replace(/type: cue\n(\s+)data: \|\n[\s\S]*$/, 'type: cel\n$1data: predicate.Data == "foobar e2e test"\n')
  const dir = mkdtempSync(join(tmpdir(), 'trustpull-cip-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'cip.yaml'), cel)
  t.match(refusal(join(dir, 'cip.yaml'), publicGoodOnly), /spec\.authorities\[0\]\.keyless\.trustRootRef: unknown trust root "my-sigstore-keys": known roots are public-good/)
  const { policies } = loadPolicyFile(join(dir, 'cip.yaml'), context(withE2eRoots))
  const authority = policies[0]!.authorities[0]!
  t.equal(authority.type === 'keyless' && authority.material.trustRoot?.name, 'my-sigstore-keys')
  t.ok(authority.type === 'keyless' && authority.attestations[0]?.condition?.source === 'predicate.Data == "foobar e2e test"')
})

t.test('a policy directory holding every invalid document lists every problem at once', async (t) => {
  const config = parseConfig({ policyDirs: [join(FIXTURES, 'invalid')] })
  const err = t.throws(() => loadPolicies(config, { trustRoots: publicGoodOnly })) as ConfigError
  t.type(err, ConfigError)
  for (const file of files('invalid')) t.ok(err.message.includes(`invalid/${file}`), `${file} is named`)
})

t.test('README.md states these figures', async (t) => {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8').replace(/\s+/g, ' ')
  const all = Object.keys(SUPPORTED_OR_NOT).length
  const loaded = Object.values(SUPPORTED_OR_NOT).filter((v) => v === 'load').length
  const invalid = Object.keys(INVALID).length
  t.ok(readme.includes(`of the ${all} valid and e2e documents, **${loaded} load** and ${all - loaded} are refused as unsupported`), 'the compatibility summary near the top')
  t.ok(readme.includes(`all ${invalid} invalid ones are refused naming the field`), 'the invalid count near the top')
  t.ok(
    readme.includes(`all ${invalid} invalid ones are refused naming the field. Of the ${all} valid and e2e ones, ${loaded} load`) ||
      readme.includes(`all ${invalid} invalid ones are refused naming the field; of the ${all} valid and e2e ones, ${loaded} load`),
    'the Policies section',
  )
  // The table's per-feature counts, from the refusals this file expects.
  const needing = (pattern: RegExp) => Object.values(SUPPORTED_OR_NOT).filter((v) => v !== 'load' && v.some((part) => pattern.test(part))).length
  const rows: [string, RegExp][] = [
    ['CUE conditions on attestations or policies', /CUE policies/],
    ['a policy over the whole CIP', /^spec\.policy/],
    ['Kubernetes secrets', /secretRef|signaturePullSecrets/],
    ['KMS keys', /KMS/],
    ['`match` (selecting Kubernetes resources)', /^spec\.match/],
  ]
  for (const [feature, pattern] of rows) {
    const count = needing(pattern)
    t.match(readme, new RegExp(`\\| ${feature.replace(/[.*+?^${}()|[\]\\`]/g, '\\$&')}[^|]* \\| ${count} \\|`), `${feature}: ${count} documents`)
  }
})

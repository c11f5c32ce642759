// Evaluation semantics, with discovery and verification replaced by a small in-memory world:
// these are the pure-logic rules (which policy applies, what passes, what a verdict says).
// The real discovery and cryptography are tested in their own suites and end to end.
import { generateKeyPairSync } from 'node:crypto'
import type { SerializedBundle } from '@sigstore/bundle'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toTrustMaterial } from '@sigstore/verify'
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { RegistryError } from '../../src/errors.ts'
import { digestOf } from '../../src/oci/digest.ts'
import { parseManifest } from '../../src/oci/manifest.ts'
import { MediaType } from '../../src/oci/media-types.ts'
import { evaluatePolicies, type DiscoverFn, type ImageUnderEvaluation, type VerifyFn } from '../../src/policy/evaluate.ts'
import { keyHint } from '../../src/verify/keys.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { PREDICATE_TYPES } from '../../src/policy/predicate-types.ts'
import type { SignatureLocation } from '../../src/policy/types.ts'
import type { Candidate, Discovery, DiscoveryProblem, InTotoStatement, LoadedTrustRoot } from '../../src/verify/types.ts'

const root = (name: string): LoadedTrustRoot => ({
  name,
  version: '1',
  source: 'test',
  material: toTrustMaterial(
    TrustedRoot.fromJSON({ mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] }),
  ),
})
const trustRoots = new Map([['public-good', root('public-good')]])

const newKey = () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  return { pem: publicKey.export({ type: 'spki', format: 'pem' }) as string, hint: keyHint(publicKey) }
}
const RELEASE = newKey()
const OTHER = newKey()
const GITHUB = 'https://token.actions.githubusercontent.com'
const RELEASE_WORKFLOW = 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main'
const SLSA_V02 = PREDICATE_TYPES.slsaprovenance!

// ---------------------------------------------------------------------------------------------
// The world: what each repository holds, and what each signature was made by.

type Signer = { keyHint: string } | { issuer: string; subject: string }
interface Made {
  by: Signer
  /** The digest it is about. */
  about: string
  statement?: InTotoStatement
}

class World {
  readonly stored = new Map<string, Candidate[]>()
  readonly problems = new Map<string, DiscoveryProblem[]>()
  readonly failing = new Map<string, Error>()
  readonly made = new WeakMap<Candidate, Made>()
  readonly discoveries: string[] = []
  verifyThrows = false
  private count = 0

  private where(location: SignatureLocation, digest: string) {
    return `${location.upstream}/${location.repository}@${digest}`
  }

  sign(
    location: SignatureLocation,
    digest: string,
    by: Signer,
    options: { format?: Candidate['format']; kind?: Candidate['kind']; statement?: InTotoStatement; about?: string } = {},
  ): Candidate {
    const kind = options.kind ?? 'signature'
    const candidate: Candidate = {
      kind,
      format: options.format ?? 'sigstore-bundle',
      origin: { repository: location.repository, via: 'referrers', manifestDigest: digestOf(Buffer.from(`sig-${this.count++}`)) },
      bundle: { mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json' } as SerializedBundle,
      ...(options.statement ? { predicateType: options.statement.predicateType } : {}),
    }
    this.made.set(candidate, { by, about: options.about ?? digest, ...(options.statement ? { statement: options.statement } : {}) })
    const key = this.where(location, digest)
    this.stored.set(key, [...(this.stored.get(key) ?? []), candidate])
    return candidate
  }

  attest(location: SignatureLocation, digest: string, by: Signer, predicateType: string, predicate: unknown, about = digest): Candidate {
    const statement: InTotoStatement = {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: location.repository, digest: { sha256: about.slice('sha256:'.length) } }],
      predicateType,
      predicate,
    }
    return this.sign(location, digest, by, { kind: 'attestation', statement })
  }

  discover: DiscoverFn = async (location, digest) => {
    const key = this.where(location, digest)
    this.discoveries.push(key)
    const failure = this.failing.get(`${location.upstream}/${location.repository}`)
    if (failure) throw failure
    return { candidates: this.stored.get(key) ?? [], problems: this.problems.get(key) ?? [] } satisfies Discovery
  }

  /** Stands in for src/verify: a signature verifies when its maker is one the material trusts and it is about this digest. */
  verify: VerifyFn = (candidate, material, digest) => {
    if (this.verifyThrows) throw new Error('verifier exploded')
    const made = this.made.get(candidate)!
    const base = { kind: candidate.kind, format: candidate.format, origin: candidate.origin, checks: ['fake'] }
    const statement = made.statement ? { statement: made.statement, predicateType: made.statement.predicateType } : {}
    if (made.about !== digest) return { ...base, ok: false, code: 'DIGEST_MISMATCH', reason: `signs ${made.about}` }
    if (material.type === 'key') {
      const trusted = 'keyHint' in made.by && material.keys.some((k) => keyHint(k.key) === (made.by as { keyHint: string }).keyHint)
      return trusted ? { ...base, ok: true, signer: made.by, ...statement } : { ...base, ok: false, code: 'UNTRUSTED_KEY', reason: 'signed by another key' }
    }
    const by = made.by
    const trusted =
      'issuer' in by &&
      material.identities.some(
        (id) =>
          (id.issuer !== undefined ? id.issuer === by.issuer : new RegExp(id.issuerRegExp!).test(by.issuer)) &&
          (id.subject !== undefined ? id.subject === by.subject : new RegExp(id.subjectRegExp!).test(by.subject)),
      )
    return trusted ? { ...base, ok: true, signer: by, ...statement } : { ...base, ok: false, code: 'IDENTITY_MISMATCH', reason: 'another identity' }
  }

  get deps() {
    return { discover: this.discover, verify: this.verify }
  }
}

// ---------------------------------------------------------------------------------------------
// Images and policies

function imageOf(upstream: string, repository: string, seed: string): ImageUnderEvaluation {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociImageConfig, digest: digestOf(Buffer.from(`config-${seed}`)), size: 2 },
      layers: [],
    }),
  )
  return { upstream, repository, digest: digestOf(bytes), mediaType: MediaType.ociManifest, manifest: parseManifest(bytes, MediaType.ociManifest) }
}

function indexOf(
  upstream: string,
  repository: string,
  children: { digest: string; platform?: { os: string; architecture: string }; annotations?: Record<string, string> }[],
): ImageUnderEvaluation {
  const bytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociIndex,
      manifests: children.map((c) => ({ mediaType: MediaType.ociManifest, size: 100, ...c })),
    }),
  )
  return { upstream, repository, digest: digestOf(bytes), mediaType: MediaType.ociIndex, manifest: parseManifest(bytes, MediaType.ociIndex) }
}

const APP = { upstream: 'ghcr.io', repository: 'my-org/app' }
const image = imageOf(APP.upstream, APP.repository, 'app')

function policies(config: Record<string, unknown>) {
  const upstreams = [
    { name: 'docker.io', url: 'https://registry-1.docker.io', default: true },
    { name: 'ghcr.io', url: 'https://ghcr.io' },
  ]
  return loadPolicies(parseConfig({ upstreams, ...config }), { trustRoots, env: {} }).policySet
}

const keyPolicy = (name: string, pem: string, extra: Record<string, unknown> = {}) => ({
  name,
  images: [{ glob: 'ghcr.io/my-org/**' }],
  authorities: [{ key: { data: pem } }],
  ...extra,
})
const keylessAuthority = (subject = RELEASE_WORKFLOW) => ({ keyless: { identities: [{ issuer: GITHUB, subject }] } })

// ---------------------------------------------------------------------------------------------

t.test('no matching policy follows noMatchPolicy, without looking for signatures', async (t) => {
  for (const noMatchPolicy of ['deny', 'warn', 'allow'] as const) {
    const world = new World()
    const set = policies({ noMatchPolicy, policies: [keyPolicy('release', RELEASE.pem)] })
    const verdict = await evaluatePolicies(imageOf('docker.io', 'library/nginx', 'nginx'), set, world.deps)
    t.equal(verdict.result, noMatchPolicy, noMatchPolicy)
    t.same(verdict.reasons, [`no policy matches docker.io/library/nginx (noMatchPolicy: ${noMatchPolicy})`])
    t.same(verdict.policies, [])
    t.same(world.discoveries, [])
    t.equal(verdict.fingerprint, set.fingerprint)
  }
  const verdict = await evaluatePolicies(image, policies({}), new World().deps)
  t.equal(verdict.result, 'deny', 'noMatchPolicy defaults to deny')
})

t.test('a signature by a trusted key allows; the verdict names the signer', async (t) => {
  const world = new World()
  world.sign(APP, image.digest, { keyHint: RELEASE.hint })
  const set = policies({ policies: [keyPolicy('release', RELEASE.pem)] })
  const verdict = await evaluatePolicies(image, set, world.deps)
  t.equal(verdict.result, 'allow')
  t.equal(verdict.image, 'ghcr.io/my-org/app')
  t.equal(verdict.digest, image.digest)
  t.same(verdict.reasons, ['allowed by policy "release"'])
  t.same(verdict.signers, [{ policy: 'release', authority: 'authority-0', keyHint: RELEASE.hint }])
  t.equal(verdict.policies[0]?.result, 'pass')
  t.equal(verdict.policies[0]?.authorities[0]?.evidence.length, 1)
  t.equal(verdict.transient, false)
  t.equal(verdict.fingerprint, set.fingerprint)
})

t.test('a signature by another key, an unsigned image, a signature about another digest: denied with reasons', async (t) => {
  const set = policies({ policies: [keyPolicy('release', RELEASE.pem)] })

  const wrong = new World()
  wrong.sign(APP, image.digest, { keyHint: OTHER.hint })
  const denied = await evaluatePolicies(image, set, wrong.deps)
  t.equal(denied.result, 'deny')
  t.equal(denied.reasons[0], 'policy "release": no signature verified (1 found)')
  t.match(denied.reasons[1], /^policy "release", authority "authority-0": no signature verified/)
  t.match(denied.reasons[2], /^policy "release", authority "authority-0": signature sha256:[0-9a-f]{12} \(referrers\): UNTRUSTED_KEY: signed by another key$/)
  t.same(denied.signers, [])
  t.equal(denied.policies[0]?.authorities[0]?.ok, false)

  const unsigned = await evaluatePolicies(image, set, new World().deps)
  t.equal(unsigned.result, 'deny')
  t.equal(unsigned.reasons[0], `policy "release": no signatures found for ${image.digest.slice(0, 19)}`)
  t.equal(unsigned.policies[0]?.authorities[0]?.code, 'NO_SIGNATURES', 'nothing found to verify has its own code')
  t.equal(denied.policies[0]?.authorities[0]?.code, undefined, 'a signature that failed verification: its code is in the evidence')

  const replayed = new World()
  replayed.sign(APP, image.digest, { keyHint: RELEASE.hint }, { about: imageOf(APP.upstream, APP.repository, 'old').digest })
  const replay = await evaluatePolicies(image, set, replayed.deps)
  t.equal(replay.result, 'deny')
  t.match(replay.reasons.join('\n'), 'DIGEST_MISMATCH')
})

t.test('within a policy any one authority suffices; every matching policy must pass', async (t) => {
  const world = new World()
  world.sign(APP, image.digest, { issuer: GITHUB, subject: RELEASE_WORKFLOW })
  const either = policies({
    policies: [
      {
        name: 'either',
        images: [{ glob: 'ghcr.io/**' }],
        authorities: [
          { name: 'key', key: { data: RELEASE.pem } },
          { name: 'ci', ...keylessAuthority() },
        ],
      },
    ],
  })
  const allowed = await evaluatePolicies(image, either, world.deps)
  t.equal(allowed.result, 'allow')
  t.same(
    allowed.policies[0]?.authorities.map((a) => [a.name, a.ok]),
    [
      ['key', false],
      ['ci', true],
    ],
  )
  t.same(allowed.signers, [{ policy: 'either', authority: 'ci', issuer: GITHUB, subject: RELEASE_WORKFLOW }])

  const both = policies({
    policies: [
      { name: 'ci', images: [{ glob: 'ghcr.io/**' }], authorities: [keylessAuthority()] },
      { name: 'release-key', images: [{ glob: 'ghcr.io/my-org/*' }], authorities: [{ key: { data: RELEASE.pem } }] },
      { name: 'elsewhere', images: [{ glob: 'quay.io/**' }], authorities: [{ static: { action: 'fail' } }] },
    ],
  })
  const denied = await evaluatePolicies(image, both, world.deps)
  t.equal(denied.result, 'deny')
  t.same(
    denied.policies.map((p) => [p.name, p.result]),
    [
      ['ci', 'pass'],
      ['release-key', 'fail'],
    ],
    'only matching policies are evaluated',
  )
  t.match(denied.reasons[0], /^policy "release-key": /)
  t.equal(world.discoveries.filter((d) => d === `ghcr.io/my-org/app@${image.digest}`).length, 2, 'once per evaluation, not per policy')

  world.sign(APP, image.digest, { keyHint: RELEASE.hint })
  const before = world.discoveries.length
  t.equal((await evaluatePolicies(image, both, world.deps)).result, 'allow')
  t.equal(world.discoveries.length - before, 1, 'one discovery serves every policy and authority')
})

t.test('static authorities: exceptions without signatures', async (t) => {
  const world = new World()
  const pass = policies({ policies: [{ name: 'proxy-itself', images: [{ glob: 'ghcr.io/my-org/app' }], authorities: [{ static: { action: 'pass' } }] }] })
  const allowed = await evaluatePolicies(image, pass, world.deps)
  t.equal(allowed.result, 'allow')
  t.same(world.discoveries, [], 'nothing to look up')
  t.same(allowed.signers, [])

  const fail = policies({
    policies: [{ name: 'blocked', images: [{ glob: 'ghcr.io/**' }], authorities: [{ static: { action: 'fail', message: 'images from ghcr.io are blocked here' } }] }],
  })
  const denied = await evaluatePolicies(image, fail, world.deps)
  t.equal(denied.result, 'deny')
  t.equal(denied.reasons[0], 'policy "blocked": images from ghcr.io are blocked here')
  const plain = policies({ policies: [{ name: 'blocked', images: [{ glob: 'ghcr.io/**' }], authorities: [{ static: { action: 'fail' } }] }] })
  t.equal((await evaluatePolicies(image, plain, world.deps)).reasons[0], 'policy "blocked": disallowed by static policy')
})

t.test('warn mode serves but says why; it never overrides an enforcing deny', async (t) => {
  const world = new World()
  const warnOnly = policies({ policies: [keyPolicy('audit', RELEASE.pem, { mode: 'warn' })] })
  const warned = await evaluatePolicies(image, warnOnly, world.deps)
  t.equal(warned.result, 'warn')
  t.equal(warned.reasons[0], `policy "audit": no signatures found for ${image.digest.slice(0, 19)}`)
  t.equal(warned.policies[0]?.mode, 'warn')
  t.equal(warned.transient, false)

  const mixed = (enforceKey: string) =>
    policies({ policies: [keyPolicy('audit', RELEASE.pem, { mode: 'warn' }), { ...keyPolicy('enforced', enforceKey), images: [{ glob: 'ghcr.io/**' }] }] })
  world.sign(APP, image.digest, { keyHint: OTHER.hint })
  t.equal((await evaluatePolicies(image, mixed(OTHER.pem), world.deps)).result, 'warn', 'enforced passes, audit fails')
  t.equal((await evaluatePolicies(image, mixed(newKey().pem), world.deps)).result, 'deny', 'enforced fails')
  world.sign(APP, image.digest, { keyHint: RELEASE.hint })
  t.equal((await evaluatePolicies(image, mixed(OTHER.pem), world.deps)).result, 'allow', 'both pass')
})

t.test('upstream trouble during discovery is an error, never a deny', async (t) => {
  const set = policies({ policies: [keyPolicy('release', RELEASE.pem)] })
  const cases: [Error, string][] = [
    [new RegistryError('UPSTREAM_TIMEOUT', 'ghcr.io timed out'), 'UPSTREAM_TIMEOUT'],
    [new RegistryError('UPSTREAM_ERROR', 'ghcr.io answered 503'), 'UPSTREAM_ERROR'],
    [new RegistryError('UNAUTHORIZED', 'bad credentials for ghcr.io'), 'UPSTREAM_ERROR'],
    [new Error('socket hang up'), 'INTERNAL'],
  ]
  for (const [failure, code] of cases) {
    const world = new World()
    world.failing.set('ghcr.io/my-org/app', failure)
    const verdict = await evaluatePolicies(image, set, world.deps)
    t.equal(verdict.result, 'error', failure.message)
    t.equal(verdict.errorCode, code)
    t.equal(verdict.transient, true)
    t.equal(verdict.reasons[0], `policy "release": signature discovery in ghcr.io/my-org/app failed: ${failure.message}`)
  }

  // The discoverer reports upstream trouble it met while walking as DISCOVERY_FAILED problems.
  const partial = new World()
  partial.sign(APP, image.digest, { keyHint: OTHER.hint })
  partial.problems.set(`ghcr.io/my-org/app@${image.digest}`, [{ code: 'DISCOVERY_FAILED', message: 'sha256-….sig: ghcr.io answered 502' }])
  const undecided = await evaluatePolicies(image, set, partial.deps)
  t.equal(undecided.result, 'error', 'the signature that would pass may be the one not seen')
  t.equal(undecided.errorCode, 'UPSTREAM_ERROR')

  partial.sign(APP, image.digest, { keyHint: RELEASE.hint })
  t.equal((await evaluatePolicies(image, set, partial.deps)).result, 'allow', 'a verified signature decides despite trouble elsewhere')

  const limited = new World()
  limited.problems.set(`ghcr.io/my-org/app@${image.digest}`, [{ code: 'LIMIT_EXCEEDED', message: 'more than 64 signatures' }])
  const over = await evaluatePolicies(image, set, limited.deps)
  t.equal(over.result, 'deny', 'other problems are reasons, not errors')
  t.match(over.reasons.join('\n'), 'LIMIT_EXCEEDED: more than 64 signatures')

  const withException = policies({ policies: [{ ...keyPolicy('release', RELEASE.pem), authorities: [{ key: { data: RELEASE.pem } }, { static: { action: 'pass' } }] }] })
  const failing = new World()
  failing.failing.set('ghcr.io/my-org/app', new RegistryError('UPSTREAM_TIMEOUT'))
  t.equal((await evaluatePolicies(image, withException, failing.deps)).result, 'allow', 'another authority can still decide')

  const alsoDenied = policies({ policies: [keyPolicy('release', RELEASE.pem), { name: 'blocked', images: [{ glob: '**' }], authorities: [{ static: { action: 'fail' } }] }] })
  t.equal((await evaluatePolicies(image, alsoDenied, failing.deps)).result, 'deny', 'a certain deny elsewhere stands')

  const warnOnly = policies({ policies: [keyPolicy('audit', RELEASE.pem, { mode: 'warn' })] })
  const warned = await evaluatePolicies(image, warnOnly, failing.deps)
  t.equal(warned.result, 'warn', 'a warn policy never blocks')
  t.equal(warned.transient, true, 'but the verdict is marked transient')
})

t.test('a verifier that throws counts as a failed signature, not a crash', async (t) => {
  const world = new World()
  world.sign(APP, image.digest, { keyHint: RELEASE.hint })
  world.verifyThrows = true
  const verdict = await evaluatePolicies(image, policies({ policies: [keyPolicy('release', RELEASE.pem)] }), world.deps)
  t.equal(verdict.result, 'deny')
  t.match(verdict.reasons.join('\n'), 'MALFORMED: verification failed: verifier exploded')
})

t.test('source.oci: signatures are looked up in the named repository', async (t) => {
  const world = new World()
  const SIGS = { upstream: 'docker.io', repository: 'my-org/signatures' }
  world.sign(SIGS, image.digest, { keyHint: RELEASE.hint })
  world.sign(APP, image.digest, { keyHint: OTHER.hint })
  const set = policies({ policies: [{ ...keyPolicy('release', RELEASE.pem), authorities: [{ key: { data: RELEASE.pem }, source: [{ oci: 'my-org/signatures' }] }] }] })
  t.equal((await evaluatePolicies(image, set, world.deps)).result, 'allow')
  t.same(world.discoveries, [`docker.io/my-org/signatures@${image.digest}`], 'and only there')
})

t.test('signatureFormat restricts the candidates that count', async (t) => {
  const world = new World()
  world.sign(APP, image.digest, { keyHint: RELEASE.hint }, { format: 'cosign-legacy' })
  const only = (signatureFormat: string) => policies({ policies: [{ ...keyPolicy('release', RELEASE.pem), authorities: [{ key: { data: RELEASE.pem }, signatureFormat }] }] })
  t.equal((await evaluatePolicies(image, only('legacy'), world.deps)).result, 'allow')
  t.equal((await evaluatePolicies(image, only('bundle'), world.deps)).result, 'deny')
})

t.test('Docker Hub: one registry under three names, and short globs', async (t) => {
  const nginx = imageOf('docker.io', 'library/nginx', 'nginx')
  const world = new World()
  for (const glob of ['nginx', 'docker.io/library/nginx', 'index.docker.io/library/*', 'registry-1.docker.io/**', '*']) {
    const set = policies({ policies: [{ name: 'hub', images: [{ glob }], authorities: [{ static: { action: 'pass' } }] }] })
    t.equal((await evaluatePolicies(nginx, set, world.deps)).result, 'allow', glob)
  }
})

t.test('attestations: SLSA provenance with a CEL condition on the builder', async (t) => {
  const BUILDER = 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main'
  const set = policies({
    policies: [
      {
        name: 'provenance',
        images: [{ glob: 'ghcr.io/my-org/**' }],
        authorities: [
          {
            ...keylessAuthority(),
            attestations: [{ name: 'built-by-release-workflow', predicateType: 'slsaprovenance', policy: { type: 'cel', data: `predicate.builder.id == "${BUILDER}"` } }],
          },
        ],
      },
    ],
  })
  const ci = { issuer: GITHUB, subject: RELEASE_WORKFLOW }
  const provenance = (builder: string) => ({ builder: { id: builder }, buildType: 'https://github.com/slsa-framework/slsa-github-generator/container@v1', materials: [] })

  const matching = new World()
  matching.sign(APP, image.digest, ci)
  matching.attest(APP, image.digest, ci, SLSA_V02, provenance(BUILDER))
  const allowed = await evaluatePolicies(image, set, matching.deps)
  t.equal(allowed.result, 'allow', 'a matching builder passes')
  t.equal(allowed.policies[0]?.authorities[0]?.evidence.length, 1, 'only the attestation is verified: an authority naming attestations needs no signature (policy-controller)')

  const other = new World()
  other.sign(APP, image.digest, ci)
  other.attest(APP, image.digest, ci, SLSA_V02, provenance('https://github.com/attacker/fork/.github/workflows/release.yml@refs/heads/main'))
  const denied = await evaluatePolicies(image, set, other.deps)
  t.equal(denied.result, 'deny', 'another builder fails')
  t.match(
    denied.reasons[0],
    /^policy "provenance": attestation "built-by-release-workflow": none of 1 of type https:\/\/slsa\.dev\/provenance\/v0\.2 passed \(attestation sha256:[0-9a-f]{12} \(referrers\): condition is false: predicate\.builder\.id == /,
  )

  const missing = new World()
  missing.sign(APP, image.digest, ci)
  const absent = await evaluatePolicies(image, set, missing.deps)
  t.equal(absent.result, 'deny', 'a missing attestation fails')
  t.equal(absent.reasons[0], 'policy "provenance": attestation "built-by-release-workflow": no attestation of type https://slsa.dev/provenance/v0.2 found')

  const unsigned = new World()
  unsigned.attest(APP, image.digest, ci, SLSA_V02, provenance(BUILDER))
  t.equal((await evaluatePolicies(image, set, unsigned.deps)).result, 'allow', 'as in policy-controller, a verified attestation by the authority is enough without a signature')

  const wrongType = new World()
  wrongType.sign(APP, image.digest, ci)
  wrongType.attest(APP, image.digest, ci, PREDICATE_TYPES.slsaprovenance1!, provenance(BUILDER))
  t.equal((await evaluatePolicies(image, set, wrongType.deps)).result, 'deny', 'a v1 provenance is not a v0.2 one')

  const stranger = new World()
  stranger.sign(APP, image.digest, ci)
  stranger.attest(APP, image.digest, { issuer: GITHUB, subject: 'https://github.com/attacker/x/.github/workflows/a.yml@refs/heads/main' }, SLSA_V02, provenance(BUILDER))
  const untrusted = await evaluatePolicies(image, set, stranger.deps)
  t.equal(untrusted.result, 'deny', 'an attestation by someone else fails')
  t.match(untrusted.reasons[0], 'IDENTITY_MISMATCH')

  const elsewhere = new World()
  elsewhere.sign(APP, image.digest, ci)
  elsewhere.attest(APP, image.digest, ci, SLSA_V02, provenance(BUILDER), imageOf(APP.upstream, APP.repository, 'other').digest)
  const aboutOther = await evaluatePolicies(image, set, elsewhere.deps)
  t.equal(aboutOther.result, 'deny', "a statement whose subject is another image's digest fails")

  const oneOfMany = new World()
  oneOfMany.sign(APP, image.digest, ci)
  oneOfMany.attest(APP, image.digest, ci, SLSA_V02, provenance('https://example.com/other-builder'))
  oneOfMany.attest(APP, image.digest, ci, SLSA_V02, provenance(BUILDER))
  t.equal((await evaluatePolicies(image, set, oneOfMany.deps)).result, 'allow', 'one passing attestation among several suffices')
})

t.test('attestation conditions see predicateType, subject and predicate; errors fail closed', async (t) => {
  const ci = { issuer: GITHUB, subject: RELEASE_WORKFLOW }
  const withCondition = (data: string, predicateType = 'vuln') =>
    policies({
      policies: [
        { name: 'p', images: [{ glob: 'ghcr.io/**' }], authorities: [{ ...keylessAuthority(), attestations: [{ name: 'scan', predicateType, policy: { type: 'cel', data } }] }] },
      ],
    })
  const world = new World()
  world.sign(APP, image.digest, ci)
  world.attest(APP, image.digest, ci, PREDICATE_TYPES.vuln!, {
    scanner: { uri: 'pkg:github/aquasecurity/trivy', result: { summary: { critical: 0, high: 2 } } },
    metadata: { scanFinishedOn: '2026-11-20T10:00:00Z' },
  })

  const cases: [string, 'allow' | 'deny', string?][] = [
    ['predicate.scanner.result.summary.critical == 0', 'allow'],
    ['predicate.scanner.result.summary.high < 3 && predicate.scanner.uri.startsWith("pkg:github/aquasecurity/")', 'allow'],
    [`predicateType == "${PREDICATE_TYPES.vuln}"`, 'allow'],
    ['subject.exists(s, s.name == "my-org/app")', 'allow'],
    ['timestamp(predicate.metadata.scanFinishedOn) > timestamp("2026-01-01T00:00:00Z")', 'allow'],
    ['has(predicate.scanner.result.summary.medium) ? predicate.scanner.result.summary.medium == 0 : true', 'allow'],
    ['predicate.scanner.result.summary.high == 0', 'deny', 'condition is false'],
    ['predicate.nothing.here == 1', 'deny', 'condition could not be evaluated: No such key: nothing'],
    ['predicate.scanner', 'deny', 'condition yields object, not true'],
  ]
  for (const [expression, expected, reason] of cases) {
    const verdict = await evaluatePolicies(image, withCondition(expression), world.deps)
    t.equal(verdict.result, expected, expression)
    if (reason) t.match(verdict.reasons[0], reason, `${expression}: ${reason}`)
  }
  t.equal((await evaluatePolicies(image, withCondition('true', PREDICATE_TYPES.vuln!), world.deps)).result, 'allow', 'full URIs work like short names')
})

t.test('image indexes: signed at the index, or per platform with requirePlatformSignatures', async (t) => {
  const amd64 = imageOf(APP.upstream, APP.repository, 'amd64')
  const arm64 = imageOf(APP.upstream, APP.repository, 'arm64')
  const buildkitAttestation = imageOf(APP.upstream, APP.repository, 'attestation-manifest')
  const index = indexOf(APP.upstream, APP.repository, [
    { digest: amd64.digest, platform: { os: 'linux', architecture: 'amd64' } },
    { digest: arm64.digest, platform: { os: 'linux', architecture: 'arm64' } },
    { digest: buildkitAttestation.digest, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
  ])
  const indexLevel = policies({ policies: [keyPolicy('release', RELEASE.pem)] })
  const perPlatform = policies({ policies: [keyPolicy('release', RELEASE.pem, { requirePlatformSignatures: true })] })
  const release = { keyHint: RELEASE.hint }

  const signedIndex = new World()
  signedIndex.sign(APP, index.digest, release)
  t.equal((await evaluatePolicies(index, indexLevel, signedIndex.deps)).result, 'allow', 'an index signed at the index')
  const notPerPlatform = await evaluatePolicies(index, perPlatform, signedIndex.deps)
  t.equal(notPerPlatform.result, 'deny', 'is not enough when every platform must be signed')
  t.equal(notPerPlatform.reasons[0], `policy "release": platform linux/amd64: no signatures found for ${amd64.digest.slice(0, 19)}`)

  const signedPlatforms = new World()
  signedPlatforms.sign(APP, amd64.digest, release)
  signedPlatforms.sign(APP, arm64.digest, release)
  t.equal((await evaluatePolicies(index, perPlatform, signedPlatforms.deps)).result, 'allow', 'every platform signed (the attestation manifest is not a platform)')
  t.equal((await evaluatePolicies(index, indexLevel, signedPlatforms.deps)).result, 'deny', 'per-platform signatures do not sign the index itself')
  t.notOk(signedPlatforms.discoveries.includes(`ghcr.io/my-org/app@${buildkitAttestation.digest}`))

  const oneMissing = new World()
  oneMissing.sign(APP, amd64.digest, release)
  const missing = await evaluatePolicies(index, perPlatform, oneMissing.deps)
  t.equal(missing.result, 'deny')
  t.match(missing.reasons[0], 'platform linux/arm64: no signatures found')

  t.equal((await evaluatePolicies(amd64, perPlatform, signedPlatforms.deps)).result, 'allow', 'a platform manifest fetched alone is verified on its own')
  const empty = indexOf(APP.upstream, APP.repository, [])
  t.match((await evaluatePolicies(empty, perPlatform, signedPlatforms.deps)).reasons[0], 'the index lists no platform manifests')

  // servePassingPlatforms: the index passes on its signed platforms and names the refused ones.
  const passing = policies({ policies: [keyPolicy('release', RELEASE.pem, { requirePlatformSignatures: true, servePassingPlatforms: true })] })
  const partial = await evaluatePolicies(index, passing, oneMissing.deps)
  t.equal(partial.result, 'allow', 'one platform passes: the index is served')
  t.same(
    partial.refusedPlatforms?.map((p) => [p.digest, p.platform]),
    [[arm64.digest, 'linux/arm64']],
    'the unsigned platform is listed as refused',
  )
  const whole = await evaluatePolicies(index, passing, signedPlatforms.deps)
  t.equal(whole.result, 'allow')
  t.equal(whole.refusedPlatforms, undefined, 'nothing refused when every platform passes')
  t.equal((await evaluatePolicies(index, passing, new World().deps)).result, 'deny', 'no platform passes: refused')
  t.equal((await evaluatePolicies(arm64, passing, oneMissing.deps)).result, 'deny', 'the refused platform fetched alone is refused')
})

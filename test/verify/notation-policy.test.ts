// notation's trust policy rules: every document notation refuses is refused here naming the field,
// statement selection prefers an exact scope to `*`, and each level enforces, logs or skips the
// validations as notation's level table says (integrity never relaxed; revocation fails closed
// unless set offline, since no OCSP or CRL service is ever contacted).
import t from 'tap'
import { NotationFailure } from '../../src/verify/notation/codes.ts'
import { verifyUnderPolicy, type NotationMaterial, type NotationStatement } from '../../src/verify/notation/authority.ts'
import { LEVELS, parseTrustPolicy, selectStatement, TrustPolicyError, type Level } from '../../src/verify/notation/trust-policy.ts'
import { identityFor, notaryPayload, signCose, signJws, TestPki, type Pem } from '../helpers/notation.ts'
import { tempDir } from '../helpers/proc.ts'

const ID = 'x509.subject:C=US, ST=WA, O=Acme'
const statement = (over: Record<string, unknown> = {}) => ({
  name: 's',
  registryScopes: ['r.example/app'],
  signatureVerification: { level: 'strict' },
  trustStores: ['ca:acme'],
  trustedIdentities: [ID],
  ...over,
})
const doc = (...statements: unknown[]) => ({ version: '1.0', trustPolicies: statements })

function refusal(d: unknown): string {
  try {
    parseTrustPolicy(d)
  } catch (err) {
    if (err instanceof TrustPolicyError) return err.message
    throw err
  }
  return 'ACCEPTED'
}

t.test('documents notation refuses are refused, naming the field', async (t) => {
  const cases: [string, unknown, string][] = [
    ['no version', { trustPolicies: [statement()] }, 'version: missing'],
    ['version 2.0', { version: '2.0', trustPolicies: [statement()] }, 'version: unsupported version "2.0"'],
    ['no statements', doc(), 'trustPolicies: a trust policy document needs at least one statement'],
    ['no name', doc(statement({ name: '' })), 'trustPolicies[0].name: missing'],
    ['same name twice', doc(statement(), statement({ registryScopes: ['r.example/other'] })), 'trustPolicies[1].name: statement name "s" is used twice'],
    ['unknown level', doc(statement({ signatureVerification: { level: 'lenient' } })), 'trustPolicies[0].signatureVerification.level: unknown level "lenient"'],
    ['no signatureVerification', doc(statement({ signatureVerification: undefined })), 'trustPolicies[0].signatureVerification: missing'],
    [
      'integrity overridden',
      doc(statement({ signatureVerification: { level: 'strict', override: { integrity: 'log' } } })),
      'override.integrity: integrity verification cannot be overridden',
    ],
    [
      'authenticity skipped',
      doc(statement({ signatureVerification: { level: 'strict', override: { authenticity: 'skip' } } })),
      'override.authenticity: authenticity verification cannot be skipped',
    ],
    ['unknown validation', doc(statement({ signatureVerification: { level: 'strict', override: { freshness: 'log' } } })), 'override.freshness: unknown validation type'],
    ['unknown action', doc(statement({ signatureVerification: { level: 'strict', override: { expiry: 'warn' } } })), 'override.expiry: unknown action "warn"'],
    [
      'skip customised',
      doc(statement({ signatureVerification: { level: 'skip', override: { revocation: 'log' } }, trustStores: [], trustedIdentities: [] })),
      'signatureVerification.override: level skip cannot be customised',
    ],
    ['skip with stores', doc(statement({ signatureVerification: { level: 'skip' } })), 'trustPolicies[0].trustStores: level skip takes no trust stores'],
    ['no trust stores', doc(statement({ trustStores: [] })), 'trustPolicies[0].trustStores: missing'],
    ['no identities', doc(statement({ trustedIdentities: undefined })), 'trustPolicies[0].trustedIdentities: missing'],
    ['store without type', doc(statement({ trustStores: ['acme'] })), 'trustPolicies[0].trustStores[0]: "acme" is not <type>:<name>'],
    ['unknown store type', doc(statement({ trustStores: ['x509:acme'] })), 'trustStores[0]: unknown trust store type "x509"'],
    ['bad store name', doc(statement({ trustStores: ['ca:../etc'] })), 'trustStores[0]: trust store name "../etc" must match'],
    ['wildcard identity with others', doc(statement({ trustedIdentities: ['*', ID] })), 'trustedIdentities: the wildcard identity "*" cannot be used with other identities'],
    ['DN without ST', doc(statement({ trustedIdentities: ['x509.subject:C=US, O=Acme'] })), 'trustedIdentities[0]: distinguished name "C=US, O=Acme" lacks ST'],
    ['plugin identity', doc(statement({ trustedIdentities: ['kms:arn'] })), 'trustedIdentities[0]: identity type "kms" is unsupported'],
    ['overlapping DNs', doc(statement({ trustedIdentities: [ID, `${ID}, CN=Build`] })), 'overlaps with'],
    ['multi-valued RDN', doc(statement({ trustedIdentities: ['x509.subject:C=US+ST=WA, O=Acme'] })), 'multi-valued RDN'],
    ['wildcard scope with others', doc(statement({ registryScopes: ['*', 'r.example/app'] })), 'registryScopes: the wildcard scope "*" cannot be used with other scopes'],
    ['scope with a wildcard', doc(statement({ registryScopes: ['r.example/*'] })), 'registryScopes[0]: "r.example/*" is not a fully qualified repository'],
    ['scope with a tag', doc(statement({ registryScopes: ['r.example/app:v1'] })), 'registryScopes[0]'],
    ['no scopes', doc(statement({ registryScopes: [] })), 'trustPolicies[0].registryScopes: needs at least one scope'],
    ['scope in two statements', doc(statement(), statement({ name: 't' })), 'trustPolicies[1].registryScopes: scope "r.example/app" is also in statement "s"'],
  ]
  for (const [what, d, message] of cases) t.match(refusal(d), message, what)
})

t.test('a valid document: overrides applied, exact scope before the wildcard', async (t) => {
  const parsed = parseTrustPolicy(
    doc(
      statement({ signatureVerification: { level: 'strict', override: { revocation: 'skip', expiry: 'log' } } }),
      statement({ name: 'any', registryScopes: ['*'], signatureVerification: { level: 'audit' }, trustedIdentities: ['*'] }),
    ),
  )
  t.same(parsed[0]!.enforcement, { ...LEVELS.strict, revocation: 'skip', expiry: 'log' })
  t.same(parsed[0]!.trustStores, [{ type: 'ca', name: 'acme' }])
  t.equal(selectStatement(parsed, 'r.example/app')?.name, 's')
  t.equal(selectStatement(parsed, 'r.example/other')?.name, 'any')
  t.equal(selectStatement(parsed.slice(0, 1), 'r.example/other'), undefined)
})

const dir = await tempDir(t, 'tp-notation-policy-')
const pki = new TestPki(dir)
const root = pki.ca('Policy Root')
const other = pki.ca('Other Root')
const good = pki.leaf('Policy Signer', root)
const old = pki.leaf('Old Signer', root, { days: '-1' })
const ocsp = pki.leaf('OCSP Signer', root, { extra: 'authorityInfoAccess=OCSP;URI:http://ocsp.invalid/\n' })
const crl = pki.leaf('CRL Signer', root, { extra: 'crlDistributionPoints=URI:http://crl.invalid/root.crl\n' })
const target = { name: 'r.example/app', mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'b'.repeat(64)}`, size: 321 }

function material(
  level: Level,
  over: { enforcement?: Partial<NotationStatement['enforcement']>; certs?: Pem[]; ids?: string[]; revocation?: 'offline'; scopes?: string[] } = {},
): NotationMaterial {
  const certs = (over.certs ?? [root]).map((c) => c.cert)
  const s: NotationStatement = {
    name: 'st',
    registryScopes: over.scopes ?? ['*'],
    level,
    enforcement: { ...LEVELS[level], ...over.enforcement },
    trustStores: ['ca:test'],
    trustedIdentities: over.ids ?? ['*'],
    ca: certs,
    signingAuthority: [],
    tsa: [],
  }
  return { type: 'notation', statements: [s], version: 'test', ...(over.revocation ? { revocation: over.revocation } : {}) }
}
function outcome(leaf: Pem, m: NotationMaterial, cose = false): string {
  const req = { payload: notaryPayload(target), signingTime: new Date() }
  const signer = { key: leaf.key, chain: [leaf.cert, root.cert] }
  try {
    const r = verifyUnderPolicy(cose ? 'application/cose' : 'application/jose+json', cose ? signCose(req, signer) : signJws(req, signer), target, m)
    return r.logged.length === 0 ? 'PASS' : `PASS logged ${r.logged.map((l) => `${l.validation}:${l.code}`).join(' ')}`
  } catch (err) {
    if (err instanceof NotationFailure) return err.code
    throw err
  }
}

t.test('levels enforce, log or skip as notation says', async (t) => {
  t.equal(outcome(good, material('strict')), 'PASS', 'strict, honest')
  t.equal(outcome(good, material('strict'), true), 'PASS', 'strict, honest, COSE')
  t.equal(outcome(good, material('strict', { certs: [other] })), 'NOTATION_UNTRUSTED_CHAIN', 'strict, wrong CA')
  t.equal(outcome(good, material('permissive', { certs: [other] })), 'NOTATION_UNTRUSTED_CHAIN', 'permissive enforces authenticity')
  t.equal(outcome(good, material('audit', { certs: [other] })), 'PASS logged authenticity:NOTATION_UNTRUSTED_CHAIN', 'audit logs a wrong CA')
  t.equal(outcome(good, material('audit', { ids: [identityFor('Someone Else')] })), 'PASS logged authenticity:NOTATION_UNTRUSTED_IDENTITY', 'audit logs an untrusted identity')
  t.equal(outcome(good, material('strict', { ids: [identityFor('Someone Else')] })), 'NOTATION_UNTRUSTED_IDENTITY', 'strict, untrusted identity')
  t.equal(outcome(good, material('strict', { ids: ['x509.subject:C=US, ST=WA, O=Trustpull Test'] })), 'PASS', 'an identity matches a subset of the subject, as in notation')
  t.equal(outcome(old, material('strict')), 'NOTATION_CERT_EXPIRED', 'strict, expired leaf (no timestamp)')
  t.equal(outcome(old, material('permissive')), 'PASS logged authenticTimestamp:NOTATION_CERT_EXPIRED', 'permissive logs an expired leaf')
  t.equal(
    outcome(good, material('strict', { enforcement: { authenticity: 'log' }, certs: [other] })),
    'PASS logged authenticity:NOTATION_UNTRUSTED_CHAIN',
    'override authenticity: log',
  )
  t.equal(outcome(good, material('strict', { scopes: ['r.example/other'] })), 'NOTATION_NO_TRUST_POLICY', 'no statement covers the image')
})

t.test('integrity is enforced at every level but skip', async (t) => {
  const forged = { ...target, digest: `sha256:${'c'.repeat(64)}` }
  const env = signJws({ payload: notaryPayload(forged), signingTime: new Date() }, { key: good.key, chain: [good.cert, root.cert] })
  const code = (level: Level) => {
    try {
      verifyUnderPolicy('application/jose+json', env, target, material(level))
      return 'PASS'
    } catch (err) {
      return (err as NotationFailure).code
    }
  }
  t.equal(code('audit'), 'NOTATION_TARGET_DIGEST_MISMATCH')
  t.equal(code('permissive'), 'NOTATION_TARGET_DIGEST_MISMATCH')
  t.equal(verifyUnderPolicy('application/jose+json', env, target, material('skip')).level, 'skip', 'skip verifies nothing')
})

t.test('revocation: a chain naming OCSP or CRL fails closed unless revocation is offline or relaxed', async (t) => {
  t.equal(outcome(ocsp, material('strict')), 'NOTATION_REVOCATION_UNCHECKED', 'OCSP, strict')
  t.equal(outcome(crl, material('strict')), 'NOTATION_REVOCATION_UNCHECKED', 'CRL distribution point, strict')
  t.equal(outcome(ocsp, material('strict', { revocation: 'offline' })), 'PASS', 'revocation: offline')
  t.equal(outcome(ocsp, material('strict', { enforcement: { revocation: 'skip' } })), 'PASS', 'override revocation: skip')
  t.equal(outcome(ocsp, material('permissive')), 'PASS logged revocation:NOTATION_REVOCATION_UNCHECKED', 'permissive logs it')
  t.equal(outcome(good, material('strict')), 'PASS', 'a chain naming no service is not revocable')
})

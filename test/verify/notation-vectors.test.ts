// Every notation-go / notation-core-go envelope vector copied under test/fixtures/notation gives the
// outcome notation-go's own tests assert (see test/fixtures/notation/SOURCES.md).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { NotationFailure } from '../../src/verify/notation/codes.ts'
import { loadTrustStore, parseCertificates, TrustStoreError } from '../../src/verify/notation/store.ts'
import { verifyNotation, verifyNotationJws } from '../../src/verify/notation/verify.ts'

const F = join(import.meta.dirname, '../fixtures/notation')
const MOCK = join(F, 'notation-go/internal/mock/testdata')
const STORE = join(F, 'notation-go/verifier/testdata/truststore')
const ROOT_ID = 'x509.subject:CN=Notation Test Root,O=Notary,L=Seattle,ST=WA,C=US'
const target = { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: 'sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e', size: 528 }
const trusted = [...loadTrustStore(STORE, 'ca', 'valid-trust-store'), ...loadTrustStore(STORE, 'signingAuthority', 'valid-trust-store')]
const env = (name: string) => readFileSync(join(MOCK, name))

function code(fn: () => unknown): string {
  try {
    fn()
    return 'PASS'
  } catch (err) {
    if (err instanceof NotationFailure) return err.code
    throw err
  }
}

const cases: [string, string, { certs?: typeof trusted; ids?: string[] }?][] = [
  ['ca_valid_sig_env.json', 'PASS'],
  ['sa_valid_sig_env.json', 'PASS'],
  ['ca_invalid_sig_env.json', 'NOTATION_SIGNATURE_INVALID'],
  ['sa_invalid_sig_env.json', 'NOTATION_SIGNATURE_INVALID'],
  ['ca_expired_sig_env.json', 'NOTATION_EXPIRED'],
  ['sa_expired_sig_env.json', 'NOTATION_EXPIRED'],
  ['ca_plugin_sig_env.json', 'NOTATION_PLUGIN_UNSUPPORTED'],
  ['sa_plugin_sig_env.json', 'NOTATION_PLUGIN_UNSUPPORTED'],
  ['ca_valid_sig_env.json', 'NOTATION_UNTRUSTED_CHAIN', { certs: loadTrustStore(STORE, 'ca', 'valid-trust-store-2') }],
  ['ca_valid_sig_env.json', 'NOTATION_UNTRUSTED_IDENTITY', { ids: ['x509.subject:CN=LOL,O=DummyOrg,L=Hyderabad,ST=TG,C=IN'] }],
  ...['0.0.9', '1.0.0-alpha', '1.0.0-alpha.beta', '1.0.0'].map((v) => [`ca_compatible_pluginver_sig_env_${v}.json`, 'NOTATION_PLUGIN_UNSUPPORTED'] as [string, string]),
  ...['1.0.1', '1.0.9', '1.1.0-alpha', '1.2.3'].map((v) => [`ca_incompatible_pluginver_sig_env_${v}.json`, 'NOTATION_PLUGIN_UNSUPPORTED'] as [string, string]),
]

for (const [file, expected, over] of cases) {
  t.test(`${file} → ${expected}${over ? ' (policy varied)' : ''}`, async (t) => {
    t.equal(
      code(() => verifyNotationJws(env(file), target, { certificates: over?.certs ?? trusted, trustedIdentities: over?.ids ?? [ROOT_ID] })),
      expected,
    )
  })
}

t.test('a payload for another digest, media type or size is refused with its own code', async (t) => {
  const run = (tg: typeof target) => code(() => verifyNotationJws(env('ca_valid_sig_env.json'), tg, { certificates: trusted, trustedIdentities: [ROOT_ID] }))
  t.equal(run({ ...target, digest: `sha256:${'0'.repeat(64)}` }), 'NOTATION_TARGET_DIGEST_MISMATCH')
  t.equal(run({ ...target, mediaType: 'application/vnd.oci.image.manifest.v1+json' }), 'NOTATION_TARGET_MEDIA_TYPE_MISMATCH')
  t.equal(run({ ...target, size: 529 }), 'NOTATION_TARGET_SIZE_MISMATCH')
})

t.test('certificate files: PEM, DER, multi-PEM parse; invalid is refused', async (t) => {
  const X = join(F, 'notation-core-go/x509/testdata')
  t.equal(parseCertificates(readFileSync(join(X, 'pem.crt')), 'pem').length, 1)
  t.equal(parseCertificates(readFileSync(join(X, 'der.der')), 'der').length, 1)
  t.equal(parseCertificates(readFileSync(join(X, 'multi-pem.crt')), 'multi').length, 2)
  t.throws(() => parseCertificates(readFileSync(join(X, 'invalid')), 'invalid'), TrustStoreError)
  t.throws(() => loadTrustStore(STORE, 'ca', 'trust-store-with-invalid-certs'), TrustStoreError)
})

t.test('internal/testdata jws_signature.sig and cose_signature.sig verify over the oci-layout manifest', async (t) => {
  const T = join(F, 'notation-go/internal/testdata')
  const alpine = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:19dbd2e48e921426ee8ace4dc892edfb2ecdc1d1a72d5416c83670c30acecef0', size: 481 }
  const jws = readFileSync(join(T, 'jws_signature.sig'))
  // Their self-signed CN=alpine certificate is in no stored trust store: it is trusted as itself.
  const self = new X509Certificate(Buffer.from((JSON.parse(jws.toString()) as { header: { x5c: string[] } }).header.x5c[0]!, 'base64'))
  const trust = { certificates: [self], trustedIdentities: ['x509.subject:CN=alpine,O=Notary,L=Seattle,ST=WA,C=US'] }
  t.equal(
    code(() => verifyNotation('application/jose+json', jws, alpine, trust)),
    'PASS',
    'JWS',
  )
  t.equal(
    code(() => verifyNotation('application/cose', readFileSync(join(T, 'cose_signature.sig')), alpine, trust)),
    'PASS',
    'COSE',
  )
  t.equal(
    code(() => verifyNotation('application/cose', readFileSync(join(T, 'cose_signature.sig')), { ...alpine, size: 482 }, trust)),
    'NOTATION_TARGET_SIZE_MISMATCH',
    'COSE, other size',
  )
  t.equal(
    code(() => verifyNotation('application/cose', readFileSync(join(T, 'cose_signature.sig')), alpine, { ...trust, certificates: trusted })),
    'NOTATION_UNTRUSTED_CHAIN',
    'COSE, other store',
  )
})

t.test('a leaf not valid at verification time is refused: no timestamp support, so no grace', async (t) => {
  const later = new Date('2200-01-01T00:00:00Z')
  t.equal(
    code(() => verifyNotationJws(env('ca_valid_sig_env.json'), target, { certificates: trusted, trustedIdentities: [ROOT_ID] }, later)),
    'NOTATION_CERT_EXPIRED',
  )
})

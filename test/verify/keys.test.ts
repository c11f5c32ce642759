// Key-based authorities with every supported key type (ECDSA P-256/P-384, Ed25519, RSA) and hash,
// over both cosign formats (simple-signing message signatures and DSSE attestations); the key
// parser accepts exactly what cosign accepts and refuses the rest with a code.
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import t from 'tap'
import { CosignAnnotation, legacyAttestationBundles, legacySignatureBundle } from '../../src/signatures/legacy.ts'
import { verifyCandidate } from '../../src/verify/candidate.ts'
import { KeyError, keyHint, parsePublicKey, parsePublicKeys } from '../../src/verify/keys.ts'
import { repositoryOfReference } from '../../src/verify/payload.ts'
import type { AuthorityMaterial, Candidate, KeyHashAlgorithm } from '../../src/verify/types.ts'
import { acceptedKeys, refusedKeys } from '../helpers/keys.ts'

const DIGEST = `sha256:${'c'.repeat(64)}`
const origin = { repository: 'org/app', via: 'sig-tag' as const, manifestDigest: DIGEST }

type Pair = { publicKey: KeyObject; privateKey: KeyObject }
const KEYS: { name: string; pair: () => Pair; hash: KeyHashAlgorithm | null }[] = [
  { name: 'ECDSA P-256, SHA-256', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), hash: 'sha256' },
  { name: 'ECDSA P-384, SHA-384', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }), hash: 'sha384' },
  { name: 'ECDSA P-384, SHA-256 (cosign default)', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-384' }), hash: 'sha256' },
  { name: 'Ed25519', pair: () => generateKeyPairSync('ed25519'), hash: null },
  { name: 'RSA 3072, SHA-256', pair: () => generateKeyPairSync('rsa', { modulusLength: 3072 }), hash: 'sha256' },
  { name: 'RSA 2048, SHA-512', pair: () => generateKeyPairSync('rsa', { modulusLength: 2048 }), hash: 'sha512' },
]

function pem(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'spki' }).toString()
}

function signatureCandidate(pair: Pair, hash: KeyHashAlgorithm | null): Candidate {
  const payload = Buffer.from(
    JSON.stringify({ critical: { identity: { 'docker-reference': 'r.test/org/app' }, image: { 'docker-manifest-digest': DIGEST }, type: 'cosign container image signature' } }),
  )
  const signature = sign(hash, payload, pair.privateKey).toString('base64')
  return { kind: 'signature', format: 'cosign-legacy', origin, bundle: legacySignatureBundle(payload, { [CosignAnnotation.signature]: signature }), payload }
}

function attestationCandidate(pair: Pair, hash: KeyHashAlgorithm | null): Candidate {
  const payloadType = 'application/vnd.in-toto+json'
  const payload = Buffer.from(
    JSON.stringify({ _type: 'https://in-toto.io/Statement/v0.1', subject: [{ digest: { sha256: DIGEST.slice(7) } }], predicateType: 'https://cyclonedx.org/bom', predicate: {} }),
  )
  const pae = Buffer.concat([Buffer.from(`DSSEv1 ${payloadType.length} ${payloadType} ${payload.length} `), payload])
  const envelope = { payloadType, payload: payload.toString('base64'), signatures: [{ keyid: '', sig: sign(hash, pae, pair.privateKey).toString('base64') }] }
  const [bundle] = legacyAttestationBundles(Buffer.from(JSON.stringify(envelope)), {})
  return { kind: 'attestation', format: 'cosign-legacy', origin: { ...origin, via: 'att-tag' }, bundle: bundle! }
}

t.test('every supported key type verifies signatures and attestations made with it', async (t) => {
  for (const { name, pair: make, hash } of KEYS) {
    const pair = make()
    const key = parsePublicKey(pem(pair.publicKey))
    const material: AuthorityMaterial = { type: 'key', keys: [{ key, hint: 'release-key', ...(hash ? { hashAlgorithm: hash } : {}) }], requireTlog: false }
    for (const candidate of [signatureCandidate(pair, hash), attestationCandidate(pair, hash)]) {
      const evidence = verifyCandidate(candidate, material, DIGEST)
      t.equal(evidence.ok, true, `${name}, ${candidate.kind}: ${evidence.reason ?? 'verified'}`)
      t.same(evidence.signer, { keyHint: 'release-key' })
    }
    const stranger = parsePublicKey(pem(make().publicKey))
    const wrong: AuthorityMaterial = { type: 'key', keys: [{ key: stranger, ...(hash ? { hashAlgorithm: hash } : {}) }], requireTlog: false }
    t.match(verifyCandidate(signatureCandidate(pair, hash), wrong, DIGEST), { ok: false, code: 'UNTRUSTED_KEY' }, `${name}: another key of the same type`)
  }
})

t.test('the hash algorithm is the authority’s: a signature made with another is refused', async (t) => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-384' })
  const key = parsePublicKey(pem(pair.publicKey))
  const sha384 = signatureCandidate(pair, 'sha384')
  t.match(verifyCandidate(sha384, { type: 'key', keys: [{ key }], requireTlog: false }, DIGEST), { ok: false, code: 'UNTRUSTED_KEY' }, 'default sha256')
  t.equal(verifyCandidate(sha384, { type: 'key', keys: [{ key, hashAlgorithm: 'sha384' }], requireTlog: false }, DIGEST).ok, true)
})

t.test('any one of several keys suffices; evidence names the one that matched', async (t) => {
  const a = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const b = generateKeyPairSync('ed25519')
  const material: AuthorityMaterial = {
    type: 'key',
    keys: [{ key: parsePublicKey(pem(a.publicKey)) }, { key: parsePublicKey(pem(b.publicKey)) }],
    requireTlog: false,
  }
  const evidence = verifyCandidate(signatureCandidate(b, null), material, DIGEST)
  t.equal(evidence.ok, true, evidence.reason ?? 'verified')
  t.same(evidence.signer, { keyHint: keyHint(b.publicKey) })
  t.match(verifyCandidate(signatureCandidate(generateKeyPairSync('ed25519'), null), material, DIGEST), { ok: false, code: 'UNTRUSTED_KEY', reason: /any of the 2 trusted keys/ })
  t.match(verifyCandidate(signatureCandidate(a, 'sha256'), { type: 'key', keys: [], requireTlog: false }, DIGEST), { ok: false, code: 'UNTRUSTED_KEY' })
})

// cosign's acceptance rules, in the one parser every key goes through (policies and verify-bundle).
t.test('parsePublicKey accepts what cosign accepts', async (t) => {
  for (const { name, pem: text } of acceptedKeys()) t.equal(parsePublicKey(text).type, 'public', name)
  const two = pem(generateKeyPairSync('ed25519').publicKey) + pem(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey)
  t.equal(parsePublicKeys(two).length, 2, 'a file may hold several keys')
  t.throws(() => parsePublicKey(two), { code: 'KEY_MULTIPLE' }, 'but --key takes one')
})

t.test('parsePublicKey refuses what cosign refuses, with a code and the problem', async (t) => {
  for (const { name, pem: text, code, message } of refusedKeys()) {
    t.throws(() => parsePublicKey(text), KeyError, name)
    t.throws(() => parsePublicKeys(text), { code, message }, name)
  }
})

t.test('docker-reference names a repository, however the reference is written', async (t) => {
  const cases: [string, string][] = [
    ['ghcr.io/org/app', 'org/app'],
    ['ghcr.io/org/app:1.2', 'org/app'],
    ['ghcr.io/org/app@sha256:abc', 'org/app'],
    ['127.0.0.1:5000/org/app:tag', 'org/app'],
    ['localhost/app', 'library/app'],
    ['nginx', 'library/nginx'],
    ['nginx:1.27', 'library/nginx'],
    ['docker.io/library/nginx', 'library/nginx'],
    ['org/app', 'org/app'],
    ['registry.test:443/a/b/c:v1', 'a/b/c'],
  ]
  for (const [reference, repository] of cases) t.equal(repositoryOfReference(reference), repository, reference)
})

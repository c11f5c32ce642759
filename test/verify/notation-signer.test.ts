// The test signer (test/helpers/notation.ts) against notation-core-go's conformance vectors: given
// the vectors' signing request it writes byte-identical JWS protected headers and payload and
// COSE protected headers, so the end-to-end tests' signatures are notation's, not an encoding the
// verifier and the signer merely agree on. Its envelopes then verify (EC P-256 and RSA-3072).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { decode, type Tag } from 'cbor2'
import { verifyNotation } from '../../src/verify/notation/verify.ts'
import { coseProtected, identityFor, jwsProtected, notaryPayload, signCose, signJws, TestPki } from '../helpers/notation.ts'
import { tempDir } from '../helpers/proc.ts'

const V = join(import.meta.dirname, '../fixtures/notation/notation-core-go/signature')
const extended = [{ key: 'signedCritKey1', value: 'signedCritValue1', critical: true }, ...[1, 2, 3, 4].map((i) => ({ key: `signedKey${i}`, value: 'signedValue1' }))]

t.test('JWS: the conformance request gives the vector protected header and payload byte for byte', async (t) => {
  const vector = JSON.parse(readFileSync(join(V, 'jws/testdata/conformance.json'), 'utf8')) as { payload: string; protected: string }
  const req = { payload: Buffer.from('{"key":"hello JWS"}'), signingTime: new Date('2022-08-29T13:50:00Z'), expiry: new Date('2099-08-30T13:50:00Z'), extended }
  t.equal(jwsProtected(req, 'ES256').toString('base64url'), vector.protected)
  t.equal(req.payload.toString('base64url'), vector.payload)
})

t.test('COSE: the conformance request gives the vector protected header and payload byte for byte', async (t) => {
  const vector = JSON.parse(readFileSync(join(V, 'cose/testdata/conformance.json'), 'utf8')) as {
    signingTime: number
    expiry: number
    payload: string
    protectedHeaders: { cborHex: string }
    expectedOutput: { cborHex: string }
  }
  const req = {
    payload: Buffer.from(vector.payload, 'hex'),
    signingTime: new Date(vector.signingTime * 1000),
    expiry: new Date(vector.expiry * 1000),
    extended: [
      { key: 'signedKey1', value: 'signedValue1' },
      { key: 'signedCritKey1', value: 'signedCritValue1', critical: true },
    ],
  }
  t.equal(Buffer.from(coseProtected(req, -38)).toString('hex'), vector.protectedHeaders.cborHex.toLowerCase())
  const expected = decode(Buffer.from(vector.expectedOutput.cborHex, 'hex'), { preferMap: true }) as Tag
  t.equal(expected.tag, 18, 'the vector is a tagged COSE_Sign1')
  const [protectedBytes, , payload] = expected.contents as Uint8Array[]
  t.equal(Buffer.from(protectedBytes!).toString('hex'), Buffer.from(coseProtected(req, -38)).toString('hex'), 'same protected bytes as the expected output')
  t.equal(Buffer.from(payload!).toString('hex'), vector.payload.toLowerCase())
})

t.test('envelopes the signer makes verify: JWS and COSE, EC P-256 and RSA-3072', async (t) => {
  const pki = new TestPki(await tempDir(t, 'tp-notation-signer-'))
  const root = pki.ca('Signer Root')
  const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 1234 }
  for (const spec of ['ec-p256', 'rsa-3072'] as const) {
    const leaf = pki.leaf(`leaf-${spec}`, root, { spec })
    const signer = { key: leaf.key, chain: [leaf.cert, root.cert] }
    const req = { payload: notaryPayload(target), signingTime: new Date() }
    const trust = { certificates: [root.cert], trustedIdentities: [identityFor(`leaf-${spec}`)] }
    t.equal(verifyNotation('application/jose+json', signJws(req, signer), target, trust).subject, leaf.cert.subject.replace(/\n/g, ','), `JWS ${spec}`)
    t.equal(verifyNotation('application/cose', signCose(req, signer), target, trust).subject, leaf.cert.subject.replace(/\n/g, ','), `COSE ${spec}`)
  }
})

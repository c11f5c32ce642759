// Forged Notation JWS signatures, made here with the openssl CLI (a test CA, a code-signing leaf)
// and node:crypto: each is refused with its own code; the honest one passes.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { constants, createHash, createPrivateKey, sign, X509Certificate } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { NotationFailure } from '../../src/verify/notation/codes.ts'
import { verifyNotationJws } from '../../src/verify/notation/verify.ts'
import { tempDir } from '../helpers/proc.ts'

const dir = await tempDir(t, 'tp-notation-forge-')
const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
const manifest = Buffer.from('{"schemaVersion":2}')
const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`, size: manifest.length }

function ca(name: string): X509Certificate {
  ossl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-subj',
    `/CN=${name}`,
    '-days',
    '30',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  )
  return new X509Certificate(readFileSync(join(dir, `${name}.pem`)))
}
function leaf(name: string, issuer: string, opts: { eku?: string; digest?: string; days?: string } = {}): { cert: X509Certificate; key: string } {
  ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`)
  writeFileSync(join(dir, `${name}.ext`), `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=${opts.eku ?? 'codeSigning'}\n`)
  ossl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${issuer}.pem`,
    '-CAkey',
    `${issuer}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    opts.days ?? '10',
    '-extfile',
    `${name}.ext`,
    `-${opts.digest ?? 'sha256'}`,
  )
  return { cert: new X509Certificate(readFileSync(join(dir, `${name}.pem`))), key: readFileSync(join(dir, `${name}.key`), 'utf8') }
}

const root = ca('Test Root')
const other = ca('Other Root')
const good = leaf('Signer', 'Test Root')

function jws(l: { cert: X509Certificate; key: string }, chain: X509Certificate[], over: { hdr?: Record<string, unknown>; payload?: object; rsa?: boolean } = {}): Buffer {
  const hdr = {
    alg: 'ES256',
    crit: ['io.cncf.notary.signingScheme'],
    cty: 'application/vnd.cncf.notary.payload.v1+json',
    'io.cncf.notary.signingScheme': 'notary.x509',
    'io.cncf.notary.signingTime': new Date().toISOString(),
    ...over.hdr,
  }
  const p = Buffer.from(JSON.stringify(hdr)).toString('base64url')
  const pl = Buffer.from(JSON.stringify(over.payload ?? { targetArtifact: target })).toString('base64url')
  const sig = sign('sha256', Buffer.from(`${p}.${pl}`), { key: createPrivateKey(l.key), dsaEncoding: 'ieee-p1363', padding: constants.RSA_PKCS1_PSS_PADDING })
  return Buffer.from(JSON.stringify({ payload: pl, protected: p, header: { x5c: [l.cert, ...chain].map((c) => c.raw.toString('base64')) }, signature: sig.toString('base64url') }))
}
const trust = { certificates: [root], trustedIdentities: ['x509.subject:CN=Signer'] }
function code(env: Buffer, tr = trust, tg = target): string {
  try {
    verifyNotationJws(env, tg, tr)
    return 'PASS'
  } catch (err) {
    if (err instanceof NotationFailure) return err.code
    throw err
  }
}

t.equal(code(jws(good, [root])), 'PASS', 'the honest signature passes')
t.equal(code(jws(good, [root]), { ...trust, certificates: [other] }), 'NOTATION_UNTRUSTED_CHAIN', 'wrong CA')
t.equal(code(jws(good, [])), 'NOTATION_CHAIN_INVALID', 'a chain that stops short of its root (not self-signed at the end)')
t.equal(code(jws(good, [root]), { ...trust, trustedIdentities: ['x509.subject:CN=Someone Else'] }), 'NOTATION_UNTRUSTED_IDENTITY', 'untrusted identity')
t.equal(code(jws(good, [root]), trust, { ...target, digest: `sha256:${'1'.repeat(64)}` }), 'NOTATION_TARGET_DIGEST_MISMATCH', 'payload for another digest')
t.equal(code(jws(good, [root]), trust, { ...target, size: target.size + 1 }), 'NOTATION_TARGET_SIZE_MISMATCH', 'size mismatch')
t.equal(code(jws(good, [root], { hdr: { crit: ['io.cncf.notary.signingScheme', 'x.unknown'], 'x.unknown': 1 } })), 'NOTATION_UNKNOWN_CRIT', 'unknown crit')
t.equal(code(jws(good, [root], { hdr: { alg: 'ES384' } })), 'NOTATION_ALG_MISMATCH', 'alg mismatch')
t.equal(
  code(jws(leaf('NoEku', 'Test Root', { eku: 'serverAuth' }), [root]), { ...trust, trustedIdentities: ['x509.subject:CN=NoEku'] }),
  'NOTATION_CHAIN_INVALID',
  'leaf without code-signing EKU',
)
t.equal(code(jws(leaf('Sha1', 'Test Root', { digest: 'sha1' }), [root]), { ...trust, trustedIdentities: ['x509.subject:CN=Sha1'] }), 'NOTATION_CHAIN_INVALID', 'SHA-1 signed leaf')
t.equal(
  code(jws(leaf('Old', 'Test Root', { days: '-1' }), [root]), { ...trust, trustedIdentities: ['x509.subject:CN=Old'] }),
  'NOTATION_CERT_EXPIRED',
  'expired leaf without timestamp',
)
t.equal(code(jws(good, [root], { hdr: { 'io.cncf.notary.verificationPlugin': 'x' } })), 'NOTATION_PLUGIN_UNSUPPORTED', 'a plugin-requiring signature')

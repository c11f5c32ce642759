// Notation JWS verification CPU per signature (ECDSA P-256 and RSA-3072), beside a bare
// crypto.verify of the same signing input: `node bench/notation-verify.ts [--seconds N]`.
// Certificates come from the openssl CLI (a CA and a leaf with the code-signing EKU).
// Writes bench/results/notation-verify.json and .md. Cosign figures: bench/results/verify.md.
import { execFileSync } from 'node:child_process'
import { constants, createHash, createPrivateKey, sign, verify, X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { verifyNotationJws } from '../src/verify/notation/verify.ts'

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] ?? NaN) || 3
const manifest = Buffer.from('{"schemaVersion":2}')
const target = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}`, size: manifest.length }
const dir = mkdtempSync(join(tmpdir(), 'tp-notation-bench-'))
const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })

function chain(kind: 'ec' | 'rsa'): { leafKey: string; leaf: X509Certificate; ca: X509Certificate } {
  const keyArgs = kind === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', 'rsa:3072']
  ossl(
    'req',
    '-x509',
    ...keyArgs,
    '-nodes',
    '-keyout',
    `${kind}-ca.key`,
    '-out',
    `${kind}-ca.pem`,
    '-subj',
    '/CN=Bench CA',
    '-days',
    '30',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign',
  )
  ossl('req', ...keyArgs, '-nodes', '-keyout', `${kind}-leaf.key`, '-out', `${kind}-leaf.csr`, '-subj', '/CN=Bench Signer')
  writeFileSync(join(dir, 'ext'), 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n')
  ossl(
    'x509',
    '-req',
    '-in',
    `${kind}-leaf.csr`,
    '-CA',
    `${kind}-ca.pem`,
    '-CAkey',
    `${kind}-ca.key`,
    '-CAcreateserial',
    '-out',
    `${kind}-leaf.pem`,
    '-days',
    '10',
    '-extfile',
    'ext',
    '-sha256',
  )
  return {
    leafKey: readFileSync(join(dir, `${kind}-leaf.key`), 'utf8'),
    leaf: new X509Certificate(readFileSync(join(dir, `${kind}-leaf.pem`))),
    ca: new X509Certificate(readFileSync(join(dir, `${kind}-ca.pem`))),
  }
}

function envelope(kind: 'ec' | 'rsa') {
  const c = chain(kind)
  const alg = kind === 'ec' ? 'ES256' : 'PS384'
  const hdr = {
    alg,
    crit: ['io.cncf.notary.signingScheme'],
    cty: 'application/vnd.cncf.notary.payload.v1+json',
    'io.cncf.notary.signingScheme': 'notary.x509',
    'io.cncf.notary.signingTime': new Date().toISOString(),
  }
  const p = Buffer.from(JSON.stringify(hdr)).toString('base64url')
  const pl = Buffer.from(JSON.stringify({ targetArtifact: target })).toString('base64url')
  const input = Buffer.from(`${p}.${pl}`)
  const key = createPrivateKey(c.leafKey)
  const sig = kind === 'ec' ? sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' }) : sign('sha384', input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 })
  const env = Buffer.from(
    JSON.stringify({ payload: pl, protected: p, header: { x5c: [c.leaf.raw.toString('base64'), c.ca.raw.toString('base64')] }, signature: sig.toString('base64url') }),
  )
  const bare = () =>
    kind === 'ec'
      ? verify('sha256', input, { key: c.leaf.publicKey, dsaEncoding: 'ieee-p1363' }, sig)
      : verify('sha384', input, { key: c.leaf.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 }, sig)
  return { env, trust: { certificates: [c.ca], trustedIdentities: ['x509.subject:CN=Bench Signer'] }, bare }
}

function measure(name: string, op: () => void) {
  for (let i = 0; i < 100; i++) op()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let n = 0
  while (performance.now() - t0 < seconds * 1000) for (let j = 0; j < 10; j++, n++) op()
  const cpu = process.cpuUsage(cpu0)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  return {
    case: name,
    iterations: n,
    cpuSeconds: Math.round(cpuSeconds * 1000) / 1000,
    perSecondPerCore: Math.round(n / cpuSeconds),
    microsecondsPerOp: Math.round((cpuSeconds * 1e7) / n) / 10,
  }
}

const results = []
for (const kind of ['ec', 'rsa'] as const) {
  const e = envelope(kind)
  verifyNotationJws(e.env, target, e.trust)
  const label = kind === 'ec' ? 'ECDSA P-256 (ES256)' : 'RSA-3072 (PS384)'
  results.push(
    measure(`crypto.verify ${label}`, () => {
      if (!e.bare()) throw new Error('bare verify failed')
    }),
  )
  results.push(measure(`notation JWS ${label}: parse, chain, identity, payload`, () => verifyNotationJws(e.env, target, e.trust)))
}
mkdirSync('bench/results', { recursive: true })
writeFileSync('bench/results/notation-verify.json', JSON.stringify({ node: process.version, seconds, results }, null, 2) + '\n')
const md = ['| case | per second per core | µs per op |', '|---|---:|---:|', ...results.map((r) => `| ${r.case} | ${r.perSecondPerCore} | ${r.microsecondsPerOp} |`)].join('\n')
writeFileSync(
  'bench/results/notation-verify.md',
  `# Notation JWS verification CPU (node ${process.version}, ${seconds}s per case)\n\n${md}\n\nCommand: \`node bench/notation-verify.ts --seconds ${seconds}\`. Cosign figures: verify.md.\n`,
)
console.log(md)

// Verifications per second per core, side by side with the crypto floor, in one run:
//   node bench/verify.ts [--seconds N]
// - crypto.verify: a bare ECDSA P-256 / SHA-256 check of a cosign simple-signing payload;
// - key-based: a cosign `.sig` signature (P-256) through verifyCandidate (parse, payload, sigstore-js);
// - keyless (mock): a cosign keyless signature (Fulcio certificate with SCT, Rekor SET) from
//   @sigstore/mock's CA and Rekor, against a trust root built from their keys; once with a new
//   signing certificate every time, once with a certificate already seen (cosign --recursive);
// - public-good: a real public-good bundle (sigstore-conformance happy-path-v0.3) through
//   trustpull's engine, and through @sigstore/verify alone as it is used without memoisation.
// Each case runs single-threaded; "per core" divides by the CPU time the process used.
// Writes bench/results/verify.json and bench/results/verify.md.
import { createHash, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, type as osType, release } from 'node:os'
import { bundleFromJSON } from '@sigstore/bundle'
import { initializeCA, initializeCTLog, initializeTLog } from '@sigstore/mock'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify'
import { CosignAnnotation, legacySignatureBundle } from '../src/signatures/legacy.ts'
import { parseBundle, verifyBundle } from '../src/verify/bundle.ts'
import { verifyCandidate } from '../src/verify/candidate.ts'
import { clearSigningCertificates } from '../src/verify/memo.ts'
import { publicGoodTrustRoot, trustRootFromJSON } from '../src/verify/trust-root.ts'
import type { AuthorityMaterial, Candidate } from '../src/verify/types.ts'

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] ?? NaN) || 3
const DIGEST = `sha256:${createHash('sha256').update('bench image').digest('hex')}`
const ISSUER = 'https://token.actions.githubusercontent.com'
const SUBJECT = 'https://github.com/org/app/.github/workflows/release.yml@refs/heads/main'
const b64 = (bytes: ArrayBufferView): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')
const spki = (key: KeyObject): Uint8Array<ArrayBuffer> => new Uint8Array(key.export({ format: 'der', type: 'spki' }))
const p256 = () => generateKeyPairSync('ec', { namedCurve: 'P-256' })

interface Result {
  case: string
  iterations: number
  wallSeconds: number
  cpuSeconds: number
  perSecondPerCore: number
  microsecondsPerOp: number
}

function measure(name: string, op: (i: number) => void): Result {
  for (let i = 0; i < 200; i++) op(i)
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  let iterations = 0
  while (performance.now() - t0 < seconds * 1000) {
    for (let j = 0; j < 20; j++) op(iterations++)
  }
  const wallSeconds = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  const result = {
    case: name,
    iterations,
    wallSeconds: round(wallSeconds, 3),
    cpuSeconds: round(cpuSeconds, 3),
    perSecondPerCore: Math.round(iterations / cpuSeconds),
    microsecondsPerOp: round((cpuSeconds * 1e6) / iterations, 1),
  }
  console.log(`${name.padEnd(62)} ${String(result.perSecondPerCore).padStart(7)} /s/core  ${String(result.microsecondsPerOp).padStart(8)} µs`)
  return result
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits))
}

function simpleSigning(digest: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      critical: { identity: { 'docker-reference': 'registry.test/org/app' }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
      optional: null,
    }),
  )
}

// --- key-based -----------------------------------------------------------------------------------
const signer = p256()
const payload = simpleSigning(DIGEST)
const signature = sign('sha256', payload, signer.privateKey)
const keyCandidate: Candidate = {
  kind: 'signature',
  format: 'cosign-legacy',
  origin: { repository: 'org/app', via: 'sig-tag', manifestDigest: DIGEST },
  bundle: legacySignatureBundle(payload, { [CosignAnnotation.signature]: signature.toString('base64') }),
  payload,
}
const byKey: AuthorityMaterial = { type: 'key', keys: [{ key: signer.publicKey }], requireTlog: false }

// --- keyless from @sigstore/mock ----------------------------------------------------------------
const keys = { ca: p256(), ct: p256(), tlog: p256() }
const ctlog = await initializeCTLog(keys.ct)
const ca = await initializeCA(keys.ca, ctlog)
const tlog = await initializeTLog('https://rekor.mock.test', keys.tlog)
const start = '2019-01-01T00:00:00Z'
const logKey = (key: KeyObject) => ({ rawBytes: b64(spki(key)), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } })
const mockRoot = trustRootFromJSON(
  'mock',
  {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: 'https://rekor.mock.test',
        hashAlgorithm: 'SHA2_256',
        publicKey: logKey(keys.tlog.publicKey),
        logId: { keyId: createHash('sha256').update(spki(keys.tlog.publicKey)).digest('base64') },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: 'https://fulcio.mock.test',
        certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
        validFor: { start },
      },
    ],
    ctlogs: [{ baseUrl: 'https://ctfe.mock.test', hashAlgorithm: 'SHA2_256', publicKey: logKey(keys.ct.publicKey), logId: { keyId: b64(ctlog.logID) } }],
    timestampAuthorities: [],
  },
  'bench',
)

async function keylessCandidate(digest: string): Promise<Candidate> {
  const ephemeral = p256()
  const cert = await ca.issueCertificate({
    publicKey: spki(ephemeral.publicKey),
    subjectAltName: SUBJECT,
    extensions: [
      { oid: '1.3.6.1.4.1.57264.1.1', value: ISSUER, legacy: true },
      { oid: '1.3.6.1.4.1.57264.1.8', value: ISSUER },
    ],
  })
  const body = simpleSigning(digest)
  const sig = sign('sha256', body, ephemeral.privateKey)
  const pem = `-----BEGIN CERTIFICATE-----\n${b64(cert)}\n-----END CERTIFICATE-----\n`
  const entry = {
    apiVersion: '0.0.1',
    kind: 'hashedrekord',
    spec: {
      data: { hash: { algorithm: 'sha256', value: createHash('sha256').update(body).digest('hex') } },
      signature: { content: sig.toString('base64'), publicKey: { content: Buffer.from(pem).toString('base64') } },
    },
  }
  const logged = Object.values(await tlog.log(entry))[0] as {
    body: string
    integratedTime: number
    logIndex: number
    logID: string
    verification: { signedEntryTimestamp: string }
  }
  const annotations = {
    [CosignAnnotation.signature]: sig.toString('base64'),
    [CosignAnnotation.certificate]: pem,
    [CosignAnnotation.rekorBundle]: JSON.stringify({
      SignedEntryTimestamp: logged.verification.signedEntryTimestamp,
      Payload: { body: logged.body, integratedTime: logged.integratedTime, logIndex: logged.logIndex, logID: logged.logID },
    }),
  }
  return {
    kind: 'signature',
    format: 'cosign-legacy',
    origin: { repository: 'org/app', via: 'sig-tag', manifestDigest: digest },
    bundle: legacySignatureBundle(body, annotations),
    payload: body,
  }
}

const POOL = 64
const keyless: Candidate[] = []
for (let i = 0; i < POOL; i++) keyless.push(await keylessCandidate(DIGEST))
const byIdentity: AuthorityMaterial = { type: 'keyless', identities: [{ issuer: ISSUER, subject: SUBJECT }], trustRoot: mockRoot, ignoreSCT: false }

// --- a real public-good bundle ------------------------------------------------------------------
const CASE = new URL('../test/fixtures/sigstore-conformance/bundle-verify/', import.meta.url).pathname
const publicGoodBundle: unknown = JSON.parse(readFileSync(`${CASE}happy-path-v0.3/bundle.sigstore.json`, 'utf8'))
const artifact = readFileSync(`${CASE}a.txt`)
const publicGood: AuthorityMaterial = {
  type: 'keyless',
  identities: [
    {
      issuer: ISSUER,
      subject: 'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main',
    },
  ],
  trustRoot: publicGoodTrustRoot(),
  ignoreSCT: false,
}
const seeds = JSON.parse(readFileSync(new URL('../node_modules/@sigstore/tuf/seeds.json', import.meta.url), 'utf8')) as Record<string, { targets: Record<string, string> }>
const plainMaterial = toTrustMaterial(TrustedRoot.fromJSON(JSON.parse(Buffer.from(seeds['https://tuf-repo-cdn.sigstore.dev']!.targets['trusted_root.json']!, 'base64').toString())))
const plainVerifier = new Verifier(plainMaterial)

// Sanity: every case verifies before it is timed.
const must = (ok: boolean, what: string) => {
  if (!ok) throw new Error(`bench setup: ${what} does not verify`)
}
must(verify('sha256', payload, signer.publicKey, signature), 'crypto.verify')
must(verifyCandidate(keyCandidate, byKey, DIGEST).ok, 'key-based')
must(
  keyless.every((c) => verifyCandidate(c, byIdentity, DIGEST).ok),
  'keyless',
)
must(verifyBundle(parseBundle(publicGoodBundle), artifact, publicGood).signer.subject !== undefined, 'public-good')

const loadBefore = loadavg()[0]!
console.log(`node ${process.version}, ${cpus()[0]?.model} × ${cpus().length}, ${seconds} s per case, load average ${loadBefore.toFixed(2)}`)
const results = [
  measure('crypto.verify ECDSA P-256/SHA-256 (floor)', () => void verify('sha256', payload, signer.publicKey, signature)),
  measure('key-based cosign signature (P-256), verifyCandidate', () => void verifyCandidate(keyCandidate, byKey, DIGEST)),
  measure('keyless mock signature, new certificate each time', (i) => {
    clearSigningCertificates()
    verifyCandidate(keyless[i % POOL]!, byIdentity, DIGEST)
  }),
  measure('keyless mock signature, certificate seen before', () => void verifyCandidate(keyless[0]!, byIdentity, DIGEST)),
  measure('public-good bundle, trustpull (new certificate each time)', () => {
    clearSigningCertificates()
    verifyBundle(parseBundle(publicGoodBundle), artifact, publicGood)
  }),
  measure('public-good bundle, @sigstore/verify alone', () => void plainVerifier.verify(toSignedEntity(bundleFromJSON(publicGoodBundle), artifact), {})),
]

const machine = {
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: round(totalmem() / 1024 ** 3, 1),
  os: `${osType()} ${release()}`,
  node: process.version,
  /** 1-minute load average before and after: other work on the machine slows every case alike. */
  loadAverage: [round(loadBefore, 2), round(loadavg()[0]!, 2)],
}
const command = `node bench/verify.ts --seconds ${seconds}`
const date = new Date().toISOString()
mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
writeFileSync(new URL('./results/verify.json', import.meta.url), `${JSON.stringify({ date, command, machine, results }, null, 2)}\n`)

const floor = results[0]!.microsecondsPerOp
const rows = results.map((r) => `| ${r.case} | ${r.perSecondPerCore.toLocaleString('en')} | ${r.microsecondsPerOp} | ${round(r.microsecondsPerOp / floor, 1)}× |`)
writeFileSync(
  new URL('./results/verify.md', import.meta.url),
  `# Verification throughput

\`${command}\` on ${date.slice(0, 10)}: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}
(1-minute load average ${machine.loadAverage.join(' → ')} while it ran). Single-threaded; "per core" divides the
iterations by the CPU time the process used. Compare rows with each other: they ran side by side.

| case | verifications/s/core | µs each | × crypto floor |
|---|---:|---:|---:|
${rows.join('\n')}

- *crypto floor*: one ECDSA P-256/SHA-256 \`crypto.verify\` of a simple-signing payload, nothing else.
- *key-based*: a cosign \`.sig\` signature converted to a bundle, payload checks, sigstore-js verification.
- *keyless mock*: a cosign keyless signature from @sigstore/mock's Fulcio (P-384 CA, SCT) and Rekor
  (SET), identity checked. "new certificate" clears trustpull's signing-certificate cache before each
  verification (every signature signed by another run); "seen before" is the \`--recursive\` case.
- *public-good*: sigstore-conformance \`happy-path-v0.3\` (a real public-good bundle) through trustpull,
  and through \`@sigstore/verify\` 4.1.3 used directly (no memoisation of the trust root's chain).
`,
)
console.log('wrote bench/results/verify.json and bench/results/verify.md')

// Every sigstore-conformance bundle-verification case through `trustpull verify-bundle`: each
// `_fail` case refused, every other case verified (offline: public-good root embedded, or the
// case's own trusted_root.json). Plus the command's own contract: usage errors, digest form, identities.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import t from 'tap'
import { runVerifyBundle } from '../../src/cli/verify-bundle.ts'

const CASES = new URL('../fixtures/sigstore-conformance/bundle-verify/', import.meta.url).pathname
const DEFAULT_IDENTITY = 'https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main'
const DEFAULT_ISSUER = 'https://token.actions.githubusercontent.com'

async function verifyBundle(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runVerifyBundle(args, { stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { code, stdout, stderr }
}

function readOptional(dir: string, name: string): string | undefined {
  const path = join(dir, name)
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined
}

/** The suite's CLI protocol arguments for one case directory. */
function caseArgs(name: string): string[] {
  const dir = join(CASES, name)
  const args = ['--bundle', join(dir, 'bundle.sigstore.json')]
  if (existsSync(join(dir, 'key.pub'))) args.push('--key', join(dir, 'key.pub'))
  else {
    args.push('--certificate-identity', readOptional(dir, 'identity') ?? DEFAULT_IDENTITY)
    args.push('--certificate-oidc-issuer', readOptional(dir, 'issuer') ?? DEFAULT_ISSUER)
  }
  if (existsSync(join(dir, 'trusted_root.json'))) args.push('--trusted-root', join(dir, 'trusted_root.json'))
  args.push(existsSync(join(dir, 'artifact')) ? join(dir, 'artifact') : join(CASES, 'a.txt'))
  return args
}

const cases = readdirSync(CASES, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(CASES, d.name, 'bundle.sigstore.json')))
  .map((d) => d.name)
  .sort()

t.test('all 70 sigstore-conformance bundle-verification cases', async (t) => {
  t.equal(cases.length, 70, 'the copied suite holds 70 cases')
  let passed = 0
  for (const name of cases) {
    const r = await verifyBundle(caseArgs(name))
    if (name.endsWith('_fail')) {
      t.equal(r.code, 1, `${name}: refused`)
      t.match(r.stderr, /^FAIL \[[A-Z_]+\]: \S/, `${name}: says why, with a code`)
      if (r.code === 1) passed++
    } else {
      t.equal(r.code, 0, `${name}: verified${r.code ? ` (${r.stderr.trim()})` : ''}`)
      t.match(r.stdout, /^OK: /, `${name}: says what was verified`)
      if (r.code === 0) passed++
    }
  }
  t.equal(passed, 70, `${passed}/70 cases pass`)
})

t.test('a trust root whose tlog key has no validity start is refused as a whole', async (t) => {
  // @sigstore/verify 4.1.3 alone reads the missing start as "since 1970" and accepts the bundle.
  const r = await verifyBundle(caseArgs('trust-root-tlog-missing-validity-start_fail'))
  t.equal(r.code, 1)
  t.match(r.stderr, /FAIL \[TRUST_ROOT_INVALID\]: .*tlogs\[1\].*validFor\.start is missing/)
})

t.test('refusals name the failing check with a stable code', async (t) => {
  const expected: Record<string, string> = {
    'bundle-malformed-json_fail': 'MALFORMED',
    'bundle-unknown-version_fail': 'MALFORMED',
    'bundle-with-root-cert_fail': 'MALFORMED',
    'bundle-from-wrong-instance_fail': 'CERTIFICATE_INVALID',
    'invalid-ct-key_fail': 'CERTIFICATE_INVALID',
    'intoto-expired-certificate_fail': 'CERTIFICATE_EXPIRED',
    'set-invalid-signature_fail': 'TLOG_INVALID',
    'inclusion-proof-corrupted-hash_fail': 'TLOG_INVALID',
    'rekor2-no-timestamp_fail': 'TIMESTAMP_INVALID',
    'rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail': 'TIMESTAMP_INVALID',
    'message-digest-mismatch_fail': 'DIGEST_MISMATCH',
    'wrong-material_fail': 'DIGEST_MISMATCH',
    'managed-key-no-key_fail': 'CERTIFICATE_INVALID',
  }
  for (const [name, code] of Object.entries(expected)) {
    const r = await verifyBundle(caseArgs(name))
    t.match(r.stderr, new RegExp(`^FAIL \\[${code}\\]`), `${name}: ${code}`)
  }
})

t.test('an exact identity is compared whole, never as an unanchored pattern', async (t) => {
  const happy = join(CASES, 'happy-path-v0.3')
  const base = ['--bundle', join(happy, 'bundle.sigstore.json'), '--certificate-oidc-issuer', DEFAULT_ISSUER]
  const artifact = join(CASES, 'a.txt')

  const part = await verifyBundle([...base, '--certificate-identity', 'sigstore-conformance', artifact])
  t.equal(part.code, 1, '"sigstore-conformance" does not match https://github.com/sigstore-conformance/...')
  t.match(part.stderr, /FAIL \[IDENTITY_MISMATCH\]: certificate subject "https:\/\/github\.com\/sigstore-conformance\//)

  const dotted = await verifyBundle([...base, '--certificate-identity', DEFAULT_IDENTITY.replaceAll('.', 'x'), artifact])
  t.equal(dotted.code, 1, 'dots are not wildcards in an exact identity')

  const regexp = await verifyBundle([...base, '--certificate-identity-regexp', '^https://github\\.com/sigstore-conformance/', artifact])
  t.equal(regexp.code, 0, 'a regular expression matches when asked for')

  const issuer = await verifyBundle([
    '--bundle',
    join(happy, 'bundle.sigstore.json'),
    '--certificate-identity',
    DEFAULT_IDENTITY,
    '--certificate-oidc-issuer',
    'https://token.actions.githubusercontent.com.evil.example',
    artifact,
  ])
  t.equal(issuer.code, 1)
  t.match(issuer.stderr, /FAIL \[IDENTITY_MISMATCH\]: certificate issuer/)
})

t.test('the artifact may be given as a digest for DSSE bundles', async (t) => {
  const dsse = join(CASES, 'happy-path-intoto-in-dsse-v3')
  const digest = `sha256:${createHash('sha256')
    .update(readFileSync(join(CASES, 'a.txt')))
    .digest('hex')}`
  const identity = ['--certificate-identity', DEFAULT_IDENTITY, '--certificate-oidc-issuer', DEFAULT_ISSUER]

  const ok = await verifyBundle(['--bundle', join(dsse, 'bundle.sigstore.json'), ...identity, digest])
  t.equal(ok.code, 0, ok.stderr)
  const other = await verifyBundle(['--bundle', join(dsse, 'bundle.sigstore.json'), ...identity, `sha256:${'0'.repeat(64)}`])
  t.equal(other.code, 1)
  t.match(other.stderr, /FAIL \[DIGEST_MISMATCH\]/)

  // A message signature is over the bytes; Node cannot check ECDSA over a precomputed digest.
  const message = await verifyBundle(['--bundle', join(CASES, 'happy-path-v0.3', 'bundle.sigstore.json'), ...identity, digest])
  t.equal(message.code, 1)
  t.match(message.stderr, /only be checked against the artifact itself/)
})

t.test('usage errors exit 2 with a message', async (t) => {
  const bundle = join(CASES, 'happy-path-v0.3', 'bundle.sigstore.json')
  const artifact = join(CASES, 'a.txt')
  const noBundle = await verifyBundle(['--certificate-identity', 'x', '--certificate-oidc-issuer', 'y', artifact])
  t.equal(noBundle.code, 2)
  t.match(noBundle.stderr, /--bundle/)

  const neither = await verifyBundle(['--bundle', bundle, artifact])
  t.equal(neither.code, 2)
  t.match(neither.stderr, /issuer/)

  const both = await verifyBundle(['--bundle', bundle, '--key', artifact, '--certificate-identity', 'x', '--certificate-oidc-issuer', 'y', artifact])
  t.equal(both.code, 2)
  t.match(both.stderr, /either --key or a certificate identity/)

  const missing = await verifyBundle(['--bundle', join(CASES, 'no-such-file.json'), '--certificate-identity', 'x', '--certificate-oidc-issuer', 'y', artifact])
  t.equal(missing.code, 2)
  t.match(missing.stderr, /cannot read bundle/)

  const noArtifact = await verifyBundle(['--bundle', bundle, '--certificate-identity', 'x', '--certificate-oidc-issuer', 'y'])
  t.equal(noArtifact.code, 2)
})

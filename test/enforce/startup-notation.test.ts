// Start-up of the real command with `notation` authorities: a trust policy or trust store notation
// itself would refuse, given as notation's files (inline policy or a policyDirs ClusterImagePolicy)
// or in the inline form, stops start-up naming the policy, the authority field and the field inside
// the file; valid ones start.
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { identityFor, TestPki } from '../helpers/notation.ts'
import { REPO_ROOT, run, startDaemon, tempDir, type Teardown } from '../helpers/proc.ts'

const NODE = join(REPO_ROOT, 'node_modules/.bin/node')
const MAIN = join(REPO_ROOT, 'src/cli/main.ts')

const trustPolicy = (over: Record<string, unknown> = {}) => ({
  version: '1.0',
  trustPolicies: [
    { name: 'acme', registryScopes: ['*'], signatureVerification: { level: 'strict' }, trustStores: ['ca:acme'], trustedIdentities: [identityFor('Signer')], ...over },
  ],
})

async function writeConfig(t: Teardown, files: { policy: object; cip: object; inline: Record<string, unknown>; store?: string }): Promise<string> {
  const dir = await tempDir(t, 'trustpull-startup-notation-')
  const pki = new TestPki(dir)
  pki.writeStore(join(dir, 'store'), 'ca', 'acme', [pki.ca('Startup Root')])
  await writeFile(join(dir, 'trustpolicy.json'), JSON.stringify(files.policy))
  await writeFile(join(dir, 'cip-policy.json'), JSON.stringify(files.cip))
  const policyDir = join(dir, 'policies')
  await mkdir(policyDir)
  const cip = {
    apiVersion: 'policy.sigstore.dev/v1beta1',
    kind: 'ClusterImagePolicy',
    metadata: { name: 'cip' },
    spec: { images: [{ glob: 'ghcr.io/cip/**' }], authorities: [{ notation: { trustStore: '../store', trustPolicy: '../cip-policy.json' } }] },
  }
  await writeFile(join(policyDir, 'cip.yaml'), stringify(cip))
  const policies = [
    { name: 'files', images: [{ glob: 'ghcr.io/files/**' }], authorities: [{ notation: { trustStore: files.store ?? 'store', trustPolicy: 'trustpolicy.json' } }] },
    { name: 'inline', images: [{ glob: 'ghcr.io/inline/**' }], authorities: [{ notation: { certificates: pki.ca('Inline Root').pem, ...files.inline } }] },
  ]
  const file = join(dir, 'config.yaml')
  await writeFile(
    file,
    stringify({
      listen: '127.0.0.1:0',
      upstreams: [{ name: 'ghcr.io', url: 'http://127.0.0.1:9', default: true }],
      policies,
      policyDirs: [policyDir],
      storage: { path: join(dir, 'mirror-store') },
    }),
  )
  return file
}

t.test('a trust policy or store notation would refuse stops start-up, naming the field', async (t) => {
  const file = await writeConfig(t, {
    policy: trustPolicy({ signatureVerification: { level: 'strict', override: { integrity: 'log' } } }),
    cip: trustPolicy({ trustStores: ['ca:missing'] }),
    inline: { level: 'strict', trustedIdentities: ['x509.subject:C=US, O=Acme'] },
  })
  const result = await run(NODE, [MAIN, 'serve', '--config', file], { timeoutMs: 30_000 })
  t.notOk(result.timedOut, 'it did not start serving')
  t.equal(result.code, 2, 'exit code 2')
  t.match(result.stderr, '3 problems in policies', 'every problem is listed')
  t.match(
    result.stderr,
    /\(policy "files"\): authorities\[0\]\.notation\.trustPolicy: \S+trustpolicy\.json: trustPolicies\[0\]\.signatureVerification\.override\.integrity: integrity verification cannot be overridden/,
    'a trust policy file',
  )
  t.match(
    result.stderr,
    /cip\.yaml \(ClusterImagePolicy "cip"\): spec\.authorities\[0\]\.notation\.trustStore: trust store ca:missing: \S+ does not exist \(named by \S+cip-policy\.json: trustPolicies\[0\]\.trustStores\[0\]\)/,
    'a missing store, in a policyDirs CIP',
  )
  t.match(result.stderr, /\(policy "inline"\): authorities\[0\]\.notation\.trustedIdentities\[0\]: distinguished name "C=US, O=Acme" lacks ST/, 'the inline form')
})

t.test('a missing store directory and an empty trust policy are refused', async (t) => {
  const file = await writeConfig(t, { policy: trustPolicy(), cip: { version: '1.0', trustPolicies: [] }, inline: { level: 'audit', trustedIdentities: ['*'] }, store: 'nowhere' })
  const result = await run(NODE, [MAIN, 'serve', '--config', file], { timeoutMs: 30_000 })
  t.equal(result.code, 2)
  t.match(result.stderr, /\(policy "files"\): authorities\[0\]\.notation\.trustStore: trust store ca:acme: \S+nowhere\/x509\/ca\/acme does not exist/)
  t.match(result.stderr, /spec\.authorities\[0\]\.notation\.trustPolicy: \S+cip-policy\.json: trustPolicies: a trust policy document needs at least one statement/)
})

t.test('an unknown level is refused by the config schema', async (t) => {
  const file = await writeConfig(t, { policy: trustPolicy(), cip: trustPolicy(), inline: { level: 'lenient', trustedIdentities: ['*'] } })
  const result = await run(NODE, [MAIN, 'serve', '--config', file], { timeoutMs: 30_000 })
  t.equal(result.code, 2)
  t.match(result.stderr, 'policies.1.authorities.0.notation.level: expected one of strict, permissive, audit, skip')
})

t.test('valid trust policies and stores start, from files, a CIP and inline (but not both forms in one authority)', async (t) => {
  const file = await writeConfig(t, {
    policy: trustPolicy(),
    cip: trustPolicy({ signatureVerification: { level: 'permissive', override: { revocation: 'skip' } } }),
    inline: { level: 'audit', trustedIdentities: [identityFor('Signer')] },
  })
  const both = await writeConfig(t, { policy: trustPolicy(), cip: trustPolicy(), inline: { level: 'audit', trustedIdentities: ['*'], trustPolicy: 'trustpolicy.json' } })
  const refused = await run(NODE, [MAIN, 'serve', '--config', both], { timeoutMs: 30_000 })
  t.match(refused.stderr, 'policies.1.authorities.0.notation: give either trustStore and trustPolicy', 'but not both forms at once')
  const daemon = await startDaemon(t, NODE, [MAIN, 'serve', '--config', file], { name: 'trustpull', readyLine: /"msg":"trustpull listening"/ })
  t.match(daemon.stdout(), /"msg":"trustpull listening"/)
})

// Start-up of the real command (`node src/cli/main.ts serve --config F`, Node 24): a policy that
// cannot be enforced as written refuses start-up with a message naming the problem; a catch-all
// identity starts with a warning; policy-controller ClusterImagePolicy documents in policyDirs
// load and are enforced.
import t from 'tap'
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { stringify } from 'yaml'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, startDaemon, tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const NODE = join(REPO_ROOT, 'node_modules/.bin/node')
const MAIN = join(REPO_ROOT, 'src/cli/main.ts')
const CIP_KEY = join(REPO_ROOT, 'test/fixtures/policy-controller-cip/e2e/cip-key.yaml')
const GITHUB = 'https://token.actions.githubusercontent.com'

async function writeConfig(t: Teardown, config: Record<string, unknown>): Promise<string> {
  const dir = await tempDir(t, 'trustpull-startup-')
  const file = join(dir, 'config.yaml')
  await writeFile(
    file,
    stringify({ listen: '127.0.0.1:0', upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9', default: true }], storage: { path: join(dir, 'store') }, ...config }),
  )
  return file
}

const policy = (authority: Record<string, unknown>) => ({ policies: [{ name: 'release', images: [{ glob: 'ghcr.io/org/**' }], authorities: [authority] }] })
const keyless = (identity: Record<string, unknown>, extra: Record<string, unknown> = {}) => policy({ keyless: { identities: [identity], ...extra } })

/** Starts `serve` and waits for its "listening" line; the returned URL is where it answers. */
async function serve(t: Teardown, configFile: string) {
  const daemon = await startDaemon(t, NODE, [MAIN, 'serve', '--config', configFile], { name: 'trustpull', readyLine: /"msg":"trustpull listening"/ })
  const lines = () =>
    daemon
      .stdout()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  const listening = lines().find((l) => l.msg === 'trustpull listening')
  return { url: String(listening?.url), lines, daemon }
}

t.test('start-up refuses a policy it cannot enforce as written', async (t) => {
  const cases: { what: string; config: Record<string, unknown>; says: (string | RegExp)[] }[] = [
    {
      what: 'a keyless identity without an issuer',
      config: keyless({ subject: 'https://github.com/org/app/.github/workflows/release.yml@refs/heads/main' }),
      says: ['issuer', 'a keyless identity needs both an issuer and a subject'],
    },
    { what: 'a keyless identity without a subject', config: keyless({ issuer: GITHUB }), says: ['subject', 'a keyless identity needs both an issuer and a subject'] },
    { what: 'a keyless authority without identities', config: policy({ keyless: {} }), says: ['missing identities'] },
    {
      what: 'an invalid regular expression',
      config: keyless({ issuer: GITHUB, subjectRegExp: '^https://github.com/org/(app$' }),
      says: ['subjectRegExp', 'invalid regular expression "^https://github.com/org/(app$"'],
    },
    {
      what: 'an invalid CEL expression',
      config: policy({ key: { env: 'UNUSED' }, attestations: [{ name: 'slsa', predicateType: 'slsaprovenance', policy: { type: 'cel', data: 'predicate.builder.id ==' } }] }),
      says: ['attestations', 'invalid CEL expression'],
    },
    {
      what: 'an unknown trust root',
      config: keyless({ issuer: GITHUB, subject: 'x' }, { trustRootRef: 'corp-sigstore' }),
      says: ['unknown trust root "corp-sigstore"', 'trustRootRef'],
    },
    { what: 'an unknown config key', config: { noMatchPolicy: 'deny', polices: [] }, says: ['unknown key "polices"'] },
    { what: 'a KMS key', config: policy({ key: { kms: 'awskms:///arn:aws:kms:us-east-1:111122223333:key/abc' } }), says: ['KMS keys (awskms://) are unsupported'] },
  ]
  // One process per case, all at once: each takes about a second to start Node and load.
  const results = await Promise.all(
    cases.map(async (c) => {
      const file = await writeConfig(t, c.config)
      return { ...c, file, result: await run(NODE, [MAIN, 'serve', '--config', file], { timeoutMs: 30_000 }) }
    }),
  )
  for (const { what, file, says, result } of results) {
    t.test(what, async (t) => {
      t.notOk(result.timedOut, 'it did not start serving')
      t.equal(result.code, 2, 'exit code 2')
      t.match(result.stderr, `trustpull: `)
      // Schema problems name the file and key; problems found compiling a policy name the policy.
      t.match(result.stderr, new RegExp(`invalid config file ${file.replaceAll('.', '\\.')}:|config policies\\[0\\] \\(policy "release"\\)`), 'the message says where')
      for (const s of says) t.match(result.stderr, s)
      t.notMatch(result.stdout, 'trustpull listening')
    })
  }
})

t.test('a catch-all subject regexp starts, with a warning', async (t) => {
  const file = await writeConfig(t, keyless({ issuer: GITHUB, subjectRegExp: '.*' }))
  const proxy = await serve(t, file)
  const warning = proxy.lines().find((l) => l.msg === 'policy warning')
  t.match(warning, { level: 'warn', warning: /subjectRegExp: "\.\*" matches any subject/ })
  const health = await request(`${proxy.url}/healthz`)
  t.equal(health.statusCode, 200, 'and serves')
  await health.body.dump()
})

t.test('policyDirs: a policy-controller ClusterImagePolicy document loads as it is, and is enforced', async (t) => {
  const registry = await startRegistry(t)
  const demo = await pushImage(registry.url, 'library/demo-app', '1')
  await pushImage(registry.url, 'library/other', '1')
  const policyDir = await tempDir(t, 'trustpull-policies-')
  await copyFile(CIP_KEY, join(policyDir, 'cip-key.yaml'))
  const file = await writeConfig(t, { upstreams: [{ name: 'docker.io', url: registry.url, default: true }], policyDirs: [policyDir], noMatchPolicy: 'allow' })
  const proxy = await serve(t, file)
  t.ok(
    proxy.lines().some((l) => l.msg === 'policy warning' && /cip-key\.yaml.*ctlog\.url: http:\/\/rekor\.rekor-system\.svc is not contacted/.test(String(l.warning))),
    'its ctlog.url is reported as not contacted',
  )

  const get = async (repo: string) => {
    const res = await request(`${proxy.url}/v2/${repo}/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    return { status: res.statusCode, text: await res.body.text() }
  }
  const matched = await get('library/demo-app')
  t.equal(matched.status, 403, 'an image its glob "**demo**" matches is judged by it')
  t.match(JSON.parse(matched.text), { errors: [{ code: 'DENIED', message: `docker.io/library/demo-app@${demo.digest} denied: policy "image-policy-key": no signatures found` }] })
  t.equal((await get('library/other')).status, 200, 'an image it does not match follows noMatchPolicy')
})

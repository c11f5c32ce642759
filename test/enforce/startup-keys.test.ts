// Start-up of the real command (`node src/cli/main.ts serve --config F`) with key authorities: a
// key cosign would refuse (weak RSA, an odd curve, RSA-PSS, garbage), given inline, in a key file
// or in a policyDirs ClusterImagePolicy, stops start-up with a message naming the policy and the
// problem; every key cosign accepts starts.
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { acceptedKeys, refusedKeys, type KeyCase } from '../helpers/keys.ts'
import { REPO_ROOT, run, startDaemon, tempDir, type Teardown } from '../helpers/proc.ts'

const NODE = join(REPO_ROOT, 'node_modules/.bin/node')
const MAIN = join(REPO_ROOT, 'src/cli/main.ts')

const slug = (name: string) => name.toLowerCase().replace(/[^a-z0-9]+/g, '-')
const keyPolicy = (name: string, key: Record<string, unknown>) => ({ name, images: [{ glob: `ghcr.io/${name}/**` }], authorities: [{ key }] })

/** A config with one inline policy per key, plus the first key again from a file and in a policyDirs CIP. */
async function writeConfig(t: Teardown, keys: KeyCase[]): Promise<string> {
  const dir = await tempDir(t, 'trustpull-startup-keys-')
  const policyDir = join(dir, 'policies')
  await writeFile(join(dir, 'file.pub'), keys[0]!.pem)
  const cip = {
    apiVersion: 'policy.sigstore.dev/v1beta1',
    kind: 'ClusterImagePolicy',
    metadata: { name: 'cip' },
    spec: { images: [{ glob: 'ghcr.io/cip/**' }], authorities: [{ key: { data: keys[0]!.pem } }] },
  }
  await mkdir(policyDir)
  await writeFile(join(policyDir, 'cip.yaml'), stringify(cip))
  const file = join(dir, 'config.yaml')
  const policies = [...keys.map((k) => keyPolicy(slug(k.name), { data: k.pem })), keyPolicy('key-file', { file: 'file.pub' })]
  await writeFile(
    file,
    stringify({
      listen: '127.0.0.1:0',
      upstreams: [{ name: 'ghcr.io', url: 'http://127.0.0.1:9', default: true }],
      policies,
      policyDirs: [policyDir],
      storage: { path: join(dir, 'store') },
    }),
  )
  return file
}

t.test('a key cosign refuses stops start-up, naming the policy and the problem', async (t) => {
  const refused = refusedKeys()
  const file = await writeConfig(t, refused)
  const result = await run(NODE, [MAIN, 'serve', '--config', file], { timeoutMs: 30_000 })
  t.notOk(result.timedOut, 'it did not start serving')
  t.equal(result.code, 2, 'exit code 2')
  t.notMatch(result.stdout, 'trustpull listening')
  t.match(result.stderr, `${refused.length + 2} problems in policies`, 'every problem is listed')
  refused.forEach((k, i) => {
    const where = `config policies[${i}] (policy "${slug(k.name)}"): authorities[0].key.data: `
    t.match(result.stderr, new RegExp(`${where.replace(/[[\]().]/g, '\\$&')}${k.message.source}`), `${k.name}, inline`)
  })
  const first = refused[0]!.message.source
  t.match(result.stderr, new RegExp(`\\(policy "key-file"\\): authorities\\[0\\]\\.key\\.file: ${first}`), 'in a key file')
  t.match(result.stderr, new RegExp(`cip\\.yaml \\(ClusterImagePolicy "cip"\\): spec\\.authorities\\[0\\]\\.key\\.data: ${first}`), 'in a policyDirs CIP')
})

t.test('every key cosign accepts starts', async (t) => {
  const file = await writeConfig(t, acceptedKeys())
  const daemon = await startDaemon(t, NODE, [MAIN, 'serve', '--config', file], { name: 'trustpull', readyLine: /"msg":"trustpull listening"/ })
  t.match(daemon.stdout(), /"msg":"trustpull listening"/, 'Ed25519, P-256/384/521 and RSA 2048/3072/4096 load, inline, from a file and in a CIP')
})

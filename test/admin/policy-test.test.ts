// `trustpull policy test` through the real CLI against a running proxy's verdict history, a real
// docker-registry and real cosign signatures: a candidate policy trusting another key flips
// exactly the digests signed by one key or the other (newly refused first); an identical policy
// changes nothing (exit 0).
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { MediaTypes, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

// CLI start-ups cost seconds each on a loaded 2-core machine.
t.setTimeout(480_000)

t.test('policy test replays the pulled digests under a candidate config', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const [keyA, keyB] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
  const byA = await pushImage(registry.url, 'library/a', '1', { seed: 'a' })
  const byB = await pushImage(registry.url, 'library/b', '1', { seed: 'b' })
  const unsigned = await pushImage(registry.url, 'library/u', '1', { seed: 'u' })
  await Promise.all([signImage(`${registry.host}/library/a@${byA.digest}`, keyA.privateKeyPath), signImage(`${registry.host}/library/b@${byB.digest}`, keyB.privateKeyPath)])
  const policies = (pem: string) => [{ name: 'library', images: [{ glob: 'index.docker.io/library/*' }], authorities: [{ key: { data: pem } }] }]
  const proxy = await startProxy(t, hubConfig(registry.url, { policies: policies(keyA.publicKeyPem) }))
  for (const [repo, status] of [
    ['library/a', 200],
    ['library/b', 403],
    ['library/u', 403],
  ] as const) {
    const res = await request(`${proxy.url}/v2/${repo}/manifests/1`, { headers: { accept: MediaTypes.ociManifest } })
    t.equal(res.statusCode, status, repo)
    await res.body.dump()
  }
  const candidate = async (name: string, pem: string) => {
    const file = join(dir, name)
    await writeFile(file, JSON.stringify({ upstreams: [{ name: 'docker.io', url: registry.url, default: true }], policies: policies(pem) }))
    return file
  }
  const policyTest = (config: string) =>
    run(process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'policy', 'test', '--config', config, '--since', '1h', '--server', proxy.url], {
      cwd: REPO_ROOT,
      timeoutMs: 120_000,
    })

  const [other, same] = await Promise.all([candidate('other-key.yaml', keyB.publicKeyPem), candidate('same.yaml', keyA.publicKeyPem)])
  const flipped = await policyTest(other)
  t.equal(flipped.code, 1, `changes: exit 1\n${flipped.stderr}`)
  const lines = flipped.stdout.trim().split('\n')
  t.equal(lines.length, 3, flipped.stdout)
  t.match(lines[0], `ALLOW → DENY docker.io/library/a@${byA.digest}: policy "library": no signature verified (1 found)`, 'newly refused first')
  t.match(lines[1], `DENY → ALLOW docker.io/library/b@${byB.digest}`)
  t.match(lines[2], '3 digests served in the last 1h judged again: 2 would change')
  t.notMatch(flipped.stdout, unsigned.digest, 'the unsigned image is refused either way')

  const unchanged = await policyTest(same)
  t.equal(unchanged.code, 0, unchanged.stderr)
  t.match(unchanged.stdout, '3 digests served in the last 1h judged again: 0 would change')
})

// `trustpull verify` decides exactly as the proxy does, for real cosign signatures on a real registry.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const trustpull = (args: string[]) => run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 60_000 })

t.test('trustpull verify', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const keys = await generateKeyPair(await tempDir(t))
  const other = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'org/app', '1.0')
  await pushImage(registry.url, 'org/app', 'unsigned', { seed: 'unsigned' })
  await signImage(`${registry.host}/org/app@${signed.digest}`, keys.privateKeyPath)
  const config = join(dir, 'trustpull.yaml')
  await writeFile(
    config,
    JSON.stringify({
      upstreams: [{ name: 'registry.test', url: registry.url, default: true }],
      policies: [{ name: 'org-release', images: [{ glob: 'registry.test/org/**' }], authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }] }],
    }),
  )

  t.test('a signed image: exit 0, the table names policy, authority and signature', async (t) => {
    const r = await trustpull(['verify', 'registry.test/org/app:1.0', '--config', config])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, `registry.test/org/app@${signed.digest}: ALLOW`)
    t.match(r.stdout, /policy org-release \(enforce\): pass/)
    t.match(r.stdout, /authority release-key \(key\): pass/)
    t.match(r.stdout, /✔ signature cosign-legacy via sig-tag/)
  })

  t.test('an unsigned image: exit 1 with the reason', async (t) => {
    const r = await trustpull(['verify', 'registry.test/org/app:unsigned', '--config', config])
    t.equal(r.code, 1)
    t.match(r.stdout, /: DENY/)
    t.match(r.stdout, /no signatures found/)
  })

  t.test('--key replaces the policies; the wrong key fails with UNTRUSTED_KEY or SIGNATURE_INVALID', async (t) => {
    const good = await trustpull(['verify', `registry.test/org/app@${signed.digest}`, '--config', config, '--key', keys.publicKeyPath])
    t.equal(good.code, 0, good.stdout + good.stderr)
    const bad = await trustpull(['verify', 'registry.test/org/app:1.0', '--config', config, '--key', other.publicKeyPath, '--json'])
    t.equal(bad.code, 1)
    const verdict = JSON.parse(bad.stdout) as { result: string; policies: { authorities: { evidence: { ok: boolean; code: string }[] }[] }[] }
    t.equal(verdict.result, 'deny')
    const evidence = verdict.policies[0]!.authorities[0]!.evidence
    t.ok(evidence.length > 0 && evidence.every((e) => !e.ok && /UNTRUSTED_KEY|SIGNATURE_INVALID/.test(e.code)), JSON.stringify(evidence))
  })

  t.test('an image on an unconfigured registry is refused by name, nothing dialled', async (t) => {
    const r = await trustpull(['verify', 'evil.example/org/app:1.0', '--config', config])
    t.equal(r.code, 1)
    t.match(r.stderr, /registry "evil.example" is not an upstream of this proxy/)
  })
})

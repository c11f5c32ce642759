// `trustpull verify` decides exactly as the proxy does, for real cosign signatures on a real registry.
import t from 'tap'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startTlsFront } from '../helpers/tls-front.ts'
import { startTokenFront } from '../helpers/token-front.ts'

const trustpull = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 60_000, env: { ...process.env, ...env } })

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

t.test('trustpull verify without --config dials the registry the reference names, as cosign verify does', async (t) => {
  const registry = await startRegistry(t)
  const keys = await generateKeyPair(await tempDir(t))
  const other = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'org/app', '1.0')
  await signImage(`${registry.host}/org/app@${signed.digest}`, keys.privateKeyPath)
  // No auth file of the machine's own may answer for these registries.
  const home = await tempDir(t)
  const env = { HOME: home, DOCKER_CONFIG: join(home, '.docker'), XDG_CONFIG_HOME: join(home, '.config'), XDG_RUNTIME_DIR: '', REGISTRY_AUTH_FILE: '' }

  t.test('a loopback registry over plain HTTP (HTTPS tried first, as go-containerregistry does): the right key passes, another fails', async (t) => {
    const good = await trustpull(['verify', `${registry.host}/org/app:1.0`, '--key', keys.publicKeyPath], env)
    t.equal(good.code, 0, good.stderr)
    t.match(good.stdout, `${registry.host}/org/app@${signed.digest}: ALLOW`)
    const bad = await trustpull(['verify', `docker://${registry.host}/org/app:1.0`, '--key', other.publicKeyPath], env)
    t.equal(bad.code, 1, bad.stderr)
    t.match(bad.stdout, /: DENY/)
  })

  t.test('no --key and no --certificate-* without --config: a usage error naming both, nothing dialled', async (t) => {
    const r = await trustpull(['verify', `${registry.host}/org/app:1.0`], env)
    t.equal(r.code, 2)
    t.match(r.stderr, /without --config, give --key or --certificate-identity/)
  })

  t.test('--allow-insecure-registry with --config is refused: the config says what is dialled', async (t) => {
    const dir = await tempDir(t)
    const config = join(dir, 'c.yaml')
    await writeFile(config, JSON.stringify({ upstreams: [{ name: 'registry.test', url: registry.url }] }))
    const r = await trustpull(['verify', 'registry.test/org/app:1.0', '--config', config, '--key', keys.publicKeyPath, '--allow-insecure-registry'], env)
    t.equal(r.code, 2)
    t.match(r.stderr, /apply only without --config/)
  })

  t.test('an HTTPS registry whose certificate no system root signs: refused without --allow-insecure-registry, verified with it', async (t) => {
    const tlsFront = await startTlsFront(t, registry.url)
    const front = { host: new URL(tlsFront.url).host }
    const refused = await trustpull(['verify', `${front.host}/org/app@${signed.digest}`, '--key', keys.publicKeyPath], env)
    t.equal(refused.code, 3, refused.stdout + refused.stderr)
    t.notMatch(refused.stdout, /ALLOW/)
    const allowed = await trustpull(['verify', `${front.host}/org/app@${signed.digest}`, '--key', keys.publicKeyPath, '--allow-insecure-registry'], env)
    t.equal(allowed.code, 0, allowed.stderr)
    t.match(allowed.stdout, `${front.host}/org/app@${signed.digest}: ALLOW`)
  })

  t.test('a registry that wants basic credentials: taken from the docker config.json, as cosign does', async (t) => {
    const front = await startTokenFront(t, registry.url, { username: 'ci', password: 'secret-pw' }, { mode: 'basic' })
    const anonymous = await trustpull(['verify', `${front.host}/org/app:1.0`, '--key', keys.publicKeyPath], env)
    t.not(anonymous.code, 0, 'no credentials: not allowed')
    await mkdir(env.DOCKER_CONFIG, { recursive: true })
    await writeFile(join(env.DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: { [front.host]: { auth: Buffer.from('ci:secret-pw').toString('base64') } } }))
    const r = await trustpull(['verify', `${front.host}/org/app:1.0`, '--key', keys.publicKeyPath], env)
    t.equal(r.code, 0, r.stderr)
    t.notMatch(r.stdout + r.stderr, /secret-pw/)
  })
})

// The kill switch without Redis: the denylist is a file (admin.denylistPath) that survives a
// restart, and with no client authentication configured the API answers loopback callers only.
// The real CLI, a real docker-registry and a real cosign signature, as in kill-switch.test.ts.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { MediaTypes, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'
import { isLoopback } from '../../src/admin/access.ts'

const CLI = join(REPO_ROOT, 'src/cli/main.ts')

/** The real CLI, with no credentials (none are configured). */
function trustpull(args: string[]) {
  const env = { ...process.env }
  delete env.TRUSTPULL_TOKEN
  return run(process.execPath, [CLI, ...args], { env, cwd: REPO_ROOT, timeoutMs: 60_000 })
}

t.test('without Redis: the denylist is a file and survives a restart; loopback callers only without client auth', async (t) => {
  const registry = await startRegistry(t)
  const key = await generateKeyPair(await tempDir(t))
  const image = await pushImage(registry.url, 'library/app', '1')
  await signImage(`${registry.host}/library/app@${image.digest}`, key.privateKeyPath)
  const dir = await tempDir(t)
  const denylistPath = join(dir, 'deny', 'denylist.json')
  const config = hubConfig(registry.url, {
    admin: { denylistPath },
    policies: [{ name: 'library', images: [{ glob: 'index.docker.io/library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }],
  })
  let proxy = await startProxy(t, config)
  const get = async () => (await request(`${proxy.url}/v2/library/app/manifests/1`, { headers: { accept: MediaTypes.ociManifest } })).statusCode
  t.equal(await get(), 200)
  // No client authentication: the loopback caller (this test) is the operator.
  const add = await trustpull([
    'deny',
    'add',
    '--identity',
    'https://token.actions.githubusercontent.com',
    'https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main',
    '--server',
    proxy.url,
  ])
  t.equal(add.code, 0, add.stderr)
  const byDigest = await trustpull(['deny', 'add', '--digest', image.digest, '--server', proxy.url])
  t.equal(byDigest.code, 0, byDigest.stderr)
  t.equal(await get(), 403)
  await proxy.running.close()
  proxy = await startProxy(t, config)
  t.equal(await get(), 403, 'refused after a restart: read back from the file')
  const list = await trustpull(['deny', 'list', '--json', '--server', proxy.url])
  t.same((JSON.parse(list.stdout) as { kind: string; addedBy: string }[]).map((e) => [e.kind, e.addedBy]).sort(), [
    ['digest', 'loopback'],
    ['identity', 'loopback'],
  ])
  t.equal((await trustpull(['deny', 'remove', '--digest', image.digest, '--server', proxy.url])).code, 0)
  t.equal(await get(), 200)

  t.test('a POST without a JSON body is refused (no cross-site form can reach the denylist)', async (t) => {
    const res = await request(`${proxy.url}/api/v1/denylist`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `digest=${image.digest}` })
    t.equal(res.statusCode, 400)
    await res.body.dump()
  })

  t.test('an unreadable denylist file stops start-up, naming the key', async (t) => {
    await writeFile(denylistPath, '{not json')
    await t.rejects(startProxy(t, config), /admin\.denylistPath: .* is not a trustpull denylist/)
  })
})

t.test('clients.admins without client authentication is refused at start-up', async (t) => {
  await t.rejects(startProxy(t, hubConfig('http://127.0.0.1:9', { clients: { admins: ['ops'] } })), /clients\.admins: names clients, but no client authentication/)
})

t.test('loopback is 127.0.0.0/8 and ::1 (and their IPv4-mapped forms), nothing else', async (t) => {
  for (const a of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) t.ok(isLoopback(a), a)
  for (const a of ['10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', 'fe80::1', '0.0.0.0', '', undefined, 'not-an-ip']) t.notOk(isLoopback(a), String(a))
})

// Destination credentials: a token front (as registries split auth and storage) before a real
// docker-registry demands a bearer token with `pull,push` scope, issued only for the right basic
// credentials; or takes basic auth itself. Credentials come from the config (`auth` with
// passwordEnv / passwordFile) or from docker / podman auth files; none of them is ever printed.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { getManifest, listTags, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startTokenFront } from '../helpers/token-front.ts'

type Asserts = Pick<typeof t, 'notMatch'>

const USER = 'pusher'
const PASSWORD = `s3cret-${randomBytes(8).toString('hex')}`

const trustpull = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
    timeoutMs: 50_000,
    env: { ...process.env, HOME: '/nonexistent', XDG_RUNTIME_DIR: '', ...env },
  })

t.test('destination credentials', async (t) => {
  const [outside, inside] = await Promise.all([startRegistry(t), startRegistry(t)])
  const bearer = await startTokenFront(t, inside.url, { username: USER, password: PASSWORD }, { actions: 'pull,push' })
  const basicFront = await startTokenFront(t, inside.url, { username: USER, password: PASSWORD }, { mode: 'basic' })
  const dir = await tempDir(t)
  const keys = await generateKeyPair(await tempDir(t))
  const image = await pushImage(outside.url, 'org/app', '1.0')
  await signImage(`${outside.host}/org/app@${image.digest}`, keys.privateKeyPath)
  const passwordFile = join(dir, 'password')
  await writeFile(passwordFile, `${PASSWORD}\n`)
  const config = (extra: object[] = []) => {
    const file = join(dir, `config-${randomBytes(4).toString('hex')}.yaml`)
    return writeFile(
      file,
      JSON.stringify({
        upstreams: [{ name: 'outside.test', url: outside.url }, ...extra],
        policies: [{ name: 'release', images: [{ glob: 'outside.test/**' }], authorities: [{ key: { file: keys.publicKeyPath } }] }],
      }),
    ).then(() => file)
  }
  const noSecrets = (t: Asserts, output: string) => {
    t.notMatch(output, PASSWORD, 'the password is never printed')
    t.notMatch(output, Buffer.from(`${USER}:${PASSWORD}`).toString('base64'), 'nor its base64')
  }

  t.test('config auth with passwordEnv: a bearer token with pull,push scope', async (t) => {
    const file = await config([{ name: 'inside.test', url: bearer.url, auth: { username: USER, passwordEnv: 'INSIDE_PASSWORD' } }])
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/team/app:1.0', '--config', file], { INSIDE_PASSWORD: PASSWORD })
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.equal((await getManifest(inside.url, 'team/app', '1.0')).digest, image.digest)
    t.ok(bearer.scopes.includes('repository:team/app:pull,push'), bearer.scopes.join(' '))
    noSecrets(t, r.stdout + r.stderr)
  })

  t.test('config auth with passwordFile, registry taking basic auth itself', async (t) => {
    const file = await config([{ name: 'inside.test', url: basicFront.url, auth: { username: USER, passwordFile } }])
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/basic/app:1.0', '--config', file])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.equal((await getManifest(inside.url, 'basic/app', '1.0')).digest, image.digest)
  })

  t.test('docker config.json ($DOCKER_CONFIG) for a registry named by host (loopback: plain HTTP)', async (t) => {
    const docker = join(dir, 'docker')
    await mkdir(docker)
    await writeFile(
      join(docker, 'config.json'),
      JSON.stringify({ auths: { [bearer.host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } }, credsStore: 'desktop' }),
    )
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', `${bearer.host}/docker/app:1.0`, '--config', await config()], { DOCKER_CONFIG: docker })
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.equal((await getManifest(inside.url, 'docker/app', '1.0')).digest, image.digest)
    noSecrets(t, r.stdout + r.stderr)
  })

  t.test('--authfile (containers auth.json, URL-style key with username/password fields)', async (t) => {
    const authfile = join(dir, 'auth.json')
    await writeFile(authfile, JSON.stringify({ auths: { [`http://${bearer.host}/v2/`]: { username: USER, password: PASSWORD } } }))
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', `${bearer.host}/podman/app:1.0`, '--config', await config(), '--authfile', authfile])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.equal((await getManifest(inside.url, 'podman/app', '1.0')).digest, image.digest)
  })

  t.test('no credentials, or wrong ones: DESTINATION_DENIED, exit 3, nothing written', async (t) => {
    const none = await trustpull(['copy', 'outside.test/org/app:1.0', `${bearer.host}/denied/app:1.0`, '--config', await config(), '--json'])
    t.equal(none.code, 3)
    t.match(JSON.parse(none.stdout), {
      results: [{ status: 'failed', error: { code: 'DESTINATION_DENIED', message: /refused to let us write denied\/app \(401\): no credentials are configured/ } }],
    })
    const file = await config([{ name: 'inside.test', url: bearer.url, auth: { username: USER, password: 'wrong' } }])
    const wrong = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/denied/app:1.0', '--config', file])
    t.equal(wrong.code, 3)
    t.match(wrong.stderr, /refused to let us write denied\/app \(401\): the credentials were refused/)
    t.same(await listTags(inside.url, 'denied/app'), [])
    noSecrets(t, none.stdout + none.stderr + wrong.stdout + wrong.stderr)
  })

  t.test('destination credentials the config names but cannot be read stop start-up: exit 2', async (t) => {
    const file = await config([{ name: 'inside.test', url: bearer.url, auth: { username: USER, passwordEnv: 'NOT_SET_ANYWHERE' } }])
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/x/app:1.0', '--config', file, '--json'])
    t.equal(r.code, 2)
    t.equal(r.stdout, '')
    t.match(r.stderr, /upstreams\[inside\.test\]\.auth\.password\.env: environment variable NOT_SET_ANYWHERE is not set/)
  })
})

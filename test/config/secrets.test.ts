// One secret shape, {value | file | env}, for upstream credentials, client tokens and the Redis
// password; the old spellings load with one deprecation warning at start-up; no secret is logged.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { deprecatedKeys, parseConfig } from '../../src/config/load.ts'
import { readSecret, upgradeSecrets } from '../../src/config/secret.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir, waitFor } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'
import { pushImage } from '../helpers/images.ts'
import { scrape } from '../helpers/prometheus.ts'

const TOKEN = 'client-token-0123456789abcdef'
const up = (auth: Record<string, unknown>) => ({ upstreams: [{ name: 'docker.io', url: 'https://registry.example', default: true, auth }] })

t.test('the new shape loads without a deprecation; each old spelling maps onto it and is listed', async (t) => {
  const fresh = parseConfig({
    ...up({ username: 'bot', password: { env: 'PW' } }),
    clients: { tokens: [{ name: 'ci', token: { file: '/run/token' } }] },
    cache: { password: { file: '/run/redis' } },
  })
  t.same(fresh.upstreams[0]!.auth, { username: 'bot', password: { env: 'PW' } })
  t.same(fresh.clients.tokens[0]!.token, { file: '/run/token' })
  t.same(fresh.cache.password, { file: '/run/redis' })
  t.same(deprecatedKeys(fresh), [])

  const cases: [Record<string, unknown>, string, unknown][] = [
    [{ username: 'bot', password: 'inline' }, 'upstreams[0].auth.password', { value: 'inline' }],
    [{ username: 'bot', passwordFile: '/run/pw' }, 'upstreams[0].auth.passwordFile', { file: '/run/pw' }],
    [{ username: 'bot', passwordEnv: 'PW' }, 'upstreams[0].auth.passwordEnv', { env: 'PW' }],
  ]
  for (const [auth, key, password] of cases) {
    const config = parseConfig(up(auth))
    t.same(config.upstreams[0]!.auth!.password, password, key)
    t.same(deprecatedKeys(config), [key])
  }
  const user = parseConfig(up({ usernameEnv: 'USER', password: { value: 'x' } }))
  t.same(user.upstreams[0]!.auth!.username, { env: 'USER' })
  t.same(deprecatedKeys(user), ['upstreams[0].auth.usernameEnv'])
  const tokens = parseConfig({
    clients: {
      tokens: [
        { name: 'a', token: 'inline-0123456789abcdef' },
        { name: 'b', tokenFile: '/run/b' },
        { name: 'c', tokenEnv: 'C' },
      ],
    },
  })
  t.same(
    tokens.clients.tokens.map((x) => x.token),
    [{ value: 'inline-0123456789abcdef' }, { file: '/run/b' }, { env: 'C' }],
  )
  t.same(deprecatedKeys(tokens), ['clients.tokens[0].token', 'clients.tokens[1].tokenFile', 'clients.tokens[2].tokenEnv'])
  const cache = parseConfig({ cache: { url: 'redis://redis:6379', passwordFile: '/run/redis' } })
  t.same(cache.cache.password, { file: '/run/redis' })
  t.same(deprecatedKeys(cache), ['cache.passwordFile'])
  t.same(
    upgradeSecrets({ upstreams: [{ auth: { username: 'u', passwordEnv: 'X' } }] }).raw,
    { upstreams: [{ auth: { username: 'u', password: { env: 'X' } } }] },
    'the caller’s object is left alone: a copy',
  )
})

t.test('ambiguity and absence are refused at start-up naming the key', async (t) => {
  const refused: [Record<string, unknown>, RegExp][] = [
    [up({ username: 'bot', password: 'a', passwordFile: '/b' }), /upstreams\.0\.auth\.password: password: give exactly one of value, file or env/],
    [up({ username: 'bot', password: { value: 'a', env: 'B' } }), /upstreams\.0\.auth\.password: password: give exactly one of value, file or env/],
    [up({ username: 'bot', password: { file: '/a' }, passwordEnv: 'B' }), /upstreams\.0\.auth: unknown key "passwordEnv"/],
    [up({ username: 'bot', usernameEnv: 'U', password: { value: 'x' } }), /upstreams\.0\.auth: unknown key "usernameEnv"/],
    [up({ username: 'bot' }), /upstreams\.0\.auth\.password/],
    [up({ username: 'bot', password: { path: '/a' } }), /unknown key "path"/],
    [{ clients: { tokens: [{ name: 'a', token: { file: '' } }] } }, /clients\.tokens\.0\.token\.file/],
    [{ cache: { password: {} } }, /cache\.password: password: give exactly one of value, file or env/],
  ]
  for (const [raw, message] of refused) t.throws(() => parseConfig(raw), { name: 'ConfigError', message }, JSON.stringify(raw))
})

t.test('readSecret: value, file (one trailing newline dropped), env; a missing one names the key, never a value', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 's')
  await writeFile(file, 'from-file\n')
  t.equal(readSecret({ value: 'inline' }, 'k'), 'inline')
  t.equal(readSecret({ file }, 'k'), 'from-file')
  t.equal(readSecret({ env: 'TRUSTPULL_TEST_SECRET' }, 'k', { TRUSTPULL_TEST_SECRET: 'from-env' }), 'from-env')
  t.equal(readSecret('plain-user', 'k'), 'plain-user', 'a plain string (a user name) is itself')
  t.throws(() => readSecret({ env: 'NOT_SET' }, 'upstreams[x].auth.password', {}), {
    name: 'ConfigError',
    message: 'upstreams[x].auth.password.env: environment variable NOT_SET is not set',
  })
  t.throws(() => readSecret({ file: join(dir, 'none') }, 'cache.password'), { name: 'ConfigError', message: /^cache\.password\.file: cannot read .*none: ENOENT$/ })
})

t.test('cache.password: a Redis that requires a password is reached with it from a file, and refused without it', async (t) => {
  const redisPassword = 'redis-secret-0123456789'
  const redis = await startRedis(t, { password: redisPassword })
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const file = join(dir, 'redis-password')
  await writeFile(file, `${redisPassword}\n`)
  const image = await pushImage(registry.url, 'library/app', '1')
  const config = (cache: Record<string, unknown>) => ({
    noMatchPolicy: 'allow',
    upstreams: [{ name: 'docker.io', url: registry.url, default: true }],
    cache: { url: redis.url, ...cache },
  })
  /** Pulls the manifest once and reads the Redis tier's look-up results from /metrics. */
  const redisResults = async (proxy: TestProxy) => {
    const res = await request(`${proxy.url}/v2/library/app/manifests/1`)
    await res.body.dump()
    t.equal(res.statusCode, 200, 'served either way: the cache is never a reason to refuse')
    const m = await scrape(proxy.url)
    const of = (result: string) => m.all('trustpull_cache_requests_total', { tier: 'redis', result }).reduce((n, s) => n + s.value, 0)
    return { answered: of('hit') + of('miss'), errors: of('error') }
  }
  const withPassword = await startProxy(t, config({ password: { file } }))
  await waitFor(() => withPassword.running.runtime.store.redisUp, { what: 'redis connected with cache.password' })
  const authed = await redisResults(withPassword)
  t.ok(authed.answered > 0 && authed.errors === 0, `with cache.password Redis answers (${JSON.stringify(authed)})`)
  const without = await startProxy(t, config({}))
  const refused = await redisResults(without)
  t.ok(refused.errors > 0 && refused.answered === 0, `without it every Redis look-up fails (NOAUTH) (${JSON.stringify(refused)})`)
  t.ok(image.digest.startsWith('sha256:'))
  t.notOk(withPassword.logText().includes(redisPassword), 'the password is in no log line')
})

t.test('the real CLI with old spellings: one deprecation warning at start-up naming the keys, no secret in it', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const port = await freePort()
  const secretFile = join(dir, 'upstream-password')
  await writeFile(secretFile, 'upstream-secret-0123456789\n')
  const configFile = join(dir, 'config.yaml')
  await writeFile(
    configFile,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      noMatchPolicy: 'allow',
      storage: { path: join(dir, 'mirror-store') },
      log: { level: 'trace' },
      reload: { watch: false },
      upstreams: [{ name: 'docker.io', url: registry.url, default: true, auth: { username: 'bot', passwordFile: secretFile } }],
      clients: { tokens: [{ name: 'ci', tokenEnv: 'TRUSTPULL_TEST_TOKEN' }] },
    }),
  )
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    env: { ...process.env, TRUSTPULL_TEST_TOKEN: TOKEN },
    readyLine: /"msg":"trustpull listening"/,
    readyTimeoutMs: 60_000,
  })
  const ok = await request(`http://127.0.0.1:${port}/v2/`, { headers: { authorization: `Bearer ${TOKEN}` } })
  await ok.body.dump()
  t.equal(ok.statusCode, 200, 'the token read from tokenEnv works')
  const lines = (daemon.stdout() + daemon.stderr()).split('\n').filter((l) => l.includes('deprecated secret spellings'))
  t.equal(lines.length, 1, 'one warning')
  const warning = JSON.parse(lines[0]!) as { level: number; keys: string[] }
  t.same(warning.keys, ['upstreams[0].auth.passwordFile', 'clients.tokens[0].tokenEnv'])
  const everything = daemon.stdout() + daemon.stderr()
  t.notOk(everything.includes(TOKEN) || everything.includes('upstream-secret-0123456789'), 'no secret in any line, at trace level')
})

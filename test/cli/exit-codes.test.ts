// The exit-code contract, run through the real CLI: 0 ok, 2 usage (every command), 3 other failure,
// errors on one line; and the auth-file lookup (namespaced keys, a credential helper on PATH).
import t from 'tap'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileCredentials } from '../../src/copy/docker-config.ts'
import { parseEndpoint } from '../../src/copy/endpoint.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'

const trustpull = (args: string[]) => run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 30_000 })

t.test('usage errors exit 2 for every command; --version exits 0', async (t) => {
  const { version } = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
  const v = await trustpull(['--version'])
  t.equal(v.code, 0)
  t.equal(v.stdout.trim(), version)
  const cases = [['bogus'], ['serve', '--bogus'], ['verify'], ['verify', 'x', '--bogus'], ['copy', 'a'], ['copy', '--dest-tls-verify=maybe', 'a', 'b'], ['verify-bundle']]
  const results = await Promise.all(cases.map((c) => trustpull(c)))
  results.forEach((r, i) => t.equal(r.code, 2, `${cases[i]!.join(' ')}: ${r.stderr}`))
})

t.test('another failure exits 3 on one line', async (t) => {
  // With a config, nothing is dialled before the trust root is loaded.
  const config = join(await tempDir(t), 'trustpull.yaml')
  await writeFile(config, JSON.stringify({ upstreams: [{ name: 'registry.test', url: 'http://127.0.0.1:9' }], storage: { enabled: false } }))
  const r = await trustpull(['verify', 'registry.test/x/y:1', '--config', config, '--trusted-root', '/nonexistent/trusted_root.json'])
  t.equal(r.code, 3)
  t.equal(r.stderr.trim().split('\n').length, 1, r.stderr)
  t.match(r.stderr, /^trustpull: TRUST_ROOT_UNAVAILABLE/)
})

t.test('docker:// is accepted', async (t) => {
  t.same(parseEndpoint('docker://ghcr.io/x/app:1'), { kind: 'registry', name: 'ghcr.io/x/app', tag: '1' })
})

t.test('auth files: the most specific key wins; credHelpers run docker-credential-NAME', async (t) => {
  const dir = await tempDir(t)
  const bin = join(dir, 'bin')
  await mkdir(bin)
  await writeFile(join(bin, 'docker-credential-fake'), '#!/bin/sh\nread s\necho "{\\"Username\\":\\"helper-$s\\",\\"Secret\\":\\"pw\\"}"\n')
  await chmod(join(bin, 'docker-credential-fake'), 0o755)
  const file = join(dir, 'auth.json')
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  await writeFile(file, JSON.stringify({ auths: { 'reg.test': { auth: b64('wide:1') }, 'reg.test/team': { auth: b64('team:2') } }, credHelpers: { 'helped.test': 'fake' } }))
  const env = { ...process.env, REGISTRY_AUTH_FILE: file, PATH: `${bin}:${process.env.PATH}` }
  t.same(fileCredentials('reg.test', { env }, 'team/app'), { username: 'team', password: '2' })
  t.same(fileCredentials('reg.test', { env }, 'other/app'), { username: 'wide', password: '1' })
  t.same(fileCredentials('helped.test', { env }, 'a/b'), { username: 'helper-helped.test', password: 'pw' })
  t.equal(fileCredentials('none.test', { env }, 'a/b'), undefined)
})

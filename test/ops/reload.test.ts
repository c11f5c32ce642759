// Live reload without a signal, against the real CLI (`node src/cli/main.ts serve --config F` as a
// child process): a policy directory mounted the way Kubernetes mounts a ConfigMap (files are
// symlinks through `..data`, and an update swaps `..data` atomically with rename) is picked up by
// the file watcher; a broken policy is refused, the old one stays in force and
// trustpull_config_last_reload_successful drops to 0, then returns to 1 once the file is fixed.
// An htpasswd file and a TLS certificate rotated the same way are taken too.
// The threat: a revoked or tightened policy that never reaches the running process.
import t from 'tap'
import { mkdir, readFile, rename, symlink, writeFile } from 'node:fs/promises'
import { connect, type PeerCertificate } from 'node:tls'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, runOk, startDaemon, tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const UPSTREAM = 'registry.test'

function cip(name: string, glob: string, authority: object): string {
  return JSON.stringify({ apiVersion: 'policy.sigstore.dev/v1beta1', kind: 'ClusterImagePolicy', metadata: { name }, spec: { images: [{ glob }], authorities: [authority] } })
}

/** Writes a new `..<stamp>` directory and swaps `..data` to it atomically, as the kubelet does. */
async function kubeletSwap(dir: string, stamp: string, files: Record<string, string>): Promise<void> {
  const target = join(dir, `..${stamp}`)
  await mkdir(target)
  for (const [name, content] of Object.entries(files)) await writeFile(join(target, name), content)
  await symlink(`..${stamp}`, join(dir, '..data_tmp'))
  await rename(join(dir, '..data_tmp'), join(dir, '..data'))
}

const registry = await startRegistry(t)
const oldKey = await generateKeyPair(await tempDir(t))
const newKey = await generateKeyPair(await tempDir(t))

/** A config in `dir` polling its files every 200 ms, on a free port, for the upstream registry. */
async function writeConfig(dir: string, extra: Record<string, unknown>): Promise<{ port: number; configFile: string }> {
  const port = await freePort()
  const configFile = join(dir, 'trustpull.yaml')
  const config = {
    listen: `127.0.0.1:${port}`,
    upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
    reload: { interval: '200ms' },
    log: { level: 'info' },
    storage: { path: join(dir, 'store') },
    ...extra,
  }
  await writeFile(configFile, JSON.stringify(config))
  return { port, configFile }
}

t.test('a ConfigMap-style symlink swap of a policy dir is picked up with no signal; a broken file is refused', async (t) => {
  const dir = await tempDir(t)
  const policyDir = join(dir, 'policies')
  await mkdir(policyDir)
  await kubeletSwap(policyDir, '2026_12_04_00_00_00.1', { 'app.yaml': cip('app', `${UPSTREAM}/app/**`, { name: 'k', key: { data: oldKey.publicKeyPem } }) })
  await symlink('..data/app.yaml', join(policyDir, 'app.yaml'))

  const { port, configFile } = await writeConfig(dir, { policyDirs: [policyDir] })
  const img = await pushImage(registry.url, 'app/rotated', 'v1')
  await signImage(`${registry.host}/app/rotated@${img.digest}`, newKey.privateKeyPath)

  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
  })
  const url = `http://127.0.0.1:${port}`
  const status = async (image: PushedImage): Promise<number> => {
    const res = await request(`${url}/v2/${image.repo}/manifests/${image.digest}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    await res.body.dump()
    return res.statusCode
  }
  const reloadGauge = async (): Promise<number> => {
    const res = await request(`${url}/metrics`)
    const m = /^trustpull_config_last_reload_successful(?:\{[^}]*\})? (\S+)$/m.exec(await res.body.text())
    return m ? Number(m[1]) : NaN
  }
  const reloads = () =>
    daemon
      .stdout()
      .split('\n')
      .filter((l) => /configuration reloaded|reload refused/.test(l)).length

  t.equal(await status(img), 403, 'signed with a key the policy does not name: refused')
  t.equal(await reloadGauge(), 1, 'the start-up configuration counts as a successful load')

  let seen = reloads()
  await kubeletSwap(policyDir, '2026_12_04_00_01_00.2', { 'app.yaml': cip('app', `${UPSTREAM}/app/**`, { name: 'k', key: { data: newKey.publicKeyPem } }) })
  await waitFor(() => reloads() > seen, { what: 'a reload after the ..data swap' })
  t.match(daemon.stdout(), /"why":"file changed"[^\n]*configuration reloaded|configuration reloaded[^\n]*"why":"file changed"/, 'reloaded because a file changed, no signal sent')
  t.equal(await status(img), 200, 'the rotated key is in force: allowed')

  seen = reloads()
  await kubeletSwap(policyDir, '2026_12_04_00_02_00.3', { 'app.yaml': 'spec: [not yaml\n' })
  await waitFor(() => reloads() > seen, { what: 'a refused reload after a broken swap' })
  t.match(daemon.stdout(), /reload refused/, 'the broken policy is refused')
  t.equal(await reloadGauge(), 0, 'trustpull_config_last_reload_successful is 0')
  t.equal(await status(img), 200, 'the old policy stays in force')

  seen = reloads()
  await kubeletSwap(policyDir, '2026_12_04_00_03_00.4', { 'app.yaml': cip('app', `${UPSTREAM}/app/**`, { name: 'k', key: { data: oldKey.publicKeyPem } }) })
  await waitFor(() => reloads() > seen, { what: 'a reload after the fix' })
  t.equal(await reloadGauge(), 1, 'fixed: back to 1')
  t.equal(await status(img), 403, 'the old key again: refused (no stale verdict from the cache)')
})

t.test('an htpasswd file rotated in a Secret-style mount is picked up with no signal', async (t) => {
  const dir = await tempDir(t)
  const secretDir = join(dir, 'secret')
  await mkdir(secretDir)
  await kubeletSwap(secretDir, '2026_12_04_00_00_00.1', { htpasswd: `alice:${bcrypt.hashSync('old-password', 4)}\n` })
  await symlink('..data/htpasswd', join(secretDir, 'htpasswd'))
  const { port, configFile } = await writeConfig(dir, { noMatchPolicy: 'allow', clients: { htpasswd: join(secretDir, 'htpasswd') } })
  const img = await pushImage(registry.url, 'open/app', 'v1')
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
  })
  const status = async (password: string): Promise<number> => {
    const res = await request(`http://127.0.0.1:${port}/v2/${img.repo}/manifests/${img.digest}`, {
      headers: { accept: ACCEPT_ANY_MANIFEST, authorization: `Basic ${Buffer.from(`alice:${password}`).toString('base64')}` },
    })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await status('old-password'), 200, 'the old password works')
  t.equal(await status('new-password'), 401, 'the new one not yet')
  const seen = daemon
    .stdout()
    .split('\n')
    .filter((l) => /configuration reloaded/.test(l)).length
  await kubeletSwap(secretDir, '2026_12_04_00_01_00.2', { htpasswd: `alice:${bcrypt.hashSync('new-password', 4)}\n` })
  await waitFor(
    () =>
      daemon
        .stdout()
        .split('\n')
        .filter((l) => /configuration reloaded/.test(l)).length > seen,
    { what: 'a reload after the htpasswd rotation' },
  )
  t.equal(await status('new-password'), 200, 'the rotated password works')
  t.equal(await status('old-password'), 401, 'the old one is refused (no remembered verification outlives the file)')
})

t.test('a TLS certificate rotated in place is served on the next connection, no restart', async (t) => {
  const dir = await tempDir(t)
  const cert = async (cn: string) => {
    await runOk(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        `/CN=${cn}`,
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        `${cn}.key`,
        '-out',
        `${cn}.crt`,
      ],
      { cwd: dir },
    )
    return { cert: await readFile(join(dir, `${cn}.crt`), 'utf8'), key: await readFile(join(dir, `${cn}.key`), 'utf8') }
  }
  const first = await cert('first')
  const second = await cert('second')
  const tlsDir = join(dir, 'tls')
  await mkdir(tlsDir)
  await kubeletSwap(tlsDir, '2026_12_04_00_00_00.1', { 'tls.crt': first.cert, 'tls.key': first.key })
  await symlink('..data/tls.crt', join(tlsDir, 'tls.crt'))
  await symlink('..data/tls.key', join(tlsDir, 'tls.key'))
  const { port, configFile } = await writeConfig(dir, { tls: { cert: join(tlsDir, 'tls.crt'), key: join(tlsDir, 'tls.key') } })
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
  })
  const servedCN = () =>
    new Promise<string>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        const peer: PeerCertificate = socket.getPeerCertificate()
        socket.end()
        resolve(String(peer.subject.CN))
      })
      socket.once('error', reject)
    })
  t.equal(await servedCN(), 'first')
  const seen = daemon
    .stdout()
    .split('\n')
    .filter((l) => /configuration reloaded/.test(l)).length
  await kubeletSwap(tlsDir, '2026_12_04_00_01_00.2', { 'tls.crt': second.cert, 'tls.key': second.key })
  await waitFor(
    () =>
      daemon
        .stdout()
        .split('\n')
        .filter((l) => /configuration reloaded/.test(l)).length > seen,
    { what: 'a reload after the certificate rotation' },
  )
  t.equal(await servedCN(), 'second', 'a new connection gets the rotated certificate')
})

t.test('a bearer token file rotated in a Secret-style mount is picked up with no signal', async (t) => {
  const dir = await tempDir(t)
  const secretDir = join(dir, 'secret')
  await mkdir(secretDir)
  await kubeletSwap(secretDir, '2026_12_04_00_00_00.1', { token: 'old-token-0123456789abcdef\n' })
  await symlink('..data/token', join(secretDir, 'token'))
  const { port, configFile } = await writeConfig(dir, { noMatchPolicy: 'allow', clients: { tokens: [{ name: 'ci', tokenFile: join(secretDir, 'token') }] } })
  const img = await pushImage(registry.url, 'open/tok', 'v1')
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
  })
  const status = async (token: string): Promise<number> => {
    const res = await request(`http://127.0.0.1:${port}/v2/${img.repo}/manifests/${img.digest}`, { headers: { accept: ACCEPT_ANY_MANIFEST, authorization: `Bearer ${token}` } })
    await res.body.dump()
    return res.statusCode
  }
  t.equal(await status('old-token-0123456789abcdef'), 200, 'the old token works')
  const seen = daemon
    .stdout()
    .split('\n')
    .filter((l) => /configuration reloaded/.test(l)).length
  await kubeletSwap(secretDir, '2026_12_04_00_01_00.2', { token: 'new-token-0123456789abcdef\n' })
  await waitFor(
    () =>
      daemon
        .stdout()
        .split('\n')
        .filter((l) => /configuration reloaded/.test(l)).length > seen,
    { what: 'a reload after the token rotation' },
  )
  t.equal(await status('new-token-0123456789abcdef'), 200, 'the rotated token works')
  t.equal(await status('old-token-0123456789abcdef'), 401, 'the old one is refused')
})

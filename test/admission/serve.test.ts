// `trustpull serve` starts the admission listener beside the registry, re-reads its certificate
// when the Secret's files change, closes it on SIGTERM, and refuses to start without TLS.
import t from 'tap'
import { copyFile, writeFile } from 'node:fs/promises'
import { connect, type PeerCertificate } from 'node:tls'
import { join } from 'node:path'
import { admissionReview, kubectlObject, servingCert, webhookClient } from '../helpers/admission.ts'
import { pushImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, run, startDaemon, tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const CLI = join(REPO_ROOT, 'src/cli/main.ts')

const servedFingerprint = (port: number) =>
  new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const peer: PeerCertificate = socket.getPeerCertificate()
      socket.end()
      resolve(peer.fingerprint256)
    })
    socket.once('error', reject)
  })

t.test('serve: the admission listener lives and dies with the proxy', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'open/app', 'v1')
  const dir = await tempDir(t)
  const [first, second] = [await servingCert(t), await servingCert(t)]
  const cert = join(dir, 'tls.crt')
  const key = join(dir, 'tls.key')
  await copyFile(first.cert, cert)
  await copyFile(first.key, key)
  const [port, admissionPort] = [await freePort(), await freePort()]
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(
    configFile,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      upstreams: [{ name: 'docker.io', url: registry.url, default: true }],
      noMatchPolicy: 'allow',
      admission: { listen: `127.0.0.1:${admissionPort}`, tls: { cert, key } },
      reload: { interval: '200ms' },
      log: { level: 'info' },
    }),
  )
  const daemon = await startDaemon(t, process.execPath, [CLI, 'serve', '--config', configFile], { name: 'trustpull', cwd: REPO_ROOT, readyLine: /"msg":"trustpull listening"/ })
  t.match(daemon.stdout(), `"admission":"https://127.0.0.1:${admissionPort}"`, 'the ready line names the admission address')
  const post = webhookClient(t, `https://127.0.0.1:${admissionPort}`, first.pem)
  const r = await post('mutate', admissionReview(await kubectlObject('deployment', 'open', 'open/app:v1')).review)
  t.same(r.patch, [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: `open/app:v1@${image.digest}` }])

  const before = await servedFingerprint(admissionPort)
  await copyFile(second.cert, cert)
  await copyFile(second.key, key)
  await waitFor(async () => (await servedFingerprint(admissionPort)) !== before, { what: 'the rotated admission certificate to be served' })

  daemon.child.kill('SIGTERM')
  await waitFor(() => !daemon.running(), { what: 'trustpull to exit' })
  t.equal(daemon.child.exitCode, 0)
  await t.rejects(servedFingerprint(admissionPort), 'the admission port is closed')
})

t.test('serve refuses to start with admission but no TLS, naming the key', async (t) => {
  const dir = await tempDir(t)
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(configFile, JSON.stringify({ listen: '127.0.0.1:0', noMatchPolicy: 'allow', admission: { listen: '127.0.0.1:0' } }))
  const r = await run(process.execPath, [CLI, 'serve', '--config', configFile], { cwd: REPO_ROOT, timeoutMs: 30_000 })
  t.not(r.code, 0)
  t.match(r.stderr + r.stdout, /admission\.tls: the API server calls admission webhooks over HTTPS only/)
})

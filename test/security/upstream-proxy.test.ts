// Corporate egress and private CAs, against the real CLI: HTTPS_PROXY / HTTP_PROXY / NO_PROXY (either
// case) route upstream connections through a real forward proxy on loopback, NO_PROXY hosts go
// direct, refusePrivateRedirects still refuses a private redirect target before the proxy is asked,
// and an upstream's `ca` bundle is trusted for that upstream only.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { startForwardProxy } from '../helpers/forward-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir, type Teardown } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startTlsFront } from '../helpers/tls-front.ts'

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'NO_PROXY', 'no_proxy']

/** `trustpull serve` with this config and these proxy variables (and none inherited). */
async function serve(t: Teardown, config: Record<string, unknown>, proxyVars: Record<string, string>): Promise<string> {
  const dir = await tempDir(t)
  const port = await freePort()
  const configFile = join(dir, 'config.yaml')
  await writeFile(
    configFile,
    JSON.stringify({ listen: `127.0.0.1:${port}`, noMatchPolicy: 'allow', reload: { watch: false }, storage: { path: join(dir, 'mirror-store') }, ...config }),
  )
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !PROXY_VARS.includes(k)))
  await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    env: { ...env, ...proxyVars },
    readyLine: /"msg":"trustpull listening"/,
    readyTimeoutMs: 60_000,
  })
  return `http://127.0.0.1:${port}`
}

const get = async (url: string) => {
  const res = await request(url)
  const body = await res.body.text()
  return { status: res.statusCode, digest: res.headers['docker-content-digest'], body }
}

t.test('proxy variables and per-upstream CA bundles', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/app', '1')
  const front = await startTlsFront(t, registry.url)
  const egress = await startForwardProxy(t)
  const manifest = (proxy: string, ns?: string) => get(`${proxy}/v2/library/app/manifests/1${ns ? `?ns=${ns}` : ''}`)

  t.test('HTTPS_PROXY: the HTTPS upstream is reached through a CONNECT tunnel, its private CA trusted', async (t) => {
    const proxy = await serve(t, { upstreams: [{ name: 'docker.io', url: front.url, default: true, ca: front.caFile }] }, { HTTPS_PROXY: egress.url })
    const before = egress.targets.length
    const res = await manifest(proxy)
    t.equal(res.status, 200, res.status === 200 ? 'served' : res.body)
    t.equal(res.digest, image.digest)
    const carried = egress.targets.slice(before)
    t.ok(carried.length >= 1, 'the proxy carried the connection')
    t.ok(
      carried.every((target) => target === `localhost:${front.port}`),
      `tunnels to the upstream only: ${carried.join(', ')}`,
    )
  })

  t.test('lowercase https_proxy with NO_PROXY naming the upstream: direct, the proxy never asked', async (t) => {
    const proxy = await serve(
      t,
      { upstreams: [{ name: 'docker.io', url: front.url, default: true, ca: front.caFile }] },
      { https_proxy: egress.url, NO_PROXY: 'example.invalid,localhost' },
    )
    const before = egress.targets.length
    const servedBefore = front.requests
    const res = await manifest(proxy)
    t.equal(res.status, 200, res.status === 200 ? 'served' : res.body)
    t.equal(egress.targets.length, before, 'no request through the proxy')
    t.ok(front.requests > servedBefore, 'the upstream answered directly')
  })

  t.test('http_proxy for a plain-HTTP upstream: forwarded by absolute URI; no_proxy lowercase bypasses it', async (t) => {
    const host = new URL(registry.url).host
    const via = await serve(t, { upstreams: [{ name: 'docker.io', url: registry.url, default: true }] }, { http_proxy: egress.url })
    const before = egress.targets.length
    t.equal((await manifest(via)).status, 200)
    t.ok(egress.targets.slice(before).includes(host), 'forwarded through the proxy')
    const direct = await serve(t, { upstreams: [{ name: 'docker.io', url: registry.url, default: true }] }, { HTTP_PROXY: egress.url, no_proxy: new URL(registry.url).hostname })
    const after = egress.targets.length
    t.equal((await manifest(direct)).status, 200)
    t.equal(egress.targets.length, after, 'no_proxy: direct')
  })

  t.test('the CA bundle is trusted for its upstream only', async (t) => {
    const proxy = await serve(
      t,
      {
        upstreams: [
          { name: 'docker.io', url: front.url, default: true, ca: front.caFile },
          { name: 'other.example', url: front.url },
        ],
      },
      {},
    )
    t.equal((await manifest(proxy)).status, 200, 'with its ca: verified and served')
    const other = await manifest(proxy, 'other.example')
    t.equal(other.status, 502, 'the same certificate for an upstream without the ca: refused')
    t.match(other.body, /other\.example/)
  })

  t.test('through the proxy, refusePrivateRedirects still refuses a private redirect target before any connection to it', async (t) => {
    const guarded = await startFaultProxy(t, registry.url)
    const proxy = await serve(t, { upstreams: [{ name: 'docker.io', url: guarded.url, default: true, refusePrivateRedirects: true }] }, { HTTP_PROXY: egress.url })
    t.equal((await manifest(proxy)).status, 200)
    const layer = image.layers[0]!
    const before = egress.targets.length
    for (const location of ['http://169.254.169.254/latest/meta-data/', 'http://127.0.0.2:9/blob']) {
      guarded.setFault((req) => (req.path.endsWith(`/blobs/${layer.digest}`) ? { kind: 'redirect', location } : undefined))
      const res = await get(`${proxy}/v2/library/app/blobs/${layer.digest}`)
      t.equal(res.status, 502, `${location}: refused`)
      t.match(res.body, /private address/)
    }
    const targets = egress.targets.slice(before)
    t.ok(targets.length >= 1, 'the upstream itself was asked through the proxy')
    t.notOk(
      targets.some((x) => x.startsWith('169.254.') || x.startsWith('127.0.0.2')),
      `the proxy was never asked for a private target: ${targets.join(', ')}`,
    )
  })
})

// trustpull as it runs in production: `node src/cli/main.ts serve --config F` as a child process,
// probed on /healthz and /readyz, reloaded with SIGHUP (good and bad policy files, a broken config,
// a trust root replaced with garbage) and stopped with SIGTERM in the middle of a 128 MiB blob.
// Key signatures come from the real cosign 2.5; keyless ones from @sigstore/sign against
// @sigstore/mock's Fulcio and Rekor over loopback HTTP, checked with a trusted_root.json file.
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, request as httpRequest, type Server as HttpServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { Client, request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, sha256, type PushedImage } from '../helpers/images.ts'
import { MOCK_ISSUER as ISSUER, pushBundleReferrer, startMockSigstore } from '../helpers/mock-sigstore.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir, waitFor, type Daemon, type Teardown } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'registry.test'
const SUBJECT = 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main'

// ---------------------------------------------------------------------------------------------
// trustpull as a child process

interface Child {
  url: string
  port: number
  daemon: Daemon
  /** Resolves with the exit code once the process has ended. */
  exited: Promise<number | null>
  /** The JSON lines it has written to stdout so far. */
  logs(): Record<string, unknown>[]
  /** Sends a signal and waits until a new line with `msg` starting with one of `expect` appears. */
  signalAndWait(signal: NodeJS.Signals, expect: string[]): Promise<Record<string, unknown>>
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return [] // the first line of a truncated capture, or anything not JSON
    }
  })
}

async function startTrustpull(t: Teardown, configFile: string, port: number): Promise<Child> {
  const url = `http://127.0.0.1:${port}`
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    readyLine: /"msg":"trustpull listening"/,
  })
  const exited = new Promise<number | null>((resolve) => {
    if (daemon.child.exitCode !== null) resolve(daemon.child.exitCode)
    daemon.child.once('exit', (code) => resolve(code))
  })
  const logs = () => jsonLines(daemon.stdout())
  return {
    url,
    port,
    daemon,
    exited,
    logs,
    async signalAndWait(signal, expect) {
      const seen = logs().length
      daemon.child.kill(signal)
      let found: Record<string, unknown> | undefined
      await waitFor(
        () =>
          (found = logs()
            .slice(seen)
            .find((l) => expect.some((e) => String(l.msg).startsWith(e)))) !== undefined,
        {
          what: `a log line starting with ${expect.join(' or ')} after ${signal}`,
        },
      )
      return found!
    },
  }
}

async function manifestStatus(child: Child, img: PushedImage): Promise<number> {
  const res = await request(`${child.url}/v2/${img.repo}/manifests/${img.tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  const body = Buffer.from(await res.body.arrayBuffer())
  if (res.statusCode === 200 && sha256(body) !== img.digest) throw new Error(`${img.repo}: wrong manifest bytes`)
  return res.statusCode
}

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await request(url)
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> }
}

/** A ClusterImagePolicy document. */
function cip(name: string, glob: string, authority: object): string {
  return JSON.stringify({ apiVersion: 'policy.sigstore.dev/v1beta1', kind: 'ClusterImagePolicy', metadata: { name }, spec: { images: [{ glob }], authorities: [authority] } })
}

// ---------------------------------------------------------------------------------------------

const registry = await startRegistry(t)
const keys = await generateKeyPair(await tempDir(t))
// No TSA: its clock is fixed at start-up, and the images may be signed more than 30 s later.
const sigstore = await startMockSigstore(t, { tsa: false })

t.test('/healthz and /readyz', async (t) => {
  const redis = await startRedis(t)
  const dir = await tempDir(t)
  const port = await freePort()
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(
    configFile,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
      cache: { url: redis.url },
      storage: { path: join(dir, 'store') },
    }),
  )
  const child = await startTrustpull(t, configFile, port)
  t.same(await getJson(`${child.url}/healthz`), { status: 200, body: { status: 'ok' } })
  t.same(await getJson(`${child.url}/readyz`), {
    status: 200,
    body: { ready: true, checks: { config: 'loaded', policies: 0, upstreamsReachable: [UPSTREAM], redis: 'up', store: 'writable' } },
  })

  // Nothing answers: no upstream, no Redis. Alive, but not ready; listening beyond loopback is warned about.
  const deadPort = await freePort()
  const lonelyPort = await freePort()
  const lonelyConfig = join(dir, 'lonely.yaml')
  await writeFile(
    lonelyConfig,
    JSON.stringify({
      listen: `0.0.0.0:${lonelyPort}`,
      upstreams: [{ name: UPSTREAM, url: `http://127.0.0.1:${deadPort}`, default: true }],
      cache: { url: `redis://127.0.0.1:${deadPort}` },
      storage: { path: join(dir, 'lonely-store') },
    }),
  )
  const lonely = await startTrustpull(t, lonelyConfig, lonelyPort)
  t.same(await getJson(`${lonely.url}/healthz`), { status: 200, body: { status: 'ok' } }, 'alive')
  t.same(await getJson(`${lonely.url}/readyz`), {
    status: 503,
    body: { ready: false, checks: { config: 'loaded', policies: 0, upstreamsReachable: [], redis: 'down', store: 'writable' } },
  })
  t.match(
    lonely.logs().find((l) => l.level === 'warn' && /beyond loopback/.test(String(l.msg))),
    { listen: `0.0.0.0:${lonelyPort}` },
    'a non-loopback listen address is warned about',
  )
  t.notOk(
    child.logs().some((l) => /beyond loopback/.test(String(l.msg))),
    'a loopback one is not',
  )

  // Beyond loopback but with client authentication: nothing to warn about.
  const guardedPort = await freePort()
  const guardedConfig = join(dir, 'guarded.yaml')
  await writeFile(
    guardedConfig,
    JSON.stringify({
      listen: `0.0.0.0:${guardedPort}`,
      upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
      clients: { tokens: [{ name: 'nodes', token: 'nodes-token-0123456789' }] },
      storage: { enabled: false },
    }),
  )
  const guarded = await startTrustpull(t, guardedConfig, guardedPort)
  t.same(await getJson(`${guarded.url}/healthz`), { status: 200, body: { status: 'ok' } })
  t.notOk(
    guarded.logs().some((l) => /beyond loopback/.test(String(l.msg))),
    'with client authentication it is not',
  )
})

t.test('SIGHUP: new policies for new requests; a bad config or trust root is refused and the old one kept', async (t) => {
  const redis = await startRedis(t)
  const dir = await tempDir(t)
  const policyDir = join(dir, 'policies')
  const rootFile = join(dir, 'trusted_root.json')
  const port = await freePort()
  const configFile = join(dir, 'trustpull.yaml')
  const config = {
    listen: `127.0.0.1:${port}`,
    upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
    trustRoots: [{ name: 'corp', file: rootFile }],
    policyDirs: [policyDir],
    cache: { url: redis.url },
    storage: { path: join(dir, 'store') },
    log: { level: 'info' },
  }
  await writeFile(configFile, JSON.stringify(config))
  await writeFile(rootFile, JSON.stringify(sigstore.trustedRoot))
  await mkdir(policyDir)
  const keyPolicy = cip('app', `${UPSTREAM}/app/**`, { name: 'release-key', key: { data: keys.publicKeyPem } })
  await writeFile(join(policyDir, 'app.yaml'), keyPolicy)
  await writeFile(
    join(policyDir, 'keyless.yaml'),
    cip('keyless', `${UPSTREAM}/keyless/**`, { name: 'ci', keyless: { trustRootRef: 'corp', identities: [{ issuer: ISSUER, subject: SUBJECT }] } }),
  )

  const signed = await pushImage(registry.url, 'app/signed', 'v1')
  await signImage(`${registry.host}/app/signed@${signed.digest}`, keys.privateKeyPath)
  // A fresh unsigned image for each step, so no step reads a verdict cached by the one before.
  const unsigned = await Promise.all([0, 1, 2, 3].map((i) => pushImage(registry.url, `app/unsigned-${i}`, 'v1')))
  const keyless = await Promise.all([0, 1, 2].map((i) => pushImage(registry.url, `keyless/app-${i}`, 'v1')))
  // A message-signature bundle over the manifest, attached as a referrer through the fallback tag (as cosign 3 does).
  for (const image of keyless) await pushBundleReferrer(registry.url, image.repo, image, await sigstore.signMessage(Buffer.from(image.manifest), SUBJECT))

  const child = await startTrustpull(t, configFile, port)
  t.equal(await manifestStatus(child, signed), 200, 'signed: allowed')
  t.equal(await manifestStatus(child, unsigned[0]!), 403, 'unsigned: denied')
  t.equal(await manifestStatus(child, keyless[0]!), 200, 'keyless, checked against the trust root file: allowed')
  t.match(
    child.logs().find((l) => l.audit === 'verdict' && l.digest === keyless[0]!.digest),
    { result: 'allow', signers: [{ issuer: ISSUER, subject: SUBJECT }] },
  )

  t.test('a config file that is not valid YAML', async (t) => {
    await writeFile(configFile, 'listen: [127.0.0.1\n')
    const line = await child.signalAndWait('SIGHUP', ['reload refused', 'policies reloaded'])
    t.match(line, { level: 'error', msg: /^reload refused/, err: /not valid YAML/ })
    await writeFile(configFile, JSON.stringify(config))
    t.equal(await manifestStatus(child, unsigned[1]!), 403, 'the old policy still denies an unsigned image')
    t.equal(await manifestStatus(child, signed), 200)
  })

  t.test('a policy file with an unsupported field', async (t) => {
    await writeFile(join(policyDir, 'app.yaml'), cip('app', `${UPSTREAM}/app/**`, { key: { kms: 'awskms:///arn:aws:kms:eu-west-1:1:key/1' } }))
    const line = await child.signalAndWait('SIGHUP', ['reload refused', 'policies reloaded'])
    t.match(line, { level: 'error', msg: /^reload refused/, err: /KMS keys/ })
    t.equal(await manifestStatus(child, unsigned[1]!), 403, 'still denied')
  })

  t.test('a good policy change applies to new requests', async (t) => {
    await writeFile(join(policyDir, 'app.yaml'), cip('app', `${UPSTREAM}/app/**`, { name: 'exception', static: { action: 'pass' } }))
    const line = await child.signalAndWait('SIGHUP', ['reload refused', 'policies reloaded'])
    t.match(line, { level: 'info', msg: 'policies reloaded', policies: 2 })
    t.equal(await manifestStatus(child, unsigned[2]!), 200, 'an unsigned image is allowed now')
    t.equal(await manifestStatus(child, unsigned[0]!), 200, 'even one denied before: the old verdict is not reused')
  })

  t.test('a trust root file replaced with garbage', async (t) => {
    await writeFile(rootFile, '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1", "certificateAuthorities": [{"certChain": "garbage"')
    const line = await child.signalAndWait('SIGHUP', ['reload refused', 'policies reloaded'])
    t.match(line, { level: 'error', msg: /^reload refused/, err: /trusted_root\.json/ })
    t.equal(await manifestStatus(child, keyless[1]!), 200, 'an image never seen before verifies against the old root')
    t.match(
      child.logs().find((l) => l.audit === 'verdict' && l.digest === keyless[1]!.digest),
      { result: 'allow', cached: false, signers: [{ issuer: ISSUER, subject: SUBJECT }] },
    )
  })

  t.test('a valid trust root of another CA is taken: the mock-signed images are refused now', async (t) => {
    const other = await startMockSigstore(t, { tsa: false })
    await writeFile(rootFile, JSON.stringify(other.trustedRoot))
    const line = await child.signalAndWait('SIGHUP', ['reload refused', 'policies reloaded'])
    t.match(line, { msg: 'policies reloaded' })
    t.equal(await manifestStatus(child, keyless[2]!), 403, 'signed by a CA the new root does not trust')
    t.equal(await manifestStatus(child, unsigned[3]!), 200, 'the static pass from the earlier reload is still in force')
  })

  t.test('the process is still healthy after every reload', async (t) => {
    t.equal((await getJson(`${child.url}/readyz`)).status, 200)
    t.ok(child.daemon.running())
  })
})

/** An OTLP/HTTP trace receiver (JSON encoding, the exporter's default): the span names it was sent. */
async function startOtlpReceiver(t: Teardown): Promise<{ endpoint: string; spanNames: string[] }> {
  const spanNames: string[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[] }
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) for (const sp of ss.spans) spanNames.push(sp.name)
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`, spanNames }
}

t.test('SIGTERM during a 128 MiB blob: the download completes, new connections are refused, spans are exported, exit 0', async (t) => {
  const big = await pushImage(registry.url, 'big/app', 'v1', { layerSize: 128 * 1024 * 1024 })
  const layer = big.layers[0]!
  const redis = await startRedis(t)
  const otlp = await startOtlpReceiver(t)
  const dir = await tempDir(t)
  const port = await freePort()
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(
    configFile,
    JSON.stringify({
      listen: `127.0.0.1:${port}`,
      upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
      policies: [{ name: 'big', images: [{ glob: '**' }], authorities: [{ static: { action: 'pass' } }] }],
      cache: { url: redis.url },
      telemetry: { otlp: { endpoint: otlp.endpoint } },
      storage: { path: join(dir, 'store') },
    }),
  )
  const child = await startTrustpull(t, configFile, port)
  t.equal(await manifestStatus(child, big), 200)

  // A client that reads 1 MiB, then rests 20 ms: the download lasts seconds, long enough to signal in the middle.
  let received = 0
  let receivedAtRefusal = -1
  const download = new Promise<{ status: number; bytes: number; digest: string; complete: boolean }>((resolve, reject) => {
    const req = httpRequest(`${child.url}/v2/big/app/blobs/${layer.digest}`, { agent: false }, (res) => {
      const hash = createHash('sha256')
      let sinceRest = 0
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        received += chunk.length
        sinceRest += chunk.length
        if (sinceRest < 1024 * 1024) return
        sinceRest = 0
        res.pause()
        setTimeout(() => res.resume(), 20)
      })
      res.once('error', reject)
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes: received, digest: `sha256:${hash.digest('hex')}`, complete: res.complete }))
    })
    req.once('error', reject)
    req.end()
  })
  await waitFor(() => received >= 8 * 1024 * 1024, { what: 'the first 8 MiB' })
  t.match(await child.signalAndWait('SIGTERM', ['shutting down']), { signal: 'SIGTERM' })

  // New connections are refused while the download goes on.
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connect(port, '127.0.0.1')
        socket.once('connect', () => {
          socket.destroy()
          resolve(false)
        })
        socket.once('error', (err: NodeJS.ErrnoException) => {
          if (err.code === 'ECONNREFUSED') receivedAtRefusal = received
          resolve(err.code === 'ECONNREFUSED')
        })
      }),
    { what: 'connections to be refused' },
  )
  t.ok(
    receivedAtRefusal >= 0 && receivedAtRefusal < layer.size,
    `a new connection was refused with ${(receivedAtRefusal / 2 ** 20).toFixed(0)} of ${(layer.size / 2 ** 20).toFixed(0)} MiB delivered`,
  )
  t.ok(child.daemon.running(), 'the process is still serving the download')

  const got = await download
  t.equal(got.status, 200)
  t.ok(got.complete, 'the body ended cleanly')
  t.equal(got.bytes, layer.size, 'every byte arrived')
  t.equal(got.digest, layer.digest, 'and they hash to the blob digest')
  t.equal(await child.exited, 0, 'then the process exits 0')
  const messages = child.logs().map((l) => l.msg)
  t.ok(messages.indexOf('stopped') > messages.indexOf('shutting down: finishing in-flight requests'), 'it logged that it stopped')
  t.ok(redis.running(), 'Redis itself is left running')
  for (const name of ['GET manifest', 'policy.evaluate', 'cache.get', 'GET blob', 'upstream.request'])
    t.ok(otlp.spanNames.includes(name), `the ${name} span was exported over OTLP before exit`)
})

t.test('a graceful close does not wait for keep-alive connections to time out', async (t) => {
  const image = await pushImage(registry.url, 'idle/app', 'v1')
  // The tag list takes a while upstream, so the request is in flight when close() starts.
  const slow = await startFaultProxy(t, registry.url, (req) => (req.path.endsWith('/tags/list') ? { kind: 'delay', ms: 300 } : undefined))
  const proxy = await startProxy(t, { upstreams: [{ name: UPSTREAM, url: slow.url, default: true }] })
  // Ten minutes: a close that waited for the idle connection would outlive the test's timeout.
  ;(proxy.running.server as HttpServer).keepAliveTimeout = 600_000
  const client = new Client(proxy.url, { keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000, pipelining: 1 })
  t.teardown(() => client.destroy())
  const answer = client.request({ method: 'GET', path: `/v2/${image.repo}/tags/list` })
  await waitFor(() => slow.requests.some((r) => r.path.endsWith('/tags/list')), { what: 'the request to reach upstream' })
  const closing = proxy.running.close(600_000)
  const res = await answer
  t.equal(res.statusCode, 200, 'the request in flight is answered')
  t.same(await res.body.json(), { name: image.repo, tags: ['v1'] })
  await closing
  t.pass('close() returned once the kept-alive connection fell idle')
})

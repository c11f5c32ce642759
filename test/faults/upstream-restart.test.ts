// The upstream registry stopped and started again under load, with trustpull running as it does in
// production (a child process: `node src/cli/main.ts serve`). While the registry is down, requests
// that need it fail cleanly (502/503/504 with an OCI error, or a blob cut off mid-stream), and
// requests it can answer from its immutable manifest cache keep succeeding; once it is back
// everything succeeds again. No request is left hanging, and no socket is leaked: the proxy's
// file descriptors are read from /proc before and after, and no socket is left in CLOSE_WAIT.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readdir, readFile, readlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Agent, request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const UPSTREAM = 'registry.test'
const CLIENTS = 20
const LOAD_MS = 9_000
const STOP_AT_MS = 2_000
const DOWN_FOR_MS = 2_500
/** The proxy's pool to one upstream (undici Agent `connections`, src/upstream/client.ts). */
const UPSTREAM_POOL = 64
const CLEAN_CODES = new Set(['UPSTREAM_ERROR', 'UNAVAILABLE', 'UPSTREAM_TIMEOUT'])

interface Outcome {
  what: string
  /** When the request started and ended, in ms since the load began. */
  at: number
  end: number
  result: 'ok' | 'clean failure' | 'bad'
  detail?: string
}

interface SocketInfo {
  localPort: number
  remotePort: number
  state: string
}

const TCP_STATES: Record<string, string> = {
  '01': 'ESTABLISHED',
  '02': 'SYN_SENT',
  '06': 'TIME_WAIT',
  '08': 'CLOSE_WAIT',
  '0A': 'LISTEN',
  '09': 'LAST_ACK',
  '04': 'FIN_WAIT1',
  '05': 'FIN_WAIT2',
  '07': 'CLOSE',
}

/** Open file descriptors of `pid`, and its TCP sockets (from /proc/net/tcp{,6}, matched by inode). */
async function descriptors(pid: number): Promise<{ fds: number; sockets: SocketInfo[] }> {
  const dir = `/proc/${pid}/fd`
  const links = await Promise.all((await readdir(dir)).map((fd) => readlink(join(dir, fd)).catch(() => '')))
  const inodes = new Set(links.map((l) => /^socket:\[(\d+)\]$/.exec(l)?.[1]).filter((i): i is string => i !== undefined))
  const sockets: SocketInfo[] = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of (await readFile(table, 'utf8')).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      if (f.length < 10 || !inodes.has(f[9]!)) continue
      sockets.push({ localPort: parseInt(f[1]!.split(':')[1]!, 16), remotePort: parseInt(f[2]!.split(':')[1]!, 16), state: TCP_STATES[f[3]!] ?? f[3]! })
    }
  }
  return { fds: links.length, sockets }
}

const registry = await startRegistry(t)
const keys = await generateKeyPair(await tempDir(t, 'trustpull-faults-keys-'))
const images = await Promise.all(Array.from({ length: 4 }, (_, i) => pushImage(registry.url, `app/r${i}`, 'v1', { layerSize: 256 * 1024 })))
await Promise.all(images.map((img) => signImage(`${registry.host}/${img.repo}@${img.digest}`, keys.privateKeyPath)))

const dir = await tempDir(t)
const port = await freePort()
const configFile = join(dir, 'trustpull.yaml')
await writeFile(
  configFile,
  JSON.stringify({
    listen: `127.0.0.1:${port}`,
    upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
    policies: [{ name: 'signed', images: [{ glob: `${UPSTREAM}/**` }], authorities: [{ key: { data: keys.publicKeyPem } }] }],
    timeouts: { connect: '1s', headers: '2s', body: '2s' },
    // Pass-through under an outage is what this measures; with the store, blobs and tags would be
    // served from it instead (that is test/store/mirror.test.ts).
    storage: { enabled: false },
    log: { level: 'warn' },
  }),
)
const proxyUrl = `http://127.0.0.1:${port}`
const child = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
  name: 'trustpull',
  cwd: REPO_ROOT,
  ready: async () => (await fetch(`${proxyUrl}/healthz`)).ok,
})

const KINDS = [
  ['manifest by tag', 'GET'],
  ['HEAD by tag', 'HEAD'],
  ['manifest by digest', 'GET'],
  ['blob', 'GET'],
] as const

async function pull(agent: Agent, img: PushedImage, kind: number, started: number): Promise<Outcome> {
  const outcome = await attempt(agent, img, kind, started)
  return { ...outcome, end: Date.now() - started }
}

async function attempt(agent: Agent, img: PushedImage, kind: number, started: number): Promise<Omit<Outcome, 'end'>> {
  const [what, method] = KINDS[kind % KINDS.length]!
  const path = what === 'blob' ? `blobs/${img.layerDigests[0]}` : `manifests/${what === 'manifest by digest' ? img.digest : 'v1'}`
  const at = Date.now() - started
  let status = 0
  try {
    const res = await request(`${proxyUrl}/v2/${img.repo}/${path}`, { dispatcher: agent, method, headers: { accept: ACCEPT_ANY_MANIFEST } })
    status = res.statusCode
    const body = Buffer.from(await res.body.arrayBuffer())
    const expected = what === 'blob' ? img.layerDigests[0] : img.digest
    if (status === 200) {
      const got = method === 'HEAD' ? res.headers['docker-content-digest'] : `sha256:${createHash('sha256').update(body).digest('hex')}`
      return got === expected ? { what, at, result: 'ok' } : { what, at, result: 'bad', detail: `200 with ${String(got)}` }
    }
    if (status >= 502 && status <= 504) {
      if (method === 'HEAD') return { what, at, result: 'clean failure', detail: String(status) }
      const code = (JSON.parse(body.toString('utf8')) as { errors: { code: string }[] }).errors[0]?.code ?? ''
      return { what, at, result: CLEAN_CODES.has(code) ? 'clean failure' : 'bad', detail: `${status} ${code}` }
    }
    return { what, at, result: 'bad', detail: `${status} ${body.toString('utf8').slice(0, 200)}` }
  } catch (err) {
    const e = err as Error & { code?: string }
    // A blob whose upstream went away mid-stream is cut off: clean, as long as it is not a timeout of ours.
    const cut = status === 200 && what === 'blob' && !/TIMEOUT/.test(e.code ?? '')
    return { what, at, result: cut ? 'clean failure' : 'bad', detail: `${status} ${e.code ?? ''} ${e.message}` }
  }
}

t.test('upstream restarted under load: clean failures while it is down, success after, nothing stuck or leaked', async (t) => {
  // Warm-up: every image allowed once, its blob vouched for and its manifest in the digest cache.
  let agent = new Agent({ connections: CLIENTS, headersTimeout: 20_000, bodyTimeout: 20_000 })
  for (const img of images) for (let k = 0; k < KINDS.length; k++) t.equal((await pull(agent, img, k, Date.now())).result, 'ok', `warm-up ${img.repo} ${KINDS[k]![0]}`)
  await agent.close()
  const idle = async () => {
    await waitFor(async () => (await descriptors(child.pid)).sockets.every((s) => s.localPort !== port || s.state === 'LISTEN'), {
      what: 'client connections to close',
      timeoutMs: 10_000,
    })
    return descriptors(child.pid)
  }
  const baseline = await idle()

  agent = new Agent({ connections: CLIENTS, headersTimeout: 20_000, bodyTimeout: 20_000 })
  const started = Date.now()
  let stoppingAt = Infinity
  let downAt = Infinity
  let restartingAt = Infinity
  let backAt = Infinity
  const chaos = (async () => {
    await sleep(STOP_AT_MS)
    stoppingAt = Date.now() - started
    await registry.stop()
    downAt = Date.now() - started
    await sleep(DOWN_FOR_MS)
    restartingAt = Date.now() - started
    await registry.restart()
    backAt = Date.now() - started
  })()
  const outcomes: Outcome[] = []
  const workers = Array.from({ length: CLIENTS }, async (_, w) => {
    for (let i = 0; Date.now() - started < LOAD_MS; i++) outcomes.push(await pull(agent, images[(w + i) % images.length]!, w + i, started))
  })
  await Promise.all([...workers, chaos])

  const bad = outcomes.filter((o) => o.result === 'bad')
  t.same(bad.slice(0, 5), [], `${outcomes.length} requests: every one either right or a clean failure (nothing hung: the workers finished)`)
  const failures = outcomes.filter((o) => o.result === 'clean failure')
  t.ok(failures.length > 0, `${failures.length} clean failures while the registry was down`)
  const outside = failures.filter((o) => o.end < stoppingAt || o.at > backAt + 1_000)
  t.same(outside.slice(0, 5), [], `failures only between the stop (${stoppingAt} ms) and just after the restart (${backAt} ms)`)
  const duringDown = outcomes.filter((o) => o.at > downAt && o.end < restartingAt)
  t.ok(
    duringDown.some((o) => o.what === 'manifest by digest' && o.result === 'ok'),
    'manifests by digest kept coming from the immutable cache while it was down',
  )
  t.ok(
    duringDown.filter((o) => o.what !== 'manifest by digest').every((o) => o.result === 'clean failure'),
    'everything that needs the upstream failed cleanly while it was down',
  )
  const lastSecond = outcomes.filter((o) => o.at > LOAD_MS - 1_500)
  t.ok(lastSecond.length > 0 && lastSecond.every((o) => o.result === 'ok'), `the last ${lastSecond.length} requests all succeeded`)

  await agent.close()
  const after = await idle()
  const toRegistry = (d: typeof after) => d.sockets.filter((s) => s.remotePort === registry.port)
  t.same(
    after.sockets.filter((s) => s.state === 'CLOSE_WAIT'),
    [],
    'no socket left in CLOSE_WAIT (closed by the peer, never by us)',
  )
  t.ok(toRegistry(after).length <= UPSTREAM_POOL, `${toRegistry(after).length} pooled connections to the registry, at most the pool size`)
  const others = (d: typeof after) => d.fds - toRegistry(d).length
  t.ok(
    others(after) <= others(baseline) + 2,
    `file descriptors other than the upstream pool: ${others(baseline)} before, ${others(after)} after (${baseline.fds} → ${after.fds} in all)`,
  )
  t.ok(child.running(), 'the proxy is still running')
})

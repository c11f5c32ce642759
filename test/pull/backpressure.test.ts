// A slow client on a large blob keeps trustpull's memory bounded: the proxy (a child process, as it
// runs in production) reads from the fast loopback registry only as fast as the client drains.
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const BLOB_CONTENT = 256 * 1024 * 1024
const MAX_GROWTH = 64 * 1024 * 1024
/** The client reads 1 MiB, then rests: about 16 MiB/s, far slower than the registry can send. */
const READ_BURST = 1024 * 1024
const REST_MS = 40
/** A long stall at the start: without backpressure the whole blob would pile up meanwhile. */
const INITIAL_STALL_MS = 3_000

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status)
  if (!kib) throw new Error(`no VmRSS for ${pid}`)
  return Number(kib[1]) * 1024
}

interface Download {
  status: number
  bytes: number
  digest: string
  complete: boolean
}

/** GETs a URL on its own connection, pausing the socket as `slow` says; hashes what arrives. */
function download(url: string, slow: boolean): Promise<Download> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      const hash = createHash('sha256')
      let bytes = 0
      let sinceRest = 0
      let stalled = false
      res.on('data', (chunk: Buffer) => {
        hash.update(chunk)
        bytes += chunk.length
        sinceRest += chunk.length
        if (!slow) return
        const rest = !stalled ? INITIAL_STALL_MS : sinceRest >= READ_BURST ? REST_MS : 0
        if (rest === 0) return
        stalled = true
        sinceRest = 0
        res.pause()
        setTimeout(() => res.resume(), rest)
      })
      res.once('error', reject)
      res.once('end', () => resolve({ status: res.statusCode ?? 0, bytes, digest: `sha256:${hash.digest('hex')}`, complete: res.complete }))
    })
    req.once('error', reject)
    req.end()
  })
}

t.test('a slow client on a 256 MiB blob keeps the proxy under 64 MiB of growth', async (t) => {
  const registry = await startRegistry(t)
  const small = await pushImage(registry.url, 'big/app', 'warm-up', { layerSize: 64 * 1024 * 1024 })
  const big = await pushImage(registry.url, 'big/app', 'v1', { layerSize: BLOB_CONTENT })
  const layer = big.layers[0]!

  const dir = await tempDir(t)
  const port = await freePort()
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(
    configFile,
    `listen: 127.0.0.1:${port}\nnoMatchPolicy: allow\nupstreams:\n  - name: big.test\n    url: ${registry.url}\n    default: true\nlog:\n  level: warn\n# The pass-through path is measured here; the store's own send path has bench/mirror.ts.\nstorage:\n  enabled: false\n`,
  )
  const proxyUrl = `http://127.0.0.1:${port}`
  const proxy = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    ready: async () => (await fetch(`${proxyUrl}/healthz`)).ok,
  })

  // Manifests first (the blobs are served only once a manifest lists them), then a 64 MiB warm-up
  // blob at full speed: V8's young generation grows to its working size (~60 MiB here) on the first
  // large stream, and that one-off growth belongs in the baseline, not in what is measured.
  for (const tag of ['warm-up', 'v1']) {
    const res = await fetch(`${proxyUrl}/v2/big/app/manifests/${tag}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    t.equal(res.status, 200, `manifest ${tag}`)
    await res.arrayBuffer()
  }
  const warm = await download(`${proxyUrl}/v2/big/app/blobs/${small.layerDigests[0]}`, false)
  t.equal(warm.digest, small.layerDigests[0], 'the warm-up blob arrives intact')
  await sleep(200)
  const baseline = await rssBytes(proxy.pid)

  let peak = baseline
  let sampling = true
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await rssBytes(proxy.pid).catch(() => peak))
      await sleep(100)
    }
  })()
  const started = Date.now()
  const got = await download(`${proxyUrl}/v2/big/app/blobs/${layer.digest}`, true).finally(() => {
    sampling = false
  })
  await sampler
  const seconds = (Date.now() - started) / 1000

  t.equal(got.status, 200)
  t.ok(got.complete, 'the body ended cleanly')
  t.equal(got.bytes, layer.size, 'every byte arrived')
  t.equal(got.digest, layer.digest, 'and they hash to the blob digest')
  const growth = peak - baseline
  t.ok(
    growth < MAX_GROWTH,
    `RSS grew ${(growth / 2 ** 20).toFixed(1)} MiB over a ${(baseline / 2 ** 20).toFixed(1)} MiB baseline while ${(layer.size / 2 ** 20).toFixed(0)} MiB streamed in ${seconds.toFixed(1)} s (limit ${MAX_GROWTH / 2 ** 20} MiB)`,
  )
  t.ok(proxy.running(), 'the proxy is still running')
})

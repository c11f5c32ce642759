// trustpull copy --from-file: a batch into a real docker-registry behind a fault proxy that counts
// every write. One copy fails (500 on a layer upload), the run is killed while another hangs; the
// rerun finishes everything and uploads only what had not arrived; a third run uploads nothing.
import t from 'tap'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair, signImage, verifyImage } from '../helpers/cosign.ts'
import { startFaultProxy, type SeenRequest } from '../helpers/fault-proxy.ts'
import { getManifest, listTags, pushImage, type PushedImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir, waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const NODE = join(REPO_ROOT, 'node_modules/.bin/node')
const MAIN = join(REPO_ROOT, 'src/cli/main.ts')
const trustpull = (args: string[]) => run(NODE, [MAIN, ...args], { timeoutMs: 50_000 })

interface Writes {
  posts: number
  blobPuts: number
  manifestPuts: number
}

/** Upload starts, blob uploads and manifest writes per destination repository. */
function writesTo(requests: SeenRequest[], repo: string): Writes {
  const mine = requests.filter((r) => r.path.startsWith(`/v2/${repo}/`))
  return {
    posts: mine.filter((r) => r.method === 'POST').length,
    blobPuts: mine.filter((r) => r.method === 'PUT' && r.path.includes('/blobs/uploads/')).length,
    manifestPuts: mine.filter((r) => r.method === 'PUT' && r.path.includes('/manifests/')).length,
  }
}

/** The digests of the blobs uploaded (PUT ...?digest=) to a repository. */
function uploadedDigests(requests: SeenRequest[], repo: string): string[] {
  return requests.filter((r) => r.method === 'PUT' && r.path.startsWith(`/v2/${repo}/blobs/uploads/`)).map((r) => new URL(r.url, 'http://x').searchParams.get('digest') ?? '')
}

/** Every blob of an image and of its `.sig` artifact, read from the source registry. */
async function blobsOf(registryUrl: string, image: PushedImage): Promise<string[]> {
  const sig = await getManifest(registryUrl, image.repo, `sha256-${image.digest.slice(7)}.sig`)
  const parsed = JSON.parse(Buffer.from(sig.bytes).toString()) as { config: { digest: string }; layers: { digest: string }[] }
  return [image.configDigest, ...image.layerDigests, parsed.config.digest, ...parsed.layers.map((l) => l.digest)]
}

interface JsonReport {
  results: { source: string; destination: string; status: string; error?: { code: string }; stats: { blobs: { copied: number; skipped: number } } }[]
  summary: { copied: number; refused: number; failed: number }
}

t.test('trustpull copy --from-file: concurrency, failures, interruption and resumption', async (t) => {
  const [outside, inside] = await Promise.all([startRegistry(t), startRegistry(t)])
  const front = await startFaultProxy(t, inside.url)
  const dir = await tempDir(t)
  const keys = await generateKeyPair(await tempDir(t))
  const images: Record<string, PushedImage> = {}
  for (const name of ['a', 'b', 'c', 'd']) {
    images[name] = await pushImage(outside.url, `org/${name}`, '1.0', { layers: 2, seed: `batch-${name}` })
    await signImage(`${outside.host}/org/${name}@${images[name].digest}`, keys.privateKeyPath)
  }
  const unsigned = await pushImage(outside.url, 'org/unsigned', '1.0', { seed: 'batch-unsigned' })
  const config = join(dir, 'gateway.yaml')
  await writeFile(
    config,
    JSON.stringify({
      upstreams: [
        { name: 'outside.test', url: outside.url },
        { name: 'inside.test', url: front.url },
      ],
      policies: [{ name: 'release', images: [{ glob: 'outside.test/**' }], authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }] }],
    }),
  )
  const list = join(dir, 'images.txt')
  await writeFile(list, ['# release 1.0', 'outside.test/org/a:1.0', 'outside.test/org/b:1.0', '', 'outside.test/org/c:1.0   # hangs', 'outside.test/org/d:1.0'].join('\n'))

  const bLayer = images.b!.layerDigests[1]!
  const cLayer = images.c!.layerDigests[0]!

  t.test('first run: a copied, b fails on a layer upload, the run is killed while c hangs', async (t) => {
    front.setFault((req) => {
      if (req.method !== 'PUT') return undefined
      if (req.url.includes(bLayer.slice(7))) return { kind: 'status', status: 500 }
      if (req.url.includes(cLayer.slice(7))) return { kind: 'hang' }
      return undefined
    })
    const child = spawn(NODE, [MAIN, 'copy', '--from-file', list, 'inside.test/mirror', '--config', config, '--concurrency', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => void child.kill('SIGKILL'))
    let stderr = ''
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    await waitFor(() => front.requests.some((r) => r.fault === 'hang'), { what: 'the upload of c to hang', timeoutMs: 30_000 })
    child.kill('SIGKILL')
    await exited

    t.match(stderr, /\[1\/4\] outside\.test\/org\/a:1\.0: verifying sha256:/, 'plain progress lines when stderr is not a terminal')
    t.match(stderr, /\[1\/4\] outside\.test\/org\/a:1\.0 → inside\.test\/mirror\/org\/a:1\.0: copied/)
    t.match(stderr, /\[2\/4\] outside\.test\/org\/b:1\.0 → inside\.test\/mirror\/org\/b:1\.0: FAILED DESTINATION_ERROR uploading blob sha256:[0-9a-f]+ .*HTTP 500/)
    t.equal((await getManifest(inside.url, 'mirror/org/a', '1.0')).digest, images.a!.digest)
    t.same(await listTags(inside.url, 'mirror/org/b'), [], 'b failed before any manifest: no tag')
    t.same(await listTags(inside.url, 'mirror/org/c'), [], 'c was interrupted before any manifest')
    t.same(writesTo(front.requests, 'mirror/org/d'), { posts: 0, blobPuts: 0, manifestPuts: 0 }, 'd never started')
    t.match(writesTo(front.requests, 'mirror/org/a'), { posts: 5, blobPuts: 5, manifestPuts: 2 }, 'a: config, 2 layers, .sig config and layer; .sig and 1.0')
  })

  t.test('second run: everything copied; what had arrived is not sent again', async (t) => {
    front.setFault(undefined)
    front.clearRequests()
    // What had arrived before the interruption, asked of the registry itself (not through the proxy).
    const missing: Record<string, string[]> = {}
    for (const name of ['a', 'b', 'c', 'd']) {
      missing[name] = []
      for (const digest of await blobsOf(outside.url, images[name]!)) {
        const head = await request(`${inside.url}/v2/mirror/org/${name}/blobs/${digest}`, { method: 'HEAD' })
        await head.body.dump()
        if (head.statusCode === 404) missing[name].push(digest)
      }
    }
    t.same(missing.a, [], 'a had arrived whole')
    t.ok(missing.b!.includes(bLayer) && missing.b!.length < 5, `b: the failed layer and what was not started after it (${missing.b!.length})`)
    t.ok(missing.c!.includes(cLayer), 'c: the layer that hung')
    t.equal(missing.d!.length, 5)

    const r = await trustpull(['copy', '--from-file', list, 'inside.test/mirror', '--config', config, '--concurrency', '3'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.match(r.stdout, /^SOURCE\s+DESTINATION\s+DIGEST\s+RESULT\s+BLOBS NEW\/PRESENT\s+BYTES\s+MANIFESTS\s+SIGNATURES\s+TIME$/m)
    t.match(r.stdout, /^outside\.test\/org\/a:1\.0\s+inside\.test\/mirror\/org\/a:1\.0\s+sha256:\S+\s+copied\s+0\/5\s+0 B\s+0\/1\s+0\/1\s/m)
    t.match(
      r.stdout,
      new RegExp(`^outside\\.test/org/b:1\\.0\\s+inside\\.test/mirror/org/b:1\\.0\\s+sha256:\\S+\\s+copied\\s+${missing.b!.length}/${5 - missing.b!.length}\\s`, 'm'),
    )
    t.match(r.stdout, /^4 copied, 0 refused, 0 failed;/m)

    t.same(writesTo(front.requests, 'mirror/org/a'), { posts: 0, blobPuts: 0, manifestPuts: 0 }, 'a: nothing written again')
    for (const name of ['b', 'c', 'd']) {
      const n = missing[name]!.length
      t.same(
        writesTo(front.requests, `mirror/org/${name}`),
        { posts: n, blobPuts: n, manifestPuts: 2 },
        `${name}: ${n} blobs that had not arrived, then the .sig and 1.0 manifests`,
      )
      t.same(uploadedDigests(front.requests, `mirror/org/${name}`).sort(), [...missing[name]!].sort(), `${name}: exactly the missing blobs`)
    }
    for (const name of ['a', 'b', 'c', 'd']) {
      const m = await getManifest(inside.url, `mirror/org/${name}`, '1.0')
      t.equal(m.digest, images[name]!.digest, `${name} inside`)
    }
    const v = await verifyImage(`${inside.host}/mirror/org/c:1.0`, keys.publicKeyPath)
    t.ok(v.ok, `cosign verify inside: ${v.stderr}`)
  })

  t.test('third run: nothing to write; --json gives the results and summary', async (t) => {
    front.clearRequests()
    const r = await trustpull(['copy', '--from-file', list, 'inside.test/mirror', '--config', config, '--json'])
    t.equal(r.code, 0, r.stderr)
    t.equal(r.stderr, '', 'no progress with --json')
    t.equal(front.requests.filter((q) => q.method === 'PUT' || q.method === 'POST').length, 0, 'no PUT, no POST')
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.summary, { copied: 4, refused: 0, failed: 0 })
    t.ok(report.results.every((x) => x.stats.blobs.copied === 0 && x.stats.blobs.skipped === 5))
  })

  t.test('a list with a refused image, an explicit destination and a bad line', async (t) => {
    const mixed = join(dir, 'mixed.txt')
    await writeFile(
      mixed,
      ['outside.test/org/unsigned:1.0', `outside.test/org/a:1.0 inside.test/elsewhere/a:stable`, 'outside.test/org/a@' + images.a!.digest, 'one two three'].join('\n'),
    )
    const bad = await trustpull(['copy', '--from-file', mixed, 'inside.test/mirror', '--config', config])
    t.equal(bad.code, 2, 'a malformed list is refused before anything runs')
    t.match(bad.stderr, /line 4: expected "SRC" or "SRC DST", found 3 fields/)

    await writeFile(mixed, ['outside.test/org/unsigned:1.0', `outside.test/org/a:1.0 inside.test/elsewhere/a:stable`, 'outside.test/org/a@' + images.a!.digest].join('\n'))
    front.clearRequests()
    const r = await trustpull(['copy', '--from-file', mixed, 'inside.test/mirror', '--config', config, '--json'])
    t.equal(r.code, 1, 'a refused image makes the batch exit 1')
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results, [
      { source: 'outside.test/org/unsigned:1.0', destination: 'inside.test/mirror/org/unsigned:1.0', status: 'refused', error: { code: 'REFUSED' } },
      { destination: 'inside.test/elsewhere/a:stable', status: 'copied' },
      { destination: `inside.test/mirror/org/a`, status: 'copied' },
    ])
    t.equal((await getManifest(inside.url, 'elsewhere/a', 'stable')).digest, images.a!.digest)
    t.same(writesTo(front.requests, 'mirror/org/unsigned'), { posts: 0, blobPuts: 0, manifestPuts: 0 }, `nothing of ${unsigned.digest} was sent`)
    t.same(await listTags(inside.url, 'mirror/org/unsigned'), [])
  })
})

// The kill switch and the verdict API against real parts: a docker-registry upstream, real cosign
// signatures, a real redis-server shared by two trustpull replicas, and the real CLI
// (`node src/cli/main.ts deny ...`). A digest (or key) denied through one replica is refused by the
// other (its latency is printed: the figure the README quotes), survives a restart, and serving
// resumes once removed. Node credentials and anonymous callers get 401/403 from the API. The
// file-backed denylist (no Redis) is test/admin/denylist-file.test.ts.
import t from 'tap'
import { join } from 'node:path'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { MediaTypes, pushImage } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir, waitFor } from '../helpers/proc.ts'
import { startRedis } from '../helpers/redis.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy, type TestProxy } from '../helpers/trustpull.ts'

const ADMIN_TOKEN = 'ops-token-0123456789abcdef'
const NODE_TOKEN = 'node-token-0123456789abcdef'
const CLI = join(REPO_ROOT, 'src/cli/main.ts')

/** The real CLI as an operator runs it, with the admin token in the environment. */
function trustpull(args: string[], token: string | null = ADMIN_TOKEN) {
  const env = { ...process.env }
  delete env.TRUSTPULL_TOKEN
  if (token) env.TRUSTPULL_TOKEN = token
  return run(process.execPath, [CLI, ...args], { env, cwd: REPO_ROOT, timeoutMs: 60_000 })
}

async function pull(proxy: TestProxy, repo: string, reference: string, token = NODE_TOKEN): Promise<{ status: number; message: string }> {
  const res = await request(`${proxy.url}/v2/${repo}/manifests/${reference}`, { headers: { accept: MediaTypes.ociManifest, authorization: `Bearer ${token}` } })
  const text = await res.body.text()
  const message = res.statusCode === 200 ? '' : ((JSON.parse(text) as { errors: { message: string }[] }).errors[0]?.message ?? '')
  return { status: res.statusCode, message }
}

/** The parts of API answers these tests read. */
interface ApiBody {
  verdicts: { digest: string; result: string; pulls: number }[]
  image: string
  pulls: number
  clients: Record<string, number>
  reasons: string[]
  policies: { name: string; authorities: { evidence: { code: string; where: { via: string }; signer: { keyHint?: string } }[] }[] }[]
  trustRoots: unknown[]
  checks: { redis: string }
}

async function api(proxy: TestProxy, path: string, token: string | null = ADMIN_TOKEN): Promise<{ status: number; body: ApiBody }> {
  const res = await request(`${proxy.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} })
  const text = await res.body.text()
  return { status: res.statusCode, body: (text.startsWith('{') ? JSON.parse(text) : {}) as ApiBody }
}

// Each CLI run and browser start costs seconds of start-up on a loaded 2-core machine.
t.setTimeout(480_000)

t.test('kill switch across two replicas sharing Redis', async (t) => {
  const registry = await startRegistry(t)
  const redis = await startRedis(t)
  const key = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'library/app', '1')
  const other = await pushImage(registry.url, 'library/other', '1', { seed: 'other' })
  const unsigned = await pushImage(registry.url, 'library/unsigned', '1', { seed: 'unsigned' })
  await Promise.all([
    signImage(`${registry.host}/library/app@${signed.digest}`, key.privateKeyPath),
    signImage(`${registry.host}/library/other@${other.digest}`, key.privateKeyPath),
  ])

  const config = hubConfig(registry.url, {
    cache: { url: redis.url },
    clients: {
      tokens: [
        { name: 'ops', token: ADMIN_TOKEN },
        { name: 'node-1', token: NODE_TOKEN },
      ],
      admins: ['ops'],
    },
    admin: { publicUrl: 'https://trustpull.example.test/' },
    policies: [{ name: 'library', images: [{ glob: 'index.docker.io/library/*' }], authorities: [{ key: { data: key.publicKeyPem } }] }],
  })
  const a = await startProxy(t, config)
  let b = await startProxy(t, config)

  // Both replicas have verified (and cached) the signed image before anything is denied.
  t.equal((await pull(a, 'library/app', '1')).status, 200)
  t.equal((await pull(b, 'library/app', '1')).status, 200)
  t.equal((await pull(b, 'library/app', '1')).status, 200, 'served from the verdict cache')
  t.equal((await pull(b, 'library/unsigned', '1')).status, 403)

  t.test('the API refuses anonymous callers (401) and node credentials (403)', async (t) => {
    for (const path of ['/api/v1/verdicts', '/api/v1/denylist', '/api/v1/health', '/ui/']) {
      t.equal((await api(a, path, null)).status, 401, `${path} anonymous`)
      t.equal((await api(a, path, NODE_TOKEN)).status, 403, `${path} node token`)
      t.equal((await api(a, path)).status, 200, `${path} admin`)
    }
    const cli = await trustpull(['deny', 'add', '--digest', signed.digest, '--server', a.url], NODE_TOKEN)
    t.equal(cli.code, 1, 'deny add with a node token is refused (exit 1)')
    t.match(cli.stderr, '403 DENIED')
  })

  t.test('the verdict API: denies first, one digest in full, shared by both replicas', async (t) => {
    await waitFor(async () => (await api(a, '/api/v1/verdicts')).body.verdicts?.length >= 2, { what: 'both verdicts in the shared history' })
    const list = (await api(a, '/api/v1/verdicts')).body.verdicts
    t.equal(list[0]!.result, 'deny', 'a deny comes first')
    t.equal(list[0]!.digest, unsigned.digest)
    t.same(
      (await api(a, '/api/v1/verdicts?result=allow')).body.verdicts.map((v) => v.digest),
      [signed.digest],
    )
    t.same(
      (await api(a, '/api/v1/verdicts?image=library/un*')).body.verdicts.map((v) => v.digest),
      [unsigned.digest],
    )
    t.equal((await api(a, '/api/v1/verdicts?limit=1')).body.verdicts.length, 1)
    t.equal((await api(a, '/api/v1/verdicts?result=maybe')).status, 400)

    await waitFor(async () => (await api(a, `/api/v1/verdicts/${signed.digest}`)).body.pulls === 3, { what: 'pull counts from both replicas' })
    const detail = (await api(a, `/api/v1/verdicts/${signed.digest}`)).body
    t.equal(detail.image, 'docker.io/library/app')
    t.same(detail.clients, { 'node-1': 3 }, 'who pulled it, counted across replicas')
    const evidence = detail.policies[0]!.authorities[0]!.evidence[0]!
    t.equal(evidence.code, 'VERIFIED')
    t.equal(evidence.where.via, 'sig-tag')
    t.ok(evidence.signer.keyHint, 'the signer (key hint) is named')
    const denied = (await api(a, `/api/v1/verdicts/${unsigned.digest}`)).body
    t.match(denied.reasons[0]!, 'no signatures found')
    t.equal((await api(a, '/api/v1/verdicts/sha256:nothex')).status, 400)
    t.equal((await api(a, `/api/v1/verdicts/sha256:${'0'.repeat(64)}`)).status, 404)
    t.equal((await api(a, '/api/v1/policies')).body.policies[0]!.name, 'library')
    t.ok(Array.isArray((await api(a, '/api/v1/trust-roots')).body.trustRoots))
    t.equal((await api(a, '/api/v1/health')).body.checks.redis, 'up')
  })

  t.test('deny add on one replica: the other refuses the digest, cached verdict or not', async (t) => {
    const started = performance.now()
    const add = await trustpull(['deny', 'add', '--digest', signed.digest, '--reason', 'CVE-2026-0001 in the base image', '--server', a.url])
    const added = performance.now()
    t.equal(add.code, 0, add.stderr)
    t.match(add.stdout, `denied digest ${signed.digest}`)
    let refused: { status: number; message: string } | undefined
    await waitFor(
      async () => {
        refused = await pull(b, 'library/app', '1')
        return refused.status === 403
      },
      { intervalMs: 5, what: 'the other replica to refuse the denied digest' },
    )
    const seen = performance.now()
    t.comment(`kill-switch latency across replicas: ${(seen - added).toFixed(1)} ms after deny add returned (${(seen - started).toFixed(0)} ms from starting the CLI)`)
    t.match(refused!.message, 'denylisted: digest')
    t.match(refused!.message, 'CVE-2026-0001 in the base image (added by ops')
    t.ok(refused!.message.endsWith(`(details: https://trustpull.example.test/ui/verdicts/${signed.digest})`), 'the 403 message ends with the link to the page')
    t.equal((await pull(a, 'library/app', '1')).status, 403, 'and the replica that took it')
    t.equal((await pull(b, 'library/other', '1')).status, 200, 'other images are still served')

    const list = await trustpull(['deny', 'list', '--server', b.url])
    t.equal(list.code, 0)
    t.match(list.stdout, `digest ${signed.digest}\tCVE-2026-0001 in the base image\tops`)
    const audit = a.logs.find((l) => l.audit === 'denylist')
    t.match(audit, { action: 'add', client: 'ops', entry: { digest: signed.digest } }, 'audited with who added it')
  })

  const replicas = t
  t.test('the denylist survives a restart', async (t) => {
    await b.running.close()
    b = await startProxy(replicas, config) // lives on after this subtest
    t.equal((await pull(b, 'library/app', '1')).status, 403)
  })

  t.test('deny remove restores serving on the other replica', async (t) => {
    const remove = await trustpull(['deny', 'remove', '--digest', signed.digest, '--server', a.url])
    t.equal(remove.code, 0, remove.stderr)
    const removed = performance.now()
    await waitFor(async () => (await pull(b, 'library/app', '1')).status === 200, { intervalMs: 5, what: 'serving to resume' })
    t.comment(`removal seen by the other replica ${(performance.now() - removed).toFixed(1)} ms after deny remove returned`)
    const again = await request(`${a.url}/api/v1/denylist`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ digest: signed.digest }),
    })
    t.equal(again.statusCode, 404, 'removing what is not there: 404 (the CLI exits 1)')
    await again.body.dump()
  })

  t.test('a denied key refuses every image it signed, from cached verdicts too', async (t) => {
    t.equal((await pull(b, 'library/other', '1')).status, 200)
    const add = await trustpull(['deny', 'add', '--key', key.publicKeyPath, '--reason', 'key leaked', '--server', a.url])
    t.equal(add.code, 0, add.stderr)
    await waitFor(async () => (await pull(b, 'library/other', '1')).status === 403, { intervalMs: 5, what: 'the key deny to reach the other replica' })
    const r = await pull(b, 'library/app', '1')
    t.equal(r.status, 403)
    t.match(r.message, 'signing key')
    t.match(r.message, 'key leaked')
    const remove = await trustpull(['deny', 'remove', '--key', key.publicKeyPath, '--server', b.url])
    t.equal(remove.code, 0, remove.stderr)
    await waitFor(async () => (await pull(a, 'library/other', '1')).status === 200, { what: 'the key to be served again' })
  })

  t.test('CLI usage errors exit 2, an unreachable server 3', async (t) => {
    t.equal((await trustpull(['deny', 'add', '--identity', 'https://issuer.test', '--server', a.url])).code, 2, '--identity needs two values')
    t.equal((await trustpull(['deny', 'add', '--digest', 'sha256:short', '--server', a.url])).code, 2, 'the server refuses a malformed digest (400)')
    t.equal((await trustpull(['deny', 'list', '--server', 'http://127.0.0.1:1'])).code, 3)
  })
})

// Herds: many concurrent first requests for one digest cost one verification and one upstream
// fetch per resource, whatever the verdict; every request is still answered and audited.
import t from 'tap'
import { request } from 'undici'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { startFaultProxy, type FaultChooser, type FaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const HERD = 100
const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'

type AuditLine = { audit: 'verdict'; digest: string; result: string; cached: boolean }
const audits = (proxy: TestProxy, digest: string): AuditLine[] => (proxy.logs as AuditLine[]).filter((l) => l.audit === 'verdict' && l.digest === digest)

/** How many times upstream was asked for each path. */
function fetchesPerResource(fault: FaultProxy): Map<string, number> {
  const counts = new Map<string, number>()
  for (const r of fault.requests) counts.set(`${r.method} ${r.path}`, (counts.get(`${r.method} ${r.path}`) ?? 0) + 1)
  return counts
}

/**
 * The image manifest answers after a pause, as a distant upstream would: every request of the herd
 * has arrived by then, even on a loaded machine. `also` adds faults for other paths.
 */
function slowManifest(digest: string, also: FaultChooser = () => undefined): FaultChooser {
  return (r) => (r.path.endsWith(`/manifests/${digest}`) ? { kind: 'delay', ms: 300 } : also(r))
}

async function herd(proxy: TestProxy, repo: string, ref: string): Promise<Map<number, number>> {
  const statuses = await Promise.all(
    Array.from({ length: HERD }, async () => {
      const res = await request(`${proxy.url}/v2/${repo}/manifests/${ref}`, { headers: { accept: ACCEPT } })
      await res.body.dump()
      return res.statusCode
    }),
  )
  const byStatus = new Map<number, number>()
  for (const s of statuses) byStatus.set(s, (byStatus.get(s) ?? 0) + 1)
  return byStatus
}

t.test(`${HERD} concurrent first requests for one digest`, async (t) => {
  const registry = await startRegistry(t)
  const keys = await generateKeyPair(await tempDir(t))
  const fault = await startFaultProxy(t, registry.url)
  const proxy = await startProxy(t, {
    upstreams: [{ name: 'docker.io', url: fault.url, default: true }],
    policies: [{ name: 'signed', images: [{ glob: '**' }], authorities: [{ name: 'key', key: { data: keys.publicKeyPem } }] }],
  })

  t.test('signed: one verification, one upstream fetch per resource, every request allowed and audited', async (t) => {
    const image = await pushImage(registry.url, 'herd/signed', 'v1')
    await signImage(`${registry.host}/herd/signed@${image.digest}`, keys.privateKeyPath)
    fault.clearRequests()
    fault.setFault(slowManifest(image.digest))

    t.same([...(await herd(proxy, 'herd/signed', image.digest))], [[200, HERD]])
    const lines = audits(proxy, image.digest)
    t.equal(lines.filter((l) => !l.cached).length, 1, 'exactly one verification')
    t.equal(lines.length, HERD, 'one audit line per request')
    const counts = fetchesPerResource(fault)
    t.equal(counts.get(`GET /v2/herd/signed/manifests/${image.digest}`), 1, 'the manifest was fetched once')
    t.equal(counts.get(`GET /v2/herd/signed/manifests/sha256-${image.digest.slice(7)}.sig`), 1, 'the signature was fetched once')
    t.same(
      [...counts.values()].filter((n) => n !== 1),
      [],
      `no resource was fetched twice: ${JSON.stringify([...counts])}`,
    )
  })

  t.test('unsigned: one verification, every request denied', async (t) => {
    const image = await pushImage(registry.url, 'herd/unsigned', 'v1')
    fault.clearRequests()
    fault.setFault(slowManifest(image.digest))

    t.same([...(await herd(proxy, 'herd/unsigned', image.digest))], [[403, HERD]])
    const lines = audits(proxy, image.digest)
    t.equal(lines.filter((l) => !l.cached).length, 1, 'exactly one verification')
    t.ok(lines.every((l) => l.result === 'deny'))
    t.same(
      [...fetchesPerResource(fault).values()].filter((n) => n !== 1),
      [],
      'no resource was fetched twice',
    )
  })

  t.test('signature unreadable upstream: one attempt shared by the herd, nothing cached, the next request recovers', async (t) => {
    const image = await pushImage(registry.url, 'herd/flaky', 'v1')
    await signImage(`${registry.host}/herd/flaky@${image.digest}`, keys.privateKeyPath)
    fault.clearRequests()
    fault.setFault(slowManifest(image.digest, (r) => (r.path.endsWith('.sig') ? { kind: 'status', status: 503 } : undefined)))

    const statuses = await herd(proxy, 'herd/flaky', image.digest)
    t.same(
      [...statuses.keys()].filter((s) => s < 500),
      [],
      `only 5xx answers: ${JSON.stringify([...statuses])}`,
    )
    t.equal(fetchesPerResource(fault).get(`GET /v2/herd/flaky/manifests/sha256-${image.digest.slice(7)}.sig`), 1, 'one attempt at the signature')
    t.same(new Set(audits(proxy, image.digest).map((l) => l.result)), new Set(['error']))

    fault.setFault(slowManifest(image.digest))
    t.same([...(await herd(proxy, 'herd/flaky', image.digest))], [[200, HERD]], 'after recovery the herd is allowed')
    t.equal(audits(proxy, image.digest).filter((l) => l.result === 'allow' && !l.cached).length, 1, 'verified once more, then shared')
  })
})

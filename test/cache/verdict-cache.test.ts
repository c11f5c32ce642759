// The verdict cache as a user sees it, counted with real parts: a fault proxy in front of a real
// docker-registry records every upstream request, the audit log says whether each verdict was
// verified or reused, and real cosign signatures are verified on every miss.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { parseConfig } from '../../src/config/load.ts'
import { generateKeyPair, signImage, type KeyPair } from '../helpers/cosign.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { deleteManifest, getManifest, pushImage, pushManifest, type PushedImage } from '../helpers/images.ts'
import { tempDir, waitFor, type Teardown } from '../helpers/proc.ts'
import { startRegistry, type Registry } from '../helpers/registry.ts'
import { startProxy, type TestProxy } from '../helpers/trustpull.ts'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'
const CONFORMANCE_ROOT = new URL('../fixtures/sigstore-conformance/bundle-verify/rekor2-happy-path/trusted_root.json', import.meta.url).pathname

type AuditLine = { audit: 'verdict'; digest: string; result: string; cached: boolean; reference: string }

function audits(proxy: TestProxy, digest?: string): AuditLine[] {
  return (proxy.logs.filter((l) => l.audit === 'verdict') as AuditLine[]).filter((l) => digest === undefined || l.digest === digest)
}

/** Verifications done for `digest` so far: audit lines that were not served from the cache. */
const verifications = (proxy: TestProxy, digest: string): number => audits(proxy, digest).filter((l) => !l.cached).length

/** Upstream requests that belong to discovering signatures (referrers, `sha256-…` tags, their blobs). */
function signatureRequests(fault: FaultProxy): string[] {
  return fault.requests.filter((r) => /\/referrers\/|\/manifests\/sha256-|\/blobs\//.test(r.path)).map((r) => `${r.method} ${r.path}`)
}

async function pull(proxy: TestProxy, repo: string, ref: string, method: 'GET' | 'HEAD' = 'GET'): Promise<{ status: number; digest: unknown; body: string }> {
  const res = await request(`${proxy.url}/v2/${repo}/manifests/${ref}`, { method, headers: { accept: ACCEPT } })
  return { status: res.statusCode, digest: res.headers['docker-content-digest'], body: await res.body.text() }
}

function keyPolicy(keys: KeyPair[]): Record<string, unknown> {
  return { name: 'signed', images: [{ glob: '**' }], authorities: keys.map((k, i) => ({ name: `key-${i}`, key: { data: k.publicKeyPem } })) }
}

interface World {
  registry: Registry
  fault: FaultProxy
  keys: KeyPair
  otherKeys: KeyPair
  signed(repo: string): Promise<PushedImage>
}

async function world(t: Teardown): Promise<World> {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const [keys, otherKeys] = await Promise.all([generateKeyPair(dir), tempDir(t).then(generateKeyPair)])
  const fault = await startFaultProxy(t, registry.url)
  return {
    registry,
    fault,
    keys,
    otherKeys,
    async signed(repo) {
      const image = await pushImage(registry.url, repo, 'v1', { seed: `${repo}-${Math.random()}` })
      await signImage(`${registry.host}/${repo}@${image.digest}`, keys.privateKeyPath)
      return image
    },
  }
}

t.test('a hit answers from the cache: no upstream call, no verification', async (t) => {
  const w = await world(t)
  const image = await w.signed('demo/hit')
  const proxy = await startProxy(t, { upstreams: [{ name: 'docker.io', url: w.fault.url, default: true }], policies: [keyPolicy([w.keys])] })

  const first = await pull(proxy, 'demo/hit', image.digest)
  t.equal(first.status, 200, first.body)
  t.equal(verifications(proxy, image.digest), 1, 'the first pull verifies')
  t.ok(
    w.fault.requests.some((r) => r.path.endsWith('.sig')),
    'and looks up the signature upstream',
  )

  w.fault.clearRequests()
  for (const method of ['GET', 'HEAD', 'GET'] as const) {
    const again = await pull(proxy, 'demo/hit', image.digest, method)
    t.equal(again.status, 200, method)
    t.equal(again.digest, image.digest)
  }
  t.same(w.fault.requests, [], 'no upstream request at all: manifest bytes and verdict are both cached')
  t.equal(verifications(proxy, image.digest), 1, 'no new verification')
  t.same(
    audits(proxy, image.digest).map((l) => l.cached),
    [false, true, true, true],
    'each hit is audited as cached',
  )
})

t.test('a policy change never reuses an old verdict', async (t) => {
  const w = await world(t)
  const image = await w.signed('demo/policy')
  const base = { upstreams: [{ name: 'docker.io', url: w.fault.url, default: true }] }
  const proxy = await startProxy(t, { ...base, policies: [keyPolicy([w.keys])] })
  const reload = (raw: Record<string, unknown>) => proxy.running.runtime.reload(parseConfig({ listen: '127.0.0.1:0', ...raw }))

  t.equal((await pull(proxy, 'demo/policy', image.digest)).status, 200)
  t.equal((await pull(proxy, 'demo/policy', image.digest)).status, 200)
  t.equal(verifications(proxy, image.digest), 1)

  // Another key only: the cached allow must not survive.
  await reload({ ...base, policies: [keyPolicy([w.otherKeys])] })
  w.fault.clearRequests()
  const denied = await pull(proxy, 'demo/policy', image.digest)
  t.equal(denied.status, 403, 'denied at once under the new policy')
  t.match(JSON.parse(denied.body), { errors: [{ code: 'DENIED' }] })
  t.equal(verifications(proxy, image.digest), 2, 'verified again')
  t.ok(signatureRequests(w.fault).length > 0, 'signatures were discovered again')

  // A change that still allows (a second key added) is a new fingerprint too.
  await reload({ ...base, policies: [keyPolicy([w.otherKeys, w.keys])] })
  t.equal((await pull(proxy, 'demo/policy', image.digest)).status, 200)
  t.equal(verifications(proxy, image.digest), 3)

  // Going back to the very first policy finds its verdict again: same policy, same fingerprint.
  await reload({ ...base, policies: [keyPolicy([w.keys])] })
  w.fault.clearRequests()
  t.equal((await pull(proxy, 'demo/policy', image.digest)).status, 200)
  t.equal(verifications(proxy, image.digest), 3, 'an identical policy reuses its verdict')
  t.same(signatureRequests(w.fault), [])
})

t.test('a trust-root change never reuses an old verdict', async (t) => {
  const w = await world(t)
  const image = await w.signed('demo/root')
  const dir = await tempDir(t)
  const rootFile = join(dir, 'trusted_root.json')
  const document = JSON.parse(await readFile(CONFORMANCE_ROOT, 'utf8')) as { tlogs: { publicKey: { validFor: { end?: string } } }[] }
  await writeFile(rootFile, JSON.stringify(document))
  // Signed with our key, or keylessly by corp CI under the corp root: the root's version is part
  // of the policy's fingerprint, so of every verdict key, even when the key authority decides.
  const keyless = { name: 'corp-ci', keyless: { trustRootRef: 'corp', identities: [{ issuer: 'https://ci.corp.example', subject: 'https://ci.corp.example/release' }] } }
  const raw = {
    upstreams: [{ name: 'docker.io', url: w.fault.url, default: true }],
    trustRoots: [{ name: 'corp', file: rootFile }],
    policies: [{ name: 'signed', images: [{ glob: '**' }], authorities: [keyless, { name: 'key', key: { data: w.keys.publicKeyPem } }] }],
  }
  const proxy = await startProxy(t, raw)
  const reload = () => proxy.running.runtime.reload(parseConfig({ listen: '127.0.0.1:0', ...raw }))

  t.equal((await pull(proxy, 'demo/root', image.digest)).status, 200)
  await reload()
  t.equal((await pull(proxy, 'demo/root', image.digest)).status, 200)
  t.equal(verifications(proxy, image.digest), 1, 'reloading an unchanged root keeps the verdict')

  // A rotation: the same root with one log key's validity ended.
  document.tlogs[0]!.publicKey.validFor.end = '2030-01-01T00:00:00Z'
  await writeFile(rootFile, JSON.stringify(document))
  await reload()
  w.fault.clearRequests()
  t.equal((await pull(proxy, 'demo/root', image.digest)).status, 200)
  t.equal(verifications(proxy, image.digest), 2, 'the changed root verifies again')
  t.ok(signatureRequests(w.fault).length > 0)
})

t.test('denies live shorter than allows; a signature that appears is honoured once the deny expires', async (t) => {
  const w = await world(t)
  const signed = await w.signed('demo/ttl')
  // Sign the second image, keep its signature aside and remove it: it is put back later in one PUT.
  const late = await w.signed('demo/late')
  const sigTag = `sha256-${late.digest.slice(7)}.sig`
  const signature = await getManifest(w.registry.url, 'demo/late', sigTag)
  await deleteManifest(w.registry.url, 'demo/late', signature.digest!)

  const proxy = await startProxy(t, {
    upstreams: [{ name: 'docker.io', url: w.fault.url, default: true }],
    cache: { allowTTL: '1h', denyTTL: '4s' },
    policies: [keyPolicy([w.keys])],
  })
  t.equal((await pull(proxy, 'demo/ttl', signed.digest)).status, 200)
  t.equal((await pull(proxy, 'demo/late', late.digest)).status, 403)
  t.equal((await pull(proxy, 'demo/late', late.digest)).status, 403)
  t.same(
    audits(proxy, late.digest).map((l) => [l.result, l.cached]),
    [
      ['deny', false],
      ['deny', true],
    ],
    'the deny is cached',
  )

  await pushManifest(w.registry.url, 'demo/late', sigTag, signature.bytes, signature.mediaType!)
  t.equal((await pull(proxy, 'demo/late', late.digest)).status, 403, 'while the deny lives the new signature is not looked at')
  t.equal(verifications(proxy, late.digest), 1)

  await waitFor(async () => (await pull(proxy, 'demo/late', late.digest)).status === 200, { what: 'the deny to expire', intervalMs: 250 })
  t.match(audits(proxy, late.digest).at(-1), { result: 'allow', cached: false }, 'allowed after a fresh verification')

  t.equal((await pull(proxy, 'demo/ttl', signed.digest)).status, 200)
  t.same(
    audits(proxy, signed.digest).map((l) => l.cached),
    [false, true],
    'the allow verified before the deny is still cached',
  )
})

t.test('a transient upstream failure during discovery is not cached as a deny', async (t) => {
  const w = await world(t)
  const image = await w.signed('demo/flaky')
  const proxy = await startProxy(t, { upstreams: [{ name: 'docker.io', url: w.fault.url, default: true }], policies: [keyPolicy([w.keys])] })

  w.fault.setFault((r) => (r.path.endsWith('.sig') ? { kind: 'status', status: 503 } : undefined))
  for (let i = 0; i < 2; i++) {
    const failed = await pull(proxy, 'demo/flaky', image.digest)
    t.ok(failed.status >= 502 && failed.status <= 504, `a 5xx while the signature cannot be read (got ${failed.status})`)
    t.notMatch(failed.body, /DENIED/, 'never a deny')
  }
  t.same(
    audits(proxy, image.digest).map((l) => [l.result, l.cached]),
    [
      ['error', false],
      ['error', false],
    ],
    'undecided, and not cached',
  )

  w.fault.setFault(undefined)
  const recovered = await pull(proxy, 'demo/flaky', image.digest)
  t.equal(recovered.status, 200, 'the first request after recovery is allowed')
  t.match(audits(proxy, image.digest).at(-1), { result: 'allow', cached: false })
})

t.test('tagTTL: 0 asks upstream for every tag request; a tag TTL answers from memory', async (t) => {
  const w = await world(t)
  const image = await w.signed('demo/tags')
  const upstreams = [{ name: 'docker.io', url: w.fault.url, default: true }]
  const mutable = await startProxy(t, { upstreams, policies: [keyPolicy([w.keys])] })
  const ttl = await startProxy(t, { upstreams, policies: [keyPolicy([w.keys])], cache: { tagTTL: '30s' } })
  const tagFetches = () => w.fault.requests.filter((r) => r.path === '/v2/demo/tags/manifests/v1').length

  for (const [name, proxy, expected] of [
    ['tagTTL 0', mutable, 3],
    ['tagTTL 30s', ttl, 1],
  ] as const) {
    w.fault.clearRequests()
    for (let i = 0; i < 3; i++) {
      const res = await pull(proxy, 'demo/tags', 'v1', 'HEAD')
      t.equal(res.status, 200, name)
      t.equal(res.digest, image.digest, name)
    }
    t.equal(tagFetches(), expected, `${name}: ${expected} upstream tag resolution(s) for 3 HEADs`)
  }

  // The tag moves upstream: tagTTL 0 sees it at once, a tag TTL keeps the old digest until it expires.
  const moved = await w.signed('demo/tags')
  t.equal((await pull(mutable, 'demo/tags', 'v1', 'HEAD')).digest, moved.digest, 'tagTTL 0 follows the moved tag')
  t.equal((await pull(ttl, 'demo/tags', 'v1', 'HEAD')).digest, image.digest, 'tagTTL 30s still answers the old digest')
})

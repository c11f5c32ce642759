// Tags always ask upstream, but a warm tag only asks whether it still names the digest served
// last time (If-None-Match → 304): no manifest transfer, same verified bytes; a moved tag is seen at once.
import t from 'tap'
import { request } from 'undici'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json'

t.test('warm tags are revalidated, not refetched', async (t) => {
  const registry = await startRegistry(t)
  const first = await pushImage(registry.url, 'org/app', 'stable', { seed: 'first' })
  const front = await startFaultProxy(t, registry.url)
  const proxy = await startProxy(t, { noMatchPolicy: 'allow', upstreams: [{ name: 'registry.test', url: front.url, default: true }] })
  const pull = async (method: 'GET' | 'HEAD' = 'GET') => {
    const res = await request(`${proxy.url}/v2/org/app/manifests/stable`, { method, headers: { accept: ACCEPT } })
    const body = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, digest: res.headers['docker-content-digest'], body }
  }
  const tagRequests = () => front.requests.filter((r) => r.path === '/v2/org/app/manifests/stable')

  const cold = await pull()
  t.equal(cold.digest, first.digest)
  t.equal(tagRequests()[0]?.headers['if-none-match'], undefined, 'the first request is a plain GET')

  for (const method of ['GET', 'HEAD'] as const) {
    const warm = await pull(method)
    t.equal(warm.status, 200, method)
    t.equal(warm.digest, first.digest, `${method}: the verified digest`)
    if (method === 'GET') t.same(warm.body, Buffer.from(first.manifest), 'the exact bytes pushed')
  }
  t.equal(tagRequests().length, 3, 'every request still asked upstream')
  t.ok(
    tagRequests()
      .slice(1)
      .every((r) => r.headers['if-none-match'] === `"${first.digest}"`),
    'warm requests only ask whether the digest changed',
  )

  const moved = await pushImage(registry.url, 'org/app', 'stable', { seed: 'moved' })
  const after = await pull()
  t.equal(after.digest, moved.digest, 'a moved tag is served at its new digest at once')
  t.same(after.body, Buffer.from(moved.manifest))
})

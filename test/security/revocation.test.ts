// A policy change takes effect at once for manifests and for the blobs they vouched for.
import t from 'tap'
import { request } from 'undici'
import { parseConfig } from '../../src/config/load.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { startProxy } from '../helpers/trustpull.ts'

t.test('revoking an image by reload stops its manifest and its blobs', async (t) => {
  const registry = await startRegistry(t)
  const keys = await generateKeyPair(await tempDir(t))
  const image = await pushImage(registry.url, 'org/app', '1')
  await signImage(`${registry.host}/org/app@${image.digest}`, keys.privateKeyPath)
  const config = (action?: 'fail') => ({
    listen: '127.0.0.1:0',
    upstreams: [{ name: 'registry.test', url: registry.url, default: true }],
    policies: [{ name: 'org', images: [{ glob: 'registry.test/org/**' }], authorities: [action ? { static: { action } } : { key: { data: keys.publicKeyPem } }] }],
  })
  const proxy = await startProxy(t, config())
  const get = (path: string) => request(`${proxy.url}/v2/org/app/${path}`)

  const m = await get(`manifests/${image.digest}`)
  t.equal(m.statusCode, 200)
  await m.body.dump()
  const b = await get(`blobs/${image.layerDigests[0]}`)
  t.equal(b.statusCode, 200, 'its blob is served while it is allowed')
  await b.body.dump()

  await proxy.running.runtime.reload(parseConfig(config('fail'), 'reloaded config'))
  const m2 = await get(`manifests/${image.digest}`)
  t.equal(m2.statusCode, 403, 'the manifest is refused under the new policy')
  await m2.body.dump()
  const b2 = await get(`blobs/${image.layerDigests[0]}`)
  t.equal(b2.statusCode, 403, 'and so is its blob, at once')
  t.match(await b2.body.json(), { errors: [{ code: 'DENIED' }] })
})

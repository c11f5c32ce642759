// Two real containerd nodes pulling a signed image through the mirror (hosts.toml, as a Kubernetes
// node is configured): the first pull fills the store, the second node's pull costs the upstream
// no blob request, and the audit lines say the layers came from the store.
import t from 'tap'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ctrPull, startContainerd, writeHostsToml } from '../helpers/containerd.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const registry = await startRegistry(t)
const upstream = await startFaultProxy(t, registry.url)
const keys = await generateKeyPair(await tempDir(t))
const image = await pushImage(registry.url, 'library/app', '1', { layers: 3, layerSize: 2 * 1024 * 1024, seed: 'ctr-mirror' })
await signImage(`${registry.host}/library/app@${image.digest}`, keys.privateKeyPath)
const proxy = await startProxy(
  t,
  hubConfig(upstream.url, { policies: [{ name: 'signed', images: [{ glob: 'docker.io/**' }], authorities: [{ key: { data: keys.publicKeyPem } }] }] }),
)
const hostsDir = await tempDir(t)
await writeHostsToml(hostsDir, 'docker.io', proxy.url)
const blobGets = () => upstream.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/')).length

t.test('node 1 pulls: the blobs come from the upstream and fill the store', async (t) => {
  const node = await startContainerd(t)
  const r = await ctrPull(node.socket, 'docker.io/library/app:1', { hostsDir })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `unpacking linux/amd64 ${image.digest}`)
  t.ok(blobGets() >= 4, 'config and layers were fetched upstream')
  await proxy.running.runtime.contentStore?.flush()
})

t.test('node 2 pulls the same image: 0 upstream blob requests, layers served from the store', async (t) => {
  upstream.clearRequests()
  const node = await startContainerd(t)
  const r = await ctrPull(node.socket, 'docker.io/library/app:1', { hostsDir })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stdout, `unpacking linux/amd64 ${image.digest}`)
  t.equal(blobGets(), 0, 'no blob request reached the upstream')
  for (const digest of image.layerDigests) {
    t.equal(proxy.logs.filter((l) => l.audit === 'blob' && l.digest === digest).at(-1)?.source, 'store', `layer ${digest.slice(7, 19)}: source store`)
  }
})

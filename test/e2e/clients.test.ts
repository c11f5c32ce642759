// Real clients pull through trustpull from a real docker-registry: skopeo (path form and explicit
// prefix) and containerd through a hosts.toml mirror (which sends `?ns=docker.io`).
import t from 'tap'
import { join } from 'node:path'
import { ctrImageNames, ctrPull, startContainerd, writeHostsToml } from '../helpers/containerd.ts'
import { pushImage, pushIndex } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy } from '../helpers/trustpull.ts'

t.test('skopeo and containerd pull through the proxy', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/web', '1.0', { layers: 2, layerSize: 64 * 1024 })
  const index = await pushIndex(registry.url, 'library/multi', '2.0', { layerSize: 8 * 1024 })
  const privateImage = await pushImage(registry.url, 'team/tool', 'v3', { mediaType: 'docker' })
  const proxy = await startProxy(t, {
    noMatchPolicy: 'allow',
    upstreams: [
      { name: 'docker.io', url: registry.url, default: true },
      { name: 'registry.corp.example', url: registry.url },
    ],
  })

  t.test('skopeo: path form, digests preserved', async (t) => {
    const dir = await tempDir(t)
    const r = await skopeoCopy(`${proxy.host}/library/web:1.0`, join(dir, 'web'))
    t.equal(r.code, 0, r.stderr)
    t.equal(r.digest, image.digest)
  })

  t.test('skopeo: a whole multi-platform index', async (t) => {
    const dir = await tempDir(t)
    const r = await skopeoCopy(`${proxy.host}/library/multi:2.0`, join(dir, 'multi'), { all: true })
    t.equal(r.code, 0, r.stderr)
    t.equal(r.digest, index.digest)
  })

  t.test('skopeo: explicit registry prefix', async (t) => {
    const dir = await tempDir(t)
    const r = await skopeoCopy(`${proxy.host}/registry.corp.example/team/tool:v3`, join(dir, 'tool'))
    t.equal(r.code, 0, r.stderr)
    t.equal(r.digest, privateImage.digest)
  })

  t.test('containerd: hosts.toml mirror for docker.io, requests carry ?ns=docker.io', async (t) => {
    const containerd = await startContainerd(t)
    const hostsDir = await tempDir(t)
    await writeHostsToml(hostsDir, 'docker.io', proxy.url)
    const single = await ctrPull(containerd.socket, 'docker.io/library/web:1.0', { hostsDir })
    t.equal(single.code, 0, single.stderr)
    const multi = await ctrPull(containerd.socket, 'docker.io/library/multi:2.0', { hostsDir, platform: 'linux/arm64' })
    t.equal(multi.code, 0, multi.stderr)
    t.same((await ctrImageNames(containerd.socket)).sort(), ['docker.io/library/multi:2.0', 'docker.io/library/web:1.0'])
    const urls = proxy.logs.filter((l) => l.msg === 'request').map((l) => String(l.url))
    t.ok(
      urls.some((u) => /^\/v2\/library\/web\/manifests\/1\.0\?ns=docker\.io$/.test(u)),
      'manifest by tag with ?ns=docker.io',
    )
    t.ok(
      urls.some((u) => /^\/v2\/library\/multi\/blobs\/sha256:[a-f0-9]{64}\?ns=docker\.io$/.test(u)),
      'blobs with ?ns=docker.io',
    )
  })
})

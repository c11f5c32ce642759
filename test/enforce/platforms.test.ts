// Indexes signed per platform only (as per-architecture CI pipelines sign them), pulled by real
// skopeo and containerd `ctr` through trustpull from a real docker-registry, with real cosign 2.5
// signatures on the platform manifests and none on the index:
// - requirePlatformSignatures: served when every platform passes; one unsigned platform refuses
//   the whole index, even to a client that wants only a signed platform;
// - servePassingPlatforms: the index is served for the platforms that pass (with a Warning naming
//   the refused one), and the refused platform, its manifest and its blobs, never are.
import t from 'tap'
import { join } from 'node:path'
import { request } from 'undici'
import { ctrPull, startContainerd, writeHostsToml } from '../helpers/containerd.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushIndex } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

t.test('indexes signed per platform only, through skopeo and ctr', async (t) => {
  const registry = await startRegistry(t)
  const work = await tempDir(t, 'trustpull-platforms-')
  const key = await generateKeyPair(await tempDir(t))
  const at = (repo: string, digest: string) => `${registry.host}/${repo}@${digest}`

  // Same content in three repositories, each signed its own way; no index is signed.
  const both = await pushIndex(registry.url, 'strict/both', '1', { layerSize: 4 * 1024 })
  const half = await pushIndex(registry.url, 'strict/half', '1', { layerSize: 4 * 1024 })
  const partial = await pushIndex(registry.url, 'partial/half', '1', { layerSize: 4 * 1024 })
  const [amd64, arm64] = [partial.children[0]!, partial.children[1]!]
  await Promise.all([
    ...both.children.map((c) => signImage(at('strict/both', c.digest), key.privateKeyPath)),
    signImage(at('strict/half', half.children[0]!.digest), key.privateKeyPath),
    signImage(at('partial/half', amd64.digest), key.privateKeyPath),
  ])

  const authorities = [{ key: { data: key.publicKeyPem } }]
  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      policies: [
        { name: 'strict', images: [{ glob: 'strict/*' }], requirePlatformSignatures: true, authorities },
        { name: 'partial', images: [{ glob: 'partial/*' }], requirePlatformSignatures: true, servePassingPlatforms: true, authorities },
      ],
    }),
  )
  const unescaped = (stderr: string) => stderr.replaceAll('\\"', '"')

  t.test('skopeo', async (t) => {
    t.test('copies an index whose every platform is signed, the index not', async (t) => {
      const r = await skopeoCopy(`${proxy.host}/strict/both:1`, join(work, 'sk-both'), { all: true })
      t.equal(r.code, 0, r.stderr)
      t.equal(r.digest, both.digest)
    })

    t.test('is refused an index with one unsigned platform, whole or one signed platform of it', async (t) => {
      for (const opts of [{ all: true }, { arch: 'amd64' }]) {
        const r = await skopeoCopy(`${proxy.host}/strict/half:1`, join(work, `sk-half-${Object.keys(opts)[0]}`), opts)
        t.not(r.code, 0)
        t.match(unescaped(r.stderr), `docker.io/strict/half@${half.digest} denied: policy "strict": platform linux/arm64: no signatures found`)
      }
    })

    t.test('servePassingPlatforms: copies the signed platform; --all fails on the refused one', async (t) => {
      const one = await skopeoCopy(`${proxy.host}/partial/half:1`, join(work, 'sk-partial-amd64'), { arch: 'amd64' })
      t.equal(one.code, 0, one.stderr)
      t.equal(one.digest, amd64.digest)
      const all = await skopeoCopy(`${proxy.host}/partial/half:1`, join(work, 'sk-partial-all'), { all: true })
      t.not(all.code, 0)
      t.equal(all.digest, undefined, 'nothing was written')
      t.match(unescaped(all.stderr), `docker.io/partial/half@${arm64.digest} denied: policy "partial": no signatures found`)
    })
  })

  t.test('servePassingPlatforms over HTTP: the index names the refused platform; its manifest and blobs are refused', async (t) => {
    const index = await request(`${proxy.url}/v2/partial/half/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    t.equal(index.statusCode, 200)
    await index.body.dump()
    t.match(String(index.headers.warning), `platform linux/arm64 (${arm64.digest}) refused: platform linux/arm64: no signatures found`)
    const child = await request(`${proxy.url}/v2/partial/half/manifests/${arm64.digest}`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    t.equal(child.statusCode, 403)
    await child.body.dump()
    for (const digest of [arm64.configDigest, ...arm64.layerDigests]) {
      const blob = await request(`${proxy.url}/v2/partial/half/blobs/${digest}`)
      t.equal(blob.statusCode, 403, `blob ${digest} of the refused platform`)
      await blob.body.dump()
    }
  })

  t.test('containerd (ctr) through a hosts.toml mirror', async (t) => {
    const containerd = await startContainerd(t)
    const hostsDir = await tempDir(t)
    await writeHostsToml(hostsDir, 'docker.io', proxy.url)
    const pull = (ref: string, platform: string) => ctrPull(containerd.socket, ref, { hostsDir, platform })

    t.test('pulls both platforms of an index signed per platform only', async (t) => {
      for (const [i, platform] of ['linux/amd64', 'linux/arm64'].entries()) {
        const r = await pull('docker.io/strict/both:1', platform)
        t.equal(r.code, 0, r.stderr)
        t.match(r.stdout, `unpacking ${platform} ${both.digest}`, platform)
        t.match(r.stdout, `manifest-${both.children[i]!.digest}: `, platform)
      }
    })

    t.test('is refused the index with one unsigned platform, even for the signed platform', async (t) => {
      const r = await pull('docker.io/strict/half:1', 'linux/amd64')
      t.not(r.code, 0)
      t.match(r.stderr, `403 Forbidden (DENIED: docker.io/strict/half@${half.digest} denied: policy "strict": platform linux/arm64`)
    })

    t.test('servePassingPlatforms: pulls the signed platform, is refused the other', async (t) => {
      const ok = await pull('docker.io/partial/half:1', 'linux/amd64')
      t.equal(ok.code, 0, ok.stderr)
      t.match(ok.stdout, `unpacking linux/amd64 ${partial.digest}`)
      const refused = await pull('docker.io/partial/half:1', 'linux/arm64')
      t.not(refused.code, 0)
      t.match(refused.stderr, `docker.io/partial/half@${arm64.digest} denied: policy "partial": no signatures found`)
    })
  })
})

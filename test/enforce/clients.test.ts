// Enforcement as a user sees it: real clients (skopeo, containerd `ctr` through a hosts.toml
// mirror) pull through trustpull from a real docker-registry, with real cosign 2.5 signatures.
// Signed images and indexes (signed at the index, or per platform under requirePlatformSignatures)
// are pulled; unsigned, wrongly signed and forged ones are refused, and the client's own error
// output carries trustpull's DENIED message. The shipped containerd hosts.toml leaves no fallback.
import t from 'tap'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { ctr, ctrImageNames, ctrPull, startContainerd, writeHostsToml } from '../helpers/containerd.ts'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { getManifest, MediaTypes, pushImage, pushIndex, pushManifest } from '../helpers/images.ts'
import { REPO_ROOT, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

t.test('real clients through trustpull, real signatures', async (t) => {
  // ---------------------------------------------------------------------------------------------
  // One registry, two keys and every image, shared by all subtests (signing costs ~0.3 s a call).

  const registry = await startRegistry(t)
  const work = await tempDir(t, 'trustpull-enforce-clients-')
  const [keyA, keyB] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
  const at = (repo: string, digest: string) => `${registry.host}/${repo}@${digest}`

  const signed = await pushImage(registry.url, 'library/signed', '1', { layers: 2, layerSize: 16 * 1024 })
  const unsigned = await pushImage(registry.url, 'library/unsigned', '1')
  const wrongKey = await pushImage(registry.url, 'library/wrongkey', '1')
  const forged = await pushImage(registry.url, 'library/forged', '1')
  const donor = await pushImage(registry.url, 'library/forged', 'donor', { seed: 'donor' })
  /** Signed at the index only: its platform manifests carry no signature of their own. */
  const indexSigned = await pushIndex(registry.url, 'library/multi', '1', { layerSize: 4 * 1024 })
  /** Signed per platform only: the index itself carries no signature. */
  const perPlatform = await pushIndex(registry.url, 'plat/multi', '1', { layerSize: 4 * 1024 })
  /** Index and linux/amd64 signed, linux/arm64 not. */
  const halfSigned = await pushIndex(registry.url, 'plat/half', '1', { layerSize: 4 * 1024 })

  await Promise.all([
    signImage(at('library/signed', signed.digest), keyA.privateKeyPath),
    signImage(at('library/wrongkey', wrongKey.digest), keyB.privateKeyPath),
    signImage(at('library/forged', donor.digest), keyA.privateKeyPath),
    signImage(at('library/multi', indexSigned.digest), keyA.privateKeyPath),
    ...perPlatform.children.map((c) => signImage(at('plat/multi', c.digest), keyA.privateKeyPath)),
    signImage(at('plat/half', halfSigned.digest), keyA.privateKeyPath),
    signImage(at('plat/half', halfSigned.children[0]!.digest), keyA.privateKeyPath),
  ])

  // The forgery: the donor's genuine signature manifest, copied onto the forged image's signature tag.
  const sigTag = (digest: string) => `${digest.replace(':', '-')}.sig`
  const donorSig = await getManifest(registry.url, 'library/forged', sigTag(donor.digest))
  t.equal(donorSig.status, 200, 'cosign wrote the donor signature under its .sig tag')
  await pushManifest(registry.url, 'library/forged', sigTag(forged.digest), donorSig.bytes, MediaTypes.ociManifest)

  const policies = (requirePlatformSignatures: boolean) => [
    { name: 'library', images: [{ glob: 'index.docker.io/library/*' }], authorities: [{ key: { data: keyA.publicKeyPem } }] },
    { name: 'platforms', images: [{ glob: 'plat/*' }], requirePlatformSignatures, authorities: [{ key: { data: keyA.publicKeyPem } }] },
  ]
  const proxy = await startProxy(t, hubConfig(registry.url, { policies: policies(true) }))

  /** The refusals every client must see: repository, digest and the policy's first reason. */
  const refused = [
    { what: 'an unsigned image', repo: 'library/unsigned', digest: unsigned.digest, reason: 'no signatures found' },
    { what: 'an image signed with another key', repo: 'library/wrongkey', digest: wrongKey.digest, reason: 'no signature verified (1 found)' },
    { what: "a forged signature (another image's .sig copied onto this digest)", repo: 'library/forged', digest: forged.digest, reason: 'no signature verified (1 found)' },
  ] as const

  /** skopeo (logrus) prints its fatal message with quotes escaped. */
  const unescaped = (stderr: string) => stderr.replaceAll('\\"', '"')
  /** trustpull's one-line DENIED message, as `${image}@${digest} denied: policy "<name>": <reason>`. */
  const deniedLine = (repo: string, digest: string, policy: string) => `docker.io/${repo}@${digest} denied: policy "${policy}": `

  // ---------------------------------------------------------------------------------------------

  t.test('skopeo', async (t) => {
    t.test('pulls a signed image, digest preserved', async (t) => {
      const r = await skopeoCopy(`${proxy.host}/library/signed:1`, join(work, 'sk-signed'))
      t.equal(r.code, 0, r.stderr)
      t.equal(r.digest, signed.digest)
    })

    t.test('pulls an index signed at the index only: whole index, and this platform alone', async (t) => {
      const all = await skopeoCopy(`${proxy.host}/library/multi:1`, join(work, 'sk-multi-all'), { all: true })
      t.equal(all.code, 0, all.stderr)
      t.equal(all.digest, indexSigned.digest)
      const one = await skopeoCopy(`${proxy.host}/library/multi:1`, join(work, 'sk-multi-arm'), { arch: 'arm64' })
      t.equal(one.code, 0, one.stderr)
      t.equal(one.digest, indexSigned.children[1]!.digest, "the linux/arm64 manifest, served on its index's word")
    })

    t.test('pulls an index signed per platform only, under requirePlatformSignatures', async (t) => {
      const r = await skopeoCopy(`${proxy.host}/plat/multi:1`, join(work, 'sk-plat'), { all: true })
      t.equal(r.code, 0, r.stderr)
      t.equal(r.digest, perPlatform.digest)
    })

    t.test('is refused an index with one unsigned platform under requirePlatformSignatures, though the index is signed', async (t) => {
      const r = await skopeoCopy(`${proxy.host}/plat/half:1`, join(work, 'sk-half'), { all: true })
      t.not(r.code, 0)
      t.match(unescaped(r.stderr), deniedLine('plat/half', halfSigned.digest, 'platforms'))
      t.match(r.stderr, 'platform linux/arm64: no signatures found')
    })

    for (const c of refused) {
      t.test(`is refused ${c.what}, and prints the DENIED message`, async (t) => {
        const r = await skopeoCopy(`${proxy.host}/${c.repo}:1`, join(work, `sk-${c.repo.replace('/', '-')}`))
        t.not(r.code, 0)
        t.equal(r.digest, undefined, 'nothing was written')
        // skopeo prints the OCI error as `denied: <message>` (its description of code DENIED).
        t.match(unescaped(r.stderr), `denied: ${deniedLine(c.repo, c.digest, 'library')}${c.reason}`)
      })
    }
  })

  t.test('the 403 body names every reason: the forgery is a digest mismatch, the other key untrusted', async (t) => {
    for (const [c, code] of [
      [refused[1], 'UNTRUSTED_KEY'],
      [refused[2], 'DIGEST_MISMATCH'],
    ] as const) {
      const res = await request(`${proxy.url}/v2/${c.repo}/manifests/1`, { headers: { accept: MediaTypes.ociManifest } })
      t.equal(res.statusCode, 403, c.repo)
      const body = (await res.body.json()) as { errors: { code: string; message: string; detail: { reasons: string[] } }[] }
      t.equal(body.errors[0]!.code, 'DENIED')
      t.match(body.errors[0]!.message, deniedLine(c.repo, c.digest, 'library'))
      t.match(body.errors[0]!.detail.reasons.join('\n'), code, `${c.repo}: ${code}`)
    }
  })

  t.test('requirePlatformSignatures is what admits the per-platform index: without it the unsigned index is refused', async (t) => {
    const strictIndex = await startProxy(t, hubConfig(registry.url, { policies: policies(false) }))
    const r = await skopeoCopy(`${strictIndex.host}/plat/multi:1`, join(work, 'sk-plat-index-only'), { all: true })
    t.not(r.code, 0)
    t.match(unescaped(r.stderr), `${deniedLine('plat/multi', perPlatform.digest, 'platforms')}no signatures found`)
  })

  t.test('containerd (ctr) through a hosts.toml mirror for docker.io', async (t) => {
    const containerd = await startContainerd(t)
    const hostsDir = await tempDir(t)
    await writeHostsToml(hostsDir, 'docker.io', proxy.url)
    const pull = (ref: string, platform?: string) => ctrPull(containerd.socket, ref, { hostsDir, platform })

    t.test('pulls a signed image', async (t) => {
      const r = await pull('docker.io/library/signed:1')
      t.equal(r.code, 0, r.stderr)
      t.match(r.stdout, `unpacking linux/amd64 ${signed.digest}`)
    })

    t.test('pulls an index signed at the index only, on both platforms', async (t) => {
      for (const [i, platform] of ['linux/amd64', 'linux/arm64'].entries()) {
        const r = await pull('docker.io/library/multi:1', platform)
        t.equal(r.code, 0, r.stderr)
        t.match(r.stdout, `unpacking ${platform} ${indexSigned.digest}`, platform)
        t.match(r.stdout, `manifest-${indexSigned.children[i]!.digest}: `, `${platform}: its manifest, served on the index's word`)
      }
    })

    t.test('pulls an index signed per platform only, under requirePlatformSignatures', async (t) => {
      const r = await pull('docker.io/plat/multi:1', 'linux/arm64')
      t.equal(r.code, 0, r.stderr)
      t.match(r.stdout, `unpacking linux/arm64 ${perPlatform.digest}`)
      t.match(r.stdout, `manifest-${perPlatform.children[1]!.digest}: `)
    })

    t.test('is refused an index with one unsigned platform, even when pulling the signed platform', async (t) => {
      const r = await pull('docker.io/plat/half:1', 'linux/amd64')
      t.not(r.code, 0)
      t.match(r.stderr, `403 Forbidden (DENIED: ${deniedLine('plat/half', halfSigned.digest, 'platforms')}`)
    })

    for (const c of refused) {
      t.test(`is refused ${c.what}, and prints the DENIED message`, async (t) => {
        const r = await pull(`docker.io/${c.repo}:1`)
        t.not(r.code, 0)
        // containerd 1.6 reports a refused HEAD by its status line: trustpull's reason phrase carries the message.
        t.match(r.stderr, `403 Forbidden (DENIED: ${deniedLine(c.repo, c.digest, 'library')}${c.reason}`)
      })
    }

    t.test('has exactly the allowed images', async (t) => {
      t.same((await ctrImageNames(containerd.socket)).sort(), ['docker.io/library/multi:1', 'docker.io/library/signed:1', 'docker.io/plat/multi:1'])
    })
  })

  t.test('the shipped deploy/containerd hosts.toml leaves containerd no way around a deny', async (t) => {
    const containerd = await startContainerd(t)
    const image = 'docker.io/library/unsigned:1'

    // The failure the shipped file exists to prevent: with the real registry as `server`, containerd
    // shrugs off trustpull's 403 and pulls the refused image straight from the registry.
    const bypassDir = await tempDir(t)
    await writeHostsToml(bypassDir, 'docker.io', proxy.url, { server: registry.url })
    const bypassed = await ctrPull(containerd.socket, image, { hostsDir: bypassDir })
    t.equal(bypassed.code, 0, `the registry has the image and containerd falls back to it: ${bypassed.stderr}`)
    t.match(bypassed.stdout, `unpacking linux/amd64 ${unsigned.digest}`)
    t.equal((await ctr(containerd.socket, ['images', 'rm', image])).code, 0)
    const content = await ctr(containerd.socket, ['content', 'ls', '-q'])
    for (const digest of [unsigned.digest, unsigned.configDigest, ...unsigned.layerDigests]) {
      const rm = await ctr(containerd.socket, ['content', 'rm', digest])
      t.equal(rm.code, 0, `forget ${digest} (${content.stdout.includes(digest) ? 'present' : 'absent'})`)
    }

    // The shipped file, with only the proxy URL substituted, as its README says.
    const shipped = await readFile(join(REPO_ROOT, 'deploy/containerd/certs.d/docker.io/hosts.toml'), 'utf8')
    const placeholder = 'http://trustpull.trustpull.svc:5000'
    t.match(shipped, `server = "${placeholder}"`, 'the example names trustpull as server')
    const hostsDir = await tempDir(t)
    await mkdir(join(hostsDir, 'docker.io'))
    await writeFile(join(hostsDir, 'docker.io', 'hosts.toml'), shipped.replaceAll(placeholder, proxy.url))

    const refusedPull = await ctrPull(containerd.socket, image, { hostsDir })
    t.not(refusedPull.code, 0, 'the pull fails')
    t.match(refusedPull.stderr, `403 Forbidden (DENIED: ${deniedLine('library/unsigned', unsigned.digest, 'library')}no signatures found`)
    t.notOk((await ctrImageNames(containerd.socket)).includes(image), 'containerd has no image')
    const after = await ctr(containerd.socket, ['content', 'ls', '-q'])
    for (const digest of unsigned.layerDigests) t.notMatch(after.stdout, digest, 'no layer of the refused image arrived')

    // ...and the same file serves a signed image.
    const allowed = await ctrPull(containerd.socket, 'docker.io/library/signed:1', { hostsDir })
    t.equal(allowed.code, 0, allowed.stderr)
  })
})

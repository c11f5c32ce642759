// The sneakernet round trip: outside registry → oci-archive (verified on the way out) → outside
// registry stopped → archive → inside registry, verified again from the signatures inside the
// archive with an offline trust root (trusted_root.json of a @sigstore/mock Fulcio/Rekor/TSA) and
// the Rekor SETs and timestamps the signatures carry. Key-based (cosign 2.5) and keyless
// signatures, a legacy attestation and a bundle attestation; then real cosign and trustpull
// verify against the copies inside. Archives that are unsigned or tampered with go nowhere.
import t from 'tap'
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { create, extract } from 'tar'
import { request } from 'undici'
import { attest, generateKeyPair, signImage, verifyImage, writeSlsaPredicate } from '../helpers/cosign.ts'
import { getManifest, listTags, pushImage, pushIndex } from '../helpers/images.ts'
import { MOCK_ISSUER, MOCK_SUBJECT, pushKeylessAttestation, pushKeylessSignature, startMockSigstore } from '../helpers/mock-sigstore.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { SKOPEO_BIN } from '../helpers/skopeo.ts'

const trustpull = (args: string[]) => run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 50_000 })
const SLSA1 = 'https://slsa.dev/provenance/v1'

async function catalog(registryUrl: string): Promise<string[]> {
  const res = await request(`${registryUrl}/v2/_catalog`)
  return ((await res.body.json()) as { repositories: string[] }).repositories
}

interface JsonReport {
  results: {
    status: string
    digest?: string
    error?: { code: string; message: string }
    verdict?: { result: string; signers: { subject?: string; keyHint?: string }[] }
    stats: { artifacts: { copied: number } }
  }[]
}

t.test('air gap: registry → oci-archive → (outside stopped) → registry, verified offline', async (t) => {
  const [outside, inside] = await Promise.all([startRegistry(t), startRegistry(t)])
  const sigstore = await startMockSigstore(t)
  const dir = await tempDir(t)
  const carry = join(dir, 'usb-stick')
  await mkdir(carry)
  const keys = await generateKeyPair(await tempDir(t))
  const trustedRoot = join(dir, 'trusted_root.json')
  await writeFile(trustedRoot, JSON.stringify(sigstore.trustedRoot))

  // Key-signed (cosign) image with a legacy attestation.
  const app = await pushImage(outside.url, 'org/app', '1.0', { layers: 2 })
  await signImage(`${outside.host}/org/app@${app.digest}`, keys.privateKeyPath)
  await attest(`${outside.host}/org/app@${app.digest}`, keys.privateKeyPath, await writeSlsaPredicate(dir, 'https://builder.example'), 'slsaprovenance')
  // Keyless multi-arch index: the index and each platform signed, the index attested with a bundle.
  const multi = await pushIndex(outside.url, 'org/multi', '2.0')
  for (const m of [{ mediaType: multi.mediaType, digest: multi.digest, size: multi.size }, ...multi.children.map((c) => c.descriptor)]) {
    await pushKeylessSignature(sigstore, outside.url, 'org/multi', `${outside.host}/org/multi`, { mediaType: m.mediaType, digest: m.digest, size: m.size })
  }
  await pushKeylessAttestation(sigstore, outside.url, 'org/multi', { mediaType: multi.mediaType, digest: multi.digest, size: multi.size }, SLSA1, {
    buildDefinition: { buildType: 'https://builder.example/v1' },
  })
  const unsigned = await pushImage(outside.url, 'org/unsigned', '1.0', { seed: 'archive-unsigned' })

  const keyless = { name: 'release-workflow', keyless: { trustRootRef: 'corp', identities: [{ issuer: MOCK_ISSUER, subject: MOCK_SUBJECT }] } }
  const policies = (registry: string) => [
    { name: 'app', images: [{ glob: `${registry}/org/app` }], authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }] },
    {
      name: 'multi',
      images: [{ glob: `${registry}/org/multi` }],
      authorities: [
        {
          ...keyless,
          attestations: [
            { name: 'provenance', predicateType: 'slsaprovenance1', policy: { type: 'cel', data: 'predicate.buildDefinition.buildType == "https://builder.example/v1"' } },
          ],
        },
      ],
    },
  ]
  const exportConfig = join(dir, 'export.yaml')
  await writeFile(
    exportConfig,
    JSON.stringify({ upstreams: [{ name: 'outside.test', url: outside.url }], trustRoots: [{ name: 'corp', file: trustedRoot }], policies: policies('outside.test') }),
  )
  // Inside: the internal registry only, the trust root from a file; nothing else to reach.
  const importConfig = join(dir, 'import.yaml')
  await writeFile(
    importConfig,
    JSON.stringify({ upstreams: [{ name: 'inside.test', url: inside.url, default: true }], trustRoots: [{ name: 'corp', file: trustedRoot }], policies: policies('inside.test') }),
  )

  t.test('export: verified images go into archives with their signatures', async (t) => {
    const r = await trustpull([
      'copy',
      '--from-file',
      await listFile(dir, ['outside.test/org/app:1.0', 'outside.test/org/multi:2.0']),
      `oci-archive:${carry}`,
      '--config',
      exportConfig,
      '--json',
    ])
    t.equal(r.code, 0, r.stderr + r.stdout)
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results, [
      { status: 'copied', digest: app.digest, verdict: { result: 'allow' }, stats: { artifacts: { copied: 2 } } },
      { status: 'copied', digest: multi.digest, verdict: { result: 'allow', signers: [{ subject: MOCK_SUBJECT }] }, stats: { artifacts: { copied: 5 } } },
    ])
    t.same((await readdir(join(carry, 'org'))).sort(), ['app.tar', 'multi.tar'], 'one archive per repository under the prefix')
    const inspect = await run(SKOPEO_BIN, ['--insecure-policy', 'inspect', '--raw', `oci-archive:${join(carry, 'org/app.tar')}:1.0`])
    t.equal(inspect.code, 0, inspect.stderr)
    t.equal(inspect.stdout, Buffer.from(app.manifest).toString(), 'skopeo reads the archive: the same manifest bytes')

    const refused = await trustpull(['copy', 'outside.test/org/unsigned:1.0', `oci-archive:${join(carry, 'unsigned.tar')}`, '--config', exportConfig])
    t.equal(refused.code, 1)
    t.match(refused.stderr, /no policy matches outside\.test\/org\/unsigned \(noMatchPolicy: deny\)/)
    t.notOk((await readdir(carry)).includes('unsigned.tar'), 'no archive written for a refused image')
  })

  t.test('import with the outside registry stopped: verified offline, then pushed', async (t) => {
    await outside.stop()
    const r = await trustpull(['copy', `oci-archive:${join(carry, 'org/app.tar')}`, 'inside.test/org/app', '--config', importConfig, '--json'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.match(JSON.parse(r.stdout), { results: [{ status: 'copied', digest: app.digest, verdict: { result: 'allow' } }] })
    t.equal((await getManifest(inside.url, 'org/app', '1.0')).digest, app.digest, 'the tag in the archive is kept')

    const m = await trustpull(['copy', `oci-archive:${join(carry, 'org/multi.tar')}:2.0`, 'inside.test/org/multi:2.0', '--config', importConfig, '--json'])
    t.equal(m.code, 0, m.stderr + m.stdout)
    const report = JSON.parse(m.stdout) as JsonReport
    t.match(report.results[0], { status: 'copied', digest: multi.digest, verdict: { result: 'allow', signers: [{ subject: MOCK_SUBJECT }] } })
    for (const child of multi.children) t.equal((await getManifest(inside.url, 'org/multi', child.digest)).status, 200)
  })

  t.test('inside, the copies verify again: cosign verify --key and trustpull verify (keyless, offline root)', async (t) => {
    const cosign = await verifyImage(`${inside.host}/org/app:1.0`, keys.publicKeyPath)
    t.ok(cosign.ok, `cosign verify inside: ${cosign.stderr}`)
    for (const image of ['inside.test/org/app:1.0', 'inside.test/org/multi:2.0']) {
      const v = await trustpull(['verify', image, '--config', importConfig])
      t.equal(v.code, 0, v.stdout + v.stderr)
      t.match(v.stdout, /: ALLOW/)
    }
    const v = await trustpull(['verify', 'inside.test/org/multi:2.0', '--config', importConfig])
    t.match(v.stdout, /✔ attestation sigstore-bundle via fallback-tag/)
    t.match(v.stdout, new RegExp(`signed by ${MOCK_SUBJECT.replace(/[.?/]/g, '\\$&')}`))
  })

  t.test('an archive of an unsigned image (written by skopeo) is refused; nothing of it lands', async (t) => {
    await outside.restart()
    const file = join(dir, 'unsigned.tar')
    const s = await run(SKOPEO_BIN, [
      '--insecure-policy',
      'copy',
      '--src-tls-verify=false',
      '--preserve-digests',
      `docker://${outside.host}/org/unsigned:1.0`,
      `oci-archive:${file}:1.0`,
    ])
    t.equal(s.code, 0, s.stderr)
    await outside.stop()
    const r = await trustpull(['copy', `oci-archive:${file}`, 'inside.test/org/app-unsigned', '--config', importConfig, '--as', 'inside.test/org/app'])
    t.equal(r.code, 1, 'refused even when named like a signed repository')
    t.match(r.stderr, `inside.test/org/app@${unsigned.digest} is not verified: policy "app": no signatures found`)
    t.notOk((await catalog(inside.url)).includes('org/app-unsigned'))
    const head = await request(`${inside.url}/v2/org/app/blobs/${unsigned.layerDigests[0]}`, { method: 'HEAD' })
    t.equal(head.statusCode, 404)
  })

  t.test('a tampered archive: the altered layer is caught by digest and never lands; no tag is written', async (t) => {
    const work = join(dir, 'tamper')
    await mkdir(work)
    await extract({ file: join(carry, 'org/app.tar'), cwd: work })
    const layer = join(work, 'blobs/sha256', app.layerDigests[1]!.slice(7))
    const bytes = await readFile(layer)
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff
    await writeFile(layer, bytes)
    const file = join(dir, 'tampered.tar')
    await create({ file, cwd: work, portable: true }, ['oci-layout', 'index.json', 'blobs'])
    const r = await trustpull(['copy', `oci-archive:${file}`, 'inside.test/org/tampered', '--config', importConfig, '--as', 'inside.test/org/app', '--json'])
    t.equal(r.code, 3)
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results[0], {
      status: 'failed',
      verdict: { result: 'allow' },
      error: { code: 'SOURCE_ERROR', message: new RegExp(`blob ${app.layerDigests[1]!} from the source: blob bytes hash to sha256:`) },
    })
    t.same(await listTags(inside.url, 'org/tampered'), [], 'no tag: the image is incomplete')
    const head = await request(`${inside.url}/v2/org/tampered/blobs/${app.layerDigests[1]}`, { method: 'HEAD' })
    t.equal(head.statusCode, 404, 'the altered layer is not there')

    // A manifest swapped for another one in the archive: refused when read, before any verdict.
    await rm(work, { recursive: true })
    await mkdir(work)
    await extract({ file: join(carry, 'org/app.tar'), cwd: work })
    const manifestFile = join(work, 'blobs/sha256', app.digest.slice(7))
    await writeFile(manifestFile, Buffer.from(app.manifest).toString().replace('"schemaVersion":2', '"schemaVersion":2 '))
    await create({ file, cwd: work, portable: true }, ['oci-layout', 'index.json', 'blobs'])
    const swapped = await trustpull(['copy', `oci-archive:${file}`, 'inside.test/org/swapped', '--config', importConfig, '--as', 'inside.test/org/app'])
    t.equal(swapped.code, 3)
    t.match(swapped.stderr, /does not match its digest; the layout is corrupt or tampered with/)
    t.notOk((await catalog(inside.url)).includes('org/swapped'))
  })

  t.test('oci: directories work the same way; a layout-to-layout copy needs --as', async (t) => {
    const layout = join(dir, 'layout')
    const r = await trustpull(['copy', `oci-archive:${join(carry, 'org/app.tar')}`, `oci:${layout}`, '--config', importConfig, '--as', 'inside.test/org/app'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] }
    t.same(index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name']).sort(), [
      '1.0',
      `sha256-${app.digest.slice(7)}.att`,
      `sha256-${app.digest.slice(7)}.sig`,
    ])
    const noName = await trustpull(['copy', `oci:${layout}:1.0`, `oci:${layout}-2`, '--config', importConfig])
    t.equal(noName.code, 1)
    t.match(noName.stderr, /give --as REGISTRY\/REPOSITORY/)
    const back = await trustpull(['copy', `oci:${layout}:1.0`, 'inside.test/org/from-layout', '--config', importConfig, '--as', 'inside.test/org/app'])
    t.equal(back.code, 0, back.stderr + back.stdout)
    t.equal((await getManifest(inside.url, 'org/from-layout', '1.0')).digest, app.digest)
  })
})

async function listFile(dir: string, lines: string[]): Promise<string> {
  const file = join(dir, `list-${lines.length}.txt`)
  await writeFile(file, lines.join('\n'))
  return file
}

// trustpull copy between two real docker-registry instances (outside and inside): signed images
// cross with their signatures and attestations, digests unchanged, and verify again inside with
// real cosign 2.5 and with trustpull verify; an unsigned image is refused and nothing of it lands.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { attest, generateKeyPair, signImage, verifyAttestation, verifyImage, writeSlsaPredicate } from '../helpers/cosign.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { getManifest, listTags, pushImage, pushIndex } from '../helpers/images.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const trustpull = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 50_000, env })

async function catalog(registryUrl: string): Promise<string[]> {
  const res = await request(`${registryUrl}/v2/_catalog`)
  return ((await res.body.json()) as { repositories: string[] }).repositories
}

const digestTag = (digest: string, suffix = '') => `sha256-${digest.slice(7)}${suffix}`

interface JsonReport {
  results: {
    status: string
    digest?: string
    error?: { code: string; message: string }
    stats: { blobs: { copied: number; skipped: number }; manifests: { copied: number; skipped: number }; artifacts: { copied: number; skipped: number } }
    verdict?: { result: string }
  }[]
  summary: { copied: number; refused: number; failed: number }
  exitCode: number
}

t.test('trustpull copy registry → registry', async (t) => {
  const [outside, inside] = await Promise.all([startRegistry(t), startRegistry(t)])
  const dir = await tempDir(t)
  const keys = await generateKeyPair(await tempDir(t))
  const other = await generateKeyPair(await tempDir(t))
  const predicate = await writeSlsaPredicate(dir, 'https://builder.example/release')

  const single = await pushImage(outside.url, 'org/app', '1.0', { layers: 2 })
  await signImage(`${outside.host}/org/app@${single.digest}`, keys.privateKeyPath)
  await attest(`${outside.host}/org/app@${single.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance')

  const multi = await pushIndex(outside.url, 'org/multi', '2.0')
  await signImage(`${outside.host}/org/multi@${multi.digest}`, keys.privateKeyPath, { recursive: true })
  await attest(`${outside.host}/org/multi@${multi.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance', { newBundleFormat: true })

  // Signatures kept in another repository (cosign's COSIGN_REPOSITORY, policy source.oci).
  const split = await pushImage(outside.url, 'split/app', '1.0', { seed: 'split' })
  process.env.COSIGN_REPOSITORY = `${outside.host}/split/signatures`
  try {
    await signImage(`${outside.host}/split/app@${split.digest}`, keys.privateKeyPath)
  } finally {
    delete process.env.COSIGN_REPOSITORY
  }
  // Found through an OCI 1.1 referrers API: a front answers it (docker-registry has none) and hides the fallback tag.
  const refs = await pushImage(outside.url, 'org/refs', '1.0', { seed: 'refs' })
  await signImage(`${outside.host}/org/refs@${refs.digest}`, keys.privateKeyPath)
  await attest(`${outside.host}/org/refs@${refs.digest}`, keys.privateKeyPath, predicate, 'slsaprovenance', { newBundleFormat: true })
  const fallback = await getManifest(outside.url, 'org/refs', digestTag(refs.digest))
  const referrers = JSON.parse(Buffer.from(fallback.bytes).toString()) as { manifests: { digest: string; artifactType?: string }[] }
  for (const entry of referrers.manifests) entry.artifactType = 'application/vnd.dev.sigstore.bundle.v0.3+json'
  const withApi = await startFaultProxy(t, outside.url, (req) => {
    if (req.method === 'GET' && req.path === `/v2/org/refs/referrers/${refs.digest}`) {
      return { kind: 'status', status: 200, body: JSON.stringify(referrers), headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' } }
    }
    if (req.path === `/v2/org/refs/manifests/${digestTag(refs.digest)}`) return { kind: 'status', status: 404 }
    return undefined
  })
  // A destination that says it indexed a subject itself (OCI-Subject), as registries with the API do.
  const insideWithApi = await startFaultProxy(t, inside.url, (req) =>
    req.method === 'PUT' && req.path.includes('/manifests/sha256:') ? { kind: 'headers', set: { 'oci-subject': refs.digest } } : undefined,
  )

  // Signature discovery that fails upstream (503 on the .sig tag): undecided, so nothing crosses.
  const flaky = await startFaultProxy(t, outside.url, (req) => (req.path.endsWith(digestTag(single.digest, '.sig')) ? { kind: 'status', status: 503 } : undefined))

  const unsigned = await pushImage(outside.url, 'org/unsigned', '1.0', { seed: 'unsigned' })
  const wronglySigned = await pushImage(outside.url, 'org/other', '1.0', { seed: 'other' })
  await signImage(`${outside.host}/org/other@${wronglySigned.digest}`, other.privateKeyPath)

  const config = join(dir, 'gateway.yaml')
  await writeFile(
    config,
    JSON.stringify({
      upstreams: [
        { name: 'outside.test', url: outside.url },
        { name: 'inside.test', url: inside.url },
        { name: 'api.outside.test', url: withApi.url },
        { name: 'api.inside.test', url: insideWithApi.url },
        { name: 'flaky.outside.test', url: flaky.url },
      ],
      policies: [
        {
          name: 'split',
          images: [{ glob: 'outside.test/split/app' }],
          authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath }, source: [{ oci: 'outside.test/split/signatures' }] }],
        },
        {
          name: 'release',
          images: [{ glob: 'outside.test/org/**' }, { glob: 'api.outside.test/**' }, { glob: 'flaky.outside.test/**' }],
          authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }],
        },
        { name: 'trial', mode: 'warn', images: [{ glob: 'outside.test/trial/**' }], authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }] },
      ],
    }),
  )
  // Inside: the registry filled by the gateway is the proxy's upstream; it wants the signature and the provenance.
  const insideConfig = join(dir, 'inside.yaml')
  await writeFile(
    insideConfig,
    JSON.stringify({
      upstreams: [{ name: 'inside.test', url: inside.url, default: true }],
      policies: [
        { name: 'signed', images: [{ glob: 'inside.test/**' }], authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath } }] },
        {
          name: 'provenance',
          images: [{ glob: 'inside.test/**' }],
          authorities: [{ name: 'release-key', key: { file: keys.publicKeyPath }, attestations: [{ name: 'slsa', predicateType: 'slsaprovenance' }] }],
        },
      ],
    }),
  )

  t.test('a signed single image crosses with its signature and attestation, digest unchanged', async (t) => {
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/org/app:1.0', '--config', config, '--json'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results[0], { status: 'copied', digest: single.digest, verdict: { result: 'allow' } })
    t.match(
      report.results[0]!.stats,
      { blobs: { copied: 3 + 4, skipped: 0 }, manifests: { copied: 1 }, artifacts: { copied: 2 } },
      'config, 2 layers, and config + layer of .sig and .att',
    )

    const copied = await getManifest(inside.url, 'org/app', '1.0')
    t.equal(copied.digest, single.digest)
    t.same(Buffer.from(copied.bytes), Buffer.from(single.manifest), 'the very bytes that were verified')
    t.same((await listTags(inside.url, 'org/app')).sort(), ['1.0', digestTag(single.digest, '.att'), digestTag(single.digest, '.sig')].sort())
    for (const layer of single.layerDigests) {
      const head = await request(`${inside.url}/v2/org/app/blobs/${layer}`, { method: 'HEAD' })
      t.equal(head.statusCode, 200, `layer ${layer} is inside`)
    }

    const cosignVerify = await verifyImage(`${inside.host}/org/app:1.0`, keys.publicKeyPath)
    t.ok(cosignVerify.ok, `cosign verify inside: ${cosignVerify.stderr}`)
    const cosignAttest = await verifyAttestation(`${inside.host}/org/app:1.0`, keys.publicKeyPath, 'slsaprovenance')
    t.ok(cosignAttest.ok, `cosign verify-attestation inside: ${cosignAttest.stderr}`)
    const verify = await trustpull(['verify', 'inside.test/org/app:1.0', '--config', insideConfig])
    t.equal(verify.code, 0, verify.stdout + verify.stderr)
    t.match(verify.stdout, `inside.test/org/app@${single.digest}: ALLOW`)
  })

  t.test('a signed multi-arch index crosses with every platform and their signatures', async (t) => {
    const r = await trustpull(['copy', 'outside.test/org/multi:2.0', 'inside.test/mirror/multi', '--config', config, '--json'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results[0], { status: 'copied', digest: multi.digest })
    t.equal(report.results[0]!.stats.manifests.copied, 3, 'index and both platforms')

    const copied = await getManifest(inside.url, 'mirror/multi', '2.0')
    t.equal(copied.digest, multi.digest, 'the source tag is kept when the destination names none')
    for (const child of multi.children) {
      const m = await getManifest(inside.url, 'mirror/multi', child.digest)
      t.equal(m.status, 200, `platform ${child.platform.architecture}`)
      const v = await verifyImage(`${inside.host}/mirror/multi@${child.digest}`, keys.publicKeyPath)
      t.ok(v.ok, `cosign verify of the ${child.platform.architecture} platform inside (signed with --recursive): ${v.stderr}`)
    }
    const tags = await listTags(inside.url, 'mirror/multi')
    t.ok(tags.includes(digestTag(multi.digest)), 'the referrers fallback tag holding the bundle attestation')
    const v = await verifyImage(`${inside.host}/mirror/multi:2.0`, keys.publicKeyPath)
    t.ok(v.ok, `cosign verify of the index inside: ${v.stderr}`)
    const a = await verifyAttestation(`${inside.host}/mirror/multi:2.0`, keys.publicKeyPath, 'slsaprovenance', { newBundleFormat: true })
    t.ok(a.ok, `cosign verify-attestation --new-bundle-format inside: ${a.stderr}`)
    const verify = await trustpull(['verify', 'inside.test/mirror/multi:2.0', '--config', insideConfig])
    t.equal(verify.code, 0, verify.stdout + verify.stderr)
  })

  t.test('copying again transfers nothing: every blob, manifest and artifact is found inside', async (t) => {
    const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/org/app:1.0', '--config', config, '--json'])
    t.equal(r.code, 0, r.stderr)
    const stats = (JSON.parse(r.stdout) as JsonReport).results[0]!.stats
    t.match(stats, { blobs: { copied: 0, skipped: 7 }, manifests: { copied: 0, skipped: 1 }, artifacts: { copied: 0, skipped: 2 } })
  })

  t.test('signatures kept in another repository (source.oci) travel beside the image', async (t) => {
    const r = await trustpull(['copy', 'outside.test/split/app:1.0', 'inside.test/split/app:1.0', '--config', config])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.same(await listTags(outside.url, 'split/app'), ['1.0'], 'outside, the image repository holds no signature')
    t.same((await listTags(inside.url, 'split/app')).sort(), ['1.0', digestTag(split.digest, '.sig')])
    const v = await verifyImage(`${inside.host}/split/app:1.0`, keys.publicKeyPath)
    t.ok(v.ok, `cosign verify inside, no COSIGN_REPOSITORY needed: ${v.stderr}`)
  })

  t.test('referrers from an OCI 1.1 API: a fallback tag is written for a destination without one', async (t) => {
    const r = await trustpull(['copy', 'api.outside.test/org/refs:1.0', 'inside.test/org/refs:1.0', '--config', config, '--json'])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.ok(
      withApi.requests.some((q) => q.path === `/v2/org/refs/referrers/${refs.digest}`),
      'the referrers API was asked',
    )
    const listed = await getManifest(inside.url, 'org/refs', digestTag(refs.digest))
    t.equal(listed.status, 200)
    const index = JSON.parse(Buffer.from(listed.bytes).toString()) as { manifests: { digest: string; artifactType?: string }[] }
    t.same(
      index.manifests.map((m) => m.digest),
      referrers.manifests.map((m) => m.digest),
      'it lists the referrers the API listed',
    )
    t.equal(index.manifests[0]!.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json', 'with their artifact types')
    const a = await verifyAttestation(`${inside.host}/org/refs:1.0`, keys.publicKeyPath, 'slsaprovenance', { newBundleFormat: true })
    t.ok(a.ok, `cosign verify-attestation inside: ${a.stderr}`)
    const verify = await trustpull(['verify', 'inside.test/org/refs:1.0', '--config', insideConfig])
    t.equal(verify.code, 0, verify.stdout + verify.stderr)

    const api = await trustpull(['copy', 'api.outside.test/org/refs:1.0', 'api.inside.test/org/refs-api:1.0', '--config', config])
    t.equal(api.code, 0, api.stderr + api.stdout)
    t.notOk((await listTags(inside.url, 'org/refs-api')).includes(digestTag(refs.digest)), 'no fallback tag where the destination indexed the referrer itself')
    t.equal((await getManifest(inside.url, 'org/refs-api', referrers.manifests[0]!.digest)).status, 200, 'the referrer itself is there')
  })

  t.test('a policy in warn mode: the unsigned image is copied, with the warning in the table', async (t) => {
    await pushImage(outside.url, 'trial/tool', '0.1', { seed: 'trial' })
    const r = await trustpull(['copy', 'outside.test/trial/tool:0.1', 'inside.test/trial/tool:0.1', '--config', config])
    t.equal(r.code, 0, r.stderr + r.stdout)
    t.match(r.stdout, /copied \(warn\)/)
    t.match(r.stderr, /warning: not verified, copied because policy is in warn mode/)
  })

  t.test('an unsigned image is refused: clear message, exit 1, nothing of it inside', async (t) => {
    const r = await trustpull(['copy', 'outside.test/org/unsigned:1.0', 'inside.test/org/unsigned:1.0', '--config', config])
    t.equal(r.code, 1)
    t.match(r.stderr, `outside.test/org/unsigned@${unsigned.digest} is not verified`)
    t.match(r.stderr, /no signatures found/)
    t.match(r.stderr, /nothing was copied/)
    t.match(r.stdout, /refused/)
    t.notOk((await catalog(inside.url)).includes('org/unsigned'), `inside catalog: ${(await catalog(inside.url)).join(', ')}`)
    t.same(await listTags(inside.url, 'org/unsigned'), [])
    for (const layer of unsigned.layerDigests) {
      const head = await request(`${inside.url}/v2/org/app/blobs/${layer}`, { method: 'HEAD' })
      t.equal(head.statusCode, 404, 'not even under another repository name')
    }
  })

  t.test('signatures that cannot be read (upstream 503): UNVERIFIED, exit 3, nothing copied', async (t) => {
    const r = await trustpull(['copy', 'flaky.outside.test/org/app:1.0', 'inside.test/flaky/app:1.0', '--config', config, '--json'])
    t.equal(r.code, 3)
    t.match(JSON.parse(r.stdout), {
      results: [{ status: 'failed', verdict: { result: 'error' }, error: { code: 'UNVERIFIED', message: /could not be verified: .*503.*; nothing was copied/ } }],
    })
    t.notOk((await catalog(inside.url)).includes('flaky/app'))
  })

  t.test('an image signed by another key is refused with the reason; --key replaces the policies', async (t) => {
    const r = await trustpull(['copy', 'outside.test/org/other:1.0', 'inside.test/org/other:1.0', '--config', config, '--json'])
    t.equal(r.code, 1)
    const report = JSON.parse(r.stdout) as JsonReport
    t.match(report.results[0], { status: 'refused', error: { code: 'REFUSED' }, verdict: { result: 'deny' } })
    t.same(await listTags(inside.url, 'org/other'), [])
    const withKey = await trustpull(['copy', 'outside.test/org/other:1.0', 'inside.test/org/other:1.0', '--config', config, '--key', other.publicKeyPath])
    t.equal(withKey.code, 0, withKey.stderr + withKey.stdout)
    t.equal((await getManifest(inside.url, 'org/other', '1.0')).digest, wronglySigned.digest)
  })

  t.test('bad requests: exit 1 or 2 with a message, nothing written', async (t) => {
    const before = await catalog(inside.url)
    const missing = await trustpull(['copy', 'outside.test/org/app:9.9', 'inside.test/org/app:9.9', '--config', config, '--json'])
    t.equal(missing.code, 1)
    t.match(JSON.parse(missing.stdout), { results: [{ status: 'failed', error: { code: 'NOT_FOUND' } }] })
    const unconfigured = await trustpull(['copy', 'evil.example/org/app:1.0', 'inside.test/org/app:1.0', '--config', config])
    t.equal(unconfigured.code, 1)
    t.match(unconfigured.stderr, /registry "evil.example" is not an upstream/)
    const wrongDigest = await trustpull(['copy', 'outside.test/org/app:1.0', `inside.test/org/app@${unsigned.digest}`, '--config', config])
    t.equal(wrongDigest.code, 1)
    t.match(wrongDigest.stderr, /the destination names sha256:.* but outside\.test\/org\/app:1\.0 is sha256:/)
    const badRef = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/Org/App', '--config', config])
    t.equal(badRef.code, 1)
    t.match(badRef.stderr, /is not an image reference/)
    const usage = await trustpull(['copy', 'outside.test/org/app:1.0', '--config', config])
    t.equal(usage.code, 2)
    t.match(usage.stderr, /usage: trustpull copy SRC DST/)
    t.same(await catalog(inside.url), before)
    t.same((await listTags(inside.url, 'org/app')).sort(), ['1.0', digestTag(single.digest, '.att'), digestTag(single.digest, '.sig')].sort())
  })
})

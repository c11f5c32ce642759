// "Passed the scan with zero criticals, recently, and its SBOM is attached": real cosign 2.5
// `attest --type vuln` and `--type spdxjson` / `cyclonedx` against a real docker-registry, and a
// policy whose CEL conditions read the vulnerability report (no CRITICAL finding), its age
// against `now`, and the SBOM's presence. What a client pulling through trustpull gets.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { attest, generateKeyPair } from '../helpers/cosign.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

/** A cosign vulnerability scan record (as `trivy --format cosign-vuln` writes it, cut down; the report is trivy's JSON). */
function report(finishedOn: string, severities: string[]) {
  return {
    invocation: { parameters: null, uri: '', event_id: '', 'builder.id': '' },
    scanner: {
      uri: 'pkg:github/aquasecurity/trivy@v0.50.0',
      version: 'v0.50.0',
      db: { uri: '', version: '' },
      result: {
        SchemaVersion: 2,
        Results: [{ Target: 'app', Vulnerabilities: severities.map((s, i) => ({ VulnerabilityID: `CVE-2026-${i}`, Severity: s })) }, { Target: 'base' }],
      },
    },
    metadata: { scanStartedOn: finishedOn, scanFinishedOn: finishedOn },
  }
}

const NO_CRITICALS = 'predicate.scanner.result.Results.all(r, !has(r.Vulnerabilities) || r.Vulnerabilities.all(v, v.Severity != "CRITICAL"))'
const FRESH = 'timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")'

t.test('vulnerability-report and SBOM attestations under CEL conditions', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const key = await generateKeyPair(dir)
  const write = async (name: string, doc: unknown) => {
    const path = join(dir, name)
    await writeFile(path, JSON.stringify(doc))
    return path
  }
  const now = new Date().toISOString()
  const clean = await write('clean.json', report(now, ['HIGH', 'LOW']))
  const critical = await write('critical.json', report(now, ['HIGH', 'CRITICAL']))
  const stale = await write('stale.json', report('2020-01-01T00:00:00Z', []))
  const spdx = await write('spdx.json', { spdxVersion: 'SPDX-2.3', SPDXID: 'SPDXRef-DOCUMENT', name: 'app', dataLicense: 'CC0-1.0', packages: [] })
  const cyclonedx = await write('cdx.json', { bomFormat: 'CycloneDX', specVersion: '1.5', version: 1, components: [] })

  const ref = (image: PushedImage) => `${registry.host}/${image.repo}@${image.digest}`
  const images = {
    good: await pushImage(registry.url, 'library/good', '1'),
    goodCdx: await pushImage(registry.url, 'cdx/good', '1'),
    critical: await pushImage(registry.url, 'library/critical', '1'),
    stale: await pushImage(registry.url, 'library/stale', '1'),
    noSbom: await pushImage(registry.url, 'library/no-sbom', '1'),
  }
  await Promise.all([
    attest(ref(images.good), key.privateKeyPath, clean, 'vuln').then(() => attest(ref(images.good), key.privateKeyPath, spdx, 'spdxjson')),
    attest(ref(images.goodCdx), key.privateKeyPath, clean, 'vuln', { newBundleFormat: true }).then(() =>
      attest(ref(images.goodCdx), key.privateKeyPath, cyclonedx, 'cyclonedx', { newBundleFormat: true }),
    ),
    attest(ref(images.critical), key.privateKeyPath, critical, 'vuln').then(() => attest(ref(images.critical), key.privateKeyPath, spdx, 'spdxjson')),
    attest(ref(images.stale), key.privateKeyPath, stale, 'vuln').then(() => attest(ref(images.stale), key.privateKeyPath, spdx, 'spdxjson')),
    attest(ref(images.noSbom), key.privateKeyPath, clean, 'vuln'),
  ])

  const scanned = { name: 'scanned', predicateType: 'vuln', policy: { type: 'cel', data: `${NO_CRITICALS} && ${FRESH}` } }
  const authority = (sbom: Record<string, unknown>) => ({ key: { data: key.publicKeyPem }, attestations: [scanned, sbom] })
  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      policies: [
        {
          name: 'release',
          images: [{ glob: 'library/*' }],
          authorities: [authority({ name: 'sbom', predicateType: 'spdxjson', policy: { type: 'cel', data: 'predicate.spdxVersion.startsWith("SPDX-")' } })],
        },
        {
          name: 'release-cdx',
          images: [{ glob: 'cdx/*' }],
          authorities: [authority({ name: 'sbom', predicateType: 'cyclonedx', policy: { type: 'cel', data: 'predicate.bomFormat == "CycloneDX"' } })],
        },
      ],
    }),
  )
  const get = async (image: PushedImage) => {
    const res = await request(`${proxy.url}/v2/${image.repo}/manifests/1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    const body = await res.body.text()
    return { status: res.statusCode, body }
  }

  t.test('a fresh report with no critical finding and an SPDX SBOM: served', async (t) => {
    const r = await get(images.good)
    t.equal(r.status, 200, r.body)
  })

  t.test('the same with a CycloneDX SBOM, both as v0.3 bundles in the referrers fallback tag: served', async (t) => {
    const r = await get(images.goodCdx)
    t.equal(r.status, 200, r.body)
    const verdict = proxy.logs.find((l) => l.audit === 'verdict' && l.digest === images.goodCdx.digest)
    t.match(verdict, { result: 'allow', policies: [{ name: 'release-cdx', result: 'pass' }] })
  })

  t.test('a critical finding: refused, naming the condition', async (t) => {
    const r = await get(images.critical)
    t.equal(r.status, 403)
    t.match(r.body, 'attestation \\"scanned\\"')
    t.match(r.body, 'condition is false')
  })

  t.test('a stale report (older than the bound against now): refused', async (t) => {
    const r = await get(images.stale)
    t.equal(r.status, 403)
    t.match(r.body, 'attestation \\"scanned\\"')
    t.match(r.body, 'condition is false')
  })

  t.test('no SBOM attached: refused', async (t) => {
    const r = await get(images.noSbom)
    t.equal(r.status, 403)
    t.match(r.body, 'attestation \\"sbom\\": no attestation of type https://spdx.dev/Document found')
  })
})

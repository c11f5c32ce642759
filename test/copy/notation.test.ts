// `trustpull copy` carries Notation signatures like Cosign's: the image verified under a notation
// authority crosses with its signature manifest and envelope, the destination gets the referrers
// fallback tag listing it, and trustpull verify on the inside (notation authority again) allows it.
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { getManifest, pushImage } from '../helpers/images.ts'
import { identityFor, notaryPayload, NOTARY_SIGNATURE, pushNotationSignature, signCose, TestPki } from '../helpers/notation.ts'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'

const trustpull = (args: string[]) => run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 50_000 })

t.test('a Notation-signed image crosses with its signature', async (t) => {
  const [outside, inside] = await Promise.all([startRegistry(t), startRegistry(t)])
  const dir = await tempDir(t, 'tp-notation-copy-')
  const pki = new TestPki(dir)
  const root = pki.ca('Copy Root')
  const leaf = pki.leaf('Copy Signer', root)
  const img = await pushImage(outside.url, 'org/app', '1.0', { seed: 'notation copy' })
  const subject = { mediaType: img.mediaType, digest: img.digest, size: img.size }
  const chain = [leaf.cert, root.cert]
  const sig = await pushNotationSignature(
    outside.url,
    'org/app',
    subject,
    signCose({ payload: notaryPayload(subject), signingTime: new Date() }, { key: leaf.key, chain }),
    'application/cose',
    chain,
  )
  const notation = { certificates: root.pem, trustedIdentities: [identityFor('Copy Signer')], level: 'strict' }
  const config = join(dir, 'gateway.yaml')
  await writeFile(
    config,
    JSON.stringify({
      upstreams: [
        { name: 'outside.test', url: outside.url },
        { name: 'inside.test', url: inside.url },
      ],
      policies: [{ name: 'release', images: [{ glob: 'outside.test/**' }], authorities: [{ notation }] }],
    }),
  )
  const insideConfig = join(dir, 'inside.yaml')
  await writeFile(
    insideConfig,
    JSON.stringify({
      upstreams: [{ name: 'inside.test', url: inside.url, default: true }],
      policies: [{ name: 'signed', images: [{ glob: 'inside.test/**' }], authorities: [{ notation }] }],
    }),
  )

  const r = await trustpull(['copy', 'outside.test/org/app:1.0', 'inside.test/org/app:1.0', '--config', config, '--json'])
  t.equal(r.code, 0, r.stderr + r.stdout)
  const report = JSON.parse(r.stdout) as { results: { status: string; verdict?: { result: string }; stats: { artifacts: { copied: number } } }[] }
  t.match(report.results[0], { status: 'copied', verdict: { result: 'allow' } })
  t.ok(report.results[0]!.stats.artifacts.copied >= 1, 'the signature artifact was copied')
  t.equal((await getManifest(inside.url, 'org/app', sig.digest)).status, 200, 'the signature manifest is inside')
  const fallback = await getManifest(inside.url, 'org/app', img.digest.replace(':', '-'))
  t.equal(fallback.status, 200, 'the fallback tag is inside')
  const index = JSON.parse(Buffer.from(fallback.bytes).toString()) as { manifests: { digest: string; artifactType?: string }[] }
  t.match(index.manifests, [{ digest: sig.digest, artifactType: NOTARY_SIGNATURE }], 'listing the Notation signature')

  const verify = await trustpull(['verify', 'inside.test/org/app:1.0', '--config', insideConfig])
  t.equal(verify.code, 0, verify.stdout + verify.stderr)
  t.match(verify.stdout, `inside.test/org/app@${img.digest}: ALLOW`)
  t.match(verify.stdout, /✔ signature notation via fallback-tag .*CN=Copy Signer, statement inline level strict/)
})

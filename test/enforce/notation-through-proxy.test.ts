// Notation-signed images pulled by a real skopeo through trustpull, from a real docker-registry
// (no referrers API, so signatures are found through the fallback tag, which the test keeps up to
// date as notation does). Signatures are made here (test CA, code-signing leaves, JWS and COSE
// envelopes, see test/helpers/notation.ts) and judged under notation's own trustpolicy.json and
// trust store: signed passes; unsigned, a wrong CA and an untrusted identity are denied with their
// codes; level audit serves with a warning; level skip serves unverified, with a warning. A
// Cosign key authority beside the Notation one: either suffices. `trustpull verify` shows the
// Notation signer, level and each failure's code.
import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { verifyCommand } from '../../src/cli/verify.ts'
import { request } from 'undici'
import { ACCEPT_ANY_MANIFEST, pushImage } from '../helpers/images.ts'
import { identityFor, notaryPayload, pushNotationSignature, signCose, signJws, TestPki, type Pem } from '../helpers/notation.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { skopeoCopy } from '../helpers/skopeo.ts'
import { startProxy } from '../helpers/trustpull.ts'

const UPSTREAM = 'notary.test'
const dir = await tempDir(t, 'tp-notation-e2e-')
const registry = await startRegistry(t)
const pki = new TestPki(dir)
const root = pki.ca('E2E Root')
const otherRoot = pki.ca('E2E Other Root')
const signer = pki.leaf('Release Signer', root)
const stranger = pki.leaf('Stranger', root)
const intruder = pki.leaf('Intruder', otherRoot)
pki.writeStore(join(dir, 'store'), 'ca', 'release', [root])

const strict = (name: string, repo: string, extra: Record<string, unknown> = {}) => ({
  name,
  registryScopes: [`${UPSTREAM}/${repo}`],
  signatureVerification: { level: 'strict' },
  trustStores: ['ca:release'],
  trustedIdentities: [identityFor('Release Signer')],
  ...extra,
})
const trustPolicy = {
  version: '1.0',
  trustPolicies: [
    strict('signed', 'app/signed'),
    strict('cose', 'app/cose'),
    strict('unsigned', 'app/unsigned'),
    strict('wrong-ca', 'app/wrongca'),
    strict('identity', 'app/identity'),
    strict('audit', 'app/audit', { signatureVerification: { level: 'audit' } }),
    { name: 'skip', registryScopes: [`${UPSTREAM}/app/skip`], signatureVerification: { level: 'skip' } },
  ],
}
await writeFile(join(dir, 'trustpolicy.json'), JSON.stringify(trustPolicy))

async function image(repo: string, sign?: { leaf: Pem; issuer: Pem; cose?: boolean }) {
  const img = await pushImage(registry.url, repo, 'v1', { seed: repo, layerSize: 1024 })
  if (sign) {
    const subject = { mediaType: img.mediaType, digest: img.digest, size: img.size }
    const req = { payload: notaryPayload(subject), signingTime: new Date() }
    const s = { key: sign.leaf.key, chain: [sign.leaf.cert, sign.issuer.cert] }
    const envelope = sign.cose ? signCose(req, s) : signJws(req, s)
    await pushNotationSignature(registry.url, repo, subject, envelope, sign.cose ? 'application/cose' : 'application/jose+json', s.chain)
  }
  return img
}

const images = {
  signed: await image('app/signed', { leaf: signer, issuer: root }),
  cose: await image('app/cose', { leaf: signer, issuer: root, cose: true }),
  unsigned: await image('app/unsigned'),
  wrongca: await image('app/wrongca', { leaf: intruder, issuer: otherRoot }),
  identity: await image('app/identity', { leaf: stranger, issuer: root }),
  audit: await image('app/audit', { leaf: intruder, issuer: otherRoot }),
  skip: await image('app/skip'),
}
// A second signature (another signer, pushed later) lands in the same fallback index beside the first.
{
  const subject = { mediaType: images.signed.mediaType, digest: images.signed.digest, size: images.signed.size }
  const s = { key: intruder.key, chain: [intruder.cert, otherRoot.cert] }
  await pushNotationSignature(registry.url, 'app/signed', subject, signJws({ payload: notaryPayload(subject), signingTime: new Date() }, s), 'application/jose+json', s.chain)
}

const cosignKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
const config = {
  upstreams: [{ name: UPSTREAM, url: registry.url, default: true }],
  policies: [
    {
      name: 'signed',
      images: [{ glob: `${UPSTREAM}/**` }],
      authorities: [
        { name: 'cosign', key: { data: cosignKey } },
        { name: 'notation', notation: { trustStore: join(dir, 'store'), trustPolicy: join(dir, 'trustpolicy.json') } },
      ],
    },
  ],
}
const proxy = await startProxy(t, config)
const verdicts = () =>
  proxy.logs.filter((l) => l.audit === 'verdict') as { image: string; result: string; reasons: string[]; signers: { subject?: string; level?: string; logged?: string[] }[] }[]
const verdictFor = (repo: string) => verdicts().findLast((v) => v.image === `${UPSTREAM}/${repo}`)

async function pull(repo: string) {
  return skopeoCopy(`${proxy.host}/${repo}:v1`, join(dir, `out-${repo.replace('/', '-')}`))
}

t.test('a Notation-signed image is pulled: JWS and COSE, the Cosign authority not needed', async (t) => {
  for (const repo of ['app/signed', 'app/cose']) {
    const r = await pull(repo)
    t.equal(r.code, 0, `${repo} pulled`, { stderr: r.stderr })
    t.equal(r.digest, repo === 'app/signed' ? images.signed.digest : images.cose.digest, 'the signed digest')
    const v = verdictFor(repo)
    t.equal(v?.result, 'allow', `${repo}: verdict allow`)
    t.match(v?.signers, [{ subject: /CN=Release Signer/, level: 'strict' }], `${repo}: signer subject and level in the audit line`)
  }
})

t.test('unsigned, a wrong CA and an untrusted identity are denied, each with its code', async (t) => {
  for (const [repo, code] of [
    ['app/unsigned', 'no Notation signatures found'],
    ['app/wrongca', 'NOTATION_UNTRUSTED_CHAIN'],
    ['app/identity', 'NOTATION_UNTRUSTED_IDENTITY'],
  ] as const) {
    const r = await pull(repo)
    t.not(r.code, 0, `${repo} refused`)
    t.match(r.stderr, /denied|DENIED/, `${repo}: skopeo reports the denial`)
    const v = verdictFor(repo)
    t.equal(v?.result, 'deny', `${repo}: verdict deny`)
    t.ok(
      v?.reasons.some((reason) => reason.includes(code)),
      `${repo}: ${code} in the audit line`,
      { reasons: v?.reasons },
    )
  }
})

t.test('level audit serves a signature from a wrong CA with a warning naming the code', async (t) => {
  const r = await pull('app/audit')
  t.equal(r.code, 0, 'pulled', { stderr: r.stderr })
  const v = verdictFor('app/audit')
  t.equal(v?.result, 'warn')
  t.match(v?.reasons[0], /notation level audit logged authenticity failure NOTATION_UNTRUSTED_CHAIN/)
  t.match(v?.signers, [{ subject: /CN=Intruder/, level: 'audit', logged: ['NOTATION_UNTRUSTED_CHAIN'] }])
  const res = await request(`${proxy.url}/v2/app/audit/manifests/v1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
  await res.body.dump()
  t.equal(res.statusCode, 200)
  t.match(res.headers.warning, /299 trustpull "served under a Notation trust policy that logs failures: .*NOTATION_UNTRUSTED_CHAIN/, 'the client is told')
})

t.test('level skip serves an unsigned image unverified, with a warning', async (t) => {
  const r = await pull('app/skip')
  t.equal(r.code, 0, 'pulled', { stderr: r.stderr })
  const v = verdictFor('app/skip')
  t.equal(v?.result, 'warn')
  t.match(v?.reasons[0], /level skip/)
})

t.test('trustpull verify shows the Notation signer, level and failure codes', async (t) => {
  const file = join(dir, 'config.yaml')
  await writeFile(file, stringify({ listen: '127.0.0.1:0', ...config }))
  const run = async (ref: string) => {
    let out = ''
    const code = await verifyCommand(ref, { config: file }, { out: (s) => void (out += s), err: (s) => void (out += s) })
    return { code, out }
  }
  const ok = await run(`${UPSTREAM}/app/signed:v1`)
  t.equal(ok.code, 0)
  t.match(ok.out, /✔ signature notation via fallback-tag .*CN=Release Signer, statement signed level strict/)
  t.match(ok.out, /signed by .*CN=Release Signer .*notation level strict/)
  const bad = await run(`${UPSTREAM}/app/wrongca:v1`)
  t.equal(bad.code, 1)
  t.match(bad.out, /✘ signature notation via fallback-tag \S+: NOTATION_UNTRUSTED_CHAIN/)
})

// The admission webhook end to end: objects made by kubectl, wrapped in AdmissionReviews, posted
// over real HTTPS to trustpull's admission listener, judged against real cosign signatures on a
// real docker-registry behind a fault proxy that counts (and delays) what reaches it.
import t from 'tap'
import { request } from 'undici'
import { parseConfig } from '../../src/config/load.ts'
import { admissionReview, kubectlObject, podObject, servingCert, webhookClient, type ServingCert } from '../helpers/admission.ts'
import { generateKeyPair, signImage, type KeyPair } from '../helpers/cosign.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { ACCEPT_ANY_MANIFEST, pushImage, type PushedImage } from '../helpers/images.ts'
import { tempDir, waitFor } from '../helpers/proc.ts'
import { scrape } from '../helpers/prometheus.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy, type TestProxy } from '../helpers/trustpull.ts'

const isSignatureFetch = (path: string) => /\/manifests\/sha256-[0-9a-f]{64}(\.sig|\.att)?$/.test(path) || path.includes('/referrers/')
const keyPolicy = (name: string, glob: string, key: KeyPair, extra: Record<string, unknown> = {}) => ({
  name,
  images: [{ glob }],
  authorities: [{ key: { data: key.publicKeyPem } }],
  ...extra,
})

function admissionConfig(upstreamUrl: string, cert: ServingCert, keyA: KeyPair, extra: Record<string, unknown> = {}) {
  return hubConfig(upstreamUrl, {
    admission: { listen: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key }, budget: '20s' },
    policies: [
      keyPolicy('apps', 'app/**', keyA),
      keyPolicy('library', 'library/*', keyA),
      keyPolicy('trial', 'trial/**', keyA, { mode: 'warn' }),
      { name: 'bootstrap', images: [{ glob: 'quay.io/bootstrap/**' }], authorities: [{ static: { action: 'pass' } }] },
    ],
    ...extra,
  })
}

t.test('admission webhook', async (t) => {
  const registry = await startRegistry(t)
  const front: FaultProxy = await startFaultProxy(t, registry.url)
  const [keyA, keyB] = await Promise.all([generateKeyPair(await tempDir(t)), generateKeyPair(await tempDir(t))])
  const push = (repo: string, tag: string) => pushImage(registry.url, repo, tag)
  const signed = await push('app/signed', 'v1')
  const unsigned = await push('app/unsigned', 'v1')
  const otherKey = await push('app/other-key', 'v1')
  const web = await push('library/web', 'latest')
  const init = await push('app/init', 'v1')
  const debug = await push('app/debug', 'v1')
  const trial = await push('trial/app', 'v1')
  const pulledFirst = await push('app/pulled-first', 'v1')
  const admittedFirst = await push('app/admitted-first', 'v1')
  const slow = await push('app/slow', 'v1')
  const ref = (image: PushedImage) => `${registry.host}/${image.repo}@${image.digest}`
  await Promise.all([
    signImage(ref(signed), keyA.privateKeyPath),
    signImage(ref(otherKey), keyB.privateKeyPath),
    signImage(ref(web), keyA.privateKeyPath),
    signImage(ref(init), keyA.privateKeyPath),
    signImage(ref(pulledFirst), keyA.privateKeyPath),
    signImage(ref(admittedFirst), keyA.privateKeyPath),
    signImage(ref(slow), keyA.privateKeyPath),
  ])
  const cert = await servingCert(t)
  const proxy: TestProxy = await startProxy(t, admissionConfig(front.url, cert, keyA))
  const admissionUrl = proxy.running.admissionUrl!
  t.match(admissionUrl, /^https:\/\/127\.0\.0\.1:\d+$/)
  const post = webhookClient(t, admissionUrl, cert.pem)
  const admissionLines = () => proxy.logs.filter((l) => l.audit === 'admission')

  t.test('a Deployment of a signed image is allowed; uid echoed, kind AdmissionReview', async (t) => {
    const { uid, review } = admissionReview(await kubectlObject('deployment', 'web', 'app/signed:v1'), { user: 'alice' })
    const r = await post('validate', review)
    t.equal(r.status, 200)
    t.equal(r.body.apiVersion, 'admission.k8s.io/v1')
    t.equal(r.body.kind, 'AdmissionReview')
    t.same(r.body.response, { uid, allowed: true })
    t.match(admissionLines().at(-1), {
      audit: 'admission',
      endpoint: 'validate',
      uid,
      namespace: 'apps',
      kind: 'Deployment',
      name: 'web',
      user: 'alice',
      result: 'allowed',
      images: [{ image: 'app/signed:v1', allowed: true, digest: signed.digest }],
    })
  })

  t.test('unsigned and other-key images are refused with 403 naming each image and its reason', async (t) => {
    const deployment = await kubectlObject('deployment', 'mixed', 'app/unsigned:v1')
    const spec = (deployment.spec as { template: { spec: { containers: { name: string; image: string }[] } } }).template.spec
    spec.containers.push({ name: 'other', image: 'app/other-key:v1' }, { name: 'ok', image: 'app/signed:v1' })
    const { uid, review } = admissionReview(deployment)
    const r = await post('validate', review)
    t.equal(r.status, 200)
    t.equal(r.body.response?.uid, uid)
    t.equal(r.body.response?.allowed, false)
    t.equal(r.body.response?.status?.code, 403)
    const message = r.body.response?.status?.message ?? ''
    t.match(message, /^trustpull: 2 images refused: /)
    t.match(message, `containers "unsigned" image app/unsigned:v1: docker.io/app/unsigned@${unsigned.digest} denied: policy "apps": no signatures found`)
    t.match(message, `containers "other" image app/other-key:v1: docker.io/app/other-key@${otherKey.digest} denied: policy "apps": no signature verified`)
    t.notMatch(message, 'app/signed', 'an image that passes is not named')
    t.match(admissionLines().at(-1), { result: 'refused', kind: 'Deployment', name: 'mixed' })
  })

  t.test('Kubernetes names: `web` is docker.io/library/web:latest; Jobs and CronJobs are judged', async (t) => {
    const r = await post('validate', admissionReview(await kubectlObject('job', 'batch', 'web')).review)
    t.equal(r.body.response?.allowed, true)
    t.match(admissionLines().at(-1), { kind: 'Job', images: [{ image: 'web', digest: web.digest, allowed: true }] })
    const cron = await post('validate', admissionReview(await kubectlObject('cronjob', 'nightly', 'docker.io/app/unsigned:v1')).review)
    t.equal(cron.body.response?.allowed, false)
    t.match(cron.body.response?.status?.message, 'image docker.io/app/unsigned:v1')
    const byDigest = await post('validate', admissionReview(await kubectlObject('cronjob', 'pinned', `index.docker.io/app/signed:v0@${signed.digest}`)).review)
    t.equal(byDigest.body.response?.allowed, true, 'with tag and digest, the digest is judged (the tag v0 does not exist)')
  })

  t.test('an unconfigured registry is refused unless a static pass policy covers it', async (t) => {
    const r = await post('validate', admissionReview(await podObject('elsewhere', 'quay.io/org/app:1')).review)
    t.equal(r.body.response?.allowed, false)
    t.match(r.body.response?.status?.message, 'image quay.io/org/app:1: registry quay.io is not an upstream of this proxy')
    const pass = await post('validate', admissionReview(await podObject('bootstrap', 'quay.io/bootstrap/agent:1')).review)
    t.equal(pass.body.response?.allowed, true)
  })

  t.test('warn mode: allowed, with a warning naming the image', async (t) => {
    const r = await post('validate', admissionReview(await kubectlObject('deployment', 'trial', 'trial/app:v1')).review)
    t.equal(r.body.response?.allowed, true)
    t.match(r.body.response?.warnings, [/^trial\/app:v1: not verified \(warn mode\): policy "trial": no signatures found/])
    t.ok(r.body.response!.warnings!.every((w) => w.length <= 256))
    t.match(admissionLines().at(-1), { result: 'allowed', images: [{ image: 'trial/app:v1', digest: trial.digest, allowed: true }] })
  })

  t.test('initContainers and ephemeralContainers are judged like containers', async (t) => {
    const pod = await podObject('with-init', 'app/signed:v1')
    const spec = pod.spec as Record<string, unknown>
    spec.initContainers = [{ name: 'setup', image: 'app/init:v1' }]
    t.equal((await post('validate', admissionReview(pod).review)).body.response?.allowed, true, 'a signed init container')
    spec.initContainers = [{ name: 'setup', image: 'app/unsigned:v1' }]
    const refused = await post('validate', admissionReview(pod).review)
    t.equal(refused.body.response?.allowed, false)
    t.match(refused.body.response?.status?.message, 'initContainers "setup" image app/unsigned:v1')
    spec.initContainers = [{ name: 'setup', image: 'app/init:v1' }]
    const debugged = structuredClone(pod)
    ;(debugged.spec as Record<string, unknown>).ephemeralContainers = [{ name: 'debugger', image: 'app/debug:v1' }]
    const eph = await post('validate', admissionReview(debugged, { operation: 'UPDATE', oldObject: pod, subResource: 'ephemeralcontainers' }).review)
    t.equal(eph.body.response?.allowed, false)
    t.match(eph.body.response?.status?.message, `ephemeralContainers "debugger" image app/debug:v1: docker.io/app/debug@${debug.digest} denied`)
  })

  t.test('UPDATE is judged like CREATE; DELETE and CONNECT are allowed untouched', async (t) => {
    const before = await kubectlObject('deployment', 'rolling', 'app/signed:v1')
    const after = await kubectlObject('deployment', 'rolling', 'app/unsigned:v1')
    const update = await post('validate', admissionReview(after, { operation: 'UPDATE', oldObject: before }).review)
    t.equal(update.body.response?.allowed, false, 'the new object is judged')
    const lines = admissionLines().length
    for (const operation of ['DELETE', 'CONNECT'] as const) {
      const { uid, review } = admissionReview(after, { operation })
      for (const endpoint of ['validate', 'mutate'] as const) {
        const r = await post(endpoint, review)
        t.same(r.body.response, { uid, allowed: true }, `${operation} ${endpoint}: allowed, no patch`)
      }
    }
    t.equal(admissionLines().length, lines, 'nothing was judged, nothing audited')
  })

  t.test('dryRun is answered as the real request would be, and audited as a dry run', async (t) => {
    const r = await post('validate', admissionReview(await kubectlObject('deployment', 'dry', 'app/unsigned:v1'), { dryRun: true }).review)
    t.equal(r.body.response?.allowed, false)
    t.match(admissionLines().at(-1), { name: 'dry', dryRun: true, result: 'refused' })
    const ok = await post('mutate', admissionReview(await kubectlObject('deployment', 'dry', 'app/signed:v1'), { dryRun: true }).review)
    t.ok(ok.patch, 'mutate still returns its patch')
  })

  t.test('mutate pins each passing tag to its verified digest and leaves refused images alone', async (t) => {
    const pod = await podObject('pin', 'app/signed:v1')
    const spec = pod.spec as { containers: { name: string; image: string }[]; initContainers?: unknown[] }
    spec.containers.push({ name: 'bad', image: 'app/unsigned:v1' }, { name: 'lib', image: 'web' }, { name: 'fixed', image: `app/signed@${signed.digest}` })
    spec.initContainers = [{ name: 'setup', image: 'app/init:v1' }]
    const { uid, review } = admissionReview(pod)
    const r = await post('mutate', review)
    t.equal(r.body.response?.uid, uid)
    t.equal(r.body.response?.allowed, true, 'mutate never refuses: validate does')
    t.equal(r.body.response?.patchType, 'JSONPatch')
    t.same(r.patch, [
      { op: 'replace', path: '/spec/initContainers/0/image', value: `app/init:v1@${init.digest}` },
      { op: 'replace', path: '/spec/containers/0/image', value: `app/signed:v1@${signed.digest}` },
      { op: 'replace', path: '/spec/containers/2/image', value: `web@${web.digest}` },
    ])
    const cron = await post('mutate', admissionReview(await kubectlObject('cronjob', 'pin', 'app/signed:v1')).review)
    t.same(cron.patch, [{ op: 'replace', path: '/spec/jobTemplate/spec/template/spec/containers/0/image', value: `app/signed:v1@${signed.digest}` }])
  })

  t.test('a verdict made at admission is a cache hit at pull, and the other way round: no signature fetched again', async (t) => {
    front.clearRequests()
    t.equal((await post('validate', admissionReview(await kubectlObject('deployment', 'first', 'app/admitted-first:v1')).review)).body.response?.allowed, true)
    t.ok(
      front.requests.some((r) => isSignatureFetch(r.path)),
      'admission fetched the signature',
    )
    front.clearRequests()
    const pull = await request(`${proxy.url}/v2/app/admitted-first/manifests/v1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    await pull.body.dump()
    t.equal(pull.statusCode, 200)
    t.equal(pull.headers['docker-content-digest'], admittedFirst.digest)
    t.equal(front.requests.filter((r) => isSignatureFetch(r.path)).length, 0, 'the pull verified nothing again')

    const first = await request(`${proxy.url}/v2/app/pulled-first/manifests/v1`, { headers: { accept: ACCEPT_ANY_MANIFEST } })
    await first.body.dump()
    t.equal(first.statusCode, 200)
    front.clearRequests()
    t.equal((await post('validate', admissionReview(await kubectlObject('deployment', 'second', 'app/pulled-first:v1')).review)).body.response?.allowed, true)
    t.equal(front.requests.filter((r) => isSignatureFetch(r.path)).length, 0, 'admission verified nothing again')
    t.match(proxy.logs.filter((l) => l.audit === 'verdict' && l.digest === pulledFirst.digest).at(-1), {
      cached: true,
      client: 'admission:system:serviceaccount:kube-system:replicaset-controller',
    })
  })

  t.test('over budget: refused "verification timed out"; the verification goes on and the retry is allowed', async (t) => {
    const quick = await startProxy(t, admissionConfig(front.url, cert, keyA, { admission: { listen: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key }, budget: '300ms' } }))
    const postQuick = webhookClient(t, quick.running.admissionUrl!, cert.pem)
    front.setFault((r) => (r.path.startsWith('/v2/app/slow/') && isSignatureFetch(r.path) ? { kind: 'delay', ms: 1_500 } : undefined))
    t.teardown(() => front.setFault(undefined))
    const { review } = admissionReview(await kubectlObject('deployment', 'slow', 'app/slow:v1'))
    const r = await postQuick('validate', review)
    t.equal(r.body.response?.allowed, false)
    t.equal(r.body.response?.status?.code, 403)
    t.match(r.body.response?.status?.message, /^trustpull: verification timed out after 0\.3 s \(admission\.budget\) for app\/slow:v1; it goes on/)
    t.match(quick.logs.filter((l) => l.audit === 'admission').at(-1), { result: 'timeout', images: [{ image: 'app/slow:v1', allowed: false, reason: 'verification timed out' }] })
    const mutate = await postQuick('mutate', review)
    t.equal(mutate.body.response?.allowed, true, 'mutate lets it through unpinned')
    t.match(mutate.body.response?.warnings, [/images not pinned: verification timed out/])
    await waitFor(() => quick.logs.some((l) => l.audit === 'verdict' && l.digest === slow.digest && l.result === 'allow'), { what: 'the verification to finish in the background' })
    const retry = await postQuick('validate', review)
    t.equal(retry.body.response?.allowed, true, 'the retry is answered from the verdict')
  })

  t.test('metrics: decisions by result and kind, a latency histogram', async (t) => {
    const s = await scrape(proxy.url)
    t.ok((s.value('trustpull_admission_decisions_total', { result: 'allowed', kind: 'Deployment' }) ?? 0) > 0, 'allowed Deployments')
    t.ok((s.value('trustpull_admission_decisions_total', { result: 'refused', kind: 'Pod' }) ?? 0) > 0, 'refused Pods')
    t.ok(s.all('trustpull_admission_decisions_total', { result: 'skipped' }).length > 0, 'skipped reviews (DELETE, CONNECT)')
    t.ok((s.value('trustpull_admission_duration_seconds_count', { endpoint: 'validate' }) ?? 0) > 0, 'a latency histogram')
    t.equal(s.types.get('trustpull_admission_duration_seconds'), 'histogram')
  })

  t.test('garbage, oversized and wrong-version bodies are 400s; the listener keeps answering', async (t) => {
    const small = await startProxy(
      t,
      admissionConfig(front.url, cert, keyA, { admission: { listen: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key }, maxBodyBytes: 64 * 1024 } }),
    )
    const postSmall = webhookClient(t, small.running.admissionUrl!, cert.pem)
    const { review } = admissionReview(await kubectlObject('deployment', 'ok', 'app/signed:v1'))
    const cases: [string, unknown, string][] = [
      ['not JSON', '{"apiVersion": "admission.k8s.io/v1", "kind": "Adm', 'ADMISSION_NOT_JSON'],
      ['a JSON array', '[1,2,3]', 'ADMISSION_INVALID'],
      ['v1beta1', { ...review, apiVersion: 'admission.k8s.io/v1beta1' }, 'ADMISSION_VERSION'],
      ['no request', { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, 'ADMISSION_INVALID'],
      ['no uid', { ...review, request: { ...(review.request as object), uid: undefined } }, 'ADMISSION_INVALID'],
      ['an unknown operation', { ...review, request: { ...(review.request as object), operation: 'PATCH' } }, 'ADMISSION_INVALID'],
      ['over maxBodyBytes', { ...review, padding: 'x'.repeat(200 * 1024) }, 'ADMISSION_BODY_TOO_LARGE'],
      ['random bytes', new Uint8Array(4096).map((_, i) => (i * 7919) % 256), 'ADMISSION_NOT_JSON'],
    ]
    for (const [what, body, code] of cases) {
      const r = await postSmall('validate', body)
      t.equal(r.status, 400, `${what}: 400`)
      t.equal(r.body.error?.code, code, `${what}: ${code}`)
    }
    const after = await postSmall('validate', review)
    t.equal(after.body.response?.allowed, true, 'the listener still decides')
  })

  t.test('plain HTTP is refused on the admission port', async (t) => {
    const plain = admissionUrl.replace('https://', 'http://')
    await t.rejects(request(`${plain}/validate`, { method: 'POST', body: '{}', headersTimeout: 5_000 }), 'no plain-HTTP answer')
    const r = await post('validate', admissionReview(await kubectlObject('deployment', 'still', 'app/signed:v1')).review)
    t.equal(r.body.response?.allowed, true, 'HTTPS still answers')
  })
})

t.test('start-up refuses an admission listener without TLS, naming the key', async (t) => {
  t.throws(() => parseConfig({ admission: { listen: '127.0.0.1:8443' } }, 'test config'), /admission\.tls: the API server calls admission webhooks over HTTPS only/)
  t.throws(() => parseConfig({ admission: { listen: '127.0.0.1:8443', tls: { cert: 'c.pem' } } }, 'test config'), /admission\.tls\.key/)
})

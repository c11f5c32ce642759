// Scenario 3: cold verification. The first pull of each of N distinct signed images, one at a time:
// trustpull fetches the manifest, discovers the signatures (referrers API, `.sig`/`.att` tags,
// fallback index), fetches them and verifies, then answers. Key-based: real cosign 2.5 signatures
// (`--tlog-upload=false`). Keyless: Sigstore bundles from @sigstore/mock's Fulcio and Rekor (see
// lib/keyless.ts). Baseline: the same GET against the registry directly, just before.
//   node bench/cold-verify.ts [--quick]
import { pushImage, type PushedImage } from '../test/helpers/images.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, QUICK, round, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { keylessPolicy, startKeylessSigner } from './lib/keyless.ts'
import { latencySummary, timedRequest } from './lib/load.ts'

const N = QUICK ? 15 : 100

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'cosign'])
  const registry = await startRegistry(scope)
  const keys = await benchKeys(scope)
  const keyless = await startKeylessSigner(scope)

  say(`pushing and signing ${N} images with cosign (key) and ${N} with @sigstore/mock (keyless), plus one warm-up each`)
  const keyImages = await pushSigned(registry, keys, 'bench/key/app', N + 1)
  const keylessImages: PushedImage[] = []
  for (let i = 0; i <= N; i++) {
    const image = await pushImage(registry.url, `bench/keyless/app-${i}`, 'v1', { seed: `keyless-${i}-${Date.now()}` })
    await keyless.sign(registry.url, image)
    keylessImages.push(image)
  }

  const trustpull = await startTrustpull(
    scope,
    'trustpull',
    proxyConfig(registry.url, {
      trustRoots: [{ name: 'bench-sigstore', file: keyless.trustRootFile }],
      policies: [keyPolicy(keys, 'bench/key/**'), keylessPolicy('bench/keyless/**')],
    }),
  )

  const headers = { accept: ACCEPT }
  const measure = async (kind: string, images: PushedImage[]) => {
    // The first image of each kind warms up code paths (JIT, connections); it is not counted.
    const [warmup, ...measured] = images
    const w = await timedRequest(`${trustpull.url}/v2/${warmup!.repo}/manifests/v1`, { headers })
    if (w.status !== 200) throw new Error(`${kind} warm-up: trustpull answered ${w.status}`)
    const direct: number[] = []
    const cold: number[] = []
    for (const image of measured) {
      const d = await timedRequest(`${registry.url}/v2/${image.repo}/manifests/v1`, { headers })
      const c = await timedRequest(`${trustpull.url}/v2/${image.repo}/manifests/v1`, { headers })
      if (d.status !== 200 || c.status !== 200) throw new Error(`${kind} ${image.repo}: registry ${d.status}, trustpull ${c.status}`)
      direct.push(d.ms)
      cold.push(c.ms)
    }
    const digests = new Set(measured.map((m) => m.digest))
    const internal = trustpull
      .audits()
      .filter((a) => digests.has(a.digest) && !a.cached)
      .map((a) => a.durationMs)
    if (internal.length !== measured.length) throw new Error(`${kind}: ${internal.length} verifications audited for ${measured.length} first pulls`)
    return { direct: latencySummary(direct), cold: latencySummary(cold), verdict: latencySummary(internal) }
  }

  say(`${N} first pulls, key-based`)
  const key = await measure('key-based', keyImages)
  say(`${N} first pulls, keyless`)
  const kl = await measure('keyless', keylessImages)
  const allows = trustpull.audits().filter((a) => a.result === 'allow' && !a.cached).length

  writeResult({
    scenario: 'cold-verify',
    title: 'Cold verification: first pull of distinct signed images',
    quick: QUICK,
    environment: env,
    headlines: [
      { metric: 'first pull, key-based cosign signature: p50 ms', value: key.cold.p50Ms, target: '≤ 25 ms', met: key.cold.p50Ms <= 25 },
      { metric: 'first pull, key-based: p99 ms', value: key.cold.p99Ms },
      { metric: 'first pull, keyless bundle (mock Fulcio/Rekor): p50 ms', value: kl.cold.p50Ms, target: '≤ 25 ms', met: kl.cold.p50Ms <= 25 },
      { metric: 'first pull, keyless: p99 ms', value: kl.cold.p99Ms },
    ],
    details: { imagesPerKind: N, keyBased: key, keyless: kl, allowsAudited: allows },
    tables: [
      {
        caption: `${N} distinct images per kind, one first pull at a time (GET of the manifest by tag, as a client's first request); the registry's own answer to the same GET, just before, is the baseline. "verdict" is trustpull's own measure (audit line durationMs: cache look-up, discovery, verification).`,
        header: ['kind', 'registry p50 ms', 'registry p99 ms', 'trustpull first pull p50 ms', 'p99 ms', 'max ms', 'verdict p50 ms', 'verdict p99 ms'],
        rows: [
          ['key-based (cosign 2.5, .sig tag)', key.direct.p50Ms, key.direct.p99Ms, key.cold.p50Ms, key.cold.p99Ms, key.cold.maxMs, key.verdict.p50Ms, key.verdict.p99Ms],
          ['keyless (bundle v0.3 referrer, Fulcio + Rekor)', kl.direct.p50Ms, kl.direct.p99Ms, kl.cold.p50Ms, kl.cold.p99Ms, kl.cold.maxMs, kl.verdict.p50Ms, kl.verdict.p99Ms],
        ],
      },
    ],
    notes: [
      `Each first pull is one request from the client but several upstream round trips for trustpull: the manifest, the referrers API (404 on docker-registry 2.8), the .sig and .att tags, the sha256-<hex> fallback index, and the signature or bundle blobs.`,
      `trustpull allowed ${allows} images after verification (${2 * N} measured + 2 warm-ups expected).`,
      `Added to the registry's own answer (p50): key-based ${round(key.cold.p50Ms - key.direct.p50Ms, 1)} ms, keyless ${round(kl.cold.p50Ms - kl.direct.p50Ms, 1)} ms.`,
    ],
  })
})

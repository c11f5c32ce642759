// Scenario 5: one 256 MiB layer downloaded through trustpull (hashed while streaming, served
// because an allowed manifest references it), through nginx as a plain reverse proxy (Debian
// package, default proxy settings) and from the registry directly; rounds rotate between the
// three. trustpull's resident memory is sampled from /proc/<pid>/status during its downloads.
//   node bench/blob-stream.ts [--quick]
import { request } from 'undici'
import { startRegistry } from '../test/helpers/registry.ts'
import { environment, median, memoryOf, QUICK, round, say, scenario, startTrustpull, writeResult } from './lib/harness.ts'
import { ACCEPT, benchKeys, keyPolicy, proxyConfig, pushSigned } from './lib/images.ts'
import { rotate, timedRequest } from './lib/load.ts'
import { startNginx } from './lib/nginx.ts'

const MIB = 1024 * 1024
const SIZE_MIB = 256
const ROUNDS = QUICK ? 1 : 3

/** Downloads `url` to nowhere; MiB/s over the whole download. */
async function download(url: string, expected: number): Promise<number> {
  const started = performance.now()
  const res = await request(url)
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}`)
  let bytes = 0
  for await (const chunk of res.body) bytes += (chunk as Buffer).length
  if (bytes !== expected) throw new Error(`${url}: ${bytes} bytes, expected ${expected}`)
  return round(bytes / MIB / ((performance.now() - started) / 1000), 1)
}

await scenario(async (scope) => {
  const env = environment(['docker-registry', 'nginx', 'cosign'])
  const registry = await startRegistry(scope)
  const keys = await benchKeys(scope)
  say(`pushing a ${SIZE_MIB} MiB layer`)
  // The layer's file holds SIZE_MIB MiB of random bytes; the uncompressed tar adds a few KiB.
  const [image] = await pushSigned(registry, keys, 'bench/big', 1, { layerSize: SIZE_MIB * MIB - 4096 })
  const layer = image!.layers[0]!
  const trustpull = await startTrustpull(scope, 'trustpull', proxyConfig(registry.url, { policies: [keyPolicy(keys)] }))
  const nginx = await startNginx(scope, registry.url)
  const allowed = await timedRequest(`${trustpull.url}/v2/${image!.repo}/manifests/v1`, { headers: { accept: ACCEPT } })
  if (allowed.status !== 200) throw new Error(`trustpull answered ${allowed.status} for the signed manifest`)

  const path = `/v2/${image!.repo}/blobs/${layer.digest}`
  const before = memoryOf(trustpull.pid)
  let peakSampled = before.rss
  const sampler = setInterval(() => {
    peakSampled = Math.max(peakSampled, memoryOf(trustpull.pid).rss)
  }, 20)
  scope.teardown(() => clearInterval(sampler))

  say(`${ROUNDS} round(s): registry, nginx, trustpull, ${round(layer.size / MIB, 1)} MiB each`)
  const [direct, viaNginx, viaTrustpull] = await rotate(
    ROUNDS,
    [registry.url, nginx.url, trustpull.url].map((base) => () => download(`${base}${path}`, layer.size)),
  )
  clearInterval(sampler)
  const after = memoryOf(trustpull.pid)
  const peak = Math.max(peakSampled, after.peak)
  const growthMiB = round((peak - before.rss) / MIB, 1)

  const d = median(direct!)
  const n = median(viaNginx!)
  const tp = median(viaTrustpull!)
  writeResult({
    scenario: 'blob-stream',
    title: `Blob streaming: ${SIZE_MIB} MiB through trustpull, nginx and directly`,
    quick: QUICK,
    environment: env,
    headlines: [
      { metric: 'MiB/s, trustpull ÷ nginx', value: tp / n, target: '≥ 1.0×', met: tp / n >= 1 },
      { metric: 'MiB/s, trustpull ÷ registry directly', value: tp / d },
      { metric: "trustpull's RSS growth while streaming (MiB)", value: growthMiB, target: '< 64 MiB', met: growthMiB < 64 },
    ],
    details: { layerBytes: layer.size, rounds: ROUNDS, mibPerSecond: { registry: direct, nginx: viaNginx, trustpull: viaTrustpull }, trustpullRss: { beforeMiB: round(before.rss / MIB, 1), peakMiB: round(peak / MIB, 1), afterMiB: round(after.rss / MIB, 1) } },
    tables: [
      {
        caption: `One download at a time (undici, body read and discarded), ${ROUNDS} round(s), order rotating; median MiB/s.`,
        header: ['path', 'MiB/s', '× registry'],
        rows: [
          ['docker-registry directly', d, 1],
          ['nginx 1.22 reverse proxy (default proxy settings, 1 worker)', n, round(n / d, 2)],
          ['trustpull (hashing while streaming)', tp, round(tp / d, 2)],
        ],
      },
      {
        caption: "trustpull's resident set size (/proc/PID/status, VmRSS sampled every 20 ms, and VmHWM).",
        header: ['before', 'peak', 'after', 'growth'],
        rows: [[`${round(before.rss / MIB, 1)} MiB`, `${round(peak / MIB, 1)} MiB`, `${round(after.rss / MIB, 1)} MiB`, `${growthMiB} MiB`]],
      },
    ],
    notes: [
      'nginx buffers the upstream answer (proxy_buffering on, temp files under its own directory) as it does by default; trustpull streams with backpressure and hashes every byte, aborting on a digest mismatch.',
      'Client, proxies and registry share the same cores: each figure includes the others\' CPU use on this machine.',
    ],
  })
})

// `trustpull policy test --config NEW.yaml [--since 24h] --server URL`: the dry run before
// enforcing. The digests a running proxy served in the window (its verdict history) are judged
// again under the candidate config's policies, exactly as `verify` judges one image, and the ones
// whose outcome would change are printed, newly refused first, with the reason.
// Exit codes: 0 nothing changes, 1 something changes, 2 usage, 3 any other failure.
// Limitation: signatures are discovered again from the candidate config's upstreams (the history
// keeps each verdict's evidence, not the signature documents themselves), so this is not offline.
import { loadConfig } from '../config/load.ts'
import { parseManifest } from '../oci/manifest.ts'
import { buildCore } from '../core.ts'
import { createLogger } from '../telemetry/logger.ts'
import { call, refusal, run, UsageError, type Io, type ServerOptions } from './api-client.ts'

interface Summary {
  digest: string
  image: string
  result: string
  reason: string
}

const stdio: Io = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) }
const served = (result: string): boolean => result === 'allow' || result === 'warn'

export async function policyTest(options: ServerOptions & { config: string; since: string; json?: boolean }, io = stdio): Promise<number> {
  return run(io, 'policy test', async () => {
    if (!options.server) throw new UsageError('--server URL: the verdict history lives in a running proxy')
    const answer = await call(options, 'GET', `/api/v1/verdicts?limit=1000&since=${encodeURIComponent(options.since)}`)
    if (answer.status !== 200) return refusal(io, answer, 'policy test')
    const recorded = (answer.body as { verdicts: Summary[] }).verdicts.filter((v) => v.result !== 'error')
    const config = loadConfig(options.config)
    const runtime = await buildCore(config, { logger: createLogger('silent') })
    const changes: { from: Summary; to: string; reason: string }[] = []
    let failures = 0
    try {
      for (const v of recorded) {
        const slash = v.image.indexOf('/')
        const upstream = runtime.router.byName(v.image.slice(0, slash))
        const repository = v.image.slice(slash + 1)
        const fetched = upstream ? await upstream.client.getManifest(repository, v.digest).catch(() => undefined) : undefined
        if (!upstream || !fetched) {
          io.err(`trustpull policy test: ${v.image}@${v.digest}: ${upstream ? 'not found upstream' : 'its upstream is not in the candidate config'}\n`)
          failures++
          continue
        }
        const verdict = await runtime.gate.verdict({
          upstream: upstream.config.name,
          repository,
          digest: fetched.digest,
          mediaType: fetched.mediaType,
          manifest: parseManifest(fetched.bytes, fetched.mediaType),
          bytes: fetched.bytes,
          reference: v.digest,
        })
        if (verdict.result === 'error') {
          io.err(`trustpull policy test: ${v.image}@${v.digest}: could not decide: ${verdict.reasons[0] ?? ''}\n`)
          failures++
        } else if (served(v.result) !== served(verdict.result)) {
          changes.push({ from: v, to: verdict.result, reason: verdict.reasons[0] ?? verdict.result })
        }
      }
    } finally {
      await runtime.close()
    }
    // Newly refused first: those are what enforcing the candidate would break.
    changes.sort((a, b) => Number(served(b.from.result)) - Number(served(a.from.result)))
    if (options.json)
      io.out(
        `${JSON.stringify(
          changes.map((c) => ({ image: c.from.image, digest: c.from.digest, from: c.from.result, to: c.to, reason: c.reason })),
          null,
          2,
        )}\n`,
      )
    else {
      for (const c of changes) io.out(`${c.from.result.toUpperCase()} → ${c.to.toUpperCase()} ${c.from.image}@${c.from.digest}: ${c.reason}\n`)
      io.out(`${recorded.length} digests served in the last ${options.since} judged again: ${changes.length} would change\n`)
    }
    if (failures > 0) return 3
    return changes.length === 0 ? 0 : 1
  })
}

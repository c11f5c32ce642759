// The gate that enforces policy: signature artifacts pass through, children of an allowed index
// are served on its word, everything else is evaluated (once per key: cache + single flight),
// audited, and allowed or refused.
import { createHash } from 'node:crypto'
import { SingleFlight } from '../cache/single-flight.ts'
import type { TieredStore } from '../cache/tiered-store.ts'
import { RegistryError } from '../errors.ts'
import { evaluatePolicies, type EvaluateDeps } from '../policy/evaluate.ts'
import type { PolicySet, Verdict } from '../policy/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { span } from '../telemetry/tracing.ts'
import { referencedContent, type ContentIndex, type Vouchers } from './content-index.ts'
import type { GateDecision, GateRequest, ManifestGate } from './gate.ts'
import { isReferrersFallbackIndex, isSignatureArtifact } from './signature-artifacts.ts'

export interface PolicyGateOptions {
  /** The policies in force; a function so a reload takes effect for new requests. */
  policySet: () => PolicySet
  evaluate: EvaluateDeps
  store: TieredStore
  contentIndex: ContentIndex
  ttl: { allow: number; deny: number }
  /** Layers of a signature artifact larger than this are not vouched for (they are not signatures). */
  signatureLayerBytes: number
  logger: Logger
  onVerdict?: (verdict: Verdict, info: { cached: boolean; durationMs: number }) => void
}

const VERDICT_RESULTS = new Set(['allow', 'deny', 'warn'])

export class PolicyGate implements ManifestGate {
  readonly #options: PolicyGateOptions
  readonly #flights = new SingleFlight<Verdict>()

  constructor(options: PolicyGateOptions) {
    this.#options = options
  }

  async evaluate(request: GateRequest): Promise<GateDecision> {
    const { manifest } = request
    if (isSignatureArtifact(manifest)) return { allow: true, warnings: [], vouch: this.#artifactBlobs(request) }
    if (isReferrersFallbackIndex(manifest, request.reference)) return { allow: true, warnings: [], vouch: { blobs: [], manifests: [] } }

    const { contentIndex, logger } = this.#options
    if (manifest.kind === 'manifest') {
      const index = await contentIndex.voucher(request.upstream, request.repository, 'manifests', request.digest)
      if (index) {
        logger.debug({ image: `${request.upstream}/${request.repository}`, digest: request.digest, index }, 'platform manifest served on its allowed index')
        return { allow: true, warnings: [] }
      }
    }

    const verdict = await this.verdict(request)
    return decide(verdict, referencedContent(manifest))
  }

  /** The full verdict for one manifest (cached, single-flighted, audited): what `evaluate` decides on and `trustpull verify` prints. */
  async verdict(request: GateRequest): Promise<Verdict> {
    const policySet = this.#options.policySet()
    const key = verdictKey(policySet.fingerprint, request.upstream, request.repository, request.digest)
    const started = performance.now()
    const cached = await span('cache.get', { 'trustpull.cache.key': key }, () =>
      this.#options.store.get(key, (v): v is Verdict => isVerdictFor(v, request.digest, policySet.fingerprint)),
    )
    if (cached) {
      this.#audit(cached, request, true, performance.now() - started)
      return cached
    }
    return this.#flights.run(key, async () => {
      const image = { upstream: request.upstream, repository: request.repository, digest: request.digest, mediaType: request.mediaType, manifest: request.manifest, bytes: request.bytes }
      const verdict = await span('policy.evaluate', { 'trustpull.image': `${request.upstream}/${request.repository}`, 'trustpull.digest': request.digest }, async (s) => {
        const v = await evaluatePolicies(image, policySet, this.#options.evaluate)
        s?.setAttribute('trustpull.verdict', v.result)
        return v
      })
      const ttl = verdict.transient || verdict.result === 'error' ? 0 : verdict.result === 'deny' ? this.#options.ttl.deny : this.#options.ttl.allow
      await this.#options.store.set(key, verdict, ttl)
      this.#audit(verdict, request, false, performance.now() - started)
      return verdict
    })
  }

  #audit(verdict: Verdict, request: GateRequest, cached: boolean, durationMs: number): void {
    this.#options.onVerdict?.(verdict, { cached, durationMs })
    const level = verdict.result === 'allow' ? 'info' : 'warn'
    this.#options.logger[level](
      {
        audit: 'verdict',
        image: verdict.image,
        reference: request.reference,
        digest: verdict.digest,
        result: verdict.result,
        policies: verdict.policies.map((p) => ({ name: p.name, mode: p.mode, result: p.result })),
        reasons: verdict.reasons,
        signers: verdict.signers,
        cached,
        durationMs: Math.round(durationMs * 1000) / 1000,
      },
      `verdict ${verdict.result}`,
    )
  }

  /** A signature artifact vouches for its config and its signature-sized layers, never for manifests. */
  #artifactBlobs(request: GateRequest): Vouchers {
    const m = request.manifest
    if (m.kind !== 'manifest') return { blobs: [], manifests: [] }
    const layers = m.layers.filter((l) => l.size <= this.#options.signatureLayerBytes).map((l) => l.digest)
    return { blobs: [m.config.digest, ...layers], manifests: [] }
  }
}

export function verdictKey(fingerprint: string, upstream: string, repository: string, digest: string): string {
  return `verdict:${createHash('sha256').update(`${fingerprint}\n${upstream}\n${repository}\n${digest}`).digest('hex')}`
}

/** A cached value is used only when it is a verdict for this digest under the policies in force. */
function isVerdictFor(value: unknown, digest: string, fingerprint: string): value is Verdict {
  const v = value as Partial<Verdict> | null
  return (
    typeof v === 'object' && v !== null && v.digest === digest && v.fingerprint === fingerprint &&
    typeof v.result === 'string' && VERDICT_RESULTS.has(v.result) && Array.isArray(v.reasons) && Array.isArray(v.policies)
  )
}

function decide(verdict: Verdict, vouch: Vouchers): GateDecision {
  const first = verdict.reasons[0] ?? verdict.result
  switch (verdict.result) {
    case 'allow':
      return { allow: true, warnings: [], vouch }
    case 'warn':
      return { allow: true, warnings: [`not verified (warn mode): ${first}`], vouch }
    case 'deny':
      return {
        allow: false,
        message: `${verdict.image}@${verdict.digest} denied: ${first}`,
        detail: {
          image: verdict.image,
          digest: verdict.digest,
          reasons: verdict.reasons,
          policies: verdict.policies.map((p) => ({
            name: p.name,
            result: p.result,
            authorities: p.authorities.map((a) => ({ name: a.name, ok: a.ok, reasons: a.reasons })),
          })),
        },
      }
    case 'error':
      throw new RegistryError(verdict.errorCode ?? 'UPSTREAM_ERROR', `could not verify ${verdict.image}@${verdict.digest}: ${first}`)
  }
}

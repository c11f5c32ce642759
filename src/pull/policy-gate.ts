// The gate that enforces policy: signature artifacts pass through, children of an allowed index
// are served on its word, everything else is evaluated (once per key: cache + single flight),
// audited, and allowed or refused.
import { AsyncLocalStorage } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { LRUCache } from 'lru-cache'
import { SingleFlight } from '../cache/single-flight.ts'
import type { ReplicaLock, TieredStore } from '../cache/tiered-store.ts'
import { RegistryError } from '../errors.ts'
import { evaluatePolicies, type EvaluateDeps } from '../policy/evaluate.ts'
import type { PolicySet, SignerIdentity, Verdict } from '../policy/types.ts'
import type { Logger } from '../telemetry/logger.ts'
import { span } from '../telemetry/tracing.ts'
import { referencedContent, type ContentIndex, type Vouchers } from './content-index.ts'
import type { GateDecision, GateRequest, ManifestGate } from './gate.ts'
import { isReferrersFallbackIndex, isSignatureArtifact, isSubjectArtifact } from './signature-artifacts.ts'

export interface PolicyGateOptions {
  /** The policies in force; a function so a reload takes effect for new requests. */
  policySet: () => PolicySet
  evaluate: EvaluateDeps
  store: TieredStore
  contentIndex: ContentIndex
  ttl: { allow: number; deny: number }
  /** Evaluations running at once; one more is refused with 429 rather than queued without bound. */
  concurrentVerifications?: number
  logger: Logger
  onVerdict?: (verdict: Verdict, info: { cached: boolean; durationMs: number; client?: string; reference: string }) => void
  /**
   * The operator's denylist (src/admin/denylist.ts): asked on every pull, before and after the
   * verdict (cached or not); a reason refuses the manifest whatever the policies say.
   */
  screen?: (digest: string, signers?: readonly SignerIdentity[]) => { reason: string } | undefined
  /** Appended to every DENIED message: where an operator reads this digest's verdict (admin.publicUrl). */
  denyLink?: (digest: string) => string
  /**
   * Replicas sharing Redis verify a digest once between them: the first takes a lock for this
   * long, the others wait for its verdict (at most this long, then verify themselves).
   */
  replicaLockMs?: number
  /**
   * Whether the proxy serves `digest` (the subject of an artifact): true when it passes the gate,
   * false when it is refused or missing. Without it, artifacts are judged as images.
   */
  subjectServed?: (upstream: string, repository: string, digest: string) => Promise<boolean>
}

/** How deep an artifact's subject is followed (an SBOM's signature's ...); beyond, judged as an image. */
const MAX_SUBJECT_DEPTH = 4
const subjectDepth = new AsyncLocalStorage<number>()

const VERDICT_RESULTS = new Set(['allow', 'deny', 'warn'])
const DEFAULT_REPLICA_LOCK_MS = 5_000
const REPLICA_POLL_MS = 20

export class PolicyGate implements ManifestGate {
  readonly #options: PolicyGateOptions
  readonly #flights = new SingleFlight<Verdict>()
  #running = 0
  /**
   * Audit lines carry no credentials (names, digests, reasons, signer identities), so they skip the
   * logger's wildcard redaction: it took ~11 of the ~15 µs of each line, and every pull writes one,
   * cache hits included.
   */
  readonly #auditLog: Logger

  constructor(options: PolicyGateOptions) {
    this.#options = options
    this.#auditLog = options.logger.child({}, { redact: { paths: [] } })
  }

  async evaluate(request: GateRequest): Promise<GateDecision> {
    const { manifest } = request
    if (isSignatureArtifact(manifest)) return { allow: true, warnings: [], vouch: this.#artifactBlobs(request) }
    if (isReferrersFallbackIndex(manifest, request.reference)) return { allow: true, warnings: [], vouch: { blobs: [], manifests: [] } }
    if (await this.#subjectServed(request)) return { allow: true, warnings: [], vouch: this.#artifactBlobs(request) }

    const { contentIndex, logger, screen } = this.#options
    const listed = screen?.(request.digest)
    if (listed) return this.#refuse(request, listed.reason)
    if (manifest.kind === 'manifest') {
      const index = await contentIndex.voucher(request.upstream, request.repository, 'manifests', request.digest)
      const indexListed = index ? screen?.(index) : undefined
      if (indexListed) return this.#refuse(request, `its index ${index}: ${indexListed.reason}`)
      if (index) {
        logger.debug({ image: `${request.upstream}/${request.repository}`, digest: request.digest, index }, 'platform manifest served on its allowed index')
        return { allow: true, warnings: [] }
      }
    }

    const verdict = await this.verdict(request)
    const signerListed = verdict.result === 'allow' || verdict.result === 'warn' ? screen?.(request.digest, verdict.signers) : undefined
    if (signerListed) return this.#refuse(request, signerListed.reason, verdict)
    return decide(verdict, referencedContent(manifest), this.#options.denyLink)
  }

  /** A denylist refusal: audited and answered as a deny verdict, never cached. */
  #refuse(request: GateRequest, reason: string, evaluated?: Verdict): GateDecision {
    const verdict: Verdict = {
      result: 'deny',
      image: `${request.upstream}/${request.repository}`,
      digest: request.digest,
      policies: evaluated?.policies ?? [],
      reasons: [`denylisted: ${reason}`],
      signers: evaluated?.signers ?? [],
      fingerprint: evaluated?.fingerprint ?? this.#options.policySet().fingerprint,
      transient: true,
    }
    this.#audit(verdict, request, false, 0)
    return decide(verdict, { blobs: [], manifests: [] }, this.#options.denyLink)
  }

  /** The full verdict for one manifest (cached, single-flighted, audited): what `evaluate` decides on and `trustpull verify` prints. */
  async verdict(request: GateRequest): Promise<Verdict> {
    const policySet = this.#options.policySet()
    const key = verdictKey(policySet.fingerprint, request.upstream, request.repository, request.digest)
    const isVerdict = (v: unknown): v is Verdict => isVerdictFor(v, request.digest, policySet.fingerprint)
    const started = performance.now()
    const { store } = this.#options
    // peek: a run for this key may have finished (its verdict is in memory by then) during the look-up.
    const cached = (await span('cache.get', { 'trustpull.cache.key': key }, () => store.get(key, isVerdict))) ?? store.peek(key, isVerdict)
    if (cached) {
      this.#audit(cached, request, true, performance.now() - started)
      return cached
    }
    let leader = false
    const verdict = await this.#flights.run(key, () => {
      leader = true
      return this.#evaluateOnce(key, request, policySet, isVerdict, started)
    })
    // Requests that joined the run are served on its verdict, and audited as such.
    if (!leader) this.#audit(verdict, request, true, performance.now() - started)
    return verdict
  }

  /** Runs an evaluation within the concurrency cap; over it, 429 at once instead of a queue. */
  async #bounded<T>(work: () => Promise<T>): Promise<T> {
    const cap = this.#options.concurrentVerifications ?? Infinity
    if (this.#running >= cap) {
      throw new RegistryError('TOOMANYREQUESTS', `${this.#running} verifications are already running; try again shortly`, { headers: { 'retry-after': '1' } })
    }
    this.#running++
    try {
      return await work()
    } finally {
      this.#running--
    }
  }

  async #evaluateOnce(key: string, request: GateRequest, policySet: PolicySet, isVerdict: (v: unknown) => v is Verdict, started: number): Promise<Verdict> {
    const shared = await this.#acrossReplicas(key, isVerdict)
    if (shared.verdict) {
      this.#audit(shared.verdict, request, true, performance.now() - started)
      return shared.verdict
    }
    try {
      const image = {
        upstream: request.upstream,
        repository: request.repository,
        digest: request.digest,
        mediaType: request.mediaType,
        manifest: request.manifest,
        bytes: request.bytes,
      }
      const verdict = await this.#bounded(() =>
        span('policy.evaluate', { 'trustpull.image': `${request.upstream}/${request.repository}`, 'trustpull.digest': request.digest }, async (s) => {
          const v = await evaluatePolicies(image, policySet, this.#options.evaluate)
          s?.setAttribute('trustpull.verdict', v.result)
          return v
        }),
      )
      const ttl = verdict.transient || verdict.result === 'error' ? 0 : verdict.result === 'deny' ? this.#options.ttl.deny : this.#options.ttl.allow
      await this.#options.store.set(key, verdict, ttl)
      this.#audit(verdict, request, false, performance.now() - started)
      return verdict
    } finally {
      await shared.lock?.release()
    }
  }

  /**
   * With Redis: take the key's lock, or wait for the replica holding it to store its verdict. A
   * holder that stores nothing (an undecided verdict) releases the lock and the next one takes it;
   * a holder that is gone leaves its lock to expire. Without Redis (or with it down): work alone.
   */
  async #acrossReplicas(key: string, isVerdict: (v: unknown) => v is Verdict): Promise<{ verdict?: Verdict; lock?: ReplicaLock }> {
    const { store } = this.#options
    const lockMs = this.#options.replicaLockMs ?? DEFAULT_REPLICA_LOCK_MS
    const deadline = Date.now() + lockMs
    for (;;) {
      const lock = await store.tryLock(key, lockMs)
      if (lock === undefined) return {}
      if (lock !== 'busy') {
        // The previous holder may have stored its verdict and let go between our look-up and now.
        const verdict = await store.getShared(key, isVerdict)
        if (!verdict) return { lock }
        await lock.release()
        return { verdict }
      }
      await sleep(REPLICA_POLL_MS)
      const verdict = await store.getShared(key, isVerdict)
      if (verdict) return { verdict }
      if (Date.now() > deadline) return {}
    }
  }

  #audit(verdict: Verdict, request: GateRequest, cached: boolean, durationMs: number): void {
    this.#options.onVerdict?.(verdict, { cached, durationMs, client: request.client?.name, reference: request.reference })
    const level = verdict.result === 'allow' ? 'info' : 'warn'
    this.#auditLog[level](
      {
        audit: 'verdict',
        image: verdict.image,
        reference: request.reference,
        client: request.client?.name,
        address: request.client?.address,
        digest: verdict.digest,
        source: request.source,
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

  /** A non-runnable artifact whose subject the proxy serves (followed at most MAX_SUBJECT_DEPTH deep). */
  async #subjectServed(request: GateRequest): Promise<boolean> {
    const { manifest } = request
    const check = this.#options.subjectServed
    if (!check || !isSubjectArtifact(manifest) || manifest.kind !== 'manifest' || !manifest.subject) return false
    const depth = subjectDepth.getStore() ?? 0
    if (depth >= MAX_SUBJECT_DEPTH) return false
    const subject = manifest.subject.digest
    if (subject === request.digest) return false
    return subjectDepth.run(depth + 1, () => check(request.upstream, request.repository, subject))
  }

  /** A signature artifact vouches for its config and layers as artifact documents only, never for manifests. */
  #artifactBlobs(request: GateRequest): Vouchers {
    const m = request.manifest
    if (m.kind !== 'manifest') return { blobs: [], manifests: [] }
    return { blobs: [], manifests: [], artifactBlobs: [m.config.digest, ...m.layers.map((l) => l.digest)] }
  }
}

// Hashing is a few per cent of a warm request; the same images are asked for again and again.
const hashedKeys = new LRUCache<string, string>({ max: 10_000 })

export function verdictKey(fingerprint: string, upstream: string, repository: string, digest: string): string {
  const identity = `${fingerprint}\n${upstream}\n${repository}\n${digest}`
  let key = hashedKeys.get(identity)
  if (key === undefined) {
    key = `verdict:${createHash('sha256').update(identity).digest('hex')}`
    hashedKeys.set(identity, key)
  }
  return key
}

/** A cached value is used only when it is a verdict for this digest under the policies in force. */
function isVerdictFor(value: unknown, digest: string, fingerprint: string): value is Verdict {
  const v = value as Partial<Verdict> | null
  return (
    typeof v === 'object' &&
    v !== null &&
    v.digest === digest &&
    v.fingerprint === fingerprint &&
    typeof v.result === 'string' &&
    VERDICT_RESULTS.has(v.result) &&
    Array.isArray(v.reasons) &&
    Array.isArray(v.policies)
  )
}

function decide(verdict: Verdict, referenced: Vouchers, denyLink?: (digest: string) => string): GateDecision {
  const first = verdict.reasons[0] ?? verdict.result
  // servePassingPlatforms: the index is served without vouching for the platforms it refused.
  const refused = new Set((verdict.refusedPlatforms ?? []).map((p) => p.digest))
  const vouch = refused.size ? { ...referenced, manifests: referenced.manifests.filter((d) => !refused.has(d)) } : referenced
  const partial = (verdict.refusedPlatforms ?? []).map((p) => `platform ${p.platform} (${p.digest}) refused: ${p.reason}`.slice(0, 300))
  switch (verdict.result) {
    case 'allow':
      return { allow: true, warnings: partial, vouch }
    case 'warn':
      // Every policy passed: the warning is a Notation level (audit, permissive, skip) that logs instead of enforcing.
      if (verdict.policies.length > 0 && verdict.policies.every((p) => p.result === 'pass'))
        return { allow: true, warnings: [`served under a Notation trust policy that logs failures: ${first}`, ...partial], vouch }
      return { allow: true, warnings: [`not verified (warn mode): ${first}`, ...partial], vouch }
    case 'deny':
      return {
        allow: false,
        message: `${verdict.image}@${verdict.digest} denied: ${first}${denyLink ? ` (details: ${denyLink(verdict.digest)})` : ''}`,
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

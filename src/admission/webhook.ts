// POST /validate and POST /mutate: one AdmissionReview in, one answer out. Every image of the pod
// spec is judged (decide.ts) within the budget; a review not decided in time is refused ("verification
// timed out") while its verifications go on, so the API server's retry is a cache hit. /validate
// refuses with 403 naming every refused image; /mutate never refuses (that is /validate's job) and
// pins tags of images that pass to the digest they were judged by. A body that is not a v1
// AdmissionReview is a 400; nothing a caller sends can take the listener down.
import { Hono, type Context } from 'hono'
import { remoteAddress } from '../http/request.ts'
import type { Logger } from '../telemetry/logger.ts'
import type { Metrics } from '../telemetry/metrics.ts'
import { requestSpan, span } from '../telemetry/tracing.ts'
import { judgeImage, type ImageJudgement, type JudgeDeps } from './decide.ts'
import { containerImages, judgesKind, type ContainerImage } from './pod-spec.ts'
import { AdmissionError, parseReview, readBody, reviewResponse, type AdmissionRequest, type AdmissionResponse } from './review.ts'

export interface WebhookDeps extends JudgeDeps {
  logger: Logger
  metrics: Metrics
  /** How long a decision may take (admission.budget). */
  budgetMs: number
  maxBodyBytes: number
}

type Endpoint = 'validate' | 'mutate'

const MAX_MESSAGE = 4096
const MAX_WARNINGS = 20
const MAX_WARNING = 256

export function createWebhookApp(deps: WebhookDeps): Hono {
  const app = new Hono()
  // Audit lines carry names, digests and reasons, never credentials (as the gate's own).
  const audit = deps.logger.child({}, { redact: { paths: [] } })
  const invalid = (c: Context, err: AdmissionError) => {
    deps.metrics.admissionDecisions.add(1, { result: 'invalid', kind: 'none' })
    deps.logger.warn({ code: err.code, address: remoteAddress(c), err: err.message }, 'admission review refused')
    return c.json({ error: { code: err.code, message: err.message } }, 400)
  }
  for (const endpoint of ['validate', 'mutate'] as const) {
    app.post(`/${endpoint}`, async (c) => {
      const started = performance.now()
      let request: AdmissionRequest
      try {
        request = parseReview(await readBody(c.req.raw.body, deps.maxBodyBytes))
      } catch (err) {
        if (err instanceof AdmissionError) return invalid(c, err)
        throw err
      }
      const traceHeaders: Record<string, string> = {}
      for (const name of ['traceparent', 'tracestate']) {
        const v = c.req.header(name)
        if (v) traceHeaders[name] = v
      }
      const attributes = { 'trustpull.admission.endpoint': endpoint, 'trustpull.admission.kind': request.kind.kind, 'trustpull.admission.operation': request.operation }
      const { response, result, images } = await requestSpan(`POST /${endpoint}`, traceHeaders, attributes, async (s) => {
        const answer = await review(deps, endpoint, request, remoteAddress(c))
        s?.setAttribute('trustpull.admission.result', answer.result)
        return answer
      })
      const durationMs = performance.now() - started
      deps.metrics.admissionDecisions.add(1, { result, kind: request.kind.kind })
      deps.metrics.admissionDuration.record(durationMs / 1000, { endpoint })
      if (result !== 'skipped') {
        audit[response.allowed ? 'info' : 'warn'](
          {
            audit: 'admission',
            endpoint,
            uid: request.uid,
            operation: request.operation,
            namespace: request.namespace,
            kind: request.kind.kind,
            name: request.name ?? objectName(request.object),
            user: request.userInfo?.username,
            dryRun: request.dryRun === true,
            result,
            images: images.map((j) => ({ image: j.image, allowed: j.allowed, digest: j.digest, reason: j.reason })),
            durationMs: Math.round(durationMs * 1000) / 1000,
          },
          `admission ${result}`,
        )
      }
      return c.json(reviewResponse(response))
    })
  }
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: 'POST /validate or POST /mutate' } }, 404))
  app.onError((err, c) => {
    deps.logger.error({ err: err.message }, 'admission webhook error')
    return c.json({ error: { code: 'INTERNAL', message: 'internal error' } }, 500)
  })
  return app
}

type Result = 'allowed' | 'refused' | 'timeout' | 'skipped'

async function review(
  deps: WebhookDeps,
  endpoint: Endpoint,
  request: AdmissionRequest,
  address: string | undefined,
): Promise<{ response: AdmissionResponse; result: Result; images: ImageJudgement[] }> {
  const uid = request.uid
  const kind = request.kind.kind
  // DELETE and CONNECT run nothing new; kinds without a pod spec carry no image.
  if ((request.operation !== 'CREATE' && request.operation !== 'UPDATE') || !judgesKind(kind)) return { response: { uid, allowed: true }, result: 'skipped', images: [] }
  const containers = containerImages(kind, request.object) ?? []
  const client = { name: `admission:${request.userInfo?.username ?? 'unknown'}`, address }
  // One judgement per distinct image string, started together; they go on past the budget.
  const distinct = new Map<unknown, Promise<ImageJudgement>>()
  for (const c of containers) {
    if (!distinct.has(c.image)) {
      distinct.set(
        c.image,
        span('admission.image', { 'trustpull.admission.image': String(c.image).slice(0, 300) }, () => judgeImage(deps, c.image, client)).catch((err: unknown) => ({
          image: String(c.image).slice(0, 300),
          allowed: false,
          reason: `could not be judged: ${(err as Error).message}`.slice(0, 300),
          warnings: [],
        })),
      )
    }
  }
  const decided = await withinBudget(Promise.all(distinct.values()), deps.budgetMs)
  if (decided === 'timeout') {
    const pending = [...distinct.keys()].map((image) => ({ image: String(image).slice(0, 300), allowed: false, reason: 'verification timed out', warnings: [] }))
    const message = bounded(
      `verification timed out after ${deps.budgetMs / 1000} s (admission.budget) for ${pending.map((p) => p.image).join(', ')}; it goes on, and a retry is answered from its verdict`,
      MAX_MESSAGE,
    )
    if (endpoint === 'mutate') return { response: { uid, allowed: true, warnings: [`trustpull: images not pinned: ${message}`] }, result: 'timeout', images: pending }
    return { response: { uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: `trustpull: ${message}` } }, result: 'timeout', images: pending }
  }
  const byImage = new Map([...distinct.keys()].map((image, i) => [image, decided[i]!]))
  const judged = containers.map((c) => ({ container: c, judgement: byImage.get(c.image)! }))
  if (endpoint === 'mutate') return { response: { uid, allowed: true, ...pinningPatch(judged) }, result: 'allowed', images: decided }
  const refused = judged.filter((j) => !j.judgement.allowed)
  const warnings = [...new Set(decided.flatMap((j) => j.warnings.map((w) => bounded(w.startsWith(j.image) ? w : `${j.image}: ${w}`, MAX_WARNING))))].slice(0, MAX_WARNINGS)
  if (refused.length === 0) return { response: { uid, allowed: true, ...(warnings.length ? { warnings } : {}) }, result: 'allowed', images: decided }
  return {
    response: { uid, allowed: false, status: { code: 403, reason: 'Forbidden', message: refusal(refused) }, ...(warnings.length ? { warnings } : {}) },
    result: 'refused',
    images: decided,
  }
}

/** JSONPatch (base64) replacing each passing tag with tag@digest; none when nothing needs pinning. */
function pinningPatch(judged: { container: ContainerImage; judgement: ImageJudgement }[]): Pick<AdmissionResponse, 'patch' | 'patchType'> {
  const ops = judged.filter((j) => j.judgement.allowed && j.judgement.pinned).map((j) => ({ op: 'replace', path: j.container.pointer, value: j.judgement.pinned }))
  return ops.length ? { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(ops)).toString('base64') } : {}
}

/** Names every refused image with its reason; reasons are shortened first so every name fits. */
function refusal(refused: { container: ContainerImage; judgement: ImageJudgement }[]): string {
  const head = `trustpull: ${refused.length} image${refused.length > 1 ? 's' : ''} refused`
  for (const reasonLength of [300, 120, 40, 0]) {
    const parts = refused.map(
      ({ container, judgement }) =>
        `${container.list} "${printable(container.container)}" image ${judgement.image}${reasonLength ? `: ${bounded(judgement.reason ?? 'refused', reasonLength)}` : ''}`,
    )
    const message = `${head}: ${parts.join('; ')}`
    if (message.length <= MAX_MESSAGE) return message
  }
  return bounded(`${head}: ${refused.map((r) => r.judgement.image).join(', ')}`, MAX_MESSAGE)
}

async function withinBudget<T>(work: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function objectName(object: unknown): string | undefined {
  const name = (object as { metadata?: { name?: unknown; generateName?: unknown } } | undefined)?.metadata
  const value = name?.name ?? name?.generateName
  return typeof value === 'string' ? printable(value) : undefined
}

function bounded(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`
}

function printable(value: string): string {
  return value.slice(0, 253).replace(/[^\x20-\x7e]/g, '?')
}

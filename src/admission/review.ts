// AdmissionReview (admission.k8s.io/v1) in and out. The body comes from whoever reaches the
// port, so it is bounded, parsed as JSON and validated before anything reads it: a request that
// is not a v1 AdmissionReview is a 400, never an exception in the decision.
import { z } from 'zod'
import { CodedError } from '../errors.ts'

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1'

export class AdmissionError extends CodedError<'ADMISSION_BODY_TOO_LARGE' | 'ADMISSION_NOT_JSON' | 'ADMISSION_INVALID' | 'ADMISSION_VERSION'> {
  override name = 'AdmissionError'
}

const groupVersionKind = z.object({ group: z.string(), version: z.string(), kind: z.string().min(1) })

const admissionRequest = z.object({
  uid: z.string().min(1).max(256),
  kind: groupVersionKind,
  resource: z.object({ group: z.string(), version: z.string(), resource: z.string() }).optional(),
  subResource: z.string().optional(),
  name: z.string().optional(),
  namespace: z.string().optional(),
  operation: z.enum(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']),
  userInfo: z.object({ username: z.string().optional() }).optional(),
  object: z.unknown().optional(),
  oldObject: z.unknown().optional(),
  dryRun: z.boolean().optional(),
})

const admissionReview = z.object({
  apiVersion: z.string(),
  kind: z.literal('AdmissionReview'),
  request: admissionRequest,
})

export type AdmissionRequest = z.output<typeof admissionRequest>

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  status?: { code: number; message: string; reason?: string }
  warnings?: string[]
  patchType?: 'JSONPatch'
  patch?: string
}

/**
 * The body, at most `maxBytes` of it. A larger one is read on (and dropped) up to a few times the
 * limit so the caller gets its 400 rather than a reset connection; beyond that the read stops.
 */
export async function readBody(body: ReadableStream<Uint8Array> | null, maxBytes: number): Promise<Uint8Array> {
  if (!body) return new Uint8Array()
  const chunks: Uint8Array[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.byteLength
    if (size <= maxBytes) chunks.push(chunk)
    else if (size > DRAIN_FACTOR * maxBytes) break
  }
  if (size > maxBytes) throw new AdmissionError('ADMISSION_BODY_TOO_LARGE', `the body is over admission.maxBodyBytes (${maxBytes} bytes)`)
  return Buffer.concat(chunks)
}

const DRAIN_FACTOR = 8

/** The request of a v1 AdmissionReview; throws AdmissionError for anything else. */
export function parseReview(body: Uint8Array): AdmissionRequest {
  let value: unknown
  try {
    value = JSON.parse(Buffer.from(body).toString('utf8'))
  } catch {
    throw new AdmissionError('ADMISSION_NOT_JSON', 'the body is not JSON')
  }
  const apiVersion = (value as { apiVersion?: unknown } | null)?.apiVersion
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && apiVersion !== ADMISSION_API_VERSION) {
    throw new AdmissionError(
      'ADMISSION_VERSION',
      `apiVersion must be ${ADMISSION_API_VERSION} (admissionReviewVersions: [v1]), got ${JSON.stringify(apiVersion)?.slice(0, 100) ?? 'none'}`,
    )
  }
  const parsed = admissionReview.safeParse(value)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new AdmissionError('ADMISSION_INVALID', `not an AdmissionReview: ${issue.path.join('.') || '(top level)'}: ${issue.message}`.slice(0, 300))
  }
  return parsed.data.request
}

export function reviewResponse(response: AdmissionResponse): object {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response }
}

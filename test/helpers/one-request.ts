// One HTTP request on a connection of its own, read to the end whatever happens: what the attack
// tests need to see a refusal, a cut-off body or a hostile answer exactly as a client would.
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { ACCEPT_ANY_MANIFEST } from './images.ts'

export interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** false when the body was cut short (connection reset or closed early). */
  complete: boolean
}

export interface OciError {
  code: string
  message: string
  detail?: { reasons?: string[] }
}

/** GET (or `method`) with an Accept for every manifest type unless `headers` says otherwise. */
export function oneRequest(url: string, { method = 'GET', headers = {} }: { method?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { accept: ACCEPT_ANY_MANIFEST, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('error', () => undefined)
      res.once('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }))
    })
    req.once('error', reject)
    req.end()
  })
}

/** The first error of an OCI error body. */
export function ociError(answer: Pick<Answer, 'body'>): OciError {
  return (JSON.parse(answer.body.toString('utf8')) as { errors: OciError[] }).errors[0]!
}

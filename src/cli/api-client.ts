// The CLI's side of /api/v1: `--server URL` and an admin's credentials (TRUSTPULL_TOKEN or
// --token-file as a bearer token, or --user with TRUSTPULL_PASSWORD), JSON in and out, and the
// exit-code contract for answers: 1 refused (401/403/404), 2 usage (400), 3 anything else.
// Credentials never come from a flag's value, so they stay out of shell history and process lists.
import { readFileSync } from 'node:fs'
import { request } from 'undici'

export interface ServerOptions {
  server: string
  tokenFile?: string
  user?: string
}

export type Io = { out: (s: string) => void; err: (s: string) => void }

export class UsageError extends Error {}

export async function call(options: ServerOptions, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  let base: URL
  try {
    base = new URL(options.server)
  } catch {
    throw new UsageError(`--server: not a URL: ${options.server}`)
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError('--server: expected an http:// or https:// URL')
  const headers: Record<string, string> = { accept: 'application/json' }
  const authorization = credentials(options)
  if (authorization) headers.authorization = authorization
  if (body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(new URL(path, base), {
    method: method as 'GET',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  })
  const text = await res.body.text()
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    parsed = { errors: [{ code: 'UNKNOWN', message: text.slice(0, 200) }] }
  }
  return { status: res.statusCode, body: parsed }
}

function credentials(options: ServerOptions): string | undefined {
  if (options.user) {
    const password = process.env.TRUSTPULL_PASSWORD
    if (password === undefined) throw new UsageError('--user needs the password in TRUSTPULL_PASSWORD')
    return `Basic ${Buffer.from(`${options.user}:${password}`).toString('base64')}`
  }
  let token = process.env.TRUSTPULL_TOKEN
  if (options.tokenFile) {
    try {
      token = readFileSync(options.tokenFile, 'utf8').trim()
    } catch (err) {
      throw new UsageError(`--token-file: cannot read ${options.tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
    }
  }
  return token ? `Bearer ${token}` : undefined
}

/** 401/403/404 are refusals (1), 400 a usage error (2), anything else a failure (3). */
export function refusal(io: Io, answer: { status: number; body: unknown }, command = 'deny'): number {
  const error = (answer.body as { errors?: { code?: string; message?: string }[] } | null)?.errors?.[0]
  io.err(`trustpull ${command}: ${answer.status} ${error?.code ?? ''}: ${error?.message ?? 'no message'}\n`)
  if (answer.status === 401 || answer.status === 403 || answer.status === 404) return 1
  return answer.status === 400 ? 2 : 3
}

export async function run(io: Io, command: string, work: () => Promise<number>): Promise<number> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`trustpull ${command}: ${err.message}\n`)
      return 2
    }
    const code = (err as NodeJS.ErrnoException).code
    io.err(`trustpull ${command}: cannot reach the server: ${code ? `${code} ` : ''}${(err as Error).message}\n`)
    return 3
  }
}

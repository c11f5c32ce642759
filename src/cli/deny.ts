// `trustpull deny add|list|remove --server URL`: the kill switch, through a running proxy's
// /api/v1/denylist (which stores it, audits it and tells every replica). Credentials come from
// TRUSTPULL_TOKEN or --token-file (bearer), or --user with TRUSTPULL_PASSWORD (basic), never from a
// flag's value, so they stay out of shell history and process lists.
// Exit codes: 0 done, 1 refused (401/403, or nothing to remove), 2 usage, 3 any other failure.
import { readFileSync } from 'node:fs'
import { request } from 'undici'

export interface ServerOptions {
  server: string
  tokenFile?: string
  user?: string
}

export interface DenyTargetOptions {
  digest?: string
  identity?: string[]
  key?: string
  id?: string
}

type Io = { out: (s: string) => void; err: (s: string) => void }
const stdio: Io = { out: (s) => void process.stdout.write(s), err: (s) => void process.stderr.write(s) }

class UsageError extends Error {}

export async function denyAdd(options: ServerOptions & DenyTargetOptions & { reason?: string; json?: boolean }, io = stdio): Promise<number> {
  return run(io, async () => {
    const body = { ...target(options), ...(options.reason !== undefined ? { reason: options.reason } : {}) }
    const answer = await call(options, 'POST', '/api/v1/denylist', body)
    if (answer.status !== 201) return refusal(io, answer)
    const entry = (answer.body as { entry: Entry }).entry
    io.out(options.json ? `${JSON.stringify(entry, null, 2)}\n` : `denied ${describe(entry)} (id ${entry.id})\n`)
    return 0
  })
}

export async function denyList(options: ServerOptions & { json?: boolean }, io = stdio): Promise<number> {
  return run(io, async () => {
    const answer = await call(options, 'GET', '/api/v1/denylist')
    if (answer.status !== 200) return refusal(io, answer)
    const entries = (answer.body as { entries: Entry[] }).entries
    if (options.json) io.out(`${JSON.stringify(entries, null, 2)}\n`)
    else if (entries.length === 0) io.out('the denylist is empty\n')
    else for (const e of entries) io.out(`${e.id}\t${describe(e)}\t${e.reason || '-'}\t${e.addedBy} ${e.addedAt}\n`)
    return 0
  })
}

export async function denyRemove(options: ServerOptions & DenyTargetOptions, io = stdio): Promise<number> {
  return run(io, async () => {
    const answer = options.id
      ? await call(options, 'DELETE', `/api/v1/denylist/${encodeURIComponent(options.id)}`, {})
      : await call(options, 'DELETE', '/api/v1/denylist', target(options))
    if (answer.status !== 200) return refusal(io, answer)
    io.out(`removed ${describe((answer.body as { removed: Entry }).removed)}\n`)
    return 0
  })
}

interface Entry {
  id: string
  kind: 'digest' | 'identity' | 'key'
  digest?: string
  issuer?: string
  subject?: string
  keyHint?: string
  reason: string
  addedBy: string
  addedAt: string
}

function describe(e: Entry): string {
  return e.kind === 'digest' ? `digest ${e.digest}` : e.kind === 'identity' ? `identity ${e.subject} (${e.issuer})` : `key ${e.keyHint}`
}

function target(options: DenyTargetOptions): Record<string, string> {
  const given = [options.digest, options.identity, options.key].filter((v) => v !== undefined).length
  if (given !== 1) throw new UsageError('give exactly one of --digest D, --identity ISSUER SUBJECT or --key PEMFILE')
  if (options.digest) return { digest: options.digest }
  if (options.identity) {
    if (options.identity.length !== 2) throw new UsageError('--identity takes two values: ISSUER SUBJECT')
    return { issuer: options.identity[0]!, subject: options.identity[1]! }
  }
  try {
    return { key: readFileSync(options.key!, 'utf8') }
  } catch (err) {
    throw new UsageError(`--key: cannot read ${options.key} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
}

async function call(options: ServerOptions, method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
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
  const res = await request(new URL(path, base), { method: method as 'GET', headers, body: body === undefined ? undefined : JSON.stringify(body), headersTimeout: 30_000, bodyTimeout: 30_000 })
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
function refusal(io: Io, answer: { status: number; body: unknown }): number {
  const error = (answer.body as { errors?: { code?: string; message?: string }[] } | null)?.errors?.[0]
  io.err(`trustpull deny: ${answer.status} ${error?.code ?? ''}: ${error?.message ?? 'no message'}\n`)
  if (answer.status === 401 || answer.status === 403 || answer.status === 404) return 1
  return answer.status === 400 ? 2 : 3
}

async function run(io: Io, work: () => Promise<number>): Promise<number> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`trustpull deny: ${err.message}\n`)
      return 2
    }
    const code = (err as NodeJS.ErrnoException).code
    io.err(`trustpull deny: cannot reach the server: ${code ? `${code} ` : ''}${(err as Error).message}\n`)
    return 3
  }
}

// `trustpull deny add|list|remove --server URL`: the kill switch, through a running proxy's
// /api/v1/denylist (which stores it, audits it and tells every replica). Credentials come from
// TRUSTPULL_TOKEN or --token-file (bearer), or --user with TRUSTPULL_PASSWORD (basic), never from a
// flag's value, so they stay out of shell history and process lists.
// Exit codes: 0 done, 1 refused (401/403, or nothing to remove), 2 usage, 3 any other failure.
import { readFileSync } from 'node:fs'
import { call, refusal, run, UsageError, type ServerOptions } from './api-client.ts'

export interface DenyTargetOptions {
  digest?: string
  identity?: string[]
  key?: string
  id?: string
}

const stdio = { out: (s: string) => void process.stdout.write(s), err: (s: string) => void process.stderr.write(s) }

export async function denyAdd(options: ServerOptions & DenyTargetOptions & { reason?: string; json?: boolean }, io = stdio): Promise<number> {
  return run(io, 'deny', async () => {
    const body = { ...target(options), ...(options.reason !== undefined ? { reason: options.reason } : {}) }
    const answer = await call(options, 'POST', '/api/v1/denylist', body)
    if (answer.status !== 201) return refusal(io, answer)
    const entry = (answer.body as { entry: Entry }).entry
    io.out(options.json ? `${JSON.stringify(entry, null, 2)}\n` : `denied ${describe(entry)} (id ${entry.id})\n`)
    return 0
  })
}

export async function denyList(options: ServerOptions & { json?: boolean }, io = stdio): Promise<number> {
  return run(io, 'deny', async () => {
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
  return run(io, 'deny', async () => {
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

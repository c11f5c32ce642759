// `trustpull copy --from-file LIST DST-PREFIX`: many images, several at once. A rerun resumes: what
// already reached the destination is found there and skipped. Copies writing the same layout or
// archive run one after another (an archive is rewritten whole on each commit).
import { CopyError } from './errors.ts'
import { parseEndpoint } from './endpoint.ts'
import type { Copier } from './copier.ts'
import type { CopyJob, CopyResult } from './result.ts'
import type { ProgressSink } from './progress.ts'
import { emptyStats } from './write.ts'

export interface ListLine {
  line: number
  source: string
  /** An explicit destination on the line (`SRC DST`); otherwise derived from the prefix. */
  destination?: string
}

/** One image per line: `SRC` or `SRC DST`; blank lines and `#` comments are skipped. */
export function parseList(text: string): ListLine[] {
  const lines: ListLine[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const content = raw.replace(/(^|\s)#.*$/, '').trim()
    if (!content) return
    const fields = content.split(/\s+/)
    if (fields.length > 2) throw new CopyError('BAD_ENDPOINT', `line ${i + 1}: expected "SRC" or "SRC DST", found ${fields.length} fields`)
    lines.push({ line: i + 1, source: fields[0]!, ...(fields[1] ? { destination: fields[1] } : {}) })
  })
  return lines
}

/** Layouts and archives are written by one copy at a time; registries by any number. */
function serialKey(destination: string): string | undefined {
  try {
    const e = parseEndpoint(destination)
    return e.kind === 'registry' ? undefined : `${e.kind}:${e.path}`
  } catch {
    return undefined
  }
}

export async function runBatch(copier: Copier, lines: ListLine[], prefix: string, options: { concurrency: number; progress: ProgressSink; as?: string }): Promise<CopyResult[]> {
  const jobs: (CopyJob | CopyResult)[] = lines.map((l) => {
    try {
      return { source: l.source, destination: l.destination ?? copier.destinationUnder(prefix, l.source), ...(options.as ? { as: options.as } : {}) }
    } catch (err) {
      const e = err as CopyError
      return {
        source: l.source,
        destination: prefix,
        status: 'failed',
        stats: emptyStats(),
        notes: [],
        warnings: [],
        error: { code: e.code ?? 'BAD_ENDPOINT', message: `line ${l.line}: ${e.message}` },
        durationMs: 0,
      }
    }
  })
  const results: CopyResult[] = new Array(jobs.length)
  const chains = new Map<string, Promise<unknown>>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const i = next++
      const job = jobs[i]!
      if ('status' in job) {
        options.progress.begin(i, job.source, job.destination)
        options.progress.end(i, job)
        results[i] = job
        continue
      }
      const key = serialKey(job.destination)
      const before = key ? chains.get(key) : undefined
      const run = (before ?? Promise.resolve()).then(() => copier.copy(job, i, options.progress))
      if (key)
        chains.set(
          key,
          run.catch(() => undefined),
        )
      results[i] = await run
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, jobs.length)) }, worker))
  return results
}

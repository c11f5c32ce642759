// Progress of copies, on stderr: a live bar per image in flight on a terminal, plain lines
// otherwise (CI logs, files). stdout stays for the summary table or JSON.
import type { CopyResult } from './result.ts'

export type Phase = 'resolving' | 'verifying' | 'planning' | 'copying'

export interface ProgressSink {
  begin(id: number, source: string, destination: string): void
  phase(id: number, phase: Phase, detail?: string): void
  /** Bytes of blobs the copy will go through (copied or found present). */
  total(id: number, bytes: number): void
  advance(id: number, bytes: number): void
  end(id: number, result: CopyResult): void
  close(): void
}

export const silentProgress: ProgressSink = { begin() {}, phase() {}, total() {}, advance() {}, end() {}, close() {} }

interface Job {
  source: string
  destination: string
  phase: Phase
  detail: string
  total: number
  done: number
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let value = n / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

export function outcomeLine(r: CopyResult): string {
  const head = `${r.source} → ${r.destination}`
  if (r.status === 'refused') return `${head}: REFUSED ${r.error?.message ?? ''}`.trimEnd()
  if (r.status === 'failed') return `${head}: FAILED ${r.error?.code ?? ''} ${r.error?.message ?? ''}`.trimEnd()
  const s = r.stats
  const warn = r.warnings.length ? ` (warning: ${r.warnings[0]})` : ''
  return (
    `${head}: copied ${r.digest ?? ''}: blobs ${s.blobs.copied} copied ${s.blobs.skipped} present (${formatBytes(s.bytes)}), ` +
    `manifests ${s.manifests.copied}/${s.manifests.skipped}, signatures+attestations ${s.artifacts.copied}/${s.artifacts.skipped}${warn}`
  )
}

abstract class BaseProgress implements ProgressSink {
  protected readonly jobs = new Map<number, Job>()
  protected readonly out: NodeJS.WritableStream
  protected readonly count: number

  constructor(out: NodeJS.WritableStream, count: number) {
    this.out = out
    this.count = count
  }

  protected label(id: number): string {
    return this.count > 1 ? `[${id + 1}/${this.count}] ` : ''
  }

  begin(id: number, source: string, destination: string): void {
    this.jobs.set(id, { source, destination, phase: 'resolving', detail: '', total: 0, done: 0 })
  }
  phase(id: number, phase: Phase, detail = ''): void {
    const job = this.jobs.get(id)
    if (job) Object.assign(job, { phase, detail })
  }
  total(id: number, bytes: number): void {
    const job = this.jobs.get(id)
    if (job) job.total = bytes
  }
  advance(id: number, bytes: number): void {
    const job = this.jobs.get(id)
    if (job) job.done += bytes
  }
  abstract end(id: number, result: CopyResult): void
  abstract close(): void
}

/** One line per step of each copy. */
export class LineProgress extends BaseProgress {
  override phase(id: number, phase: Phase, detail = ''): void {
    super.phase(id, phase, detail)
    const job = this.jobs.get(id)
    if (job) this.out.write(`${this.label(id)}${job.source}: ${phase}${detail ? ` ${detail}` : ''}\n`)
  }
  end(id: number, result: CopyResult): void {
    this.jobs.delete(id)
    this.out.write(`${this.label(id)}${outcomeLine(result)}\n`)
  }
  close(): void {}
}

const BAR_WIDTH = 24

/** A live block of bars (one per copy in flight), redrawn in place; finished copies scroll above it. */
export class BarProgress extends BaseProgress {
  #drawn = 0
  readonly #finished: string[] = []
  readonly #timer: NodeJS.Timeout

  constructor(out: NodeJS.WritableStream, count: number) {
    super(out, count)
    this.#timer = setInterval(() => this.#render(), 120)
    this.#timer.unref()
  }

  end(id: number, result: CopyResult): void {
    this.jobs.delete(id)
    this.#finished.push(`${this.label(id)}${outcomeLine(result)}`)
    this.#render()
  }

  close(): void {
    clearInterval(this.#timer)
    this.#render()
  }

  #render(): void {
    let text = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : ''
    for (const line of this.#finished.splice(0)) text += `\x1b[2K${line}\n`
    const live = [...this.jobs.entries()]
    for (const [id, job] of live) text += `\x1b[2K${this.label(id)}${this.#bar(job)}\n`
    // Lines left over from a taller previous block are cleared.
    const extra = Math.max(0, this.#drawn - live.length)
    for (let i = 0; i < extra; i++) text += '\x1b[2K\n'
    if (extra > 0) text += `\x1b[${extra}A`
    this.#drawn = live.length
    if (text) this.out.write(text)
  }

  #bar(job: Job): string {
    const columns = (this.out as { columns?: number }).columns ?? 100
    const name = job.source.length > 40 ? `…${job.source.slice(-39)}` : job.source.padEnd(40)
    if (job.phase !== 'copying' || job.total === 0) return `${name} ${job.phase}…`.slice(0, columns - 1)
    const ratio = Math.min(1, job.done / job.total)
    const filled = Math.round(ratio * BAR_WIDTH)
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`
    return `${name} ${bar} ${String(Math.round(ratio * 100)).padStart(3)}% ${formatBytes(job.done)}/${formatBytes(job.total)}`.slice(0, columns - 1)
  }
}

export function createProgress(out: NodeJS.WriteStream, count: number, enabled = true): ProgressSink {
  if (!enabled) return silentProgress
  return out.isTTY ? new BarProgress(out, count) : new LineProgress(out, count)
}

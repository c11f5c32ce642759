// The end of a copy run: a summary table (or JSON) on stdout and the exit code.
import type { CopyResult } from './result.ts'
import { formatBytes } from './progress.ts'

/** Failures caused by what was asked (not by the network or a registry): exit 1, like a refusal. */
const REQUEST_CODES = new Set(['REFUSED', 'NOT_FOUND', 'BAD_ENDPOINT', 'LAYOUT_INVALID'])

/**
 * 0: everything copied (2 is for configuration and usage errors, before anything runs).
 * 1: an image was refused by policy, or does not exist, or was named badly.
 * 3: a copy failed for another reason (registry, network, disk, verification could not complete).
 */
export function exitCode(results: CopyResult[]): number {
  if (results.every((r) => r.status === 'copied')) return 0
  if (results.some((r) => r.status === 'refused' || REQUEST_CODES.has(r.error?.code ?? ''))) return 1
  return 3
}

export function summary(results: CopyResult[]) {
  const count = (s: CopyResult['status']) => results.filter((r) => r.status === s).length
  const sum = (f: (r: CopyResult) => number) => results.reduce((n, r) => n + f(r), 0)
  return {
    images: results.length,
    copied: count('copied'),
    refused: count('refused'),
    failed: count('failed'),
    blobs: { copied: sum((r) => r.stats.blobs.copied), skipped: sum((r) => r.stats.blobs.skipped) },
    manifests: { copied: sum((r) => r.stats.manifests.copied), skipped: sum((r) => r.stats.manifests.skipped) },
    artifacts: { copied: sum((r) => r.stats.artifacts.copied), skipped: sum((r) => r.stats.artifacts.skipped) },
    bytes: sum((r) => r.stats.bytes),
  }
}

export function renderJson(results: CopyResult[]): string {
  return `${JSON.stringify({ results, summary: summary(results), exitCode: exitCode(results) }, null, 2)}\n`
}

export function renderTable(results: CopyResult[]): string {
  const header = ['SOURCE', 'DESTINATION', 'DIGEST', 'RESULT', 'BLOBS NEW/PRESENT', 'BYTES', 'MANIFESTS', 'SIGNATURES', 'TIME']
  const rows = results.map((r) => [
    r.source,
    r.destination,
    r.digest ? `${r.digest.slice(0, 19)}…` : '-',
    r.status === 'copied' && r.warnings.length ? 'copied (warn)' : r.status,
    r.status === 'copied' ? `${r.stats.blobs.copied}/${r.stats.blobs.skipped}` : '-',
    r.status === 'copied' ? formatBytes(r.stats.bytes) : '-',
    r.status === 'copied' ? `${r.stats.manifests.copied}/${r.stats.manifests.skipped}` : '-',
    r.status === 'copied' ? `${r.stats.artifacts.copied}/${r.stats.artifacts.skipped}` : '-',
    `${(r.durationMs / 1000).toFixed(1)}s`,
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd()
  const lines = [line(header), ...rows.map(line)]
  const problems = results.filter((r) => r.error || r.notes.length)
  for (const r of problems) {
    if (r.error) lines.push(`${r.source}: ${r.status.toUpperCase()} ${r.error.code}: ${r.error.message}`)
    for (const note of r.notes) lines.push(`${r.source}: note: ${note}`)
  }
  const s = summary(results)
  lines.push(`${s.copied} copied, ${s.refused} refused, ${s.failed} failed; ${s.blobs.copied} blobs (${formatBytes(s.bytes)}) transferred, ${s.blobs.skipped} already present`)
  return `${lines.join('\n')}\n`
}

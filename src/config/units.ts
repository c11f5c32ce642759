// Human-friendly durations and sizes for the config, in the spellings operators already use:
// durations as Go writes them ("500ms", "30s", "1h30m", "1m30.5s"; a bare number is seconds), sizes
// in binary units as docker ("4MiB") or Kubernetes ("64Mi", "1.5Gi") write them (a bare number is
// bytes). Decimal units ("64M", "1GB") are refused, naming the binary spelling: which one a writer
// meant cannot be told, and a limit off by 5 % is a silent surprise.
import { z } from 'zod'

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }

const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$/
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h)/g
const SIZE = /^(\d+(?:\.\d+)?)\s*(?:(B)|([KMGT])i(?:B)?)$/
const DECIMAL_SIZE = /^(\d+(?:\.\d+)?)\s*([kKMGT])B?$/

/** Milliseconds of a duration string, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const value = text.trim()
  if (!DURATION.test(value)) return undefined
  let ms = 0
  for (const [, n, unit] of value.matchAll(DURATION_PART)) ms += Number(n) * DURATION_UNITS[unit!]!
  return Math.round(ms)
}

/** Bytes of a size string; undefined when it is not one, `{ decimal }` for a refused decimal unit. */
export function parseSize(text: string): number | { decimal: string } | undefined {
  const value = text.trim()
  if (/^\d+$/.test(value)) return Number(value)
  const m = SIZE.exec(value)
  if (m) return Math.round(Number(m[1]) * SIZE_UNITS[m[2] ?? m[3]!]!)
  const d = DECIMAL_SIZE.exec(value)
  if (d) return { decimal: `${d[1]}${d[2]!.toUpperCase()}iB` }
  return undefined
}

/** A duration in milliseconds. Plain numbers are seconds. */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return Math.round(value * 1000)
  const ms = parseDuration(value)
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (e.g. 500ms, 30s, 5m, 1h30m)` })
    return z.NEVER
  }
  return ms
})

/** A size in bytes. Plain numbers are bytes. */
export const size = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value
  const bytes = parseSize(value)
  if (typeof bytes === 'object') {
    ctx.addIssue({ code: 'custom', message: `"${value}": decimal units are ambiguous here; write ${bytes.decimal} (binary: 1 KiB = 1024 B)` })
    return z.NEVER
  }
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (e.g. 512KiB, 64Mi, 4MiB, 1Gi)` })
    return z.NEVER
  }
  return bytes
})

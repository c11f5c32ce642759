// Human-friendly durations ("30s", "5m", 250 = seconds) and sizes ("4MiB", 1024 = bytes) for the config.
import { z } from 'zod'

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }
const SIZE_UNITS: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }

/** A duration in milliseconds. Plain numbers are seconds. */
export const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return Math.round(value * 1000)
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim())
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration (e.g. 500ms, 30s, 5m, 1h)` })
    return z.NEVER
  }
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!]!)
})

/** A size in bytes. Plain numbers are bytes. */
export const size = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)$/.exec(value.trim())
  if (!m) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (e.g. 512KiB, 4MiB, 1GiB)` })
    return z.NEVER
  }
  return Math.round(Number(m[1]) * SIZE_UNITS[m[2]!]!)
})

// JSON logs (pino). Credentials never reach a log line: header and secret fields are redacted
// wherever they appear.
import { pino, type Logger } from 'pino'
import { traceFields } from './tracing.ts'

export type { Logger }

export const REDACTED_PATHS = ['authorization', '*.authorization', '*.headers.authorization', '*.headers.cookie', 'password', '*.password', 'token', '*.token']

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'trustpull' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      // Every line written inside a traced request names its trace (nothing is added when tracing is off).
      mixin: traceFields,
    },
    // Asynchronous writes (lines are never held back waiting for more): a synchronous write per
    // audit line was ~7% of a warm request's CPU. serve flushes before it exits.
    destination ?? pino.destination({ dest: 1, sync: false }),
  )
}

// Attestation conditions: CEL expressions over an in-toto statement, where CIP puts CUE.
// @marcbachmann/cel-js: maintained, dependency-free, with parse-time type checking and limits.
import { Environment, type ParseResult } from '@marcbachmann/cel-js'
import type { InTotoStatement } from '../verify/types.ts'
import { codedError } from '../errors.ts'

export interface CompiledCondition {
  /** The expression as written. */
  source: string
  /** `{ok: true}` only when the expression evaluates to the boolean `true`; `now` defaults to the clock. */
  test(statement: InTotoStatement, now?: Date): { ok: true } | { ok: false; reason: string }
}

export class ConditionError extends codedError('CONDITION_INVALID', 'ConditionError') {}

// The variables are the statement's fields, so conditions read as in cosign/CIP policies:
// `predicate.builder.id == "..."`, `subject.exists(s, s.name == "...")`. `now` is the time of the
// evaluation (a timestamp), for freshness bounds:
// `timestamp(predicate.metadata.scanFinishedOn) > now - duration("168h")`. A verdict is cached for
// cache.allowTTL, so such a bound is kept to within that.
const environment = new Environment({
  enableOptionalTypes: true,
  homogeneousAggregateLiterals: false,
  limits: { maxAstNodes: 2_000, maxDepth: 50, maxListElements: 500, maxMapEntries: 500, maxCallArguments: 16 },
})
  .registerVariable('predicateType', 'string')
  .registerVariable('subject', 'list')
  .registerVariable('predicate', 'dyn')
  .registerVariable('now', 'google.protobuf.Timestamp')

const MAX_SOURCE = 16 * 1024

/** Parses and type-checks once; throws ConditionError with the library's message. */
export function compileCondition(source: string): CompiledCondition {
  if (source.length > MAX_SOURCE) throw new ConditionError(`expression longer than ${MAX_SOURCE} characters`)
  let program: ParseResult
  try {
    const checked = environment.check(source)
    if (!checked.valid) throw new ConditionError(firstLine(checked.error?.message ?? 'type check failed'))
    if (checked.type !== 'bool' && checked.type !== 'dyn') {
      throw new ConditionError(`the expression yields ${checked.type}, not a bool`)
    }
    program = environment.parse(source)
  } catch (err) {
    if (err instanceof ConditionError) throw err
    throw new ConditionError(firstLine((err as Error).message))
  }
  return {
    source,
    test(statement, now = new Date()) {
      let value: unknown
      try {
        value = program({ predicateType: statement.predicateType, subject: statement.subject, predicate: statement.predicate ?? null, now })
      } catch (err) {
        return { ok: false, reason: `condition could not be evaluated: ${firstLine((err as Error).message)}` }
      }
      if (value instanceof Promise) return { ok: false, reason: 'condition did not evaluate synchronously' }
      if (value === true) return { ok: true }
      return { ok: false, reason: value === false ? 'condition is false' : `condition yields ${typeof value}, not true` }
    },
  }
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.trim()
}

// `trustpull explain CODE` through the real CLI (exit 0 and the row for a known code in any case,
// 2 for an unknown one), and README.md's reason-code table is src/cli/explain.ts's table, row for
// row. That the table covers every code the code base can produce is the type checker's job
// (`satisfies Record<ReasonCode, Reason>`); here, that each code a module raises is one of them.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { REASONS, lookupReason } from '../../src/cli/explain.ts'
import { ErrorCodes } from '../../src/errors.ts'
import { REPO_ROOT, run } from '../helpers/proc.ts'

const trustpull = (args: string[]) => run(join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), ...args], { timeoutMs: 120_000 })

t.test('a known code: exit 0, its meaning and usual fix', async (t) => {
  const upper = await trustpull(['explain', 'IDENTITY_MISMATCH'])
  const lower = await trustpull(['explain', 'tlog_missing'])
  const json = await trustpull(['explain', 'DENIED', '--json'])
  t.equal(upper.code, 0, upper.stderr)
  t.match(upper.stdout, /^IDENTITY_MISMATCH \(verification\)\n {2}meaning: .*issuer or subject.*\n {2}usual fix: .+/)
  t.equal(lower.code, 0, 'any case')
  t.match(lower.stdout, /^TLOG_MISSING /)
  t.equal(json.code, 0)
  t.same(JSON.parse(json.stdout), { code: 'DENIED', ...REASONS.DENIED })
})

t.test('an unknown code or none: exit 2, one line on stderr', async (t) => {
  const unknown = await trustpull(['explain', 'NOT_A_CODE'])
  t.equal(unknown.code, 2)
  t.equal(unknown.stdout, '')
  t.equal(unknown.stderr.trim().split('\n').length, 1)
  t.match(unknown.stderr, /^trustpull: unknown reason code "NOT_A_CODE"; known codes: .*DENIED/)
  const missing = await trustpull(['explain'])
  t.equal(missing.code, 2, 'a missing argument is a usage error')
  t.equal(lookupReason('constructor'), undefined, 'no prototype keys')
})

t.test("the README table is explain's table", async (t) => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8')
  const start = readme.indexOf('## Reason codes\n')
  t.ok(start >= 0, 'README has a "Reason codes" section')
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1))
  const unescape = (s: string) => s.trim().replaceAll('\\|', '|')
  const rows = section
    .split('\n')
    .filter((l) => /^\| `[A-Z_]+` \|/.test(l))
    .map((l) =>
      l
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map(unescape),
    )
  const table = Object.fromEntries(rows.map(([code, seen, meaning, fix]) => [code!.replaceAll('`', ''), { seen, meaning, fix }]))
  t.equal(rows.length, Object.keys(table).length, 'each code once')
  t.same(table, REASONS)
})

t.test('every client-facing error code has a row', async (t) => {
  for (const code of Object.keys(ErrorCodes)) t.ok(lookupReason(code), code)
  // Codes raised by name anywhere in src/ (new RegistryError / VerifyFailure / KeyError / ... ('CODE')).
  const { execFileSync } = await import('node:child_process')
  const raised = execFileSync(
    'grep',
    ['-rhoE', String.raw`new (RegistryError|VerifyFailure|KeyError|NotationFailure|CopyError|TrustRootError)\('[A-Z_]+'`, join(REPO_ROOT, 'src')],
    { encoding: 'utf8' },
  )
  const codes = new Set([...raised.matchAll(/\('([A-Z_]+)'/g)].map((m) => m[1]!))
  t.ok(codes.size > 30, `${codes.size} codes raised in src/`)
  for (const code of codes) t.ok(lookupReason(code), `${code} (raised in src/) is explained`)
})

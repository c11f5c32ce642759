// Property-based fuzzing of the WWW-Authenticate parser (src/upstream/www-authenticate.ts), which
// reads a header every upstream (and whoever sits between it and us) controls. Properties: it
// never throws; for a challenge built from a scheme and parameters, it returns exactly those
// parameters (quoted values unescaped, keys lower-cased), whatever the values hold; a second
// challenge after the first changes nothing; over-long headers are refused.
import t from 'tap'
import fc from 'fast-check'
import { parseChallenge } from '../../src/upstream/www-authenticate.ts'

const RUNS = 5_000

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/)
/** Values as hostile as a header allows: quotes, backslashes, commas, equals signs, any Unicode. */
const value = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '"', '\\', '\\"', '","', 'a=b, c="d"', 'https://auth.example/token?x="y"'),
)
const params = fc.uniqueArray(fc.tuple(token, value), { maxLength: 6, selector: ([k]) => k.toLowerCase() })
const space = fc.constantFrom('', ' ', '  ', '\t', ' \t ')

function quote(v: string): string {
  return `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`
}

/** A challenge as a registry (or an attacker) might write it. */
const challenge = fc
  .record({ scheme: token, params, sp: fc.array(space, { minLength: 4, maxLength: 4 }), quoteTokens: fc.boolean() })
  .map(({ scheme, params, sp, quoteTokens }) => {
    const written = params.map(([k, v]) => `${k}${sp[0]}=${sp[1]}${!quoteTokens && /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(v) ? v : quote(v)}`)
    return { header: `${sp[3]}${scheme}${params.length ? ' ' : ''}${written.join(`${sp[2]},${sp[2]}`)}`, scheme, params }
  })

t.test('never throws, whatever the header', async (t) => {
  const pieces = fc
    .array(fc.oneof(token, value, fc.constantFrom('Bearer', 'Basic', 'realm', '=', '"', '\\', ',', ' ', '\t', '=""', ',,', '__proto__', 'constructor')), { maxLength: 20 })
    .map((p) => p.join(''))
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string({ maxLength: 300 }),
        fc.string({ unit: 'binary', maxLength: 300 }),
        pieces,
        challenge.map((c) => c.header),
      ),
      (header) => {
        const c = parseChallenge(header)
        if (c !== undefined && (typeof c.scheme !== 'string' || c.scheme !== c.scheme.toLowerCase())) throw new Error(`scheme ${c.scheme}`)
        if (c !== undefined && Object.values(c.params).some((v) => typeof v !== 'string')) throw new Error('a parameter that is not a string')
      },
    ),
    { numRuns: RUNS * 4 },
  )
  t.pass(`${RUNS * 4} headers`)
})

t.test('the parameters returned are exactly those written', async (t) => {
  fc.assert(
    fc.property(challenge, ({ header, scheme, params }) => {
      const c = parseChallenge(header)
      const expected = Object.fromEntries(params.map(([k, v]) => [k.toLowerCase(), v]))
      if (!c) throw new Error(`${JSON.stringify(header)} was not parsed`)
      if (c.scheme !== scheme.toLowerCase()) throw new Error(`scheme ${c.scheme}`)
      if (JSON.stringify(Object.entries(c.params).sort()) !== JSON.stringify(Object.entries(expected).sort())) {
        throw new Error(`${JSON.stringify(header)} → ${JSON.stringify(c.params)}, not ${JSON.stringify(expected)}`)
      }
      if (Object.getPrototypeOf(c.params) !== null) throw new Error('params inherit from Object.prototype')
    }),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} challenges`)
})

t.test('a second challenge after the first does not change it', async (t) => {
  fc.assert(
    fc.property(
      challenge.filter((c) => c.params.length > 0),
      challenge,
      ({ header, params }, second) => {
        // `Bearer realm="a", Basic realm="b"`: a token not followed by `=` starts the next challenge.
        const c = parseChallenge(`${header}, ${second.header.trimStart()}`)
        const expected = Object.fromEntries(params.map(([k, v]) => [k.toLowerCase(), v]))
        if (JSON.stringify(Object.entries(c?.params ?? {}).sort()) !== JSON.stringify(Object.entries(expected).sort())) {
          throw new Error(`${JSON.stringify(c?.params)}, not ${JSON.stringify(expected)}`)
        }
      },
    ),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} pairs of challenges`)
})

t.test('headers over 8 KiB are refused, not scanned', async (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 8193, max: 100_000 }), (n) => parseChallenge(`Bearer realm="${'r'.repeat(n)}"`) === undefined),
    { numRuns: 50 },
  )
  t.pass('50 lengths from 8 KiB + 1 to 100 KB')
})

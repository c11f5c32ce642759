// Property-based fuzzing of the name and reference grammar: the request path parser
// (src/http/route.ts) and references (src/oci/reference.ts). Paths come both as arbitrary text
// and as sequences of the pieces attacks are made of (dot segments, escapes, route keywords,
// separators, upper case). Properties: only RegistryError is ever thrown; nothing accepted holds
// `..`, `%`, a backslash or upper case; every valid name and reference comes back unchanged.
import t from 'tap'
import fc from 'fast-check'
import { RegistryError } from '../../src/errors.ts'
import { parseRoute, type Route } from '../../src/http/route.ts'
import { isDigest } from '../../src/oci/digest.ts'
import { isValidRepositoryName, parseReference } from '../../src/oci/reference.ts'

const RUNS = 10_000

/** parseRoute, with anything thrown that is not a RegistryError turned into a failure. */
function route(path: string): Route | undefined | RegistryError {
  try {
    return parseRoute(path)
  } catch (err) {
    if (err instanceof RegistryError) return err
    throw new Error(`parseRoute(${JSON.stringify(path)}) threw ${String(err)}`, { cause: err })
  }
}

const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/)
const digest = hex64.map((h) => `sha256:${h}`)
const component = fc.stringMatching(/^[a-z0-9]{1,6}(?:(?:\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}$/)
/** Valid repository names, with route keywords as components now and then. */
const validName = fc
  .array(fc.oneof({ weight: 4, arbitrary: component }, { weight: 1, arbitrary: fc.constantFrom('v2', 'manifests', 'blobs', 'uploads', 'tags', 'list', 'referrers') }), {
    minLength: 1,
    maxLength: 6,
  })
  .map((parts) => parts.join('/'))
  .filter((n) => n.length <= 255)
const validTag = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/)

/** The pieces path attacks are built from. */
const piece = fc.oneof(
  fc.constantFrom('/', '//', '/v2/', 'v2', '..', '.', '/../', '/./', '%2e', '%2E%2E', '%2f', '%2F', '%5c', '%00', '%25', '%', '\\', '?', '#', ';', ':', '@'),
  fc.constantFrom('manifests', 'blobs', 'uploads', 'tags', 'list', 'referrers', 'library', 'App', 'APP', 'a', '-', '_', '__', '.x', 'x.'),
  digest,
  component,
  fc.string({ maxLength: 4 }),
)
const pathLike = fc.array(piece, { maxLength: 14 }).map((parts) => `/v2/${parts.join('')}`)

t.test('parseRoute never throws anything but RegistryError', async (t) => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), pathLike), (path) => void route(path)),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} paths, arbitrary text and assembled from attack pieces`)
})

t.test('nothing accepted holds a dot segment, %, a backslash, an empty segment, or an invalid name', async (t) => {
  let accepted = 0
  fc.assert(
    fc.property(pathLike, (path) => {
      const r = route(path)
      if (r === undefined || r instanceof RegistryError) return
      accepted++
      const fail = (why: string) => {
        throw new Error(`accepted ${JSON.stringify(path)} as ${JSON.stringify(r)}: ${why}`)
      }
      if (/[%\\]/.test(path) || /\/\.\.?(\/|$)/.test(path) || path.includes('//')) fail('the path itself')
      if (!('name' in r)) return
      if (r.kind !== 'upload' && !isValidRepositoryName(r.name)) fail('the name (so no "..", "%" or upper case in it)')
      const last = r.kind === 'manifest' ? r.reference : r.kind === 'blob' || r.kind === 'referrers' ? r.digest : undefined
      if (last !== undefined && (last === '' || last === '.' || last === '..' || /[/%\\]/.test(last))) fail('the reference')
    }),
    { numRuns: RUNS },
  )
  t.ok(accepted > RUNS / 20, `${accepted} of ${RUNS} assembled paths were accepted, each of them clean`)
})

t.test('valid names and references round-trip through every route', async (t) => {
  fc.assert(
    fc.property(validName, validTag, digest, (name, tag, d) => {
      const expect = (path: string, want: Route) => {
        const got = route(path)
        if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${path}: ${JSON.stringify(got)}, not ${JSON.stringify(want)}`)
      }
      expect(`/v2/${name}/manifests/${tag}`, { kind: 'manifest', name, reference: tag })
      expect(`/v2/${name}/manifests/${d}`, { kind: 'manifest', name, reference: d })
      expect(`/v2/${name}/blobs/${d}`, { kind: 'blob', name, digest: d })
      expect(`/v2/${name}/tags/list`, { kind: 'tags', name })
      expect(`/v2/${name}/referrers/${d}`, { kind: 'referrers', name, digest: d })
    }),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} names, each with a tag and a digest, through manifests, blobs, tags/list and referrers`)
})

t.test('parseReference: never throws; a digest only when it is one, a tag only when it is one', async (t) => {
  const reference = fc.oneof(
    fc.string({ maxLength: 140 }),
    validTag,
    digest,
    digest.map((s) => s.toUpperCase()),
    hex64.map((h) => `sha512:${h}`),
    fc.constantFrom('..', '.', '-x', 'a:b', `sha256:${'a'.repeat(63)}`),
  )
  fc.assert(
    fc.property(reference, (ref) => {
      const r = parseReference(ref)
      if (r === undefined) return
      if (r.kind === 'digest' && (r.digest !== ref || !isDigest(ref))) throw new Error(`digest ${ref}`)
      if (r.kind === 'tag' && (r.tag !== ref || !/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/.test(ref))) throw new Error(`tag ${ref}`)
    }),
    { numRuns: RUNS },
  )
  fc.assert(
    fc.property(validTag, (tag) => JSON.stringify(parseReference(tag)) === JSON.stringify({ kind: 'tag', tag })),
    { numRuns: RUNS },
  )
  fc.assert(
    fc.property(digest, (d) => JSON.stringify(parseReference(d)) === JSON.stringify({ kind: 'digest', digest: d })),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} references of every kind`)
})

t.test('isValidRepositoryName agrees with the distribution grammar', async (t) => {
  const grammar = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
  fc.assert(
    fc.property(
      fc.oneof(
        validName,
        fc.string({ maxLength: 300 }),
        fc.array(piece, { maxLength: 8 }).map((p) => p.join('')),
      ),
      (name) => {
        const expected = name.length > 0 && name.length <= 255 && grammar.test(name)
        if (isValidRepositoryName(name) !== expected) throw new Error(`${JSON.stringify(name)}: ${!expected}`)
      },
    ),
    { numRuns: RUNS },
  )
  t.pass(`${RUNS} names`)
})

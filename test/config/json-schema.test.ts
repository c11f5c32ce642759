// The shipped JSON Schema (schema/trustpull.schema.json, for editors) is the zod schema's: the
// committed file equals a fresh generation, config.example.yaml validates against it, and it
// refuses what start-up refuses where JSON Schema can say so (unknown keys, wrong types, old
// secret spellings).
import t from 'tap'
import { Ajv } from 'ajv'
import addFormatsModule from 'ajv-formats'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { configJsonSchema } from '../../src/config/json-schema.ts'
import { run, REPO_ROOT } from '../helpers/proc.ts'

const FILE = new URL('../../schema/trustpull.schema.json', import.meta.url)
const committed = readFileSync(FILE, 'utf8')
const addFormats = addFormatsModule as unknown as (ajv: Ajv) => Ajv
const validate = addFormats(new Ajv({ allErrors: true, strict: false })).compile(JSON.parse(committed) as object)
const example = parseYaml(readFileSync(new URL('../../config.example.yaml', import.meta.url), 'utf8')) as unknown

t.test('the committed schema is a fresh generation (run `npm run schema` after a schema.ts change)', async (t) => {
  t.equal(committed, configJsonSchema())
  const check = await run(process.execPath, ['scripts/json-schema.ts', '--check'], { cwd: REPO_ROOT })
  t.equal(check.code, 0, check.stderr)
})

t.test('config.example.yaml validates against it', async (t) => {
  t.ok(validate(example), JSON.stringify(validate.errors))
  t.ok(validate({}), 'an empty config is valid (every key has a default)')
})

t.test('it refuses typos, wrong types and the deprecated secret spellings', async (t) => {
  const cases: [string, unknown][] = [
    ['unknown top-level key', { listne: '0.0.0.0:5000' }],
    ['unknown nested key', { cache: { allowTtl: '1h' } }],
    ['a listen address without a port', { listen: '0.0.0.0' }],
    ['a boolean as a string', { storage: { enabled: 'yes' } }],
    ['noMatchPolicy outside its enum', { noMatchPolicy: 'maybe' }],
    ['an old secret spelling', { upstreams: [{ name: 'ghcr.io', url: 'https://ghcr.io', auth: { username: 'u', passwordFile: '/run/pw' } }] }],
    ['a secret with an unknown source', { cache: { password: { path: '/run/pw' } } }],
  ]
  for (const [what, config] of cases) t.notOk(validate(config), what)
  t.ok(validate({ cache: { manifestBytes: '64Mi', allowTTL: '1h30m', password: { file: '/run/redis' } } }), 'units and the secret shape as strings')
})

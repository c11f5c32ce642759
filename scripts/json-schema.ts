// Writes schema/trustpull.schema.json: the JSON Schema of the config file, generated from the zod
// schema (src/config/schema.ts) so editors (yaml-language-server) complete and check keys. It
// describes what may be written (zod's input side: defaults optional, durations and sizes as
// strings or numbers); start-up validation stays the zod schema's, which also checks what JSON
// Schema cannot say (exactly one of value/file/env, unknown upstream names, ...).
//   npm run schema           write it
//   npm run schema -- --check  exit 1 when the committed file is stale
import { readFileSync, writeFileSync } from 'node:fs'
import { configJsonSchema } from '../src/config/json-schema.ts'

const FILE = new URL('../schema/trustpull.schema.json', import.meta.url)
const text = configJsonSchema()
if (process.argv.includes('--check')) {
  let current = ''
  try {
    current = readFileSync(FILE, 'utf8')
  } catch {
    // missing: stale
  }
  if (current !== text) {
    console.error('schema/trustpull.schema.json is stale: run npm run schema')
    process.exit(1)
  }
} else {
  writeFileSync(FILE, text)
}

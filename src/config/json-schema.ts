// The config file's JSON Schema (draft-07, what yaml-language-server and most editors read), made
// from the one zod schema so the two never drift; scripts/json-schema.ts writes it to schema/.
import { z } from 'zod'
import { configSchema } from './schema.ts'

/** The schema as the committed file holds it (stable key order, two-space indent, final newline). */
export function configJsonSchema(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-07', unrepresentable: 'any' }) as Record<string, unknown>
  const { $schema, ...rest } = schema
  return `${JSON.stringify({ $schema, title: 'trustpull configuration', ...rest }, null, 2)}\n`
}

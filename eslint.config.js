import js from '@eslint/js'
import { createNodeResolver, importX } from 'eslint-plugin-import-x'
import tseslint from 'typescript-eslint'

// Which folder of src/ may import which: arrows point down the request path (cli → server →
// core → pull → policy → verify → oci), never back. `npm exec -- node scripts/folder-graph.ts`
// prints the graph these rules keep.
const mayImport = {
  oci: ['errors.ts'],
  cache: ['upstream', 'oci', 'errors.ts'],
  config: ['policy/schema.ts', 'oci', 'errors.ts'],
  telemetry: ['config', 'version.ts', 'errors.ts'],
  verify: ['config', 'oci', 'errors.ts'],
  policy: ['verify', 'oci', 'errors.ts'],
  upstream: ['config', 'oci', 'telemetry', 'errors.ts'],
  signatures: ['upstream', 'verify', 'config', 'oci', 'errors.ts'],
  pull: ['cache', 'upstream', 'signatures', 'policy', 'verify', 'config', 'oci', 'telemetry', 'errors.ts'],
  store: ['pull', 'upstream', 'config', 'oci', 'telemetry', 'errors.ts'],
  http: ['pull', 'store', 'upstream', 'policy', 'verify', 'config', 'oci', 'telemetry', 'errors.ts'],
  'core.ts': ['cache', 'pull', 'store', 'upstream', 'signatures', 'policy', 'verify', 'config', 'oci', 'telemetry', 'errors.ts'],
  copy: ['core.ts', 'pull', 'upstream', 'signatures', 'policy', 'verify', 'config', 'oci', 'telemetry', 'errors.ts'],
  admin: ['cache', 'http', 'policy', 'verify', 'config', 'oci', 'telemetry', 'errors.ts'],
  admission: ['http', 'pull', 'upstream', 'policy', 'oci', 'telemetry', 'errors.ts'],
  'server.ts': ['core.ts', 'admin', 'admission', 'http', 'store', 'config', 'telemetry', 'errors.ts'],
}
// Only `trustpull serve` starts the server; every other command decides through the core.
const serverOnlyForServe = {
  target: './src/cli/!(serve).ts',
  from: './src/server.ts',
  message: 'only src/cli/serve.ts may import the server; other commands use src/core.ts',
}
const zones = Object.entries(mayImport).map(([folder, allowed]) => ({
  target: `./src/${folder}`,
  from: './src',
  except: [folder, ...allowed].map((p) => `./${p}`),
  message: `src/${folder} may import only ${allowed.join(', ')} (see mayImport in eslint.config.js)`,
}))

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tools/', 'test/fixtures/', 'bench/results/', '.tap/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.js'] })],
      'import-x/extensions': ['.ts'],
      'import-x/parsers': { '@typescript-eslint/parser': ['.ts'] },
    },
    rules: {
      'import-x/no-cycle': 'error',
      'import-x/no-restricted-paths': ['error', { zones: [...zones, serverOnlyForServe] }],
    },
  },
)

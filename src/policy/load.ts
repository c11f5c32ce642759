// Start-up: inline `policies:` and every ClusterImagePolicy document in `policyDirs`, compiled
// into one PolicySet. Any problem anywhere refuses start-up with every problem listed, each
// naming its file (or config entry), policy and field.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, extname, join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import type { z } from 'zod'
import { ConfigError } from '../errors.ts'
import type { LoadedTrustRoot } from '../verify/types.ts'
import { compilePolicy, type CompileContext, type IssuePath, type PolicyIssue } from './compile.ts'
import { policyFingerprint } from './fingerprint.ts'
import { clusterImagePolicySchema, type InlinePolicy } from './schema.ts'
import type { CompiledPolicy, PolicySet } from './types.ts'

export interface LoadPoliciesOptions {
  /** Loaded trust roots by name: `public-good` plus every `trustRoots[].name`. */
  trustRoots: ReadonlyMap<string, LoadedTrustRoot>
  /** Relative `key.file` paths of inline policies are resolved from here (the config file's directory). */
  configDir?: string
  env?: Readonly<Record<string, string | undefined>>
}

export interface LoadedPolicies {
  policySet: PolicySet
  /** Accepted but worth a log line at start-up (catch-all identity regexps, tag globs, unused URLs). */
  warnings: string[]
}

/** The slice of the configuration policies are made from. */
export interface PolicyConfig {
  policies: readonly InlinePolicy[]
  policyDirs: readonly string[]
  noMatchPolicy: PolicySet['noMatchPolicy']
  upstreams: readonly { name: string }[]
}

const POLICY_FILE_EXTENSIONS = new Set(['.yaml', '.yml', '.json'])

interface Collected {
  policies: CompiledPolicy[]
  errors: string[]
  warnings: string[]
}

export function loadPolicies(config: PolicyConfig, options: LoadPoliciesOptions): LoadedPolicies {
  const upstreamNames = config.upstreams.map((u) => u.name)
  const base = { trustRoots: options.trustRoots, upstreamNames, env: options.env ?? process.env }
  const out: Collected = { policies: [], errors: [], warnings: [] }

  config.policies.forEach((inline, i) => {
    const { name, ...spec } = inline
    const origin = `config policies[${i}]`
    const result = compilePolicy(name, origin, spec, { ...base, baseDir: options.configDir ?? process.cwd() })
    collect(out, result, `${origin} (policy "${name}")`, [])
  })
  for (const dir of config.policyDirs) loadDirectory(dir, base, out)

  const seen = new Map<string, string>()
  for (const p of out.policies) {
    const first = seen.get(p.name)
    if (first !== undefined) out.errors.push(`policy name "${p.name}" is defined twice: in ${first} and in ${p.origin}`)
    else seen.set(p.name, p.origin)
  }
  if (out.errors.length > 0) {
    throw new ConfigError(`refusing to start: ${out.errors.length} problem${out.errors.length > 1 ? 's' : ''} in policies:\n${out.errors.map((e) => `  - ${e}`).join('\n')}`)
  }
  const policySet: PolicySet = {
    policies: out.policies,
    noMatchPolicy: config.noMatchPolicy,
    upstreamNames,
    fingerprint: policyFingerprint(out.policies, config.noMatchPolicy, upstreamNames),
  }
  return { policySet, warnings: out.warnings }
}

/** The policies of one CIP file (all its documents); throws ConfigError listing every problem. */
export function loadPolicyFile(file: string, context: Omit<CompileContext, 'baseDir'>): { policies: CompiledPolicy[]; warnings: string[] } {
  const out: Collected = { policies: [], errors: [], warnings: [] }
  loadFile(file, context, out)
  if (out.errors.length > 0) throw new ConfigError(`refusing to start: invalid policy file ${file}:\n${out.errors.map((e) => `  - ${e}`).join('\n')}`)
  return { policies: out.policies, warnings: out.warnings }
}

function loadDirectory(dir: string, context: Omit<CompileContext, 'baseDir'>, out: Collected): void {
  let entries: string[]
  try {
    entries = readdirSync(dir).sort()
  } catch (err) {
    out.errors.push(`policyDirs: cannot read ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    return
  }
  for (const entry of entries) {
    // Dot entries are Kubernetes ConfigMap mount internals (`..data`) or editor files.
    if (entry.startsWith('.')) continue
    const path = join(dir, entry)
    let isFile: boolean
    try {
      isFile = statSync(path).isFile()
    } catch (err) {
      out.errors.push(`policyDirs: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      continue
    }
    if (!isFile) out.warnings.push(`policyDirs: ${path} not read: subdirectories are not searched`)
    else if (!POLICY_FILE_EXTENSIONS.has(extname(entry).toLowerCase())) out.warnings.push(`policyDirs: ${path} not read: not a .yaml, .yml or .json file`)
    else loadFile(path, context, out)
  }
}

function loadFile(file: string, context: Omit<CompileContext, 'baseDir'>, out: Collected): void {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    out.errors.push(`${file}: cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    return
  }
  const documents = parseAllDocuments(text, { uniqueKeys: true })
  const list = Array.isArray(documents) ? documents : [documents]
  list.forEach((doc, i) => {
    const where = list.length > 1 ? `${file} (document ${i + 1})` : file
    if (doc.errors.length > 0) {
      out.errors.push(`${where}: not valid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
      return
    }
    const raw: unknown = doc.toJS()
    if (raw === null || raw === undefined) return // an empty document (`---` at the end)
    const parsed = clusterImagePolicySchema.safeParse(raw)
    const name = (raw as { metadata?: { name?: unknown } }).metadata?.name
    const label = `${where} (ClusterImagePolicy "${typeof name === 'string' ? name : '?'}")`
    if (!parsed.success) {
      for (const issue of zodIssues(parsed.error)) out.errors.push(`${label}: ${formatPath(issue.path)}: ${issue.message}`)
      return
    }
    const result = compilePolicy(parsed.data.metadata.name, where, parsed.data.spec, { ...context, baseDir: dirname(file) })
    collect(out, result, label, ['spec'])
  })
}

function collect(out: Collected, result: ReturnType<typeof compilePolicy>, label: string, prefix: IssuePath): void {
  const line = (issue: PolicyIssue) => `${label}: ${formatPath([...prefix, ...issue.path])}: ${issue.message}`
  out.errors.push(...result.errors.map(line))
  out.warnings.push(...result.warnings.map(line))
  if (result.policy) out.policies.push(result.policy)
}

function zodIssues(error: z.ZodError): PolicyIssue[] {
  return error.issues.flatMap((issue) => {
    const path = issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))
    if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => ({ path: [...path, key], message: 'unknown field' }))
    return [{ path, message: issue.message }]
  })
}

/** `spec.authorities[0].key.data`, the way policy-controller names fields. */
export function formatPath(path: IssuePath): string {
  if (path.length === 0) return '(document)'
  return path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc === '' ? p : `${acc}.${p}`), '')
}

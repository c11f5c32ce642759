// Reads and validates the configuration (YAML file or embedded defaults) into one Config, and
// refuses, naming the key, what cannot be served safely or is ambiguous.
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { configSchema, type Config } from './schema.ts'
import { ConfigError } from '../errors.ts'
import { upgradeSecrets } from './secret.ts'

/** Validates a parsed config object; every problem is reported with the key path it concerns. */
export function parseConfig(raw: unknown, source = 'config'): Config {
  const upgraded = upgradeSecrets(raw ?? {})
  const result = configSchema.safeParse(upgraded.raw)
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${describeIssue(i)}`)
    throw new ConfigError(`invalid ${source}:\n${lines.join('\n')}`)
  }
  const config = result.data
  checkUpstreams(config)
  checkClients(config)
  if (upgraded.deprecated.length > 0) deprecations.set(config, upgraded.deprecated)
  return config
}

const deprecations = new WeakMap<Config, string[]>()

/** The old secret spellings a config was written with (start-up warns once, naming them). */
export function deprecatedKeys(config: Config): string[] {
  return deprecations.get(config) ?? []
}

function describeIssue(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`
  return issue.message
}

function checkClients(config: Config): void {
  const { clients, tls } = config
  if (clients.mtls && !tls?.clientCA) throw new ConfigError('clients.mtls: needs tls.clientCA (the CA that signs client certificates)')
  if (tls?.clientCA && !clients.mtls) throw new ConfigError('tls.clientCA: set clients.mtls: true to require client certificates (refusing an ambiguous half-configured mTLS)')
  const upstreams = new Set(config.upstreams.map((u) => u.name))
  for (const [i, rule] of clients.rules.entries()) {
    for (const u of rule.upstreams) {
      if (!upstreams.has(u)) throw new ConfigError(`clients.rules[${i}].upstreams: "${u}" is not a configured upstream`)
    }
  }
  const names = new Set(clients.tokens.map((t) => t.name))
  if (names.size !== clients.tokens.length) throw new ConfigError('clients.tokens: a name is used twice')
  if (clients.rules.length > 0 && clients.tokens.length === 0 && !clients.htpasswd && !clients.mtls) {
    throw new ConfigError('clients.rules: rules name clients, but no client authentication (tokens, htpasswd or mtls) is configured')
  }
}

function checkUpstreams(config: Config): void {
  const names = new Set<string>()
  for (const u of config.upstreams) {
    if (names.has(u.name)) throw new ConfigError(`upstreams: the name "${u.name}" is used twice`)
    names.add(u.name)
  }
  const defaults = config.upstreams.filter((u) => u.default)
  if (defaults.length > 1) {
    throw new ConfigError(`upstreams: only one may be default (${defaults.map((u) => u.name).join(', ')} are)`)
  }
}

/**
 * Loads the config file, or `embedded` without one (the schema's defaults unless a command gives
 * its own: `serve` runs on src/config/embedded.ts); `overrides` replace top-level keys.
 */
export function loadConfig(path: string | undefined, overrides: Record<string, unknown> = {}, embedded: object = {}): Config {
  const raw = path ? readConfigFile(path) : structuredClone(embedded)
  if (raw !== null && typeof raw !== 'object') throw new ConfigError(`config file ${path} must be a YAML mapping`)
  return parseConfig({ ...(raw as object), ...overrides }, path ? `config file ${path}` : 'embedded defaults')
}

export function loadConfigFile(path: string): Config {
  return loadConfig(path)
}

function readConfigFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  let raw: unknown
  try {
    raw = parseYaml(text, { uniqueKeys: true })
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(err as Error).message}`)
  }
  return raw ?? {}
}

/** The embedded defaults: listen on 127.0.0.1:5000, Docker Hub upstream, in-memory cache. */
export function defaultConfig(): Config {
  return parseConfig({}, 'embedded defaults')
}

// Notation's trust policy document (`trustpolicy.json`, version 1.0), read with notation's own
// rules: verification levels and overrides, registry scopes, `type:name` trust stores, x509.subject
// identities. Threat: a document notation itself would refuse (or read differently) quietly
// trusting more than its author meant; so whatever notation refuses stops start-up here, naming the
// field, and statement selection follows notation's (an exact scope before `*`).
import { readFileSync, lstatSync } from 'node:fs'

export type ValidationType = 'integrity' | 'authenticity' | 'authenticTimestamp' | 'expiry' | 'revocation'
export type ValidationAction = 'enforce' | 'log' | 'skip'
export type Level = 'strict' | 'permissive' | 'audit' | 'skip'

const TYPES: readonly ValidationType[] = ['integrity', 'authenticity', 'authenticTimestamp', 'expiry', 'revocation']
const ACTIONS: readonly ValidationAction[] = ['enforce', 'log', 'skip']
const E = 'enforce'
const L = 'log'
export const LEVELS: Record<Level, Record<ValidationType, ValidationAction>> = {
  strict: { integrity: E, authenticity: E, authenticTimestamp: E, expiry: E, revocation: E },
  permissive: { integrity: E, authenticity: E, authenticTimestamp: L, expiry: L, revocation: L },
  audit: { integrity: E, authenticity: L, authenticTimestamp: L, expiry: L, revocation: L },
  skip: { integrity: 'skip', authenticity: 'skip', authenticTimestamp: 'skip', expiry: 'skip', revocation: 'skip' },
}

export type StoreType = 'ca' | 'signingAuthority' | 'tsa'
const STORE_TYPES: readonly StoreType[] = ['ca', 'signingAuthority', 'tsa']

export interface TrustStatement {
  name: string
  registryScopes: string[]
  level: Level
  /** The level's actions with the overrides applied. */
  enforcement: Record<ValidationType, ValidationAction>
  trustStores: { type: StoreType; name: string }[]
  /** `*`, or `x509.subject:<DN>` values. */
  trustedIdentities: string[]
}

/** A problem notation would refuse the document for; `field` is a path inside the document. */
export class TrustPolicyError extends Error {
  override name = 'TrustPolicyError'
  readonly field: string
  constructor(field: string, message: string) {
    super(`${field}: ${message}`)
    this.field = field
  }
}

/** Reads `trustpolicy.json`: a regular file (notation refuses a symbolic link), JSON, valid. */
export function readTrustPolicy(path: string): TrustStatement[] {
  let st
  try {
    st = lstatSync(path)
  } catch {
    throw new TrustPolicyError('trustPolicy', `${path} does not exist`)
  }
  if (!st.isFile()) throw new TrustPolicyError('trustPolicy', `${path} is not a regular file (notation refuses symbolic links and directories)`)
  let doc: unknown
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    throw new TrustPolicyError('trustPolicy', `${path} is not JSON`)
  }
  return parseTrustPolicy(doc)
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
function strings(v: unknown, field: string): string[] {
  if (v === undefined || v === null) return []
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new TrustPolicyError(field, 'expected a list of strings')
  return v as string[]
}

export function parseTrustPolicy(doc: unknown): TrustStatement[] {
  if (!isObject(doc)) throw new TrustPolicyError('(document)', 'expected a JSON object')
  if (doc.version === undefined || doc.version === '') throw new TrustPolicyError('version', 'missing: it must be "1.0"')
  if (doc.version !== '1.0') throw new TrustPolicyError('version', `unsupported version ${JSON.stringify(doc.version)}: expected "1.0"`)
  const list = doc.trustPolicies
  if (!Array.isArray(list) || list.length === 0) throw new TrustPolicyError('trustPolicies', 'a trust policy document needs at least one statement')
  const statements = list.map((s, i) => parseStatement(s, `trustPolicies[${i}]`))
  const names = new Set<string>()
  const scopes = new Map<string, string>()
  statements.forEach((s, i) => {
    if (names.has(s.name)) throw new TrustPolicyError(`trustPolicies[${i}].name`, `statement name "${s.name}" is used twice`)
    names.add(s.name)
    for (const scope of s.registryScopes) {
      const other = scopes.get(scope)
      if (other !== undefined)
        throw new TrustPolicyError(`trustPolicies[${i}].registryScopes`, `scope "${scope}" is also in statement "${other}": a scope belongs to one statement`)
      scopes.set(scope, s.name)
    }
  })
  return statements
}

function parseStatement(raw: unknown, at: string): TrustStatement {
  if (!isObject(raw)) throw new TrustPolicyError(at, 'expected an object')
  if (typeof raw.name !== 'string' || raw.name === '') throw new TrustPolicyError(`${at}.name`, 'missing: every statement needs a name')
  const { level, enforcement } = parseVerification(raw.signatureVerification, `${at}.signatureVerification`)
  const trustStores = strings(raw.trustStores, `${at}.trustStores`)
  const trustedIdentities = strings(raw.trustedIdentities, `${at}.trustedIdentities`)
  const registryScopes = strings(raw.registryScopes, `${at}.registryScopes`)
  if (registryScopes.length === 0) throw new TrustPolicyError(`${at}.registryScopes`, 'needs at least one scope')
  if (registryScopes.length > 1 && registryScopes.includes('*')) throw new TrustPolicyError(`${at}.registryScopes`, 'the wildcard scope "*" cannot be used with other scopes')
  registryScopes.forEach((s, i) => {
    if (s !== '*' && !isValidScope(s))
      throw new TrustPolicyError(`${at}.registryScopes[${i}]`, `"${s}" is not a fully qualified repository (registry/repository, no scheme, tag or wildcard)`)
  })
  const stores = checkTrust(level, trustStores, trustedIdentities, at)
  return { name: raw.name, registryScopes, level, enforcement, trustStores: stores, trustedIdentities }
}

function parseVerification(raw: unknown, at: string): { level: Level; enforcement: Record<ValidationType, ValidationAction> } {
  if (!isObject(raw)) throw new TrustPolicyError(at, 'missing: give a level (strict, permissive, audit or skip)')
  const level = raw.level
  if (level === undefined || level === '') throw new TrustPolicyError(`${at}.level`, 'missing: expected strict, permissive, audit or skip')
  if (typeof level !== 'string' || !(level in LEVELS))
    throw new TrustPolicyError(`${at}.level`, `unknown level ${JSON.stringify(level)}: expected strict, permissive, audit or skip`)
  const enforcement = { ...LEVELS[level as Level] }
  const override = raw.override
  if (override === undefined || override === null || (isObject(override) && Object.keys(override).length === 0)) return { level: level as Level, enforcement }
  if (!isObject(override)) throw new TrustPolicyError(`${at}.override`, 'expected an object')
  if (level === 'skip') throw new TrustPolicyError(`${at}.override`, 'level skip cannot be customised')
  for (const [type, action] of Object.entries(override)) {
    const field = `${at}.override.${type}`
    if (!TYPES.includes(type as ValidationType)) throw new TrustPolicyError(field, `unknown validation type: expected one of ${TYPES.join(', ')}`)
    if (typeof action !== 'string' || !ACTIONS.includes(action as ValidationAction))
      throw new TrustPolicyError(field, `unknown action ${JSON.stringify(action)}: expected enforce, log or skip`)
    if (type === 'integrity') throw new TrustPolicyError(field, 'integrity verification cannot be overridden')
    if (type !== 'revocation' && action === 'skip') throw new TrustPolicyError(field, `${type} verification cannot be skipped`)
    enforcement[type as ValidationType] = action as ValidationAction
  }
  return { level: level as Level, enforcement }
}

/** The trust stores and identities a level needs (skip: none; any other: both), checked as notation does. */
export function checkTrust(level: Level, trustStores: string[], trustedIdentities: string[], at: string): TrustStatement['trustStores'] {
  if (level === 'skip') {
    if (trustStores.length > 0 || trustedIdentities.length > 0)
      throw new TrustPolicyError(`${at}.trustStores`, 'level skip takes no trust stores or trusted identities: remove them')
    return []
  }
  if (trustStores.length === 0) throw new TrustPolicyError(`${at}.trustStores`, 'missing: every level but skip needs trust stores and trusted identities')
  if (trustedIdentities.length === 0) throw new TrustPolicyError(`${at}.trustedIdentities`, 'missing: every level but skip needs trust stores and trusted identities')
  const stores = trustStores.map((s, i) => {
    const field = `${at}.trustStores[${i}]`
    const colon = s.indexOf(':')
    if (colon === -1) throw new TrustPolicyError(field, `"${s}" is not <type>:<name>`)
    const type = s.slice(0, colon)
    const name = s.slice(colon + 1)
    if (!STORE_TYPES.includes(type as StoreType)) throw new TrustPolicyError(field, `unknown trust store type "${type}": expected ca, signingAuthority or tsa`)
    if (!/^[a-zA-Z0-9_.-]+$/.test(name)) throw new TrustPolicyError(field, `trust store name "${name}" must match [a-zA-Z0-9_.-]+`)
    return { type: type as StoreType, name }
  })
  if (trustedIdentities.length > 1 && trustedIdentities.includes('*'))
    throw new TrustPolicyError(`${at}.trustedIdentities`, 'the wildcard identity "*" cannot be used with other identities')
  const dns: { raw: string; dn: Map<string, string> }[] = []
  trustedIdentities.forEach((id, i) => {
    const field = `${at}.trustedIdentities[${i}]`
    if (id === '') throw new TrustPolicyError(field, 'empty identity')
    if (id === '*') return
    const colon = id.indexOf(':')
    if (colon === -1) throw new TrustPolicyError(field, `"${id}" has no <type>: prefix`)
    const prefix = id.slice(0, colon)
    // notation passes other prefixes to plugins; trustpull runs none, so it cannot honour them.
    if (prefix !== 'x509.subject') throw new TrustPolicyError(field, `identity type "${prefix}" is unsupported (only x509.subject; other types need a verification plugin)`)
    const value = id.slice(colon + 1)
    if (value === '') throw new TrustPolicyError(field, 'x509.subject has no value')
    let dn
    try {
      dn = parseDn(value)
    } catch (err) {
      throw new TrustPolicyError(field, (err as Error).message)
    }
    for (const must of ['C', 'ST', 'O']) if (!dn.has(must)) throw new TrustPolicyError(field, `distinguished name "${value}" lacks ${must}: it must contain at least C, ST and O`)
    dns.push({ raw: id, dn })
  })
  for (const a of dns) for (const b of dns) if (a !== b && isSubsetDn(a.dn, b.dn)) throw new TrustPolicyError(`${at}.trustedIdentities`, `"${a.raw}" overlaps with "${b.raw}"`)
  return stores
}

/** An RFC 4514-style DN (`C=US, ST=WA, O=Acme`) as attribute → value; multi-valued RDNs and repeats refused. */
export function parseDn(text: string): Map<string, string> {
  const out = new Map<string, string>()
  const parts: string[] = []
  let cur = ''
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    if (ch === '\\' && i + 1 < text.length) {
      cur += text[++i]
      continue
    }
    if (ch === '+') throw new Error(`distinguished name "${text}" has a multi-valued RDN, which is unsupported`)
    if (ch === ',' || ch === ';') {
      parts.push(cur)
      cur = ''
      continue
    }
    cur += ch
  }
  parts.push(cur)
  for (const p of parts) {
    const eq = p.indexOf('=')
    const key = eq === -1 ? '' : p.slice(0, eq).trim().toUpperCase()
    const value = eq === -1 ? '' : p.slice(eq + 1).trim()
    if (key === '' || value === '') throw new Error(`distinguished name "${text}" is not a list of ATTRIBUTE=value`)
    if (out.has(key)) throw new Error(`distinguished name "${text}" repeats ${key}`)
    out.set(key, value)
  }
  return out
}

/** Every attribute of `sub` is in `of` with the same value. */
export function isSubsetDn(sub: Map<string, string>, of: Map<string, string>): boolean {
  return [...sub].every(([k, v]) => of.get(k) === v)
}

function isValidScope(scope: string): boolean {
  if (scope.includes('*')) return false
  const slash = scope.indexOf('/')
  if (slash === -1) return false
  const domain = scope.slice(0, slash)
  const repository = scope.slice(slash + 1)
  const label = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
  const component = '[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*'
  return new RegExp(`^${label}(?:\\.${label})*(?::[0-9]+)?$`).test(domain) && new RegExp(`^${component}(?:/${component})*$`).test(repository)
}

/** The statement for `registry/repository`: an exact scope wins over `*`; none means no applicable policy. */
export function selectStatement<S extends Pick<TrustStatement, 'registryScopes'>>(statements: readonly S[], artifactPath: string): S | undefined {
  return statements.find((s) => s.registryScopes.includes(artifactPath)) ?? statements.find((s) => s.registryScopes.includes('*'))
}

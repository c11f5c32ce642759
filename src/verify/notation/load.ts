// A `notation` authority's material at start-up: notation's trust policy file and trust store
// directory read unchanged, or the inline form (certificates, identities, level) as one statement
// for every image. Threat: a store or policy read differently from notation; any problem is a
// NotationConfigError naming the authority field and the place inside the file.
import { createHash } from 'node:crypto'
import { resolve } from 'node:path'
import type { NotationMaterial, NotationStatement } from './authority.ts'
import { loadTrustStore, parseCertificates, TrustStoreError } from './store.ts'
import { checkTrust, LEVELS, readTrustPolicy, TrustPolicyError, type Level } from './trust-policy.ts'

export interface NotationSpec {
  trustStore?: string | null
  trustPolicy?: string | null
  certificates?: string | null
  trustedIdentities?: string[] | null
  level?: Level | null
  revocation?: 'offline' | null
}

export class NotationConfigError extends Error {
  override name = 'NotationConfigError'
  /** The authority field at fault: trustPolicy, trustStore, certificates, trustedIdentities. */
  readonly field: string
  constructor(field: string, message: string) {
    super(message)
    this.field = field
  }
}

export interface LoadedNotation {
  material: NotationMaterial
  warnings: { field: string; message: string }[]
}

export function loadNotation(spec: NotationSpec, baseDir: string): LoadedNotation {
  const statements = spec.trustPolicy ? fromFiles(resolve(baseDir, spec.trustPolicy), resolve(baseDir, spec.trustStore!)) : [inline(spec)]
  const warnings: LoadedNotation['warnings'] = []
  const field = spec.trustPolicy ? 'trustPolicy' : 'level'
  for (const s of statements) {
    if (s.level === 'skip')
      warnings.push({ field, message: `statement "${s.name}" has level skip: images in ${s.registryScopes.join(', ')} are served without any Notation verification` })
    if (s.tsa.length > 0)
      warnings.push({
        field,
        message: `statement "${s.name}": RFC 3161 timestamps are not verified yet, so its tsa stores are unused and a signature whose certificate has expired is refused`,
      })
  }
  const hash = createHash('sha256')
  for (const s of statements) {
    hash.update(JSON.stringify({ ...s, ca: undefined, signingAuthority: undefined, tsa: undefined }))
    for (const c of [...s.ca, ...s.signingAuthority, ...s.tsa]) hash.update(c.raw)
  }
  const material: NotationMaterial = { type: 'notation', statements, version: hash.digest('hex'), ...(spec.revocation ? { revocation: spec.revocation } : {}) }
  return { material, warnings }
}

function fromFiles(policyFile: string, storeRoot: string): NotationStatement[] {
  let parsed
  try {
    parsed = readTrustPolicy(policyFile)
  } catch (err) {
    if (err instanceof TrustPolicyError)
      throw new NotationConfigError('trustPolicy', err.field === 'trustPolicy' ? err.message.replace(/^trustPolicy: /, '') : `${policyFile}: ${err.message}`)
    throw err
  }
  return parsed.map((s, i) => {
    const loaded: NotationStatement = { ...s, trustStores: s.trustStores.map((t) => `${t.type}:${t.name}`), ca: [], signingAuthority: [], tsa: [] }
    s.trustStores.forEach((t, j) => {
      try {
        loaded[t.type].push(...loadTrustStore(storeRoot, t.type, t.name))
      } catch (err) {
        if (err instanceof TrustStoreError) throw new NotationConfigError('trustStore', `${err.message} (named by ${policyFile}: trustPolicies[${i}].trustStores[${j}])`)
        throw err
      }
    })
    return loaded
  })
}

function inline(spec: NotationSpec): NotationStatement {
  const level = spec.level!
  const ids = spec.trustedIdentities ?? []
  let certs: ReturnType<typeof parseCertificates> = []
  if (level !== 'skip' && !spec.certificates) throw new NotationConfigError('certificates', 'missing: the trusted root (or signing authority) certificates, PEM')
  if (spec.certificates) {
    if (!spec.certificates.includes('-----BEGIN CERTIFICATE-----')) throw new NotationConfigError('certificates', 'expected PEM certificates')
    try {
      certs = parseCertificates(Buffer.from(spec.certificates), 'certificates')
    } catch (err) {
      throw new NotationConfigError('certificates', (err as Error).message)
    }
  }
  try {
    checkTrust(level, spec.certificates ? ['ca:inline'] : [], ids, 'inline')
  } catch (err) {
    if (!(err instanceof TrustPolicyError)) throw err
    const field = err.field.startsWith('inline.trustStores') ? 'certificates' : err.field.replace(/^inline\./, '')
    throw new NotationConfigError(field, err.message.replace(/^inline\.[^:]*: /, ''))
  }
  return { name: 'inline', registryScopes: ['*'], level, enforcement: { ...LEVELS[level] }, trustStores: [], trustedIdentities: ids, ca: certs, signingAuthority: certs, tsa: [] }
}

// A stable identity for a compiled policy set: verdicts cached under one fingerprint are never
// reused after any policy, noMatchPolicy, key or trust root changes.
import { createHash } from 'node:crypto'
import { keyHint } from '../verify/keys.ts'
import type { CompiledAuthority, CompiledPolicy, NoMatchPolicy } from './types.ts'

export function policyFingerprint(policies: readonly CompiledPolicy[], noMatchPolicy: NoMatchPolicy, upstreamNames: readonly string[]): string {
  const normalised = {
    noMatchPolicy,
    upstreamNames: [...upstreamNames].sort(),
    // Policy order has no meaning (every matching policy must pass), so it does not count.
    policies: policies.map(describePolicy).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
  }
  return createHash('sha256').update(canonicalJson(normalised)).digest('hex')
}

function describePolicy(p: CompiledPolicy) {
  return {
    name: p.name,
    mode: p.mode,
    globs: p.globs.map((g) => g.source).sort(),
    requirePlatformSignatures: p.requirePlatformSignatures,
    servePassingPlatforms: p.servePassingPlatforms,
    authorities: p.authorities.map(describeAuthority),
  }
}

function describeAuthority(a: CompiledAuthority): unknown {
  if (a.type === 'static') return { name: a.name, type: a.type, action: a.action, message: a.message ?? null }
  if (a.type === 'notation') return { name: a.name, type: a.type, notation: a.material.version, revocation: a.material.revocation ?? null, sources: a.sources }
  const m = a.material
  const trustRoot = m.trustRoot ? { name: m.trustRoot.name, version: m.trustRoot.version } : null
  const material =
    m.type === 'key'
      ? { keys: m.keys.map((k) => `${keyHint(k.key)} ${k.hashAlgorithm ?? 'sha256'}`).sort(), requireTlog: m.requireTlog, trustRoot }
      : { identities: m.identities, ignoreSCT: m.ignoreSCT, requireTlog: m.requireTlog ?? true, trustRoot }
  return {
    name: a.name,
    type: a.type,
    material,
    sources: a.sources,
    signatureFormat: a.signatureFormat ?? null,
    attestations: a.attestations.map((att) => ({ name: att.name, predicateType: att.predicateType, condition: att.condition?.source ?? null })),
  }
}

/** JSON with object keys sorted, so equal values always hash alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

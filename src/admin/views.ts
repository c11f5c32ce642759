// What the operator API and page show, shaped once for both: verdict summaries and details,
// policies in force, trust roots with their expiry. Threat: leaking key material or request
// credentials; only public keys' hints, identities and public certificate dates leave here.
import type { PolicySet } from '../policy/types.ts'
import type { LoadedTrustRoot } from '../verify/types.ts'
import type { VerdictRecord } from './history.ts'

const DAY_MS = 86_400_000
/** A validity end this far away means "open-ended" in a TrustedRoot (no `end` given). */
const OPEN_ENDED_MS = 100 * 365 * DAY_MS
/** Trust roots expiring sooner than this are flagged on the page. */
export const EXPIRY_WARNING_DAYS = 30

export function verdictSummary(r: VerdictRecord) {
  return {
    digest: r.digest,
    image: r.image,
    reference: r.reference,
    result: r.result,
    reason: r.reasons[0] ?? r.result,
    at: r.at,
    cached: r.cached,
    pulls: r.pulls,
    clients: r.clients,
  }
}

export function verdictDetail(r: VerdictRecord) {
  return {
    image: r.image,
    digest: r.digest,
    reference: r.reference,
    result: r.result,
    reasons: r.reasons,
    at: r.at,
    firstSeen: r.firstSeen,
    cached: r.cached,
    durationMs: r.durationMs,
    policyFingerprint: r.fingerprint,
    trustRoots: r.trustRoots,
    signers: r.signers,
    pulls: r.pulls,
    clients: r.clients,
    policies: r.policies.map((p) => ({
      name: p.name,
      origin: p.origin,
      mode: p.mode,
      result: p.result,
      authorities: p.authorities.map((a) => ({
        name: a.name,
        type: a.type,
        ok: a.ok,
        status: a.status,
        reasons: a.reasons,
        evidence: a.evidence.map((e) => ({
          kind: e.kind,
          format: e.format,
          where: e.origin,
          ok: e.ok,
          code: e.code ?? (e.ok ? 'VERIFIED' : 'FAILED'),
          reason: e.reason,
          signer: e.signer,
          predicateType: e.predicateType,
          tlog: e.tlog,
        })),
      })),
    })),
  }
}

export type VerdictDetail = ReturnType<typeof verdictDetail>

/** The trust roots (name and content version) behind the named policies' authorities. */
export function trustRootsOf(policySet: PolicySet, policyNames: readonly string[]): { name: string; version: string }[] {
  const seen = new Map<string, string>()
  for (const p of policySet.policies) {
    if (!policyNames.includes(p.name)) continue
    for (const a of p.authorities) {
      // Notation authorities trust their own certificate stores, not a Sigstore trust root.
      const root = a.type === 'static' || a.type === 'notation' ? undefined : a.material.trustRoot
      if (root) seen.set(root.name, root.version)
    }
  }
  return [...seen].map(([name, version]) => ({ name, version }))
}

export function policiesView(policySet: PolicySet) {
  return {
    fingerprint: policySet.fingerprint,
    noMatchPolicy: policySet.noMatchPolicy,
    policies: policySet.policies.map((p) => ({
      name: p.name,
      origin: p.origin,
      mode: p.mode,
      images: p.globs.map((g) => g.source),
      requirePlatformSignatures: p.requirePlatformSignatures,
      authorities: p.authorities.map((a) => {
        if (a.type === 'static') return { name: a.name, type: a.type, action: a.action }
        if (a.type === 'notation') {
          return {
            name: a.name,
            type: a.type,
            statements: a.material.statements.length,
            revocation: a.material.revocation,
            sources: a.sources.map((s) => `${s.upstream}/${s.repository}`),
          }
        }
        const m = a.material
        return {
          name: a.name,
          type: a.type,
          keys: m.type === 'key' ? m.keys.map((k) => k.hint ?? '(unnamed key)') : undefined,
          identities: m.type === 'keyless' ? m.identities : undefined,
          trustRoot: m.trustRoot?.name,
          sources: a.sources.map((s) => `${s.upstream}/${s.repository}`),
          attestations: a.attestations.map((t) => ({ name: t.name, predicateType: t.predicateType })),
        }
      }),
    })),
  }
}

interface Validity {
  what: string
  validFrom: string
  validUntil: string | null
  /** No longer used for new signatures (its validity ended): kept to verify old ones. */
  retired: boolean
}

export function trustRootsView(roots: ReadonlyMap<string, LoadedTrustRoot>, now = Date.now()) {
  return [...roots.values()].map((root) => {
    const m = root.material
    const validity = (what: string, start: Date, end: Date, notAfter?: Date): Validity => {
      const ends = [end.getTime() - now < OPEN_ENDED_MS ? end.getTime() : undefined, notAfter?.getTime()].filter((t): t is number => t !== undefined)
      const until = ends.length ? Math.min(...ends) : undefined
      return { what, validFrom: start.toISOString(), validUntil: until === undefined ? null : new Date(until).toISOString(), retired: end.getTime() < now }
    }
    const certs = (list: typeof m.certificateAuthorities, kind: string) =>
      list.map((ca, i) => {
        const notAfter = ca.certChain.length ? new Date(Math.min(...ca.certChain.map((c) => c.notAfter.getTime()))) : undefined
        return validity(`${kind} ${i + 1}`, ca.validFor.start, ca.validFor.end, notAfter)
      })
    const logs = (list: typeof m.tlogs, kind: string) => list.map((l) => validity(`${kind} ${l.baseURL || l.logID.toString('hex').slice(0, 16)}`, l.validFor.start, l.validFor.end))
    const items = [
      ...certs(m.certificateAuthorities, 'certificate authority'),
      ...certs(m.timestampAuthorities, 'timestamp authority'),
      ...logs(m.tlogs, 'transparency log'),
      ...logs(m.ctlogs, 'certificate transparency log'),
    ]
    const active = items.filter((i) => !i.retired && i.validUntil !== null).map((i) => Date.parse(i.validUntil!))
    const firstExpiry = active.length ? Math.min(...active) : undefined
    return {
      name: root.name,
      source: root.source,
      contentHash: root.version,
      items,
      firstExpiry: firstExpiry === undefined ? null : new Date(firstExpiry).toISOString(),
      daysToFirstExpiry: firstExpiry === undefined ? null : Math.floor((firstExpiry - now) / DAY_MS),
    }
  })
}

export type TrustRootView = ReturnType<typeof trustRootsView>[number]

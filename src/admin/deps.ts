// What the operator API and page are given: the history, the denylist, the policies and trust
// roots in force, readiness, and the access check that admits only `clients.admins`.
import type { MiddlewareHandler } from 'hono'
import type { PolicySet } from '../policy/types.ts'
import type { LoadedTrustRoot } from '../verify/types.ts'
import type { Denylist } from './denylist.ts'
import type { VerdictHistory } from './history.ts'

export interface AdminDeps {
  history: VerdictHistory
  denylist: Denylist
  policySet: () => PolicySet
  trustRoots: () => ReadonlyMap<string, LoadedTrustRoot>
  health: () => Promise<{ ready: boolean; checks: Record<string, unknown> }>
  access: MiddlewareHandler
}

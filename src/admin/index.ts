// The operator surface, assembled: verdict history and denylist (shared through Redis when
// cache.url is set), the API under /api/v1 and the page under /ui/, both behind adminAccess.
// Threat: see access.ts (who may use it) and denylist.ts (a kill switch that misses a replica).
import type { Hono } from 'hono'
import { join } from 'node:path'
import type { Config } from '../config/schema.ts'
import type { Logger } from '../telemetry/logger.ts'
import { mountApi } from './api.ts'
import type { AdminDeps } from './deps.ts'
import { Denylist } from './denylist.ts'
import { VerdictHistory } from './history.ts'
import { connectAdminRedis, type AdminRedis } from './redis.ts'
import { mountUi } from './ui.ts'
import { readSecret } from '../config/secret.ts'

export interface AdminState {
  history: VerdictHistory
  denylist: Denylist
  /** `publicUrl/ui/verdicts/<digest>`, when admin.publicUrl is set. */
  link?: (digest: string) => string
  close(): Promise<void>
}

/** Opens the history and the denylist (Redis when configured, else in process and a file). */
export async function openAdmin(config: Config, logger: Logger): Promise<AdminState> {
  let redis: AdminRedis | undefined
  if (config.cache.url) redis = await connectAdminRedis(config.cache.url, logger, config.cache.password ? readSecret(config.cache.password, 'cache.password') : undefined)
  const history = new VerdictHistory({ size: config.admin.historySize, redis, logger })
  let denylist: Denylist
  try {
    denylist = await Denylist.open({ redis, path: config.admin.denylistPath ?? join(config.storage.path, 'denylist.json'), logger })
  } catch (err) {
    await redis?.close()
    throw err
  }
  const base = config.admin.publicUrl?.replace(/\/+$/, '')
  return {
    history,
    denylist,
    ...(base ? { link: (digest: string) => `${base}/ui/verdicts/${digest}` } : {}),
    async close() {
      await Promise.allSettled([history.close(), denylist.close()])
      await redis?.close()
    },
  }
}

export function mountAdmin(app: Hono, deps: AdminDeps): void {
  mountApi(app, deps)
  mountUi(app, deps)
}

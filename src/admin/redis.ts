// The operator surface's own Redis connections (cache.url): one for commands, one subscribed to the
// denylist's change channel. Threat: a Redis outage failing pulls or start-up; commands fail at
// once while disconnected (no queue), and both connections reconnect by themselves.
import { createClient } from '@keyv/redis'
import type { Logger } from '../telemetry/logger.ts'
import { withRedisTimeout } from '../cache/tiered-store.ts'

function newClient(options: { url: string; disableOfflineQueue: boolean; socket: { connectTimeout: number; reconnectStrategy: (retries: number) => number } }) {
  return createClient(options)
}

export type RedisCommands = ReturnType<typeof newClient>

/** Keys and channels live under the verdict cache's namespace, so one prefix covers a deployment. */
export const ADMIN_PREFIX = 'trustpull::admin:'

export interface AdminRedis {
  client: RedisCommands
  /** Calls `onMessage` for every message on `channel`, and `onReady` on each (re)connection. */
  subscribe(channel: string, onMessage: (message: string) => void, onReady: () => void): Promise<void>
  close(): Promise<void>
}

export async function connectAdminRedis(url: string, logger: Logger, password?: string): Promise<AdminRedis> {
  const options = {
    url,
    ...(password !== undefined && { password }),
    disableOfflineQueue: true,
    socket: { connectTimeout: 2_000, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2_000) },
  }
  const client = newClient(options)
  // The subscriber sends nothing but SUBSCRIBE: it may wait in the offline queue for a connection.
  const subscriber = newClient({ ...options, disableOfflineQueue: false })
  // node-redis emits 'error' on every failed reconnect; the verdict cache already reports outages.
  const quiet = (err: Error): void => logger.debug({ err: err.message }, 'admin redis connection trouble')
  client.on('error', quiet)
  subscriber.on('error', quiet)
  await Promise.allSettled([withRedisTimeout(client.connect(), 3_000), withRedisTimeout(subscriber.connect(), 3_000)])
  return {
    client,
    async subscribe(channel, onMessage, onReady) {
      subscriber.on('ready', onReady)
      // Queued until Redis answers; node-redis subscribes again by itself after a reconnect.
      const subscribed = subscriber.subscribe(channel, onMessage)
      subscribed.catch((err: Error) => logger.warn({ err: err.message }, 'admin redis: subscription failed'))
      await withRedisTimeout(subscribed, 3_000).catch(() => logger.warn('admin redis: subscription pending until redis answers'))
    },
    // Bounded like the verdict cache's: a close waiting on a Redis that does not answer (a queued
    // SUBSCRIBE, a reconnect in progress) must not hold a shutdown up; then the sockets are dropped.
    async close() {
      const closed = Promise.allSettled([client.close(), subscriber.close()]).then(() => true)
      const inTime = await Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1_000).unref())])
      if (!inTime) {
        client.destroy()
        subscriber.destroy()
      }
    },
  }
}

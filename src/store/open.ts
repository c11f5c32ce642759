// Opens the content store the configuration names: the filesystem under storage.path, or S3
// (spooling under storage.path). Start-up stops, naming the key, when it cannot be written.
import type { Config } from '../config/schema.ts'
import { ConfigError } from '../errors.ts'
import type { Logger } from '../telemetry/logger.ts'
import { ContentStore } from './content-store.ts'
import { FilesystemDriver } from './filesystem.ts'
import type { S3Driver } from './s3.ts'

/** The filesystem store under storage.path, or S3 (spooling under storage.path); start-up stops, naming the key, when it cannot be written. */
export async function openContentStore(config: Config, logger: Logger): Promise<ContentStore> {
  const s3 = config.storage.s3
  let driver: FilesystemDriver | S3Driver
  if (s3) {
    // Loaded only when configured: the AWS SDK is a fifth of the heap, and every full GC walks it.
    const { S3Driver } = await import('./s3.ts')
    try {
      driver = new S3Driver({ ...s3, spoolDir: config.storage.path })
    } catch (err) {
      throw new ConfigError(`storage.s3.${(err as Error).message}`)
    }
    try {
      await driver.open()
    } catch (err) {
      await driver.close()
      throw new ConfigError(`storage.s3: ${(err as Error).message}; check storage.s3.bucket, endpoint and credentials (storage.path ${config.storage.path} holds the spool)`)
    }
  } else {
    driver = new FilesystemDriver(config.storage.path)
    try {
      await driver.open()
    } catch (err) {
      throw new ConfigError(
        `storage.path: ${config.storage.path} cannot be used for the content store (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix its permissions, or set storage.enabled: false`,
      )
    }
  }
  const store = await ContentStore.open({ driver, maxSize: config.storage.maxSize, scrubRate: config.storage.scrubRate, logger: logger.child({ component: 'store' }) })
  logger.info({ path: config.storage.path, bucket: s3?.bucket, bytes: store.bytes, objects: store.objects, maxSize: config.storage.maxSize }, 'content store opened')
  return store
}

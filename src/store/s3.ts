// The S3 driver: each object is one S3 object under `prefix + key`, so several trustpull replicas
// can share one bucket (what one verified, every replica serves). Threat: a half-written object
// must never be visible, and credentials must never leak. S3 makes an object visible only when its
// PUT or multipart upload completes, so a crash leaves at most an incomplete multipart upload
// (invisible, swept after an hour) and local spool files (emptied at start). Static credentials
// come from env or a file when configured; they are never logged.
import { createReadStream, readFileSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { isSafeKey, type StorageDriver, type StoredObject } from './driver.ts'

/** Incomplete multipart uploads older than this are aborted by sweep (a crashed replica's leftovers). */
const STALE_UPLOAD_MS = 3_600_000

export interface S3DriverOptions {
  bucket: string
  endpoint?: string
  region: string
  prefix: string
  forcePathStyle: boolean
  credentials?: { accessKeyIdEnv?: string; accessKeyIdFile?: string; secretAccessKeyEnv?: string; secretAccessKeyFile?: string }
  /** Local directory for spool files (storage.path). */
  spoolDir: string
  /** Objects listed per ListObjectsV2 page (tests use a small value to exercise pagination). */
  pageSize?: number
}

export class S3Driver implements StorageDriver {
  readonly kind = 's3' as const
  readonly spoolDir: string
  readonly bucket: string
  readonly prefix: string
  readonly #client: S3Client
  readonly #endpoint: string
  readonly #pageSize: number

  constructor(options: S3DriverOptions) {
    this.bucket = options.bucket
    this.prefix = options.prefix
    this.spoolDir = options.spoolDir
    this.#endpoint = options.endpoint ?? `s3.${options.region}.amazonaws.com`
    this.#pageSize = options.pageSize ?? 1000
    this.#client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: options.forcePathStyle,
      credentials: staticCredentials(options.credentials),
    })
  }

  /** Creates the spool directory and proves the bucket is writable: throws naming bucket and endpoint when not. */
  async open(): Promise<void> {
    await mkdir(this.spoolDir, { recursive: true })
    const probe = `${this.prefix}_probe/${process.pid}-${Date.now()}`
    try {
      await this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: probe, Body: Buffer.alloc(0) }))
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: probe }))
    } catch (err) {
      throw new Error(`bucket "${this.bucket}" at ${this.#endpoint} cannot be written (${describe(err)})`, { cause: err })
    }
  }

  #key(key: string): string {
    if (!isSafeKey(key)) throw new Error(`invalid storage key "${key.slice(0, 200)}"`)
    return this.prefix + key
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const head = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }))
      return { key, size: head.ContentLength ?? 0, lastUsed: head.LastModified?.getTime() }
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async read(key: string, range?: { start: number; end: number }): Promise<Readable | undefined> {
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key), Range: range ? `bytes=${range.start}-${range.end}` : undefined }))
      return out.Body as Readable
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
  }

  async readBytes(key: string, maxBytes: number): Promise<Buffer | undefined> {
    let out
    try {
      out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }))
    } catch (err) {
      if (isMissing(err)) return undefined
      throw err
    }
    const body = out.Body as Readable
    // Refuse by the declared length before reading a byte; count as well, in case it is absent.
    if ((out.ContentLength ?? 0) > maxBytes) {
      body.destroy()
      return undefined
    }
    const chunks: Buffer[] = []
    let total = 0
    for await (const chunk of body as AsyncIterable<Buffer>) {
      total += chunk.length
      if (total > maxBytes) {
        body.destroy()
        return undefined
      }
      chunks.push(chunk)
    }
    return Buffer.concat(chunks)
  }

  async writeBytes(key: string, bytes: Buffer): Promise<void> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.#key(key), Body: bytes, ContentLength: bytes.length }))
  }

  async publishFile(key: string, file: string): Promise<void> {
    try {
      // One PUT for small files, a multipart upload otherwise; either is visible only once complete.
      const upload = new Upload({ client: this.#client, params: { Bucket: this.bucket, Key: this.#key(key), Body: createReadStream(file) } })
      await upload.done()
    } finally {
      await rm(file, { force: true })
    }
  }

  async delete(key: string): Promise<void> {
    await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }))
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    let token: string | undefined
    do {
      const page = await this.#client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token, MaxKeys: this.#pageSize }))
      for (const o of page.Contents ?? []) {
        if (!o.Key) continue
        const key = o.Key.slice(this.prefix.length)
        if (key.startsWith('_probe/') || !isSafeKey(key)) continue
        yield { key, size: o.Size ?? 0, lastUsed: o.LastModified?.getTime() }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  }

  /** S3 has no cheap "mark used"; eviction falls back to LastModified (the publish time). */
  touch(): void {}

  async sweep(): Promise<void> {
    await rm(this.spoolDir, { recursive: true, force: true })
    await mkdir(this.spoolDir, { recursive: true })
    const before = Date.now() - STALE_UPLOAD_MS
    let keyMarker: string | undefined
    let uploadIdMarker: string | undefined
    do {
      const page = await this.#listUploads(keyMarker, uploadIdMarker)
      if (!page) return
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (u.Initiated?.getTime() ?? 0) > before) continue
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId })).catch(() => {})
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined
    } while (keyMarker)
  }

  /** A page of incomplete multipart uploads; undefined where the backend does not list them (s3rver, some gateways). */
  async #listUploads(keyMarker: string | undefined, uploadIdMarker: string | undefined): Promise<ListMultipartUploadsCommandOutput | undefined> {
    try {
      return await this.#client.send(
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: this.prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      )
    } catch (err) {
      if (err instanceof S3ServiceException && (err.name === 'NotImplemented' || err.$metadata.httpStatusCode === 501)) return undefined
      throw err
    }
  }

  async close(): Promise<void> {
    this.#client.destroy()
  }
}

/** Static credentials when configured (no IMDS or profile lookups then); undefined for the SDK default chain. */
function staticCredentials(c: S3DriverOptions['credentials']): { accessKeyId: string; secretAccessKey: string } | undefined {
  if (!c || Object.values(c).every((v) => v === undefined)) return undefined
  const accessKeyId = secret('accessKeyId', c.accessKeyIdEnv, c.accessKeyIdFile)
  const secretAccessKey = secret('secretAccessKey', c.secretAccessKeyEnv, c.secretAccessKeyFile)
  return { accessKeyId, secretAccessKey }
}

function secret(name: string, env: string | undefined, file: string | undefined): string {
  if ((env === undefined) === (file === undefined)) throw new Error(`credentials: give exactly one of ${name}Env or ${name}File`)
  if (env !== undefined) {
    const value = process.env[env]
    if (!value) throw new Error(`credentials.${name}Env: environment variable ${env} is not set`)
    return value
  }
  let value: string
  try {
    value = readFileSync(file as string, 'utf8').trim()
  } catch (err) {
    throw new Error(`credentials.${name}File: ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err })
  }
  if (!value) throw new Error(`credentials.${name}File: ${file} is empty`)
  return value
}

function isMissing(err: unknown): boolean {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode === 404 || err.name === 'NoSuchKey' || err.name === 'NotFound'
  return false
}

/** An S3 error without request details (which could carry signed URLs). */
function describe(err: unknown): string {
  if (err instanceof S3ServiceException) return `${err.name}, HTTP ${err.$metadata.httpStatusCode ?? '?'}`
  const e = err as NodeJS.ErrnoException
  return e.code ?? e.name ?? 'error'
}

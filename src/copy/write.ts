// Carries out a plan against a target, resumably: whatever the destination already has (blob by
// digest, manifest by digest, tag pointing at the same digest) is skipped. Order: blobs, the
// manifests below the root, the signature artifacts, and the root (its tag) last, so a tag at the
// destination always means a complete copy.
import type { Readable } from 'node:stream'
import { parseManifest, type Descriptor } from '../oci/manifest.ts'
import { digestOf } from '../oci/digest.ts'
import { MediaType } from '../oci/media-types.ts'
import { CopyError } from './errors.ts'
import type { BlobSource, Plan, ReferrerList } from './plan.ts'
import type { ManifestToWrite, Target } from './target.ts'

export interface Counts {
  copied: number
  skipped: number
}

export interface WriteStats {
  blobs: Counts
  manifests: Counts
  /** Signature and attestation manifests, and the fallback indexes listing them. */
  artifacts: Counts
  /** Bytes of blobs actually transferred. */
  bytes: number
}

export interface WriteOptions {
  /** Tag for the root at the destination; without one it is stored by digest. */
  tag?: string
  /** Blobs in flight at once (default 4). */
  concurrency?: number
  onBytes?: (n: number) => void
}

export function emptyStats(): WriteStats {
  return { blobs: { copied: 0, skipped: 0 }, manifests: { copied: 0, skipped: 0 }, artifacts: { copied: 0, skipped: 0 }, bytes: 0 }
}

export async function writePlan(plan: Plan, target: Target, options: WriteOptions = {}, stats: WriteStats = emptyStats()): Promise<WriteStats> {
  await runLimited([...plan.blobs], options.concurrency ?? 4, async ([digest, source]) => {
    if (await target.hasBlob(digest)) {
      stats.blobs.skipped++
      options.onBytes?.(source.size)
      return
    }
    await target.putBlob(digest, source.size, () => openBlob(source, digest), options.onBytes)
    stats.blobs.copied++
    stats.bytes += source.size
  })

  for (const child of plan.children) await putByDigest(target, child, stats.manifests)

  let referrersApi = false
  for (const artifact of plan.artifacts) {
    if (artifact.tag) continue
    if (await target.manifestDigest(artifact.digest)) {
      stats.artifacts.skipped++
      continue
    }
    referrersApi = (await target.putManifest(artifact)).referrersApi || referrersApi
    stats.artifacts.copied++
  }
  for (const list of plan.referrerLists) {
    // A destination that indexed the referrers itself needs no fallback tag, unless the source had one.
    if (referrersApi && list.viaApi) continue
    await putReferrerList(target, list, stats.artifacts)
  }
  for (const artifact of plan.artifacts) {
    if (artifact.tag) await putTagged(target, artifact, artifact.tag, stats.artifacts)
  }

  if (options.tag) await putTagged(target, plan.root, options.tag, stats.manifests)
  else if (await target.manifestDigest(plan.root.digest)) {
    stats.manifests.skipped++
    if (target.listsRoots) await target.putManifest(plan.root, { root: true })
  } else {
    await target.putManifest(plan.root, { root: true })
    stats.manifests.copied++
  }
  await target.commit()
  return stats
}

async function openBlob(source: BlobSource, digest: string): Promise<Readable> {
  let res
  try {
    res = await source.client.getBlob(source.repository, digest)
  } catch (err) {
    throw new CopyError('SOURCE_ERROR', `reading blob ${digest} from ${source.client.name}/${source.repository}: ${(err as Error).message}`, { cause: err })
  }
  if (!res) throw new CopyError('SOURCE_ERROR', `blob ${digest} is missing at ${source.client.name}/${source.repository}`)
  if (res.headers.contentLength !== undefined && res.headers.contentLength !== source.size) {
    res.body.destroy()
    throw new CopyError('SOURCE_ERROR', `blob ${digest} at ${source.client.name} is ${res.headers.contentLength} bytes, its descriptor says ${source.size}`)
  }
  return res.body
}

async function putByDigest(target: Target, manifest: ManifestToWrite, counts: Counts): Promise<void> {
  if (await target.manifestDigest(manifest.digest)) {
    counts.skipped++
    return
  }
  await target.putManifest(manifest)
  counts.copied++
}

async function putTagged(target: Target, manifest: ManifestToWrite, tag: string, counts: Counts): Promise<void> {
  if ((await target.manifestDigest(tag)) === manifest.digest) {
    counts.skipped++
    return
  }
  await target.putManifest(manifest, { tag })
  counts.copied++
}

/**
 * The fallback tag `sha256-<hex>` at the destination lists what it listed before plus what was
 * copied; the source's own index is written unchanged when that is all it needs to list.
 */
async function putReferrerList(target: Target, list: ReferrerList, counts: Counts): Promise<void> {
  const existing = await target.getManifest(list.tag)
  let listed: Descriptor[] = []
  if (existing) {
    try {
      const parsed = parseManifest(existing.bytes, existing.mediaType)
      if (parsed.kind === 'index') listed = parsed.manifests
    } catch {
      // unreadable: replaced below
    }
  }
  const have = new Set(listed.map((d) => d.digest))
  const missing = list.entries.filter((d) => !have.has(d.digest))
  if (existing && missing.length === 0 && listed.length > 0) {
    counts.skipped++
    return
  }
  let manifest: ManifestToWrite
  if (list.original && listed.every((d) => list.entries.some((e) => e.digest === d.digest))) manifest = list.original
  else {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [...listed, ...missing] }))
    manifest = { bytes, digest: digestOf(bytes), mediaType: MediaType.ociIndex }
  }
  await target.putManifest(manifest, { tag: list.tag })
  counts.copied++
}

async function runLimited<T>(items: T[], n: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed: unknown
  const worker = async () => {
    while (next < items.length && failed === undefined) {
      const item = items[next++]!
      try {
        await task(item)
      } catch (err) {
        failed ??= err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker))
  if (failed !== undefined) throw failed
}

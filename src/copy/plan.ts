// What one image copy writes, gathered completely (and digest-checked) before the first write:
// the verified manifest, every manifest below it, every blob they reference, and the signature
// and attestation artifacts of each of those manifests: legacy cosign tags (`sha256-<hex>.sig`,
// `.att`), OCI 1.1 referrers (from the referrers API, or the fallback tag `sha256-<hex>`).
// Only what the proxy itself would serve unverified counts as an artifact (signature, attestation,
// bundle and SBOM documents): anything else attached to an image stays behind, and is reported.
import type { Config } from '../config/schema.ts'
import { RegistryError } from '../errors.ts'
import { digestTag } from '../oci/digest.ts'
import { ManifestError, parseManifest, type Descriptor, type Manifest } from '../oci/manifest.ts'
import { MANIFEST_TYPES, MediaType } from '../oci/media-types.ts'
import { isSignatureArtifact } from '../pull/signature-artifacts.ts'
import type { FetchedManifest, RegistryClient } from '../upstream/types.ts'
import { CopyError } from './errors.ts'
import type { ManifestToWrite } from './target.ts'

/** Indexes of indexes are allowed, this deep. */
const MAX_DEPTH = 4

export type PlanLimits = Pick<Config['limits'], 'manifestBytes' | 'signatureManifestBytes' | 'signatureLayerBytes' | 'maxReferrers'>

export interface ArtifactManifest extends ManifestToWrite {
  /** `sha256-<hex>.sig` / `.att`; referrers have none (they are found through their subject). */
  tag?: string
}

/** The referrers of one subject, to be listed at the destination (fallback tag) unless it indexes them itself. */
export interface ReferrerList {
  subject: string
  /** `sha256-<hex>` */
  tag: string
  entries: Descriptor[]
  /** The source's own fallback index, when every entry it lists is copied: written as it is. */
  original?: ManifestToWrite
  /** Found through the source's referrers API (not a fallback tag). */
  viaApi: boolean
}

export interface Plan {
  root: ManifestToWrite
  /** Manifests below the root, each after the ones it lists. */
  children: ManifestToWrite[]
  /** Every blob of the image and its artifacts, by digest, with where to read it. */
  blobs: Map<string, BlobSource>
  artifacts: ArtifactManifest[]
  referrerLists: ReferrerList[]
  /** What was seen but is not copied, and why. */
  notes: string[]
}

export interface SignatureStore {
  client: RegistryClient
  repository: string
}

export interface BlobSource extends SignatureStore {
  size: number
}

/** The image below `root`: every manifest (fetched by digest, so digest-checked) and blob. */
export async function planImage(client: RegistryClient, repository: string, root: FetchedManifest, limits: PlanLimits): Promise<Pick<Plan, 'root' | 'children' | 'blobs'>> {
  const children: ManifestToWrite[] = []
  const blobs = new Map<string, BlobSource>()
  const seen = new Set<string>([root.digest])
  const walk = async (manifest: Manifest, depth: number): Promise<void> => {
    if (manifest.kind === 'manifest') {
      for (const d of [manifest.config, ...manifest.layers]) blobs.set(d.digest, { size: d.size, client, repository })
      return
    }
    if (depth >= MAX_DEPTH) throw new CopyError('SOURCE_ERROR', `indexes nested more than ${MAX_DEPTH} deep`)
    for (const d of manifest.manifests) {
      if (seen.has(d.digest)) continue
      seen.add(d.digest)
      if (!MANIFEST_TYPES.has(d.mediaType)) throw new CopyError('SOURCE_ERROR', `index lists ${d.digest} of unsupported type ${d.mediaType}`)
      const fetched = await read(client, repository, d.digest, { accept: [d.mediaType], maxBytes: limits.manifestBytes })
      if (!fetched) throw new CopyError('SOURCE_ERROR', `${d.digest}, listed by the index, is missing at the source`)
      const child = { bytes: fetched.bytes, digest: d.digest, mediaType: d.mediaType }
      await walk(parse(child), depth + 1)
      children.push(child)
    }
  }
  await walk(parse(root), 0)
  return { root: { bytes: root.bytes, digest: root.digest, mediaType: root.mediaType }, children, blobs }
}

/** The signature and attestation artifacts of each subject digest, from each store (own repository first). */
export async function planArtifacts(stores: SignatureStore[], subjects: string[], limits: PlanLimits): Promise<Pick<Plan, 'artifacts' | 'referrerLists' | 'blobs' | 'notes'>> {
  const artifacts: ArtifactManifest[] = []
  const referrerLists: ReferrerList[] = []
  const blobs = new Map<string, BlobSource>()
  const notes: string[] = []
  const taken = new Set<string>()
  let store: SignatureStore = stores[0]!

  const take = (fetched: ManifestToWrite, manifest: Manifest, tag: string | undefined, where: string): boolean => {
    if (!isSignatureArtifact(manifest) || manifest.kind !== 'manifest') {
      notes.push(`${where}: ${fetched.digest} is not a signature or attestation artifact; not copied`)
      return false
    }
    const big = manifest.layers.find((l) => l.size > limits.signatureLayerBytes)
    if (big) {
      notes.push(`${where}: layer ${big.digest} of ${fetched.digest} is over the ${limits.signatureLayerBytes}-byte signature limit; not copied`)
      return false
    }
    const key = tag ?? fetched.digest
    if (taken.has(key)) return true
    taken.add(key)
    artifacts.push({ ...fetched, ...(tag ? { tag } : {}) })
    for (const d of [manifest.config, ...manifest.layers]) if (!blobs.has(d.digest)) blobs.set(d.digest, { size: d.size, ...store })
    return true
  }

  for (const subject of subjects) {
    for (const current of stores) {
      store = current
      const { client, repository } = current
      const where = `${client.name}/${repository}`
      for (const suffix of ['.sig', '.att']) {
        const tag = digestTag(subject, suffix)
        if (taken.has(tag)) {
          notes.push(`${where}: ${tag} is also present in an earlier signature source; the first one is copied`)
          continue
        }
        const fetched = await read(client, repository, tag, { accept: [MediaType.ociManifest, MediaType.dockerManifest], maxBytes: limits.signatureManifestBytes })
        if (fetched) take(fetched, parse(fetched), tag, `${where}:${tag}`)
      }
      const list = await planReferrers(client, repository, subject, limits, take, notes)
      if (list) referrerLists.push(list)
    }
  }
  return { artifacts, referrerLists, blobs, notes }
}

async function planReferrers(
  client: RegistryClient,
  repository: string,
  subject: string,
  limits: PlanLimits,
  take: (fetched: ManifestToWrite, manifest: Manifest, tag: string | undefined, where: string) => boolean,
  notes: string[],
): Promise<ReferrerList | undefined> {
  const tag = digestTag(subject)
  const where = `${client.name}/${repository}`
  let listing: FetchedManifest | undefined
  let viaApi = true
  try {
    listing = await client.getReferrers(repository, subject, { maxBytes: limits.signatureManifestBytes })
  } catch (err) {
    throw sourceError(err, `listing referrers of ${subject} in ${where}`)
  }
  if (!listing) {
    viaApi = false
    listing = await read(client, repository, tag, { accept: [MediaType.ociIndex], maxBytes: limits.signatureManifestBytes })
    if (!listing) return undefined
  }
  const index = parse(listing)
  if (index.kind !== 'index') {
    notes.push(`${where}:${tag} is not an index; not copied`)
    return undefined
  }
  const entries: Descriptor[] = []
  let complete = true
  for (const [i, d] of index.manifests.entries()) {
    if (i >= limits.maxReferrers) {
      notes.push(`${where}: more than ${limits.maxReferrers} referrers of ${subject}; the rest are not copied`)
      complete = false
      break
    }
    if (d.mediaType !== MediaType.ociManifest && d.mediaType !== MediaType.dockerManifest) {
      notes.push(`${where}: referrer ${d.digest} of type ${d.mediaType} is not copied`)
      complete = false
      continue
    }
    const fetched = await read(client, repository, d.digest, { accept: [d.mediaType], maxBytes: limits.signatureManifestBytes })
    if (!fetched) {
      notes.push(`${where}: referrer ${d.digest} is listed but missing`)
      complete = false
      continue
    }
    const manifest = parse({ ...fetched, mediaType: d.mediaType })
    if (manifest.subject && manifest.subject.digest !== subject) {
      notes.push(`${where}: referrer ${d.digest} is about ${manifest.subject.digest}, not ${subject}; not copied`)
      complete = false
      continue
    }
    if (take({ bytes: fetched.bytes, digest: d.digest, mediaType: d.mediaType }, manifest, undefined, `${where} referrer`)) entries.push(d)
    else complete = false
  }
  if (entries.length === 0) return undefined
  const original = !viaApi && complete ? { bytes: listing.bytes, digest: listing.digest, mediaType: listing.mediaType } : undefined
  return { subject, tag, entries, viaApi, ...(original ? { original } : {}) }
}

async function read(client: RegistryClient, repository: string, reference: string, options: { accept: string[]; maxBytes: number }): Promise<FetchedManifest | undefined> {
  try {
    return await client.getManifest(repository, reference, options)
  } catch (err) {
    throw sourceError(err, `reading ${client.name}/${repository}:${reference}`)
  }
}

function parse(m: ManifestToWrite | FetchedManifest): Manifest {
  try {
    return parseManifest(m.bytes, m.mediaType)
  } catch (err) {
    throw sourceError(err, `manifest ${m.digest}`)
  }
}

function sourceError(err: unknown, what: string): CopyError {
  if (err instanceof CopyError) return err
  if (err instanceof RegistryError || err instanceof ManifestError) return new CopyError('SOURCE_ERROR', `${what}: ${err.message}`, { cause: err })
  return new CopyError('SOURCE_ERROR', `${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
}

// One image from SRC to DST: resolve, verify with the proxy's own policy gate, gather everything
// (image, platforms, blobs, signature and attestation artifacts) and only then write. A refused or
// unverifiable image leaves nothing behind at the destination: no directory, no blob, no tag.
//
// Sources in a layout or archive are verified from the signatures they carry (the core's
// `signatureClient` hands discovery the layout instead of a registry), so an import needs no
// network: trust comes from the configured trust roots (a `trusted_root.json` file offline) and
// the Rekor SETs / inclusion proofs and timestamps inside the signatures.
import { dirname, resolve as resolvePath } from 'node:path'
import type { Config } from '../config/schema.ts'
import { RegistryError } from '../errors.ts'
import { isDigest } from '../oci/digest.ts'
import { ManifestError, parseManifest } from '../oci/manifest.ts'
import { isDockerHub, normaliseDockerHubRepository } from '../oci/image-name.ts'
import { matchingPolicies } from '../policy/evaluate.ts'
import type { Verdict } from '../policy/types.ts'
import { buildCore, type Core } from '../core.ts'
import { createLogger } from '../telemetry/logger.ts'
import type { FetchedManifest, RegistryClient } from '../upstream/types.ts'
import { ArchiveWriter, openArchive } from './archive.ts'
import { destinationRegistry, type DestinationOptions } from './destination.ts'
import { endpointString, parseEndpoint, splitRegistry, type Endpoint } from './endpoint.ts'
import { CopyError } from './errors.ts'
import { LayoutReader, LayoutWriter } from './layout.ts'
import { planArtifacts, planImage, type Plan, type SignatureStore } from './plan.ts'
import { silentProgress, type ProgressSink } from './progress.ts'
import { PushClient } from './registry-target.ts'
import type { Target } from './target.ts'
import type { CopyJob, CopyResult } from './result.ts'
import { emptyStats, writePlan } from './write.ts'

export interface CopierOptions {
  /** The config file's directory (relative key files in policies are resolved from it). */
  configDir?: string
  auth?: DestinationOptions
  /** A trusted_root.json used instead of the embedded public-good root. */
  trustedRoot?: string
  /** Blobs in flight at once per image (default 4). */
  blobConcurrency?: number
}

interface OpenedSource {
  client: RegistryClient
  repository: string
  /** The name policies match: `upstream/repository`. */
  identity: { upstream: string; repository: string }
  reference: string
  /** The tag the source was asked for, carried to the destination when it names none. */
  tag?: string
  layout: boolean
  close(): Promise<void>
}

export async function createCopier(config: Config, options: CopierOptions = {}): Promise<Copier> {
  const layoutSignatures = new Map<string, RegistryClient>()
  const core = await buildCore(config, {
    logger: createLogger('silent'),
    ...(options.configDir ? { configDir: options.configDir } : {}),
    ...(options.trustedRoot ? { trustedRoot: options.trustedRoot } : {}),
    signatureClient: (_location, image) => layoutSignatures.get(imageKey(image.upstream, image.repository, image.digest)),
  })
  return new Copier(core, layoutSignatures, options)
}

/** The directory relative paths of `--config FILE` are resolved from. */
export function configDirOf(file: string | undefined): string | undefined {
  return file ? dirname(resolvePath(file)) : undefined
}

function imageKey(upstream: string, repository: string, digest: string): string {
  return `${upstream}/${repository}@${digest}`
}

export class Copier {
  readonly core: Core
  readonly #layoutSignatures: Map<string, RegistryClient>
  readonly #options: CopierOptions
  readonly #pushClients = new Map<string, PushClient>()

  constructor(core: Core, layoutSignatures: Map<string, RegistryClient>, options: CopierOptions) {
    this.core = core
    this.#layoutSignatures = layoutSignatures
    this.#options = options
  }

  get config(): Config {
    return this.core.config
  }

  async close(): Promise<void> {
    await Promise.allSettled([...[...this.#pushClients.values()].map((c) => c.close()), this.core.close()])
  }

  /** Copies one image; never throws for a copy that fails (the result says why). */
  async copy(job: CopyJob, id = 0, progress: ProgressSink = silentProgress): Promise<CopyResult> {
    const started = performance.now()
    const result: CopyResult = { source: job.source, destination: job.destination, status: 'failed', stats: emptyStats(), notes: [], warnings: [], durationMs: 0 }
    progress.begin(id, job.source, job.destination)
    let source: OpenedSource | undefined
    let target: Target | undefined
    try {
      const src = parseEndpoint(job.source)
      const dst = parseEndpoint(job.destination)
      if (job.as !== undefined && src.kind === 'registry')
        throw new CopyError('BAD_ENDPOINT', '--as names the image of a layout or archive source; a registry source has its own name')
      progress.phase(id, 'resolving')
      source = await this.#openSource(src, dst, job.as)
      result.image = `${source.identity.upstream}/${source.identity.repository}`
      const root = await this.#fetchRoot(source)
      result.digest = root.digest
      result.mediaType = root.mediaType
      if (dst.digest && dst.digest !== root.digest) throw new CopyError('BAD_ENDPOINT', `the destination names ${dst.digest} but ${job.source} is ${root.digest}`)

      progress.phase(id, 'verifying', root.digest)
      const verdict = await this.#verdict(source, root)
      result.verdict = {
        result: verdict.result,
        reasons: verdict.reasons,
        signers: verdict.signers,
        policies: verdict.policies.map((p) => ({ name: p.name, result: p.result })),
      }
      if (verdict.result === 'deny') {
        result.status = 'refused'
        throw new CopyError('REFUSED', `${verdict.image}@${verdict.digest} is not verified: ${verdict.reasons[0] ?? 'denied by policy'}; nothing was copied`)
      }
      if (verdict.result === 'error') {
        throw new CopyError('UNVERIFIED', `${verdict.image}@${verdict.digest} could not be verified: ${verdict.reasons[0] ?? verdict.errorCode ?? 'error'}; nothing was copied`)
      }
      if (verdict.result === 'warn') result.warnings.push(`not verified, copied because policy is in warn mode: ${verdict.reasons[0] ?? ''}`)

      progress.phase(id, 'planning')
      const plan = await this.#plan(source, root)
      result.notes = plan.notes
      let total = 0
      for (const b of plan.blobs.values()) total += b.size
      progress.total(id, total)

      progress.phase(id, 'copying', `${plan.blobs.size} blobs, ${plan.children.length + 1} manifests, ${plan.artifacts.length} signature artifacts`)
      target = await this.#openTarget(dst)
      const tag = dst.tag ?? source.tag
      await writePlan(plan, target, { ...(tag ? { tag } : {}), concurrency: this.#options.blobConcurrency ?? 4, onBytes: (n) => progress.advance(id, n) }, result.stats)
      result.status = 'copied'
    } catch (err) {
      if (result.status !== 'refused') result.status = 'failed'
      result.error = describe(err)
    } finally {
      await Promise.allSettled([source?.close(), target?.close()])
      result.durationMs = Math.round(performance.now() - started)
      progress.end(id, result)
    }
    return result
  }

  /** The destination of `source` under a batch prefix (`registry/prefix`, `oci:DIR`, `oci-archive:DIR`). */
  destinationUnder(prefix: string, source: string): string {
    const src = parseEndpoint(source)
    const dst = parseEndpoint(prefix)
    if (src.kind !== 'registry') throw new CopyError('BAD_ENDPOINT', `${source}: a layout source in a list needs its own destination ("SRC DST" on the line)`)
    if (dst.tag || dst.digest) throw new CopyError('BAD_ENDPOINT', `destination prefix ${prefix} must not name a tag or digest`)
    let repository: string
    try {
      repository = this.core.router.resolve(undefined, src.name).repository
    } catch (err) {
      throw new CopyError('BAD_ENDPOINT', `${source}: ${(err as Error).message}`, { cause: err })
    }
    // The tag travels; a digest-only source is stored by digest (a layout lists it untagged).
    const tag = src.tag ?? (src.digest ? undefined : 'latest')
    const suffix = tag ? `:${tag}` : ''
    const base = dst.kind === 'registry' ? dst.name : dst.path
    const under = `${base.replace(/\/$/, '')}/${repository}`
    if (dst.kind === 'registry') return `${under}${suffix}`
    return dst.kind === 'oci' ? `oci:${under}${suffix}` : `oci-archive:${under}.tar${suffix}`
  }

  async #openSource(src: Endpoint, dst: Endpoint, as: string | undefined): Promise<OpenedSource> {
    if (src.kind === 'registry') {
      let resolved
      try {
        resolved = this.core.router.resolve(undefined, src.name)
      } catch (err) {
        throw new CopyError('BAD_ENDPOINT', `${endpointString(src)}: ${(err as Error).message}`, { cause: err })
      }
      return {
        client: resolved.upstream.client,
        repository: resolved.repository,
        identity: { upstream: resolved.upstream.config.name, repository: resolved.repository },
        reference: src.digest ?? src.tag ?? 'latest',
        ...(src.digest ? {} : { tag: src.tag ?? 'latest' }),
        layout: false,
        close: async () => {},
      }
    }
    const identity = layoutIdentity(dst, as)
    const manifestBytes = this.config.limits.manifestBytes
    let reader: LayoutReader
    let close = async () => {}
    if (src.kind === 'oci') reader = await LayoutReader.open(src.path, { manifestBytes })
    else ({ reader, close } = await openArchive(src.path, manifestBytes))
    try {
      const reference = src.digest ?? src.tag ?? reader.defaultReference()
      return { client: reader, repository: identity.repository, identity, reference, ...(isDigest(reference) ? {} : { tag: reference }), layout: true, close }
    } catch (err) {
      await close()
      throw err
    }
  }

  async #fetchRoot(source: OpenedSource): Promise<FetchedManifest> {
    let fetched
    try {
      fetched = await source.client.getManifest(source.repository, source.reference)
    } catch (err) {
      throw new CopyError('SOURCE_ERROR', `reading ${source.client.name}/${source.repository}:${source.reference}: ${(err as Error).message}`, { cause: err })
    }
    if (!fetched) throw new CopyError('NOT_FOUND', `${source.reference} not found in ${source.client.name}/${source.repository}`)
    return fetched
  }

  async #verdict(source: OpenedSource, root: FetchedManifest): Promise<Verdict> {
    let manifest
    try {
      manifest = parseManifest(root.bytes, root.mediaType)
    } catch (err) {
      throw new CopyError('SOURCE_ERROR', `${source.reference}: ${(err as Error).message}`, { cause: err })
    }
    const { upstream, repository } = source.identity
    const key = imageKey(upstream, repository, root.digest)
    if (source.layout) this.#layoutSignatures.set(key, source.client)
    try {
      return await this.core.gate.verdict({ upstream, repository, digest: root.digest, mediaType: root.mediaType, manifest, bytes: root.bytes, reference: source.reference })
    } finally {
      if (source.layout) this.#layoutSignatures.delete(key)
    }
  }

  async #plan(source: OpenedSource, root: FetchedManifest): Promise<Plan> {
    const image = await planImage(source.client, source.repository, root, this.config.limits)
    const stores: SignatureStore[] = [{ client: source.client, repository: source.repository }]
    if (!source.layout) {
      // Signatures kept elsewhere (`source.oci`) travel too: beside the image at the destination.
      for (const policy of matchingPolicies(this.core.policySet(), source.identity.upstream, source.identity.repository)) {
        for (const authority of policy.authorities) {
          if (authority.type === 'static') continue
          for (const location of authority.sources) {
            const upstream = this.core.router.byName(location.upstream)
            if (!upstream || stores.some((s) => s.client === upstream.client && s.repository === location.repository)) continue
            stores.push({ client: upstream.client, repository: location.repository })
          }
        }
      }
    }
    const subjects = [image.root.digest, ...image.children.map((c) => c.digest)]
    const artifacts = await planArtifacts(stores, subjects, this.config.limits)
    const blobs = new Map(image.blobs)
    for (const [digest, b] of artifacts.blobs) if (!blobs.has(digest)) blobs.set(digest, b)
    return { ...image, blobs, artifacts: artifacts.artifacts, referrerLists: artifacts.referrerLists, notes: artifacts.notes }
  }

  async #openTarget(dst: Endpoint): Promise<Target> {
    const manifestBytes = this.config.limits.manifestBytes
    if (dst.kind !== 'registry') {
      if (dst.kind === 'oci-archive') return ArchiveWriter.open(dst.path, manifestBytes)
      const writer = new LayoutWriter(dst.path)
      await writer.init(manifestBytes)
      return writer
    }
    const { registry, repository } = splitRegistry(dst.name)
    // Credentials may be scoped to a namespace (an auth file key `registry/ns`): one client per
    // registry and credentials.
    const destination = destinationRegistry(registry, this.config, this.#options.auth, repository)
    const key = `${registry}\0${destination.credentials?.username ?? ''}\0${destination.credentials?.password ?? ''}`
    let client = this.#pushClients.get(key)
    if (!client) {
      client = new PushClient(destination, { timeouts: this.config.timeouts, manifestBytes })
      this.#pushClients.set(key, client)
    }
    return client.target(isDockerHub(registry) ? normaliseDockerHubRepository(repository) : repository)
  }
}

/** The name a layout's image is verified under: `--as`, else the destination registry's name for it. */
function layoutIdentity(dst: Endpoint, as: string | undefined): { upstream: string; repository: string } {
  const name = as ?? (dst.kind === 'registry' ? dst.name : undefined)
  if (name === undefined) {
    throw new CopyError('BAD_ENDPOINT', 'copying from a layout or archive into another layout: give --as REGISTRY/REPOSITORY, the name policies are matched against')
  }
  const { registry, repository } = splitRegistry(name)
  return { upstream: registry, repository: isDockerHub(registry) ? normaliseDockerHubRepository(repository) : repository }
}

function describe(err: unknown): { code: string; message: string } {
  if (err instanceof CopyError) return { code: err.code, message: err.message }
  if (err instanceof RegistryError) return { code: err.code, message: err.message }
  if (err instanceof ManifestError) return { code: 'SOURCE_ERROR', message: err.message }
  const e = err as { code?: unknown; message?: unknown }
  return { code: typeof e.code === 'string' ? e.code : 'INTERNAL', message: typeof e.message === 'string' ? e.message : String(err) }
}

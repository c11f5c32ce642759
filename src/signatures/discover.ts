// Finds every signature and attestation of an image digest in a repository (network only; nothing
// is verified here). Sources, all consulted:
// - the OCI 1.1 referrers API, or the fallback tag `sha256-<hex>` when it answers 404;
// - the legacy cosign tags `sha256-<hex>.sig` and `sha256-<hex>.att`.
// Notation signature manifests among the referrers yield their envelope as a NotationCandidate.
// Upstream answers are hostile input: every fetch is bounded by the configured limits, and whatever
// cannot be used becomes a DiscoveryProblem with a code, never an exception for the others.
// The same walk lists the referrers of a digest (`listReferrers`, for the referrers endpoint):
// every listed manifest is read, so its real artifactType and subject are known, not the
// descriptor's word for them.
import type { SerializedBundle } from '@sigstore/bundle'
import type { Config } from '../config/schema.ts'
import { LimitExceededError, RegistryError } from '../errors.ts'
import { digestTag, parseDigest } from '../oci/digest.ts'
import { ManifestError, parseManifest, type Descriptor, type ImageIndex, type ImageManifest, type Manifest } from '../oci/manifest.ts'
import { MediaType } from '../oci/media-types.ts'
import type { FetchedManifest, RegistryClient } from '../upstream/types.ts'
import { parseBundle } from '../verify/bundle.ts'
import { COSIGN_SIGN_PREDICATE } from '../verify/payload.ts'
import { isNotationSignature } from '../oci/notation-signature.ts'
import type { Candidate, CandidateOrigin, Discovery, DiscoveryProblem, NotationCandidate, VerifyCode } from '../verify/types.ts'
import { CosignAnnotation, envelopePredicateType, legacyAttestationBundles, legacySignatureBundle } from './legacy.ts'

export type DiscoveryLimits = Pick<Config['limits'], 'manifestBytes' | 'signatureManifestBytes' | 'signatureLayerBytes' | 'bundleBytes' | 'maxSignatures' | 'maxReferrers'>

export interface DiscoverOptions {
  signal?: AbortSignal
  /**
   * The image manifest's bytes, when the caller already has them: a message-signature bundle signs
   * them. Otherwise they are fetched (by digest) only if such a bundle turns up.
   */
  imageManifest?: Buffer
  /** Where the image lives, when its signatures are looked up elsewhere (`source.oci`). */
  imageRepository?: string
  /** Fetches in flight at once (default 4). */
  concurrency?: number
}

const BUNDLE_TYPE = /^application\/vnd\.dev\.sigstore\.bundle(\.v0\.\d+\+json|\+json;version=0\.\d+)$/
/** Referrer artifact types worth reading, best first; the empty type is read to learn the real one. */
const SIGNATURE_ARTIFACT_TYPES: ReadonlySet<string> = new Set([MediaType.cosignArtifactConfig, MediaType.dsseEnvelope, MediaType.inTotoLayer, MediaType.cosignSimpleSigning])

/** Discovers the candidates for `imageDigest` in `repository`. Rejects only when `signal` aborts. */
export async function discoverSignatures(
  client: RegistryClient,
  repository: string,
  imageDigest: string,
  limits: DiscoveryLimits,
  options: DiscoverOptions = {},
): Promise<Discovery> {
  parseDigest(imageDigest) // a caller's mistake, not the registry's: throws DigestError
  const walk = new Walk(client, repository, imageDigest, limits, options)
  const [referrers, sig, att] = await Promise.all([walk.referrers(), walk.legacyTag('.sig', 'sig-tag'), walk.legacyTag('.att', 'att-tag')])
  options.signal?.throwIfAborted()
  return { candidates: [...referrers, ...sig, ...att], ...(walk.notation.length > 0 ? { notation: walk.notation } : {}), problems: walk.problems }
}

type ReferrerVia = 'referrers' | 'fallback-tag'

/** One entry of a referrers listing, as the distribution spec has it, and where it was found. */
export interface ListedReferrer {
  descriptor: Descriptor & { artifactType: string }
  via: CandidateOrigin['via']
}

export interface ReferrerListing {
  /** Whether the upstream answered the referrers API itself (else: fallback tag and cosign tags). */
  upstreamApi: boolean
  /** The listing itself (API answer or fallback index) could not be read: what is listed may be incomplete. */
  unreadable: boolean
  referrers: ListedReferrer[]
  /** Entries left out: unreadable, about another digest, or over maxReferrers. */
  problems: DiscoveryProblem[]
  truncated: boolean
}

/**
 * Lists the referrers of `digest` for the referrers endpoint: the upstream's referrers API or, when
 * it has none, the fallback tag `sha256-<hex>`, plus the cosign `.sig` / `.att` tags. Every entry
 * is read (at most maxReferrers, through `memo` when given: manifests by digest never change), so
 * its artifactType is the manifest's own (else its config's media type) and an entry about another
 * digest, the digest itself, or an index without an artifactType is left out. `indexBytes` bounds
 * the listing itself. Rejects only when `signal` aborts.
 */
export async function listReferrers(
  client: RegistryClient,
  repository: string,
  digest: string,
  limits: DiscoveryLimits & { indexBytes: number },
  options: Pick<DiscoverOptions, 'signal' | 'concurrency'> & { memo?: ReferrerMemo } = {},
): Promise<ReferrerListing> {
  parseDigest(digest)
  const walk = new Walk(client, repository, digest, limits, options)
  const [found, sig, att] = await Promise.all([walk.referrerIndex(limits.indexBytes), walk.legacyManifest('.sig', 'sig-tag'), walk.legacyManifest('.att', 'att-tag')])
  options.signal?.throwIfAborted()
  const listed = unique(found?.index.manifests ?? []).filter((d) => d.digest !== digest && (d.mediaType === MediaType.ociManifest || d.mediaType === MediaType.ociIndex))
  const truncated = listed.length > limits.maxReferrers
  if (truncated) walk.problems.push({ code: 'LIMIT_EXCEEDED', message: `${listed.length} referrers listed; only the first ${limits.maxReferrers} were read` })
  const via = found?.via ?? 'fallback-tag'
  const read = await Promise.all(
    listed.slice(0, limits.maxReferrers).map(async (d): Promise<ListedReferrer | undefined> => {
      const known = options.memo?.get(d.digest)
      if (known !== undefined) return known === null ? undefined : { descriptor: known, via }
      const r = await walk.readReferrer(d, via, [MediaType.ociManifest, MediaType.ociIndex])
      const descriptor = r?.manifest.subject ? referrerDescriptor(r.manifest, r.fetched) : undefined
      if (r && !r.manifest.subject) walk.problems.push({ code: 'MALFORMED', message: `listed referrer ${d.digest} has no subject`, origin: r.origin })
      // A fetch that failed may work next time; a manifest, read, is what it is.
      if (r) options.memo?.set(d.digest, descriptor ?? null)
      return descriptor ? { descriptor, via } : undefined
    }),
  )
  const legacy = [
    sig && { descriptor: referrerDescriptor(sig.manifest, sig.fetched), via: 'sig-tag' as const },
    att && { descriptor: referrerDescriptor(att.manifest, att.fetched), via: 'att-tag' as const },
  ]
  const seen = new Set<string>([digest])
  const referrers = [...read, ...legacy].filter(
    (r): r is ListedReferrer => r !== undefined && r.descriptor !== undefined && !seen.has(r.descriptor.digest) && seen.add(r.descriptor.digest) !== undefined,
  )
  return { upstreamApi: found?.via === 'referrers', unreadable: found === null, referrers, problems: walk.problems, truncated }
}

/** Immutable per-digest knowledge of referrer manifests: a descriptor, or null for one that is left out. */
export interface ReferrerMemo {
  get(digest: string): (Descriptor & { artifactType: string }) | null | undefined
  set(digest: string, descriptor: (Descriptor & { artifactType: string }) | null): void
}

/** The spec's referrers descriptor: artifactType is the manifest's, else its config's media type. */
function referrerDescriptor(manifest: Manifest, fetched: FetchedManifest): (Descriptor & { artifactType: string }) | undefined {
  const artifactType = manifest.artifactType || (manifest.kind === 'manifest' ? manifest.config.mediaType : undefined)
  if (!artifactType) return undefined
  return {
    mediaType: fetched.mediaType,
    digest: fetched.digest,
    size: fetched.bytes.length,
    artifactType,
    // The spec copies the manifest's annotations; a hostile manifest's are not worth a huge answer.
    ...(manifest.annotations && JSON.stringify(manifest.annotations).length <= MAX_LISTED_ANNOTATIONS ? { annotations: manifest.annotations } : {}),
  }
}

const MAX_LISTED_ANNOTATIONS = 16 * 1024

/** First occurrence of each digest. */
function unique<T extends { digest: string }>(items: T[]): T[] {
  const seen = new Set<string>()
  return items.filter((d) => !seen.has(d.digest) && seen.add(d.digest))
}

/** Runs at most `n` tasks at once. */
function limiter(n: number): <T>(task: () => Promise<T>) => Promise<T> {
  let active = 0
  const waiting: (() => void)[] = []
  return async (task) => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve))
    active++
    try {
      return await task()
    } finally {
      active--
      waiting.shift()?.()
    }
  }
}

class Walk {
  readonly problems: DiscoveryProblem[] = []
  readonly notation: NotationCandidate[] = []
  readonly #client: RegistryClient
  readonly #repository: string
  readonly #digest: string
  readonly #limits: DiscoveryLimits
  readonly #options: DiscoverOptions
  readonly #run: <T>(task: () => Promise<T>) => Promise<T>
  /** Signature/attestation layers taken so far, across every source (bounded by maxSignatures). */
  #layers = 0
  #reportedSignatureLimit = false
  #imageManifest: Promise<Buffer | undefined> | undefined

  constructor(client: RegistryClient, repository: string, digest: string, limits: DiscoveryLimits, options: DiscoverOptions) {
    this.#client = client
    this.#repository = repository
    this.#digest = digest
    this.#limits = limits
    this.#options = options
    this.#run = limiter(options.concurrency ?? 4)
  }

  #problem(code: VerifyCode, message: string, origin?: Partial<CandidateOrigin>): void {
    this.problems.push({ code, message, ...(origin ? { origin } : {}) })
  }

  /** Records a failed fetch or parse; an abort of the whole discovery is rethrown. */
  #failed(err: unknown, what: string, origin: Partial<CandidateOrigin>): void {
    this.#options.signal?.throwIfAborted()
    if (err instanceof RegistryError) {
      this.#problem(err instanceof LimitExceededError ? 'LIMIT_EXCEEDED' : 'DISCOVERY_FAILED', `${what}: ${err.message}`, origin)
      return
    }
    const message = err instanceof Error ? err.message : String(err)
    this.#problem(err instanceof ManifestError ? 'MALFORMED' : 'DISCOVERY_FAILED', `${what}: ${message}`, origin)
  }

  // -------------------------------------------------------------------------------------------
  // Referrers API, or the fallback tag

  /** The referrers API's answer, or the fallback tag's index; undefined when neither exists, null when it could not be read (a problem says why). */
  async referrerIndex(maxBytes: number): Promise<{ via: ReferrerVia; index: ImageIndex } | undefined | null> {
    let via: ReferrerVia = 'referrers'
    try {
      const opts = { maxBytes, signal: this.#options.signal }
      let fetched = await this.#run(() => this.#client.getReferrers(this.#repository, this.#digest, opts))
      if (fetched === undefined) {
        via = 'fallback-tag'
        const tag = digestTag(this.#digest)
        fetched = await this.#run(() => this.#client.getManifest(this.#repository, tag, { ...opts, accept: [MediaType.ociIndex] }))
        if (fetched === undefined) return undefined
      }
      const parsed = parseManifest(fetched.bytes, fetched.mediaType)
      if (parsed.kind !== 'index') {
        this.#problem('MALFORMED', `the ${via} answer is not an image index`, { repository: this.#repository, via })
        return null
      }
      return { via, index: parsed }
    } catch (err) {
      this.#failed(err, `listing referrers of ${this.#digest}`, { repository: this.#repository, via })
      return null
    }
  }

  async referrers(): Promise<Candidate[]> {
    const found = await this.referrerIndex(this.#limits.signatureManifestBytes)
    if (!found) return []
    const { via, index } = found

    // Known signature types first, then untyped/empty ones (to be read); anything else (SBOMs,
    // other tools' artifacts) is skipped unread. At most maxReferrers manifests are read.
    const ranked = unique(index.manifests)
      .map((d) => ({ d, rank: referrerRank(d) }))
      .filter((r) => r.rank >= 0)
      .sort((a, b) => a.rank - b.rank)
    if (ranked.length > this.#limits.maxReferrers) {
      this.#problem('LIMIT_EXCEEDED', `${ranked.length} possible signature referrers listed; only the first ${this.#limits.maxReferrers} were read`, {
        repository: this.#repository,
        via,
      })
    }
    const lists = await Promise.all(
      ranked.slice(0, this.#limits.maxReferrers).map(async ({ d }) => {
        const read = await this.readReferrer(d, via, [MediaType.ociManifest])
        if (read?.manifest.kind !== 'manifest') return []
        if (isNotationSignature(read.manifest)) {
          await this.#notationEnvelope(read.manifest, read.origin)
          return []
        }
        return this.#layersOf(read.manifest, read.origin)
      }),
    )
    return lists.flat()
  }

  /** Reads one listed referrer (bounded); undefined, with a problem, when it is unusable or about another digest. */
  async readReferrer(descriptor: Descriptor, via: ReferrerVia, accept: string[]): Promise<{ manifest: Manifest; fetched: FetchedManifest; origin: CandidateOrigin } | undefined> {
    const origin: CandidateOrigin = { repository: this.#repository, via, manifestDigest: descriptor.digest }
    if (descriptor.size > this.#limits.signatureManifestBytes) {
      this.#problem('LIMIT_EXCEEDED', `referrer manifest of ${descriptor.size} bytes is over the ${this.#limits.signatureManifestBytes}-byte limit`, origin)
      return undefined
    }
    let manifest: Manifest
    let fetched: FetchedManifest | undefined
    try {
      fetched = await this.#run(() =>
        this.#client.getManifest(this.#repository, descriptor.digest, { accept, maxBytes: this.#limits.signatureManifestBytes, signal: this.#options.signal }),
      )
      if (fetched === undefined) {
        this.#problem('DISCOVERY_FAILED', 'listed referrer manifest is missing', origin)
        return undefined
      }
      manifest = parseManifest(fetched.bytes, fetched.mediaType)
    } catch (err) {
      this.#failed(err, 'reading referrer manifest', origin)
      return undefined
    }
    if (manifest.subject && manifest.subject.digest !== this.#digest) {
      this.#problem('MALFORMED', `referrer is about ${manifest.subject.digest.slice(0, 80)}, not this image`, origin)
      return undefined
    }
    return { manifest, fetched, origin }
  }

  /** The one JWS or COSE envelope layer of a Notation signature manifest. */
  async #notationEnvelope(manifest: ImageManifest, origin: CandidateOrigin): Promise<void> {
    const layer = manifest.layers[0]!
    if (this.#layers >= this.#limits.maxSignatures) {
      if (!this.#reportedSignatureLimit) {
        this.#reportedSignatureLimit = true
        this.#problem('LIMIT_EXCEEDED', `more than ${this.#limits.maxSignatures} signatures and attestations; the rest were not read`, origin)
      }
      return
    }
    this.#layers++
    const bytes = await this.#blob(layer, this.#limits.signatureLayerBytes, `Notation envelope ${layer.digest}`, origin)
    if (bytes) this.notation.push({ kind: 'signature', format: 'notation', origin, envelope: bytes, envelopeType: layer.mediaType as NotationCandidate['envelopeType'] })
  }

  // -------------------------------------------------------------------------------------------
  // Legacy tags

  async legacyTag(suffix: '.sig' | '.att', via: CandidateOrigin['via']): Promise<Candidate[]> {
    const found = await this.legacyManifest(suffix, via)
    return found ? this.#layersOf(found.manifest, { repository: this.#repository, via, manifestDigest: found.fetched.digest }) : []
  }

  /** The manifest under a legacy cosign tag, when there is one and it is an image manifest. */
  async legacyManifest(suffix: '.sig' | '.att', via: CandidateOrigin['via']): Promise<{ manifest: ImageManifest; fetched: FetchedManifest } | undefined> {
    const tag = digestTag(this.#digest, suffix)
    const origin: Partial<CandidateOrigin> = { repository: this.#repository, via }
    try {
      const fetched = await this.#run(() =>
        this.#client.getManifest(this.#repository, tag, {
          accept: [MediaType.ociManifest, MediaType.dockerManifest],
          maxBytes: this.#limits.signatureManifestBytes,
          signal: this.#options.signal,
        }),
      )
      if (fetched === undefined) return undefined
      const parsed = parseManifest(fetched.bytes, fetched.mediaType)
      if (parsed.kind !== 'manifest') {
        this.#problem('MALFORMED', `tag ${tag} is not an image manifest`, origin)
        return undefined
      }
      return { manifest: parsed, fetched }
    } catch (err) {
      this.#failed(err, `reading tag ${tag}`, origin)
      return undefined
    }
  }

  // -------------------------------------------------------------------------------------------
  // Layers → candidates

  async #layersOf(manifest: ImageManifest, origin: CandidateOrigin): Promise<Candidate[]> {
    const jobs: Promise<Candidate[]>[] = []
    for (const layer of manifest.layers) {
      const kind = layerKind(layer.mediaType)
      if (kind === undefined) continue
      if (this.#layers >= this.#limits.maxSignatures) {
        if (!this.#reportedSignatureLimit) {
          this.#reportedSignatureLimit = true
          this.#problem('LIMIT_EXCEEDED', `more than ${this.#limits.maxSignatures} signatures and attestations; the rest were not read`, origin)
        }
        break
      }
      this.#layers++
      jobs.push(this.#layer(layer, kind, origin))
    }
    return (await Promise.all(jobs)).flat()
  }

  async #layer(layer: Descriptor, kind: 'simple-signing' | 'dsse' | 'bundle', origin: CandidateOrigin): Promise<Candidate[]> {
    const limit = kind === 'bundle' ? this.#limits.bundleBytes : this.#limits.signatureLayerBytes
    const bytes = await this.#blob(layer, limit, `${kind} layer ${layer.digest}`, origin)
    if (bytes === undefined) return []
    const what = `${kind} layer ${layer.digest}`
    const annotations = layer.annotations ?? {}
    try {
      switch (kind) {
        case 'simple-signing':
          return [{ kind: 'signature', format: 'cosign-legacy', origin, bundle: checked(legacySignatureBundle(bytes, annotations)), payload: bytes }]
        case 'dsse':
          return legacyAttestationBundles(bytes, annotations).map((bundle) => {
            const predicateType = envelopePredicateType(bundle.dsseEnvelope!.payload) ?? annotations[CosignAnnotation.predicateType]
            return {
              kind: predicateType === COSIGN_SIGN_PREDICATE ? 'signature' : 'attestation',
              format: 'cosign-legacy',
              origin,
              bundle: checked(bundle),
              ...(predicateType ? { predicateType } : {}),
            }
          })
        case 'bundle':
          return [await this.#bundleCandidate(bytes, origin)]
      }
    } catch (err) {
      this.#options.signal?.throwIfAborted()
      this.#problem('MALFORMED', `${what}: ${err instanceof Error ? err.message : String(err)}`, origin)
      return []
    }
  }

  /** A signature layer's bytes, within `limit` and as long as its descriptor says; undefined (a problem recorded) otherwise. */
  async #blob(layer: Descriptor, limit: number, what: string, origin: CandidateOrigin): Promise<Buffer | undefined> {
    if (layer.size > limit) {
      this.#problem('LIMIT_EXCEEDED', `${what} is ${layer.size} bytes, over the ${limit}-byte limit`, origin)
      return undefined
    }
    let bytes: Buffer | undefined
    try {
      bytes = await this.#run(() => this.#client.getBlobBytes(this.#repository, layer.digest, { maxBytes: limit, signal: this.#options.signal }))
    } catch (err) {
      this.#failed(err, `reading ${what}`, origin)
      return undefined
    }
    if (bytes === undefined) {
      this.#problem('DISCOVERY_FAILED', `${what} is missing`, origin)
      return undefined
    }
    if (bytes.length !== layer.size) {
      this.#problem('MALFORMED', `${what} is ${bytes.length} bytes but its descriptor says ${layer.size}`, origin)
      return undefined
    }
    return bytes
  }

  async #bundleCandidate(bytes: Buffer, origin: CandidateOrigin): Promise<Candidate> {
    let document: unknown
    try {
      document = JSON.parse(bytes.toString('utf8'))
    } catch {
      throw new Error('Sigstore bundle is not JSON')
    }
    const bundle = checked(document as SerializedBundle)
    if (bundle.dsseEnvelope) {
      const predicateType = envelopePredicateType(bundle.dsseEnvelope.payload)
      return {
        kind: predicateType === COSIGN_SIGN_PREDICATE ? 'signature' : 'attestation',
        format: 'sigstore-bundle',
        origin,
        bundle,
        ...(predicateType ? { predicateType } : {}),
      }
    }
    const payload = await this.#imageManifestBytes()
    return { kind: 'signature', format: 'sigstore-bundle', origin, bundle, ...(payload ? { payload } : {}) }
  }

  /** The image manifest (which a message-signature bundle signs), fetched once, by digest. */
  #imageManifestBytes(): Promise<Buffer | undefined> {
    if (this.#options.imageManifest) return Promise.resolve(this.#options.imageManifest)
    this.#imageManifest ??= this.#run(() =>
      this.#client.getManifest(this.#options.imageRepository ?? this.#repository, this.#digest, {
        maxBytes: this.#limits.manifestBytes,
        signal: this.#options.signal,
      }),
    ).then(
      (m) => m?.bytes,
      (err: unknown) => {
        this.#failed(err, 'reading the image manifest a message signature covers', { repository: this.#options.imageRepository ?? this.#repository })
        return undefined
      },
    )
    return this.#imageManifest
  }
}

/** Checks, as verification will, that it is a bundle sigstore-js can read; throws otherwise. */
function checked(bundle: SerializedBundle): SerializedBundle {
  parseBundle(bundle)
  return bundle
}

function layerKind(mediaType: string): 'simple-signing' | 'dsse' | 'bundle' | undefined {
  if (mediaType === MediaType.cosignSimpleSigning) return 'simple-signing'
  if (mediaType === MediaType.dsseEnvelope) return 'dsse'
  if (BUNDLE_TYPE.test(mediaType)) return 'bundle'
  return undefined
}

/**
 * 0: a Sigstore bundle; 1: another Cosign signature type; 2: a Notation signature (after Cosign's,
 * so they never crowd them out of maxReferrers); 3: untyped or empty (must be read); -1: skip.
 */
function referrerRank(d: Descriptor): number {
  if (d.mediaType !== MediaType.ociManifest) return -1
  const type = d.artifactType
  if (type === undefined || type === '' || type === MediaType.ociEmpty) return 3
  if (BUNDLE_TYPE.test(type)) return 0
  if (SIGNATURE_ARTIFACT_TYPES.has(type)) return 1
  if (type === MediaType.notationSignature) return 2
  return -1
}

// Finds every signature and attestation of an image digest in a repository (network only; nothing
// is verified here). Sources, all consulted:
// - the OCI 1.1 referrers API, or the fallback tag `sha256-<hex>` when it answers 404;
// - the legacy cosign tags `sha256-<hex>.sig` and `sha256-<hex>.att`.
// Upstream answers are hostile input: every fetch is bounded by the configured limits, and whatever
// cannot be used becomes a DiscoveryProblem with a code, never an exception for the others.
import type { SerializedBundle } from '@sigstore/bundle'
import type { Config } from '../config/schema.ts'
import { LimitExceededError, RegistryError } from '../errors.ts'
import { digestTag, parseDigest } from '../oci/digest.ts'
import { ManifestError, parseManifest, type Descriptor, type ImageManifest } from '../oci/manifest.ts'
import { MediaType } from '../oci/media-types.ts'
import type { RegistryClient } from '../upstream/types.ts'
import { parseBundle } from '../verify/bundle.ts'
import { COSIGN_SIGN_PREDICATE } from '../verify/payload.ts'
import type { Candidate, CandidateOrigin, Discovery, DiscoveryProblem, VerifyCode } from '../verify/types.ts'
import { CosignAnnotation, envelopePredicateType, legacyAttestationBundles, legacySignatureBundle } from './legacy.ts'

export type DiscoveryLimits = Pick<
  Config['limits'],
  'manifestBytes' | 'signatureManifestBytes' | 'signatureLayerBytes' | 'bundleBytes' | 'maxSignatures' | 'maxReferrers'
>

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
const SIGNATURE_ARTIFACT_TYPES: ReadonlySet<string> = new Set([
  MediaType.cosignArtifactConfig,
  MediaType.dsseEnvelope,
  MediaType.inTotoLayer,
  MediaType.cosignSimpleSigning,
])

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
  return { candidates: [...referrers, ...sig, ...att], problems: walk.problems }
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

  async referrers(): Promise<Candidate[]> {
    let via: CandidateOrigin['via'] = 'referrers'
    let index
    try {
      const opts = { maxBytes: this.#limits.signatureManifestBytes, signal: this.#options.signal }
      let fetched = await this.#run(() => this.#client.getReferrers(this.#repository, this.#digest, opts))
      if (fetched === undefined) {
        via = 'fallback-tag'
        const tag = digestTag(this.#digest)
        fetched = await this.#run(() => this.#client.getManifest(this.#repository, tag, { ...opts, accept: [MediaType.ociIndex] }))
        if (fetched === undefined) return []
      }
      const parsed = parseManifest(fetched.bytes, fetched.mediaType)
      if (parsed.kind !== 'index') {
        this.#problem('MALFORMED', `the ${via} answer is not an image index`, { repository: this.#repository, via })
        return []
      }
      index = parsed
    } catch (err) {
      this.#failed(err, `listing referrers of ${this.#digest}`, { repository: this.#repository, via })
      return []
    }

    // Known signature types first, then untyped/empty ones (to be read); anything else (SBOMs,
    // other tools' artifacts) is skipped unread. At most maxReferrers manifests are read.
    const seen = new Set<string>()
    const ranked = index.manifests
      .filter((d) => !seen.has(d.digest) && seen.add(d.digest))
      .map((d) => ({ d, rank: referrerRank(d) }))
      .filter((r) => r.rank >= 0)
      .sort((a, b) => a.rank - b.rank)
    if (ranked.length > this.#limits.maxReferrers) {
      this.#problem(
        'LIMIT_EXCEEDED',
        `${ranked.length} possible signature referrers listed; only the first ${this.#limits.maxReferrers} were read`,
        { repository: this.#repository, via },
      )
    }
    const lists = await Promise.all(ranked.slice(0, this.#limits.maxReferrers).map(({ d }) => this.#referrer(d, via)))
    return lists.flat()
  }

  async #referrer(descriptor: Descriptor, via: CandidateOrigin['via']): Promise<Candidate[]> {
    const origin: CandidateOrigin = { repository: this.#repository, via, manifestDigest: descriptor.digest }
    if (descriptor.size > this.#limits.signatureManifestBytes) {
      this.#problem('LIMIT_EXCEEDED', `referrer manifest of ${descriptor.size} bytes is over the ${this.#limits.signatureManifestBytes}-byte limit`, origin)
      return []
    }
    let manifest: ImageManifest
    try {
      const fetched = await this.#run(() =>
        this.#client.getManifest(this.#repository, descriptor.digest, {
          accept: [MediaType.ociManifest],
          maxBytes: this.#limits.signatureManifestBytes,
          signal: this.#options.signal,
        }),
      )
      if (fetched === undefined) {
        this.#problem('DISCOVERY_FAILED', 'listed referrer manifest is missing', origin)
        return []
      }
      const parsed = parseManifest(fetched.bytes, fetched.mediaType)
      if (parsed.kind !== 'manifest') return []
      manifest = parsed
    } catch (err) {
      this.#failed(err, 'reading referrer manifest', origin)
      return []
    }
    if (manifest.subject && manifest.subject.digest !== this.#digest) {
      this.#problem('MALFORMED', `referrer is about ${manifest.subject.digest.slice(0, 80)}, not this image`, origin)
      return []
    }
    return this.#layersOf(manifest, origin)
  }

  // -------------------------------------------------------------------------------------------
  // Legacy tags

  async legacyTag(suffix: '.sig' | '.att', via: CandidateOrigin['via']): Promise<Candidate[]> {
    const tag = digestTag(this.#digest, suffix)
    const origin: Partial<CandidateOrigin> = { repository: this.#repository, via }
    let manifest: ImageManifest
    let manifestDigest: string
    try {
      const fetched = await this.#run(() =>
        this.#client.getManifest(this.#repository, tag, {
          accept: [MediaType.ociManifest, MediaType.dockerManifest],
          maxBytes: this.#limits.signatureManifestBytes,
          signal: this.#options.signal,
        }),
      )
      if (fetched === undefined) return []
      const parsed = parseManifest(fetched.bytes, fetched.mediaType)
      if (parsed.kind !== 'manifest') {
        this.#problem('MALFORMED', `tag ${tag} is not an image manifest`, origin)
        return []
      }
      manifest = parsed
      manifestDigest = fetched.digest
    } catch (err) {
      this.#failed(err, `reading tag ${tag}`, origin)
      return []
    }
    return this.#layersOf(manifest, { repository: this.#repository, via, manifestDigest })
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
    const what = `${kind} layer ${layer.digest}`
    if (layer.size > limit) {
      this.#problem('LIMIT_EXCEEDED', `${what} is ${layer.size} bytes, over the ${limit}-byte limit`, origin)
      return []
    }
    let bytes: Buffer | undefined
    try {
      bytes = await this.#run(() => this.#client.getBlobBytes(this.#repository, layer.digest, { maxBytes: limit, signal: this.#options.signal }))
    } catch (err) {
      this.#failed(err, `reading ${what}`, origin)
      return []
    }
    if (bytes === undefined) {
      this.#problem('DISCOVERY_FAILED', `${what} is missing`, origin)
      return []
    }
    if (bytes.length !== layer.size) {
      this.#problem('MALFORMED', `${what} is ${bytes.length} bytes but its descriptor says ${layer.size}`, origin)
      return []
    }
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

/** 0: a Sigstore bundle; 1: another signature type; 2: untyped or empty (must be read); -1: skip. */
function referrerRank(d: Descriptor): number {
  if (d.mediaType !== MediaType.ociManifest) return -1
  const type = d.artifactType
  if (type === undefined || type === '' || type === MediaType.ociEmpty) return 2
  if (BUNDLE_TYPE.test(type)) return 0
  if (SIGNATURE_ARTIFACT_TYPES.has(type)) return 1
  return -1
}

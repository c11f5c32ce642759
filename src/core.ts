// The verification core: upstream clients (answering from the content store when the proxy has
// one), reloadable policies and trust roots, signature discovery and verification, the verdict
// service and the manifest service. The proxy, `trustpull verify` and `trustpull copy` all decide
// through this one assembly, so a verdict means the same wherever it was made. Threat: a second,
// slightly different wiring that lets one path serve what another would refuse.
import type { Dispatcher } from 'undici'
import { TieredStore } from './cache/tiered-store.ts'
import type { Config } from './config/schema.ts'
import { readSecret } from './config/secret.ts'
import { loadPolicies } from './policy/load.ts'
import type { PolicySet, SignatureLocation } from './policy/types.ts'
import { StoreContentIndex } from './pull/content-index.ts'
import { ManifestCache } from './cache/manifest-cache.ts'
import { ManifestService } from './pull/manifests.ts'
import type { EvaluateDeps } from './policy/evaluate.ts'
import { PolicyGate, type PolicyGateOptions } from './pull/policy-gate.ts'
import { ReferrerService } from './pull/referrers.ts'
import { discoverSignatures } from './signatures/discover.ts'
import type { ContentStore } from './store/content-store.ts'
import { MirrorClient } from './store/mirror-client.ts'
import { createLogger, type Logger } from './telemetry/logger.ts'
import { Metrics } from './telemetry/metrics.ts'
import { span, spanSync } from './telemetry/tracing.ts'
import { createRegistryClient, type UpstreamRegistryClient } from './upstream/client.ts'
import { UpstreamRouter } from './upstream/router.ts'
import type { RegistryClient } from './upstream/types.ts'
import { verifyCandidate } from './verify/candidate.ts'
import { notationArtifact, verifyNotationCandidate } from './verify/notation/candidate.ts'
import { loadTrustRoots } from './verify/trust-root.ts'
import type { LoadedTrustRoot } from './verify/types.ts'

export interface CoreOptions {
  logger?: Logger
  /** Directory that relative paths in policies are resolved from (the config file's). */
  configDir?: string
  /** A trusted_root.json used instead of the embedded public-good root (the CLI's `--trusted-root`). */
  trustedRoot?: string
  /**
   * Where the signatures of an image are read from instead of the configured upstream named by
   * `location` (`trustpull copy` verifies an OCI archive from the signatures inside it, offline).
   */
  signatureClient?: SignatureSource
  /** The mirror's content store: upstream clients answer from it and fill it (the proxy only; copy and verify go upstream). */
  contentStore?: ContentStore
  /** Every upstream request through this dispatcher (`verify --allow-insecure-registry`). */
  upstreamDispatcher?: Dispatcher
  /** What the proxy's operator surface adds to the gate: the denylist, deny links, verdict history. */
  gateHooks?: Pick<PolicyGateOptions, 'screen' | 'denyLink' | 'onVerdict'>
}

/** The signature source of an image: a registry client to discover its signatures in, or undefined for the configured upstream. */
export type SignatureSource = (location: SignatureLocation, image: { upstream: string; repository: string; digest: string }) => RegistryClient | undefined

export interface Core {
  config: Config
  logger: Logger
  router: UpstreamRouter
  /** The undecorated client of each upstream (readiness pings them). */
  upstreamClients: readonly UpstreamRegistryClient[]
  metrics: Metrics
  /** The verdict cache: in-process, then Redis when configured. */
  store: TieredStore
  gate: PolicyGate
  manifests: ManifestService
  /** The referrers endpoint's listings, for every upstream. */
  referrers: ReferrerService
  contentIndex: StoreContentIndex
  /** The mirror's content store, when the proxy has one. */
  contentStore?: ContentStore
  policySet(): PolicySet
  /** The trust roots the policies in force were loaded with (by name). */
  trustRoots(): ReadonlyMap<string, LoadedTrustRoot>
  /** Applies new policies and trust roots to new decisions; throws (keeping the old ones) when they are invalid. */
  reloadPolicies(config: Config): Promise<void>
  close(): Promise<void>
}

/** Trust roots and policies: everything a reload replaces. Throws ConfigError on any problem. */
export async function loadPolicyState(
  config: Config,
  options: { configDir?: string; trustedRoot?: string; logger: Logger },
): Promise<{ policySet: PolicySet; trustRoots: Map<string, LoadedTrustRoot> }> {
  const trustRoots = await loadTrustRoots(config.trustRoots, options.trustedRoot ? { publicGoodFile: options.trustedRoot } : {})
  const { policySet, warnings } = loadPolicies(config, { trustRoots, configDir: options.configDir })
  for (const warning of warnings) options.logger.warn({ warning }, 'policy warning')
  if (policySet.policies.length === 0 && config.noMatchPolicy === 'deny') {
    options.logger.warn('no policies are configured and noMatchPolicy is deny: every image will be refused')
  }
  if (config.noMatchPolicy === 'allow') options.logger.warn('noMatchPolicy is allow: images no policy matches are served unverified')
  return { policySet, trustRoots }
}

/**
 * How the gate finds and checks signatures: discovery in the image's signature source (the
 * configured upstream, or what `signatureClient` names), then verification of each candidate.
 */
export function signatureEvaluator(router: UpstreamRouter, limits: Config['limits'], signatureClient?: SignatureSource): EvaluateDeps {
  return {
    discover: (location, digest, image) => {
      const client = signatureClient?.(location, image) ?? router.byName(location.upstream)?.client
      if (!client) throw new Error(`signature source ${location.upstream} is not a configured upstream`)
      return span('signatures.discover', { 'trustpull.repository': location.repository, 'trustpull.digest': digest }, () =>
        discoverSignatures(client, location.repository, digest, limits, {
          signal: image.signal,
          imageRepository: location.repository !== image.repository ? image.repository : undefined,
          imageManifest: digest === image.digest ? image.bytes : undefined,
        }),
      )
    },
    verify: (candidate, material, digest) =>
      spanSync(
        'verify',
        { 'trustpull.digest': digest, 'trustpull.signature.kind': candidate.kind, 'trustpull.signature.format': candidate.format, 'trustpull.authority.type': material.type },
        (s) => {
          const evidence = verifyCandidate(candidate, material, digest)
          s?.setAttributes({ 'trustpull.verify.ok': evidence.ok, ...(evidence.code ? { 'trustpull.verify.code': evidence.code } : {}) })
          return evidence
        },
      ),
    verifyNotation: (candidate, material, digest, image) =>
      spanSync(
        'verify',
        { 'trustpull.digest': digest, 'trustpull.signature.kind': candidate.kind, 'trustpull.signature.format': candidate.format, 'trustpull.authority.type': material.type },
        (s) => {
          const evidence = verifyNotationCandidate(candidate, material, notationArtifact(image, digest))
          s?.setAttributes({ 'trustpull.verify.ok': evidence.ok, ...(evidence.code ? { 'trustpull.verify.code': evidence.code } : {}) })
          return evidence
        },
      ),
  }
}

export async function buildCore(config: Config, options: CoreOptions = {}): Promise<Core> {
  const logger = options.logger ?? createLogger(config.log.level)
  const metrics = new Metrics()
  let { policySet, trustRoots } = await loadPolicyState(config, { configDir: options.configDir, trustedRoot: options.trustedRoot, logger })

  const clients: UpstreamRegistryClient[] = config.upstreams.map((u) =>
    createRegistryClient(u, {
      timeouts: config.timeouts,
      limits: config.limits,
      maxInFlight: config.limits.upstreamConnections,
      observe: ({ upstream, status, seconds }) => metrics.upstreamDuration.record(seconds, { upstream, status }),
      ...(options.upstreamDispatcher && { dispatcher: options.upstreamDispatcher }),
    }),
  )
  const contentStore = options.contentStore
  if (contentStore) {
    metrics.observeStore(() => ({ bytes: contentStore.bytes, objects: contentStore.objects, writable: contentStore.unwritable === undefined, integrity: contentStore.integrity }))
    contentStore.observe({ evicted: (bytes) => metrics.storeEvictedBytes.add(bytes) })
  }
  const router = new UpstreamRouter(
    config.upstreams.map((u, i) => ({
      config: u,
      client: contentStore
        ? new MirrorClient(clients[i]!, contentStore, {
            upstream: u.name,
            staleIfError: config.storage.staleIfError,
            manifestBytes: config.limits.manifestBytes,
            blobLookup: (hit) => metrics.storeLookups.add(1, { kind: 'blob', result: hit ? 'hit' : 'miss' }),
            manifestLookup: (kind, hit) => metrics.storeLookups.add(1, { kind, result: hit ? 'hit' : 'miss' }),
            saved: (kind) => metrics.storeSaved.add(1, { kind }),
          })
        : clients[i]!,
    })),
  )
  const store = new TieredStore({
    memoryEntries: 200_000,
    redisUrl: config.cache.url,
    redisPassword: config.cache.password ? readSecret(config.cache.password, 'cache.password') : undefined,
    onEvent: ({ tier, result }) => metrics.cacheRequests.add(1, { tier, result }),
    onRedisStateChange: (up, error) => {
      metrics.setRedisUp(up)
      if (up) logger.info('redis cache connected')
      else logger.warn({ error }, 'redis cache unavailable: serving from the in-process tier and verifying again')
    },
  })
  if (config.cache.url) metrics.setRedisUp(false)
  await store.connected()
  const contentIndex = new StoreContentIndex(store, config.cache.allowTTL, () => policySet.fingerprint)

  const gate = new PolicyGate({
    policySet: () => policySet,
    store,
    contentIndex,
    ttl: { allow: config.cache.allowTTL, deny: config.cache.denyTTL },
    concurrentVerifications: config.limits.concurrentVerifications,
    logger,
    // `manifests` is built below, before any request can arrive.
    subjectServed: (upstream, repository, digest): Promise<boolean> => manifests.serves(router.byName(upstream), repository, digest),
    screen: options.gateHooks?.screen,
    denyLink: options.gateHooks?.denyLink,
    onVerdict: (verdict, info) => {
      const [upstream] = verdict.image.split('/', 1)
      metrics.verdicts.add(1, { result: verdict.result, policy: verdict.policies.map((p) => p.name).join(',') || 'none', upstream: upstream ?? '' })
      if (!info.cached) metrics.verificationDuration.record(info.durationMs / 1000)
      options.gateHooks?.onVerdict?.(verdict, info)
    },
    evaluate: signatureEvaluator(router, config.limits, options.signatureClient),
  })
  const manifests: ManifestService = new ManifestService({
    gate,
    contentIndex,
    cache: new ManifestCache(config.cache.manifestBytes),
    tagTTL: config.cache.tagTTL,
    vouchTTL: config.cache.allowTTL,
  })
  return {
    config,
    logger,
    router,
    upstreamClients: clients,
    metrics,
    store,
    gate,
    manifests,
    referrers: new ReferrerService({ manifests, limits: config.limits, listingTTL: config.cache.tagTTL, logger }),
    contentIndex,
    contentStore,
    policySet: () => policySet,
    trustRoots: () => trustRoots,
    async reloadPolicies(next: Config) {
      ;({ policySet, trustRoots } = await loadPolicyState(next, { configDir: options.configDir, trustedRoot: options.trustedRoot, logger }))
    },
    async close() {
      await Promise.allSettled([...clients.map((c) => c.close()), store.close(), metrics.shutdown(), contentStore?.close()])
    },
  }
}

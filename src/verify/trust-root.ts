// Trust roots: the public-good root embedded in @sigstore/tuf (no network), a trusted_root.json file,
// or a TUF mirror with a local cache. Each is checked (see checkTrustedRoot), turned into
// @sigstore/verify TrustMaterial once, and versioned by a hash of its content.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { json } from '@sigstore/core'
import { TrustedRoot } from '@sigstore/protobuf-specs'
import { getTrustedRoot } from '@sigstore/tuf'
import { toTrustMaterial } from '@sigstore/verify'
import type { Config } from '../config/schema.ts'
import { TrustRootError } from './errors.ts'
import { memoiseTrustMaterial } from './memo.ts'
import type { LoadedTrustRoot } from './types.ts'

export const PUBLIC_GOOD = 'public-good'
const PUBLIC_GOOD_MIRROR = 'https://tuf-repo-cdn.sigstore.dev'
const TRUSTED_ROOT_MEDIA_TYPE = /^application\/vnd\.dev\.sigstore\.trustedroot(\+json;version=0\.\d+|\.v0\.\d+\+json)$/
/** The lists of a TrustedRoot, as protobuf JSON may spell them. */
const LIST_FIELDS = ['tlogs', 'ctlogs', 'certificateAuthorities', 'certificate_authorities', 'timestampAuthorities', 'timestamp_authorities'] as const
/** A trusted_root.json is a few KiB; refuse to parse something absurd. */
const MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024

export type TrustRootConfig = Config['trustRoots'][number]

/**
 * Parses and checks a Sigstore TrustedRoot document and builds its TrustMaterial.
 *
 * Beyond what @sigstore/verify checks, every key and CA must state when its validity starts. The
 * protobuf-specs `TimeRange.start` is required; @sigstore/verify 4.1.3 reads a missing start as
 * "since 1970", which silently widens trust (sigstore-conformance
 * `trust-root-tlog-missing-validity-start_fail`). Such a root is refused as a whole: it is malformed,
 * and half-loading it would hide that.
 */
export function trustRootFromJSON(name: string, document: unknown, source: string): LoadedTrustRoot {
  // TrustedRoot.fromJSON reads a list of the wrong type as an empty list: garbage with the right
  // mediaType would load as a root that trusts nothing, and replace a good one on reload.
  const notLists = typeof document === 'object' && document !== null ? LIST_FIELDS.filter((k) => k in document && !Array.isArray((document as Record<string, unknown>)[k])) : []
  if (notLists.length > 0) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) is not a TrustedRoot: ${notLists.join(', ')} must be lists`)
  }
  let root: TrustedRoot
  try {
    root = TrustedRoot.fromJSON(document)
  } catch (err) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) is not a TrustedRoot: ${(err as Error).message}`)
  }
  const problems = checkTrustedRoot(root)
  if (problems.length > 0) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) is invalid: ${problems.join('; ')}`)
  }
  let material
  try {
    material = memoiseTrustMaterial(toTrustMaterial(root))
  } catch (err) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) has unusable keys or certificates: ${(err as Error).message}`)
  }
  const canonical = json.canonicalize(TrustedRoot.toJSON(root))
  const version = `sha256:${createHash('sha256').update(canonical).digest('hex')}`
  return { name, version, material, source }
}

/** Everything wrong with a parsed TrustedRoot (empty when it is usable). */
export function checkTrustedRoot(root: TrustedRoot): string[] {
  const problems: string[] = []
  if (!TRUSTED_ROOT_MEDIA_TYPE.test(root.mediaType)) problems.push(`unknown mediaType "${root.mediaType.slice(0, 100)}"`)
  const checkRange = (where: string, range: { start?: Date; end?: Date } | undefined): void => {
    if (!range || !range.start) return void problems.push(`${where}: validFor.start is missing`)
    if (Number.isNaN(range.start.getTime())) return void problems.push(`${where}: validFor.start is not a time`)
    if (range.end && (Number.isNaN(range.end.getTime()) || range.end < range.start)) {
      problems.push(`${where}: validFor.end is before its start`)
    }
  }
  for (const [kind, logs] of [
    ['tlogs', root.tlogs],
    ['ctlogs', root.ctlogs],
  ] as const) {
    logs.forEach((log, i) => {
      const where = `${kind}[${i}] (${log.baseUrl || 'no baseUrl'})`
      if (!log.publicKey?.rawBytes?.length) problems.push(`${where}: publicKey.rawBytes is missing`)
      if (!log.logId?.keyId?.length) problems.push(`${where}: logId is missing`)
      checkRange(`${where} publicKey`, log.publicKey?.validFor)
    })
  }
  for (const [kind, cas] of [
    ['certificateAuthorities', root.certificateAuthorities],
    ['timestampAuthorities', root.timestampAuthorities],
  ] as const) {
    cas.forEach((ca, i) => {
      const where = `${kind}[${i}] (${ca.uri || 'no uri'})`
      if (!ca.certChain?.certificates.length) problems.push(`${where}: certChain is empty`)
      checkRange(where, ca.validFor)
    })
  }
  return problems
}

let publicGood: LoadedTrustRoot | undefined

/** The Sigstore public-good root as seeded inside @sigstore/tuf: no network, no cache directory. */
export function publicGoodTrustRoot(): LoadedTrustRoot {
  if (publicGood) return publicGood
  const require = createRequire(import.meta.url)
  const seeds = require('@sigstore/tuf/seeds.json') as Record<string, { targets: Record<string, string> }>
  const encoded = seeds[PUBLIC_GOOD_MIRROR]?.targets['trusted_root.json']
  if (!encoded) throw new TrustRootError('TRUST_ROOT_UNAVAILABLE', '@sigstore/tuf no longer embeds the public-good trusted_root.json')
  const document: unknown = JSON.parse(Buffer.from(encoded, 'base64').toString('utf8'))
  publicGood = trustRootFromJSON(PUBLIC_GOOD, document, 'embedded')
  return publicGood
}

/** A trusted_root.json file (self-hosted Sigstore, air gap). */
export async function loadTrustRootFile(name: string, path: string): Promise<LoadedTrustRoot> {
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch (err) {
    throw new TrustRootError('TRUST_ROOT_UNAVAILABLE', `trust root "${name}": cannot read ${path}: ${(err as Error).message}`)
  }
  return trustRootFromBytes(name, bytes, `file:${path}`)
}

export function trustRootFromBytes(name: string, bytes: Buffer, source: string): LoadedTrustRoot {
  if (bytes.length > MAX_TRUSTED_ROOT_BYTES) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) is larger than ${MAX_TRUSTED_ROOT_BYTES} bytes`)
  }
  let document: unknown
  try {
    document = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new TrustRootError('TRUST_ROOT_INVALID', `trust root "${name}" (${source}) is not JSON: ${(err as Error).message}`)
  }
  return trustRootFromJSON(name, document, source)
}

export interface TufOptions {
  /** Where TUF metadata and targets are cached (default: a directory under the OS temp dir). */
  cachePath?: string
  /** Per-request timeout in ms (default 5 s). */
  timeoutMs?: number
  /** A trusted_root.json that stands in for the embedded public-good root (`--trusted-root`). */
  publicGoodFile?: string
}

/**
 * A trusted_root.json from a TUF repository, `root` being the initial trusted root.json. The
 * mirror is asked first; when it cannot be reached, a still-valid cached copy is used.
 */
export async function loadTufTrustRoot(name: string, tuf: NonNullable<TrustRootConfig['tuf']>, options: TufOptions = {}): Promise<LoadedTrustRoot> {
  const cachePath = tuf.cachePath ?? options.cachePath ?? join(tmpdir(), 'trustpull-tuf')
  const common = { mirrorURL: tuf.mirror.replace(/\/+$/, ''), rootPath: tuf.root, cachePath, timeout: options.timeoutMs ?? 5_000 }
  let root: TrustedRoot
  try {
    root = await getTrustedRoot({ ...common, retry: { retries: 1 } })
  } catch (online) {
    try {
      root = await getTrustedRoot({ ...common, retry: false, forceCache: true })
    } catch {
      throw new TrustRootError('TRUST_ROOT_UNAVAILABLE', `trust root "${name}": TUF mirror ${tuf.mirror} failed: ${(online as Error).message}`, {
        cause: online,
      })
    }
  }
  return trustRootFromJSON(name, TrustedRoot.toJSON(root), `tuf:${tuf.mirror}`)
}

/**
 * Loads every configured trust root plus the built-in `public-good`, once, at start-up.
 * A configured name may not shadow `public-good` or repeat.
 */
export async function loadTrustRoots(configs: readonly TrustRootConfig[], options: TufOptions = {}): Promise<Map<string, LoadedTrustRoot>> {
  const publicGood = options.publicGoodFile ? await loadTrustRootFile(PUBLIC_GOOD, options.publicGoodFile) : publicGoodTrustRoot()
  const roots = new Map<string, LoadedTrustRoot>([[PUBLIC_GOOD, publicGood]])
  for (const config of configs) {
    if (roots.has(config.name)) {
      throw new TrustRootError('TRUST_ROOT_INVALID', `trustRoots: the name "${config.name}" is ${config.name === PUBLIC_GOOD ? 'built in' : 'used twice'}`)
    }
    const loaded = config.file !== undefined ? await loadTrustRootFile(config.name, config.file) : await loadTufTrustRoot(config.name, config.tuf!, options)
    roots.set(config.name, loaded)
  }
  return roots
}

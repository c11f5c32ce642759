// skopeo (Debian bookworm, 1.9) as a real client: copies from a plain-HTTP loopback registry (or
// the proxy) into an OCI layout, and reads raw manifests. Runs with --insecure-policy and no
// credentials so the machine's /etc/containers setup cannot change the outcome.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { run, type RunResult } from './proc.ts'

export const SKOPEO_BIN = process.env.TRUSTPULL_TEST_SKOPEO ?? '/usr/bin/skopeo'

export interface SkopeoCopyOptions {
  /** Copy every image of an index (`--all`), keeping the index digest; default: this machine's platform only. */
  all?: boolean
  /**
   * `--preserve-digests` (default true): without it skopeo gzips uncompressed layers on the way
   * into an OCI layout, which rewrites the manifest and changes its digest.
   */
  preserveDigests?: boolean
  /** Tag inside the OCI layout (`oci:DIR:TAG`); default: none. */
  tag?: string
  /** `--override-arch` for choosing an image out of an index. */
  arch?: string
  /** Extra environment (e.g. CONTAINERS_REGISTRIES_CONF for a mirror test). */
  env?: NodeJS.ProcessEnv
  /** Extra arguments before SOURCE (e.g. `--retry-times`). */
  args?: string[]
  timeoutMs?: number
}

export interface SkopeoCopyResult extends RunResult {
  /** Digest of the manifest or index written into the layout's index.json (undefined when it failed). */
  digest: string | undefined
  /** Media type of that entry. */
  mediaType: string | undefined
}

interface OciLayoutIndex {
  manifests?: { digest: string; mediaType: string; annotations?: Record<string, string> }[]
}

/** Reads an OCI layout's index.json: the entry tagged `tag`, else the last entry. */
export async function readLayoutEntry(dir: string, tag?: string): Promise<{ digest: string; mediaType: string } | undefined> {
  let index: OciLayoutIndex
  try {
    index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as OciLayoutIndex
  } catch {
    return undefined
  }
  const entries = index.manifests ?? []
  const entry = tag === undefined ? entries.at(-1) : entries.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag)
  return entry && { digest: entry.digest, mediaType: entry.mediaType }
}

/**
 * `skopeo copy --src-tls-verify=false --preserve-digests docker://SRC oci:DSTDIR[:TAG]`. `src` is `HOST/repo:tag` or
 * `HOST/repo@sha256:...` (with or without `docker://`). Never throws for a failed copy.
 */
export async function skopeoCopy(src: string, dstDir: string, opts: SkopeoCopyOptions = {}): Promise<SkopeoCopyResult> {
  const source = src.startsWith('docker://') ? src : `docker://${src}`
  const args = ['--insecure-policy']
  if (opts.arch) args.push('--override-arch', opts.arch)
  args.push('copy', '--src-tls-verify=false', '--src-no-creds', '--retry-times', '0')
  if (opts.all) args.push('--all')
  if (opts.preserveDigests ?? true) args.push('--preserve-digests')
  args.push(...(opts.args ?? []), source, `oci:${dstDir}${opts.tag ? `:${opts.tag}` : ''}`)
  const r = await run(SKOPEO_BIN, args, { env: { ...process.env, ...opts.env }, timeoutMs: opts.timeoutMs ?? 60_000 })
  const entry = r.code === 0 ? await readLayoutEntry(dstDir, opts.tag) : undefined
  return { ...r, digest: entry?.digest, mediaType: entry?.mediaType }
}

/** `skopeo inspect --raw`: the manifest bytes as served (`stdout`), never throws. */
export async function skopeoInspectRaw(ref: string, opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const source = ref.startsWith('docker://') ? ref : `docker://${ref}`
  return run(SKOPEO_BIN, ['--insecure-policy', 'inspect', '--raw', '--tls-verify=false', '--no-creds', '--retry-times', '0', source], {
    env: { ...process.env, ...opts.env },
    timeoutMs: opts.timeoutMs ?? 30_000,
  })
}

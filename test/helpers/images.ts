// Builds images and pushes them to a registry through the distribution HTTP API, so tests control
// every byte: layers are real (uncompressed or gzipped) tar files holding one file of seeded random
// bytes, so digests are stable for a seed and containerd, skopeo and umoci can unpack them.
// Large blobs are streamed from a generator twice (once to hash, once to upload), never held whole.

import { createCipheriv, createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { createGzip } from 'node:zlib'
import { request } from 'undici'

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerTarGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerTarGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** Every manifest type, for an Accept header. */
export const ACCEPT_ANY_MANIFEST = [MediaTypes.ociIndex, MediaTypes.ociManifest, MediaTypes.dockerManifestList, MediaTypes.dockerManifest].join(', ')

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
  artifactType?: string
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** Bytes that can be produced again and again, identically: the generator is called once per pass. */
export interface BlobStream {
  chunks(): AsyncIterable<Uint8Array>
}

export type BlobBody = Uint8Array | string | BlobStream

export function sha256(bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

// ---------------------------------------------------------------------------------------------
// Deterministic content

const CHUNK = 1024 * 1024

/** `size` pseudo-random bytes from `seed` (AES-256-CTR keystream: fast and reproducible). */
export function randomStream(seed: string, size: number): BlobStream {
  return {
    async *chunks() {
      const key = createHash('sha256').update(`trustpull-test:${seed}`).digest()
      const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
      const zeros = Buffer.alloc(CHUNK)
      for (let left = size; left > 0; left -= CHUNK) {
        yield cipher.update(left >= CHUNK ? zeros : zeros.subarray(0, left))
      }
    },
  }
}

/** `size` pseudo-random bytes from `seed`, in memory. */
export async function randomBytes(seed: string, size: number): Promise<Uint8Array> {
  return collect(randomStream(seed, size))
}

export async function collect(stream: BlobStream): Promise<Uint8Array> {
  const parts: Uint8Array[] = []
  for await (const chunk of stream.chunks()) parts.push(chunk)
  return Buffer.concat(parts)
}

/** Digest and size of a body, reading a stream once. */
export async function measure(body: BlobBody): Promise<{ digest: string; size: number }> {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    return { digest: sha256(body), size: Buffer.byteLength(body) }
  }
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of body.chunks()) {
    hash.update(chunk)
    size += chunk.byteLength
  }
  return { digest: `sha256:${hash.digest('hex')}`, size }
}

function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512)
  const put = (offset: number, length: number, value: string): void => {
    h.write(value, offset, length, 'ascii')
  }
  const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, '0') + '\0'
  put(0, 100, name)
  put(100, 8, octal(0o644, 8))
  put(108, 8, octal(0, 8))
  put(116, 8, octal(0, 8))
  put(124, 12, octal(size, 12))
  put(136, 12, octal(1_700_000_000, 12))
  put(148, 8, '        ') // checksum is computed with this field as spaces
  put(156, 1, '0')
  put(257, 6, 'ustar\0')
  put(263, 2, '00')
  put(265, 32, 'root')
  put(297, 32, 'root')
  let sum = 0
  for (const b of h) sum += b
  put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ')
  return h
}

/** An uncompressed tar holding one file `name` of `contentSize` seeded random bytes. */
export function tarStream(seed: string, contentSize: number, name = 'data.bin'): BlobStream {
  return {
    async *chunks() {
      yield tarHeader(name, contentSize)
      yield* randomStream(seed, contentSize).chunks()
      const pad = (512 - (contentSize % 512)) % 512
      yield Buffer.alloc(pad + 1024) // padding, then the two zero blocks that end an archive
    },
  }
}

export function gzipStream(inner: BlobStream): BlobStream {
  return {
    chunks: () => Readable.from(inner.chunks()).pipe(createGzip({ level: 1 })),
  }
}

// ---------------------------------------------------------------------------------------------
// Registry HTTP API

function repoUrl(registryUrl: string, repo: string, path: string): string {
  return `${registryUrl.replace(/\/$/, '')}/v2/${repo}/${path}`
}

async function fail(what: string, res: { statusCode: number; body: { text(): Promise<string> } }): Promise<never> {
  throw new Error(`${what}: HTTP ${res.statusCode} ${(await res.body.text()).slice(0, 500)}`)
}

function bodyFor(body: BlobBody): Uint8Array | string | Readable {
  return typeof body === 'string' || body instanceof Uint8Array ? body : Readable.from(body.chunks(), { objectMode: false })
}

/**
 * Pushes a blob by monolithic upload (POST, then PUT `?digest=` with the whole body).
 * A stream is read twice: once to learn digest and size (unless given), once to upload.
 * Skips the upload when the registry already has the blob.
 */
export async function pushBlob(registryUrl: string, repo: string, body: BlobBody, known?: { digest: string; size: number }): Promise<{ digest: string; size: number }> {
  const { digest, size } = known ?? (await measure(body))
  const head = await request(repoUrl(registryUrl, repo, `blobs/${digest}`), { method: 'HEAD' })
  await head.body.dump()
  if (head.statusCode === 200) return { digest, size }

  const start = await request(repoUrl(registryUrl, repo, 'blobs/uploads/'), { method: 'POST' })
  if (start.statusCode !== 202) await fail(`starting upload to ${repo}`, start)
  await start.body.dump()
  const location = start.headers.location
  if (typeof location !== 'string') throw new Error(`upload to ${repo}: no Location header`)
  const target = new URL(location, registryUrl)
  target.searchParams.set('digest', digest)
  const put = await request(target, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: bodyFor(body),
  })
  if (put.statusCode !== 201) await fail(`uploading blob ${digest} to ${repo}`, put)
  await put.body.dump()
  return { digest, size }
}

/** Pushes manifest bytes under `ref` (a tag or a digest). Object bodies are JSON-encoded. */
export async function pushManifest(
  registryUrl: string,
  repo: string,
  ref: string,
  body: Uint8Array | string | object,
  mediaType: string,
): Promise<{ digest: string; size: number; bytes: Uint8Array }> {
  const bytes = body instanceof Uint8Array ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8')
  const res = await request(repoUrl(registryUrl, repo, `manifests/${ref}`), {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: bytes,
  })
  if (res.statusCode !== 201) await fail(`pushing manifest ${repo}:${ref}`, res)
  await res.body.dump()
  const digest = sha256(bytes)
  const said = res.headers['docker-content-digest']
  if (said !== undefined && said !== digest) throw new Error(`registry says ${said} for manifest ${digest}`)
  return { digest, size: bytes.byteLength, bytes }
}

/** Deletes a manifest by digest (the registry drops every tag pointing at it). */
export async function deleteManifest(registryUrl: string, repo: string, digest: string): Promise<void> {
  const res = await request(repoUrl(registryUrl, repo, `manifests/${digest}`), { method: 'DELETE' })
  if (res.statusCode !== 202) await fail(`deleting manifest ${repo}@${digest}`, res)
  await res.body.dump()
}

export interface FetchedManifest {
  status: number
  /** The registry's Docker-Content-Digest header. */
  digest: string | undefined
  mediaType: string | undefined
  bytes: Uint8Array
}

/** GETs a manifest as the registry serves it (status is returned, not thrown). */
export async function getManifest(registryUrl: string, repo: string, ref: string, accept = ACCEPT_ANY_MANIFEST): Promise<FetchedManifest> {
  const res = await request(repoUrl(registryUrl, repo, `manifests/${ref}`), { headers: { accept } })
  const bytes = new Uint8Array(await res.body.arrayBuffer())
  const header = (name: string): string | undefined => {
    const v = res.headers[name]
    return Array.isArray(v) ? v[0] : v
  }
  return { status: res.statusCode, digest: header('docker-content-digest'), mediaType: header('content-type'), bytes }
}

/** The repository's tags ([] when the repository does not exist). */
export async function listTags(registryUrl: string, repo: string): Promise<string[]> {
  const res = await request(repoUrl(registryUrl, repo, 'tags/list'))
  if (res.statusCode === 404) {
    await res.body.dump()
    return []
  }
  if (res.statusCode !== 200) await fail(`listing tags of ${repo}`, res)
  const json = (await res.body.json()) as { tags: string[] | null }
  return json.tags ?? []
}

// ---------------------------------------------------------------------------------------------
// Images and indexes

export type ImageFormat = 'oci' | 'docker'

export interface PushImageOptions {
  /** Number of layers (default 1). */
  layers?: number
  /** Bytes of random content in each layer's file (default 1024); the tar adds ~2 KiB. */
  layerSize?: number
  /** Seed for the layer bytes (default `repo:tag`); same seed, same digests. */
  seed?: string
  /** OCI image manifest (default) or Docker schema2, given as format or manifest media type. */
  mediaType?: ImageFormat | typeof MediaTypes.ociManifest | typeof MediaTypes.dockerManifest
  /** gzip the layers (default: false for OCI, always for Docker schema2). */
  gzip?: boolean
  platform?: Platform
  /** Manifest annotations (OCI only). */
  annotations?: Record<string, string>
  /** OCI 1.1 `subject` (makes this manifest a referrer of another). */
  subject?: Descriptor
  /** Extra fields for the image config's `config` section (Env, Labels, ...). */
  config?: Record<string, unknown>
}

export interface PushedImage {
  repo: string
  /** The tag it was pushed under, or undefined when pushed by digest only. */
  tag: string | undefined
  digest: string
  mediaType: string
  /** The manifest bytes exactly as pushed. */
  manifest: Uint8Array
  /** Size of the manifest in bytes. */
  size: number
  configDigest: string
  config: Uint8Array
  layerDigests: string[]
  layers: (Descriptor & { diffId: string })[]
  platform: Platform
  /** Descriptor of this manifest (with platform), ready for an index. */
  descriptor: Descriptor
}

const STREAM_ABOVE = 8 * 1024 * 1024

function isDocker(mediaType: PushImageOptions['mediaType']): boolean {
  return mediaType === 'docker' || mediaType === MediaTypes.dockerManifest
}

async function pushLayer(registryUrl: string, repo: string, seed: string, contentSize: number, gzip: boolean): Promise<{ digest: string; size: number; diffId: string }> {
  const tar = tarStream(seed, contentSize)
  if (contentSize <= STREAM_ABOVE) {
    const tarBytes = await collect(tar)
    const blob = gzip ? await collect(gzipStream(tar)) : tarBytes
    const pushed = await pushBlob(registryUrl, repo, blob)
    return { ...pushed, diffId: sha256(tarBytes) }
  }
  const plain = await measure(tar)
  const pushed = gzip ? await pushBlob(registryUrl, repo, gzipStream(tar)) : await pushBlob(registryUrl, repo, tar, plain)
  return { ...pushed, diffId: plain.digest }
}

/**
 * Pushes layers, config and manifest; tags it `tag` unless tag is undefined (push by digest).
 * Layers are pushed one after another to keep memory and disk use predictable.
 */
export async function pushImage(registryUrl: string, repo: string, tag: string | undefined, opts: PushImageOptions = {}): Promise<PushedImage> {
  const docker = isDocker(opts.mediaType)
  const gzip = docker || (opts.gzip ?? false)
  const platform = opts.platform ?? { os: 'linux', architecture: 'amd64' }
  const seed = opts.seed ?? `${repo}:${tag ?? ''}`
  const layerSize = opts.layerSize ?? 1024
  const layerMediaType = docker ? MediaTypes.dockerLayerTarGzip : gzip ? MediaTypes.ociLayerTarGzip : MediaTypes.ociLayerTar

  const layers: PushedImage['layers'] = []
  for (let i = 0; i < (opts.layers ?? 1); i++) {
    const l = await pushLayer(registryUrl, repo, `${seed}/${platform.os}/${platform.architecture}/layer-${i}`, layerSize, gzip)
    layers.push({ mediaType: layerMediaType, digest: l.digest, size: l.size, diffId: l.diffId })
  }

  const config = Buffer.from(
    JSON.stringify({
      created: '2026-01-01T00:00:00Z',
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...opts.config },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((_, i) => ({ created: '2026-01-01T00:00:00Z', created_by: `trustpull test layer ${i}` })),
    }),
  )
  const configBlob = await pushBlob(registryUrl, repo, config)

  const mediaType = docker ? MediaTypes.dockerManifest : MediaTypes.ociManifest
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: { mediaType: docker ? MediaTypes.dockerConfig : MediaTypes.ociConfig, ...configBlob },
    layers: layers.map(({ mediaType: m, digest, size }) => ({ mediaType: m, digest, size })),
    ...(opts.subject && !docker ? { subject: opts.subject } : {}),
    ...(opts.annotations && !docker ? { annotations: opts.annotations } : {}),
  }
  const bytes = Buffer.from(JSON.stringify(manifest))
  const digest = sha256(bytes)
  await pushManifest(registryUrl, repo, tag ?? digest, bytes, mediaType)
  return {
    repo,
    tag,
    digest,
    mediaType,
    manifest: bytes,
    size: bytes.byteLength,
    configDigest: configBlob.digest,
    config,
    layerDigests: layers.map((l) => l.digest),
    layers,
    platform,
    descriptor: { mediaType, digest, size: bytes.byteLength, platform },
  }
}

export interface PushIndexOptions extends Omit<PushImageOptions, 'platform' | 'subject'> {
  /** Default linux/amd64 and linux/arm64. */
  platforms?: Platform[]
}

export interface PushedIndex {
  repo: string
  tag: string | undefined
  digest: string
  mediaType: string
  manifest: Uint8Array
  size: number
  /** One image per platform, in the order of `platforms`, each pushed by digest only. */
  children: PushedImage[]
}

/** Pushes one image per platform (by digest) and an index (OCI, or a Docker manifest list) over them. */
export async function pushIndex(registryUrl: string, repo: string, tag: string | undefined, opts: PushIndexOptions = {}): Promise<PushedIndex> {
  const platforms = opts.platforms ?? [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64' },
  ]
  const { platforms: _p, annotations, ...imageOpts } = opts
  const seed = opts.seed ?? `${repo}:${tag ?? ''}`
  const children: PushedImage[] = []
  for (const platform of platforms) {
    children.push(await pushImage(registryUrl, repo, undefined, { ...imageOpts, seed, platform }))
  }
  const docker = isDocker(opts.mediaType)
  const mediaType = docker ? MediaTypes.dockerManifestList : MediaTypes.ociIndex
  const index = {
    schemaVersion: 2,
    mediaType,
    manifests: children.map((c) => c.descriptor),
    ...(annotations && !docker ? { annotations } : {}),
  }
  const bytes = Buffer.from(JSON.stringify(index))
  const digest = sha256(bytes)
  await pushManifest(registryUrl, repo, tag ?? digest, bytes, mediaType)
  return { repo, tag, digest, mediaType, manifest: bytes, size: bytes.byteLength, children }
}

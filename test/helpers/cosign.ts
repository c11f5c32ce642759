// Wrappers for the real cosign 2.5 (`.tools/bin/cosign`, from Debian trixie) against a loopback
// registry: key pairs, signatures, attestations, and `cosign verify` (to show it still works
// through the proxy). Every call gets its own empty HOME, DOCKER_CONFIG and TUF_ROOT, so nothing
// (TUF cache, registry credentials) leaks between tests, and COSIGN_EXPERIMENTAL is unset unless
// a mode needs it.
//
// What cosign 2.5 writes to docker-registry 2.8 (found by experiment; distribution 2.8 has no
// referrers API: GET /v2/<name>/referrers/<digest> answers a plain-text 404):
// - `sign --key` (default, legacy): tag `sha256-<hex>.sig`, an OCI manifest with config
//   `application/vnd.oci.image.config.v1+json` and one layer per signature, media type
//   `application/vnd.dev.cosign.simplesigning.v1+json`, annotation
//   `dev.cosignproject.cosign/signature` (base64). With `--tlog-upload=false` there is no
//   `dev.sigstore.cosign/bundle` annotation. Signing again appends a layer to the same tag.
//   `-a k=v` annotations land in the payload's `optional` section; the payload's
//   `critical.identity.docker-reference` is the repository as signed (host included).
// - `sign --recursive` on an index: a `.sig` tag for the index and for each child manifest.
// - `sign --registry-referrers-mode=oci-1-1` is refused unless COSIGN_EXPERIMENTAL=1. With it,
//   cosign PUTs the signature manifest by digest (config `application/vnd.dev.cosign.artifact.sig.v1+json`,
//   `subject` = the image), GETs `/referrers/<digest>` (404), then writes the fallback tag
//   `sha256-<hex>` (no suffix): an OCI index whose entry has `artifactType`
//   `application/vnd.dev.cosign.artifact.sig.v1+json`. No `.sig` tag. `cosign verify` only finds it
//   with `--experimental-oci11`.
// - `attest --type slsaprovenance` (legacy): tag `sha256-<hex>.att`, layer
//   `application/vnd.dsse.envelope.v1+json` with annotations `predicateType`
//   (`https://slsa.dev/provenance/v0.2`) and an empty `dev.cosignproject.cosign/signature`.
// - `attest --new-bundle-format` (there is no such flag on `sign` in 2.5, and `attest` has no
//   `--registry-referrers-mode`): works without the referrers API through the fallback tag
//   `sha256-<hex>` (an index). Its entry is typed `artifactType: application/vnd.oci.empty.v1+json`
//   (the config's media type, not the bundle's), and the manifest it points at has config
//   `application/vnd.oci.empty.v1+json`, top-level `artifactType` and one layer
//   `application/vnd.dev.sigstore.bundle.v0.3+json` (a bundle with a DSSE envelope; with
//   `--tlog-upload=false` its verificationMaterial is only `publicKey.hint`), annotations
//   `dev.sigstore.bundle.content: dsse-envelope` and `dev.sigstore.bundle.predicateType`.
//   `verify-attestation --new-bundle-format --key` wants a trusted root even for a key: without
//   one it tries to reach the public TUF CDN (no network here); an empty trusted_root.json works.
// - cosign talks plain HTTP to 127.0.0.1 even without `--allow-http-registry`; we pass it anyway.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { REPO_ROOT, run, type RunResult } from './proc.ts'

export const COSIGN_BIN = process.env.TRUSTPULL_TEST_COSIGN ?? join(REPO_ROOT, '.tools/bin/cosign')

const TIMEOUT_MS = 60_000

/** Runs cosign with a throw-away HOME; `experimental` sets COSIGN_EXPERIMENTAL=1. */
export async function cosign(args: readonly string[], { experimental = false, cwd }: { experimental?: boolean; cwd?: string } = {}): Promise<RunResult> {
  const home = await mkdtemp(join(tmpdir(), 'trustpull-cosign-home-'))
  try {
    const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, DOCKER_CONFIG: join(home, '.docker'), TUF_ROOT: join(home, 'tuf'), COSIGN_PASSWORD: '' }
    delete env.COSIGN_EXPERIMENTAL
    delete env.SIGSTORE_ROOT_FILE
    if (experimental) env.COSIGN_EXPERIMENTAL = '1'
    return await run(COSIGN_BIN, args, { env, cwd: cwd ?? home, timeoutMs: TIMEOUT_MS })
  } finally {
    await rm(home, { recursive: true, force: true })
  }
}

/** Like `cosign`, but throws (with stderr) unless it exits 0. */
export async function cosignOk(args: readonly string[], opts: { experimental?: boolean; cwd?: string } = {}): Promise<RunResult> {
  const r = await cosign(args, opts)
  if (r.code !== 0) throw new Error(`cosign ${args.join(' ')} failed (${r.code ?? r.signal}):\n${r.stderr.trim()}`)
  return r
}

export interface KeyPair {
  privateKeyPath: string
  publicKeyPath: string
  /** PEM `-----BEGIN PUBLIC KEY-----` (ECDSA P-256). */
  publicKeyPem: string
  /** The private key is encrypted with this (empty) password. */
  password: ''
}

/** `cosign generate-key-pair` into `dir` (cosign.key, cosign.pub), empty password. */
export async function generateKeyPair(dir: string): Promise<KeyPair> {
  await cosignOk(['generate-key-pair', '--output-key-prefix', join(dir, 'cosign')])
  const publicKeyPath = join(dir, 'cosign.pub')
  return {
    privateKeyPath: join(dir, 'cosign.key'),
    publicKeyPath,
    publicKeyPem: await readFile(publicKeyPath, 'utf8'),
    password: '',
  }
}

// Flags every registry-writing command gets: loopback HTTP, no Rekor, no prompt.
const REGISTRY_FLAGS = ['--allow-http-registry', '--tlog-upload=false', '-y']

function annotationFlags(annotations: Record<string, string> | undefined): string[] {
  return Object.entries(annotations ?? {}).flatMap(([k, v]) => ['-a', `${k}=${v}`])
}

export interface SignOptions {
  /** Sign an index and every manifest it lists. */
  recursive?: boolean
  /** Only `false` is supported: a loopback test has no Rekor. */
  tlogUpload?: false
  /** Land in the simple-signing payload's `optional` section. */
  annotations?: Record<string, string>
  /** `legacy` (default): `.sig` tag. `oci-1-1`: referrer + fallback tag (needs COSIGN_EXPERIMENTAL, set here). */
  referrersMode?: 'legacy' | 'oci-1-1'
}

/** `cosign sign --key` on `ref` (`HOST/repo@sha256:...` or `:tag`). Throws on failure. */
export async function signImage(ref: string, keyPath: string, opts: SignOptions = {}): Promise<RunResult> {
  const args = ['sign', '--key', keyPath, ...REGISTRY_FLAGS, ...annotationFlags(opts.annotations)]
  if (opts.recursive) args.push('--recursive')
  const oci11 = opts.referrersMode === 'oci-1-1'
  if (oci11) args.push('--registry-referrers-mode=oci-1-1')
  args.push(ref)
  return cosignOk(args, { experimental: oci11 })
}

export interface AttestOptions {
  /** Attach a Sigstore bundle v0.3 (referrer, or the `sha256-<hex>` fallback tag) instead of `.att`. */
  newBundleFormat?: boolean
  recursive?: boolean
  /** Replace existing attestations of the same predicate type. */
  replace?: boolean
}

/** `cosign attest --key --predicate FILE --type TYPE` on `ref`. Throws on failure. */
export async function attest(ref: string, keyPath: string, predicateFile: string, type: string, opts: AttestOptions = {}): Promise<RunResult> {
  const args = ['attest', '--key', keyPath, '--predicate', predicateFile, '--type', type, ...REGISTRY_FLAGS]
  if (opts.newBundleFormat) args.push('--new-bundle-format')
  if (opts.recursive) args.push('--recursive')
  if (opts.replace) args.push('--replace')
  args.push(ref)
  return cosignOk(args)
}

/** Writes a SLSA v0.2 provenance predicate (for `--type slsaprovenance`) and returns its path. */
export async function writeSlsaPredicate(dir: string, builderId: string, fileName = 'slsa-predicate.json'): Promise<string> {
  const path = join(dir, fileName)
  const predicate = {
    builder: { id: builderId },
    buildType: 'https://trustpull.test/build/v1',
    invocation: { configSource: { uri: 'git+https://example.test/app', digest: { sha1: '0'.repeat(40) } } },
    materials: [],
  }
  await writeFile(path, JSON.stringify(predicate))
  return path
}

export interface VerifyResult extends RunResult {
  ok: boolean
  /** `cosign verify` prints one JSON array of payloads on stdout when it succeeds. */
  payloads: unknown[]
}

function parsePayloads(stdout: string): unknown[] {
  const out: unknown[] = []
  for (const line of stdout.split('\n')) {
    const trimmed = line.trim()
    if (!trimmed) continue
    try {
      const parsed: unknown = JSON.parse(trimmed)
      if (Array.isArray(parsed)) out.push(...(parsed as unknown[]))
      else out.push(parsed)
    } catch {
      // not JSON: ignore
    }
  }
  return out
}

/**
 * `cosign verify --key` (tlog ignored, since test signatures carry no Rekor entry). Never throws
 * for a failed verification: `ok` and `stderr` say why.
 */
export async function verifyImage(ref: string, publicKeyPath: string, { experimentalOci11 = false }: { experimentalOci11?: boolean } = {}): Promise<VerifyResult> {
  const args = ['verify', '--key', publicKeyPath, '--insecure-ignore-tlog=true', '--allow-http-registry']
  if (experimentalOci11) args.push('--experimental-oci11')
  args.push(ref)
  const r = await cosign(args)
  return { ...r, ok: r.code === 0, payloads: r.code === 0 ? parsePayloads(r.stdout) : [] }
}

// With --new-bundle-format cosign wants trust material even for a key; empty keeps it offline.
const EMPTY_TRUSTED_ROOT = JSON.stringify({
  mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
  tlogs: [],
  certificateAuthorities: [],
  ctlogs: [],
  timestampAuthorities: [],
})

/** `cosign verify-attestation --key --type TYPE`; `ok` false (not a throw) when it fails. */
export async function verifyAttestation(ref: string, publicKeyPath: string, type: string, { newBundleFormat = false }: { newBundleFormat?: boolean } = {}): Promise<VerifyResult> {
  const dir = await mkdtemp(join(tmpdir(), 'trustpull-cosign-root-'))
  try {
    const args = ['verify-attestation', '--key', publicKeyPath, '--type', type, '--insecure-ignore-tlog=true', '--allow-http-registry']
    if (newBundleFormat) {
      const root = join(dir, 'trusted_root.json')
      await writeFile(root, EMPTY_TRUSTED_ROOT)
      args.push('--new-bundle-format', '--trusted-root', root)
    }
    args.push(ref)
    const r = await cosign(args)
    return { ...r, ok: r.code === 0, payloads: r.code === 0 ? parsePayloads(r.stdout) : [] }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

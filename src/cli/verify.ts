// `trustpull verify IMAGE`: the proxy's own decision for one image, printed. With --config: the
// same start-up (config, trust roots, policies), upstream client and gate as `serve`, so only
// configured upstreams are dialled. Without it, like `cosign verify`: the registry the reference
// names, judged by the --key or --certificate-* authority given on the command line.
import { defaultConfig, loadConfig } from '../config/load.ts'
import { stripDockerTransport } from '../copy/endpoint.ts'
import { ConfigError, RegistryError } from '../errors.ts'
import { ManifestError, parseManifest } from '../oci/manifest.ts'
import { parseReference, referenceString } from '../oci/reference.ts'
import type { Verdict } from '../policy/types.ts'
import { buildCore } from '../core.ts'
import { createLogger } from '../telemetry/logger.ts'
import type { Evidence } from '../verify/types.ts'
import { adHocRegistry, type RegistryFlags } from './verify-registry.ts'

export interface VerifyOptions extends RegistryFlags {
  config?: string
  key?: string
  certificateIdentity?: string
  certificateIdentityRegexp?: string
  certificateOidcIssuer?: string
  certificateOidcIssuerRegexp?: string
  trustedRoot?: string
  json?: boolean
}

/** Resolves the exit code: 0 only when the image is allowed (verified, or exempt by policy). */
export async function verifyCommand(
  image: string,
  options: VerifyOptions,
  io = { out: (s: string) => void process.stdout.write(s), err: (s: string) => void process.stderr.write(s) },
): Promise<number> {
  const { name, reference } = splitImage(image)
  const policy = adHocPolicy(options)
  let config
  let dispatcher
  if (options.config) {
    if (options.allowHttpRegistry || options.allowInsecureRegistry)
      throw new ConfigError('--allow-http-registry and --allow-insecure-registry apply only without --config (with it, the upstreams configured are what is dialled)')
    config = loadConfig(options.config, policy)
  } else {
    if (!policy.policies) throw new ConfigError('without --config, give --key or --certificate-identity[-regexp] with --certificate-oidc-issuer[-regexp], as cosign verify does')
    const registry = await adHocRegistry(name, options, defaultConfig().timeouts)
    config = loadConfig(undefined, { ...policy, upstreams: [registry.upstream] })
    dispatcher = registry.dispatcher
  }
  const runtime = await buildCore(config, {
    logger: createLogger('silent'),
    ...(options.trustedRoot ? { trustedRoot: options.trustedRoot } : {}),
    ...(dispatcher ? { upstreamDispatcher: dispatcher } : {}),
  })
  try {
    const target = runtime.router.resolve(undefined, name)
    const ref = parseReference(reference)
    if (!ref) throw new RegistryError('MANIFEST_INVALID', `invalid tag or digest "${reference}"`)
    const fetched = await target.upstream.client.getManifest(target.repository, referenceString(ref))
    if (!fetched) throw new RegistryError('MANIFEST_UNKNOWN', `${image} not found on ${target.upstream.config.name}`)
    const manifest = parseManifest(fetched.bytes, fetched.mediaType)
    const verdict = await runtime.gate.verdict({
      upstream: target.upstream.config.name,
      repository: target.repository,
      digest: fetched.digest,
      mediaType: fetched.mediaType,
      manifest,
      bytes: fetched.bytes,
      reference,
    })
    io.out(options.json ? `${JSON.stringify(verdict, null, 2)}\n` : renderVerdict(verdict))
    return verdict.result === 'allow' ? 0 : 1
  } catch (err) {
    if (err instanceof RegistryError || err instanceof ManifestError) {
      io.err(`trustpull verify: ${err.message}\n`)
      return err instanceof RegistryError && err.status < 500 ? 1 : 3
    }
    throw err
  } finally {
    await runtime.close()
  }
}

/** `[registry/]repository[:tag|@digest]`; no tag means `latest`, as every client assumes. */
export function splitImage(written: string): { name: string; reference: string } {
  const image = stripDockerTransport(written)
  const at = image.indexOf('@')
  if (at !== -1) return { name: image.slice(0, at), reference: image.slice(at + 1) }
  const colon = image.lastIndexOf(':')
  if (colon > image.lastIndexOf('/')) return { name: image.slice(0, colon), reference: image.slice(colon + 1) }
  return { name: image, reference: 'latest' }
}

/** `--key` or `--certificate-*` replace the configured policies with one for every image. */
export function adHocPolicy(options: VerifyOptions): Record<string, unknown> {
  const identity = {
    ...(options.certificateOidcIssuer !== undefined && { issuer: options.certificateOidcIssuer }),
    ...(options.certificateOidcIssuerRegexp !== undefined && { issuerRegExp: options.certificateOidcIssuerRegexp }),
    ...(options.certificateIdentity !== undefined && { subject: options.certificateIdentity }),
    ...(options.certificateIdentityRegexp !== undefined && { subjectRegExp: options.certificateIdentityRegexp }),
  }
  const authority = options.key ? { key: { file: options.key } } : Object.keys(identity).length ? { keyless: { identities: [identity] } } : undefined
  if (!authority) return {}
  return { policies: [{ name: 'command-line', images: [{ glob: '**' }], authorities: [authority] }], policyDirs: [], noMatchPolicy: 'deny' }
}

export function renderVerdict(v: Verdict): string {
  const lines = [`${v.image}@${v.digest}: ${v.result.toUpperCase()}`, `  ${v.reasons[0] ?? ''}`]
  for (const p of v.policies) {
    lines.push(`  policy ${p.name} (${p.mode}): ${p.result}`)
    for (const a of p.authorities) {
      lines.push(`    authority ${a.name} (${a.type}): ${a.ok ? 'pass' : 'fail'}${a.code ? ` ${a.code}` : ''}`)
      for (const e of a.evidence) lines.push(`      ${describeEvidence(e)}`)
      if (!a.ok) for (const r of a.reasons) lines.push(`      - ${r}`)
      for (const w of a.warnings ?? []) lines.push(`      ! ${w}`)
    }
  }
  for (const s of v.signers) {
    const level = s.level ? `, notation level ${s.level}${s.logged?.length ? `, logged ${s.logged.join(' ')}` : ''}` : ''
    lines.push(`  signed by ${s.subject ? `${s.subject} (${s.issuer})` : `key ${s.keyHint}`} [${s.policy}/${s.authority}${level}]`)
  }
  return `${lines.join('\n')}\n`
}

function describeEvidence(e: Evidence): string {
  const where = `${e.kind} ${e.format} via ${e.origin.via} ${e.origin.manifestDigest.slice(0, 19)}`
  if (e.ok) {
    const tlog = e.tlog ? `, tlog index ${e.tlog.logIndex}` : ''
    const n = e.notation
    const notation = n ? `, ${e.signer?.subject ?? 'unverified'}, statement ${n.statement} level ${n.level}${n.logged.map((l) => `, logged ${l.code}`).join('')}` : ''
    return `✔ ${where}${e.predicateType ? ` (${e.predicateType})` : ''}${tlog}${notation}`
  }
  return `✘ ${where}: ${e.code ?? 'FAILED'} ${e.reason ?? ''}`.trimEnd()
}

// `trustpull verify` without --config dials the registry the image reference names, as cosign
// does: HTTPS; plain HTTP only for loopback and private addresses or with --allow-http-registry
// (HTTPS is tried first even then, as go-containerregistry does); certificate checks off only with
// --allow-insecure-registry; credentials from the docker / containers auth files and credential
// helpers. Threat: a verify that silently falls back to cleartext, or skips certificate checks,
// for a registry on the internet.
import ipaddr from 'ipaddr.js'
import { Agent, request, type Dispatcher } from 'undici'
import type { Config } from '../config/schema.ts'
import { fileCredentials } from '../copy/docker-config.ts'
import { ConfigError } from '../errors.ts'
import { isDockerHub, parseImageName } from '../oci/image-name.ts'

export interface RegistryFlags {
  allowHttpRegistry?: boolean
  allowInsecureRegistry?: boolean
}

export interface AdHocRegistry {
  /** The config's one upstream: the named registry, by its own name. */
  upstream: Record<string, unknown>
  /** Certificate checks off (--allow-insecure-registry), else undefined: the client's own agent. */
  dispatcher?: Dispatcher
}

/** go-containerregistry's rule for registries that may speak plain HTTP without a flag. */
export function mayUseHttp(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')
  if (host === 'localhost') return true
  if (!ipaddr.isValid(host)) return false
  const range = ipaddr.process(host).range()
  return range === 'loopback' || range === 'private'
}

export async function adHocRegistry(image: string, flags: RegistryFlags, timeouts: Config['timeouts']): Promise<AdHocRegistry> {
  const { registry, repository } = parseImageName(image)
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$/.test(registry)) throw new ConfigError(`"${registry}" is not a registry host name trustpull can dial`)
  const dispatcher = flags.allowInsecureRegistry
    ? new Agent({ connect: { timeout: timeouts.connect, rejectUnauthorized: false }, headersTimeout: timeouts.headers, bodyTimeout: timeouts.body })
    : undefined
  const host = isDockerHub(registry) ? 'registry-1.docker.io' : registry
  const httpAllowed = flags.allowHttpRegistry || flags.allowInsecureRegistry || mayUseHttp(registry)
  const scheme = httpAllowed && !(await speaksHttps(host, dispatcher, timeouts.connect)) ? 'http' : 'https'
  const credentials = fileCredentials(registry, {}, repository)
  return {
    upstream: { name: registry, url: `${scheme}://${host}`, default: true, ...(credentials && { auth: { username: credentials.username, password: credentials.password } }) },
    ...(dispatcher && { dispatcher }),
  }
}

/** Whether `https://host/v2/` answers at all (any status): the first of the two schemes tried. */
async function speaksHttps(host: string, dispatcher: Dispatcher | undefined, timeoutMs: number): Promise<boolean> {
  try {
    const res = await request(`https://${host}/v2/`, {
      ...(dispatcher && { dispatcher }),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    })
    await res.body.dump()
    return true
  } catch {
    return false
  }
}

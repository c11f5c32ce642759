// Which registry a destination reference names, at which address, with which credentials.
// A destination is an `upstreams` entry by name when there is one (its `url` and `auth` are used,
// so plain HTTP is whatever that URL says), otherwise the host itself: HTTPS, or plain HTTP for a
// loopback address. Credentials: the upstream's `auth` (value, file or environment variable), else
// the first auth file naming the registry (see docker-config.ts).
import type { Config } from '../config/schema.ts'
import { resolveCredentials } from '../upstream/credentials.ts'
import { isDockerHub } from '../upstream/router.ts'
import { fileCredentials, type AuthFileOptions } from './docker-config.ts'
import { CopyError } from './errors.ts'
import type { DestinationRegistry } from './registry-target.ts'

function looksLikeHost(name: string): boolean {
  return name.includes('.') || name.includes(':') || name === 'localhost'
}

export function isLoopbackHost(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export function destinationRegistry(registry: string, config: Config, auth: AuthFileOptions = {}): DestinationRegistry {
  const upstream = config.upstreams.find((u) => u.name === registry || (isDockerHub(u.name) && isDockerHub(registry)))
  if (upstream) {
    const credentials = upstream.auth ? resolveCredentials(upstream) : fileCredentials(registry, auth)
    return { name: registry, url: upstream.url, ...(credentials ? { credentials } : {}) }
  }
  if (!looksLikeHost(registry)) {
    throw new CopyError('BAD_ENDPOINT', `"${registry}" is neither a configured upstream nor a registry host name`)
  }
  const url = isDockerHub(registry) ? 'https://registry-1.docker.io' : `${isLoopbackHost(registry) ? 'http' : 'https'}://${registry}`
  const credentials = fileCredentials(registry, auth)
  return { name: registry, url, ...(credentials ? { credentials } : {}) }
}

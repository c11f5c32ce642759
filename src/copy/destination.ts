// Which registry a destination reference names, at which address, with which credentials.
// A destination is an `upstreams` entry by name when there is one (its `url` and `auth` are used,
// so plain HTTP is whatever that URL says), otherwise the host itself: HTTPS, or plain HTTP for a
// loopback address. Credentials: the upstream's `auth` (value, file or environment variable), else
// the first auth file naming the registry (see docker-config.ts).
// TLS: the destination's certificate is verified against the system CAs plus the `*.crt` files of
// `--dest-cert-dir` (default /etc/containers/certs.d/HOST, then /etc/docker/certs.d/HOST, as
// containers-certs.d(5)); a `*.cert` + `*.key` pair there is the client certificate.
// `--dest-tls-verify=false` turns verification off for that one destination (a loud choice).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Config } from '../config/schema.ts'
import { resolveCredentials } from '../upstream/credentials.ts'
import { isDockerHub, isHostLike } from '../oci/image-name.ts'
import { fileCredentials, type AuthFileOptions } from './docker-config.ts'
import { CopyError } from './errors.ts'
import type { DestinationRegistry, DestinationTls } from './registry-target.ts'

export interface DestinationOptions extends AuthFileOptions {
  /** false: do not verify the destination's certificate. */
  tlsVerify?: boolean
  /** A containers-certs.d directory for the destination (replaces the default per-host ones). */
  certDir?: string
}

const DEFAULT_CERT_DIRS = ['/etc/containers/certs.d', '/etc/docker/certs.d']

/** CA bundle and client certificate from a certs.d directory; `undefined` when it does not exist. */
export function readCertDir(dir: string, required: boolean): Omit<DestinationTls, 'verify'> | undefined {
  let names: string[]
  try {
    names = readdirSync(dir).sort()
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new CopyError('BAD_ENDPOINT', `cannot read certificate directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  const read = (name: string) => readFileSync(join(dir, name), 'utf8')
  const ca = names.filter((n) => n.endsWith('.crt')).map(read)
  const certs = names.filter((n) => n.endsWith('.cert'))
  const tls: Omit<DestinationTls, 'verify'> = ca.length ? { ca } : {}
  if (certs.length > 1) throw new CopyError('BAD_ENDPOINT', `certificate directory ${dir} holds more than one client certificate (*.cert)`)
  if (certs.length === 1) {
    const key = certs[0]!.replace(/\.cert$/, '.key')
    if (!names.includes(key)) throw new CopyError('BAD_ENDPOINT', `certificate directory ${dir}: ${certs[0]} has no ${key}`)
    return { ...tls, cert: read(certs[0]!), key: read(key) }
  }
  return tls
}

function destinationTls(registry: string, options: DestinationOptions): DestinationTls {
  const verify = options.tlsVerify !== false
  if (options.certDir) return { verify, ...readCertDir(options.certDir, true) }
  for (const base of DEFAULT_CERT_DIRS) {
    const found = readCertDir(join(base, registry), false)
    if (found) return { verify, ...found }
  }
  return { verify }
}

export function isLoopbackHost(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(0, registry.indexOf(']') + 1) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export function destinationRegistry(registry: string, config: Config, auth: DestinationOptions = {}, repository = ''): DestinationRegistry {
  const tls = destinationTls(registry, auth)
  const upstream = config.upstreams.find((u) => u.name === registry || (isDockerHub(u.name) && isDockerHub(registry)))
  if (upstream) {
    const credentials = upstream.auth ? resolveCredentials(upstream) : fileCredentials(registry, auth, repository)
    return { name: registry, url: upstream.url, tls, ...(credentials ? { credentials } : {}) }
  }
  if (!isHostLike(registry)) {
    throw new CopyError('BAD_ENDPOINT', `"${registry}" is neither a configured upstream nor a registry host name`)
  }
  const url = isDockerHub(registry) ? 'https://registry-1.docker.io' : `${isLoopbackHost(registry) ? 'http' : 'https'}://${registry}`
  const credentials = fileCredentials(registry, auth, repository)
  return { name: registry, url, tls, ...(credentials ? { credentials } : {}) }
}

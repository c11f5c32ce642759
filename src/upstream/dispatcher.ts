// The connection pool of one upstream: an undici Agent, or undici's EnvHttpProxyAgent when
// HTTPS_PROXY / HTTP_PROXY (or lowercase) name a forward proxy, hosts in NO_PROXY going direct.
// Threat: SSRF and a CA trusted too widely. A per-upstream `ca` bundle is trusted for that
// upstream's connections only (added to Node's roots, so its blob redirects to a public CDN still
// verify). Direct connections refuse private addresses at connect time (privateRefusingLookup);
// through a proxy the proxy resolves names, so the target is checked before each request (the
// client's redirect and realm checks) and the proxy address itself, which the operator named, is
// not refused.
import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici'
import { ConfigError } from '../errors.ts'
import type { Config, UpstreamConfig } from '../config/schema.ts'
import { privateRefusingLookup } from './private-address.ts'

/** The proxy settings of an environment, as curl and Go read them (lowercase first). */
export function proxyEnv(env: NodeJS.ProcessEnv): { httpProxy?: string; httpsProxy?: string; noProxy?: string } {
  const pick = (name: string) => env[name.toLowerCase()] || env[name.toUpperCase()] || undefined
  return { httpProxy: pick('http_proxy'), httpsProxy: pick('https_proxy'), noProxy: pick('no_proxy') }
}

/** The PEM bundle of `upstreams[].ca`, read once; start-up stops naming the key when it is unusable. */
function readCa(upstream: UpstreamConfig): string[] | undefined {
  if (upstream.ca === undefined) return undefined
  let pem: string
  try {
    pem = readFileSync(upstream.ca, 'utf8')
  } catch (err) {
    throw new ConfigError(`upstreams[${upstream.name}].ca: cannot read ${upstream.ca}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
  }
  if (!/-----BEGIN CERTIFICATE-----/.test(pem)) throw new ConfigError(`upstreams[${upstream.name}].ca: ${upstream.ca} holds no PEM certificate`)
  return [...rootCertificates, pem]
}

export function upstreamDispatcher(upstream: UpstreamConfig, timeouts: Config['timeouts'], env: NodeJS.ProcessEnv = process.env): Dispatcher {
  const ca = readCa(upstream)
  const pool = { headersTimeout: timeouts.headers, bodyTimeout: timeouts.body, keepAliveTimeout: 30_000, connections: 64 }
  const connect = {
    timeout: timeouts.connect,
    ...(ca ? { ca } : {}),
    // Checked again at connect time, where DNS rebinding cannot slip past a checked name.
    ...(upstream.refusePrivateRedirects ? { lookup: privateRefusingLookup(new URL(upstream.url).hostname) } : {}),
  }
  const proxy = proxyEnv(env)
  if (!proxy.httpProxy && !proxy.httpsProxy) return new Agent({ ...pool, connect })
  // ProxyAgent takes the target's TLS options as requestTls; `connect` serves the NO_PROXY path.
  return new EnvHttpProxyAgent({
    ...pool,
    connect,
    // '' rather than undefined: undici would read process.env itself. HTTPS targets fall back to
    // HTTP_PROXY when HTTPS_PROXY is unset (undici's rule).
    httpProxy: proxy.httpProxy ?? '',
    httpsProxy: proxy.httpsProxy ?? '',
    noProxy: proxy.noProxy ?? '',
    connectTimeout: timeouts.connect,
    ...(ca ? { requestTls: { ca } } : {}),
  })
}

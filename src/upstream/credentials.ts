// Upstream credentials are read once at start-up from the config, a file or the environment
// (src/config/secret.ts). They live only inside the RegistryClient and are never logged.
import type { UpstreamConfig } from '../config/schema.ts'
import { readSecret } from '../config/secret.ts'

export interface Credentials {
  username: string
  password: string
}

export function resolveCredentials(upstream: UpstreamConfig, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const auth = upstream.auth
  if (!auth) return undefined
  const where = `upstreams[${upstream.name}].auth`
  return { username: readSecret(auth.username, `${where}.username`, env), password: readSecret(auth.password, `${where}.password`, env) }
}

// Upstream credentials are read once at start-up from the config, a file or the environment.
// They live only inside the RegistryClient and are never logged.
import { readFileSync } from 'node:fs'
import { ConfigError } from '../errors.ts'
import type { UpstreamConfig } from '../config/schema.ts'

export interface Credentials {
  username: string
  password: string
}

export function resolveCredentials(upstream: UpstreamConfig, env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const auth = upstream.auth
  if (!auth) return undefined
  const where = `upstreams[${upstream.name}].auth`
  const fromEnv = (name: string, key: string) => {
    const value = env[name]
    if (value === undefined || value === '') throw new ConfigError(`${where}.${key}: environment variable ${name} is not set`)
    return value
  }
  const username = auth.username ?? fromEnv(auth.usernameEnv!, 'usernameEnv')
  let password: string
  if (auth.password !== undefined) password = auth.password
  else if (auth.passwordEnv !== undefined) password = fromEnv(auth.passwordEnv, 'passwordEnv')
  else {
    try {
      password = readFileSync(auth.passwordFile!, 'utf8').replace(/\r?\n$/, '')
    } catch (err) {
      throw new ConfigError(`${where}.passwordFile: cannot read ${auth.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`)
    }
  }
  return { username, password }
}

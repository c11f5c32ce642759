// Images for the benchmarks: pushed to a real docker-registry and signed by the real cosign 2.5
// (key-based, `--tlog-upload=false`, as in an air gap); one cosign run signs a whole batch.
import { cosignOk, generateKeyPair, type KeyPair } from '../../test/helpers/cosign.ts'
import { pushImage, type PushedImage, type PushImageOptions } from '../../test/helpers/images.ts'
import type { Registry } from '../../test/helpers/registry.ts'
import type { Scope } from './harness.ts'

export const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json'

export async function benchKeys(scope: Scope): Promise<KeyPair> {
  return generateKeyPair(await scope.tempDir('trustpull-bench-keys-'))
}

/** Pushes `count` distinct images (`<repo>-<i>:v1`) and signs them all with one cosign run. */
export async function pushSigned(registry: Registry, keys: KeyPair, repo: string, count: number, opts: PushImageOptions = {}): Promise<PushedImage[]> {
  const images: PushedImage[] = []
  for (let i = 0; i < count; i++) images.push(await pushImage(registry.url, count === 1 ? repo : `${repo}-${i}`, 'v1', { seed: `${repo}-${i}-${Date.now()}`, ...opts }))
  await signAll(registry, keys, images)
  return images
}

export async function signAll(registry: Registry, keys: KeyPair, images: PushedImage[]): Promise<void> {
  // cosign takes many references in one run; batches keep the command line short.
  for (let i = 0; i < images.length; i += 50) {
    const refs = images.slice(i, i + 50).map((im) => `${registry.host}/${im.repo}@${im.digest}`)
    await cosignOk(['sign', '--key', keys.privateKeyPath, '--allow-http-registry', '--tlog-upload=false', '-y', ...refs])
  }
}

/** A policy that every image under `glob` must be signed with `keys`. */
export function keyPolicy(keys: KeyPair, glob = '**'): Record<string, unknown> {
  return { name: 'signed', images: [{ glob }], authorities: [{ name: 'release-key', key: { data: keys.publicKeyPem } }] }
}

/** The trustpull config for one upstream registry named docker.io (the default). */
export function proxyConfig(upstreamUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { upstreams: [{ name: 'docker.io', url: upstreamUrl, default: true }], log: { level: 'info' }, ...extra }
}

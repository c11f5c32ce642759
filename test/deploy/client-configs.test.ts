// The client configurations in deploy/ (containerd hosts.toml, docker daemon.json, podman
// registries.conf) send every pull to trustpull and leave no path to the real registry, and
// every registry they name is one trustpull routes.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse as parseToml } from 'smol-toml'
import { parse as parseYaml } from 'yaml'
import { parseConfig } from '../../src/config/load.ts'
import type { RegistryClient } from '../../src/upstream/types.ts'
import { UpstreamRouter } from '../../src/upstream/router.ts'

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url))
/** The proxy address written in the containerd files (the one string to substitute). */
const CONTAINERD_PROXY = 'http://trustpull.trustpull.svc:5000'
/** The proxy address written in the docker and podman files. */
const WORKSTATION_PROXY = 'trustpull.example:5000'

const read = (path: string) => readFileSync(join(DEPLOY, path), 'utf8')

/** The upstreams of the Kubernetes deployment: what the node configurations must route to. */
const clusterConfig = parseConfig(parseYaml(read('kubernetes/base/config/config.yaml')), 'deploy/kubernetes/base/config/config.yaml')
// Routing only: the clients are never called.
const router = new UpstreamRouter(clusterConfig.upstreams.map((config) => ({ config, client: {} as RegistryClient })))

interface HostsToml {
  server?: string
  capabilities?: string[]
  host?: Record<string, { capabilities?: string[]; skip_verify?: boolean; override_path?: boolean }>
  skip_verify?: boolean
  override_path?: boolean
}

/**
 * Why a hosts.toml could let containerd reach something other than the proxy (empty when it
 * cannot). containerd tries each [host] in file order, then `server`; without `server` it falls
 * back to the real registry, and containerd 1.6 refuses to parse a file without a [host] table
 * (it then pulls from the real registry).
 */
function containerdLeaks(text: string, proxy: string): string[] {
  let doc: HostsToml
  try {
    doc = parseToml(text) as HostsToml
  } catch (err) {
    return [`not valid TOML (containerd would ignore it and pull directly): ${(err as Error).message.split('\n')[0]}`]
  }
  const problems: string[] = []
  if (doc.server !== proxy) problems.push(`server is ${doc.server ?? 'unset (the real registry)'}, not the proxy`)
  const hosts = Object.entries(doc.host ?? {})
  if (hosts.length === 0) problems.push('no [host] table: containerd 1.6 ignores the file and pulls from the real registry')
  for (const [url, host] of hosts) {
    if (url !== proxy) problems.push(`host ${url} is not the proxy`)
    if (JSON.stringify(host.capabilities) !== '["pull","resolve"]') problems.push(`host ${url}: capabilities must be exactly pull, resolve`)
    if (host.skip_verify || host.override_path) problems.push(`host ${url}: skip_verify/override_path`)
  }
  if (JSON.stringify(doc.capabilities) !== '["pull","resolve"]') problems.push('server capabilities must be exactly pull, resolve')
  if (doc.skip_verify || doc.override_path) problems.push('server: skip_verify/override_path')
  return problems
}

interface RegistriesConf {
  'unqualified-search-registries'?: string[]
  'short-name-mode'?: string
  registry?: { prefix?: string; location: string; insecure?: boolean; blocked?: boolean; mirror?: { location: string }[] }[]
}

/** Why a registries.conf could let podman/CRI-O reach a registry other than through the proxy. */
function podmanLeaks(doc: RegistriesConf, proxyHost: string): string[] {
  const problems: string[] = []
  const entries = doc.registry ?? []
  const byPrefix = new Map(entries.map((r) => [r.prefix ?? r.location, r]))
  for (const r of entries) {
    const prefix = r.prefix ?? r.location
    if (r.location !== proxyHost && r.location !== `${proxyHost}/${prefix}`) problems.push(`${prefix}: location ${r.location} is not the proxy prefix ${proxyHost}/${prefix}`)
    for (const m of r.mirror ?? []) if (!m.location.startsWith(`${proxyHost}/`)) problems.push(`${prefix}: mirror ${m.location} is not the proxy`)
  }
  for (const search of doc['unqualified-search-registries'] ?? []) {
    if (!byPrefix.has(search)) problems.push(`short names resolve to ${search}, which is not routed through the proxy`)
  }
  return problems
}

t.test('containerd: every hosts.toml sends everything to trustpull and nothing elsewhere', async (t) => {
  const dirs = readdirSync(join(DEPLOY, 'containerd/certs.d')).sort()
  t.same(dirs, ['_default', 'docker.io', 'ghcr.io', 'registry.corp.example'])
  for (const dir of dirs) {
    const text = read(`containerd/certs.d/${dir}/hosts.toml`)
    t.same(containerdLeaks(text, CONTAINERD_PROXY), [], `${dir}/hosts.toml leaves no path past the proxy`)
    t.equal(text.split(CONTAINERD_PROXY).length - 1, 2, `${dir}: the proxy URL is the only thing to substitute (twice)`)
    if (dir === '_default') continue
    // containerd sends ?ns=<directory name>: trustpull must know it as an upstream.
    t.equal(router.resolve(dir, 'library/app').upstream.config.name, dir, `?ns=${dir} reaches the ${dir} upstream`)
  }
  t.throws(() => router.resolve('quay.io', 'org/app'), { code: 'DENIED' }, 'a registry missing from the upstreams is refused (what _default relies on)')
})

t.test('containerd: the check refuses the forms that fall through to the registry', async (t) => {
  const proxy = CONTAINERD_PROXY
  t.match(containerdLeaks(`server = "${proxy}"\ncapabilities = ["pull", "resolve"]\n`, proxy), [/no \[host\] table/], 'server only (containerd 1.6 ignores it)')
  t.match(
    containerdLeaks(`[host."${proxy}"]\n  capabilities = ["pull", "resolve"]\n`, proxy),
    [/server is unset/, /server capabilities/],
    'mirror only: the real registry is the last resort',
  )
  t.match(containerdLeaks(`server = "https://registry-1.docker.io"\n[host."${proxy}"]\n  capabilities = ["pull", "resolve"]\n`, proxy), [
    /server is https:\/\/registry-1\.docker\.io/,
  ])
  t.match(
    containerdLeaks(
      `server = "${proxy}"\ncapabilities = ["pull", "resolve"]\n[host."${proxy}"]\n  capabilities = ["pull", "resolve"]\n[host."https://mirror.gcr.io"]\n  capabilities = ["pull", "resolve"]\n`,
      proxy,
    ),
    [/host https:\/\/mirror\.gcr\.io is not the proxy/],
  )
  t.match(containerdLeaks(`server = "${proxy}`, proxy), [/not valid TOML/])
})

t.test('containerd README says where the files go', async (t) => {
  const readme = read('containerd/README.md')
  t.match(readme, /\/etc\/containerd\/certs\.d/)
  t.match(readme, /config_path = "\/etc\/containerd\/certs\.d"/)
  t.match(readme, /io\.containerd\.grpc\.v1\.cri/, 'containerd 1.x config')
  t.match(readme, /io\.containerd\.cri\.v1\.images/, 'containerd 2.x config')
})

t.test('docker: registry-mirrors names only trustpull, and the README explains the fall-back', async (t) => {
  const daemon = JSON.parse(read('docker/daemon.json')) as { 'registry-mirrors': string[]; 'insecure-registries'?: string[] }
  t.same(daemon['registry-mirrors'], [`http://${WORKSTATION_PROXY}`])
  t.same(daemon['insecure-registries'], [WORKSTATION_PROXY], 'plain HTTP only for the proxy itself')
  t.same(Object.keys(daemon).sort(), ['insecure-registries', 'registry-mirrors'])
  // registry-mirrors clients send no ns and no prefix: the default upstream must be Docker Hub.
  t.equal(router.resolve(undefined, 'library/nginx').upstream.config.name, 'docker.io')
  const readme = read('docker/README.md')
  t.match(readme, /falls back to Docker Hub/, 'the fall-back is documented')
  t.match(readme, /egress|outbound traffic to Docker Hub .* blocked/is)
  const prefixed = /docker pull trustpull\.example:5000\/([a-z0-9.-]+)\/(\S+):/g
  const examples = [...readme.matchAll(prefixed)]
  t.ok(examples.length >= 3, 'the explicit prefix form is shown')
  for (const [, registry, repository] of examples) {
    t.equal(router.resolve(undefined, `${registry}/${repository}`).upstream.config.name, registry, `prefix ${registry} reaches its upstream`)
  }
})

t.test('podman / CRI-O: every registry is remapped to the proxy, none left direct', async (t) => {
  const doc = parseToml(read('podman/registries.conf')) as RegistriesConf
  t.same(podmanLeaks(doc, WORKSTATION_PROXY), [])
  t.equal(doc['short-name-mode'], 'enforcing')
  const remapped = (doc.registry ?? []).filter((r) => r.prefix)
  t.same(
    remapped.map((r) => r.prefix),
    ['docker.io', 'ghcr.io', 'registry.corp.example'],
  )
  for (const r of doc.registry ?? []) t.equal(r.insecure, true, `${r.prefix ?? r.location}: insecure, as trustpull serves plain HTTP here`)
  for (const r of remapped) {
    // podman sends the rewritten path: /v2/<prefix>/<repository>/..., no ns.
    const path = `${r.location.slice(WORKSTATION_PROXY.length + 1)}/library/app`
    t.equal(router.resolve(undefined, path).upstream.config.name, r.prefix, `${r.prefix} is routed by its path prefix`)
  }
  t.match(
    podmanLeaks({ registry: [{ prefix: 'ghcr.io', location: 'ghcr.io' }] }, WORKSTATION_PROXY),
    [/location ghcr\.io is not the proxy prefix/],
    'the check refuses a registry left direct',
  )
  t.match(podmanLeaks({ registry: [{ prefix: 'ghcr.io', location: `${WORKSTATION_PROXY}/ghcr.io`, mirror: [{ location: 'mirror.gcr.io' }] }] }, WORKSTATION_PROXY), [
    /mirror mirror\.gcr\.io is not the proxy/,
  ])
  t.match(podmanLeaks({ 'unqualified-search-registries': ['quay.io'] }, WORKSTATION_PROXY), [/short names resolve to quay\.io/])
})

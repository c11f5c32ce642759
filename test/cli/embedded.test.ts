// `trustpull serve` with no --config: four public upstreams, and the shipped policies for the
// Kubernetes release images and Chainguard's images load, compile and match exactly those images;
// the content store is on, under $XDG_DATA_HOME/trustpull.
import t from 'tap'
import { readdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import { EMBEDDED_DEFAULTS } from '../../src/config/embedded.ts'
import { parseConfig } from '../../src/config/load.ts'
import { defaultStoragePath } from '../../src/config/schema.ts'
import { globsMatch, imageNames } from '../../src/policy/glob.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { loadTrustRoots } from '../../src/verify/trust-root.ts'
import { REPO_ROOT, startDaemon, tempDir } from '../helpers/proc.ts'

t.test('the embedded policies compile against the public-good root and match only their images', async (t) => {
  const config = parseConfig(structuredClone(EMBEDDED_DEFAULTS), 'embedded defaults')
  t.same(
    config.upstreams.map((u) => u.name),
    ['docker.io', 'ghcr.io', 'registry.k8s.io', 'cgr.dev'],
  )
  t.equal(config.noMatchPolicy, 'deny')
  const { policySet } = loadPolicies(config, { trustRoots: await loadTrustRoots(config.trustRoots) })
  const names = config.upstreams.map((u) => u.name)
  const matching = (upstream: string, repository: string) => policySet.policies.filter((p) => globsMatch(p.globs, imageNames(upstream, repository, names))).map((p) => p.name)
  t.same(matching('registry.k8s.io', 'pause'), ['kubernetes-release-images'])
  t.same(matching('registry.k8s.io', 'kube-apiserver-amd64'), ['kubernetes-release-images'])
  t.same(matching('cgr.dev', 'chainguard/static'), ['chainguard-images'])
  t.same(matching('cgr.dev', 'other-org/static'), [], 'only the public chainguard namespace')
  t.same(matching('docker.io', 'library/nginx'), [], 'Docker Hub images follow noMatchPolicy')
  t.same(matching('ghcr.io', 'org/app'), [])
  for (const policy of policySet.policies) {
    for (const authority of policy.authorities) t.notOk('action' in authority && authority.action === 'pass', `${policy.name} is never a static pass`)
  }
})

t.test('the store is on by default, under $XDG_DATA_HOME/trustpull (absolute only), else ~/.local/share/trustpull', async (t) => {
  const config = parseConfig({}, 'no config')
  t.equal(config.storage.enabled, true)
  t.equal(config.storage.path, defaultStoragePath())
  t.equal(defaultStoragePath({ XDG_DATA_HOME: '/srv/data' }), '/srv/data/trustpull')
  t.equal(defaultStoragePath({ XDG_DATA_HOME: 'relative/dir' }), join(homedir(), '.local', 'share', 'trustpull'), 'a relative XDG_DATA_HOME is ignored')
  t.equal(defaultStoragePath({}), join(homedir(), '.local', 'share', 'trustpull'))
  t.equal(parseConfig({ storage: { enabled: false } }, 'off').storage.enabled, false, 'storage.enabled: false turns it off')
})

t.test('serve without --config runs on the embedded defaults, stores under the data directory and says how to add a policy', async (t) => {
  const cwd = await tempDir(t, 'trustpull-embedded-')
  const dataHome = await tempDir(t, 'trustpull-xdg-data-')
  const daemon = await startDaemon(t, join(REPO_ROOT, 'node_modules/.bin/node'), [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--listen', '127.0.0.1:0'], {
    name: 'trustpull',
    cwd,
    env: { ...process.env, XDG_DATA_HOME: dataHome },
    readyLine: /"msg":"trustpull listening"/,
  })
  const lines = daemon
    .stdout()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.match(
    lines.find((l) => l.msg === 'content store opened'),
    { path: join(dataHome, 'trustpull'), objects: 0 },
    'the store is on by default, under $XDG_DATA_HOME/trustpull',
  )
  t.same(await readdir(join(dataHome, 'trustpull')), ['_spool'])
  t.same(await readdir(cwd), [], 'nothing written to the working directory')
  const listening = lines.find((l) => l.msg === 'trustpull listening')!
  t.same(listening.upstreams, ['docker.io', 'ghcr.io', 'registry.k8s.io', 'cgr.dev'])
  t.ok(
    lines.some((l) => typeof l.msg === 'string' && l.msg.includes('embedded defaults') && l.msg.includes('--config')),
    'start-up line names the defaults and --config',
  )
  const base = await request(`${String(listening.url)}/v2/`)
  t.equal(base.statusCode, 200)
  await base.body.dump()
  // A registry that is not one of the four is a key nobody configured: refused, never dialled.
  const other = await request(`${String(listening.url)}/v2/library/app/manifests/1?ns=quay.io`)
  t.equal(other.statusCode, 403)
  t.match(await other.body.text(), /quay\.io/)
})

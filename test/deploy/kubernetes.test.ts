// deploy/kubernetes: the base and every overlay build with kustomize (`kubectl kustomize`, offline),
// and every object they produce is a valid Kubernetes object (kubernetes-models' JSON schemas for
// types, enums and required fields; its TypeScript declarations for unknown fields; the Prometheus
// Operator's ServiceMonitor and PrometheusRule by their required fields, every alert expression
// parsed and naming only metrics trustpull exports), the pieces fit together, the security
// properties hold, the embedded config and policies load as trustpull's start-up loads them, and
// each overlay differs from the base only where it says.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { parseConfig } from '../../src/config/load.ts'
import type { Config } from '../../src/config/schema.ts'
import { compileGlob, imageNames } from '../../src/policy/glob.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { clusterImagePolicySchema } from '../../src/policy/schema.ts'
import { PUBLIC_GOOD, publicGoodTrustRoot } from '../../src/verify/trust-root.ts'
import { KUBECTL_BIN } from '../helpers/admission.ts'
import { checkExpression } from '../helpers/metric-catalog.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DIR = join(ROOT, 'deploy/kubernetes')
const BASE = join(DIR, 'base')
const OVERLAYS = ['warn-mode', 'managed-redis', 's3-store'] as const
type Build = 'base' | (typeof OVERLAYS)[number]
/** Validated like the rest, but applied by hand (they hold secrets), not by a kustomization. */
const EXAMPLES = ['base/credentials.example.yaml', 'overlays/s3-store/s3-credentials.example.yaml']
/** The Prometheus Operator's kinds: no kubernetes-models schema, checked field by field below. */
const OPERATOR_API = 'monitoring.coreos.com/v1'

type Obj = Record<string, unknown>
interface Manifest {
  file: string
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }
  [key: string]: unknown
}

function parseManifests(text: string, file: string): Manifest[] {
  return parseAllDocuments(text, { uniqueKeys: true })
    .filter((doc) => doc.contents !== null)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`)
      return { ...(doc.toJS() as Obj), file } as Manifest
    })
}

/** What `kubectl apply -k DIR` would send: kustomize's build, run offline. */
function kustomize(dir: string): Manifest[] {
  let out: string
  try {
    out = execFileSync(KUBECTL_BIN, ['kustomize', dir], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') throw new Error(`${KUBECTL_BIN} is missing: npm run test:tools installs it`, { cause: err })
    throw new Error(`kubectl kustomize ${relative(ROOT, dir)} failed: ${e.stderr ?? e.message}`, { cause: err })
  }
  return parseManifests(out, relative(ROOT, dir))
}

/** kubernetes-models' generated validator (ajv, from the Kubernetes OpenAPI schema); throws when invalid. */
async function validateSchema(m: Manifest): Promise<void> {
  const mod = (await import(`kubernetes-models/${m.apiVersion}/${m.kind}`)) as Record<string, new (data: Obj) => { validate(): void }>
  const Model = mod[m.kind]
  if (!Model) throw new Error(`no model for ${m.apiVersion} ${m.kind}`)
  const { file: _file, ...data } = m
  new Model(data).validate()
}

/**
 * The JSON schemas accept unknown fields (Kubernetes drops them silently, so a typo such as
 * `readOnlyRootFileSystem` would turn a protection off unnoticed). TypeScript's excess-property
 * check against kubernetes-models' declarations refuses them: each manifest becomes an object
 * literal of its type in a virtual file that is type-checked, never written.
 */
function unknownFieldErrors(manifests: Manifest[]): string[] {
  const file = join(ROOT, 'test/deploy/__manifests__.ts')
  const lines = manifests.map((m, i) => {
    const { file: _file, ...data } = m
    return `import type { I${m.kind} as T${i} } from 'kubernetes-models/${m.apiVersion}/${m.kind}'\nexport const m${i}: T${i} = ${JSON.stringify(data)}`
  })
  const source = lines.join('\n')
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  const fileExists = host.fileExists.bind(host)
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest))
  host.fileExists = (name) => name === file || fileExists(name)
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1
    const m = manifests[Math.floor(line / 2)]
    return `${m ? `${m.file} ${m.kind}/${m.metadata.name}` : '?'}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`
  })
}

const builds = new Map<Build, Manifest[]>([['base', kustomize(DIR)], ...OVERLAYS.map((o) => [o, kustomize(join(DIR, 'overlays', o))] as [Build, Manifest[]])])
const examples = EXAMPLES.flatMap((f) => parseManifests(readFileSync(join(DIR, f), 'utf8'), f))
const manifests = builds.get('base')!
const findIn = (objects: Manifest[], kind: string, name: string): Manifest => {
  const m = objects.find((x) => x.kind === kind && x.metadata.name === name)
  if (!m) throw new Error(`no ${kind} ${name} in ${objects[0]?.file ?? 'the build'}`)
  return m
}
const find = (kind: string, name: string) => findIn([...manifests, ...examples], kind, name)
const kubernetesObjects = [...[...builds.values()].flat(), ...examples].filter((m) => m.apiVersion !== OPERATOR_API)

// Typed views of the objects the assertions read.
interface Container {
  name: string
  image: string
  args?: string[]
  ports?: { name: string; containerPort: number }[]
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
  readinessProbe?: { httpGet?: { path: string; port: string } }
  livenessProbe?: { httpGet?: { path: string; port: string } }
  securityContext?: Obj & { capabilities?: { drop?: string[] }; seccompProfile?: { type: string } }
  volumeMounts?: { name: string; mountPath: string }[]
}
interface PodSpec {
  automountServiceAccountToken?: boolean
  securityContext?: Obj & { seccompProfile?: { type: string } }
  affinity?: { podAntiAffinity?: Obj }
  topologySpreadConstraints?: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[]
  containers: Container[]
  volumes: (Obj & { name: string; configMap?: { name: string }; secret?: { secretName: string }; emptyDir?: Obj })[]
}
interface DeploymentSpec {
  replicas: number
  selector: { matchLabels: Record<string, string> }
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec }
  volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[]
}
/** The proxy is a StatefulSet, the in-cluster Redis a Deployment. */
const workloadIn = (objects: Manifest[], name: string) =>
  objects.find((x) => (x.kind === 'StatefulSet' || x.kind === 'Deployment') && x.metadata.name === name)?.spec as DeploymentSpec | undefined
const deploymentSpec = (name: string) => {
  const spec = workloadIn(manifests, name)
  if (!spec) throw new Error(`no workload ${name} in the base`)
  return spec
}
const configMapData = (name: string) => find('ConfigMap', name).data as Record<string, string>
const configOf = (text: string, source: string): Config => parseConfig(parseYaml(text, { uniqueKeys: true }), source)
/** A Kubernetes quantity such as 50Gi, in bytes. */
const quantity = (q: string) => {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)$/.exec(q)
  if (!m) throw new Error(`not a binary quantity: ${q}`)
  return Number(m[1]) * 1024 ** (['Ki', 'Mi', 'Gi', 'Ti'].indexOf(m[2]!) + 1)
}
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)

t.test('the base and every overlay build, and every object validates against the Kubernetes schemas', async (t) => {
  for (const [build, objects] of builds) {
    t.ok(objects.length >= 12, `${build}: ${objects.length} objects`)
    const ids = objects.map((m) => `${m.kind}/${m.metadata.namespace ?? ''}/${m.metadata.name}`)
    t.equal(new Set(ids).size, ids.length, `${build}: no object twice`)
  }
  for (const m of kubernetesObjects) {
    await t.resolves(validateSchema(m), `${m.file}: ${m.kind}/${m.metadata.name}`)
  }
})

t.test('no object has a field Kubernetes does not know', async (t) => {
  t.same(unknownFieldErrors(kubernetesObjects), [])
})

t.test('the schema checks catch what they are here for', async (t) => {
  const good = find('StatefulSet', 'trustpull')
  const wrongType = structuredClone(good) as Manifest & { spec: { replicas: unknown } }
  wrongType.spec.replicas = 'three'
  await t.rejects(validateSchema(wrongType), /replicas must be integer/)
  const typo = structuredClone(good) as Manifest & { spec: DeploymentSpec }
  const sc = typo.spec.template.spec.containers[0]!.securityContext!
  delete sc.readOnlyRootFilesystem
  sc.readOnlyRootFileSystem = true
  await t.resolves(validateSchema(typo), 'the JSON schema alone lets an unknown field through')
  const errors = unknownFieldErrors([typo])
  t.equal(errors.length, 1)
  t.match(errors[0], /deploy\/kubernetes StatefulSet\/trustpull: .*'"readOnlyRootFileSystem"' does not exist in type 'ISecurityContext'/)
})

t.test('the base applies every manifest and generates the ConfigMaps from their files, in the trustpull namespace', async (t) => {
  const kustomization = parseYaml(readFileSync(join(BASE, 'kustomization.yaml'), 'utf8')) as {
    namespace: string
    resources: string[]
    configMapGenerator: { name: string; files: string[] }[]
    images: { name: string; newTag?: string; digest?: string }[]
  }
  const examples = EXAMPLES.filter((f) => f.startsWith('base/')).map((f) => f.slice('base/'.length))
  const files = readdirSync(BASE).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !examples.includes(f))
  t.same(kustomization.resources.filter((r) => r.endsWith('.yaml')).sort(), files.sort(), 'resources lists every manifest file (and not the example Secret)')
  t.equal(kustomization.namespace, 'trustpull')
  for (const m of manifests) {
    if (['Namespace', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration'].includes(m.kind)) continue // cluster-scoped
    t.equal(m.metadata.namespace, 'trustpull', `${m.kind}/${m.metadata.name} is in the namespace`)
  }
  const generated = Object.fromEntries(kustomization.configMapGenerator.map((g) => [g.name, g.files]))
  t.same(
    generated['trustpull-policies']!.sort(),
    readdirSync(join(BASE, 'policies'))
      .map((f) => `policies/${f}`)
      .sort(),
    'every policy file is in the policies ConfigMap',
  )
  for (const [name, files] of Object.entries(generated)) {
    const data = configMapData(name)
    t.same(Object.keys(data).sort(), files.map((f) => f.split('/').pop()!).sort(), `${name}: one key per file`)
    for (const f of files) t.equal(data[f.split('/').pop()!], readFileSync(join(BASE, f), 'utf8'), `${name}: ${f} as it is`)
    t.equal(find('ConfigMap', name).metadata.name, name, `${name}: no hash suffix (the mounted files change in place and trustpull reloads them)`)
  }
  const image = deploymentSpec('trustpull').template.spec.containers[0]!.image
  t.ok(
    kustomization.images.some((i) => image.startsWith(`${i.name}:`)),
    'the kustomization pins the proxy image',
  )
  const top = parseYaml(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as { resources: string[] }
  t.same(top.resources, ['base'], 'kubectl apply -k deploy/kubernetes applies the base')
})

t.test('the Grafana dashboard ConfigMap is what the kube-prometheus-stack sidecar imports', async (t) => {
  const dashboard = find('ConfigMap', 'trustpull-grafana-dashboard')
  t.equal(dashboard.metadata.labels?.grafana_dashboard, '1', "the sidecar's default label")
  const data = dashboard.data as Record<string, string>
  t.same(Object.keys(data), ['trustpull.json'])
  t.equal(data['trustpull.json'], readFileSync(join(ROOT, 'deploy/grafana/trustpull.json'), 'utf8'), 'generated from deploy/grafana/trustpull.json')
  t.equal((JSON.parse(data['trustpull.json']!) as { uid: string }).uid, 'trustpull')
})

t.test('the proxy StatefulSet is highly available', async (t) => {
  const spec = deploymentSpec('trustpull')
  const podLabels = spec.template.metadata.labels
  t.ok(spec.replicas >= 2, `replicas ${spec.replicas} >= 2`)
  t.ok(matches(spec.selector.matchLabels, podLabels))
  t.ok(spec.template.spec.affinity?.podAntiAffinity, 'pod anti-affinity')
  const spread = spec.template.spec.topologySpreadConstraints ?? []
  t.same(
    spread.map((s) => s.topologyKey),
    ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'],
  )
  for (const s of spread) t.ok(matches(s.labelSelector.matchLabels, podLabels), `spread over ${s.topologyKey} selects the pods`)

  const pdb = find('PodDisruptionBudget', 'trustpull').spec as { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: Record<string, string> } }
  t.ok(matches(pdb.selector.matchLabels, podLabels), 'the PodDisruptionBudget selects the proxy pods')
  const available = pdb.maxUnavailable !== undefined ? spec.replicas - pdb.maxUnavailable : pdb.minAvailable!
  t.ok(available >= 1 && available < spec.replicas, 'the budget keeps pods up and still lets a drain proceed')

  const container = spec.template.spec.containers[0]!
  t.match(container.readinessProbe, { httpGet: { path: '/readyz', port: 'registry' } })
  t.match(container.livenessProbe, { httpGet: { path: '/healthz', port: 'registry' } })
  for (const c of spec.template.spec.containers) {
    t.ok(c.resources?.requests?.cpu && c.resources.requests.memory, `${c.name} requests cpu and memory`)
    t.ok(c.resources?.limits?.memory, `${c.name} has a memory limit`)
  }
})

t.test('the proxy runs as its own ServiceAccount, with no token and no role', async (t) => {
  const pod = deploymentSpec('trustpull').template.spec as PodSpec & { serviceAccountName?: string }
  const account = find('ServiceAccount', pod.serviceAccountName ?? 'default')
  t.equal(account.metadata.name, 'trustpull', 'a dedicated account, not default')
  t.equal(account.automountServiceAccountToken, false, 'the account mounts no token')
  for (const [build, objects] of builds) {
    t.same(
      objects.filter((m) => /Role(Binding)?$/.test(m.kind)).map((m) => m.metadata.name),
      [],
      `${build}: no Role or binding`,
    )
  }
})

for (const name of ['trustpull', 'trustpull-redis']) {
  t.test(`${name} runs under the restricted security profile`, async (t) => {
    const pod = deploymentSpec(name).template.spec
    t.equal(pod.automountServiceAccountToken, false, 'no API token in the pod')
    t.match(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } })
    t.ok((pod.securityContext?.runAsUser as number) > 0, 'a non-root uid')
    for (const c of pod.containers) {
      t.match(c.securityContext, { runAsNonRoot: true, allowPrivilegeEscalation: false, privileged: false, readOnlyRootFilesystem: true })
      t.same(c.securityContext?.capabilities?.drop, ['ALL'])
    }
    t.equal(find('Namespace', 'trustpull').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'restricted')
  })
}

t.test('config, policies and credentials reach the container where the config says', async (t) => {
  const pod = deploymentSpec('trustpull').template.spec
  const container = pod.containers[0]!
  const mountOf = (volumeName: string) => container.volumeMounts?.find((m) => m.name === volumeName)?.mountPath
  const volume = (pred: (v: PodSpec['volumes'][number]) => boolean) => pod.volumes.find(pred)

  const configVolume = volume((v) => v.configMap?.name === 'trustpull-config')!
  const configPath = container.args![container.args!.indexOf('--config') + 1]
  t.equal(configPath, `${mountOf(configVolume.name)}/config.yaml`, '--config names the mounted ConfigMap key')
  const config = configOf(configMapData('trustpull-config')['config.yaml']!, 'ConfigMap trustpull-config')

  const policiesVolume = volume((v) => v.configMap?.name === 'trustpull-policies')!
  t.same(config.policyDirs, [mountOf(policiesVolume.name)], 'policyDirs is the mounted policies ConfigMap')

  const secret = find('Secret', 'trustpull-upstream-credentials')
  const secretVolume = volume((v) => v.secret?.secretName === secret.metadata.name)!
  t.ok(secretVolume, 'the credentials Secret is mounted')
  const corp = config.upstreams.find((u) => u.name === 'registry.corp.example')!
  const key = Object.keys(secret.stringData as Obj)[0]
  t.equal(corp.auth?.password.file, `${mountOf(secretVolume.name)}/${key}`, 'passwordFile is the mounted Secret key')
  t.notOk(configMapData('trustpull-config')['config.yaml']!.includes('password:'), 'no inline password in the ConfigMap')

  const tmp = volume((v) => v.emptyDir !== undefined)!
  t.equal(mountOf(tmp.name), '/tmp', 'the only emptyDir is /tmp')

  const ports = Object.fromEntries(container.ports!.map((p) => [p.name, p.containerPort]))
  t.equal(config.listen, `0.0.0.0:${ports.registry}`, 'listens on the registry port, all interfaces')
  t.equal(config.telemetry.metrics.listen, `0.0.0.0:${ports.metrics}`, 'metrics on the metrics port')

  const redis = find('Service', 'trustpull-redis').spec as { ports: { port: number }[] }
  t.equal(config.cache.url, `redis://trustpull-redis.trustpull.svc:${redis.ports[0]!.port}/0`, 'cache.url is the Redis Service')
  t.same(
    config.upstreams.map((u) => u.name),
    ['docker.io', 'ghcr.io', 'registry.k8s.io', 'registry.corp.example'],
  )
})

t.test('the policies ConfigMap loads as start-up loads it, and exempts trustpull itself', async (t) => {
  const config = configOf(configMapData('trustpull-config')['config.yaml']!, 'ConfigMap trustpull-config')
  const data = configMapData('trustpull-policies')
  for (const [key, text] of Object.entries(data)) {
    for (const doc of parseAllDocuments(text)) {
      const parsed = clusterImagePolicySchema.safeParse(doc.toJS())
      t.ok(parsed.success, `${key}: a valid ClusterImagePolicy${parsed.success ? ` (${parsed.data.metadata.name})` : `: ${parsed.error.message}`}`)
    }
  }
  // Written out as the ConfigMap volume would be, then loaded through policyDirs.
  const dir = mkdtempSync(join(tmpdir(), 'trustpull-policies-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  for (const [key, text] of Object.entries(data)) writeFileSync(join(dir, key), text)
  const { policySet, warnings } = loadPolicies({ ...config, policyDirs: [dir] }, { trustRoots: new Map([[PUBLIC_GOOD, publicGoodTrustRoot()]]) })
  t.same(policySet.policies.map((p) => p.name).sort(), ['kubernetes-release', 'my-org-release', 'trustpull-bootstrap', 'trustpull-redis'])
  t.same(warnings, [])

  // The bootstrap exceptions match exactly the images the Deployments run, and nothing beside them.
  const bootstrap = (name: string) => {
    const doc = parseAllDocuments(`${data['bootstrap.yaml']}\n---\n${data['redis.yaml']}`)
      .map((d) => d.toJS() as { metadata: { name: string }; spec: { images: { glob: string }[]; authorities: unknown[] } })
      .find((d) => d.metadata.name === name)!
    return doc.spec
  }
  for (const [policy, deployment] of [
    ['trustpull-bootstrap', 'trustpull'],
    ['trustpull-redis', 'trustpull-redis'],
  ] as const) {
    const spec = bootstrap(policy)
    t.same(spec.authorities, [{ static: { action: 'pass' } }], `${policy} is a static pass`)
    const image = deploymentSpec(deployment).template.spec.containers[0]!.image
    const [registry, ...rest] = image.replace(/[:@][^/]+$/, '').split('/')
    const names = imageNames(registry!, rest.join('/'))
    const globs = spec.images.map((i) => compileGlob(i.glob))
    t.ok(
      globs.some((g) => names.some((n) => g.regex.test(n))),
      `${policy} matches ${image}`,
    )
    t.notOk(
      globs.some((g) => imageNames(registry!, `${rest.join('/')}-other`).some((n) => g.regex.test(n))),
      `${policy} matches no neighbouring repository`,
    )
  }
})

t.test('Services and NetworkPolicies select the right pods and ports', async (t) => {
  const proxyLabels = deploymentSpec('trustpull').template.metadata.labels
  const redisLabels = deploymentSpec('trustpull-redis').template.metadata.labels
  const proxyPorts = deploymentSpec('trustpull').template.spec.containers[0]!.ports!.map((p) => p.name)

  const service = find('Service', 'trustpull').spec as { selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] }
  t.ok(matches(service.selector, proxyLabels))
  t.notOk(matches(service.selector, redisLabels), 'the proxy Service does not select Redis')
  for (const p of service.ports) t.ok(proxyPorts.includes(p.targetPort), `Service port ${p.name} targets a container port`)
  t.equal(service.ports.find((p) => p.name === 'registry')?.port, 5000, 'the port the hosts.toml files name')

  interface Peer {
    podSelector?: { matchLabels: Record<string, string> }
    namespaceSelector?: Obj
    ipBlock?: { cidr: string }
  }
  interface Rule {
    to?: Peer[]
    from?: Peer[]
    ports: { port: number | string; protocol: string }[]
  }
  const policy = find('NetworkPolicy', 'trustpull').spec as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: Rule[]; egress: Rule[] }
  t.ok(matches(policy.podSelector.matchLabels, proxyLabels))
  t.same(policy.policyTypes, ['Ingress', 'Egress'], 'both directions are restricted')
  t.ok(
    policy.ingress.some((r) => r.ports.some((p) => p.port === 'registry') && r.from?.every((f) => f.ipBlock)),
    'nodes reach the registry port',
  )
  const egressPorts = policy.egress.flatMap((r) => r.ports.map((p) => `${p.port}/${p.protocol}`)).sort()
  t.same(egressPorts, ['443/TCP', '53/TCP', '53/UDP', '6379/TCP'], 'egress: DNS, Redis and HTTPS only')
  const redisRule = policy.egress.find((r) => r.ports.some((p) => p.port === 6379))!
  t.ok(
    redisRule.to?.every((peer) => peer.podSelector && matches(peer.podSelector.matchLabels, redisLabels)),
    'port 6379 only towards the Redis pods',
  )
  const anywhere = policy.egress.filter((r) => r.to?.some((peer) => peer.ipBlock?.cidr === '0.0.0.0/0'))
  t.same(
    anywhere.flatMap((r) => r.ports.map((p) => p.port)),
    [443],
    'the internet only on 443',
  )

  const redisPolicy = find('NetworkPolicy', 'trustpull-redis').spec as { podSelector: { matchLabels: Record<string, string> }; ingress: Rule[]; egress: Rule[] }
  t.ok(matches(redisPolicy.podSelector.matchLabels, redisLabels))
  t.ok(
    redisPolicy.ingress.every((r) => r.from?.every((p) => p.podSelector && matches(p.podSelector.matchLabels, proxyLabels))),
    'only trustpull reaches Redis',
  )
  t.same(redisPolicy.egress, [], 'Redis reaches nothing')
})

t.test('each replica keeps its content store on its own PersistentVolumeClaim, at storage.path', async (t) => {
  const spec = deploymentSpec('trustpull')
  const config = configOf(configMapData('trustpull-config')['config.yaml']!, 'ConfigMap trustpull-config')
  t.equal(config.storage.enabled, true, 'the store is on')
  t.match(readFileSync(join(BASE, 'config/config.yaml'), 'utf8'), /^ {2}path: \/var\/lib\/trustpull\/store$/m, 'storage.path is explicit, not the default')
  const claim = spec.volumeClaimTemplates?.find((c) => c.metadata.name === 'store')
  t.ok(claim, 'a volumeClaimTemplate "store"')
  t.same(claim!.spec.accessModes, ['ReadWriteOnce'])
  const container = spec.template.spec.containers[0]!
  const mount = container.volumeMounts?.find((m) => m.name === 'store')?.mountPath
  t.ok(mount && config.storage.path.startsWith(`${mount}/`), `storage.path (${config.storage.path}) is a directory on the claim (${mount}), not its root`)
  t.notOk(
    spec.template.spec.volumes.some((v) => v.name === 'store'),
    'not shadowed by a pod volume of the same name',
  )
  const claimBytes = quantity(claim!.spec.resources.requests.storage)
  t.ok(config.storage.maxSize <= claimBytes * 0.92, `maxSize (${config.storage.maxSize}) leaves room on the claim (${claimBytes}) for blobs being fetched`)
  t.equal((spec.template.spec.securityContext as Obj).fsGroup, 65532, 'the volume is writable by the non-root uid')
})

interface Rule {
  alert?: string
  record?: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

t.test('the ServiceMonitor scrapes each proxy pod once, on the metrics port', async (t) => {
  const monitor = find('ServiceMonitor', 'trustpull')
  t.equal(monitor.apiVersion, OPERATOR_API)
  const spec = monitor.spec as { jobLabel?: string; selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path?: string; interval?: string }[] }
  t.ok(spec.selector?.matchLabels, 'spec.selector (required)')
  t.ok(Array.isArray(spec.endpoints) && spec.endpoints.length > 0, 'spec.endpoints (required)')
  const selected = manifests.filter((m) => m.kind === 'Service' && matches(spec.selector.matchLabels, m.metadata.labels ?? {}))
  const ports = (s: Manifest) => (s.spec as { ports: { name: string }[] }).ports.map((p) => p.name)
  const scraped = selected.filter((s) => spec.endpoints.some((e) => ports(s).includes(e.port)))
  t.same(
    scraped.map((s) => s.metadata.name),
    ['trustpull'],
    'exactly one Service with the metrics port is selected',
  )
  t.same(
    spec.endpoints.map((e) => [e.port, e.path]),
    [['metrics', '/metrics']],
  )
  t.equal(find('Service', 'trustpull').metadata.labels?.[spec.jobLabel!], 'trustpull', 'job="trustpull", as the alerts and dashboard expect')
  t.match(spec.endpoints[0]!.interval, /^\d+s$/)
})

t.test('the PrometheusRule: well-formed alerts over metrics trustpull exports, the ones deploy/README.md lists', async (t) => {
  const rule = find('PrometheusRule', 'trustpull')
  t.equal(rule.apiVersion, OPERATOR_API)
  const groups = (rule.spec as { groups: { name: string; rules: Rule[] }[] }).groups
  t.ok(groups.length > 0 && groups.every((g) => g.name && g.rules.length > 0), 'spec.groups, each with a name and rules')
  const rules = groups.flatMap((g) => g.rules)
  const used = new Set<string>()
  for (const r of rules) {
    t.ok(r.alert && /^Trustpull[A-Z]\w+$/.test(r.alert), `alert name ${r.alert}`)
    t.match(r.for, /^\d+[smh]$/, `${r.alert}: for`)
    t.ok(['critical', 'warning', 'info'].includes(r.labels?.severity ?? ''), `${r.alert}: severity`)
    t.ok(r.annotations?.summary && r.annotations.description, `${r.alert}: summary and description`)
    const checked = checkExpression(r.expr, {}, { allowScrapeSeries: true })
    t.same(checked.problems, [], `${r.alert}: ${r.expr.trim()}`)
    t.ok(checked.selectors.length > 0, `${r.alert}: reads a series`)
    for (const m of checked.metrics) used.add(m)
    for (const s of checked.selectors.filter((s) => s.series === 'up')) t.equal(s.matchers.get('job'), 'trustpull', `${r.alert}: up of trustpull's job only`)
  }
  const names = rules.map((r) => r.alert!)
  t.equal(new Set(names).size, names.length, 'alert names are unique')
  for (const m of [
    'trustpull_verdicts_total',
    'trustpull_redis_up',
    'trustpull_upstream_request_duration_seconds',
    'trustpull_verification_duration_seconds',
    'trustpull_store_writable',
    'trustpull_store_evicted_bytes_total',
    'trustpull_store_bytes',
    'trustpull_config_last_reload_successful',
  ]) {
    t.ok(used.has(m), `an alert reads ${m}`)
  }
  const readme = readFileSync(join(ROOT, 'deploy/README.md'), 'utf8')
  const documented = [...readme.matchAll(/^\| `(Trustpull\w+)` \|/gm)].map((m) => m[1])
  t.same(documented.sort(), [...names].sort(), 'deploy/README.md documents exactly these alerts')
  // The checker is what makes this test able to fail.
  t.match(checkExpression('max(trustpull_store_writeable) == 0', {}, { allowScrapeSeries: true }).problems, ['unknown metric trustpull_store_writeable'])
  t.match(checkExpression('up == 0').problems, ['unknown metric up'], 'up only where allowed')
})

/** The object with every key of `over` applied over `base` (what an overlay is meant to differ by). */
const merged = (base: Obj, over: Obj): Obj => ({ ...base, ...over })
const configFile = (path: string) => configOf(readFileSync(join(DIR, path), 'utf8'), path)
const baseConfig = configFile('base/config/config.yaml')

t.test('overlays/warn-mode: the base with noMatchPolicy and every verifying policy in warn mode', async (t) => {
  const objects = builds.get('warn-mode')!
  const data = findIn(objects, 'ConfigMap', 'trustpull-config').data as Record<string, string>
  const config = configOf(data['config.yaml']!, 'warn-mode ConfigMap trustpull-config')
  t.equal(config.noMatchPolicy, 'warn')
  t.same(config, merged(baseConfig, { noMatchPolicy: 'warn' }), 'nothing else changed')
  const policies = findIn(objects, 'ConfigMap', 'trustpull-policies').data as Record<string, string>
  const basePolicies = configMapData('trustpull-policies')
  t.same(Object.keys(policies).sort(), Object.keys(basePolicies).sort(), 'the same policy files')
  for (const [key, text] of Object.entries(policies)) {
    const docs = parseAllDocuments(text).map((d) => d.toJS() as { spec: Obj & { authorities: { static?: unknown }[] } })
    const baseDocs = parseAllDocuments(basePolicies[key]!).map((d) => d.toJS() as { spec: Obj })
    docs.forEach((doc, i) => {
      const isStatic = doc.spec.authorities.every((a) => a.static)
      if (isStatic) t.same(doc, baseDocs[i], `${key}: a static policy is unchanged`)
      else t.same(doc, { ...baseDocs[i], spec: { ...baseDocs[i]!.spec, mode: 'warn' } }, `${key}: the base policy with mode: warn`)
    })
  }
  const others = (ms: Manifest[]) =>
    ms.filter((m) => m.kind !== 'ConfigMap' || !['trustpull-config', 'trustpull-policies'].includes(m.metadata.name)).map(({ file: _f, ...m }) => m)
  t.same(others(objects), others(manifests), 'every other object as in the base')
})

t.test('overlays/managed-redis: no in-cluster Redis, the config (with its password) from a Secret', async (t) => {
  const objects = builds.get('managed-redis')!
  t.same(
    objects.filter((m) => m.metadata.name === 'trustpull-redis').map((m) => m.kind),
    [],
    'no Redis Deployment, Service or NetworkPolicy',
  )
  t.notOk(
    objects.some((m) => m.kind === 'ConfigMap' && m.metadata.name === 'trustpull-config'),
    'no config ConfigMap',
  )
  const policies = findIn(objects, 'ConfigMap', 'trustpull-policies').data as Record<string, string>
  t.notOk('redis.yaml' in policies, 'no bootstrap exception for the Redis image')
  t.ok('bootstrap.yaml' in policies, "trustpull's own exception stays")
  const pod = workloadIn(objects, 'trustpull')!.template.spec
  const container = pod.containers[0]!
  const configVolume = pod.volumes.find((v) => v.secret?.secretName === 'trustpull-config')
  t.ok(configVolume, 'the config volume is the Secret trustpull-config')
  t.equal(
    `${container.volumeMounts?.find((m) => m.name === configVolume!.name)?.mountPath}/config.yaml`,
    container.args![container.args!.indexOf('--config') + 1],
    '--config names its key',
  )
  const config = configFile('overlays/managed-redis/config.yaml')
  t.match(config.cache.url, /^rediss:\/\/[^:]+:[^@]+@/, 'TLS and a password')
  t.same(config, merged(baseConfig, { cache: { ...baseConfig.cache, url: config.cache.url } }), 'only cache.url differs from the base')
  type Peer = { ipBlock?: Obj; podSelector?: { matchLabels?: Record<string, string> } }
  const egress = (findIn(objects, 'NetworkPolicy', 'trustpull').spec as { egress: { to?: Peer[]; ports: { port: number | string }[] }[] }).egress
  const redisLabels = deploymentSpec('trustpull-redis').template.metadata.labels
  const redisRule = egress.find((r) => r.ports.some((p) => p.port === 6380))
  t.ok(
    redisRule?.to?.every((peer) => peer.ipBlock),
    'egress to the managed Redis address range',
  )
  t.notOk(
    egress.some((r) => r.to?.some((peer) => peer.podSelector?.matchLabels && matches(peer.podSelector.matchLabels, redisLabels))),
    'none towards in-cluster Redis pods',
  )
  const port = Number(new URL(config.cache.url!).port)
  t.ok(
    redisRule!.ports.some((p) => p.port === port),
    `the NetworkPolicy allows the URL's port ${port}`,
  )
})

t.test('overlays/s3-store: the store in one bucket, credentials from a Secret, a local spool only', async (t) => {
  const objects = builds.get('s3-store')!
  const data = findIn(objects, 'ConfigMap', 'trustpull-config').data as Record<string, string>
  const config = configOf(data['config.yaml']!, 's3-store ConfigMap trustpull-config')
  t.same(config, merged(baseConfig, { storage: config.storage }), 'only storage differs from the base')
  t.equal(config.storage.enabled, true)
  t.ok(config.storage.s3?.bucket, 'storage.s3.bucket')
  t.equal(config.storage.path, baseConfig.storage.path, 'the spool is where the base keeps the store')
  const spec = workloadIn(objects, 'trustpull')!
  t.notOk(spec.volumeClaimTemplates, 'no claim per replica')
  const pod = spec.template.spec
  const container = pod.containers[0]!
  const mountOf = (name: string) => container.volumeMounts?.find((m) => m.name === name)?.mountPath
  const spool = pod.volumes.find((v) => v.name === 'store')
  t.match(spool, { emptyDir: { sizeLimit: /^\d+Gi$/ } }, 'the spool is a bounded emptyDir')
  t.ok(config.storage.path.startsWith(`${mountOf('store')}/`), 'storage.path is on the spool volume')
  const secret = findIn(examples, 'Secret', 'trustpull-s3-credentials')
  const volume = pod.volumes.find((v) => v.secret?.secretName === secret.metadata.name)
  t.ok(volume, 'the credentials Secret is mounted')
  const keys = Object.keys(secret.stringData as Obj)
    .map((k) => `${mountOf(volume!.name)}/${k}`)
    .sort()
  const creds = config.storage.s3!.credentials!
  t.same([creds.accessKeyIdFile, creds.secretAccessKeyFile].sort(), keys, "the credential files are the Secret's keys")
  t.notOk(/secretAccessKey:|accessKeyId:/.test(data['config.yaml']!), 'no inline key in the ConfigMap')
})

t.test('the admission webhooks: fail closed, opt-in namespaces, trustpull exempt, served by the proxy pods', async (t) => {
  interface Webhook {
    name: string
    admissionReviewVersions: string[]
    sideEffects: string
    failurePolicy: string
    timeoutSeconds: number
    clientConfig: { service: { name: string; namespace: string; path: string; port: number } }
    namespaceSelector: { matchExpressions: { key: string; operator: string; values: string[] }[] }
    rules: { apiGroups: string[]; resources: string[]; operations: string[] }[]
  }
  const service = find('Service', 'trustpull').spec as { ports: { name: string; port: number; targetPort: string }[] }
  const admissionPort = service.ports.find((p) => p.name === 'admission')!
  const pod = deploymentSpec('trustpull').template.spec
  const container = pod.containers[0]!
  const tlsMount = container.volumeMounts!.find((m) => m.name === 'admission-tls')!
  const configs = [configOf(configMapData('trustpull-config')['config.yaml']!, 'base ConfigMap'), ...OVERLAYS.map((o) => configFile(`overlays/${o}/config.yaml`))]
  for (const [i, config] of configs.entries()) {
    const build = ['base', ...OVERLAYS][i]
    t.equal(config.admission?.listen, `0.0.0.0:${container.ports!.find((p) => p.name === 'admission')!.containerPort}`, `${build}: the admission listener is the container port`)
    t.equal(config.admission?.tls.cert, `${tlsMount.mountPath}/tls.crt`, `${build}: the certificate comes from the mounted Secret`)
    t.ok(config.admission!.budget < 10_000, `${build}: the budget fits timeoutSeconds`)
  }
  t.equal(admissionPort.targetPort, 'admission')
  t.equal(pod.volumes.find((v) => v.name === 'admission-tls')?.secret?.secretName, 'trustpull-admission-tls')
  const paths = { ValidatingWebhookConfiguration: '/validate', MutatingWebhookConfiguration: '/mutate' }
  for (const [kind, path] of Object.entries(paths)) {
    const m = find(kind, 'trustpull')
    t.equal(m.metadata.namespace, undefined, `${kind} is cluster-scoped`)
    t.match(
      (m.metadata as { annotations?: Record<string, string> }).annotations,
      { 'cert-manager.io/inject-ca-from': 'trustpull/trustpull-admission' },
      `${kind}: cert-manager injects the CA`,
    )
    const hooks = (m as unknown as { webhooks: Webhook[] }).webhooks
    t.equal(hooks.length, 1)
    const w = hooks[0]!
    t.same(w.admissionReviewVersions, ['v1'])
    t.equal(w.sideEffects, 'None')
    t.equal(w.failurePolicy, 'Fail', `${kind}: fails closed`)
    t.equal(w.timeoutSeconds, 10)
    t.same(w.clientConfig.service, { name: 'trustpull', namespace: 'trustpull', path, port: admissionPort.port }, `${kind}: the Service's admission port`)
    t.same(
      w.namespaceSelector.matchExpressions,
      [
        { key: 'policy.sigstore.dev/include', operator: 'In', values: ['true'] },
        { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['trustpull'] },
      ],
      `${kind}: opted-in namespaces only, trustpull's own excluded`,
    )
    const resources = w.rules.flatMap((r) => r.resources).sort()
    t.same(
      resources,
      ['cronjobs', 'daemonsets', 'deployments', 'jobs', 'pods', 'pods/ephemeralcontainers', 'replicasets', 'replicationcontrollers', 'statefulsets'],
      `${kind}: every kind that makes pods`,
    )
    t.ok(w.rules.every((r) => r.operations.join() === 'CREATE,UPDATE'))
  }
})

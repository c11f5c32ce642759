// deploy/kubernetes: every manifest is a valid Kubernetes object (kubernetes-models' JSON schemas
// for types, enums and required fields; its TypeScript declarations for unknown fields), the
// pieces fit together, the security properties hold, and the embedded config and policies load as
// trustpull's start-up loads them.
import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { parse as parseYaml, parseAllDocuments } from 'yaml'
import { parseConfig } from '../../src/config/load.ts'
import { compileGlob, imageNames } from '../../src/policy/glob.ts'
import { loadPolicies } from '../../src/policy/load.ts'
import { clusterImagePolicySchema } from '../../src/policy/schema.ts'
import { PUBLIC_GOOD, publicGoodTrustRoot } from '../../src/verify/trust-root.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const DIR = join(ROOT, 'deploy/kubernetes')
/** Validated like the rest, but applied by hand (it holds a secret), not by the kustomization. */
const NOT_APPLIED = new Set(['credentials.example.yaml'])

type Obj = Record<string, unknown>
interface Manifest {
  file: string
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  [key: string]: unknown
}

function loadDir(dir: string): Manifest[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort()
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(dir, file), 'utf8'), { uniqueKeys: true }).map((doc) => {
        if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`)
        return { ...(doc.toJS() as Obj), file } as Manifest
      }),
    )
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

const manifests = loadDir(DIR)
const find = (kind: string, name: string): Manifest => {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name)
  if (!m) throw new Error(`no ${kind} ${name} in deploy/kubernetes`)
  return m
}

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
}
const deploymentSpec = (name: string) => find('Deployment', name).spec as DeploymentSpec
const configMapData = (name: string) => find('ConfigMap', name).data as Record<string, string>
const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)

t.test('every manifest validates against the Kubernetes schemas', async (t) => {
  t.ok(manifests.length >= 12, `${manifests.length} objects`)
  for (const m of manifests) {
    await t.resolves(validateSchema(m), `${m.file}: ${m.kind}/${m.metadata.name}`)
  }
})

t.test('no manifest has a field Kubernetes does not know', async (t) => {
  t.same(unknownFieldErrors(manifests), [])
})

t.test('the schema checks catch what they are here for', async (t) => {
  const good = find('Deployment', 'trustpull')
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
  t.match(errors[0], /deployment\.yaml Deployment\/trustpull: .*'"readOnlyRootFileSystem"' does not exist in type 'ISecurityContext'/)
})

t.test('the kustomization applies every manifest, in the trustpull namespace', async (t) => {
  const kustomization = parseYaml(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as {
    namespace: string
    resources: string[]
    images: { name: string; newTag?: string; digest?: string }[]
  }
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml' && !NOT_APPLIED.has(f))
  t.same([...kustomization.resources].sort(), files.sort(), 'resources lists every manifest file (and not the example Secret)')
  t.equal(kustomization.namespace, 'trustpull')
  for (const m of manifests) {
    if (['Namespace', 'PriorityClass', 'ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration'].includes(m.kind)) continue // cluster-scoped
    t.equal(m.metadata.namespace, 'trustpull', `${m.kind}/${m.metadata.name} is in the namespace`)
  }
  const image = deploymentSpec('trustpull').template.spec.containers[0]!.image
  t.ok(
    kustomization.images.some((i) => image.startsWith(`${i.name}:`)),
    'the kustomization pins the proxy image',
  )
})

t.test('the proxy Deployment is highly available', async (t) => {
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
  const config = parseConfig(parseYaml(configMapData('trustpull-config')['config.yaml']!, { uniqueKeys: true }), 'ConfigMap trustpull-config')

  const policiesVolume = volume((v) => v.configMap?.name === 'trustpull-policies')!
  t.same(config.policyDirs, [mountOf(policiesVolume.name)], 'policyDirs is the mounted policies ConfigMap')

  const secret = find('Secret', 'trustpull-upstream-credentials')
  const secretVolume = volume((v) => v.secret?.secretName === secret.metadata.name)!
  t.ok(secretVolume, 'the credentials Secret is mounted')
  const corp = config.upstreams.find((u) => u.name === 'registry.corp.example')!
  const key = Object.keys(secret.stringData as Obj)[0]
  t.equal(corp.auth?.passwordFile, `${mountOf(secretVolume.name)}/${key}`, 'passwordFile is the mounted Secret key')
  t.notOk(configMapData('trustpull-config')['config.yaml']!.includes('password:'), 'no inline password in the ConfigMap')

  const tmp = volume((v) => v.emptyDir !== undefined)!
  t.equal(mountOf(tmp.name), '/tmp', 'the only writable path is /tmp')

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
  const config = parseConfig(parseYaml(configMapData('trustpull-config')['config.yaml']!), 'ConfigMap trustpull-config')
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
    const doc = parseAllDocuments(data['bootstrap.yaml']!)
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
    t.ok(globs.some((g) => names.some((n) => g.regex.test(n))), `${policy} matches ${image}`)
    t.notOk(globs.some((g) => imageNames(registry!, `${rest.join('/')}-other`).some((n) => g.regex.test(n))), `${policy} matches no neighbouring repository`)
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

  interface Peer { podSelector?: { matchLabels: Record<string, string> }; namespaceSelector?: Obj; ipBlock?: { cidr: string } }
  interface Rule { to?: Peer[]; from?: Peer[]; ports: { port: number | string; protocol: string }[] }
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
  t.ok(redisRule.to?.every((peer) => peer.podSelector && matches(peer.podSelector.matchLabels, redisLabels)), 'port 6379 only towards the Redis pods')
  const anywhere = policy.egress.filter((r) => r.to?.some((peer) => peer.ipBlock?.cidr === '0.0.0.0/0'))
  t.same(anywhere.flatMap((r) => r.ports.map((p) => p.port)), [443], 'the internet only on 443')

  const redisPolicy = find('NetworkPolicy', 'trustpull-redis').spec as { podSelector: { matchLabels: Record<string, string> }; ingress: Rule[]; egress: Rule[] }
  t.ok(matches(redisPolicy.podSelector.matchLabels, redisLabels))
  t.ok(redisPolicy.ingress.every((r) => r.from?.every((p) => p.podSelector && matches(p.podSelector.matchLabels, proxyLabels))), 'only trustpull reaches Redis')
  t.same(redisPolicy.egress, [], 'Redis reaches nothing')
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
  const config = parseYaml((find('ConfigMap', 'trustpull-config').data as Record<string, string>)['config.yaml']!) as { admission: { listen: string; tls: { cert: string; key: string } } }
  t.equal(config.admission.listen, `0.0.0.0:${container.ports!.find((p) => p.name === 'admission')!.containerPort}`, 'the admission listener is the container port')
  t.equal(admissionPort.targetPort, 'admission')
  const tlsMount = container.volumeMounts!.find((m) => m.name === 'admission-tls')!
  t.equal(config.admission.tls.cert, `${tlsMount.mountPath}/tls.crt`, 'the certificate comes from the mounted Secret')
  t.equal(pod.volumes.find((v) => v.name === 'admission-tls')?.secret?.secretName, 'trustpull-admission-tls')
  const paths = { ValidatingWebhookConfiguration: '/validate', MutatingWebhookConfiguration: '/mutate' }
  for (const [kind, path] of Object.entries(paths)) {
    const m = find(kind, 'trustpull')
    t.equal(m.metadata.namespace, undefined, `${kind} is cluster-scoped`)
    t.match((m.metadata as { annotations?: Record<string, string> }).annotations, { 'cert-manager.io/inject-ca-from': 'trustpull/trustpull-admission' }, `${kind}: cert-manager injects the CA`)
    const hooks = (m as unknown as { webhooks: Webhook[] }).webhooks
    t.equal(hooks.length, 1)
    const w = hooks[0]!
    t.same(w.admissionReviewVersions, ['v1'])
    t.equal(w.sideEffects, 'None')
    t.equal(w.failurePolicy, 'Fail', `${kind}: fails closed`)
    t.equal(w.timeoutSeconds, 10)
    t.same(w.clientConfig.service, { name: 'trustpull', namespace: 'trustpull', path, port: admissionPort.port }, `${kind}: the Service's admission port`)
    t.same(w.namespaceSelector.matchExpressions, [
      { key: 'policy.sigstore.dev/include', operator: 'In', values: ['true'] },
      { key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['trustpull'] },
    ], `${kind}: opted-in namespaces only, trustpull's own excluded`)
    const resources = w.rules.flatMap((r) => r.resources).sort()
    t.same(resources, ['cronjobs', 'daemonsets', 'deployments', 'jobs', 'pods', 'pods/ephemeralcontainers', 'replicasets', 'replicationcontrollers', 'statefulsets'], `${kind}: every kind that makes pods`)
    t.ok(w.rules.every((r) => r.operations.join() === 'CREATE,UPDATE'))
  }
  t.ok(parseConfig(config, 'deploy config').admission!.budget < 10_000, 'the default budget fits timeoutSeconds')
})

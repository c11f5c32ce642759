// Admission webhook test kit: objects as the API server sends them (made by kubectl, no cluster
// needed), wrapped in AdmissionReviews; a serving certificate made with openssl; a client that
// posts over HTTPS trusting only that certificate.
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { REPO_ROOT, runOk, tempDir, type Teardown } from './proc.ts'

/** kubectl 1.27 or later (kustomize v5): scripts/install-test-tools.sh puts one at `.tools/bin/kubectl`. */
export const KUBECTL_BIN = process.env.TRUSTPULL_TEST_KUBECTL ?? join(REPO_ROOT, '.tools/bin/kubectl')

type Obj = Record<string, unknown>

/** `kubectl create deployment|job|cronjob NAME --image=IMAGE --dry-run=client -o json`. */
export async function kubectlObject(kind: 'deployment' | 'job' | 'cronjob', name: string, image: string): Promise<Obj> {
  const extra = kind === 'cronjob' ? ['--schedule', '*/5 * * * *'] : []
  const r = await runOk(KUBECTL_BIN, ['create', kind, name, `--image=${image}`, ...extra, '--dry-run=client', '-o', 'json'])
  return JSON.parse(r.stdout) as Obj
}

/** A Pod as a Deployment makes it: the template's metadata and spec (`kubectl run` needs a cluster). */
export async function podObject(name: string, image: string): Promise<Obj> {
  const deployment = await kubectlObject('deployment', name, image)
  const template = (deployment.spec as { template: { metadata: Obj; spec: Obj } }).template
  return { apiVersion: 'v1', kind: 'Pod', metadata: { ...template.metadata, name }, spec: template.spec }
}

const GROUP_VERSION: Record<string, { group: string; version: string; resource: string }> = {
  Pod: { group: '', version: 'v1', resource: 'pods' },
  Deployment: { group: 'apps', version: 'v1', resource: 'deployments' },
  Job: { group: 'batch', version: 'v1', resource: 'jobs' },
  CronJob: { group: 'batch', version: 'v1', resource: 'cronjobs' },
}

export interface ReviewOptions {
  operation?: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT'
  namespace?: string
  dryRun?: boolean
  oldObject?: Obj
  subResource?: string
  user?: string
}

/** The AdmissionReview the API server would send for `object`. */
export function admissionReview(object: Obj, opts: ReviewOptions = {}): { uid: string; review: Obj } {
  const kind = object.kind as string
  const gv = GROUP_VERSION[kind] ?? { group: '', version: 'v1', resource: kind.toLowerCase() + 's' }
  const uid = randomUUID()
  const operation = opts.operation ?? 'CREATE'
  const name = (object.metadata as { name?: string } | undefined)?.name
  return {
    uid,
    review: {
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid,
        kind: { group: gv.group, version: gv.version, kind },
        resource: { group: gv.group, version: gv.version, resource: gv.resource },
        requestKind: { group: gv.group, version: gv.version, kind },
        requestResource: { group: gv.group, version: gv.version, resource: gv.resource },
        ...(opts.subResource ? { subResource: opts.subResource } : {}),
        name,
        namespace: opts.namespace ?? 'apps',
        operation,
        userInfo: { username: opts.user ?? 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:authenticated'] },
        object: operation === 'DELETE' ? null : object,
        oldObject: operation === 'UPDATE' || operation === 'DELETE' ? (opts.oldObject ?? object) : null,
        dryRun: opts.dryRun ?? false,
        options: { apiVersion: 'meta.k8s.io/v1', kind: operation === 'UPDATE' ? 'UpdateOptions' : operation === 'DELETE' ? 'DeleteOptions' : 'CreateOptions' },
      },
    },
  }
}

export interface ServingCert {
  cert: string
  key: string
  /** The certificate's PEM, for a client to trust. */
  pem: string
}

/** A self-signed P-256 serving certificate for 127.0.0.1 (as cert-manager's would be for the Service name). */
export async function servingCert(t: Teardown): Promise<ServingCert> {
  const dir = await tempDir(t, 'trustpull-admission-tls-')
  await runOk(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=trustpull.trustpull.svc',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:trustpull.trustpull.svc',
      '-keyout',
      'tls.key',
      '-out',
      'tls.crt',
    ],
    { cwd: dir },
  )
  return { cert: join(dir, 'tls.crt'), key: join(dir, 'tls.key'), pem: await readFile(join(dir, 'tls.crt'), 'utf8') }
}

export interface WebhookAnswer {
  status: number
  /** The parsed body (an AdmissionReview, or an error object). */
  body: {
    apiVersion?: string
    kind?: string
    response?: { uid: string; allowed: boolean; status?: { code: number; message: string }; warnings?: string[]; patchType?: string; patch?: string }
    error?: { code: string; message: string }
  }
  /** The JSONPatch, decoded. */
  patch?: { op: string; path: string; value: string }[]
}

/** A client of the webhook that trusts only `ca`, as the API server trusts only caBundle. */
export function webhookClient(t: Teardown, url: string, ca: string) {
  const dispatcher = new Agent({ connect: { ca } })
  t.teardown(() => dispatcher.close())
  return async (endpoint: 'validate' | 'mutate', body: unknown, headers: Record<string, string> = {}): Promise<WebhookAnswer> => {
    const res = await request(`${url}/${endpoint}`, {
      method: 'POST',
      dispatcher,
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body),
    })
    const parsed = (await res.body.json()) as WebhookAnswer['body']
    const patch = parsed.response?.patch ? (JSON.parse(Buffer.from(parsed.response.patch, 'base64').toString()) as WebhookAnswer['patch']) : undefined
    return { status: res.statusCode, body: parsed, ...(patch ? { patch } : {}) }
  }
}

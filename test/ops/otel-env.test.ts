// The standard OpenTelemetry variables, against the real CLI and a real OTLP/HTTP receiver (a
// loopback HTTP server that records what is POSTed to /v1/traces): endpoint, service name,
// resource attributes and sampler, as an OpenTelemetry operator or a Helm chart sets them.
import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { request } from 'undici'
import { tracingSettings } from '../../src/telemetry/tracing.ts'
import { freePort, REPO_ROOT, startDaemon, tempDir, type Teardown } from '../helpers/proc.ts'

interface OtlpAttribute {
  key: string
  value: { stringValue?: string }
}
interface Export {
  path: string
  contentType: string
  body: { resourceSpans: { resource: { attributes: OtlpAttribute[] }; scopeSpans: { spans: { name: string }[] }[] }[] }
}

async function startReceiver(t: Teardown): Promise<{ url: string; exports: Export[] }> {
  const exports: Export[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      exports.push({ path: req.url ?? '', contentType: String(req.headers['content-type']), body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Export['body'] })
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, exports }
}

/** Serves, answers a few requests, stops (SIGTERM flushes the span batch). */
async function serveAndStop(t: Teardown, otel: Record<string, string>): Promise<void> {
  const dir = await tempDir(t)
  const port = await freePort()
  const configFile = join(dir, 'config.yaml')
  await writeFile(configFile, JSON.stringify({ listen: `127.0.0.1:${port}`, noMatchPolicy: 'allow', reload: { watch: false }, storage: { path: join(dir, 'mirror-store') } }))
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('OTEL_')))
  const daemon = await startDaemon(t, process.execPath, [join(REPO_ROOT, 'src/cli/main.ts'), 'serve', '--config', configFile], {
    name: 'trustpull',
    cwd: REPO_ROOT,
    env: { ...env, ...otel },
    readyLine: /"msg":"trustpull listening"/,
    readyTimeoutMs: 60_000,
  })
  for (let i = 0; i < 3; i++) {
    const res = await request(`http://127.0.0.1:${port}/healthz`)
    await res.body.dump()
  }
  await daemon.stop()
}

const attributes = (e: Export) => Object.fromEntries(e.body.resourceSpans.flatMap((r) => r.resource.attributes.map((a) => [a.key, a.value.stringValue])))
const spanCount = (exports: Export[]) => exports.reduce((n, e) => n + e.body.resourceSpans.reduce((m, r) => m + r.scopeSpans.reduce((k, s) => k + s.spans.length, 0), 0), 0)

t.test('OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and always_on reach the receiver', async (t) => {
  const receiver = await startReceiver(t)
  await serveAndStop(t, {
    OTEL_EXPORTER_OTLP_ENDPOINT: `${receiver.url}/`,
    OTEL_SERVICE_NAME: 'trustpull-edge',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=staging,team=platform%20security,service.name=overridden',
    OTEL_TRACES_SAMPLER: 'always_on',
  })
  t.ok(receiver.exports.length >= 1, 'the receiver was sent spans')
  t.ok(
    receiver.exports.every((e) => e.path === '/v1/traces'),
    'to the signal path under the base endpoint',
  )
  t.ok(
    receiver.exports.every((e) => e.contentType.startsWith('application/json')),
    'OTLP/HTTP JSON',
  )
  t.equal(spanCount(receiver.exports), 3, 'one server span per request')
  const attrs = attributes(receiver.exports[0]!)
  t.equal(attrs['service.name'], 'trustpull-edge', 'OTEL_SERVICE_NAME wins over service.name in the attributes')
  t.equal(attrs['deployment.environment'], 'staging')
  t.equal(attrs.team, 'platform security', 'percent-decoded')
})

t.test('OTEL_TRACES_SAMPLER=traceidratio with ARG 0 samples nothing; OTEL_SDK_DISABLED turns tracing off', async (t) => {
  const receiver = await startReceiver(t)
  await serveAndStop(t, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`, OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' })
  await serveAndStop(t, { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SDK_DISABLED: 'true' })
  t.equal(spanCount(receiver.exports), 0, 'no span exported')
})

t.test('settings: the config endpoint wins; bad variables are refused naming them', async (t) => {
  t.equal(tracingSettings('http://collector:4318/v1/traces', { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://other:4318' }).url, 'http://collector:4318/v1/traces')
  t.equal(tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://other:4318' }).url, 'http://other:4318/v1/traces')
  t.equal(tracingSettings(undefined, {}).url, undefined, 'off without an endpoint')
  t.equal(tracingSettings(undefined, {}).resource['service.name'], 'trustpull')
  t.equal(
    tracingSettings(undefined, {}).sampler.toString(),
    tracingSettings(undefined, { OTEL_TRACES_SAMPLER: 'parentbased_always_on' }).sampler.toString(),
    'the default is parentbased_always_on',
  )
  t.match(tracingSettings(undefined, { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).sampler.toString(), /0\.25/)
  t.throws(() => tracingSettings(undefined, { OTEL_TRACES_SAMPLER: 'sometimes' }), { name: 'ConfigError', message: /^OTEL_TRACES_SAMPLER: "sometimes"/ })
  t.throws(() => tracingSettings(undefined, { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' }), { message: /^OTEL_TRACES_SAMPLER_ARG: "2"/ })
  t.throws(() => tracingSettings(undefined, { OTEL_RESOURCE_ATTRIBUTES: 'novalue' }), { message: /^OTEL_RESOURCE_ATTRIBUTES: "novalue" is not key=value/ })
  t.throws(() => tracingSettings(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), {
    message: /^OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318\/v1\/traces" is not an http\(s\) URL/,
  })
})

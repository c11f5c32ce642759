// Traces of admission reviews: a server span per review continuing the API server's traceparent,
// a span per image, and under it the pull path's own spans (policy evaluation, discovery, verify).
import t from 'tap'
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace'
import { setupTracing, shutdownTracing } from '../../src/telemetry/tracing.ts'
import { admissionReview, kubectlObject, servingCert, webhookClient } from '../helpers/admission.ts'
import { pushImage } from '../helpers/images.ts'
import { waitFor } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

const exporter = new InMemorySpanExporter()
setupTracing({ exporter })
t.teardown(() => shutdownTracing())

t.test("a review is one trace: the caller's, then the image, then the verdict", async (t) => {
  const registry = await startRegistry(t)
  await pushImage(registry.url, 'open/app', 'v1')
  const cert = await servingCert(t)
  const proxy = await startProxy(t, hubConfig(registry.url, { noMatchPolicy: 'allow', admission: { listen: '127.0.0.1:0', tls: { cert: cert.cert, key: cert.key } } }))
  const post = webhookClient(t, proxy.running.admissionUrl!, cert.pem)
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
  const parentId = '00f067aa0ba902b7'
  const r = await post('validate', admissionReview(await kubectlObject('deployment', 'web', 'open/app:v1')).review, { traceparent: `00-${traceId}-${parentId}-01` })
  t.equal(r.body.response?.allowed, true)
  await waitFor(() => exporter.getFinishedSpans().some((s) => s.name === 'POST /validate'), { what: 'the review span' })
  const spans = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId)
  const root = spans.find((s) => s.name === 'POST /validate')!
  t.equal(root.parentSpanContext?.spanId, parentId, "continues the caller's trace")
  t.match(root.attributes, { 'trustpull.admission.kind': 'Deployment', 'trustpull.admission.operation': 'CREATE', 'trustpull.admission.result': 'allowed' })
  const image = spans.find((s) => s.name === 'admission.image' && s.parentSpanContext?.spanId === root.spanContext().spanId)
  t.ok(image, 'a span per image under the review')
  t.ok(
    spans.some((s) => s.name === 'policy.evaluate' && s.parentSpanContext?.spanId === image?.spanContext().spanId),
    'the verdict under the image',
  )
})

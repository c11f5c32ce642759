// trustpull's metrics as Prometheus sees them (names, types, labels), and a PromQL checker over
// them: what the Grafana dashboard and the PrometheusRule alerts may query. The catalog itself is
// checked against a real scrape of src/telemetry/metrics.ts (test/deploy/metric-catalog.test.ts),
// so a query that passes here names a series trustpull really exports.
import { parser } from '@prometheus-io/lezer-promql'

export type MetricType = 'counter' | 'histogram' | 'gauge'

/** Every trustpull_* family, by the name Prometheus gives it (counters end in _total). */
export const METRICS: Record<string, { type: MetricType; labels: string[] }> = {
  trustpull_verdicts_total: { type: 'counter', labels: ['result', 'policy', 'upstream'] },
  trustpull_verification_duration_seconds: { type: 'histogram', labels: [] },
  trustpull_cache_requests_total: { type: 'counter', labels: ['tier', 'result'] },
  trustpull_upstream_request_duration_seconds: { type: 'histogram', labels: ['upstream', 'status'] },
  trustpull_bytes_served_total: { type: 'counter', labels: ['kind'] },
  trustpull_http_requests_in_flight: { type: 'gauge', labels: [] },
  trustpull_redis_up: { type: 'gauge', labels: [] },
  trustpull_http_requests_total: { type: 'counter', labels: ['method', 'route', 'status'] },
  trustpull_store_lookups_total: { type: 'counter', labels: ['kind', 'result'] },
  trustpull_store_evicted_bytes_total: { type: 'counter', labels: [] },
  trustpull_store_bytes: { type: 'gauge', labels: [] },
  trustpull_store_objects: { type: 'gauge', labels: [] },
  trustpull_store_writable: { type: 'gauge', labels: [] },
  trustpull_store_corrupt_objects_total: { type: 'counter', labels: ['found_by'] },
  trustpull_store_scrub_bytes_total: { type: 'counter', labels: [] },
  trustpull_store_scrub_passes_total: { type: 'counter', labels: [] },
  trustpull_store_scrub_last_pass_timestamp_seconds: { type: 'gauge', labels: [] },
  trustpull_build_info: { type: 'gauge', labels: ['version', 'revision', 'node'] },
  trustpull_config_last_reload_successful: { type: 'gauge', labels: [] },
  trustpull_config_last_reload_success_timestamp_seconds: { type: 'gauge', labels: [] },
  trustpull_process_resident_memory_bytes: { type: 'gauge', labels: [] },
  trustpull_process_heap_used_bytes: { type: 'gauge', labels: [] },
  trustpull_process_open_fds: { type: 'gauge', labels: [] },
  trustpull_process_event_loop_lag_p99_seconds: { type: 'gauge', labels: [] },
  trustpull_process_event_loop_lag_max_seconds: { type: 'gauge', labels: [] },
}

/**
 * Labels the scrape adds to every series: Prometheus' job and instance, and the Prometheus
 * Operator's namespace, pod, service, container and endpoint (a ServiceMonitor target).
 */
export const TARGET_LABELS = ['instance', 'job', 'namespace', 'pod', 'service', 'container', 'endpoint']

/** Prometheus' own series about each target. */
const SCRAPE_SERIES: Record<string, string[]> = { up: [] }

/** The series names a metric has in Prometheus (histograms: _bucket, _sum, _count). */
function seriesNames(): Map<string, { metric: string; labels: string[] }> {
  const out = new Map<string, { metric: string; labels: string[] }>()
  for (const [metric, { type, labels }] of Object.entries(METRICS)) {
    if (type === 'histogram') {
      out.set(`${metric}_bucket`, { metric, labels: [...labels, 'le'] })
      out.set(`${metric}_sum`, { metric, labels })
      out.set(`${metric}_count`, { metric, labels })
    } else {
      out.set(metric, { metric, labels })
    }
  }
  return out
}
export const SERIES = seriesNames()

export interface Checked {
  /** The trustpull metrics (family names) the expression reads. */
  metrics: string[]
  problems: string[]
  /** Each selector's label matchers, by series name: what a caller checks scoping with. */
  selectors: { series: string; matchers: Map<string, string> }[]
}

/**
 * Parses one expression after replacing `variables` (Grafana's `$__rate_interval`, `$job`, ...)
 * by what they expand to; reports syntax errors, unknown series, labels the series do not have,
 * and groupings by labels none of them has. `allowScrapeSeries` admits Prometheus' `up`.
 */
export function checkExpression(expr: string, variables: Record<string, string> = {}, options: { allowScrapeSeries?: boolean } = {}): Checked {
  const problems: string[] = []
  let promql = expr
  for (const [variable, value] of Object.entries(variables).sort((a, b) => b[0].length - a[0].length)) promql = promql.replaceAll(variable, value)
  if (/\$\w/.test(promql)) problems.push(`unknown Grafana variable in ${expr}`)
  const metrics: string[] = []
  const selectors: Checked['selectors'] = []
  const labelsInScope = new Set(TARGET_LABELS)
  const grouped: string[] = []
  const text = (n: { from: number; to: number }) => promql.slice(n.from, n.to)
  parser.parse(promql).iterate({
    enter(node) {
      if (node.type.isError) problems.push(`syntax error at ${node.from} in ${promql}`)
      if (node.name === 'VectorSelector') {
        const identifier = node.node.getChild('Identifier')
        if (!identifier) return void problems.push(`a selector without a metric name: ${text(node)}`)
        const name = text(identifier)
        const scrape = options.allowScrapeSeries ? SCRAPE_SERIES[name] : undefined
        const series = SERIES.get(name) ?? (scrape ? { metric: name, labels: scrape } : undefined)
        if (!series) return void problems.push(`unknown metric ${name}`)
        if (!scrape) metrics.push(series.metric)
        for (const l of series.labels) labelsInScope.add(l)
        const matchers = new Map<string, string>()
        for (const matcher of node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
          const label = text(matcher.getChild('LabelName')!)
          matchers.set(label, text(matcher.getChild('StringLiteral') ?? matcher).replace(/^"|"$/g, ''))
          if (!series.labels.includes(label) && !TARGET_LABELS.includes(label)) problems.push(`${name} has no label ${label}`)
        }
        selectors.push({ series: name, matchers })
        if ((node.node.getChild('LabelMatchers')?.getChildren('QuotedLabelMatcher') ?? []).length > 0) problems.push(`quoted matchers (__name__) hide the metric: ${text(node)}`)
      }
      if (node.name === 'GroupingLabels') for (const l of node.node.getChildren('LabelName')) grouped.push(text(l))
    },
  })
  for (const label of grouped) if (!labelsInScope.has(label)) problems.push(`grouping by ${label}, which none of its series has`)
  return { metrics, problems, selectors }
}

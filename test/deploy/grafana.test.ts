// deploy/grafana/trustpull.json: a well-formed dashboard whose every query is valid PromQL over
// trustpull's own metrics and labels, and which covers all of them.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { parser } from '@prometheus-io/lezer-promql'

const DASHBOARD = new URL('../../deploy/grafana/trustpull.json', import.meta.url)

/** trustpull's metrics as Prometheus exposes them, with their labels. */
const METRICS: Record<string, { type: 'counter' | 'histogram' | 'gauge'; labels: string[] }> = {
  trustpull_verdicts_total: { type: 'counter', labels: ['result', 'policy', 'upstream'] },
  trustpull_verification_duration_seconds: { type: 'histogram', labels: [] },
  trustpull_cache_requests_total: { type: 'counter', labels: ['tier', 'result'] },
  trustpull_upstream_request_duration_seconds: { type: 'histogram', labels: ['upstream', 'status'] },
  trustpull_bytes_served_total: { type: 'counter', labels: ['kind'] },
  trustpull_http_requests_in_flight: { type: 'gauge', labels: [] },
  trustpull_redis_up: { type: 'gauge', labels: [] },
  trustpull_http_requests_total: { type: 'counter', labels: ['method', 'route', 'status'] },
  trustpull_process_resident_memory_bytes: { type: 'gauge', labels: [] },
  trustpull_process_heap_used_bytes: { type: 'gauge', labels: [] },
  trustpull_process_open_fds: { type: 'gauge', labels: [] },
  trustpull_process_event_loop_lag_p99_seconds: { type: 'gauge', labels: [] },
  trustpull_process_event_loop_lag_max_seconds: { type: 'gauge', labels: [] },
}
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = ['instance', 'job']

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
const SERIES = seriesNames()

/** Grafana's variables, replaced by what they expand to before PromQL parsing. */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: '5m',
  $__interval: '1m',
  $__range: '6h',
  $upstream: '.*',
}

interface Checked {
  metrics: string[]
  problems: string[]
}

/** Parses one expression; reports syntax errors, unknown series and labels the series do not have. */
function checkExpression(expr: string): Checked {
  const problems: string[] = []
  let promql = expr
  for (const [variable, value] of Object.entries(GRAFANA_VARIABLES)) promql = promql.replaceAll(variable, value)
  if (promql.includes('$')) problems.push(`unknown Grafana variable in ${expr}`)
  const metrics: string[] = []
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
        const series = SERIES.get(name)
        if (!series) return void problems.push(`unknown metric ${name}`)
        metrics.push(series.metric)
        for (const l of series.labels) labelsInScope.add(l)
        for (const matcher of node.node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
          const label = text(matcher.getChild('LabelName')!)
          if (!series.labels.includes(label) && !TARGET_LABELS.includes(label)) problems.push(`${name} has no label ${label}`)
        }
        if ((node.node.getChild('LabelMatchers')?.getChildren('QuotedLabelMatcher') ?? []).length > 0) problems.push(`quoted matchers (__name__) hide the metric: ${text(node)}`)
      }
      if (node.name === 'GroupingLabels') for (const l of node.node.getChildren('LabelName')) grouped.push(text(l))
    },
  })
  for (const label of grouped) if (!labelsInScope.has(label)) problems.push(`grouping by ${label}, which none of its series has`)
  return { metrics, problems }
}

interface Target {
  expr?: string
  refId?: string
  datasource?: { uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  gridPos: { h: number; w: number; x: number; y: number }
  datasource?: { type?: string; uid?: string }
  targets?: Target[]
}
interface Dashboard {
  uid: string
  title: string
  schemaVersion: number
  panels: Panel[]
  templating: { list: { name: string; type: string; query?: string | { query: string }; datasource?: { uid?: string } }[] }
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard
const queryPanels = dashboard.panels.filter((p) => p.type !== 'row')

t.test('a well-formed Grafana dashboard', async (t) => {
  t.equal(dashboard.uid, 'trustpull')
  t.equal(dashboard.title, 'trustpull')
  t.ok(dashboard.schemaVersion >= 36, 'a current dashboard schema')
  const ids = dashboard.panels.map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const cells = new Map<string, string>()
  for (const p of dashboard.panels) {
    const { x, y, w, h } = p.gridPos
    t.ok(x >= 0 && w > 0 && x + w <= 24 && h > 0, `${p.title}: inside the 24-column grid`)
    for (let cx = x; cx < x + w; cx++) {
      for (let cy = y; cy < y + h; cy++) {
        const other = cells.get(`${cx},${cy}`)
        if (other) t.fail(`${p.title} overlaps ${other}`)
        cells.set(`${cx},${cy}`, p.title)
      }
    }
  }
  const datasource = dashboard.templating.list.find((v) => v.type === 'datasource')
  t.match(datasource, { name: 'datasource', query: 'prometheus' }, 'the Prometheus data source is chosen on import')
  for (const p of queryPanels) {
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the chosen data source`)
    t.ok(p.targets && p.targets.length > 0, `${p.title}: has queries`)
    const refIds = (p.targets ?? []).map((q) => q.refId)
    t.equal(new Set(refIds).size, refIds.length, `${p.title}: distinct refIds`)
  }
})

t.test('every query is valid PromQL naming only trustpull metrics and their labels', async (t) => {
  const used = new Set<string>()
  for (const p of queryPanels) {
    for (const q of p.targets ?? []) {
      t.ok(q.expr, `${p.title} ${q.refId}: has an expression`)
      const { metrics, problems } = checkExpression(q.expr!)
      t.same(problems, [], `${p.title} ${q.refId}: ${q.expr}`)
      t.ok(metrics.length > 0, `${p.title} ${q.refId}: reads a metric`)
      for (const m of metrics) used.add(m)
    }
  }
  for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const query = typeof v.query === 'string' ? v.query : v.query!.query
    const [, metric, label] = /^label_values\((\w+),\s*(\w+)\)$/.exec(query) ?? []
    t.ok(metric && SERIES.has(metric), `variable ${v.name}: label_values of a trustpull metric`)
    t.ok(label && SERIES.get(metric!)?.labels.includes(label), `variable ${v.name}: a label ${metric} has`)
  }
  t.same([...used].sort(), Object.keys(METRICS).sort(), 'every trustpull metric has a panel')
})

t.test('the panels cover what operators ask', async (t) => {
  const exprs = (title: RegExp) =>
    queryPanels
      .filter((p) => title.test(p.title))
      .flatMap((p) => p.targets ?? [])
      .map((q) => q.expr ?? '')
  t.match(exprs(/^Deny rate$/).join('\n'), /result="deny".*\/.*trustpull_verdicts_total/, 'deny rate is denies over all verdicts')
  t.match(exprs(/Verdicts by policy/).join('\n'), /by \(policy, result\)/)
  const latency = exprs(/^Verification latency$/).join('\n')
  t.match(latency, /histogram_quantile\(0\.5,/)
  t.match(latency, /histogram_quantile\(0\.99,/)
  t.match(exprs(/hit ratio by tier/).join('\n'), /by \(tier\)/)
  t.match(exprs(/Upstream responses by status/).join('\n'), /by \(upstream, status\)/)
  t.match(exprs(/Bytes served/).join('\n'), /by \(kind\)/)
})

t.test('the checker refuses what it must', async (t) => {
  t.match(checkExpression('sum(rate(trustpull_verdict_total[$__rate_interval]))').problems, ['unknown metric trustpull_verdict_total'])
  t.match(checkExpression('rate(trustpull_verification_duration_seconds[5m])').problems, ['unknown metric trustpull_verification_duration_seconds'], 'a histogram is read through _bucket/_sum/_count')
  t.match(checkExpression('sum(rate(trustpull_verdicts_total[5m])').problems, [/syntax error/])
  t.match(checkExpression('sum(rate(trustpull_bytes_served_total{tier="redis"}[5m]))').problems, ['trustpull_bytes_served_total has no label tier'])
  t.match(checkExpression('sum by (tier) (rate(trustpull_bytes_served_total[5m]))').problems, ['grouping by tier, which none of its series has'])
  t.match(checkExpression('sum(rate({__name__="node_cpu_seconds_total"}[5m]))').problems, [/without a metric name/])
  t.match(checkExpression('rate(trustpull_http_requests_total{route=~"$route"}[5m])').problems, [/unknown Grafana variable/])
  t.same(checkExpression('sum by (instance) (trustpull_http_requests_in_flight)').problems, [])
})

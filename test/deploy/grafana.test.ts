// deploy/grafana/trustpull.json: a well-formed dashboard whose every query is valid PromQL over
// trustpull's own metrics and labels (test/helpers/metric-catalog.ts, checked against a real
// scrape), which covers all of them, and whose every selector follows the job, namespace and
// instance variables.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { checkExpression as check, METRICS, SERIES } from '../helpers/metric-catalog.ts'

const DASHBOARD = new URL('../../deploy/grafana/trustpull.json', import.meta.url)

/** The dashboard's variables, as markers the scoping check finds again in the parsed selectors. */
const SCOPE = { $job: '__job__', $namespace: '__namespace__', $instance: '__instance__' }
/** Grafana's variables, replaced by what they expand to before PromQL parsing. */
const GRAFANA_VARIABLES: Record<string, string> = {
  $__rate_interval: '5m',
  $__interval: '1m',
  $__range: '6h',
  $upstream: '.*',
  ...SCOPE,
}
const checkExpression = (expr: string) => check(expr, GRAFANA_VARIABLES)

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
    const [, selector, label] = /^label_values\((.+),\s*(\w+)\)$/.exec(query) ?? []
    t.ok(selector, `variable ${v.name}: label_values(selector, label)`)
    const checked = checkExpression(selector!)
    t.same(checked.problems, [], `variable ${v.name}: ${selector}`)
    const series = checked.selectors[0]?.series
    t.ok(series && (SERIES.get(series)?.labels.includes(label!) || ['job', 'namespace', 'instance'].includes(label!)), `variable ${v.name}: a label ${series} has`)
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

t.test('job, namespace and instance variables scope every query', async (t) => {
  const variables = dashboard.templating.list.map((v) => v.name)
  t.same(variables, ['datasource', 'job', 'namespace', 'instance', 'upstream'], 'chosen in this order, each narrowing the next')
  const byName = (name: string) => {
    const v = dashboard.templating.list.find((x) => x.name === name)!
    return typeof v.query === 'string' ? v.query : v.query!.query
  }
  t.match(byName('namespace'), /job=~"\$job"/, 'namespaces of the chosen jobs')
  t.match(byName('instance'), /job=~"\$job", namespace=~"\$namespace"/, 'instances of the chosen jobs and namespaces')
  t.match(byName('upstream'), /job=~"\$job", namespace=~"\$namespace", instance=~"\$instance"/, 'upstreams of the chosen instances')
  for (const p of queryPanels) {
    for (const q of p.targets ?? []) {
      for (const s of checkExpression(q.expr!).selectors) {
        for (const [label, marker] of Object.entries(SCOPE)) {
          t.equal(s.matchers.get(label.slice(1)), marker, `${p.title} ${q.refId}: ${s.series} follows ${label}`)
        }
      }
    }
  }
})

t.test('the content store panels', async (t) => {
  const exprs = (title: RegExp) => {
    const panels = queryPanels.filter((p) => title.test(p.title))
    t.ok(panels.length > 0, `a panel titled ${title}`)
    return panels
      .flatMap((p) => p.targets ?? [])
      .map((q) => q.expr ?? '')
      .join('\n')
  }
  t.match(exprs(/^Store size by replica$/), /trustpull_store_bytes/)
  t.match(exprs(/^Store objects by replica$/), /trustpull_store_objects/)
  t.match(exprs(/^Store writable by replica$/), /trustpull_store_writable/)
  t.match(exprs(/^Store hits and misses by kind$/), /by \(kind, result\) \(rate\(trustpull_store_lookups_total/)
  t.match(exprs(/^Store evictions$/), /trustpull_store_evicted_bytes_total/)
  t.match(exprs(/^Blob bytes served: store vs upstream$/), /by \(kind\).*trustpull_bytes_served_total\{[^}]*kind=~"blob\|blob_from_store"/)
  t.match(exprs(/^Upstream requests saved$/), /increase\(trustpull_store_lookups_total\{[^}]*result="hit"[^}]*\}\[\$__range\]\)/)
})

t.test('the checker refuses what it must', async (t) => {
  t.match(checkExpression('sum(rate(trustpull_verdict_total[$__rate_interval]))').problems, ['unknown metric trustpull_verdict_total'])
  t.match(
    checkExpression('rate(trustpull_verification_duration_seconds[5m])').problems,
    ['unknown metric trustpull_verification_duration_seconds'],
    'a histogram is read through _bucket/_sum/_count',
  )
  t.match(checkExpression('sum(rate(trustpull_verdicts_total[5m])').problems, [/syntax error/])
  t.match(checkExpression('sum(rate(trustpull_bytes_served_total{tier="redis"}[5m]))').problems, ['trustpull_bytes_served_total has no label tier'])
  t.match(checkExpression('sum by (tier) (rate(trustpull_bytes_served_total[5m]))').problems, ['grouping by tier, which none of its series has'])
  t.match(checkExpression('sum(rate({__name__="node_cpu_seconds_total"}[5m]))').problems, [/without a metric name/])
  t.match(checkExpression('rate(trustpull_http_requests_total{route=~"$route"}[5m])').problems, [/unknown Grafana variable/])
  t.same(checkExpression('sum by (instance) (trustpull_http_requests_in_flight)').problems, [])
})

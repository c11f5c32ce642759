// deploy/kubernetes/base/prometheusrule.yaml, run by Prometheus' own rule engine: `promtool check
// rules` accepts every group, and `promtool test rules` shows each alert firing on the series of
// the trouble it names (with its labels and rendered annotations) and staying silent on a healthy
// replica. promtool comes from Debian's prometheus package (scripts/install-test-tools.sh).
import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse as parseYaml, stringify } from 'yaml'
import { REPO_ROOT, run, tempDir } from '../helpers/proc.ts'

const PROMTOOL = process.env.TRUSTPULL_TEST_PROMTOOL ?? join(REPO_ROOT, '.tools/bin/promtool')
const rule = parseYaml(readFileSync(join(REPO_ROOT, 'deploy/kubernetes/base/prometheusrule.yaml'), 'utf8')) as { spec: { groups: { name: string; rules: { alert: string }[] }[] } }
const alerts = rule.spec.groups.flatMap((g) => g.rules.map((r) => r.alert))

/** What a ServiceMonitor target's series carry. */
const target = (pod: string, n: number) => `job="trustpull", namespace="trustpull", pod="${pod}", instance="10.0.0.${n}:9090"`
const t0 = target('trustpull-0', 1)
const t1 = target('trustpull-1', 2)
const labels0 = { job: 'trustpull', namespace: 'trustpull', pod: 'trustpull-0', instance: '10.0.0.1:9090' }

interface Case {
  alert: string
  series: { series: string; values: string }[]
  at: string
  fires?: { labels: Record<string, string>; annotations: Record<string, string> }
}

const GiB = 1024 ** 3
const cases: Case[] = [
  // Two replicas scraped, then one stops answering.
  {
    alert: 'TrustpullReplicasLow',
    series: [
      { series: `up{${t0}}`, values: '1x20' },
      { series: `up{${t1}}`, values: '1x5 0x15' },
    ],
    at: '15m',
    fires: {
      labels: { severity: 'critical' },
      annotations: { summary: 'fewer than two trustpull replicas are up', description: '1 trustpull replicas answer scrapes. Every image pull on the nodes goes through them.' },
    },
  },
  // Half the verdicts are denials, at 1 per second.
  {
    alert: 'TrustpullDenyRateHigh',
    series: [
      { series: `trustpull_verdicts_total{${t0}, result="deny", policy="p", upstream="u"}`, values: '0+60x40' },
      { series: `trustpull_verdicts_total{${t0}, result="allow", policy="p", upstream="u"}`, values: '0+60x40' },
    ],
    at: '30m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', job: 'trustpull' },
      annotations: {
        summary: "more than 20% of trustpull's verdicts are denials",
        description: '50% of verdicts are deny. Read the audit log (reason codes: trustpull explain CODE).',
      },
    },
  },
  {
    alert: 'TrustpullRedisDown',
    series: [{ series: `trustpull_redis_up{${t0}}`, values: '1x5 0x15' }],
    at: '15m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', pod: 'trustpull-0' },
      annotations: { summary: 'trustpull trustpull-0 cannot reach Redis', description: 'Verdicts are not shared between replicas; pulls keep working.' },
    },
  },
  // Half of docker.io's requests fail with 503 or no answer at all.
  {
    alert: 'TrustpullUpstreamErrors',
    series: [
      { series: `trustpull_upstream_request_duration_seconds_count{${t0}, upstream="docker.io", status="200"}`, values: '0+60x40' },
      { series: `trustpull_upstream_request_duration_seconds_count{${t0}, upstream="docker.io", status="503"}`, values: '0+30x40' },
      { series: `trustpull_upstream_request_duration_seconds_count{${t0}, upstream="docker.io", status="UNAVAILABLE"}`, values: '0+30x40' },
    ],
    at: '30m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', upstream: 'docker.io' },
      annotations: {
        summary: 'upstream docker.io is failing',
        description: '50% of requests to docker.io fail (5xx or no answer). New content cannot be verified; stored content is still served.',
      },
    },
  },
  // Every verification lands in the 10 s bucket.
  {
    alert: 'TrustpullVerificationSlow',
    series: [
      { series: `trustpull_verification_duration_seconds_bucket{${t0}, le="5"}`, values: '0x40' },
      { series: `trustpull_verification_duration_seconds_bucket{${t0}, le="10"}`, values: '0+10x40' },
      { series: `trustpull_verification_duration_seconds_bucket{${t0}, le="+Inf"}`, values: '0+10x40' },
    ],
    at: '30m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull' },
      annotations: {
        summary: 'trustpull verifications take more than 5 s (p99)',
        description: 'Signature discovery or the transparency log is slow; first pulls of new images wait for it.',
      },
    },
  },
  {
    alert: 'TrustpullConfigReloadFailed',
    series: [{ series: `trustpull_config_last_reload_successful{${t0}}`, values: '1x5 0x15' }],
    at: '15m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', pod: 'trustpull-0' },
      annotations: {
        summary: 'trustpull trustpull-0 refused its new configuration',
        description: 'The log line "reload refused" names the key. The previous configuration stays in force until it is fixed.',
      },
    },
  },
  {
    alert: 'TrustpullStoreReadOnly',
    series: [{ series: `trustpull_store_writable{${t0}}`, values: '1x5 0x25' }],
    at: '20m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', pod: 'trustpull-0' },
      annotations: {
        summary: 'trustpull trustpull-0 cannot write its content store',
        description: 'New content is served pass-through and not stored; an upstream outage will hit it. /readyz says why.',
      },
    },
  },
  // A 40 GiB store evicting 1 GiB a minute: 60 GiB an hour.
  {
    alert: 'TrustpullStoreNearFull',
    series: [
      { series: `trustpull_store_bytes{${t0}}`, values: `${40 * GiB}x200` },
      { series: `trustpull_store_evicted_bytes_total{${t0}}`, values: `0+${GiB}x200` },
    ],
    at: '150m',
    fires: {
      labels: { ...labels0, severity: 'info' },
      annotations: {
        summary: "trustpull trustpull-0's content store is full and churning",
        description: "60GiB evicted in the last hour. Raise storage.maxSize and the claim's size, or use S3.",
      },
    },
  },
  // Two rotted files found, one by a read and one by the scrub.
  {
    alert: 'TrustpullStoreCorruption',
    series: [
      { series: `trustpull_store_corrupt_objects_total{${t0}, found_by="read"}`, values: '0x10 1x50' },
      { series: `trustpull_store_corrupt_objects_total{${t0}, found_by="scrub"}`, values: '0x20 1x40' },
    ],
    at: '30m',
    fires: {
      labels: { severity: 'warning', namespace: 'trustpull', pod: 'trustpull-0' },
      annotations: {
        summary: 'trustpull trustpull-0 found corrupt blobs in its content store',
        description:
          'Stored blobs did not match their digest in the last hour and were removed; no client got one whole. Check the volume (dmesg, SMART) and who can write to it; the log line names each digest.',
      },
    },
  },
  // The last pass ended at time 0 and none since (promtool's clock starts at the epoch).
  {
    alert: 'TrustpullStoreScrubStale',
    series: [{ series: `trustpull_store_scrub_last_pass_timestamp_seconds{${t0}}`, values: '0x3000' }],
    at: '50h',
    fires: {
      labels: { severity: 'info', namespace: 'trustpull', pod: 'trustpull-0' },
      annotations: {
        summary: "trustpull trustpull-0's content store scrub has not finished a pass in two days",
        description:
          'Rotted files are still cut short when read, but no longer found ahead of clients. Raise storage.scrubRate if the store outgrew it, or look for "content store scrub stopped".',
      },
    },
  },
]

/** A healthy pair of replicas: no alert fires. */
const healthy: Case['series'] = [
  { series: `up{${t0}}`, values: '1x200' },
  { series: `up{${t1}}`, values: '1x200' },
  { series: `trustpull_verdicts_total{${t0}, result="allow", policy="p", upstream="u"}`, values: '0+60x200' },
  { series: `trustpull_verdicts_total{${t0}, result="deny", policy="p", upstream="u"}`, values: '0+1x200' },
  { series: `trustpull_redis_up{${t0}}`, values: '1x200' },
  { series: `trustpull_upstream_request_duration_seconds_count{${t0}, upstream="docker.io", status="200"}`, values: '0+60x200' },
  { series: `trustpull_upstream_request_duration_seconds_count{${t0}, upstream="docker.io", status="404"}`, values: '0+10x200' },
  { series: `trustpull_verification_duration_seconds_bucket{${t0}, le="0.1"}`, values: '0+10x200' },
  { series: `trustpull_verification_duration_seconds_bucket{${t0}, le="+Inf"}`, values: '0+10x200' },
  { series: `trustpull_config_last_reload_successful{${t0}}`, values: '1x200' },
  { series: `trustpull_store_writable{${t0}}`, values: '1x200' },
  // Full, evicting a little (1 GiB an hour of 40 GiB): normal for a cache.
  { series: `trustpull_store_bytes{${t0}}`, values: `${40 * GiB}x200` },
  { series: `trustpull_store_evicted_bytes_total{${t0}}`, values: `0+${Math.round(GiB / 60)}x200` },
  { series: `trustpull_store_corrupt_objects_total{${t0}, found_by="read"}`, values: '0x200' },
  { series: `trustpull_store_corrupt_objects_total{${t0}, found_by="scrub"}`, values: '0x200' },
  // A pass a day: the last one ended at 120m.
  { series: `trustpull_store_scrub_last_pass_timestamp_seconds{${t0}}`, values: '0x120 7200x80' },
]

t.test('promtool accepts the rules', async (t) => {
  const dir = await tempDir(t)
  const rules = join(dir, 'rules.yaml')
  await writeFile(rules, stringify({ groups: rule.spec.groups }))
  const checked = await run(PROMTOOL, ['check', 'rules', rules], { timeoutMs: 120_000 })
  t.equal(checked.code, 0, checked.stdout + checked.stderr)
  t.match(checked.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`))
})

t.test('each alert fires on its trouble and not on a healthy replica', async (t) => {
  t.same(cases.map((c) => c.alert).sort(), [...alerts].sort(), 'a case for every alert')
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }))
  const tests = [
    ...cases.map((c) => ({
      name: c.alert,
      interval: '1m',
      input_series: c.series,
      alert_rule_test: [{ eval_time: c.at, alertname: c.alert, exp_alerts: [{ exp_labels: { alertname: c.alert, ...c.fires!.labels }, exp_annotations: c.fires!.annotations }] }],
    })),
    { name: 'healthy', interval: '1m', input_series: healthy, alert_rule_test: alerts.map((alert) => ({ eval_time: '180m', alertname: alert, exp_alerts: [] })) },
  ]
  await writeFile(join(dir, 'tests.yaml'), stringify({ rule_files: ['rules.yaml'], evaluation_interval: '1m', tests }))
  const result = await run(PROMTOOL, ['test', 'rules', join(dir, 'tests.yaml')], { timeoutMs: 120_000 })
  t.equal(result.code, 0, result.stdout + result.stderr)
  t.match(result.stdout, /SUCCESS/)
})

t.test('the unit tests can fail: an alert expected where none fires is reported', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'rules.yaml'), stringify({ groups: rule.spec.groups }))
  const tests = [
    {
      name: 'healthy',
      interval: '1m',
      input_series: healthy,
      alert_rule_test: [
        {
          eval_time: '180m',
          alertname: 'TrustpullStoreReadOnly',
          exp_alerts: [{ exp_labels: { alertname: 'TrustpullStoreReadOnly', severity: 'warning', namespace: 'trustpull', pod: 'trustpull-0' } }],
        },
      ],
    },
  ]
  await writeFile(join(dir, 'tests.yaml'), stringify({ rule_files: ['rules.yaml'], evaluation_interval: '1m', tests }))
  const result = await run(PROMTOOL, ['test', 'rules', join(dir, 'tests.yaml')], { timeoutMs: 120_000 })
  t.not(result.code, 0)
  t.match(result.stdout + result.stderr, /FAILED/)
})

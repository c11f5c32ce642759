// Config sizes and durations in the spellings operators bring from docker, Kubernetes and Go.
import t from 'tap'
import { parseConfig } from '../../src/config/load.ts'
import { parseDuration, parseSize } from '../../src/config/units.ts'

t.test('sizes: docker and Kubernetes binary units, bare bytes; decimal units refused naming the binary one', async (t) => {
  const cases: [string, number][] = [
    ['0', 0],
    ['512B', 512],
    ['1Ki', 1024],
    ['1KiB', 1024],
    ['64Mi', 64 * 1024 ** 2],
    ['64MiB', 64 * 1024 ** 2],
    ['1Gi', 1024 ** 3],
    ['1.5Gi', 1.5 * 1024 ** 3],
    ['20GiB', 20 * 1024 ** 3],
    ['2Ti', 2 * 1024 ** 4],
    [' 4 MiB ', 4 * 1024 ** 2],
    ['1', 1],
  ]
  for (const [text, bytes] of cases) t.equal(parseSize(text), bytes, JSON.stringify(text))
  t.same(parseSize('64M'), { decimal: '64MiB' })
  t.same(parseSize('1GB'), { decimal: '1GiB' })
  t.same(parseSize('10k'), { decimal: '10KiB' })
  for (const bad of ['', 'Mi', '64 megabytes', '64mi', '-1Mi', '1e3', '64MiBs', '1Pi']) t.equal(parseSize(bad), undefined, JSON.stringify(bad))
  t.equal(parseConfig({ cache: { manifestBytes: '64Mi' } }).cache.manifestBytes, 64 * 1024 ** 2)
  t.equal(parseConfig({ storage: { maxSize: '1Gi' } }).storage.maxSize, 1024 ** 3)
  t.equal(parseConfig({ limits: { manifestBytes: 4096 } }).limits.manifestBytes, 4096, 'a bare number is bytes')
  t.throws(() => parseConfig({ cache: { manifestBytes: '64M' } }), { name: 'ConfigError', message: /cache\.manifestBytes: "64M": decimal units are ambiguous here; write 64MiB/ })
  t.throws(() => parseConfig({ limits: { bundleBytes: 'lots' } }), { message: /limits\.bundleBytes: "lots" is not a size/ })
})

t.test("durations: Go's compound spellings, bare seconds", async (t) => {
  const cases: [string, number][] = [
    ['0s', 0],
    ['250ms', 250],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['2h45m10s500ms', 2 * 3_600_000 + 45 * 60_000 + 10_500],
    ['1.5h', 5_400_000],
    ['1m30.5s', 90_500],
    ['90m', 5_400_000],
  ]
  for (const [text, ms] of cases) t.equal(parseDuration(text), ms, text)
  for (const bad of ['', '1', '1d', '1h 30m', 'h', '1H', '-1s', '1.s', '30sec', '1h30']) t.equal(parseDuration(bad), undefined, JSON.stringify(bad))
  t.equal(parseConfig({ cache: { allowTTL: '1h30m' } }).cache.allowTTL, 5_400_000)
  t.equal(parseConfig({ timeouts: { connect: '1m30s' } }).timeouts.connect, 90_000)
  t.equal(parseConfig({ timeouts: { connect: 2.5 } }).timeouts.connect, 2_500, 'a bare number is seconds')
  t.throws(() => parseConfig({ cache: { denyTTL: '1d' } }), { name: 'ConfigError', message: /cache\.denyTTL: "1d" is not a duration \(e\.g\. 500ms, 30s, 5m, 1h30m\)/ })
})

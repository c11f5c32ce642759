// Load generators. The same client always measures both sides of a comparison: autocannon for GET,
// ApacheBench (`ab -k -i`) for HEAD (autocannon and wrk wait for a body after a HEAD answer that
// carries Content-Length and time out), undici for single requests and bursts.
import autocannon from 'autocannon'
import { Client, request } from 'undici'
import { run } from '../../test/helpers/proc.ts'
import { cpuMsOf, percentile, round } from './harness.ts'

export interface LoadFigures {
  /** Mean requests per second over the run. */
  rps: number
  p50Ms: number
  p99Ms: number
  requests: number
  /** Answers other than 2xx, plus connection errors: a run with any is not a valid measurement. */
  failures: number
  /** CPU time the server process(es) named used per request, in µs (robust to a busy machine). */
  cpuUsPerRequest?: number
}

/** Adds the CPU time `pids` used during `work` per request it completed. */
export async function withServerCpu(pids: number[], work: () => Promise<LoadFigures>): Promise<LoadFigures> {
  const before = pids.map(cpuMsOf)
  const figures = await work()
  const cpuMs = pids.reduce((sum, pid, i) => sum + cpuMsOf(pid) - before[i]!, 0)
  return { ...figures, cpuUsPerRequest: round((cpuMs * 1000) / Math.max(1, figures.requests), 1) }
}

/** autocannon against one URL for `seconds`. */
export async function cannon(url: string, opts: { connections: number; seconds: number; headers?: Record<string, string> }): Promise<LoadFigures> {
  const r = await autocannon({ url, connections: opts.connections, duration: opts.seconds, headers: opts.headers, timeout: 10 })
  return {
    rps: round(r.requests.average, 0),
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    requests: r.requests.total,
    failures: r.non2xx + r.errors + r.timeouts,
  }
}

/** `ab -k -i` (keep-alive HEAD) against one URL for `seconds`. */
export async function apacheBenchHead(url: string, opts: { connections: number; seconds: number; headers?: Record<string, string> }): Promise<LoadFigures> {
  const headerArgs = Object.entries(opts.headers ?? {}).flatMap(([k, v]) => ['-H', `${k}: ${v}`])
  const args = ['-k', '-i', '-q', '-c', String(opts.connections), '-t', String(opts.seconds), '-n', '10000000', ...headerArgs, url]
  const r = await run('ab', args, { timeoutMs: (opts.seconds + 30) * 1000 })
  if (r.code !== 0) throw new Error(`ab ${args.join(' ')} failed: ${r.stderr || r.stdout}`)
  const num = (re: RegExp) => Number(re.exec(r.stdout)?.[1] ?? NaN)
  const complete = num(/Complete requests:\s+(\d+)/)
  const keptAlive = num(/Keep-Alive requests:\s+(\d+)/)
  if (keptAlive < complete * 0.99) throw new Error(`ab: only ${keptAlive} of ${complete} requests kept the connection alive`)
  return {
    rps: round(num(/Requests per second:\s+([\d.]+)/), 0),
    p50Ms: num(/^\s+50%\s+(\d+)/m),
    p99Ms: num(/^\s+99%\s+(\d+)/m),
    requests: complete,
    failures: num(/Failed requests:\s+(\d+)/) + (num(/Non-2xx responses:\s+(\d+)/) || 0),
  }
}

/** One GET (or HEAD), the body read to the end; resolves to its status and latency in ms. */
export async function timedRequest(url: string, opts: { method?: 'GET' | 'HEAD'; headers?: Record<string, string> } = {}): Promise<{ status: number; ms: number }> {
  const started = performance.now()
  const res = await request(url, { method: opts.method ?? 'GET', headers: opts.headers })
  await res.body.dump({ limit: Infinity })
  return { status: res.statusCode, ms: performance.now() - started }
}

export function latencySummary(ms: number[]): { n: number; p50Ms: number; p99Ms: number; maxMs: number } {
  return { n: ms.length, p50Ms: round(percentile(ms, 50), 2), p99Ms: round(percentile(ms, 99), 2), maxMs: round(Math.max(...ms), 2) }
}

/**
 * Runs every side once per round, the order rotating from round to round, so drifting machine load
 * (other work on a shared machine) hits all sides alike.
 */
export async function rotate<T>(rounds: number, sides: (() => Promise<T>)[]): Promise<T[][]> {
  const out = sides.map(() => [] as T[])
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < sides.length; k++) {
      const i = (k + r) % sides.length
      out[i]!.push(await sides[i]!())
    }
  }
  return out
}

/** The round with the median throughput (robust to one disturbed round). */
export function medianRun(runs: LoadFigures[]): LoadFigures {
  const sorted = [...runs].sort((x, y) => x.rps - y.rps)
  return sorted[Math.floor((sorted.length - 1) / 2)]!
}

export function assertClean(what: string, figures: LoadFigures): void {
  if (figures.failures > 0) throw new Error(`${what}: ${figures.failures} of ${figures.requests} requests failed: not a valid measurement`)
  if (figures.requests === 0) throw new Error(`${what}: no request completed`)
}

/**
 * `connections` workers, each on its own keep-alive connection, each sending HEAD (or GET) to its
 * own URL (`urls[i % urls.length]`) back to back for `seconds`. With one URL per worker no two
 * requests in flight ever ask for the same resource.
 */
export async function undiciLoop(urls: string[], opts: { connections: number; seconds: number; method?: 'HEAD' | 'GET'; headers?: Record<string, string> }): Promise<LoadFigures> {
  const latencies: number[] = []
  let failures = 0
  const deadline = performance.now() + opts.seconds * 1000
  const workers = Array.from({ length: opts.connections }, async (_, i) => {
    const url = new URL(urls[i % urls.length]!)
    const client = new Client(url.origin, { pipelining: 1 })
    try {
      while (performance.now() < deadline) {
        const started = performance.now()
        try {
          const res = await client.request({ path: `${url.pathname}${url.search}`, method: opts.method ?? 'HEAD', headers: opts.headers })
          await res.body.dump()
          if (res.statusCode >= 300) failures++
          latencies.push(performance.now() - started)
        } catch {
          failures++
        }
      }
    } finally {
      await client.close()
    }
  })
  const started = performance.now()
  await Promise.all(workers)
  const seconds = (performance.now() - started) / 1000
  return {
    rps: round(latencies.length / seconds, 0),
    p50Ms: round(percentile(latencies, 50), 2),
    p99Ms: round(percentile(latencies, 99), 2),
    requests: latencies.length,
    failures,
  }
}

export interface Download {
  mibPerSecond: number
  /** CPU time the serving process(es) used for it, per GiB. */
  cpuMsPerGiB: number
}

/** Downloads `url` to nowhere: MiB/s over the whole download, and what it cost `pids` in CPU. */
export async function download(url: string, expected: number, pids: number[]): Promise<Download> {
  const MIB = 1024 * 1024
  const cpuBefore = pids.map(cpuMsOf)
  const started = performance.now()
  const res = await request(url)
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}`)
  let bytes = 0
  for await (const chunk of res.body) bytes += (chunk as Buffer).length
  if (bytes !== expected) throw new Error(`${url}: ${bytes} bytes, expected ${expected}`)
  const seconds = (performance.now() - started) / 1000
  const cpuMs = pids.reduce((sum, pid, i) => sum + cpuMsOf(pid) - cpuBefore[i]!, 0)
  return { mibPerSecond: round(bytes / MIB / seconds, 1), cpuMsPerGiB: round((cpuMs * 1024 * MIB) / bytes, 0) }
}

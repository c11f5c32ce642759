// What every benchmark scenario shares: clean-up of everything it starts, trustpull as a real
// separate process (`node src/cli/main.ts serve --config F`), the machine and tool versions, and
// the result files (bench/results/<scenario>.json and .md).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem, type as osType } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { COSIGN_BIN } from '../../test/helpers/cosign.ts'
import { freePort, waitFor, type Teardown } from '../../test/helpers/proc.ts'
import { DOCKER_REGISTRY_BIN } from '../../test/helpers/registry.ts'
import { REDIS_BIN } from '../../test/helpers/redis.ts'

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const RESULTS_DIR = join(REPO_ROOT, 'bench/results')

/** `--quick`: fewer rounds and shorter runs, to prove a scenario works. */
export const QUICK = process.argv.includes('--quick')

/** Everything a scenario started, stopped in reverse order at the end (or on Ctrl-C). */
export class Scope implements Teardown {
  readonly #cleanups: (() => unknown)[] = []

  teardown(fn: () => unknown): void {
    this.#cleanups.push(fn)
  }

  async close(): Promise<void> {
    for (const fn of this.#cleanups.splice(0).reverse()) {
      try {
        await fn()
      } catch (err) {
        console.error(`clean-up failed: ${(err as Error).message}`)
      }
    }
  }

  async tempDir(prefix = 'trustpull-bench-'): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix))
    this.teardown(() => rm(dir, { recursive: true, force: true, maxRetries: 3 }))
    return dir
  }
}

/** Runs a scenario body with a scope that is always closed, and exits non-zero on failure. */
export async function scenario(body: (scope: Scope) => Promise<void>): Promise<void> {
  const scope = new Scope()
  const interrupted = () => void scope.close().finally(() => process.exit(130))
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)
  try {
    await body(scope)
  } catch (err) {
    console.error(err)
    process.exitCode = 1
  } finally {
    await scope.close()
  }
}

// setpriv makes the kernel kill a child when the bench dies, even by SIGKILL.
const SETPRIV = '/usr/bin/setpriv'

export interface BenchProcess {
  readonly pid: number
  readonly child: ChildProcess
  /** Where stdout went (trustpull: its JSON log lines). */
  readonly logFile: string
  stop(): Promise<void>
}

/** Starts a long-running process with stdout and stderr in files (no 64 KiB cap: audit lines are counted). */
export function startProcess(scope: Scope, dir: string, name: string, command: string, args: string[]): BenchProcess {
  const logFile = join(dir, `${name}.log`)
  const out = openSync(logFile, 'a')
  const err = openSync(join(dir, `${name}.err`), 'a')
  const [cmd, argv] = existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args]
  const child = spawn(cmd, argv, { stdio: ['ignore', out, err], cwd: REPO_ROOT })
  closeSync(out)
  closeSync(err)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let stopping: Promise<void> | undefined
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(killer)
    })()
    return stopping
  }
  scope.teardown(stop)
  return { pid: child.pid ?? -1, child, logFile, stop }
}

export interface Trustpull extends BenchProcess {
  /** http://127.0.0.1:PORT */
  url: string
  /** Every JSON log line written so far. */
  logs(): Record<string, unknown>[]
  /** Audit lines (one per verdict served). */
  audits(): { digest: string; result: string; cached: boolean; durationMs: number }[]
  /** A sample of a Prometheus metric from /metrics (summed over matching label sets). */
  metric(name: string, labels?: Record<string, string>): Promise<number>
}

/**
 * trustpull as its users run it: `node src/cli/main.ts serve --config F`, ready once /healthz
 * answers. `nodeFlags` go before the script (for trying V8 settings; the scenarios pass none).
 */
export async function startTrustpull(scope: Scope, name: string, config: Record<string, unknown>, nodeFlags: string[] = []): Promise<Trustpull> {
  const dir = await scope.tempDir(`trustpull-bench-${name}-`)
  const port = await freePort()
  const configFile = join(dir, 'config.yaml')
  // JSON is YAML: the config file is written as JSON. The content store is on by default: a
  // scenario that does not configure it measures the pass-through, as its figures always did.
  writeFileSync(configFile, JSON.stringify({ listen: `127.0.0.1:${port}`, storage: { enabled: false }, ...config }, null, 2))
  const proc = startProcess(scope, dir, name, process.execPath, [...nodeFlags, 'src/cli/main.ts', 'serve', '--config', configFile])
  const url = `http://127.0.0.1:${port}`
  try {
    await waitFor(
      async () => {
        if (proc.child.exitCode !== null) throw new Error('exited')
        const res = await request(`${url}/healthz`)
        await res.body.dump()
        return res.statusCode === 200
      },
      { timeoutMs: 30_000, what: `trustpull ${name} to answer /healthz` },
    )
  } catch (err) {
    const stderr = readFileSync(join(dir, `${name}.err`), 'utf8')
    throw new Error(`${(err as Error).message}\n${stderr.slice(-2000)}\n${readFileSync(proc.logFile, 'utf8').slice(-2000)}`, { cause: err })
  }
  const logs = () =>
    readFileSync(proc.logFile, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
  return {
    ...proc,
    url,
    logs,
    audits: () => logs().filter((l) => l.audit === 'verdict') as ReturnType<Trustpull['audits']>,
    async metric(metric, labels = {}) {
      const res = await request(`${url}/metrics`)
      let sum = 0
      for (const line of (await res.body.text()).split('\n')) {
        const m = /^([a-zA-Z_:]+)(?:\{([^}]*)\})? (\S+)$/.exec(line)
        if (!m || m[1] !== metric) continue
        const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
        if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3])
      }
      return sum
    },
  }
}

/** Resident set size of a process now and at its peak (VmHWM), in bytes. */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}

// --- statistics ------------------------------------------------------------------------------------

/** The p-th percentile (0–100) by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
}

export function median(values: number[]): number {
  return percentile(values, 50)
}

export function round(n: number, digits = 2): number {
  return Number.isFinite(n) ? Number(n.toFixed(digits)) : n
}

// --- environment and results -----------------------------------------------------------------------

function firstLine(command: string, args: string[]): string {
  try {
    const out = execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 })
    return (
      out
        .split('\n')
        .find((l) => l.trim())
        ?.trim() ?? ''
    )
  } catch (err) {
    // nginx -v prints on stderr; others may too
    const e = err as { stderr?: string; stdout?: string }
    return (e.stderr || e.stdout || 'unavailable').split('\n')[0]!.trim()
  }
}

function stderrLine(command: string, args: string[]): string {
  const r = execFileSync('/bin/sh', ['-c', `${command} ${args.join(' ')} 2>&1`], { encoding: 'utf8', timeout: 10_000 })
  return (
    r
      .split('\n')
      .find((l) => l.trim())
      ?.trim() ?? ''
  )
}

function cosignVersion(): string {
  try {
    const out = execFileSync(COSIGN_BIN, ['version', '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 })
    return (JSON.parse(out) as { gitVersion?: string }).gitVersion ?? 'unknown'
  } catch {
    return 'unavailable'
  }
}

function packageVersion(name: string): string {
  return (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
}

export interface Environment {
  date: string
  command: string
  gitCommit: string
  machine: { nproc: number; cpuModel: string; ramGiB: number; os: string; loadAverageAtStart: number[] }
  versions: Record<string, string>
}

/** The machine, the tools and the command, recorded beside every result. */
export function environment(tools: ('docker-registry' | 'autocannon' | 'ab' | 'nginx' | 'redis' | 'cosign')[]): Environment {
  const versions: Record<string, string> = { node: process.version, trustpull: packageVersion('../') }
  for (const tool of tools) {
    if (tool === 'docker-registry') versions[tool] = firstLine(DOCKER_REGISTRY_BIN, ['--version'])
    if (tool === 'autocannon') versions[tool] = packageVersion('autocannon')
    if (tool === 'ab') versions[tool] = stderrLine('ab', ['-V'])
    if (tool === 'nginx') versions[tool] = stderrLine('nginx', ['-v'])
    if (tool === 'redis') versions[tool] = firstLine(REDIS_BIN, ['--version'])
    if (tool === 'cosign') versions[tool] = cosignVersion()
  }
  versions.undici = packageVersion('undici')
  let gitCommit = 'unknown'
  try {
    gitCommit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim()
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    command: `node ${process.argv
      .slice(1)
      .map((a) => a.replace(REPO_ROOT, ''))
      .join(' ')}`,
    gitCommit,
    machine: {
      nproc: availableParallelism(),
      cpuModel: cpus()[0]?.model ?? 'unknown',
      ramGiB: round(totalmem() / 1024 ** 3, 1),
      os: `${osType()} ${release()}`,
      loadAverageAtStart: loadavg().map((l) => round(l, 2)),
    },
    versions,
  }
}

export interface Headline {
  /** What is compared, e.g. "req/s, trustpull ÷ registry". */
  metric: string
  value: number
  /** The issue's target, e.g. "≥ 10×". */
  target?: string
  met?: boolean
}

export interface ScenarioResult {
  scenario: string
  title: string
  quick: boolean
  environment: Environment
  /** The figures that matter (ratios), one line each in the summary. */
  headlines: Headline[]
  /** Everything measured, for whoever wants to look closer. */
  details: unknown
  /** Markdown tables for the .md file. */
  tables: { caption?: string; header: string[]; rows: (string | number)[][] }[]
  notes: string[]
}

function markdownTable(t: ScenarioResult['tables'][number]): string {
  const lines = [`| ${t.header.join(' | ')} |`, `|${t.header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`]
  for (const row of t.rows) lines.push(`| ${row.map((c) => (typeof c === 'number' ? c.toLocaleString('en-US', { maximumFractionDigits: 2 }) : c)).join(' | ')} |`)
  return `${t.caption ? `${t.caption}\n\n` : ''}${lines.join('\n')}`
}

export function headlineRows(headlines: Headline[]): (string | number)[][] {
  return headlines.map((h) => [h.metric, round(h.value, 2), h.target ?? '', h.met === undefined ? '' : h.met ? 'yes' : 'no'])
}

/** Writes bench/results/<scenario>.json and .md, and prints the headlines. */
export function writeResult(result: ScenarioResult): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  result.environment.machine.loadAverageAtStart = result.environment.machine.loadAverageAtStart ?? loadavg()
  const env = result.environment
  const md = [
    `# ${result.title}`,
    '',
    `\`${env.command}\` on ${env.date.slice(0, 10)} (${env.date}), commit ${env.gitCommit}${result.quick ? ' — **quick mode**: short runs, figures are indicative only' : ''}.`,
    '',
    `Machine: ${env.machine.cpuModel}, ${env.machine.nproc} cores, ${env.machine.ramGiB} GiB RAM, ${env.machine.os}; load average at start ${env.machine.loadAverageAtStart.join(' / ')}, at end ${loadavg()
      .map((l) => round(l, 2))
      .join(' / ')}.`,
    '',
    `Versions: ${Object.entries(env.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}.`,
    '',
    markdownTable({ header: ['figure', 'value', 'target', 'met'], rows: headlineRows(result.headlines) }),
    '',
    ...result.tables.flatMap((t) => [markdownTable(t), '']),
    ...(result.notes.length ? ['Notes:', '', ...result.notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n')
  writeFileSync(
    join(RESULTS_DIR, `${result.scenario}.json`),
    `${JSON.stringify({ ...result, environment: { ...env, loadAverageAtEnd: loadavg().map((l) => round(l, 2)) } }, null, 2)}\n`,
  )
  writeFileSync(join(RESULTS_DIR, `${result.scenario}.md`), md)
  console.log(`\n${result.title}`)
  for (const h of result.headlines) console.log(`  ${h.metric}: ${round(h.value, 2)}${h.target ? ` (target ${h.target}: ${h.met ? 'met' : 'NOT met'})` : ''}`)
  console.log(`  → bench/results/${result.scenario}.json, .md`)
}

export function say(message: string): void {
  console.log(`[${new Date().toISOString().slice(11, 19)}] ${message}`)
}

/** CPU time (user + system) a process has used so far, in milliseconds (10 ms resolution). */
export function cpuMsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    .replace(/^.*\) /, '')
    .split(' ')
  // After "(comm) ": state is field 3, so utime (14) and stime (15) are at indexes 11 and 12.
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

/** The pid of the docker-registry started by test/helpers/registry.ts (found by its config file). */
export function registryPid(storageDir: string): number {
  const config = join(storageDir, '..', 'config.yml')
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (cmdline.some((a) => a.endsWith('docker-registry')) && cmdline.includes(config)) return Number(entry)
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no docker-registry process serving ${config}`)
}

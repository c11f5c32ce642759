// `npm run bench`: every scenario in turn, each in a process of its own (which starts its own
// registry, trustpull processes, nginx, Redis, and stops them), then one summary table of the
// headline figures, also written to bench/results/summary.md and summary.json.
//   node bench/run.ts [--quick] [scenario ...]      e.g. node bench/run.ts --quick herd head-tag
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { environment, headlineRows, QUICK, REPO_ROOT, RESULTS_DIR, round, type ScenarioResult } from './lib/harness.ts'

interface Entry {
  name: string
  script: string
  args: string[]
  /** Writes a ScenarioResult (the verification engine's own benchmark writes another shape). */
  headlines: boolean
}

const SCENARIOS: Entry[] = [
  { name: 'warm-manifest', script: 'bench/warm-manifest.ts', args: [], headlines: true },
  { name: 'head-tag', script: 'bench/head-tag.ts', args: [], headlines: true },
  { name: 'cold-verify', script: 'bench/cold-verify.ts', args: [], headlines: true },
  { name: 'herd', script: 'bench/herd.ts', args: [], headlines: true },
  { name: 'blob-stream', script: 'bench/blob-stream.ts', args: [], headlines: true },
  { name: 'shared-cache', script: 'bench/shared-cache.ts', args: [], headlines: true },
  // The verification engine's own benchmark (its owner's command); --quick leaves its committed results alone.
  { name: 'verify', script: 'bench/verify.ts', args: ['--seconds', '3'], headlines: false },
]

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('--'))
const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.name === w))
if (unknown.length) {
  console.error(`unknown scenario(s): ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`)
  process.exit(2)
}
const selected = SCENARIOS.filter((s) => (wanted.length ? wanted.includes(s.name) : s.headlines || !QUICK))

function runScenario(entry: Entry): Promise<{ code: number | null; seconds: number }> {
  const started = performance.now()
  const args = [entry.script, ...entry.args, ...(QUICK && entry.headlines ? ['--quick'] : [])]
  console.log(`\n=== ${entry.name}: node ${args.join(' ')}`)
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: 'inherit' })
    child.once('exit', (code) => resolve({ code, seconds: round((performance.now() - started) / 1000, 1) }))
  })
}

const env = environment([])
const outcomes: { entry: Entry; code: number | null; seconds: number; result?: ScenarioResult }[] = []
for (const entry of selected) {
  const resultFile = join(RESULTS_DIR, `${entry.name}.json`)
  const startedAt = Date.now()
  const { code, seconds } = await runScenario(entry)
  // Only a result written by this run counts.
  const fresh = existsSync(resultFile) && statSync(resultFile).mtimeMs >= startedAt
  const result = fresh && entry.headlines ? (JSON.parse(readFileSync(resultFile, 'utf8')) as ScenarioResult) : undefined
  outcomes.push({ entry, code, seconds, result })
}

const rows: (string | number)[][] = []
for (const { entry, code, seconds, result } of outcomes) {
  if (code !== 0) {
    rows.push([entry.name, `FAILED (exit ${code})`, '', '', `${seconds} s`])
    continue
  }
  if (!result) {
    rows.push([entry.name, `see bench/results/${entry.name}.md`, '', '', `${seconds} s`])
    continue
  }
  for (const [i, row] of headlineRows(result.headlines).entries()) rows.push([i === 0 ? entry.name : '', ...row.slice(0, 4).map(String), i === 0 ? `${seconds} s` : ''].slice(0, 6))
}

const header = ['scenario', 'figure', 'value', 'target', 'met', 'took']
const table = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
const md = [
  `# trustpull benchmarks${QUICK ? ' (quick mode: indicative only)' : ''}`,
  '',
  `\`node bench/run.ts${process.argv.slice(2).length ? ` ${process.argv.slice(2).join(' ')}` : ''}\` on ${env.date.slice(0, 10)}, commit ${env.gitCommit}: ${env.machine.cpuModel}, ${env.machine.nproc} cores, ${env.machine.ramGiB} GiB RAM, Node ${process.version}; load average at start ${env.machine.loadAverageAtStart.join(' / ')}.`,
  'Every scenario runs trustpull as a separate process beside its baseline, on loopback, against a real docker-registry; details, versions and exact commands in bench/results/<scenario>.md.',
  '',
  table,
  '',
].join('\n')
writeFileSync(join(RESULTS_DIR, 'summary.md'), md)
writeFileSync(
  join(RESULTS_DIR, 'summary.json'),
  `${JSON.stringify({ environment: env, scenarios: outcomes.map((o) => ({ name: o.entry.name, exitCode: o.code, seconds: o.seconds, headlines: o.result?.headlines })) }, null, 2)}\n`,
)
console.log(`\n${md}`)
console.log('→ bench/results/summary.md, summary.json')
process.exitCode = outcomes.some((o) => o.code !== 0) ? 1 : 0

// The Dockerfile cannot be built here (no Docker engine), so what it relies on is checked instead:
// its shape (multi-stage, production dependencies only, non-root, HEALTHCHECK), the build
// context .dockerignore leaves, the build script's output running with production dependencies
// alone, and the HEALTHCHECK command against a real trustpull.
import t from 'tap'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import picomatch from 'picomatch'
import { run } from '../helpers/proc.ts'
import { startProxy } from '../helpers/trustpull.ts'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>
  scripts: Record<string, string>
  dependencies: Record<string, string>
}

interface Instruction {
  op: string
  args: string
}
interface Stage {
  from: string
  name?: string
  body: Instruction[]
}

/** Dockerfile instructions (continuations joined, comments dropped), ARGs before FROM resolved, by stage. */
function parseDockerfile(text: string): Stage[] {
  const joined = text.replace(/\\\n/g, ' ')
  const instructions = joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [, op, args] = /^(\w+)\s+(.*)$/.exec(l)!
      return { op: op!.toUpperCase(), args: args!.replace(/\s+/g, ' ') }
    })
  const globalArgs = new Map<string, string>()
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.op === 'ARG' && stages.length === 0) {
      const [name, value] = ins.args.split('=')
      globalArgs.set(name!, value ?? '')
    } else if (ins.op === 'FROM') {
      const [image, as, name] = ins.args.replace(/\$\{(\w+)\}/g, (_, v: string) => globalArgs.get(v) ?? '').split(' ')
      stages.push({ from: image!, ...(as?.toUpperCase() === 'AS' ? { name } : {}), body: [] })
    } else {
      stages.at(-1)?.body.push(ins)
    }
  }
  return stages
}

/** Docker's .dockerignore rule: the last matching pattern wins; a pattern matching a directory covers what is inside. */
function dockerIgnores(patterns: string[], path: string): boolean {
  let ignored = false
  const parts = path.split('/')
  for (const raw of patterns) {
    const negate = raw.startsWith('!')
    const pattern = (negate ? raw.slice(1) : raw).replace(/\/+$/, '')
    const isMatch = picomatch(pattern, { dot: true })
    const hit = parts.some((_, i) => isMatch(parts.slice(0, i + 1).join('/')))
    if (hit) ignored = !negate
  }
  return ignored
}

const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
const stages = parseDockerfile(dockerfile)
const runtime = stages.at(-1)!
const stage = (name: string) => stages.find((s) => s.name === name)!
const ops = (s: Stage, op: string) => s.body.filter((i) => i.op === op).map((i) => i.args)
const execForm = (args: string) => JSON.parse(args.slice(args.indexOf('['))) as string[]

t.test('multi-stage: built on node:24-slim, run on distroless Node 24 as non-root', async (t) => {
  t.same(
    stages.map((s) => [s.name, s.from]),
    [
      ['build', 'node:24-slim'],
      ['prod-deps', 'node:24-slim'],
      [undefined, 'gcr.io/distroless/nodejs24-debian12:nonroot'],
    ],
  )
  t.match(ops(stage('build'), 'RUN').join('\n'), /npm ci --ignore-scripts/)
  t.match(ops(stage('build'), 'RUN').join('\n'), /npm run build/)
  t.match(ops(stage('prod-deps'), 'RUN').join('\n'), /npm ci --omit=dev/, 'production dependencies only')

  const copies = ops(runtime, 'COPY')
  t.ok(
    copies.some((c) => /--from=prod-deps \/app\/node_modules/.test(c)),
    'node_modules from the production-only stage',
  )
  t.notOk(
    copies.some((c) => /--from=build \S*node_modules/.test(c)),
    'never the build stage (dev dependencies)',
  )
  t.ok(
    copies.some((c) => /--from=build \/src\/dist/.test(c)),
    'the compiled dist/',
  )
  t.ok(
    copies.some((c) => /package\.json/.test(c)),
    'package.json ("type": "module" for dist/)',
  )

  const user = ops(runtime, 'USER')
  t.equal(user.length, 1)
  t.match(user[0], /^[1-9]\d*:[1-9]\d*$/, 'a numeric non-root uid:gid (runAsNonRoot can check it)')
  const env = ops(runtime, 'ENV').join(' ')
  t.match(env, /HOME=\/tmp/, 'caches go to /tmp: read-only root filesystem')
  t.match(env, /XDG_DATA_HOME=\/tmp/)

  const entrypoint = execForm(ops(runtime, 'ENTRYPOINT')[0]!)
  t.same(entrypoint, ['/nodejs/bin/node', `/app/${pkg.bin.trustpull}`], 'runs the package bin with the distroless node')
  t.same(execForm(ops(runtime, 'CMD')[0]!), ['serve', '--listen', '0.0.0.0:5000'])
  t.match(ops(runtime, 'EXPOSE')[0], /\b5000\b/)
})

t.test('.dockerignore sends only what the Dockerfile copies', async (t) => {
  const patterns = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
  const contextCopies = stages.flatMap((s) => ops(s, 'COPY')).filter((c) => !c.startsWith('--from'))
  const sources = contextCopies.flatMap((c) => c.split(' ').slice(0, -1))
  t.same(sources.sort(), ['package-lock.json', 'package-lock.json', 'package.json', 'package.json', 'src', 'tsconfig.build.json', 'tsconfig.json'])
  for (const source of new Set(sources)) {
    t.ok(statSync(join(ROOT, source)), `${source} exists`)
    t.notOk(dockerIgnores(patterns, source), `${source} is in the build context`)
  }
  for (const path of ['src/cli/main.ts', 'src/config/schema.ts']) t.notOk(dockerIgnores(patterns, path), `${path} is sent`)
  for (const path of [
    'node_modules/hono/package.json',
    '.git/config',
    'dist/cli/main.js',
    'test/deploy/kubernetes.test.ts',
    '.tools/bin/cosign',
    '.env',
    'tmp/scratch.txt',
    'src/x.test.ts',
  ]) {
    t.ok(dockerIgnores(patterns, path), `${path} is not sent`)
  }
})

t.test('npm run build emits dist/ that runs with production dependencies alone', async (t) => {
  t.match(pkg.scripts.build, /tsc -p tsconfig\.build\.json/)
  const buildConfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as { compilerOptions: { outDir: string } }
  t.equal(buildConfig.compilerOptions.outDir, 'dist', 'the Dockerfile copies dist/')

  // Inside node_modules, so the emitted imports resolve as they do in /app; the repository's dist/ is left alone.
  mkdirSync(join(ROOT, 'node_modules/.cache'), { recursive: true })
  const out = mkdtempSync(join(ROOT, 'node_modules/.cache/trustpull-dist-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const tsc = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', out], { cwd: ROOT, timeoutMs: 120_000 })
  t.equal(tsc.code, 0, `tsc -p tsconfig.build.json succeeds${tsc.code === 0 ? '' : `:\n${tsc.stdout.slice(0, 2000)}`}`)
  writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module' }))

  // Every package the emitted code imports must be a production dependency.
  const files = (readdirSync(out, { recursive: true }) as string[]).filter((f) => f.endsWith('.js'))
  t.ok(files.includes(join('cli', 'main.js')), 'dist/cli/main.js, the package bin')
  const builtins = new Set(builtinModules)
  const imported = new Set<string>()
  for (const f of files) {
    const code = readFileSync(join(out, f), 'utf8')
    for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)['"]([^'"./][^'"]*)['"]/g)) {
      const spec = m[1]!
      if (spec.startsWith('node:') || builtins.has(spec)) continue
      imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
    }
  }
  const notProduction = [...imported].filter((p) => !(p in pkg.dependencies))
  t.same(notProduction, [], `imports (${[...imported].sort().join(', ')}) are all production dependencies`)

  const help = await run(process.execPath, [join(out, 'cli/main.js'), '--help'], { cwd: out, timeoutMs: 30_000 })
  t.equal(help.code, 0, relative(ROOT, join(out, 'cli/main.js')) + ' --help runs')
  t.match(help.stdout, /serve/)
})

t.test('the HEALTHCHECK command tells a live trustpull from a stopped one', async (t) => {
  const healthcheck = ops(runtime, 'HEALTHCHECK')
  t.equal(healthcheck.length, 1)
  const [node, ...args] = execForm(healthcheck[0]!)
  t.equal(node, '/nodejs/bin/node', 'distroless has no shell or curl: node itself')
  t.match(ops(runtime, 'ENV').join(' '), /TRUSTPULL_HEALTHCHECK_URL=http:\/\/127\.0\.0\.1:5000\/healthz/, 'the default URL is the CMD listen port')

  const proxy = await startProxy(t, { upstreams: [{ name: 'docker.io', url: 'http://127.0.0.1:9', default: true }] })
  const env = { PATH: process.env.PATH, TRUSTPULL_HEALTHCHECK_URL: `${proxy.url}/healthz` }
  const healthy = await run(process.execPath, args, { env, timeoutMs: 30_000 })
  t.equal(healthy.code, 0, 'healthy while it answers /healthz (unreachable upstreams do not matter)')
  const notFound = await run(process.execPath, args, { env: { ...env, TRUSTPULL_HEALTHCHECK_URL: `${proxy.url}/nope` }, timeoutMs: 30_000 })
  t.equal(notFound.code, 1, 'an error status is unhealthy')
  await proxy.running.close()
  const stopped = await run(process.execPath, args, { env, timeoutMs: 30_000 })
  t.equal(stopped.code, 1, 'unhealthy once it stopped')
})

t.test('OCI labels: source, version and revision come from build args', async (t) => {
  const args = ops(runtime, 'ARG').join('\n')
  for (const name of ['VERSION', 'REVISION', 'SOURCE']) t.match(args, new RegExp(`^${name}=`, 'm'), `ARG ${name} in the runtime stage (an ARG before FROM is not visible there)`)
  const labels = ops(runtime, 'LABEL').join('\n')
  t.match(labels, /org\.opencontainers\.image\.source="\$\{SOURCE\}"/)
  t.match(labels, /org\.opencontainers\.image\.version="\$\{VERSION\}"/)
  t.match(labels, /org\.opencontainers\.image\.revision="\$\{REVISION\}"/)
  t.match(labels, /org\.opencontainers\.image\.licenses="Apache-2.0"/, 'the licence LICENSE holds')
})

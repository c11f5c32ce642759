// The parts of trustpull copy that need no registry: endpoint and list grammar, auth files,
// destination addresses, hostile archives, layouts, progress output and exit codes.
import t from 'tap'
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises'
import { Writable } from 'node:stream'
import { join } from 'node:path'
import { parseConfig } from '../../src/config/load.ts'
import { extractArchive, openArchive } from '../../src/copy/archive.ts'
import { parseList } from '../../src/copy/batch.ts'
import type { CopyResult } from '../../src/copy/result.ts'
import { destinationRegistry, isLoopbackHost } from '../../src/copy/destination.ts'
import { authFiles, fileCredentials } from '../../src/copy/docker-config.ts'
import { parseEndpoint } from '../../src/copy/endpoint.ts'
import { LayoutReader } from '../../src/copy/layout.ts'
import { BarProgress, LineProgress } from '../../src/copy/progress.ts'
import { exitCode, renderTable } from '../../src/copy/report.ts'
import { emptyStats } from '../../src/copy/write.ts'
import { runOk, tempDir } from '../helpers/proc.ts'

const DIGEST = `sha256:${'ab'.repeat(32)}`

t.test('endpoints', async (t) => {
  t.same(parseEndpoint('ghcr.io/org/app:1.2'), { kind: 'registry', name: 'ghcr.io/org/app', tag: '1.2' })
  t.same(parseEndpoint(`localhost:5000/app@${DIGEST}`), { kind: 'registry', name: 'localhost:5000/app', digest: DIGEST })
  t.same(parseEndpoint('nginx'), { kind: 'registry', name: 'nginx' }, 'the default upstream, no tag (latest for a source)')
  t.same(parseEndpoint('oci:/tmp/layout'), { kind: 'oci', path: '/tmp/layout' })
  t.same(parseEndpoint('oci:relative/dir:1.0'), { kind: 'oci', path: 'relative/dir', tag: '1.0' })
  t.same(parseEndpoint('oci:/srv/x:8080/dir'), { kind: 'oci', path: '/srv/x:8080/dir' }, 'a colon inside the path is part of it')
  t.same(parseEndpoint(`oci-archive:/media/usb/app.tar@${DIGEST}`), { kind: 'oci-archive', path: '/media/usb/app.tar', digest: DIGEST })
  for (const bad of ['ghcr.io/Org/App', 'ghcr.io/org/app:bad tag', 'ghcr.io/org/app@sha256:123', 'oci:', 'oci-archive::1.0', 'ghcr.io/org/app:-x', '']) {
    t.throws(() => parseEndpoint(bad), { code: 'BAD_ENDPOINT' }, JSON.stringify(bad))
  }
})

t.test('lists', async (t) => {
  t.same(parseList('# images\n\nghcr.io/a:1   # first\n  ghcr.io/b:2 inside.example/b:2\r\n'), [
    { line: 3, source: 'ghcr.io/a:1' },
    { line: 4, source: 'ghcr.io/b:2', destination: 'inside.example/b:2' },
  ])
  t.throws(() => parseList('a b c'), { code: 'BAD_ENDPOINT', message: /line 1: expected "SRC" or "SRC DST", found 3 fields/ })
  t.same(parseList('  \n# only comments\n'), [])
})

t.test('auth files: docker config.json and containers auth.json', async (t) => {
  const dir = await tempDir(t)
  const env = { HOME: join(dir, 'home'), DOCKER_CONFIG: join(dir, 'docker'), XDG_RUNTIME_DIR: join(dir, 'run') }
  const withAuthFile = { ...env, REGISTRY_AUTH_FILE: join(dir, 'auth.json') }
  // containers-auth.json(5): $REGISTRY_AUTH_FILE alone when set; otherwise the runtime, config and docker files in order.
  t.same(authFiles({ env: withAuthFile }), [withAuthFile.REGISTRY_AUTH_FILE])
  t.same(authFiles({ env }), [join(dir, 'run/containers/auth.json'), join(dir, 'home/.config/containers/auth.json'), join(dir, 'docker/config.json')])
  t.same(authFiles({ env: { HOME: '/home/x' } }), ['/home/x/.config/containers/auth.json', '/home/x/.docker/config.json'])
  t.same(authFiles({ authFile: '/only/this.json', env }), ['/only/this.json'])

  await mkdir(env.DOCKER_CONFIG)
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  await writeFile(
    join(env.DOCKER_CONFIG, 'config.json'),
    JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
        'registry.example:5000': { auth: b64('alice:secret') },
        'http://other.example/v2/': { username: 'bob', password: 'pw' },
        'broken.example': { auth: b64('no-colon') },
      },
    }),
  )
  t.same(fileCredentials('registry.example:5000', { env }), { username: 'alice', password: 'secret' })
  t.same(fileCredentials('docker.io', { env }), { username: 'hubuser', password: 'hub:pass' }, 'Docker Hub aliases; a colon in the password is kept')
  t.same(fileCredentials('other.example', { env }), { username: 'bob', password: 'pw' }, 'URL-style keys')
  t.equal(fileCredentials('registry.example', { env }), undefined, 'the port is part of the name')
  t.throws(() => fileCredentials('broken.example', { env }), { code: 'BAD_ENDPOINT', message: /not base64 of user:password/ })

  // $REGISTRY_AUTH_FILE replaces the others.
  await writeFile(withAuthFile.REGISTRY_AUTH_FILE, JSON.stringify({ auths: { 'registry.example:5000': { auth: b64('podman:first') } } }))
  t.same(fileCredentials('registry.example:5000', { env: withAuthFile }), { username: 'podman', password: 'first' })
  t.equal(fileCredentials('other.example', { env: withAuthFile }), undefined, 'docker config.json is not read beside it')
  t.throws(() => fileCredentials('x.example', { authFile: join(dir, 'missing.json'), env }), { code: 'BAD_ENDPOINT', message: /cannot read auth file .*missing\.json: ENOENT/ })
  await writeFile(join(dir, 'bad.json'), '{not json')
  t.throws(() => fileCredentials('x.example', { authFile: join(dir, 'bad.json'), env }), { message: /is not JSON/ })
})

t.test('destination registries: configured upstreams first, HTTPS unless loopback', async (t) => {
  const config = parseConfig({
    upstreams: [
      { name: 'inside.example', url: 'http://10.0.0.5:5000', auth: { username: 'u', password: 'p' } },
      { name: 'docker.io', url: 'https://registry-1.docker.io', default: true },
    ],
  })
  t.same(destinationRegistry('inside.example', config), {
    name: 'inside.example',
    url: 'http://10.0.0.5:5000',
    credentials: { username: 'u', password: 'p' },
    tls: { verify: true },
  })
  t.same(destinationRegistry('registry.corp.example', config, { env: { HOME: '/nonexistent' } }).url, 'https://registry.corp.example')
  t.same(destinationRegistry('127.0.0.1:5001', config, { env: { HOME: '/nonexistent' } }).url, 'http://127.0.0.1:5001')
  t.same(destinationRegistry('localhost:5001', config, { env: { HOME: '/nonexistent' } }).url, 'http://localhost:5001')
  t.same(destinationRegistry('index.docker.io', config, { env: { HOME: '/nonexistent' } }).url, 'https://registry-1.docker.io', 'a Docker Hub alias finds the configured upstream')
  t.throws(() => destinationRegistry('library', config), { code: 'BAD_ENDPOINT', message: /neither a configured upstream nor a registry host name/ })
  t.ok(isLoopbackHost('[::1]:5000'))
  t.notOk(isLoopbackHost('127.0.0.1.example.com'))
  t.notOk(isLoopbackHost('10.0.0.1:5000'))
})

t.test('a hostile archive: only the layout itself is extracted', async (t) => {
  const dir = await tempDir(t)
  const src = join(dir, 'src')
  await mkdir(join(src, 'blobs/sha256'), { recursive: true })
  await writeFile(join(src, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
  await writeFile(join(src, 'index.json'), '{"schemaVersion":2,"manifests":[]}')
  await writeFile(join(src, 'evil'), 'pwned')
  await writeFile(join(src, 'blobs/sha256/not-a-digest'), 'x')
  await symlink('/etc/passwd', join(src, 'blobs/sha256', 'cd'.repeat(32)))
  const file = join(dir, 'hostile.tar')
  // GNU tar keeps `..` and absolute member names with -P; --transform renames members on the way in.
  await runOk('tar', ['-cf', file, '-C', src, '-P', '--transform', 's,^evil$,../../escaped,', 'oci-layout', 'index.json', 'blobs', 'evil'])
  await runOk('tar', ['-rf', file, '-C', src, '-P', '--transform', 's,^evil$,/tmp/trustpull-absolute-evil,', 'evil'])
  const out = await extractArchive(file)
  t.teardown(() => runOk('rm', ['-rf', out]))
  t.same((await readdir(out)).sort(), ['blobs', 'index.json', 'oci-layout'])
  t.same(await readdir(join(out, 'blobs/sha256')), [], 'no symbolic link, no file that is not named by a digest')
  t.same((await readdir(dir)).sort(), ['hostile.tar', 'src'], 'nothing escaped next to the archive')
  await t.rejects(runOk('test', ['-e', '/tmp/trustpull-absolute-evil']))

  await writeFile(join(dir, 'not.tar'), 'this is not a tar archive at all, just some text that is long enough to be read as a header block'.repeat(10))
  await t.rejects(extractArchive(join(dir, 'not.tar')), { code: 'LAYOUT_INVALID' })
  await t.rejects(extractArchive(join(dir, 'missing.tar')), { code: 'NOT_FOUND' })
})

t.test('layouts: what index.json must hold, and which image a bare oci:DIR means', async (t) => {
  const dir = await tempDir(t)
  await t.rejects(LayoutReader.open(dir, { manifestBytes: 1024 }), { code: 'LAYOUT_INVALID', message: /no oci-layout file/ })
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}')
  await t.rejects(LayoutReader.open(dir, { manifestBytes: 1024 }), { code: 'LAYOUT_INVALID', message: /unsupported imageLayoutVersion "2.0.0"/ })
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}')
  await writeFile(join(dir, 'index.json'), JSON.stringify({ manifests: [{ mediaType: 'x', digest: '../../etc/passwd', size: 1 }] }))
  await t.rejects(LayoutReader.open(dir, { manifestBytes: 1024 }), { code: 'LAYOUT_INVALID', message: /manifests\[0\] is not a descriptor/ })
  const entry = (tag: string | undefined, digest: string) => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest,
    size: 10,
    ...(tag ? { annotations: { 'org.opencontainers.image.ref.name': tag } } : {}),
  })
  const other = `sha256:${'cd'.repeat(32)}`
  await writeFile(join(dir, 'index.json'), JSON.stringify({ manifests: [entry('1.0', DIGEST), entry(`sha256-${DIGEST.slice(7)}.sig`, other)] }))
  t.equal((await LayoutReader.open(dir, { manifestBytes: 1024 })).defaultReference(), '1.0', 'signature tags do not count')
  await writeFile(join(dir, 'index.json'), JSON.stringify({ manifests: [entry('1.0', DIGEST), entry('2.0', other)] }))
  const reader = await LayoutReader.open(dir, { manifestBytes: 1024 })
  t.throws(() => reader.defaultReference(), { code: 'BAD_ENDPOINT', message: /holds 2 images; name one by tag \(1\.0, 2\.0\)/ })
  t.equal(await reader.getManifest('', '3.0'), undefined)
  t.equal(await reader.getManifest('', '1.0'), undefined, 'listed, but its blob is missing')
  await mkdir(join(dir, 'blobs/sha256'), { recursive: true })
  await writeFile(join(dir, 'blobs/sha256', DIGEST.slice(7)), '{"schemaVersion":2}')
  await t.rejects(reader.getManifest('', '1.0'), { message: /does not match its digest; the layout is corrupt or tampered with/ })
  await writeFile(join(dir, 'blobs/sha256', other.slice(7)), 'ten bytes!')
  await t.rejects(reader.getBlobBytes('', other, { maxBytes: 4 }), { message: /is 10 bytes, over the 4-byte limit/ })
  const archive = join(dir, 'missing.tar')
  await t.rejects(openArchive(archive, 1024), { code: 'NOT_FOUND' })
})

function result(status: CopyResult['status'], code?: string): CopyResult {
  return {
    source: 'a.example/x:1',
    destination: 'b.example/x:1',
    status,
    stats: emptyStats(),
    notes: [],
    warnings: [],
    durationMs: 1234,
    ...(code ? { error: { code, message: `${code} happened` } } : {}),
  }
}

t.test('exit codes and the summary table', async (t) => {
  t.equal(exitCode([result('copied'), result('copied')]), 0)
  t.equal(exitCode([result('copied'), result('refused', 'REFUSED'), result('failed', 'DESTINATION_ERROR')]), 1, 'a refusal is the headline')
  t.equal(exitCode([result('failed', 'NOT_FOUND')]), 1)
  t.equal(exitCode([result('copied'), result('failed', 'SOURCE_ERROR')]), 3)
  t.equal(exitCode([result('failed', 'UNVERIFIED')]), 3, 'could not verify (upstream trouble) is not a refusal')
  const table = renderTable([{ ...result('copied'), digest: DIGEST, warnings: ['warn mode'] }, result('refused', 'REFUSED')])
  t.match(table, /^SOURCE\s+DESTINATION\s+DIGEST\s+RESULT/)
  t.match(table, /copied \(warn\)/)
  t.match(table, /a\.example\/x:1: REFUSED REFUSED: REFUSED happened/)
  t.match(table, /1 copied, 1 refused, 0 failed; 0 blobs \(0 B\) transferred, 0 already present\n$/)
})

t.test('progress: plain lines, or bars redrawn in place on a terminal', async (t) => {
  let text = ''
  const sink = Object.assign(new Writable({ write: (chunk, _e, cb) => ((text += String(chunk)), cb()) }), { columns: 120 })
  const lines = new LineProgress(sink, 2)
  lines.begin(0, 'a.example/x:1', 'b.example/x:1')
  lines.phase(0, 'verifying', DIGEST)
  lines.end(0, { ...result('copied'), digest: DIGEST })
  t.match(text, `[1/2] a.example/x:1: verifying ${DIGEST}\n`)
  t.match(text, /\[1\/2\] a\.example\/x:1 → b\.example\/x:1: copied sha256:ab.*: blobs 0 copied 0 present \(0 B\)/)

  text = ''
  const bars = new BarProgress(sink, 1)
  bars.begin(0, 'a.example/x:1', 'b.example/x:1')
  bars.phase(0, 'copying')
  bars.total(0, 4 * 1024 * 1024)
  bars.advance(0, 1024 * 1024)
  bars.end(0, result('failed', 'SOURCE_ERROR'))
  bars.close()
  t.ok(text.includes('\x1b[2K'), 'lines are cleared before they are drawn again')
  t.match(text, /a\.example\/x:1 → b\.example\/x:1: FAILED SOURCE_ERROR SOURCE_ERROR happened/)
  const live = new BarProgress(sink, 1)
  live.begin(0, 'a.example/x:1', 'b.example/x:1')
  live.phase(0, 'copying')
  live.total(0, 4 * 1024 * 1024)
  live.advance(0, 1024 * 1024)
  text = ''
  live.close()
  t.match(text, /\[######------------------\]\s+25% 1\.0 MiB\/4\.0 MiB/)
})

// Trust roots: the embedded public-good root (no network), trusted_root.json files, a TUF mirror
// with a local cache (a real TUF repository, signed here, served over loopback HTTP), and the
// checks that refuse a malformed root as a whole.
import { createHash, generateKeyPairSync, sign, type KeyObject } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { TrustRootError } from '../../src/verify/errors.ts'
import { loadTrustRootFile, loadTrustRoots, loadTufTrustRoot, PUBLIC_GOOD, publicGoodTrustRoot, trustRootFromJSON } from '../../src/verify/trust-root.ts'
import { tempDir } from '../helpers/proc.ts'

const CASES = new URL('../fixtures/sigstore-conformance/bundle-verify/', import.meta.url).pathname
const STAGING_ROOT = join(CASES, 'rekor2-happy-path', 'trusted_root.json')

async function rootDocument(): Promise<
  Record<string, unknown> & { tlogs: { publicKey: { validFor: Record<string, string> } }[]; certificateAuthorities: { validFor?: Record<string, string> }[] }
> {
  return JSON.parse(await readFile(STAGING_ROOT, 'utf8'))
}

t.test('public-good: from the seed inside @sigstore/tuf, with no network and no files', async (t) => {
  const root = publicGoodTrustRoot()
  t.equal(root.name, PUBLIC_GOOD)
  t.equal(root.source, 'embedded')
  t.match(root.version, /^sha256:[0-9a-f]{64}$/)
  t.ok(root.material.certificateAuthorities.length >= 1, 'Fulcio CAs')
  t.ok(
    root.material.tlogs.some((l) => l.baseURL === 'https://rekor.sigstore.dev'),
    'Rekor',
  )
  t.ok(root.material.ctlogs.length >= 1, 'CT logs')
  t.ok(root.material.timestampAuthorities.length >= 1, 'the TSA')
  t.equal(publicGoodTrustRoot(), root, 'loaded once')
})

t.test('a trusted_root.json file; version is a hash of the content, not of its formatting', async (t) => {
  const dir = await tempDir(t)
  const document = await rootDocument()
  const compact = join(dir, 'compact.json')
  const pretty = join(dir, 'pretty.json')
  await writeFile(compact, JSON.stringify(document))
  await writeFile(pretty, JSON.stringify(document, null, 4))
  const a = await loadTrustRootFile('corp', compact)
  const b = await loadTrustRootFile('corp', pretty)
  t.equal(a.source, `file:${compact}`)
  t.equal(a.version, b.version)
  t.equal(a.material.tlogs.length, 2)

  const changed = structuredClone(document)
  changed.tlogs[0]!.publicKey.validFor.end = '2030-01-01T00:00:00Z'
  await writeFile(compact, JSON.stringify(changed))
  t.not((await loadTrustRootFile('corp', compact)).version, a.version, 'any change of content changes the version')
})

t.test('malformed roots are refused as a whole, naming the problem', async (t) => {
  const dir = await tempDir(t)
  const refused = async (name: string, mutate: (doc: Awaited<ReturnType<typeof rootDocument>>) => unknown, pattern: RegExp) => {
    const doc = await rootDocument()
    const replaced = mutate(doc)
    const path = join(dir, `${name}.json`)
    await writeFile(path, typeof replaced === 'string' ? replaced : JSON.stringify(replaced ?? doc))
    await t.rejects(loadTrustRootFile(name, path), { name: 'TrustRootError', code: 'TRUST_ROOT_INVALID', message: pattern }, name)
  }
  await refused(
    'tlog-without-start',
    (d) => void delete d.tlogs[1]!.publicKey.validFor.start,
    /tlogs\[1\] \(https:\/\/log2025-alpha1\.rekor\.sigstage\.dev\) publicKey: validFor\.start is missing/,
  )
  await refused('tlog-without-validity', (d) => void ((d.tlogs[0]!.publicKey as Record<string, unknown>).validFor = undefined), /tlogs\[0\].*validFor\.start is missing/)
  await refused('ca-without-start', (d) => void delete d.certificateAuthorities[0]!.validFor, /certificateAuthorities\[0\].*validFor\.start is missing/)
  await refused('end-before-start', (d) => void (d.tlogs[0]!.publicKey.validFor.end = '2000-01-01T00:00:00Z'), /validFor\.end is before its start/)
  await refused('unknown-media-type', (d) => ({ ...d, mediaType: 'application/json' }), /unknown mediaType "application\/json"/)
  await refused('not-json', () => '{"mediaType": ', /is not JSON/)
  await t.rejects(loadTrustRootFile('missing', join(dir, 'nope.json')), { code: 'TRUST_ROOT_UNAVAILABLE', message: /cannot read/ })

  t.throws(
    () =>
      trustRootFromJSON(
        'x',
        {
          mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
          tlogs: [{ baseUrl: 'u', publicKey: { rawBytes: 'AAAA', validFor: { start: '2020-01-01T00:00:00Z' } }, logId: { keyId: 'AAAA' } }],
        },
        'inline',
      ),
    {
      code: 'TRUST_ROOT_INVALID',
      message: /unusable keys/,
    },
  )
})

t.test('loadTrustRoots: public-good always present; names are unique', async (t) => {
  const dir = await tempDir(t)
  await writeFile(join(dir, 'root.json'), await readFile(STAGING_ROOT))
  const roots = await loadTrustRoots([{ name: 'staging', file: join(dir, 'root.json') }])
  t.same([...roots.keys()], [PUBLIC_GOOD, 'staging'])
  await t.rejects(loadTrustRoots([{ name: PUBLIC_GOOD, file: join(dir, 'root.json') }]), { code: 'TRUST_ROOT_INVALID', message: /"public-good" is built in/ })
  await t.rejects(
    loadTrustRoots([
      { name: 'a', file: join(dir, 'root.json') },
      { name: 'a', file: join(dir, 'root.json') },
    ]),
    { message: /"a" is used twice/ },
  )
})

// ---------------------------------------------------------------------------------------------
// A TUF repository (spec 1.0), signed with one Ed25519 key for every role, served over HTTP.

/** OLPC canonical JSON, as TUF signs it (keys sorted, only `"` and `\` escaped). */
function canonical(value: unknown): string {
  if (typeof value === 'string') return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${canonical(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`
  }
  return JSON.stringify(value)
}

class TufRepo {
  readonly files = new Map<string, Buffer>()
  readonly #key: { publicKey: KeyObject; privateKey: KeyObject } = generateKeyPairSync('ed25519')
  readonly #keyId: string
  readonly #keyJson: object
  #version = 0

  constructor() {
    const raw = this.#key.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32)
    this.#keyJson = { keytype: 'ed25519', scheme: 'ed25519', keyval: { public: raw.toString('hex') } }
    this.#keyId = createHash('sha256').update(canonical(this.#keyJson)).digest('hex')
    const role = { keyids: [this.#keyId], threshold: 1 }
    this.#put('root.json', {
      _type: 'root',
      spec_version: '1.0.31',
      version: 1,
      expires: this.#expires(),
      consistent_snapshot: false,
      keys: { [this.#keyId]: this.#keyJson },
      roles: { root: role, targets: role, snapshot: role, timestamp: role },
    })
    this.files.set('1.root.json', this.files.get('root.json')!)
  }

  #expires(): string {
    return new Date(Date.now() + 30 * 24 * 3600 * 1000).toISOString().replace(/\.\d+Z$/, 'Z')
  }

  #put(name: string, signed: object): void {
    const sig = sign(null, Buffer.from(canonical(signed)), this.#key.privateKey).toString('hex')
    this.files.set(name, Buffer.from(JSON.stringify({ signed, signatures: [{ keyid: this.#keyId, sig }] })))
  }

  /** Publishes a new trusted_root.json: targets, snapshot and timestamp move to a new version. */
  publish(trustedRoot: Buffer): void {
    const version = ++this.#version
    this.files.set('targets/trusted_root.json', trustedRoot)
    const common = { spec_version: '1.0.31', version, expires: this.#expires() }
    this.#put('targets.json', {
      _type: 'targets',
      ...common,
      targets: { 'trusted_root.json': { length: trustedRoot.length, hashes: { sha256: createHash('sha256').update(trustedRoot).digest('hex') } } },
    })
    this.#put('snapshot.json', { _type: 'snapshot', ...common, meta: { 'targets.json': { version } } })
    this.#put('timestamp.json', { _type: 'timestamp', ...common, meta: { 'snapshot.json': { version } } })
  }
}

async function serve(t: { teardown(fn: () => unknown): void }, repo: TufRepo): Promise<{ url: string; server: Server; requests: string[] }> {
  const requests: string[] = []
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').replace(/^\/+/, '')
    requests.push(path)
    const body = repo.files.get(path)
    if (!body) return void res.writeHead(404).end()
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, requests }
}

t.test('a TUF mirror: verified metadata, a local cache, offline after the first fetch, updates', async (t) => {
  const dir = await tempDir(t)
  const repo = new TufRepo()
  const first = await readFile(STAGING_ROOT)
  repo.publish(first)
  const rootPath = join(dir, 'tuf-root.json')
  await writeFile(rootPath, repo.files.get('root.json')!)
  const { url, server, requests } = await serve(t, repo)
  const tuf = { mirror: url, root: rootPath, cachePath: join(dir, 'cache') }

  const loaded = await loadTufTrustRoot('corp-tuf', tuf)
  t.equal(loaded.source, `tuf:${url}`)
  t.equal(loaded.version, (await loadTrustRootFile('same', STAGING_ROOT)).version, 'the same root as the file it served')
  t.ok(requests.includes('timestamp.json') && requests.includes('targets/trusted_root.json'), 'fetched through TUF')

  // A new trusted_root.json is picked up on the next load.
  const changed = JSON.parse(first.toString()) as Awaited<ReturnType<typeof rootDocument>>
  changed.tlogs[0]!.publicKey.validFor.end = '2031-01-01T00:00:00Z'
  repo.publish(Buffer.from(JSON.stringify(changed)))
  const updated = await loadTufTrustRoot('corp-tuf', tuf)
  t.not(updated.version, loaded.version)

  // The mirror goes away: the cached, still-valid metadata keeps working.
  await new Promise<void>((resolve) => server.close(() => resolve()))
  server.closeAllConnections()
  const offline = await loadTufTrustRoot('corp-tuf', tuf, { timeoutMs: 1_000 })
  t.equal(offline.version, updated.version, 'served from the cache')

  // Without a cache and without the mirror, nothing can be trusted.
  await t.rejects(loadTufTrustRoot('corp-tuf', { ...tuf, cachePath: join(dir, 'empty-cache') }, { timeoutMs: 1_000 }), {
    name: 'TrustRootError',
    code: 'TRUST_ROOT_UNAVAILABLE',
  })
})

t.test('a TUF mirror whose metadata is not signed by the trusted root key is refused', async (t) => {
  const dir = await tempDir(t)
  const genuine = new TufRepo()
  const impostor = new TufRepo()
  impostor.publish(await readFile(STAGING_ROOT))
  const rootPath = join(dir, 'tuf-root.json')
  await writeFile(rootPath, genuine.files.get('root.json')!)
  const { url } = await serve(t, impostor)
  const err = await loadTufTrustRoot('corp-tuf', { mirror: url, root: rootPath, cachePath: join(dir, 'cache') }, { timeoutMs: 1_000 }).catch((e: unknown) => e)
  t.type(err, TrustRootError)
  t.equal((err as TrustRootError).code, 'TRUST_ROOT_UNAVAILABLE')
})

// Smoke test of the real-parts harness in test/helpers: every helper drives the real program.

import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { digestTag } from '../src/oci/digest.ts'
import { ctrImageNames, ctrPull, startContainerd, writeHostsToml } from './helpers/containerd.ts'
import { attest, generateKeyPair, signImage, verifyAttestation, verifyImage, writeSlsaPredicate } from './helpers/cosign.ts'
import { faultTimes, flipByte, startFaultProxy } from './helpers/fault-proxy.ts'
import { MediaTypes, deleteManifest, getManifest, listTags, measure, pushBlob, pushImage, pushIndex, randomStream, sha256 } from './helpers/images.ts'
import { freePort, run, startDaemon, tempDir } from './helpers/proc.ts'
import { redisPing, startRedis } from './helpers/redis.ts'
import { startRegistry } from './helpers/registry.ts'
import { skopeoCopy, skopeoInspectRaw } from './helpers/skopeo.ts'

t.test('proc: ports, commands, daemons that fail', async (t) => {
  const port = await freePort()
  t.ok(port > 0 && port < 65536, 'freePort gives a port')

  const ok = await run('sh', ['-c', 'echo out; echo err >&2; exit 3'])
  t.match(ok, { code: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false }, 'run returns code, stdout and stderr')

  const slow = await run('sleep', ['30'], { timeoutMs: 200 })
  t.equal(slow.timedOut, true, 'run kills a command that overruns its timeout')
  t.equal(slow.signal, 'SIGKILL', 'with SIGKILL')

  await t.rejects(
    startDaemon(t, 'sh', ['-c', 'echo "cannot bind: address in use" >&2; exit 1'], { ready: () => false }),
    /exited before it was ready[\s\S]*cannot bind: address in use/,
    'a daemon that dies before it is ready fails with its stderr',
  )
  await t.rejects(
    startDaemon(t, 'sleep', ['30'], { ready: () => false, readyTimeoutMs: 300 }),
    /timed out after 300 ms waiting for sleep to become ready/,
    'a daemon that never becomes ready fails and is killed',
  )
  const d = await startDaemon(t, 'sh', ['-c', 'echo listening >&2; exec sleep 30'], { readyLine: /listening/ })
  t.equal(d.running(), true, 'a daemon is ready once its log line appears')
  await d.stop()
  t.equal(d.running(), false, 'stop() ends it')
})

t.test('registry + images + skopeo: what is pushed reads back byte for byte', async (t) => {
  const registry = await startRegistry(t)
  const v2 = await request(`${registry.url}/v2/`)
  t.equal(v2.statusCode, 200, 'GET /v2/ answers 200')
  await v2.body.dump()

  const image = await pushImage(registry.url, 'smoke/app', 'v1', { layers: 2, layerSize: 4096, seed: 'app' })
  const again = await pushImage(registry.url, 'smoke/app', 'v1-again', { layers: 2, layerSize: 4096, seed: 'app' })
  t.equal(again.digest, image.digest, 'same seed, same digest')
  t.equal(image.layerDigests.length, 2, 'two layers')
  t.equal(image.digest, sha256(image.manifest), 'digest is the hash of the manifest bytes')

  const served = await getManifest(registry.url, 'smoke/app', 'v1')
  t.equal(served.status, 200, 'tag is served')
  t.equal(served.digest, image.digest, 'registry serves the same digest')
  t.same(Buffer.from(served.bytes), Buffer.from(image.manifest), 'registry serves the same bytes')

  const index = await pushIndex(registry.url, 'smoke/multi', 'v1', { seed: 'multi' })
  t.same(
    index.children.map((c) => `${c.platform.os}/${c.platform.architecture}`),
    ['linux/amd64', 'linux/arm64'],
    'index children for both platforms',
  )
  const docker = await pushImage(registry.url, 'smoke/docker', 'v1', { mediaType: 'docker' })
  t.equal(docker.mediaType, MediaTypes.dockerManifest, 'docker schema2 variant')

  const dir = await tempDir(t)
  const copiedIndex = await skopeoCopy(`${registry.host}/smoke/multi:v1`, join(dir, 'multi'), { all: true })
  t.equal(copiedIndex.code, 0, 'skopeo copy --all succeeds', { stderr: copiedIndex.stderr })
  t.equal(copiedIndex.digest, index.digest, 'skopeo copied the index we pushed')
  const copiedArm = await skopeoCopy(`${registry.host}/smoke/multi:v1`, join(dir, 'arm'), { arch: 'arm64' })
  t.equal(copiedArm.digest, index.children[1]!.digest, 'skopeo picked the arm64 child')
  const copiedDocker = await skopeoCopy(`${registry.host}/smoke/docker@${docker.digest}`, join(dir, 'docker'))
  t.equal(copiedDocker.digest, docker.digest, 'docker schema2 image copied unchanged')
  const layer = await readFile(join(dir, 'arm', 'blobs', 'sha256', index.children[1]!.layerDigests[0]!.slice(7)))
  t.equal(sha256(layer), index.children[1]!.layerDigests[0], 'layer bytes arrived intact')

  const raw = await skopeoInspectRaw(`${registry.host}/smoke/app:v1`)
  t.equal(raw.stdout, Buffer.from(image.manifest).toString('utf8'), 'skopeo inspect --raw gives the manifest bytes')
  const missing = await skopeoCopy(`${registry.host}/smoke/app:nope`, join(dir, 'nope'))
  t.not(missing.code, 0, 'copying a missing tag fails')
  t.equal(missing.digest, undefined, 'and reports no digest')

  // A streamed blob: generated twice (hash, then upload), never held whole.
  const big = randomStream('big', 32 * 1024 * 1024)
  const pushed = await pushBlob(registry.url, 'smoke/big', big)
  t.same(pushed, await measure(big), 'streamed blob digest and size')
  const head = await request(`${registry.url}/v2/smoke/big/blobs/${pushed.digest}`, { method: 'HEAD' })
  t.equal(head.headers['content-length'], String(32 * 1024 * 1024), 'registry has the whole blob')
  await head.body.dump()

  await registry.restart()
  t.equal((await getManifest(registry.url, 'smoke/app', 'v1')).status, 200, 'content survives a restart')
  await deleteManifest(registry.url, 'smoke/app', image.digest)
  t.equal((await getManifest(registry.url, 'smoke/app', image.digest)).status, 404, 'deleted manifest is gone')
})

t.test('cosign: key pair, signature, attestation, verify', async (t) => {
  const registry = await startRegistry(t)
  const dir = await tempDir(t)
  const keys = await generateKeyPair(dir)
  t.match(keys.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/, 'PEM public key')
  const other = await generateKeyPair(await tempDir(t))

  const image = await pushImage(registry.url, 'smoke/signed', 'v1')
  const ref = `${registry.host}/smoke/signed@${image.digest}`
  await signImage(ref, keys.privateKeyPath, { annotations: { team: 'platform' } })
  t.ok((await listTags(registry.url, 'smoke/signed')).includes(digestTag(image.digest, '.sig')), '.sig tag exists')

  const good = await verifyImage(ref, keys.publicKeyPath)
  t.equal(good.ok, true, 'cosign verify --key succeeds', { stderr: good.stderr })
  t.match(
    good.payloads,
    [{ critical: { image: { 'docker-manifest-digest': image.digest } }, optional: { team: 'platform' } }],
    'payload names the digest and carries the annotation',
  )
  const wrongKey = await verifyImage(ref, other.publicKeyPath)
  t.equal(wrongKey.ok, false, 'verify with another key fails')

  const predicate = await writeSlsaPredicate(dir, 'https://github.com/my-org/app/.github/workflows/release.yml@refs/heads/main')
  await attest(ref, keys.privateKeyPath, predicate, 'slsaprovenance')
  t.ok((await listTags(registry.url, 'smoke/signed')).includes(digestTag(image.digest, '.att')), '.att tag exists')
  t.equal((await verifyAttestation(ref, keys.publicKeyPath, 'slsaprovenance')).ok, true, 'cosign verify-attestation succeeds')

  await t.rejects(signImage(`${registry.host}/smoke/signed:nope`, keys.privateKeyPath), /cosign sign .* failed/, 'signing a missing image throws')
})

t.test('containerd pulls through a hosts.toml mirror and sends ns=docker.io', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'library/smoke', '1.0')
  const logger = await startFaultProxy(t, registry.url)
  const containerd = await startContainerd(t)
  const hosts = await tempDir(t)
  await writeHostsToml(hosts, 'docker.io', logger.url)

  const pull = await ctrPull(containerd.socket, 'docker.io/library/smoke:1.0', { hostsDir: hosts })
  t.equal(pull.code, 0, 'ctr pull through the mirror succeeds', { stderr: pull.stderr })
  t.ok((await ctrImageNames(containerd.socket)).includes('docker.io/library/smoke:1.0'), 'image is in containerd')
  const seen = logger.requests.map((r) => `${r.method} ${r.url}`)
  t.equal(seen[0], 'HEAD /v2/library/smoke/manifests/1.0?ns=docker.io', 'resolves the tag with HEAD, no GET /v2/')
  t.ok(seen.includes(`GET /v2/library/smoke/manifests/${image.digest}?ns=docker.io`), 'fetches the manifest by digest')
  for (const blob of [...image.layerDigests, image.configDigest]) {
    t.ok(seen.includes(`GET /v2/library/smoke/blobs/${blob}?ns=docker.io`), `fetches blob ${blob.slice(0, 19)}`)
  }

  logger.setFault(() => ({ kind: 'status', status: 403 }))
  const denied = await ctrPull(containerd.socket, 'docker.io/library/smoke:other', { hostsDir: hosts })
  t.not(denied.code, 0, 'a 403 from the mirror fails the pull (server is the mirror too)')
})

t.test('redis: stop and start on the same port', async (t) => {
  const redis = await startRedis(t)
  t.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+$/, 'loopback URL')
  t.equal(await redisPing(redis.port), true, 'answers PING')
  await redis.stop()
  t.equal(await redisPing(redis.port), false, 'stopped')
  await redis.start()
  t.equal(await redisPing(redis.port), true, 'back on the same port')
})

t.test('fault proxy injects faults and records what reached it', async (t) => {
  const registry = await startRegistry(t)
  const image = await pushImage(registry.url, 'smoke/faulty', 'v1', { layerSize: 64 * 1024 })
  const layer = image.layerDigests[0]!
  const blobPath = `/v2/smoke/faulty/blobs/${layer}`
  const proxy = await startFaultProxy(t, registry.url)
  const get = (path: string, opts: { method?: 'GET' | 'HEAD'; headersTimeout?: number } = {}) =>
    request(`${proxy.url}${path}`, { method: opts.method ?? 'GET', headersTimeout: opts.headersTimeout ?? 10_000 })

  const passed = await get(blobPath)
  t.equal(sha256(Buffer.from(await passed.body.arrayBuffer())), layer, 'pass-through is byte-exact')

  proxy.setFault((r) => (r.path === blobPath ? { kind: 'status', status: 503 } : undefined))
  const unavailable = await get(blobPath)
  t.equal(unavailable.statusCode, 503, 'injected 503')
  await unavailable.body.dump()

  proxy.setFault(faultTimes(1, { kind: 'status', status: 502 }, (r) => r.path === '/v2/'))
  const statuses: number[] = []
  for (let i = 0; i < 2; i++) {
    const res = await get('/v2/')
    statuses.push(res.statusCode)
    await res.body.dump()
  }
  t.same(statuses, [502, 200], 'faultTimes: fault once, then pass')

  proxy.setFault(() => ({ kind: 'reset', afterBytes: 1000 }))
  const reset = await get(blobPath)
  t.equal(reset.statusCode, 200, 'headers arrive before the reset')
  await t.rejects(reset.body.arrayBuffer(), 'body read fails on the reset')

  proxy.setFault(() => ({ kind: 'reset', beforeHeaders: true }))
  await t.rejects(get(blobPath), 'reset before any answer')

  proxy.setFault(() => ({ kind: 'truncate', afterBytes: 1000 }))
  const truncated = await get(blobPath)
  await t.rejects(truncated.body.arrayBuffer(), 'a chunked body without its last chunk fails')

  proxy.setFault(() => ({ kind: 'replace', body: (b) => flipByte(b, 10) }))
  const replaced = await get(blobPath)
  const replacedBytes = Buffer.from(await replaced.body.arrayBuffer())
  t.equal(replacedBytes.length, image.layers[0]!.size, 'same length')
  t.not(sha256(replacedBytes), layer, 'different bytes')

  const lie = 'sha256:' + 'ab'.repeat(32)
  proxy.setFault(() => ({ kind: 'headers', set: { 'docker-content-digest': lie } }))
  const lying = await get(`/v2/smoke/faulty/manifests/v1`, { method: 'HEAD' })
  t.equal(lying.headers['docker-content-digest'], lie, 'lying Docker-Content-Digest')
  await lying.body.dump()

  proxy.setFault(() => ({ kind: 'redirect', location: `${registry.url}${blobPath}` }))
  const redirected = await get(blobPath)
  t.equal(redirected.statusCode, 307, 'redirect status')
  t.equal(redirected.headers.location, `${registry.url}${blobPath}`, 'redirect target')
  await redirected.body.dump()

  proxy.setFault(() => ({ kind: 'drip', intervalMs: 1, bytesPerTick: 4 }))
  const dripped = await get('/v2/')
  t.equal(await dripped.body.text(), '{}', 'drip delivers the whole body, slowly')

  proxy.setFault(() => ({ kind: 'hang' }))
  await t.rejects(get('/v2/', { headersTimeout: 300 }), { code: 'UND_ERR_HEADERS_TIMEOUT' }, 'hang never answers')

  t.same(
    proxy.requests.map((r) => r.fault),
    ['pass', 'status', 'status', 'pass', 'reset', 'reset', 'truncate', 'replace', 'headers', 'redirect', 'drip', 'hang'],
    'every request is recorded with its fault',
  )
  t.equal(proxy.requests[8]!.method, 'HEAD', 'methods are recorded')
  await proxy.close()
})

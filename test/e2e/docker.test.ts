// `docker pull` through trustpull with a real Docker engine (Debian docker.io, dockerd 20.10) and a
// real docker-registry upstream named docker.io, signatures made by real cosign 2.5. Two ways a
// developer's machine reaches the proxy:
// - `registry-mirrors` (Docker Hub only): dockerd asks the mirror for `/v2/library/<name>/...`
//   (no `?ns=`). When the mirror refuses, dockerd does not stop: it tries Docker Hub itself. So a
//   mirror alone does not enforce anything on a machine with Internet access; here (no network)
//   the fallback fails on DNS, which is what the unsigned case shows.
// - the explicit prefix (`docker pull PROXY/docker.io/library/<name>`, PROXY in
//   insecure-registries): dockerd has nowhere else to go, and prints trustpull's DENIED message.
import t from 'tap'
import { existsSync } from 'node:fs'
import { generateKeyPair, signImage } from '../helpers/cosign.ts'
import { processesUnder, startDockerd } from '../helpers/dockerd.ts'
import { pushImage } from '../helpers/images.ts'
import { tempDir } from '../helpers/proc.ts'
import { startRegistry } from '../helpers/registry.ts'
import { hubConfig, startProxy } from '../helpers/trustpull.ts'

interface RequestLine {
  method: string
  url: string
  status: number
}

t.test('docker pull through trustpull, real dockerd', async (t) => {
  const registry = await startRegistry(t)
  const key = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'library/signed', '1.0', { layers: 2, layerSize: 16 * 1024 })
  const unsigned = await pushImage(registry.url, 'library/unsigned', '1.0')
  await signImage(`${registry.host}/library/signed@${signed.digest}`, key.privateKeyPath)

  const proxy = await startProxy(
    t,
    hubConfig(registry.url, {
      policies: [{ name: 'hub-library', images: [{ glob: 'docker.io/library/**' }], authorities: [{ key: { data: key.publicKeyPem } }] }],
    }),
  )
  const dockerd = await startDockerd(t, { registryMirrors: [proxy.url], insecureRegistries: [proxy.host] })

  /** trustpull's debug access log: one line per request. */
  const requests = (): RequestLine[] => proxy.logs.filter((l) => l.msg === 'request').map((l) => ({ method: String(l.method), url: String(l.url), status: Number(l.status) }))
  const answered = (method: string, url: string): number[] =>
    requests()
      .filter((r) => r.method === method && r.url === url)
      .map((r) => r.status)
  const repoDigests = async (ref: string): Promise<string[]> => {
    const r = await dockerd.docker(['image', 'inspect', '--format', '{{json .RepoDigests}}', ref])
    if (r.code !== 0) throw new Error(`docker image inspect ${ref}: ${r.stderr}`)
    return JSON.parse(r.stdout) as string[]
  }
  const deniedMessage = `denied: docker.io/library/unsigned@${unsigned.digest} denied: policy "hub-library": no signatures found`

  t.test('registry-mirrors: a signed image is pulled through the mirror, digest preserved', async (t) => {
    const r = await dockerd.docker(['pull', 'signed:1.0'])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, `Digest: ${signed.digest}`)
    t.ok((await repoDigests('signed:1.0')).includes(`signed@${signed.digest}`), 'RepoDigests holds the signed digest')
    const id = await dockerd.docker(['image', 'inspect', '--format', '{{.Id}}', 'signed:1.0'])
    t.equal(id.stdout.trim(), signed.configDigest, "image ID is the signed manifest's config")

    // The mirror form: bare repository, no ?ns=, and every blob came from trustpull.
    t.same(answered('HEAD', '/v2/library/signed/manifests/1.0'), [200])
    t.same(answered('GET', `/v2/library/signed/manifests/${signed.digest}`), [200])
    for (const blob of [signed.configDigest, ...signed.layerDigests]) {
      t.same(answered('GET', `/v2/library/signed/blobs/${blob}`), [200], `blob ${blob.slice(0, 19)} via the mirror`)
    }
    t.notOk(
      requests().some((q) => q.url.includes('ns=')),
      'dockerd sends no ?ns=',
    )
  })

  t.test('registry-mirrors: an unsigned image is refused, and dockerd falls back to Docker Hub', async (t) => {
    const r = await dockerd.docker(['pull', 'unsigned:1.0'])
    // dockerd 20.10 printed (no network here, so Docker Hub cannot even be resolved):
    //   Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup
    //   registry-1.docker.io on 10.255.255.53:53: no such host
    // and logged, before trying Docker Hub:
    //   Attempting next endpoint for pull after error: denied: docker.io/library/unsigned@sha256:...
    //   denied: policy "hub-library": no signatures found for sha256:dfa29e18d3c4
    // With network, the same pull would be answered by Docker Hub instead: the mirror's refusal
    // never reaches the user.
    t.not(r.code, 0, 'the pull fails')
    t.match(r.stderr, /registry-1\.docker\.io/, 'the error is about Docker Hub, not the mirror')
    t.same(answered('HEAD', '/v2/library/unsigned/manifests/1.0'), [403], 'trustpull refused the HEAD')
    t.same(answered('GET', '/v2/library/unsigned/manifests/1.0'), [403], 'and the GET that reads the error')
    t.notOk(
      requests().some((q) => q.url.startsWith('/v2/library/unsigned/blobs/')),
      'no blob of the unsigned image was asked for',
    )
    // logrus escapes the quotes inside msg="...".
    t.match(dockerd.stderr().replaceAll('\\"', '"'), `Attempting next endpoint for pull after error: ${deniedMessage}`, 'dockerd moved past the mirror on the deny')
    t.not((await dockerd.docker(['image', 'inspect', 'unsigned:1.0'])).code, 0, 'no image was stored')
  })

  t.test('explicit prefix: a signed image is pulled', async (t) => {
    // Drop the mirror pull's copy so layers are fetched again, through the prefix path.
    const rmi = await dockerd.docker(['rmi', 'signed:1.0'])
    t.equal(rmi.code, 0, rmi.stderr)
    const ref = `${proxy.host}/docker.io/library/signed:1.0`
    const r = await dockerd.docker(['pull', ref])
    t.equal(r.code, 0, r.stderr)
    t.match(r.stdout, `Digest: ${signed.digest}`)
    t.ok((await repoDigests(ref)).includes(`${proxy.host}/docker.io/library/signed@${signed.digest}`), 'RepoDigests holds the signed digest')
    t.same(answered('HEAD', '/v2/docker.io/library/signed/manifests/1.0'), [200])
    for (const blob of signed.layerDigests) {
      t.same(answered('GET', `/v2/docker.io/library/signed/blobs/${blob}`), [200], `layer ${blob.slice(0, 19)} via the prefix`)
    }
  })

  t.test("explicit prefix: an unsigned image is refused with trustpull's message", async (t) => {
    const r = await dockerd.docker(['pull', `${proxy.host}/docker.io/library/unsigned:1.0`])
    // dockerd 20.10 printed:
    //   Error response from daemon: pull access denied for 127.0.0.1:PORT/docker.io/library/unsigned,
    //   repository does not exist or may require 'docker login': denied: docker.io/library/unsigned@sha256:...
    //   denied: policy "hub-library": no signatures found for sha256:dfa29e18d3c4
    t.not(r.code, 0, 'the pull fails')
    t.match(r.stderr, deniedMessage)
    t.same(answered('HEAD', '/v2/docker.io/library/unsigned/manifests/1.0'), [403])
    t.notOk(
      requests().some((q) => q.url.startsWith('/v2/docker.io/library/unsigned/blobs/')),
      'no blob of the unsigned image was asked for',
    )
  })

  t.test('stopping dockerd leaves no process, mount or directory behind', async (t) => {
    const report = await dockerd.stop()
    t.comment(`after dockerd exited: ${report.killed.length} process(es) killed, ${report.unmounted.length} mount(s) removed`)
    t.same(await processesUnder(dockerd.dir), [], 'no containerd or shim still names the dir')
    t.notOk(existsSync(dockerd.dataRoot), 'data root removed')
    t.notOk(existsSync(dockerd.execRoot), 'exec root removed')

    // A dockerd that dies without shutting down leaves its data root bind-mounted on itself
    // (found here): the helper must unmount it before removing anything.
    const crashed = await startDockerd(t)
    process.kill(crashed.pid, 'SIGKILL')
    const after = await crashed.stop()
    t.ok(after.unmounted.includes(crashed.dataRoot), 'the data root mount left by the crash was removed')
    t.same(await processesUnder(crashed.dir), [], 'nothing it started is left running')
    t.notOk(existsSync(crashed.dataRoot), 'data root removed')
    t.notOk(existsSync(crashed.execRoot), 'exec root removed')
  })
})

// `npm run demo`: a loopback registry with one signed and one unsigned image, trustpull in front
// of it with a policy that wants the signature, and a real client (skopeo) pulling both through
// it: the first arrives, the second is refused with trustpull's message as the client prints it.
// Needs the test tools (`npm run test:tools`: docker-registry, skopeo, cosign).
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, signImage } from '../test/helpers/cosign.ts'
import { pushImage } from '../test/helpers/images.ts'
import { tempDir, type Teardown } from '../test/helpers/proc.ts'
import { startRegistry } from '../test/helpers/registry.ts'
import { skopeoCopy } from '../test/helpers/skopeo.ts'
import { loadConfig } from '../src/config/load.ts'
import { startServer } from '../src/server.ts'
import { createLogger } from '../src/telemetry/logger.ts'

const cleanups: (() => unknown)[] = []
const t: Teardown = { teardown: (fn) => void cleanups.unshift(fn) }
const say = (text: string) => console.log(`\n\x1b[1m${text}\x1b[0m`)

try {
  say('1. A registry on loopback with two images, one signed with cosign')
  const registry = await startRegistry(t)
  const keys = await generateKeyPair(await tempDir(t))
  const signed = await pushImage(registry.url, 'acme/api', '1.0', { seed: 'signed' })
  await pushImage(registry.url, 'acme/worker', '1.0', { seed: 'unsigned' })
  await signImage(`${registry.host}/acme/api@${signed.digest}`, keys.privateKeyPath)
  console.log(`   registry ${registry.url}: acme/api:1.0 (signed), acme/worker:1.0 (unsigned)`)

  say('2. trustpull in front of it, with a policy: acme/** must carry a signature by our key')
  const dir = await tempDir(t)
  const configFile = join(dir, 'trustpull.yaml')
  await writeFile(
    configFile,
    [
      'listen: 127.0.0.1:0',
      'upstreams:',
      `  - {name: registry.acme.test, url: "${registry.url}", default: true}`,
      'policies:',
      '  - name: acme-release',
      '    images: [{glob: "registry.acme.test/acme/**"}]',
      '    authorities:',
      `      - key: {file: "${keys.publicKeyPath}"}`,
      '',
    ].join('\n'),
  )
  const proxy = await startServer(loadConfig(configFile), { logger: createLogger('warn') })
  t.teardown(() => proxy.close(1_000))
  const host = proxy.url.replace('http://', '')
  console.log(`   trustpull ${proxy.url}`)

  let step = 3
  for (const image of ['acme/api:1.0', 'acme/worker:1.0']) {
    say(`${step++}. skopeo copy docker://${host}/${image} oci:...`)
    const r = await skopeoCopy(`${host}/${image}`, join(dir, image.replace(/[/:]/g, '-')))
    console.log(r.code === 0 ? `   pulled ${r.digest}` : `   refused (skopeo exit ${r.code}):\n   ${r.stderr.trim().split('\n').join('\n   ')}`)
  }
} finally {
  for (const fn of cleanups) await fn()
}

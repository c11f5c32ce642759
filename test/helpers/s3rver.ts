// Starts s3rver (a local S3 implementation) as its own process on a free loopback port over a
// temp dir, with the given buckets. Its own process because s3rver's ListObjectsV2 continuation
// tokens use DES, which Node 24's OpenSSL 3 only offers with --openssl-legacy-provider (a flag we
// do not want in the test process itself). Credentials: the fixed pair S3RVER / S3RVER.
import { REPO_ROOT, startDaemon, tempDir, type Teardown } from './proc.ts'

export interface TestS3 {
  endpoint: string
  directory: string
}

const SCRIPT = `
const S3rver = require('s3rver')
const s = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: process.env.S3_DIR,
  configureBuckets: JSON.parse(process.env.S3_BUCKETS).map((name) => ({ name, configs: [] })) })
s.run().then(({ port }) => console.log('listening ' + port))
process.on('SIGTERM', () => s.close().then(() => process.exit(0)))
`

export async function startS3rver(t: Teardown, buckets: string[]): Promise<TestS3> {
  const directory = await tempDir(t)
  const daemon = await startDaemon(t, process.execPath, ['--openssl-legacy-provider', '-e', SCRIPT], {
    name: 's3rver',
    cwd: REPO_ROOT,
    env: { ...process.env, S3_DIR: directory, S3_BUCKETS: JSON.stringify(buckets) },
    readyLine: /listening \d+/,
  })
  t.teardown(() => daemon.stop())
  const port = /listening (\d+)/.exec(daemon.stdout())![1]
  return { endpoint: `http://127.0.0.1:${port}`, directory }
}
